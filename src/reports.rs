//! `hilt report`, `hilt compare` and `hilt requirements`: reports made from results, on
//! files. The renderers are `hilt_harness::report`; this module reads results (plain
//! records or signed envelopes, verified against the keys given), and writes the output.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hilt_harness::check::Catalogue;
use hilt_harness::report::{self, Report, Signature, compare};
use hilt_harness::requirements::{self, Requirement};
use hilt_results::ResultRecord;
use hilt_results::signed::{self, Policy, PublicKey, TrustedKey};

/// The formats of `hilt report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JUnit XML, for CI systems.
    Junit,
    /// Markdown, for a CI step summary.
    Markdown,
    /// One self-contained HTML page.
    Html,
    /// The record with its signature status and traceability, as JSON.
    Json,
}

impl From<Format> for report::Format {
    fn from(f: Format) -> report::Format {
        match f {
            Format::Junit => report::Format::Junit,
            Format::Markdown => report::Format::Markdown,
            Format::Html => report::Format::Html,
            Format::Json => report::Format::Json,
        }
    }
}

/// The formats of `hilt compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareFormat {
    /// Aligned plain text, for a terminal.
    Text,
    /// Markdown tables.
    Markdown,
    /// One self-contained HTML page.
    Html,
}

/// `hilt report` arguments.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// A result: `result.json` or a signed `result.dsse.json`.
    result: PathBuf,
    /// The output format.
    #[arg(long, value_enum, default_value = "markdown")]
    format: Format,
    /// Write here instead of to standard output.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Public keys trusted to sign results (repeatable); a signed result is verified
    /// against them and the report says whether it verified.
    #[arg(long = "trusted-key", value_name = "PUB")]
    trusted_keys: Vec<PathBuf>,
}

/// `hilt compare` arguments.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Two or more results (`result.json` or `result.dsse.json`); the first is the
    /// baseline ratios are taken against.
    #[arg(required = true, num_args = 2..)]
    results: Vec<PathBuf>,
    /// The output format.
    #[arg(long, value_enum, default_value = "text")]
    format: CompareFormat,
    /// Write here instead of to standard output.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Public keys trusted to sign results (repeatable).
    #[arg(long = "trusted-key", value_name = "PUB")]
    trusted_keys: Vec<PathBuf>,
}

/// `hilt report`.
pub fn report(args: &ReportArgs, catalogue: &Catalogue) -> anyhow::Result<u8> {
    let keys = trusted(&args.trusted_keys)?;
    let (record, signature) = load(&args.result, &keys)?;
    let reqs = requirements::ts_104_033();
    let report = Report {
        record: &record,
        signature,
        catalogue,
        requirements: &reqs,
    };
    emit(args.out.as_deref(), &report::render(args.format.into(), &report))?;
    Ok(verdict_of(&args.trusted_keys, std::slice::from_ref(&report.signature)))
}

/// 0, or 1 when keys were given to verify with and an input did not verify against them
/// (as `hilt verify` would say), so that a pipeline cannot take a report of a tampered
/// or unsigned result for a verified one.
fn verdict_of(keys: &[PathBuf], signatures: &[Signature]) -> u8 {
    let all_verified = signatures.iter().all(|s| matches!(s, Signature::Verified { .. }));
    if keys.is_empty() || all_verified {
        0
    } else {
        eprintln!("hilt: not every result verified against the trusted keys given; see the report");
        1
    }
}

/// `hilt compare`.
pub fn compare(args: &CompareArgs, catalogue: &Catalogue) -> anyhow::Result<u8> {
    let keys = trusted(&args.trusted_keys)?;
    let reqs = requirements::ts_104_033();
    let loaded: Vec<(ResultRecord, Signature)> = args
        .results
        .iter()
        .map(|p| load(p, &keys))
        .collect::<anyhow::Result<_>>()?;
    let entries: Vec<compare::Entry<'_>> = args
        .results
        .iter()
        .zip(&loaded)
        .map(|(path, (record, signature))| compare::Entry {
            label: path.display().to_string(),
            report: Report {
                record,
                signature: signature.clone(),
                catalogue,
                requirements: &reqs,
            },
        })
        .collect();
    let c = compare::compare(&entries);
    let text = match args.format {
        CompareFormat::Text => compare::text(&c),
        CompareFormat::Markdown => compare::markdown(&c),
        CompareFormat::Html => compare::html(&c),
    };
    emit(args.out.as_deref(), &text)?;
    let signatures: Vec<Signature> = loaded.iter().map(|(_, s)| s.clone()).collect();
    Ok(verdict_of(&args.trusted_keys, &signatures))
}

/// `hilt requirements [--markdown]`: the requirement catalogue and the checks that cover
/// each requirement (docs/requirements.md is this, generated).
pub fn requirements_matrix(catalogue: &Catalogue, markdown: bool) -> anyhow::Result<u8> {
    let reqs = requirements::ts_104_033();
    let mut out = std::io::stdout().lock();
    if markdown {
        write!(out, "{}", matrix_markdown(&reqs, catalogue))?;
    } else {
        for r in &reqs {
            let checks = covering(r, catalogue);
            let by = if checks.is_empty() {
                "manual evidence needed".to_string()
            } else {
                checks.join(", ")
            };
            writeln!(out, "{:<10} {:<22} {by}", r.id, r.group)?;
        }
    }
    Ok(0)
}

fn covering(req: &Requirement, catalogue: &Catalogue) -> Vec<String> {
    catalogue
        .checks()
        .iter()
        .filter(|c| c.requirements.contains(&req.id.as_str()))
        .map(|c| format!("`{}`", c.id))
        .collect()
}

/// The traceability matrix as Markdown.
pub fn matrix_markdown(reqs: &[Requirement], catalogue: &Catalogue) -> String {
    let mut s = String::from(
        "# Requirement traceability\n\n\
         <!-- Generated by `hilt requirements --markdown`; `cargo test --test docs` fails when this file is stale. -->\n\n\
         Every requirement of hilt's ETSI TS 104 033 catalogue \
         ([profiles/requirements/ts-104-033.toml](../profiles/requirements/ts-104-033.toml)), the checks that give \
         automated evidence for it, and those that need evidence hilt cannot gather (policies, procedures, \
         services outside the machine). The ids are hilt's own, not clause numbers; `confidence` says how well \
         the public record supports each requirement. The HTML report (`hilt report --format html`) shows the same \
         matrix with the verdicts of one result.\n\n",
    );
    let covered = reqs.iter().filter(|r| !covering(r, catalogue).is_empty()).count();
    s.push_str(&format!(
        "{covered} of {} requirements have at least one automated check; {} need manual evidence.\n\n",
        reqs.len(),
        reqs.len() - covered
    ));
    s.push_str("| id | group | requirement | confidence | automated checks |\n| --- | --- | --- | --- | --- |\n");
    for r in reqs {
        let checks = covering(r, catalogue);
        let by = if checks.is_empty() {
            "**manual evidence needed**".to_string()
        } else {
            checks.join("<br>")
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {by} |\n",
            r.id,
            r.group,
            r.summary.replace('|', "\\|"),
            r.confidence.as_str()
        ));
    }
    s
}

fn trusted(paths: &[PathBuf]) -> anyhow::Result<Vec<TrustedKey>> {
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

/// A result file: a plain record, or an envelope verified against `keys`.
fn load(path: &Path, keys: &[TrustedKey]) -> anyhow::Result<(ResultRecord, Signature)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if serde_json::from_slice::<signed::Envelope>(&bytes).is_err() {
        let record = ResultRecord::from_json(&bytes).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok((record, Signature::Unsigned));
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

fn emit(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
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
