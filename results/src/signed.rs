//! Signed results: a DSSE envelope around an in-toto Statement whose predicate is the
//! result record, signed with Ed25519.
//!
//! The layout follows two public specifications, so that tools that know nothing of hilt
//! can check a result:
//!
//! - the envelope is DSSE v1: `{"payload": base64, "payloadType":
//!   "application/vnd.in-toto+json", "signatures": [{"keyid": hex, "sig": base64}]}`, and
//!   each signature is Ed25519 over the DSSE pre-authentication encoding
//!   ([`pae`]) of the payload type and the payload bytes;
//! - the payload is an in-toto Statement v1 whose subjects are the devices under test
//!   (name, sha256 of the device's identity facts), whose `predicateType` is
//!   [`PREDICATE_TYPE`] and whose predicate is the [`ResultRecord`].
//!
//! The payload is serialised once, as compact JSON, and signed as those bytes; verification
//! checks the signatures of trusted keys over the bytes in the envelope and only then
//! parses them, never re-serialising the payload. (When no trusted key signed, the payload
//! is looked into only to tell a development-only result from one signed by a stranger.)
//!
//! [`verify`] follows what the DSSE v1 protocol and envelope documents ask of a verifier:
//! what is signed is the payload type and the payload bytes, never the envelope's JSON
//! layout, so a reformatted envelope (pretty-printed, keys reordered, another signer's
//! layout) verifies and is reported as reformatted, never as altered; unknown fields are
//! ignored; `keyid` is an optional, unauthenticated hint that only orders the trusted keys
//! tried, and attribution comes from the key that verifies; of several signatures, one by
//! a trusted key suffices and those no trusted key verifies are skipped; `payload` and
//! `sig` may use the standard or the URL-safe base64 alphabet, padded or not. Where hilt is
//! stricter than DSSE on purpose, the finding names the rule: only the in-toto payload
//! type, Ed25519 verified with RFC 8032's strict checks, and subjects that match the
//! record. hilt itself writes one layout (compact JSON, standard padded base64, a final
//! newline).
//!
//! `keyid` is the hex sha256 of the public key's DER SubjectPublicKeyInfo, the same bytes
//! as the base64 body of the `.pub` file, so `openssl pkey -pubin -in KEY.pub -outform DER
//! | sha256sum | cut -d' ' -f1` reproduces it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey as DalekSigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Conformance, FORMAT_MAJOR, FormatVersion, ResultRecord, SigningNote, Tier};

/// The DSSE payload type of a hilt envelope.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto Statement type of the payload.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a hilt conformance result, version 1.
pub const PREDICATE_TYPE: &str = "https://hilt.dev/conformance-result/v1";

/// A DSSE v1 envelope, as written to `result.dsse.json`. Reading ignores fields it does
/// not know, as DSSE requires of consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The base64 of the serialised statement (hilt writes the standard alphabet, padded;
    /// it reads the URL-safe one and unpadded text too).
    pub payload: String,
    /// Always [`PAYLOAD_TYPE`].
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// One or more signatures over the pre-authentication encoding.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// hilt writes the hex sha256 of the signer's DER SubjectPublicKeyInfo. An optional,
    /// unauthenticated hint (DSSE): absent or `null` reads as empty, and it never decides
    /// who signed.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub keyid: String,
    /// The base64 of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// An in-toto Statement v1 carrying a result record. Fields it does not know are ignored,
/// as in-toto asks of consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The devices under test (or the host, when the run had no device).
    pub subject: Vec<Subject>,
    /// Always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The result record.
    pub predicate: ResultRecord,
}

/// One subject of a statement (an in-toto ResourceDescriptor; hilt reads its name and
/// digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// `model (pci address)` or `model (device id)`.
    pub name: String,
    /// `{"sha256": hex}` of the device's identity facts (see [`subjects_of`]).
    pub digest: BTreeMap<String, String>,
}

