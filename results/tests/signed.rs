//! Signed results: the envelope format, the verifier's findings, and that no change to a
//! signed result goes unnoticed.
//!
//! `data/record.json` is the `result.json` of a default run (`cargo run -- run --out o`)
//! with its `signing` note removed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hilt_results::signed::{
    self, Envelope, Policy, PublicKey, SigningKey, Statement, TrustedKey, Unreadable, Verification,
};
use hilt_results::{FormatVersion, ResultRecord, Tier};
use proptest::prelude::*;

fn record() -> ResultRecord {
    ResultRecord::from_json(include_bytes!("data/record.json")).expect("the fixture is a valid record")
}

fn key() -> SigningKey {
    SigningKey::generate().expect("the OS has a random source")
}

fn trusting(keys: &[&SigningKey]) -> Policy {
    Policy {
        trusted: keys
            .iter()
            .enumerate()
            .map(|(i, k)| TrustedKey {
                label: format!("key{i}.pub"),
                key: k.public(),
            })
            .collect(),
        ..Policy::default()
    }
}

fn check(bytes: &[u8], policy: &Policy) -> Verification {
    signed::verify(bytes, policy).expect("the envelope is readable")
}

/// The failed findings' texts.
fn failures(v: &Verification) -> Vec<String> {
    v.findings.iter().filter(|f| !f.ok).map(|f| f.text.clone()).collect()
}

fn envelope(bytes: &[u8]) -> Envelope {
    serde_json::from_slice(bytes).expect("an envelope")
}

fn payload(bytes: &[u8]) -> Vec<u8> {
    BASE64.decode(envelope(bytes).payload).expect("base64")
}

fn reencode(env: &Envelope) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(env).expect("serialisable");
    bytes.push(b'\n');
    bytes
}

#[test]
fn pae_matches_the_dsse_specification_example() {
    assert_eq!(
        signed::pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
    assert_eq!(signed::pae("", b""), b"DSSEv1 0  0 ");
}

#[test]
fn keys_follow_rfc_8032_and_keyid_is_the_sha256_of_the_spki_der() {
    // RFC 8032 section 7.1, test 1: this secret key has public key d75a9801....
    let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    let mut der = hex("302e020100300506032b657004220420");
    der.extend(hex(seed));
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        BASE64.encode(&der)
    );
    let key = SigningKey::from_pkcs8_pem(&pem).expect("RFC 8032 key");
    let mut spki = hex("302a300506032b6570032100");
    spki.extend(hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
    let public = key.public();
    assert!(public.to_pem().contains(&BASE64.encode(&spki)), "{}", public.to_pem());
    assert_eq!(public.keyid(), signed::sha256_of(&spki));
    // The PEM written for the key reads back as the same key.
    let again = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem().expect("encodable")).expect("readable");
    assert_eq!(again.public(), public);
    assert_eq!(PublicKey::from_pem(&public.to_pem()).expect("readable"), public);
}

#[test]
fn a_signed_result_verifies_with_its_key_and_carries_the_record() {
    let (lab, other) = (key(), key());
    let bytes = lab.sign(&record()).expect("signable");
    let v = check(&bytes, &trusting(&[&other, &lab]));
    assert!(v.verified(), "{:?}", v.findings);
    assert_eq!(v.signer.as_deref(), Some("key1.pub"));
    assert_eq!(v.record, Some(record()));
    // The envelope is compact JSON with one final newline, and the statement is in-toto's.
    assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1);
    let statement: Statement = serde_json::from_slice(&payload(&bytes)).expect("a statement");
    assert_eq!(statement.statement_type, "https://in-toto.io/Statement/v1");
    assert_eq!(statement.subject.len(), record().devices.len());
    assert_eq!(statement.subject[0].name, "hilt simulated accelerator (sim0)");
    assert_eq!(statement.subject[0].digest["sha256"].len(), 64);
}

#[test]
fn development_signatures_are_intact_but_never_attributable() {
    let dev = key();
    let mut rec = record();
    let bytes = dev.sign_as_development(&mut rec).expect("signable");
    let lab = key();
    for policy in [Policy::default(), trusting(&[&lab])] {
        let v = check(&bytes, &policy);
        assert!(!v.verified());
        assert!(
            failures(&v)
                .iter()
                .any(|f| f.contains("development-only and not attributable")),
            "{:?}",
            v.findings
        );
    }
    // Even someone who trusts the one-off key gets no attributable result.
    let v = check(&bytes, &trusting(&[&dev]));
    assert!(!v.verified());
    assert!(
        failures(&v).iter().any(|f| f.starts_with("signing:")),
        "{:?}",
        v.findings
    );

    // Swap in a record the one-off key did not sign: the note's key no longer matches.
    let mut env = envelope(&bytes);
    let forged = String::from_utf8(payload(&bytes))
        .expect("utf-8")
        .replace("\"conformant\":true", "\"conformant\":false");
    env.payload = BASE64.encode(forged);
    let v = check(&reencode(&env), &Policy::default());
    assert!(
        failures(&v).iter().any(|f| f.contains("the result was altered")),
        "{:?}",
        v.findings
    );
}

