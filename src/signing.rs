//! `hilt keygen`, `hilt sign`, `hilt verify` and the key a run signs with.
//!
//! The format and the verifier live in `hilt_results::signed`, so that a certification
//! portal can verify results with that crate alone; this module only reads files, writes
//! files and prints findings.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use hilt_harness::record::write_bytes_atomically;
use hilt_harness::runner::RunSigner;
use hilt_results::signed::{self, Policy, PublicKey, SigningKey, TrustedKey};
use hilt_results::{ResultRecord, Tier};

/// Exit codes of `hilt verify`.
pub const VERIFIED: u8 = 0;
/// The input was read but did not verify.
pub const NOT_VERIFIED: u8 = 1;
/// The input could not be read.
pub const UNREADABLE: u8 = 2;

/// `hilt verify` arguments.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The signed result (`result.dsse.json`).
    result: PathBuf,
    /// A public key (SPKI PEM, as `hilt keygen` writes NAME.pub) whose signatures are
    /// trusted (repeatable).
    #[arg(long = "trusted-key", value_name = "PUB")]
    trusted_keys: Vec<PathBuf>,
    /// Require the result to have been run with this profile id.
    #[arg(long, value_name = "ID")]
    require_profile: Option<String>,
    /// Require the result to have been run in this tier.
    #[arg(long, value_name = "TIER")]
    require_tier: Option<Tier>,
    /// Require the result to be conformant.
    #[arg(long)]
    require_conformant: bool,
    /// Require a result that can certify: a certifying profile, run on real devices.
    #[arg(long)]
    require_certifying: bool,
    /// Require the exact profile settings: its digest after inheritance (`sha256:...`).
    #[arg(long, value_name = "DIGEST")]
    require_profile_digest: Option<String>,
}

/// `hilt sign` arguments.
#[derive(clap::Args)]
pub struct SignArgs {
    /// The unsigned result (`result.json`).
    result: PathBuf,
    /// The private key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "PATH", env = "HILT_SIGN_KEY", hide_env_values = true)]
    key: PathBuf,
    /// Where to write the envelope; default: beside RESULT, `.json` replaced by `.dsse.json`.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

/// Writes a new key pair: `NAME.key` (PKCS#8 PEM, mode 0600) and `NAME.pub` (SPKI PEM).
pub fn keygen(name: &Path) -> anyhow::Result<u8> {
    let private = with_suffix(name, ".key");
    let public = with_suffix(name, ".pub");
    for path in [&private, &public] {
        if path.exists() {
            bail!("{} already exists; hilt keygen never overwrites a key", path.display());
        }
    }
    let key = SigningKey::generate()?;
    let pem = key.to_pkcs8_pem()?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", private.display()))?;
    let pub_key = key.public();
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    let written = options
        .open(&public)
        .and_then(|mut f| f.write_all(pub_key.to_pem().as_bytes()).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        // A private key without its public half is of no use to anyone.
        let _ = std::fs::remove_file(&private);
        bail!("cannot create {}: {e}", public.display());
    }
    println!(
        "wrote {} (private, mode 0600) and {}; keyid {}",
        private.display(),
        public.display(),
        pub_key.keyid()
    );
    Ok(0)
}

/// The signer of a run: the key at `path` when given, else a one-off development key.
pub fn run_signer(path: Option<&Path>) -> anyhow::Result<RunSigner> {
    Ok(match path {
        Some(path) => RunSigner::Key(SigningKey::read(path)?),
        None => RunSigner::Development(SigningKey::generate()?),
    })
}

/// Signs an unsigned result with a key from a file.
pub fn sign(args: &SignArgs) -> anyhow::Result<u8> {
    let key = SigningKey::read(&args.key)?;
    let bytes = std::fs::read(&args.result).with_context(|| format!("cannot read {}", args.result.display()))?;
    if serde_json::from_slice::<signed::Envelope>(&bytes).is_ok() {
        bail!(
            "{} is already a signed envelope; sign the result.json it was made from",
            args.result.display()
        );
    }
    let mut record =
        ResultRecord::from_json(&bytes).with_context(|| format!("cannot sign {}", args.result.display()))?;
    if record.format.minor > hilt_results::FORMAT_MINOR {
        // This build would drop the fields it does not know and sign the rest.
        bail!(
            "{} is result format {}.{}, newer than this hilt writes ({}.{}); sign it with the hilt that made it",
            args.result.display(),
            record.format.major,
            record.format.minor,
            hilt_results::FORMAT_MAJOR,
            hilt_results::FORMAT_MINOR
        );
    }
    if record.signing.take().is_some() {
        eprintln!(
            "hilt: the record was signed by its run with a one-off development key; the new envelope replaces that"
        );
    }
    if !record.run.complete {
        eprintln!(
            "hilt: warning: the record is from a run that did not finish; it is signed as it is, marked incomplete"
        );
    }
    let out = args.out.clone().unwrap_or_else(|| envelope_path(&args.result));
    let signed = key.sign(&record)?;
    write_bytes_atomically(&out, &signed).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {} signed by key {}", out.display(), key.public().keyid());
    Ok(0)
}

/// Verifies a signed result and prints one line per finding.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<u8> {
    let mut policy = Policy {
        require_profile: args.require_profile.clone(),
        require_tier: args.require_tier,
        require_conformant: args.require_conformant,
        require_certifying: args.require_certifying,
        require_profile_digest: args.require_profile_digest.clone(),
        ..Policy::default()
    };
    for path in &args.trusted_keys {
        match PublicKey::read(path) {
            Ok(key) => policy.trusted.push(TrustedKey {
                label: path.display().to_string(),
                key,
            }),
            Err(e) => {
                println!("unreadable: trusted key: {e}");
                return Ok(UNREADABLE);
            }
        }
    }
    let shown = args.result.display();
    let bytes = match std::fs::read(&args.result) {
        Ok(b) => b,
        Err(e) => {
            println!("unreadable: {shown}: {e}");
            return Ok(UNREADABLE);
        }
    };
    let report = match signed::verify(&bytes, &policy) {
        Ok(r) => r,
        Err(e) => {
            println!("unreadable: {shown}: {e}");
            return Ok(UNREADABLE);
        }
    };
    for finding in &report.findings {
        println!("{} {}", if finding.ok { "ok  " } else { "FAIL" }, finding.text);
    }
    if report.verified() {
        println!("verified: {shown}");
        Ok(VERIFIED)
    } else {
        let failed = report.findings.iter().filter(|f| !f.ok).count();
        println!("not verified: {shown}: {failed} finding(s) failed");
        Ok(NOT_VERIFIED)
    }
}

/// `DIR/result.json` -> `DIR/result.dsse.json`; any other name gets `.dsse.json` added.
fn envelope_path(result: &Path) -> PathBuf {
    let name = result
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    result.with_file_name(format!("{stem}.dsse.json"))
}

fn with_suffix(name: &Path, suffix: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
