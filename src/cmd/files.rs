//! The files several commands share: signing keys, result files (plain or signed, verified
//! against trusted keys), and outputs written to a path or standard output.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hilt_harness::report::{self, Signature};
use hilt_harness::runner::RunSigner;
use hilt_results::ResultRecord;
use hilt_results::signed::{self, Policy, PublicKey, SigningKey, TrustedKey};

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
    let (record, signature) = load_unchecked(path, keys)?;
    // Claims that do not follow from the record's own outcomes are never shown as facts.
    let problems = record.inconsistencies();
    if !problems.is_empty() {
        let mut reasons = match signature {
            Signature::NotVerified { reasons } => reasons,
            _ => Vec::new(),
        };
        reasons.extend(problems.into_iter().map(|p| format!("record: {p}")));
        return Ok((record, Signature::NotVerified { reasons }));
    }
    Ok((record, signature))
}

fn load_unchecked(path: &Path, keys: &[TrustedKey]) -> anyhow::Result<(ResultRecord, Signature)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if serde_json::from_slice::<signed::Envelope>(&bytes).is_err() {
        let record = ResultRecord::from_json(&bytes).with_context(|| format!("cannot read {}", path.display()))?;
        // With keys to verify against, an unsigned record is one that did not verify.
        let signature = if keys.is_empty() {
            Signature::Unsigned
        } else {
            Signature::NotVerified {
                reasons: vec![
                    "unsigned: a plain result record, which no trusted key vouches for; ask for the signed \
                     result.dsse.json"
                        .into(),
                ],
            }
        };
        return Ok((record, signature));
    }
    let policy = Policy {
        trusted: keys.to_vec(),
        ..Policy::default()
    };
    let verification = signed::verify(&bytes, &policy).with_context(|| format!("cannot read {}", path.display()))?;
    if let (true, Some(record), Some(signer)) = (
        verification.verified(),
        verification.record.clone(),
        verification.signer.clone(),
    ) {
        let keyid = keys
            .iter()
            .find(|k| k.label == signer)
            .map(|k| k.key.keyid().to_string())
            .unwrap_or_default();
        return Ok((record, Signature::Verified { signer, keyid }));
    }
    let reasons = verification
        .findings
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.text.clone())
        .collect();
    let record = signed::read_unverified(&bytes)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{} does not verify and its payload cannot be read", path.display()))?;
    Ok((record, Signature::NotVerified { reasons }))
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