/// The DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// A string field that DSSE lets be unset: missing or `null` reads as empty.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// The two base64 alphabets of RFC 4648 that DSSE allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base64Alphabet {
    /// `+` and `/` (RFC 4648 section 4).
    Standard,
    /// `-` and `_` (RFC 4648 section 5).
    UrlSafe,
}

/// Decodes base64 as DSSE allows it: the standard or the URL-safe alphabet, with or
/// without padding; the two alphabets are never mixed in one text, and no whitespace or
/// non-zero trailing bits are accepted, so every byte sequence has one reading per
/// alphabet.
pub fn decode_base64(text: &str) -> Result<(Vec<u8>, Base64Alphabet), String> {
    use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
    match STANDARD_PAD_INDIFFERENT.decode(text) {
        Ok(bytes) => Ok((bytes, Base64Alphabet::Standard)),
        Err(standard) => match URL_SAFE_PAD_INDIFFERENT.decode(text) {
            Ok(bytes) => Ok((bytes, Base64Alphabet::UrlSafe)),
            Err(_) => Err(format!(
                "is not base64 in the standard or the URL-safe alphabet ({standard})"
            )),
        },
    }
}

/// The subjects of a record: one per device, named by model and bus address (or device
/// id), with the sha256 of the device's identity facts: its record (id, backend, name,
/// vendor, address, simulated flag and facts) as compact JSON with object keys sorted.
/// A record without devices gets the host as its subject.
pub fn subjects_of(record: &ResultRecord) -> Vec<Subject> {
    // Serialising plain data structures to a value cannot fail.
    let devices: Vec<serde_json::Value> = record
        .devices
        .iter()
        .map(|d| serde_json::to_value(d).unwrap_or_default())
        .collect();
    let host = serde_json::to_value(&record.host).unwrap_or_default();
    subjects_from(&devices, &host)
}

fn subjects_from(devices: &[serde_json::Value], host: &serde_json::Value) -> Vec<Subject> {
    let subject = |name: String, facts: &serde_json::Value| Subject {
        name,
        digest: BTreeMap::from([("sha256".to_string(), sha256_hex(&canonical_json(facts)))]),
    };
    let text = |v: &serde_json::Value, key: &str| v.get(key).and_then(|s| s.as_str()).map(str::to_owned);
    if devices.is_empty() {
        let name = text(host, "hostname").unwrap_or_default();
        return vec![subject(format!("host {name}"), host)];
    }
    devices
        .iter()
        .map(|d| {
            let place = text(d, "pci_address").or_else(|| text(d, "id")).unwrap_or_default();
            let model = text(d, "name").unwrap_or_default();
            subject(format!("{model} ({place})"), d)
        })
        .collect()
}

