"""DSSE envelopes signed and verified by securesystemslib, an implementation that shares
no code with hilt, for tests/signing.rs.

    sslib_dsse.py sign KEY.key PAYLOAD OUT.dsse.json   # sign PAYLOAD's bytes as an in-toto payload
    sslib_dsse.py verify KEY.pub ENVELOPE.dsse.json     # exit 0 when KEY signed ENVELOPE

Keys are the Ed25519 PEM files `hilt keygen` writes. securesystemslib computes its own
keyid when signing (not hilt's), writes its own JSON layout, and matches signatures to
keys by keyid when verifying, so the key is offered under each keyid the envelope names.
"""

import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def sign(key_path, payload_path, out_path):
    with open(key_path, "rb") as f:
        private = load_pem_private_key(f.read(), password=None)
    with open(payload_path, "rb") as f:
        payload = f.read()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    signature = envelope.sign(CryptoSigner(private))
    with open(out_path, "w") as f:
        json.dump(envelope.to_dict(), f, indent=2)
    print(f"signed with securesystemslib keyid {signature.keyid}")


def verify(pub_path, envelope_path):
    with open(pub_path, "rb") as f:
        public = load_pem_public_key(f.read())
    with open(envelope_path) as f:
        envelope = Envelope.from_dict(json.load(f))
    if envelope.payload_type != PAYLOAD_TYPE:
        sys.exit(f"payload type {envelope.payload_type!r}")
    keys = [SSlibKey.from_crypto(public, keyid=keyid) for keyid in envelope.signatures if keyid]
    if not keys:
        sys.exit("no keyid to offer the key under")
    try:
        accepted = envelope.verify(keys, 1)
    except Exception as e:  # VerificationError, or a malformed signature
        sys.exit(f"not verified: {e}")
    statement = json.loads(envelope.payload)
    print(f"verified by {', '.join(accepted)}; predicateType {statement['predicateType']}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"sign": sign, "verify": verify}[command](*args)
