//! `hilt compare`: two or more results side by side, each verified first; with
//! `--fail-on-regression`, a CI gate on two of them.

use std::path::PathBuf;

use hilt_harness::check::Catalogue;
use hilt_harness::report::{Report, Signature, compare};
use hilt_harness::requirements;
use hilt_results::ResultRecord;

use crate::cmd::files::{emit, load, trusted};
use crate::cmd::report::verdict_of;

/// The formats of `hilt compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareFormat {
    /// Aligned plain text, for a terminal.
    Text,
    /// Markdown tables.
    Markdown,
    /// One self-contained HTML page.
    Html,
    /// The comparison as JSON: platforms with their summaries, flags, regressions, checks
    /// and measurements.
    Json,
}

/// `hilt compare` arguments.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Two or more results (`result.json` or `result.dsse.json`); the first is the
    /// baseline that ratios, calls and regressions are taken against.
    #[arg(required = true, num_args = 2..)]
    results: Vec<PathBuf>,
    /// Exit 4 when the second of exactly two results regressed against the first: a check
    /// that passed there now fails, is inconclusive, errs or did not run, or a performance
    /// figure is worse beyond both runs' spread (see docs/reports.md).
    #[arg(long)]
    fail_on_regression: bool,
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

/// `hilt compare`.
pub fn compare(args: &CompareArgs, catalogue: &Catalogue) -> anyhow::Result<u8> {
    if args.fail_on_regression && args.results.len() != 2 {
        anyhow::bail!(
            "--fail-on-regression compares exactly two results, a baseline and a candidate; {} were given",
            args.results.len()
        );
    }
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
        CompareFormat::Json => serde_json::to_string_pretty(&c)? + "\n",
    };
    emit(args.out.as_deref(), &text)?;
    let signatures: Vec<Signature> = loaded.iter().map(|(_, s)| s.clone()).collect();
    let verified = verdict_of(&args.trusted_keys, &signatures);
    if verified != 0 || !args.fail_on_regression {
        return Ok(verified);
    }
    let found = &c.regressions[1];
    if found.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "hilt: {} regressed against {} in {} place(s):",
        c.platforms[1].label,
        c.platforms[0].label,
        found.len()
    );
    for r in found {
        eprintln!("hilt:   {}", hilt_harness::report::one_line(&r.describe()));
    }
    Ok(REGRESSION)
}

/// The exit status of `hilt compare --fail-on-regression` when the candidate regressed.
pub const REGRESSION: u8 = 4;
