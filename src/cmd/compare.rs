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
    /// whose outcomes got worse (a pass that no longer passes, a new failure, a check or
    /// device no longer examined), or a performance figure worse beyond both runs' spread
    /// and the noise threshold (see docs/reports.md).
    #[arg(long)]
    fail_on_regression: bool,
    /// A performance figure measured in repetitions is called better or worse only when it
    /// differs from the baseline's by at least this share of it, percent.
    #[arg(long, value_name = "PERCENT", default_value_t = compare::NOISE_THRESHOLD * 100.0, value_parser = percent)]
    noise_threshold: f64,
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
        .map(|p| {
            let (record, signature) = load(p, &keys)?;
            // With trusted keys given, an unsigned record did not verify either: what it
            // says is a claim, shown as one.
            let signature = match signature {
                Signature::Unsigned if !keys.is_empty() => Signature::NotVerified {
                    reasons: vec!["unsigned, and trusted keys were given: nothing vouches for it".into()],
                },
                other => other,
            };
            Ok((record, signature))
        })
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
    let c = compare::compare_with(
        &entries,
        compare::Options {
            noise_threshold: args.noise_threshold / 100.0,
        },
    );
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

/// A percentage from 0 to 100.
fn percent(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage from 0 to 100")),
    }
}

/// The exit status of `hilt compare --fail-on-regression` when the candidate regressed.
pub const REGRESSION: u8 = 4;
