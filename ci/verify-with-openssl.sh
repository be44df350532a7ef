#!/bin/sh
# Verifies a hilt signed result (result.dsse.json) with the OpenSSL 3 command line and a
# few standard tools, without hilt: the DSSE signature over the pre-authentication
# encoding, by PUBKEY.
#
#   ci/verify-with-openssl.sh RESULT.dsse.json PUBKEY.pub
#
# It accepts only the layout hilt writes (one line of compact JSON with one signature), so
# that what it checks is what any JSON reader of the file sees; that is this script's own
# rule (`hilt verify` reads any DSSE layout). The keyid is a hint (DSSE): the key given
# decides. Exit 0 when the signature verifies; the statement is then the decoded payload:
#   sed 's/^{"payload":"\([^"]*\)".*/\1/' RESULT.dsse.json | openssl base64 -d -A
set -eu
envelope=$1
pubkey=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

shape='^\{"payload":"[A-Za-z0-9+/=]*","payloadType":"application/vnd\.in-toto\+json","signatures":\[\{"keyid":"[^"\\]*","sig":"[A-Za-z0-9+/]{86}=="\}\]\}$'
if [ "$(wc -l <"$envelope")" -ne 1 ] || ! grep -Eq "$shape" "$envelope"; then
  echo "$envelope is not in the one-line layout hilt writes, with one signature; this script reads only that layout (hilt verify reads any DSSE layout)" >&2
  exit 1
fi
field() { sed "s/.*\"$1\":\"\([^\"]*\)\".*/\1/" "$envelope"; }

type=application/vnd.in-toto+json
field payload | openssl base64 -d -A >"$tmp/payload"
field sig | openssl base64 -d -A >"$tmp/sig"

# keyid = sha256 of the public key's DER SubjectPublicKeyInfo; only a hint, reported.
want=$(openssl pkey -pubin -in "$pubkey" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
if [ "$(field keyid)" != "$want" ]; then
  echo "note: the keyid label ($(field keyid)) is not $pubkey's ($want); a label decides nothing" >&2
fi

# PAE = "DSSEv1" SP len(type) SP type SP len(payload) SP payload
len=$(($(wc -c <"$tmp/payload")))
{ printf 'DSSEv1 %d %s %d ' "${#type}" "$type" "$len"; cat "$tmp/payload"; } >"$tmp/pae"
openssl pkeyutl -verify -pubin -inkey "$pubkey" -rawin -in "$tmp/pae" -sigfile "$tmp/sig"
