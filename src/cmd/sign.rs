//! `hilt sign`: an unsigned result signed with a key, into a DSSE envelope.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use hilt_harness::record::write_bytes_atomically;
use hilt_results::ResultRecord;
use hilt_results::signed::{self, SigningKey};

use crate::cmd::files::envelope_path;

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
    refuse_to_replace_a_signature(&out)?;
    let signed = key.sign(&record)?;
    write_bytes_atomically(&out, &signed).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {} signed by key {}", out.display(), key.public().keyid());
    Ok(0)
}

/// Nothing signed is ever overwritten: an envelope at `out` may be replaced only when it is
/// the one-off development signature a run made for want of a key (which the new envelope
/// supersedes), never when a key someone holds signed it, and never when it cannot be read.
fn refuse_to_replace_a_signature(out: &std::path::Path) -> anyhow::Result<()> {
    let Ok(bytes) = std::fs::read(out) else {
        return Ok(());
    };
    let development = signed::read_unverified(&bytes).is_ok_and(|r| r.signing.is_some());
    if !development {
        bail!(
            "{} exists and is not a development-only envelope; nothing signed is overwritten: give --out another path",
            out.display()
        );
    }
    Ok(())
}
