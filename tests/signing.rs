//! Signing and verifying results through the command line, and the same signatures
//! checked by implementations that share no code with hilt: OpenSSL, and Python's
//! securesystemslib DSSE envelope, both ways.
//!
//! The OpenSSL tests need the OpenSSL 3 command line (`pkeyutl -rawin`). Without it they
//! fail, saying so, unless `HILT_SKIP_OPENSSL=1` asks to skip them: a skipped test shows
//! as passed in `cargo test`, so skipping must be a visible choice, never a default. The
//! securesystemslib tests need `python3` able to import it (`ci/test.sh` installs the
//! pinned version); without it they are skipped with the reason on stderr, unless
//! `HILT_REQUIRE_SECURESYSTEMSLIB=1` (set by `ci/test.sh`) makes that a failure.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `hilt ARGS` in `dir`.
fn hilt_in(dir: &Path, args: &[&str]) -> Output {
    common::command()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("hilt runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Hides key ids (they change with every key).
fn redact_keys(text: &str) -> String {
    let ids = regex_lite::Regex::new(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{16}\b").expect("pattern");
    ids.replace_all(text, "[hex]").into_owned()
}

/// A directory with a lab key pair (`lab.key`, `lab.pub`) and a signed run in `out/`.
fn signed_run() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let keygen = hilt_in(dir.path(), &["keygen", "--out", "lab"]);
    assert!(keygen.status.success(), "{}", text(&keygen));
    let run = hilt_in(dir.path(), &["run", "-q", "--out", "out", "--sign-key", "lab.key"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(
        regex_lite::Regex::new(r"hilt: signed in out/\d{8}T\d{6}Z-[0-9a-f]{8}/result\.dsse\.json")
            .expect("re")
            .is_match(&text(&run)),
        "{}",
        text(&run)
    );
    dir
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = hilt_in(dir.path(), &["keygen", "--out", "lab"]);
    assert!(out.status.success(), "{}", text(&out));
    let mode = std::fs::metadata(dir.path().join("lab.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let private = std::fs::read_to_string(dir.path().join("lab.key")).expect("key");
    let public = std::fs::read_to_string(dir.path().join("lab.pub")).expect("pub");
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    // The private key is never printed.
    let body = private.lines().nth(1).expect("body");
    assert!(!text(&out).contains(body));

    let again = hilt_in(dir.path(), &["keygen", "--out", "lab"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("lab.key already exists"), "{}", text(&again));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("lab.key")).expect("key"),
        private
    );
}

#[test]
fn a_run_signed_with_a_lab_key_verifies_and_says_what_it_checked() {
    let dir = signed_run();
    let out = hilt_in(
        dir.path(),
        &[
            "verify",
            "out/latest/result.dsse.json",
            "--trusted-key",
            "lab.pub",
            "--require-profile",
            "sim-reference",
            "--require-tier",
            "standard",
            "--require-conformant",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    insta::assert_snapshot!(redact_keys(&text(&out)));
}

#[test]
fn verification_failures_exit_1_and_unreadable_input_exits_2() {
    let dir = signed_run();
    let path = dir.path().join("out/latest/result.dsse.json");
    let good = std::fs::read(&path).expect("envelope");
    let other = hilt_in(dir.path(), &["keygen", "--out", "other"]);
    assert!(other.status.success());

    // Another key is trusted, not the signer's.
    let out = hilt_in(
        dir.path(),
        &["verify", "out/latest/result.dsse.json", "--trusted-key", "other.pub"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not among the trusted keys"), "{}", text(&out));

    // A requirement the result does not meet.
    let out = hilt_in(
        dir.path(),
        &[
            "verify",
            "out/latest/result.dsse.json",
            "--trusted-key",
            "lab.pub",
            "--require-tier",
            "certification",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FAIL tier: standard, but certification is required"));

    // One flipped byte in the middle of the payload.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    std::fs::write(&path, &flipped).expect("write");
    let out = hilt_in(
        dir.path(),
        &["verify", "out/latest/result.dsse.json", "--trusted-key", "lab.pub"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Empty, truncated, not JSON, missing: unreadable.
    for (bytes, says) in [
        (&b""[..], "the file is empty"),
        (&good[..good.len() / 3], "truncated"),
        (&b"<html>proxy error</html>"[..], "not JSON"),
    ] {
        std::fs::write(&path, bytes).expect("write");
        let out = hilt_in(
            dir.path(),
            &["verify", "out/latest/result.dsse.json", "--trusted-key", "lab.pub"],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
    }
    let out = hilt_in(dir.path(), &["verify", "nowhere.json", "--trusted-key", "lab.pub"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = hilt_in(
        dir.path(),
        &["verify", "out/latest/result.json", "--trusted-key", "other.pub"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::fs::write(
        dir.path().join("junk.pub"),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .expect("write");
    let out = hilt_in(
        dir.path(),
        &["verify", "out/latest/result.json", "--trusted-key", "junk.pub"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("not an Ed25519 SPKI PEM public key"),
        "{}",
        text(&out)
    );
}

#[test]
fn messages_say_what_is_wrong_and_what_to_do() {
    let dir = signed_run();
    // A private key given where a public one belongs.
    for command in ["verify", "report"] {
        let out = hilt_in(
            dir.path(),
            &[command, "out/latest/result.dsse.json", "--trusted-key", "lab.key"],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("lab.key: this is a private key, not a public one")
                && text(&out).contains("openssl pkey -in NAME.key -pubout -out NAME.pub"),
            "{command}: {}",
            text(&out)
        );
        assert!(!text(&out).contains("BEGIN PRIVATE KEY"), "key material is never shown");
    }
    // A public key given to sign with.
    let out = hilt_in(dir.path(), &["sign", "out/latest/result.json", "--key", "lab.pub"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));

    // `--out NAME.key` names the pair, never NAME.key.key.
    for name in ["mykey.key", "theirs.pub"] {
        let out = hilt_in(dir.path(), &["keygen", "--out", name]);
        assert!(out.status.success(), "{}", text(&out));
        let stem = name.rsplit_once('.').expect("suffix").0;
        for file in [format!("{stem}.key"), format!("{stem}.pub")] {
            assert!(dir.path().join(&file).exists(), "{file}: {}", text(&out));
        }
        assert!(!dir.path().join(format!("{name}.key")).exists());
        assert!(!dir.path().join(format!("{name}.pub")).exists());
    }

    // The unsigned record given to verify: ask for the envelope, never "sign it".
    let out = hilt_in(
        dir.path(),
        &["verify", "out/latest/result.json", "--trusted-key", "lab.pub"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("ask whoever ran it for the signed result.dsse.json"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("hilt sign"), "{}", text(&out));

    // A pretty-printed envelope: reformatted, never altered, and it verifies.
    let envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/latest/result.dsse.json")).expect("read"))
            .expect("json");
    std::fs::write(
        dir.path().join("pretty.dsse.json"),
        serde_json::to_vec_pretty(&envelope).expect("json"),
    )
    .expect("write");
    let out = hilt_in(dir.path(), &["verify", "pretty.dsse.json", "--trusted-key", "lab.pub"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("reformatted after signing"), "{}", text(&out));
    assert!(!text(&out).contains("altered"), "{}", text(&out));
}

#[test]
fn an_envelope_with_an_empty_keyid_verifies_by_the_key_that_signed() {
    // As cosign and other DSSE signers write it: `"keyid": ""`.
    let dir = signed_run();
    let path = dir.path().join("out/latest/result.dsse.json");
    let mut envelope: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    envelope["signatures"][0]["keyid"] = "".into();
    std::fs::write(&path, serde_json::to_vec(&envelope).expect("json")).expect("write");
    assert!(hilt_in(dir.path(), &["keygen", "--out", "other"]).status.success());
    let out = hilt_in(
        dir.path(),
        &[
            "verify",
            "out/latest/result.dsse.json",
            "--trusted-key",
            "other.pub",
            "--trusted-key",
            "lab.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("verified: out/latest/result.dsse.json: the signature is valid (signed by lab.pub)"),
        "{}",
        text(&out)
    );
}

#[test]
fn sign_refuses_claims_that_do_not_follow_and_verify_keeps_signature_and_platform_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(hilt_in(dir.path(), &["keygen", "--out", "lab"]).status.success());
    // A failing platform: a planted residue fault.
    let run = hilt_in(
        dir.path(),
        &[
            "run",
            "-q",
            "--out",
            "out",
            "--sim-fault",
            "global-no-scrub",
            "residue::global",
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let path = dir.path().join("out/latest/result.json");
    let original = std::fs::read(&path).expect("record");
    let envelope_path = dir.path().join("out/latest/result.dsse.json");
    let run_envelope = std::fs::read(&envelope_path).expect("the run signed with a one-off key");

    // Verdicts hand-edited to pass while the summary still counts the failures.
    let mut record: serde_json::Value = serde_json::from_slice(&original).expect("json");
    for o in record["outcomes"].as_array_mut().expect("outcomes") {
        o["verdict"] = "pass".into();
        o["reason"] = serde_json::Value::Null;
    }
    std::fs::write(&path, serde_json::to_vec(&record).expect("json")).expect("write");
    let out = hilt_in(dir.path(), &["sign", "out/latest/result.json", "--key", "lab.key"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is not signed: what it claims does not follow"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("summary: the record counts"), "{}", text(&out));
    assert_eq!(
        std::fs::read(&envelope_path).expect("envelope"),
        run_envelope,
        "nothing was signed"
    );

    // A level lowered so that the failures would not count: the profile says otherwise.
    let mut record: serde_json::Value = serde_json::from_slice(&original).expect("json");
    for o in record["outcomes"].as_array_mut().expect("outcomes") {
        o["level"] = "informational".into();
    }
    std::fs::write(&path, serde_json::to_vec(&record).expect("json")).expect("write");
    let out = hilt_in(dir.path(), &["sign", "out/latest/result.json", "--key", "lab.key"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("recorded as informational, but profile sim-reference makes it mandatory"),
        "{}",
        text(&out)
    );

    // As the run wrote it, it signs; verified, it says the signature is valid and,
    // apart, that the platform is not conformant.
    std::fs::write(&path, &original).expect("write");
    let out = hilt_in(dir.path(), &["sign", "out/latest/result.json", "--key", "lab.key"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = hilt_in(
        dir.path(),
        &["verify", "out/latest/result.dsse.json", "--trusted-key", "lab.pub"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("verified: out/latest/result.dsse.json: the signature is valid"),
        "{shown}"
    );
    assert!(
        shown.contains("platform: NOT conformant (partial), as decided here from the record's"),
        "{shown}"
    );
    let out = hilt_in(
        dir.path(),
        &[
            "verify",
            "out/latest/result.dsse.json",
            "--trusted-key",
            "lab.pub",
            "--require-conformant",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn report_never_shows_an_unsigned_or_unverified_record_as_conformant_with_keys_given() {
    let dir = signed_run();
    for input in ["out/latest/result.json", "out/latest/result.dsse.json"] {
        let out = hilt_in(
            dir.path(),
            &["report", input, "--format", "html", "--trusted-key", "lab.pub"],
        );
        let html = String::from_utf8_lossy(&out.stdout);
        if input.ends_with("dsse.json") {
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            assert!(
                html.contains("<span class=\"badge conformant\">conformant</span>"),
                "{html}"
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(!html.contains("badge conformant"), "{html}");
            assert!(html.contains("claims: conformant"), "{html}");
            assert!(html.contains("ask for the signed result.dsse.json"), "{html}");
        }
    }
    // An envelope that no trusted key verifies is not green either.
    assert!(hilt_in(dir.path(), &["keygen", "--out", "other"]).status.success());
    let out = hilt_in(
        dir.path(),
        &[
            "report",
            "out/latest/result.dsse.json",
            "--format",
            "markdown",
            "--trusted-key",
            "other.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("## hilt: NOT VERIFIED (the result claims: conformant)"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_sim_run_never_verifies_as_certifying_and_newer_formats_are_not_re_signed() {
    let dir = signed_run();
    let out = hilt_in(
        dir.path(),
        &[
            "verify",
            "out/latest/result.dsse.json",
            "--trusted-key",
            "lab.pub",
            "--require-certifying",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAIL certifying: the run was on a simulated device"),
        "{}",
        text(&out)
    );

    let path = dir.path().join("out/latest/result.json");
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("record")).expect("json");
    record["format"]["minor"] = 99.into();
    std::fs::write(&path, serde_json::to_vec(&record).expect("json")).expect("write");
    let out = hilt_in(dir.path(), &["sign", "out/latest/result.json", "--key", "lab.key"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("newer than this hilt writes"), "{}", text(&out));
}

#[test]
fn a_run_without_a_key_is_signed_for_development_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = hilt_in(dir.path(), &["run", "-q", "--out", "out"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(text(&run).contains("one-off key: development only, not attributable"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/latest/result.json")).expect("record"))
            .expect("json");
    assert_eq!(record["signing"]["development_only"], true);

    let out = hilt_in(dir.path(), &["verify", "out/latest/result.dsse.json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("development-only and not attributable"),
        "{}",
        text(&out)
    );

    // A lab signs the same record later, on a machine that holds its key.
    assert!(hilt_in(dir.path(), &["keygen", "--out", "lab"]).status.success());
    let sign = hilt_in(dir.path(), &["sign", "out/latest/result.json", "--key", "lab.key"]);
    assert!(sign.status.success(), "{}", text(&sign));
    assert!(
        text(&sign).contains("wrote out/latest/result.dsse.json"),
        "{}",
        text(&sign)
    );
    let out = hilt_in(
        dir.path(),
        &["verify", "out/latest/result.dsse.json", "--trusted-key", "lab.pub"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // An envelope is not signed again.
    let again = hilt_in(dir.path(), &["sign", "out/latest/result.dsse.json", "--key", "lab.key"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("already a signed envelope"), "{}", text(&again));
}

#[test]
fn an_exposed_key_is_refused_before_anything_runs() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(hilt_in(dir.path(), &["keygen", "--out", "lab"]).status.success());
    std::fs::set_permissions(dir.path().join("lab.key"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = common::command()
        .args(["run", "-q", "--out", "out"])
        .current_dir(dir.path())
        .env("HILT_SIGN_KEY", "lab.key")
        .output()
        .expect("hilt runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("open to group or others (mode 0640); restrict it with `chmod 600 lab.key`"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("out/latest").exists(), "nothing ran");
}

/// Whether the OpenSSL tests can run here; `Err` with the reason they are skipped.
fn openssl() -> Result<(), String> {
    let version = Command::new("openssl")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    // `pkeyutl -rawin` (Ed25519 over a message) needs OpenSSL 3.
    let usable = version.as_deref().is_some_and(|v| {
        v.strip_prefix("OpenSSL ")
            .and_then(|rest| rest.split('.').next())
            .and_then(|major| major.parse::<u32>().ok())
            .is_some_and(|major| major >= 3)
    });
    match (usable, std::env::var("HILT_SKIP_OPENSSL").as_deref()) {
        (true, _) => Ok(()),
        (false, Ok("1")) => Err(format!("OpenSSL 3 not found ({version:?}); skipped on request")),
        (false, _) => panic!(
            "these tests need the OpenSSL 3 command line, found {version:?}; install it \
             (Debian: apt-get install openssl) or set HILT_SKIP_OPENSSL=1 to skip them"
        ),
    }
}

#[test]
fn openssl_verifies_what_hilt_signs() {
    if let Err(why) = openssl() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = signed_run();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/verify-with-openssl.sh");
    let verify = |envelope: &str, key: &str| {
        Command::new("sh")
            .arg(&script)
            .args([envelope, key])
            .current_dir(dir.path())
            .output()
            .expect("sh runs")
    };
    let out = verify("out/latest/result.dsse.json", "lab.pub");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Signature Verified Successfully"), "{}", text(&out));
    // OpenSSL reads the key hilt wrote and derives the same public key.
    let derived = Command::new("openssl")
        .args(["pkey", "-in", "lab.key", "-pubout"])
        .current_dir(dir.path())
        .output()
        .expect("openssl runs");
    assert_eq!(
        String::from_utf8_lossy(&derived.stdout),
        std::fs::read_to_string(dir.path().join("lab.pub")).expect("pub")
    );

    // A changed signature fails in OpenSSL too.
    let path = dir.path().join("out/latest/result.dsse.json");
    let good = std::fs::read_to_string(&path).expect("envelope");
    let at = good.find("\"sig\":\"").expect("a signature") + 7;
    let mut bad = good.clone().into_bytes();
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, bad).expect("write");
    let out = verify("out/latest/result.dsse.json", "lab.pub");
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn the_documented_openssl_keyid_step_prints_the_keyid_alone() {
    if let Err(why) = openssl() {
        eprintln!("skipped: {why}");
        return;
    }
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/results.md")).expect("docs");
    let step = docs
        .lines()
        .find(|l| l.starts_with("openssl pkey -pubin -in lab.pub -outform DER"))
        .expect("docs/results.md shows the keyid step");
    let command = step.split(" #").next().expect("a command");
    let dir = tempfile::tempdir().expect("tempdir");
    let keygen = hilt_in(dir.path(), &["keygen", "--out", "lab"]);
    assert!(keygen.status.success());
    let keyid = text(&keygen)
        .rsplit("keyid ")
        .next()
        .expect("keygen prints the keyid")
        .trim()
        .to_string();
    let out = Command::new("sh")
        .args(["-c", command])
        .current_dir(dir.path())
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), keyid, "{command}");
}

/// Whether securesystemslib can run here; `Err` with the reason its tests are skipped.
fn securesystemslib() -> Result<(), String> {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import securesystemslib.dsse, securesystemslib.signer, cryptography; print(securesystemslib.__version__)",
        ])
        .output();
    let why = match probe {
        Ok(o) if o.status.success() => return Ok(()),
        Ok(o) => String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string(),
        Err(e) => format!("python3: {e}"),
    };
    if std::env::var("HILT_REQUIRE_SECURESYSTEMSLIB").as_deref() == Ok("1") {
        panic!("securesystemslib is required here (HILT_REQUIRE_SECURESYSTEMSLIB=1) but cannot be imported: {why}");
    }
    Err(format!(
        "securesystemslib cannot be imported by python3 ({why}); ci/test.sh installs the pinned version, and \
         HILT_REQUIRE_SECURESYSTEMSLIB=1 makes its absence a failure"
    ))
}

/// Runs tests/interop/sslib_dsse.py with `args` in `dir`.
fn sslib(dir: &Path, args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/sslib_dsse.py");
    Command::new("python3")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("python3 runs")
}

#[test]
fn hilt_verifies_what_securesystemslib_signs() {
    if let Err(why) = securesystemslib() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = signed_run();
    // The statement hilt signed, signed again by securesystemslib with the same key: its
    // own keyid scheme, its own JSON layout.
    let envelope = std::fs::read(dir.path().join("out/latest/result.dsse.json")).expect("read");
    let payload = hilt_results::signed::decode_base64(
        serde_json::from_slice::<serde_json::Value>(&envelope).expect("json")["payload"]
            .as_str()
            .expect("payload"),
    )
    .expect("base64")
    .0;
    std::fs::write(dir.path().join("statement.json"), payload).expect("write");
    let out = sslib(dir.path(), &["sign", "lab.key", "statement.json", "sslib.dsse.json"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = hilt_in(
        dir.path(),
        &[
            "verify",
            "sslib.dsse.json",
            "--trusted-key",
            "lab.pub",
            "--require-conformant",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("an unauthenticated hint (DSSE)"), "{}", text(&out));
    assert!(text(&out).contains("written by another DSSE signer"), "{}", text(&out));
    // Negative controls: another trusted key, and a changed payload.
    assert!(hilt_in(dir.path(), &["keygen", "--out", "other"]).status.success());
    let out = hilt_in(dir.path(), &["verify", "sslib.dsse.json", "--trusted-key", "other.pub"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let mut statement = std::fs::read(dir.path().join("statement.json")).expect("read");
    let at = statement.len() / 2;
    statement[at] ^= 0x01;
    std::fs::write(dir.path().join("statement.json"), &statement).expect("write");
    let signed = std::fs::read_to_string(dir.path().join("sslib.dsse.json")).expect("read");
    let mut value: serde_json::Value = serde_json::from_str(&signed).expect("json");
    value["payload"] = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &statement).into();
    std::fs::write(dir.path().join("changed.dsse.json"), value.to_string()).expect("write");
    let out = hilt_in(dir.path(), &["verify", "changed.dsse.json", "--trusted-key", "lab.pub"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn securesystemslib_verifies_what_hilt_signs() {
    if let Err(why) = securesystemslib() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = signed_run();
    let out = sslib(dir.path(), &["verify", "lab.pub", "out/latest/result.dsse.json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("predicateType https://hilt.dev/conformance-result/v1"),
        "{}",
        text(&out)
    );
    // Negative controls: another key, and a changed signature.
    assert!(hilt_in(dir.path(), &["keygen", "--out", "other"]).status.success());
    let out = sslib(dir.path(), &["verify", "other.pub", "out/latest/result.dsse.json"]);
    assert!(!out.status.success(), "{}", text(&out));
    let path = dir.path().join("out/latest/result.dsse.json");
    let good = std::fs::read_to_string(&path).expect("envelope");
    let at = good.find("\"sig\":\"").expect("a signature") + 7;
    let mut bad = good.into_bytes();
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, bad).expect("write");
    let out = sslib(dir.path(), &["verify", "lab.pub", "out/latest/result.dsse.json"]);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn hilt_signs_with_a_key_openssl_made() {
    if let Err(why) = openssl() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{}", text(&out));
    };
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", "lab.key"]);
    openssl(&["pkey", "-in", "lab.key", "-pubout", "-out", "lab.pub"]);
    std::fs::set_permissions(
        dir.path().join("lab.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let run = hilt_in(dir.path(), &["run", "-q", "--out", "out", "--sign-key", "lab.key"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let out = hilt_in(
        dir.path(),
        &["verify", "out/latest/result.dsse.json", "--trusted-key", "lab.pub"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Nothing signed is ever overwritten: `hilt sign` may replace the one-off development
/// envelope a run made (the workflow above), never an envelope signed by a key someone
/// holds.
#[test]
fn sign_never_overwrites_a_lab_signature() {
    let dir = signed_run();
    let before = std::fs::read(dir.path().join("out/latest/result.dsse.json")).expect("envelope");
    let again = hilt_in(dir.path(), &["sign", "out/latest/result.json", "--key", "lab.key"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("is not a development-only envelope; nothing signed is overwritten"),
        "{}",
        text(&again)
    );
    assert_eq!(
        std::fs::read(dir.path().join("out/latest/result.dsse.json")).expect("envelope"),
        before
    );
    let elsewhere = hilt_in(
        dir.path(),
        &[
            "sign",
            "out/latest/result.json",
            "--key",
            "lab.key",
            "--out",
            "again.dsse.json",
        ],
    );
    assert!(elsewhere.status.success(), "{}", text(&elsewhere));
}