/// Compact JSON with every object's keys in sorted order, whatever order they came in.
fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    fn write(value: &serde_json::Value, out: &mut Vec<u8>) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
                    out.push(b':');
                    write(&map[key], out);
                }
                out.push(b'}');
            }
            serde_json::Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            scalar => out.extend_from_slice(serde_json::to_string(scalar).unwrap_or_default().as_bytes()),
        }
    }
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// An Ed25519 private key that signs results.
pub struct SigningKey {
    key: DalekSigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        write!(f, "SigningKey({})", self.public().keyid())
    }
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = DalekSigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SigningKey { key })
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), as `hilt keygen` and
    /// `openssl genpkey -algorithm ed25519` write it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, KeyError> {
        if pem.contains("-----BEGIN PUBLIC KEY-----") {
            return Err(KeyError::Format(
                "this is a public key, which can only verify; signing needs the private key (the NAME.key that \
                 `hilt keygen` writes beside NAME.pub)"
                    .into(),
            ));
        }
        DalekSigningKey::from_pkcs8_pem(pem)
            .map(|key| SigningKey { key })
            .map_err(|e| KeyError::Format(format!("not an Ed25519 PKCS#8 PEM private key ({e})")))
    }

    /// Reads a private key file, refusing one that group or others may read or write.
    /// The mode is checked on the opened file, so the file read is the file checked.
    pub fn read(path: &Path) -> Result<SigningKey, KeyError> {
        use std::io::Read;
        let context = |e: std::io::Error| KeyError::Io(format!("cannot read private key {}: {e}", path.display()));
        let mut file = std::fs::File::open(path).map_err(context)?;
        let meta = file.metadata().map_err(context)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Exposed(format!(
                    "private key {} is open to group or others (mode {mode:04o}); \
                     restrict it with `chmod 600 {}`",
                    path.display(),
                    path.display()
                )));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(context)?;
        SigningKey::from_pkcs8_pem(&text).map_err(|e| match e {
            KeyError::Format(why) => KeyError::Format(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// The PKCS#8 v1 PEM text of the key (the private key alone, the form OpenSSL 3.0
    /// reads). Callers write it to a file of mode 0600 and nowhere else.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| KeyError::Format(e.to_string()))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_verifying(self.key.verifying_key())
    }

    /// Signs `record` into the bytes of a canonical envelope (compact JSON and a newline).
    ///
    /// The record must read back exactly as it is (a number that is not finite would be
    /// written as `null`, and the signed result could never be verified), and a
    /// development note in it must name this key.
    pub fn sign(&self, record: &ResultRecord) -> Result<Vec<u8>, SignError> {
        if let Some(note) = &record.signing
            && note.keyid != self.public().keyid()
        {
            return Err(SignError(format!(
                "the record is marked as signed by one-off key {}, not by this key; remove its `signing` note first",
                short(&note.keyid)
            )));
        }
        let statement = Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: subjects_of(record),
            predicate_type: PREDICATE_TYPE.into(),
            predicate: record.clone(),
        };
        let payload = serde_json::to_vec(&statement).map_err(|e| SignError(e.to_string()))?;
        match parse_statement(&payload) {
            Ok((back, _, _)) if back == statement => Ok(self.sign_payload(&payload)),
            Ok(_) => Err(SignError(
                "the record does not read back as written (a measurement that is not a finite number?)".into(),
            )),
            Err(why) => Err(SignError(format!("the record does not read back as written: {why}"))),
        }
    }

    /// Signs `payload` (a serialised statement) as it is, into the bytes of a canonical
    /// envelope.
    pub fn sign_payload(&self, payload: &[u8]) -> Vec<u8> {
        let signature = self.key.sign(&pae(PAYLOAD_TYPE, payload));
        let envelope = Envelope {
            payload: BASE64.encode(payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![EnvelopeSignature {
                keyid: self.public().keyid().to_string(),
                sig: BASE64.encode(signature.to_bytes()),
            }],
        };
        let mut bytes = serde_json::to_vec(&envelope).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Marks `record` as signed by this one-off key (development only) and signs it.
    pub fn sign_as_development(&self, record: &mut ResultRecord) -> Result<Vec<u8>, SignError> {
        record.signing = Some(self.development_note());
        self.sign(record)
    }

    /// The note a record carries when this key is a one-off development key.
    pub fn development_note(&self) -> SigningNote {
        let public = self.public();
        SigningNote {
            development_only: true,
            keyid: public.keyid().to_string(),
            public_key: public.to_pem(),
        }
    }
}

/// An Ed25519 public key that results are verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    keyid: String,
    der: Vec<u8>,
}

impl PublicKey {
    fn from_verifying(key: VerifyingKey) -> PublicKey {
        // Encoding a valid Ed25519 key as SPKI DER cannot fail (fixed 44-byte structure).
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        PublicKey {
            keyid: sha256_hex(&der),
            key,
            der,
        }
    }

    /// Reads an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`). A private key is
    /// refused with that said, since trusting keys needs only their public halves.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        if pem.contains("PRIVATE KEY-----") {
            return Err(KeyError::Format(
                "this is a private key, not a public one: a verifier trusts the signer's public key (the NAME.pub \
                 that `hilt keygen` writes beside NAME.key, or `openssl pkey -in NAME.key -pubout -out NAME.pub`), \
                 and a private key never leaves whoever signs with it"
                    .into(),
            ));
        }
        VerifyingKey::from_public_key_pem(pem)
            .map(PublicKey::from_verifying)
            .map_err(|e| KeyError::Format(format!("not an Ed25519 SPKI PEM public key ({e})")))
    }

    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeyError::Io(format!("cannot read public key {}: {e}", path.display())))?;
        PublicKey::from_pem(&text).map_err(|e| match e {
            KeyError::Format(why) => KeyError::Format(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// The SPKI PEM text.
    pub fn to_pem(&self) -> String {
        let body = BASE64.encode(&self.der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// The key id: hex sha256 of the DER SubjectPublicKeyInfo.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }
}

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The text is not a key of the expected kind.
    #[error("{0}")]
    Format(String),
    /// A private key that others may read.
    #[error("{0}")]
    Exposed(String),
    /// The operating system's random source failed.
    #[error("no random source for a new key: {0}")]
    Random(String),
}

/// A record that cannot be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the record: {0}")]
pub struct SignError(String);

/// A key that a verifier trusts, with the name it was given by (a file path).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// Where the key came from, for messages.
    pub label: String,
    /// The key.
    pub key: PublicKey,
}

/// What a verifier requires of a result besides a trusted signature.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The keys whose signatures make a result attributable.
    pub trusted: Vec<TrustedKey>,
    /// The profile id the result must have been run with.
    pub require_profile: Option<String>,
    /// The tier the result must have been run in.
    pub require_tier: Option<Tier>,
    /// Whether the result must be conformant.
    pub require_conformant: bool,
    /// Whether the result must be able to certify: a certifying profile, no simulated
    /// device.
    pub require_certifying: bool,
    /// The exact profile (`sha256:...`, after inheritance) the result must have applied.
    pub require_profile_digest: Option<String>,
}

/// One line of a verification report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// True when this aspect checked out.
    pub ok: bool,
    /// What was checked and what was found, in one line.
    pub text: String,
}

