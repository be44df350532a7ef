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

/// RFC 8032 section 7.1, test 1: a fixed key, so that envelopes signed with it are the
/// same bytes every time (Ed25519 is deterministic).
fn rfc8032_key() -> SigningKey {
    let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    let mut der = hex("302e020100300506032b657004220420");
    der.extend(hex(seed));
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        BASE64.encode(&der)
    );
    SigningKey::from_pkcs8_pem(&pem).expect("RFC 8032 key")
}

#[test]
fn the_handed_envelope_with_an_empty_keyid_verifies() {
    // `data/keyid-empty.dsse.json`: the fixture record signed with the RFC 8032 key, its
    // keyid written as cosign and other DSSE signers write it, `""`. Regenerate with
    // HILT_BLESS=1 (the bytes are deterministic).
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keyid-empty.dsse.json");
    let fixed = rfc8032_key();
    let mut env = envelope(&fixed.sign(&record()).expect("signable"));
    env.signatures[0].keyid = String::new();
    let fresh = reencode(&env);
    if std::env::var_os("HILT_BLESS").is_some() {
        std::fs::write(path, &fresh).expect("write fixture");
    }
    let bytes = std::fs::read(path).expect("the fixture exists (HILT_BLESS=1 writes it)");
    assert_eq!(
        bytes, fresh,
        "the fixture is the fixture record signed by the RFC 8032 key"
    );
    let v = check(&bytes, &trusting(&[&key(), &fixed]));
    assert!(v.verified(), "{:?}", v.findings);
    assert_eq!(v.signer.as_deref(), Some("key1.pub"));
    let v = check(&bytes, &trusting(&[&key()]));
    assert!(!v.verified(), "an untrusted key stays untrusted");
}

