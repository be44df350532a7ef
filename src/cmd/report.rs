//! `hilt report`: one result (signed or not) rendered as JUnit, Markdown, HTML or JSON.
//! The renderers are `hilt_harness::report`.

use std::path::PathBuf;

use hilt_harness::check::Catalogue;
use hilt_harness::report::{self, Report, Signature};
use hilt_harness::requirements;

use crate::cmd::files::{emit, load, trusted};

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
pub fn verdict_of(keys: &[PathBuf], signatures: &[Signature]) -> u8 {
    let all_verified = signatures.iter().all(|s| matches!(s, Signature::Verified { .. }));
    if keys.is_empty() || all_verified {
        0
    } else {
        eprintln!("hilt: not every result verified against the trusted keys given; see the report");
        1
    }
}