/// The outcome of verifying an envelope that could at least be read.
#[derive(Debug, Clone)]
pub struct Verification {
    /// One finding per aspect, in the order they were checked.
    pub findings: Vec<Finding>,
    /// The record, only when a trusted signature covers it.
    pub record: Option<ResultRecord>,
    /// The label of the trusted key that signed, when one did.
    pub signer: Option<String>,
    /// The conformance decision the record's outcomes give ([`ResultRecord::derived_conformance`]),
    /// only when a trusted signature covers the record. It is about the platform, not the
    /// signature: a verified record may well be of a platform that is not conformant.
    pub conformance: Option<Conformance>,
}

impl Verification {
    /// True when every finding checked out: the envelope is well formed, signed by a
    /// trusted key, and the record meets the policy.
    pub fn verified(&self) -> bool {
        !self.findings.is_empty() && self.findings.iter().all(|f| f.ok)
    }

    fn ok(&mut self, text: impl Into<String>) {
        self.findings.push(Finding {
            ok: true,
            text: text.into(),
        });
    }

    fn fail(&mut self, text: impl Into<String>) {
        self.findings.push(Finding {
            ok: false,
            text: text.into(),
        });
    }
}

/// Input that cannot be read as an envelope at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unreadable {
    /// The file is empty.
    #[error("the file is empty")]
    Empty,
    /// The JSON ends early.
    #[error("the file ends early, at line {line} column {column}: it is truncated")]
    Truncated {
        /// Line of the end.
        line: usize,
        /// Column of the end.
        column: usize,
    },
    /// The bytes are not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
}

/// The record inside an envelope, WITHOUT checking any signature: for showing what an
/// unverified result claims, next to the verifier's findings. Never use it to decide.
pub fn read_unverified(bytes: &[u8]) -> Result<ResultRecord, String> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| format!("not a DSSE envelope: {}", shown(&e.to_string())))?;
    let (payload, _) = decode_base64(&envelope.payload).map_err(|e| format!("payload {e}"))?;
    parse_statement(&payload).map(|(s, _, _)| s.predicate)
}