#[test]
fn keys_follow_rfc_8032_and_keyid_is_the_sha256_of_the_spki_der() {
    // RFC 8032 section 7.1, test 1: this secret key has public key d75a9801....
    let key = rfc8032_key();
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
    assert!(first_failure(&reencode(&env), &policy).contains("its keyid label names trusted key key0.pub"));

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

    let mut policy = trusting(&[&lab]);
    policy.require_conformant = true;
    let v = check(&lab.sign(&failing_record()).expect("signable"), &policy);
    assert_eq!(
        failures(&v),
        vec![
            "conformance: not_conformant (decided from the outcomes), but a conformant result is required".to_string()
        ]
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
            .any(|f| f.text.starts_with("signature 2 (keyid label ") && f.text.contains("so it is not counted"))
    );

    // A signature under the trusted key's label that verifies against no trusted key is
    // skipped, as DSSE says: the signed content is the same, and a valid one remains.
    let mut bad = env.signatures[0].clone();
    bad.sig = env.signatures[1].sig.clone();
    env.signatures.insert(0, bad);
    let v = check(&reencode(&env), &trusting(&[&lab]));
    assert!(v.verified(), "{:?}", v.findings);
    assert_eq!(v.signer.as_deref(), Some("key0.pub"));
    assert!(
        v.findings.iter().all(|f| !f.text.contains("altered")),
        "{:?}",
        v.findings
    );

    // Both keys trusted: both are named.
    let v = check(&reencode(&env), &trusting(&[&lab, &other]));
    let valid: Vec<&str> = v
        .findings
        .iter()
        .filter(|f| f.text.starts_with("signature: valid"))
        .map(|f| f.text.as_str())
        .collect();
    assert_eq!(valid.len(), 2, "{valid:?}");
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

/// The fixture record with its first outcome failing, summary and decision as a run
/// would write them: a platform that is not conformant.
fn failing_record() -> ResultRecord {
    let mut rec = record();
    let o = &mut rec.outcomes[0];
    assert_eq!(
        o.level,
        hilt_results::Level::Mandatory,
        "the first check of the fixture decides"
    );
    o.verdict = hilt_results::Verdict::Fail;
    o.reason = Some("residue found".into());
    rec.summary = hilt_results::Summary::tally(rec.summary.selected, &rec.outcomes);
    rec.conformance = rec.derived_conformance();
    assert_eq!(rec.conformance.status, hilt_results::ConformanceStatus::NotConformant);
    rec
}

#[test]
fn keyid_is_a_hint_and_the_key_that_verifies_decides() {
    let (lab, other) = (key(), key());
    let good = lab.sign(&record()).expect("signable");
    let policy = trusting(&[&other, &lab]);
    // `"keyid": ""` as cosign and other DSSE signers write it: the handed input.
    let mut env = envelope(&good);
    env.signatures[0].keyid = String::new();
    let v = check(&reencode(&env), &policy);
    assert!(v.verified(), "{:?}", v.findings);
    assert_eq!(
        v.signer.as_deref(),
        Some("key1.pub"),
        "attribution from the key that verifies"
    );
    assert!(
        v.findings
            .iter()
            .any(|f| f.text.starts_with("signature: valid, by trusted key key1.pub")
                && f.text.contains("no keyid label, an unauthenticated hint")),
        "{:?}",
        v.findings
    );
    // A label naming another trusted key, a label in another scheme, and no keyid at all
    // (or `null`, which DSSE reads as unset) change nothing.
    let text = String::from_utf8(good.clone()).expect("utf-8");
    let keyid = lab.public().keyid().to_string();
    for changed in [
        text.replace(&keyid, other.public().keyid()),
        text.replace(&keyid, "SHA256:ssh-style-fingerprint"),
        text.replace(&format!("\"keyid\":\"{keyid}\","), ""),
        text.replace(&format!("\"keyid\":\"{keyid}\""), "\"keyid\":null"),
    ] {
        assert_ne!(changed, text);
        let v = check(changed.as_bytes(), &policy);
        assert!(v.verified(), "{changed}: {:?}", v.findings);
        assert_eq!(v.signer.as_deref(), Some("key1.pub"));
    }
    // A valid signature by an untrusted key stays untrusted, whatever its label says.
    let mut env = envelope(&other.sign(&record()).expect("signable"));
    env.signatures[0].keyid = String::new();
    let v = check(&reencode(&env), &trusting(&[&lab]));
    assert!(!v.verified());
    assert!(
        failures(&v)[0].contains("(no keyid label)") && failures(&v)[0].contains("not among the trusted keys"),
        "{:?}",
        v.findings
    );
}

#[test]
fn both_base64_alphabets_padded_or_not_and_unknown_fields_are_read() {
    let lab = key();
    let policy = trusting(&[&lab]);
    // Bytes 0x3e 0x3f in every alignment make `+` and `/` in standard base64.
    let mut rec = record();
    rec.profile.title = "?>?>?>?>?>?>".into();
    let good = lab.sign(&rec).expect("signable");
    let env = envelope(&good);
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let body = payload(&good);
    let sig = BASE64.decode(&env.signatures[0].sig).expect("base64");
    for engine in [&URL_SAFE, &URL_SAFE_NO_PAD, &STANDARD_NO_PAD] {
        let mut e = env.clone();
        e.payload = engine.encode(&body);
        e.signatures[0].sig = engine.encode(&sig);
        let v = check(&reencode(&e), &policy);
        assert!(v.verified(), "{:?}", v.findings);
    }
    // The URL-safe alphabet actually differs here, so the test is not vacuous.
    assert_ne!(URL_SAFE.encode(&body), BASE64.encode(&body));
    // Mixing the alphabets in one text is neither of them.
    let mixed = format!("{}-_", &BASE64.encode(&body)[..8]) + "+/AA";
    let mut e = env.clone();
    e.payload = mixed;
    let f = failures(&check(&reencode(&e), &policy)).remove(0);
    assert!(
        f.starts_with("payload: is not base64 in the standard or the URL-safe alphabet"),
        "{f}"
    );

    // Fields DSSE and in-toto do not define are ignored, in the envelope and in each signature.
    let mut value: serde_json::Value = serde_json::from_slice(&good).expect("json");
    value["x-transparency-log"] = serde_json::json!({ "index": 7 });
    value["signatures"][0]["cert"] = "".into();
    let v = check(&serde_json::to_vec(&value).expect("json"), &policy);
    assert!(v.verified(), "{:?}", v.findings);

    // A field given twice is ambiguous and refused.
    let text = String::from_utf8(good.clone()).expect("utf-8");
    let twice = text.replacen("{\"payload\":", "{\"payload\":\"e30=\",\"payload\":", 1);
    let f = failures(&check(twice.as_bytes(), &policy)).remove(0);
    assert!(f.contains("duplicate field `payload`"), "{f}");

    // The payload type is matched exactly, as DSSE's types are case-sensitive.
    let mut e = env.clone();
    e.payload_type = "application/vnd.in-toto+JSON".into();
    let f = failures(&check(&reencode(&e), &policy)).remove(0);
    assert!(
        f.contains("hilt reads only application/vnd.in-toto+json (an exact, case-sensitive match"),
        "{f}"
    );
}

#[test]
fn a_reformatted_envelope_verifies_and_is_never_called_altered() {
    let lab = key();
    let good = lab.sign(&record()).expect("signable");
    let pretty = serde_json::to_vec_pretty(&envelope(&good)).expect("serialisable");
    // Keys in another order, as another JSON writer may put them.
    let value: serde_json::Value = serde_json::from_slice(&good).expect("json");
    let reordered = format!(
        "{{ \"signatures\": {}, \"payloadType\": {}, \"payload\": {} }}",
        value["signatures"], value["payloadType"], value["payload"]
    );
    for bytes in [pretty, reordered.into_bytes()] {
        let v = check(&bytes, &trusting(&[&lab]));
        assert!(v.verified(), "{:?}", v.findings);
        assert!(
            v.findings[0]
                .text
                .contains("reformatted after signing or written by another DSSE signer"),
            "{:?}",
            v.findings
        );
        assert!(
            v.findings.iter().all(|f| !f.text.contains("altered")),
            "{:?}",
            v.findings
        );
    }
}

#[test]
fn lenient_only_signatures_name_the_strict_rule() {
    // The identity point is a public key of small order: with R = identity and S = 0 the
    // lenient Ed25519 equation holds for every message, which RFC 8032's strict checks refuse.
    let mut spki = hex("302a300506032b6570032100");
    let mut identity = [0u8; 32];
    identity[0] = 1;
    spki.extend_from_slice(&identity);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        BASE64.encode(&spki)
    );
    let weak = PublicKey::from_pem(&pem).expect("a point on the curve");
    let mut env = envelope(&key().sign(&record()).expect("signable"));
    let mut sig = identity.to_vec();
    sig.extend_from_slice(&[0u8; 32]);
    env.signatures[0].sig = BASE64.encode(&sig);
    let policy = Policy {
        trusted: vec![TrustedKey {
            label: "weak.pub".into(),
            key: weak,
        }],
        ..Policy::default()
    };
    let v = check(&reencode(&env), &policy);
    assert!(!v.verified());
    assert!(
        failures(&v)[0].contains("only under lenient Ed25519 rules; hilt requires RFC 8032's strict"),
        "{:?}",
        v.findings
    );
}

