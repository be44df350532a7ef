//! The files several commands share: signing keys, result files (plain or signed, verified
//! against trusted keys), and outputs written to a path or standard output.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hilt_harness::report::{self, Signature};
use hilt_harness::runner::RunSigner;
use hilt_results::ResultRecord;
use hilt_results::signed::{PublicKey, SigningKey, TrustedKey};

/// The signer of a run: the key at `path` when given, else a one-off development key.
pub fn run_signer(path: Option<&Path>) -> anyhow::Result<RunSigner> {
    Ok(match path {
        Some(path) => RunSigner::Key(SigningKey::read(path)?),
        None => RunSigner::Development(SigningKey::generate()?),
    })
}

/// `DIR/result.json` -> `DIR/result.dsse.json`; any other name gets `.dsse.json` added.
pub fn envelope_path(result: &Path) -> PathBuf {
    let name = result
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    result.with_file_name(format!("{stem}.dsse.json"))
}

/// `name` with `suffix` appended to its last component (`lab` + `.key`).
pub fn with_suffix(name: &Path, suffix: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The public keys at `paths`, labelled by their paths.
pub fn trusted(paths: &[PathBuf]) -> anyhow::Result<Vec<TrustedKey>> {
    paths
        .iter()
        .map(|p| {
            Ok(TrustedKey {
                label: p.display().to_string(),
                key: PublicKey::read(p)?,
            })
        })
        .collect()
}

/// A result file: a plain record, or an envelope verified against `keys`. The signature
/// status is `NotVerified` when keys were given and the file is unsigned or does not
/// verify, and whenever the record's summary or conformance do not follow from its
/// outcomes, so that no report shows such a record's claims as facts.
pub fn load(path: &Path, keys: &[TrustedKey]) -> anyhow::Result<(ResultRecord, Signature)> {
    let (record, signature) = report::read_result(path, keys).map_err(anyhow::Error::msg)?;
    // With keys to verify against, an unsigned record is one that did not verify.
    let signature = match signature {
        Signature::Unsigned if !keys.is_empty() => Signature::NotVerified {
            reasons: vec![
                "unsigned: a plain result record, which no trusted key vouches for; ask for the signed \
                 result.dsse.json"
                    .into(),
            ],
        },
        other => other,
    };
    Ok((record, signature))
}

/// Writes `text` to `out`, or to standard output.
pub fn emit(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            report::write_output(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            Ok(())
        }
    }
}