/// Verifies envelope `bytes` against `policy`. `Err` means the input is not readable as
/// JSON at all; everything else (a wrong structure, payload type, key, signature, format
/// version, requirement, or a record whose claims do not follow from its outcomes) is a
/// failed finding in the returned report.
pub fn verify(bytes: &[u8], policy: &Policy) -> Result<Verification, Unreadable> {
    let mut report = Verification {
        findings: Vec::new(),
        record: None,
        signer: None,
        conformance: None,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Unreadable::Empty);
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            Unreadable::Truncated {
                line: e.line(),
                column: e.column(),
            }
        } else {
            Unreadable::NotJson(e.to_string())
        }
    })?;

    // Structure.
    if value.get("format").is_some() && value.get("outcomes").is_some() {
        report.fail(
            "envelope: this is an unsigned result record (result.json), not a signed envelope, so nothing vouches \
             for it: ask whoever ran it for the signed result.dsse.json written beside it",
        );
        return Ok(report);
    }
    // serde_json keeps the last of two equal keys in a Value; the typed reading below
    // refuses them, so an envelope whose fields are ambiguous never verifies.
    let envelope: Envelope = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => {
            report.fail(format!("envelope: not a DSSE envelope: {}", shown(&e.to_string())));
            return Ok(report);
        }
    };
    let mut canonical = serde_json::to_vec(&envelope).unwrap_or_default();
    canonical.push(b'\n');
    if canonical == bytes {
        report.ok(format!("envelope: DSSE v1, {} signature(s)", envelope.signatures.len()));
    } else {
        report.ok(format!(
            "envelope: DSSE v1, {} signature(s); its JSON layout is not the compact one hilt writes: it was \
             reformatted after signing or written by another DSSE signer, which changes nothing that was signed \
             (DSSE signs the payload and its type, not the layout)",
            envelope.signatures.len()
        ));
    }
    if envelope.payload_type != PAYLOAD_TYPE {
        report.fail(format!(
            "payload type: \"{}\", but hilt reads only {PAYLOAD_TYPE} (an exact, case-sensitive match; DSSE has a \
             verifier reject payload types it does not support)",
            shown(&envelope.payload_type)
        ));
        return Ok(report);
    }
    report.ok(format!("payload type: {PAYLOAD_TYPE}"));
    let payload = match decode_base64(&envelope.payload) {
        Ok((p, _)) => p,
        Err(e) => {
            report.fail(format!("payload: {e}; DSSE rejects an envelope that does not decode"));
            return Ok(report);
        }
    };

    // Signatures, over the payload bytes as they are in the envelope, before anything in
    // the payload is believed.
    let message = pae(&envelope.payload_type, &payload);
    if !check_signatures(&mut report, &envelope, &message, &payload, policy) {
        return Ok(report);
    }

    // Payload contents, now covered by a trusted signature.
    let (statement, raw_devices, raw_host) = match parse_statement(&payload) {
        Ok(s) => s,
        Err(why) => {
            report.fail(why);
            return Ok(report);
        }
    };
    if statement.statement_type != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        report.fail(format!(
            "statement: type \"{}\" with predicate \"{}\", expected {STATEMENT_TYPE} with {PREDICATE_TYPE}",
            shown(&statement.statement_type),
            shown(&statement.predicate_type)
        ));
    }
    let record = statement.predicate;
    report.ok(format!(
        "result format: {}.{} (this reader knows {FORMAT_MAJOR}.x)",
        record.format.major, record.format.minor
    ));
    let simulated = record.devices.iter().any(|d| d.simulated);
    report.ok(format!(
        "ran: {} {} (executable sha256 {}), profile {} {} ({}), tier {}, {} run; {}",
        shown(&record.tool.name),
        shown(&record.tool.version),
        record
            .tool
            .executable_sha256
            .as_deref()
            .map_or("unknown".into(), |h| shown(&short(h))),
        shown(&record.profile.id),
        shown(&record.profile.version),
        shown(&record.profile.digest),
        record.run.tier,
        if record.run.complete { "complete" } else { "incomplete" },
        match (record.profile.certifying, simulated) {
            (_, true) => "on a simulated device: certifies nothing",
            (false, false) => "profile not certifying",
            (true, false) => "certifying",
        }
    ));
    if statement.subject == subjects_from(&raw_devices, &raw_host) {
        report.ok(format!(
            "subjects: {} device(s) match the record",
            statement.subject.len()
        ));
    } else {
        report.fail("subjects: the statement's subjects do not match the devices in the record");
    }
    if record.signing.is_some() {
        report.fail("signing: the record says it was signed by a one-off development key, yet a trusted key signed it");
    }
    // What the record claims is checked against its outcomes; the decision reported is
    // the one the outcomes give, never the stored field.
    let inconsistencies = record.inconsistencies();
    if inconsistencies.is_empty() {
        report.ok(format!(
            "record: its summary and stored conformance follow from its {} outcome(s)",
            record.outcomes.len()
        ));
    } else {
        for found in &inconsistencies {
            report.fail(format!(
                "record: {}; it was edited before it was signed, or written by a hilt whose rules differ from this \
                 one's",
                shown(found)
            ));
        }
    }
    let conformance = record.derived_conformance();
    check_policy(&mut report, &record, &conformance, policy, simulated);
    report.conformance = Some(conformance);
    report.record = Some(record);
    Ok(report)
}

