//! `hilt compare`: two or more results side by side, each verified first.

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