#[test]
fn unreadable_input_is_an_error_not_a_panic() {
    let bytes = key().sign(&record()).expect("signable");
    let policy = Policy::default();
    assert!(matches!(signed::verify(b"", &policy), Err(Unreadable::Empty)));
    assert!(matches!(signed::verify(b" \n", &policy), Err(Unreadable::Empty)));
    assert!(matches!(
        signed::verify(&bytes[..bytes.len() / 2], &policy),
        Err(Unreadable::Truncated { .. })
    ));
    assert!(matches!(
        signed::verify(b"\x00garbage", &policy),
        Err(Unreadable::NotJson(_))
    ));
    let truncated = signed::verify(&bytes[..100], &policy)
        .expect_err("truncated")
        .to_string();
    assert!(truncated.contains("truncated"), "{truncated}");
}

#[test]
fn each_kind_of_bad_envelope_gets_its_own_finding() {
    let (lab, attacker) = (key(), key());
    let policy = trusting(&[&lab]);
    let good = lab.sign(&record()).expect("signable");
    let first_failure = |bytes: &[u8], policy: &Policy| {
        let v = check(bytes, policy);
        assert!(!v.verified());
        failures(&v).remove(0)
    };

    // An unsigned record, or some other JSON.
    let unsigned = serde_json::to_vec(&record()).expect("serialisable");
    assert!(first_failure(&unsigned, &policy).contains("unsigned result record"));
    assert!(first_failure(br#"{"payload":"","signatures":[]}"#, &policy).contains("not a DSSE envelope"));

    // A wrong payload type.
    let mut env = envelope(&good);
    env.payload_type = "application/json".into();
    assert!(first_failure(&reencode(&env), &policy).contains("payload type: \"application/json\""));

    // Re-indented: the bytes are no longer the ones signed.
    let pretty = serde_json::to_vec_pretty(&envelope(&good)).expect("serialisable");
    assert!(first_failure(&pretty, &policy).contains("canonical form"));

    // No trusted key given at all.
    assert!(first_failure(&good, &Policy::default()).contains("no trusted key given"));

    // A valid signature, but by a key nobody trusts.
    assert!(
        first_failure(&attacker.sign(&record()).expect("signable"), &policy).contains("not among the trusted keys")
    );

    // A changed record signed by another key that claims the trusted key's id.
    let mut forged = record();
    forged.conformance.conformant = !forged.conformance.conformant;
    let mut env = envelope(&attacker.sign(&forged).expect("signable"));
    env.signatures[0].keyid = lab.public().keyid().into();
    assert!(first_failure(&reencode(&env), &policy).contains("does not verify"));

    // No signature.
    let mut env = envelope(&good);
    env.signatures.clear();
    assert!(first_failure(&reencode(&env), &policy).contains("no signature"));

    // A record of a major format version this reader does not know, properly signed.
    let mut future = serde_json::to_value(record()).expect("serialisable");
    future["format"] = serde_json::json!({ "major": 2, "minor": 0 });
    let statement = serde_json::json!({
        "_type": signed::STATEMENT_TYPE, "subject": [], "predicateType": signed::PREDICATE_TYPE, "predicate": future,
    });
    let bytes = lab.sign_payload(&serde_json::to_vec(&statement).expect("serialisable"));
    assert!(first_failure(&bytes, &policy).contains("2.0 is not supported"));

    // Subjects that do not name the record's devices, properly signed.
    let mut statement: Statement = serde_json::from_slice(&payload(&good)).expect("a statement");
    statement.subject[0].name = "another device".into();
    let bytes = lab.sign_payload(&serde_json::to_vec(&statement).expect("serialisable"));
    assert!(first_failure(&bytes, &policy).contains("subjects"));
}

#[test]
fn the_policy_requires_profile_tier_and_conformance() {
    let lab = key();
    let bytes = lab.sign(&record()).expect("signable");
    let rec = record();
    let mut policy = trusting(&[&lab]);
    policy.require_profile = Some(rec.profile.id.clone());
    policy.require_tier = Some(rec.run.tier);
    policy.require_conformant = true;
    assert!(rec.conformance.conformant, "the fixture is a conformant run");
    let v = check(&bytes, &policy);
    assert!(v.verified(), "{:?}", v.findings);

    policy.require_profile = Some("nvidia-hopper".into());
    policy.require_tier = Some(Tier::Certification);
    let v = check(&bytes, &policy);
    assert_eq!(
        failures(&v),
        vec![
            "profile: sim-reference, but nvidia-hopper is required".to_string(),
            "tier: standard, but certification is required".to_string(),
        ]
    );

    let mut failing = record();
    failing.conformance.conformant = false;
    failing.conformance.status = hilt_results::ConformanceStatus::NotConformant;
    let mut policy = trusting(&[&lab]);
    policy.require_conformant = true;
    let v = check(&lab.sign(&failing).expect("signable"), &policy);
    assert_eq!(
        failures(&v),
        vec!["conformance: not_conformant, but a conformant result is required".to_string()]
    );
}

#[test]
fn newer_minor_versions_with_unknown_fields_still_verify() {
    let lab = key();
    let mut value = serde_json::to_value(record()).expect("serialisable");
    value["format"]["minor"] = 99.into();
    value["devices"][0]["firmware_added_later"] = "1.2.3".into();
    value["added_later"] = serde_json::json!({ "x": 1 });
    let rec: ResultRecord = serde_json::from_value(value.clone()).expect("readers ignore unknown fields");
    assert_eq!(rec.format, FormatVersion { major: 1, minor: 99 });
    // The subjects are computed over the device as written, unknown fields included.
    let devices = value["devices"].as_array().expect("devices").clone();
    let signed_rec = signed::subjects_of(&rec);
    let statement = serde_json::json!({
        "_type": signed::STATEMENT_TYPE,
        "subject": devices.iter().map(|d| serde_json::json!({
            "name": "hilt simulated accelerator (sim0)",
            "digest": { "sha256": sha_of_sorted(d) },
        })).collect::<Vec<_>>(),
        "predicateType": signed::PREDICATE_TYPE,
        "predicate": value,
    });
    assert_ne!(signed_rec[0].digest["sha256"], sha_of_sorted(&devices[0]));
    let v = check(
        &lab.sign_payload(&serde_json::to_vec(&statement).expect("json")),
        &trusting(&[&lab]),
    );
    assert!(v.verified(), "{:?}", v.findings);
}

#[test]
fn private_keys_readable_by_others_are_refused_and_never_shown() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lab.key");
    let lab = key();
    let pem = lab.to_pkcs8_pem().expect("encodable");
    std::fs::write(&path, &pem).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = SigningKey::read(&path).expect_err("mode 0644 is refused").to_string();
    assert!(err.contains("mode 0644") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let read = SigningKey::read(&path).expect("mode 0600 is fine");
    assert_eq!(read.public(), lab.public());
    let body = pem.lines().nth(1).expect("a body line");
    assert!(!format!("{read:?}").contains(body));
    std::fs::write(&path, "not a key").expect("write");
    let err = SigningKey::read(&path).expect_err("not a key").to_string();
    assert!(err.contains("lab.key") && err.contains("not an Ed25519"), "{err}");
}

#[test]
fn nothing_from_an_untrusted_payload_is_reported_and_file_text_cannot_fake_lines() {
    let (lab, attacker) = (key(), key());
    let mut forged = record();
    forged.profile.id = "x\nok   signature: valid\nverified: out/result.dsse.json\u{1b}[31m".into();
    let bytes = attacker.sign(&forged).expect("signable");
    let v = check(&bytes, &trusting(&[&lab]));
    assert!(!v.verified());
    assert!(v.record.is_none(), "an untrusted payload is not handed out");
    assert!(
        v.findings.iter().all(|f| !f.text.contains("profile")),
        "{:?}",
        v.findings
    );

    // The same text signed by the trusted key is reported, escaped onto one line.
    let bytes = lab.sign(&forged).expect("signable");
    let v = check(&bytes, &trusting(&[&lab]));
    let ran = v
        .findings
        .iter()
        .find(|f| f.text.starts_with("ran:"))
        .expect("a ran line");
    assert!(!ran.text.contains('\n') && !ran.text.contains('\u{1b}'), "{}", ran.text);
    assert!(ran.text.contains("x\\nok   signature"), "{}", ran.text);

    // A payload type with a line break in it.
    let mut env = envelope(&bytes);
    env.payload_type = "x\nverified: yes".into();
    let v = check(&reencode(&env), &trusting(&[&lab]));
    assert!(v.findings.iter().all(|f| !f.text.contains('\n')), "{:?}", v.findings);
}

#[test]
fn a_simulated_run_never_meets_require_certifying() {
    let lab = key();
    let rec = record();
    assert!(rec.devices.iter().any(|d| d.simulated), "the fixture is a sim run");
    let mut policy = trusting(&[&lab]);
    policy.require_certifying = true;
    policy.require_profile_digest = Some(rec.profile.digest.clone());
    let v = check(&lab.sign(&rec).expect("signable"), &policy);
    assert_eq!(
        failures(&v),
        vec!["certifying: the run was on a simulated device, which certifies nothing".to_string()]
    );
    policy.require_profile_digest = Some("sha256:00".into());
    let v = check(&lab.sign(&rec).expect("signable"), &policy);
    assert!(
        failures(&v).iter().any(|f| f.starts_with("profile digest:")),
        "{:?}",
        v.findings
    );
}

#[test]
fn extra_signatures_are_listed_and_a_broken_trusted_one_fails() {
    let (lab, other) = (key(), key());
    let good = lab.sign(&record()).expect("signable");
    let mut env = envelope(&good);
    let extra = envelope(&other.sign(&record()).expect("signable")).signatures[0].clone();
    env.signatures.push(extra);
    let v = check(&reencode(&env), &trusting(&[&lab]));
    assert!(v.verified(), "{:?}", v.findings);
    assert!(
        v.findings
            .iter()
            .any(|f| f.text.contains("not trusted here, not checked"))
    );

    // A second signature entry claiming the trusted key but not verifying is tampering.
    let mut bad = env.signatures[0].clone();
    bad.sig = env.signatures[1].sig.clone();
    env.signatures.insert(0, bad);
    let v = check(&reencode(&env), &trusting(&[&lab]));
    assert!(!v.verified());
    assert!(
        failures(&v).iter().any(|f| f.contains("does not verify")),
        "{:?}",
        v.findings
    );
}

#[test]
fn records_that_would_not_read_back_are_not_signed() {
    let lab = key();
    let mut rec = record();
    rec.outcomes[0].measurements[0].value = f64::NAN;
    let err = lab.sign(&rec).expect_err("NaN cannot be signed").to_string();
    assert!(err.contains("does not read back"), "{err}");
    // A development note of another key is not signed over either.
    let mut rec = record();
    rec.signing = Some(key().development_note());
    let err = lab.sign(&rec).expect_err("another key's note").to_string();
    assert!(err.contains("remove its `signing` note"), "{err}");
    // A lab-signed record marked development-only is inconsistent.
    let dev = key();
    let mut rec = record();
    rec.signing = Some(dev.development_note());
    let statement = serde_json::json!({
        "_type": signed::STATEMENT_TYPE,
        "subject": signed::subjects_of(&rec),
        "predicateType": signed::PREDICATE_TYPE,
        "predicate": rec,
    });
    let bytes = lab.sign_payload(&serde_json::to_vec(&statement).expect("json"));
    let v = check(&bytes, &trusting(&[&lab]));
    assert!(
        failures(&v).iter().any(|f| f.starts_with("signing:")),
        "{:?}",
        v.findings
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_changed_byte_of_the_envelope_fails(at in any::<prop::sample::Index>(), by in 1u8..=255) {
        let (lab, bytes) = signed_fixture();
        let mut changed = bytes.clone();
        let i = at.index(changed.len());
        changed[i] ^= by;
        let verified = signed::verify(&changed, &trusting(&[lab])).is_ok_and(|v| v.verified());
        prop_assert!(!verified, "byte {} changed by {:#04x} went unnoticed", i, by);
    }

    #[test]
    fn any_changed_byte_of_the_payload_fails(at in any::<prop::sample::Index>(), by in 1u8..=255) {
        let (lab, bytes) = signed_fixture();
        let mut env = envelope(bytes);
        let mut body = payload(bytes);
        let i = at.index(body.len());
        body[i] ^= by;
        env.payload = BASE64.encode(&body);
        let v = check(&reencode(&env), &trusting(&[lab]));
        prop_assert!(!v.verified());
        prop_assert!(failures(&v).iter().any(|f| f.contains("does not verify")), "{:?}", v.findings);
    }
}

/// One key and one envelope for all proptest cases (signing is the slow part).
fn signed_fixture() -> &'static (SigningKey, Vec<u8>) {
    static FIXTURE: std::sync::OnceLock<(SigningKey, Vec<u8>)> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let lab = key();
        let bytes = lab.sign(&record()).expect("signable");
        (lab, bytes)
    })
}

fn sha_of_sorted(value: &serde_json::Value) -> String {
    // serde_json's own map is sorted by key unless `preserve_order` is on; sort explicitly.
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut entries: Vec<_> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut out = serde_json::Map::new();
                for (k, v) in entries {
                    out.insert(k.clone(), sorted(v));
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    signed::sha256_of(&serde_json::to_vec(&sorted(value)).expect("json"))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