/// The statement, and the record's devices and host as they stand in the payload (with
/// any fields a newer minor version added), for the subject digests.
type Parsed = (Statement, Vec<serde_json::Value>, serde_json::Value);

fn parse_statement(payload: &[u8]) -> Result<Parsed, String> {
    #[derive(Deserialize)]
    struct Probe {
        predicate: Option<ProbeRecord>,
    }
    #[derive(Deserialize)]
    struct ProbeRecord {
        format: FormatVersion,
        #[serde(default)]
        devices: Vec<serde_json::Value>,
        #[serde(default)]
        host: serde_json::Value,
    }
    let probe: Probe = serde_json::from_slice(payload).map_err(|e| format!("statement: not JSON: {e}"))?;
    let (devices, host) = match probe.predicate {
        Some(p) if p.format.major != FORMAT_MAJOR => {
            return Err(format!(
                "result format: {}.{} is not supported (this reader knows major version {FORMAT_MAJOR})",
                p.format.major, p.format.minor
            ));
        }
        Some(p) => (p.devices, p.host),
        None => (Vec::new(), serde_json::Value::Null),
    };
    let statement = serde_json::from_slice(payload)
        .map_err(|e| format!("statement: not an in-toto statement of a hilt result: {e}"))?;
    Ok((statement, devices, host))
}

