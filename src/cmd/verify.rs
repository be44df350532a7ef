//! `hilt verify`: a signed result checked against trusted keys and a policy, one line per
//! finding. The verifier itself is `hilt_results::signed`, so that a certification portal
//! can verify results with that crate alone.

use std::path::PathBuf;

use hilt_results::signed::{self, Policy, PublicKey, TrustedKey};
use hilt_results::{ConformanceStatus, Tier};

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
    // Two facts, two lines: whether the signature holds, and what the outcomes say of the
    // platform. A verified record of a failing platform never reads as a pass.
    if report.verified() {
        println!(
            "verified: {shown}: the signature is valid (signed by {})",
            report.signer.as_deref().unwrap_or("a trusted key")
        );
    } else {
        let failed = report.findings.iter().filter(|f| !f.ok).count();
        println!("not verified: {shown}: {failed} finding(s) failed");
    }
    if let (Some(c), Some(record)) = (&report.conformance, &report.record) {
        let status = match c.status {
            ConformanceStatus::Conformant => "conformant".to_string(),
            other => format!("NOT conformant ({})", other.as_str()),
        };
        println!(
            "platform: {status}, as decided here from the record's {} outcome(s){}",
            record.outcomes.len(),
            if report.verified() {
                ""
            } else {
                ", which the findings above put in doubt"
            }
        );
        for reason in &c.reasons {
            println!("  - {}", reason.escape_debug());
        }
    }
    Ok(if report.verified() { VERIFIED } else { NOT_VERIFIED })
}
