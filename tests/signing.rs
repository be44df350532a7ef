//! Signing and verifying results through the command line, and the same signatures
//! checked by OpenSSL, an implementation that shares no code with hilt.
//!
//! The OpenSSL tests need the OpenSSL 3 command line (`pkeyutl -rawin`). Without it they
//! fail, saying so, unless `HILT_SKIP_OPENSSL=1` asks to skip them: a skipped test shows
//! as passed in `cargo test`, so skipping must be a visible choice, never a default.

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
        &["verify", "out/latest/result.json", "--trusted-key", "lab.key"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("not an Ed25519 SPKI PEM public key"),
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