#[test]
fn verification_decides_conformance_from_the_outcomes_and_keeps_it_apart_from_the_signature() {
    let lab = key();
    let policy = trusting(&[&lab]);
    // A failing platform, properly signed: the signature verifies, the platform does not conform.
    let v = check(&lab.sign(&failing_record()).expect("signable"), &policy);
    assert!(v.verified(), "{:?}", v.findings);
    let c = v.conformance.expect("decided");
    assert_eq!(c.status, hilt_results::ConformanceStatus::NotConformant);

    // Verdicts edited to pass while the summary still counts the failure, then signed
    // around `hilt sign`: the signature is valid, the record is not believed.
    let mut edited = failing_record();
    edited.outcomes[0].verdict = hilt_results::Verdict::Pass;
    edited.outcomes[0].reason = None;
    edited.conformance = record().conformance;
    let statement = serde_json::json!({
        "_type": signed::STATEMENT_TYPE,
        "subject": signed::subjects_of(&edited),
        "predicateType": signed::PREDICATE_TYPE,
        "predicate": edited,
    });
    let mut policy = policy.clone();
    policy.require_conformant = true;
    let v = check(
        &lab.sign_payload(&serde_json::to_vec(&statement).expect("json")),
        &policy,
    );
    assert!(!v.verified());
    assert!(
        v.findings
            .iter()
            .any(|f| f.ok && f.text.starts_with("signature: valid"))
    );
    let f = failures(&v);
    assert!(f[0].starts_with("record: summary: the record counts"), "{f:?}");

    // The stored decision edited alone: the outcomes decide.
    let mut edited = failing_record();
    edited.conformance = record().conformance;
    let statement = serde_json::json!({
        "_type": signed::STATEMENT_TYPE,
        "subject": signed::subjects_of(&edited),
        "predicateType": signed::PREDICATE_TYPE,
        "predicate": edited,
    });
    let v = check(
        &lab.sign_payload(&serde_json::to_vec(&statement).expect("json")),
        &policy,
    );
    assert_eq!(
        v.conformance.as_ref().map(|c| c.status),
        Some(hilt_results::ConformanceStatus::NotConformant)
    );
    let f = failures(&v);
    assert!(
        f.iter().any(|f| f.starts_with(
            "record: conformance: the record says conformant (conformant: true), but its outcomes give not_conformant"
        )),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|f| f.starts_with("conformance: not_conformant (decided from the outcomes)")),
        "{f:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// DSSE signs the payload and its type, not the envelope's layout or its keyid labels:
    /// a changed byte either fails verification, or left exactly the signed content (the
    /// same payload bytes and record), and then it is never called an alteration.
    #[test]
    fn no_changed_byte_of_the_envelope_changes_what_verifies(at in any::<prop::sample::Index>(), by in 1u8..=255) {
        let (lab, bytes) = signed_fixture();
        let mut changed = bytes.clone();
        let i = at.index(changed.len());
        changed[i] ^= by;
        if let Ok(v) = signed::verify(&changed, &trusting(&[lab])) && v.verified() {
            let env: Envelope = serde_json::from_slice(&changed).expect("it verified, so it reads");
            let (body, _) = signed::decode_base64(&env.payload).expect("it verified, so it decodes");
            prop_assert_eq!(body, payload(bytes), "byte {} changed by {:#04x}", i, by);
            prop_assert_eq!(v.record, Some(record()));
            prop_assert!(v.findings.iter().all(|f| !f.text.contains("altered")), "{:?}", v.findings);
        }
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
        prop_assert!(failures(&v).iter().any(|f| f.contains("verifies against no trusted key")), "{:?}", v.findings);
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