/// How one signature of an envelope checks out against the trusted keys.
enum SignatureCheck<'p> {
    /// A trusted key verifies it.
    Trusted(&'p TrustedKey),
    /// Only lenient Ed25519 verification accepts it, by this trusted key.
    LenientOnly(&'p TrustedKey),
    /// No trusted key verifies it.
    Untrusted,
}

/// Checks the signatures against every trusted key, as DSSE's verification with a
/// threshold of one: the envelope is attributable when a trusted key verifies one of its
/// signatures, the keyid labels only order the keys tried, and signatures no trusted key
/// verifies are skipped (and listed). Without a trusted signature, says why the result is
/// not attributable. True when a trusted key signed.
fn check_signatures(
    report: &mut Verification,
    envelope: &Envelope,
    message: &[u8],
    payload: &[u8],
    policy: &Policy,
) -> bool {
    if envelope.signatures.is_empty() {
        report.fail("signature: the envelope carries no signature");
        return false;
    }
    // DSSE: every field is decoded first, and an envelope that does not decode is rejected.
    let mut signatures = Vec::new();
    for (i, sig) in envelope.signatures.iter().enumerate() {
        match decode_base64(&sig.sig) {
            Ok((bytes, _)) => signatures.push((i + 1, sig, bytes)),
            Err(e) => {
                report.fail(format!(
                    "signature {}: `sig` {e}; DSSE rejects an envelope that does not decode",
                    i + 1
                ));
                return false;
            }
        }
    }
    if policy.trusted.is_empty() {
        report.fail("signature: no trusted key given (--trusted-key): the signer cannot be established");
        explain_untrusted(report, envelope, message, payload);
        return false;
    }
    let checks: Vec<(usize, &EnvelopeSignature, SignatureCheck)> = signatures
        .iter()
        .map(|(n, sig, bytes)| {
            // The keyid is an unauthenticated hint: the key it names is tried first, and
            // then every other trusted key.
            let mut keys: Vec<&TrustedKey> = policy.trusted.iter().collect();
            keys.sort_by_key(|t| t.key.keyid() != sig.keyid);
            let check = match keys.iter().find(|t| verifies(&t.key, bytes, message, true)) {
                Some(t) => SignatureCheck::Trusted(t),
                None => match keys.iter().find(|t| verifies(&t.key, bytes, message, false)) {
                    Some(t) => SignatureCheck::LenientOnly(t),
                    None => SignatureCheck::Untrusted,
                },
            };
            (*n, *sig, check)
        })
        .collect();
    let label = |sig: &EnvelopeSignature| {
        if sig.keyid.is_empty() {
            "no keyid label".to_string()
        } else {
            format!("keyid label {}", shown(&short(&sig.keyid)))
        }
    };
    let mut signers: Vec<&TrustedKey> = Vec::new();
    for (_, sig, check) in &checks {
        if let SignatureCheck::Trusted(t) = check
            && !signers.iter().any(|s| s.key == t.key)
        {
            signers.push(t);
            let hint = if sig.keyid == t.key.keyid() {
                String::new()
            } else {
                format!(
                    "; the signature carries {}, an unauthenticated hint (DSSE) that does not decide who signed",
                    label(sig)
                )
            };
            report.ok(format!(
                "signature: valid, by trusted key {} (keyid {}…){hint}",
                t.label,
                short(t.key.keyid())
            ));
        }
    }
    if let Some(first) = signers.first() {
        for (n, sig, check) in &checks {
            if !matches!(check, SignatureCheck::Trusted(_)) {
                report.ok(format!(
                    "signature {n} ({}): verifies against none of the trusted keys, so it is not counted; DSSE skips \
                     such signatures, and they change nothing that was signed",
                    label(sig)
                ));
            }
        }
        report.signer = Some(first.label.clone());
        return true;
    }
    // No trusted key verified any signature: say why, as precisely as can be known.
    let mut said = false;
    for (n, sig, check) in &checks {
        match check {
            SignatureCheck::LenientOnly(t) => {
                said = true;
                report.fail(format!(
                    "signature {n}: verifies against trusted key {} only under lenient Ed25519 rules; hilt requires \
                     RFC 8032's strict verification (a canonical signature, a key that is not of small order)",
                    t.label
                ));
            }
            SignatureCheck::Untrusted => {
                if let Some(t) = policy.trusted.iter().find(|t| t.key.keyid() == sig.keyid) {
                    said = true;
                    report.fail(format!(
                        "signature {n}: its keyid label names trusted key {} (keyid {}…), but it verifies against no \
                         trusted key: the payload, its type or the signature was changed after signing (or another \
                         key signed under that label)",
                        t.label,
                        short(&sig.keyid)
                    ));
                }
            }
            SignatureCheck::Trusted(_) => {}
        }
    }
    if !said {
        explain_untrusted(report, envelope, message, payload);
    }
    false
}

/// Says why an envelope that no trusted key verifies is not attributable: signed by the
/// run's own one-off key (and then whether it is at least intact), or by a key that is
/// not trusted here. Only the development note of the payload is looked at.
fn explain_untrusted(report: &mut Verification, envelope: &Envelope, message: &[u8], payload: &[u8]) {
    let note = parse_statement(payload).ok().and_then(|(s, _, _)| s.predicate.signing);
    let decoded = || {
        envelope
            .signatures
            .iter()
            .filter_map(|s| decode_base64(&s.sig).ok().map(|(b, _)| b))
    };
    if let Some(note) = note {
        let intact = PublicKey::from_pem(&note.public_key)
            .ok()
            .filter(|k| k.keyid() == note.keyid)
            .is_some_and(|k| decoded().any(|b| verifies(&k, &b, message, true)));
        if intact {
            report.fail(format!(
                "signature: intact, but by the run's own one-off key {}: the result is development-only and not \
                 attributable to anyone",
                shown(&short(&note.keyid))
            ));
        } else {
            report.fail(
                "signature: verifies against neither a trusted key nor the one-off key the record names: the \
                 result was altered after signing, or signed by another key",
            );
        }
        return;
    }
    if report
        .findings
        .iter()
        .any(|f| f.text.starts_with("signature: no trusted key given"))
    {
        return;
    }
    let labels: Vec<String> = envelope
        .signatures
        .iter()
        .map(|s| {
            if s.keyid.is_empty() {
                "(no keyid label)".to_string()
            } else {
                shown(&short(&s.keyid))
            }
        })
        .collect();
    report.fail(format!(
        "signature: by key {} (as the keyid labels say), which is not among the trusted keys: no trusted key \
         verifies any of the {} signature(s)",
        labels.join(", "),
        envelope.signatures.len()
    ));
}

/// Whether `signature` (raw bytes) is `key`'s Ed25519 signature of `message`: with RFC
/// 8032's strict checks, or dalek's lenient ones (only to name the strict rule when it is
/// what refused a signature).
fn verifies(key: &PublicKey, signature: &[u8], message: &[u8], strict: bool) -> bool {
    use ed25519_dalek::Verifier as _;
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    if strict {
        key.key.verify_strict(message, &signature).is_ok()
    } else {
        key.key.verify(message, &signature).is_ok()
    }
}

fn check_policy(
    report: &mut Verification,
    record: &ResultRecord,
    conformance: &Conformance,
    policy: &Policy,
    simulated: bool,
) {
    if let Some(want) = &policy.require_profile {
        let have = &record.profile.id;
        if have == want {
            report.ok(format!("profile: {}, as required", shown(have)));
        } else {
            report.fail(format!("profile: {}, but {} is required", shown(have), shown(want)));
        }
    }
    if let Some(want) = &policy.require_profile_digest {
        let have = &record.profile.digest;
        if have == want {
            report.ok(format!("profile digest: {}, as required", shown(have)));
        } else {
            report.fail(format!(
                "profile digest: {}, but {} is required",
                shown(have),
                shown(want)
            ));
        }
    }
    if let Some(want) = policy.require_tier {
        let have = record.run.tier;
        if have == want {
            report.ok(format!("tier: {have}, as required"));
        } else {
            report.fail(format!("tier: {have}, but {want} is required"));
        }
    }
    if policy.require_certifying {
        if simulated {
            report.fail("certifying: the run was on a simulated device, which certifies nothing");
        } else if !record.profile.certifying {
            report.fail(format!(
                "certifying: profile {} does not certify",
                shown(&record.profile.id)
            ));
        } else {
            report.ok("certifying: a certifying profile on real devices, as required");
        }
    }
    if policy.require_conformant {
        if conformance.conformant {
            report.ok("conformance: conformant (decided from the outcomes), as required");
        } else {
            report.fail(format!(
                "conformance: {} (decided from the outcomes), but a conformant result is required",
                conformance.status.as_str()
            ));
        }
    }
}

/// Text from the file, made safe to print on one line: control characters, newlines and
/// escape sequences are escaped, and it is cut at 200 characters.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(200).collect();
    let mut out = cut.escape_debug().to_string();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

fn short(keyid: &str) -> String {
    keyid.chars().take(16).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The hex sha256 of `bytes` (used for executable and key digests).
pub fn sha256_of(bytes: &[u8]) -> String {
    sha256_hex(bytes)
}
