#!/bin/sh
# Verifies a hilt signed result (result.dsse.json) with OpenSSL and POSIX tools alone,
# without hilt: the DSSE signature over the pre-authentication encoding, by PUBKEY.
#
#   ci/verify-with-openssl.sh RESULT.dsse.json PUBKEY.pub
#
# It relies on hilt's canonical envelope (compact JSON, one signature). Exit 0 when the
# signature verifies; the statement is then in RESULT.dsse.json's payload, e.g.
#   sed -n 's/.*"payload":"\([^"]*\)".*/\1/p' RESULT.dsse.json | base64 -d
set -eu
envelope=$1
pubkey=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$envelope"; }

type=$(field payloadType)
if [ "$type" != "application/vnd.in-toto+json" ]; then
  echo "wrong payload type: '$type'" >&2
  exit 1
fi
field payload | base64 -d >"$tmp/payload"
field sig | base64 -d >"$tmp/sig"

# keyid = sha256 of the public key's DER SubjectPublicKeyInfo.
want=$(openssl pkey -pubin -in "$pubkey" -outform DER | sha256sum | cut -d' ' -f1)
if [ "$(field keyid)" != "$want" ]; then
  echo "signed by key $(field keyid), not by $pubkey ($want)" >&2
  exit 1
fi

# PAE = "DSSEv1" SP len(type) SP type SP len(payload) SP payload
len=$(($(wc -c <"$tmp/payload")))
{ printf 'DSSEv1 %d %s %d ' "${#type}" "$type" "$len"; cat "$tmp/payload"; } >"$tmp/pae"
openssl pkeyutl -verify -pubin -inkey "$pubkey" -rawin -in "$tmp/pae" -sigfile "$tmp/sig"
