//! `hilt fleet`: the results of many nodes in one report, checked against the night
//! before. The report itself is `hilt_harness::report::fleet`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hilt_harness::check::Catalogue;
use hilt_harness::host::Date;
use hilt_harness::profile::Library;
use hilt_harness::report::fleet::{self, FleetInput};

use crate::cmd::files::{emit, trusted};

/// The formats of `hilt fleet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FleetFormat {
    /// Plain text, for a terminal.
    Text,
    /// Markdown, for a CI step summary.
    Markdown,
    /// One self-contained HTML page with the node × check grid.
    Html,
    /// JUnit XML: one test suite per node.
    Junit,
    /// JSON, each node under a `node` key with its `status`.
    Json,
}

/// `hilt fleet` arguments.
#[derive(clap::Args)]
pub struct FleetArgs {
    /// Directories holding results (every `result.dsse.json`, else `result.json`, below
    /// them; links such as `latest` are not followed), or result files.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// The previous night's results, read the same way: checks that passed there and
    /// not here are regressions, and its nodes are expected here.
    #[arg(long, value_name = "DIR", num_args = 1..)]
    baseline: Vec<PathBuf>,
    /// Public keys trusted to sign results (repeatable); a node counts as conformant only
    /// with a result one of them signed.
    #[arg(long = "trusted-key", value_name = "PUB")]
    trusted_keys: Vec<PathBuf>,
    /// A file of node names, one per line (`#` comments), that must each have a result.
    #[arg(long, value_name = "FILE")]
    expect_nodes: Option<PathBuf>,
    /// Flag a measurement further than this many median absolute deviations from the
    /// fleet's median; default: the results' profile's `fleet_outlier_mad`, else 5.
    #[arg(long, value_name = "K", value_parser = outlier_factor)]
    outlier_mad: Option<f64>,
    /// The output format.
    #[arg(long, value_enum, default_value = "text")]
    format: FleetFormat,
    /// Write here instead of to standard output (Markdown is appended, as a step summary
    /// collects every step's).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

fn outlier_factor(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(k) if k.is_finite() && k > 0.0 && k <= 1000.0 => Ok(k),
        _ => Err(format!("`{text}` is not a factor above 0 and at most 1000")),
    }
}

/// `hilt fleet`: exit 0 when every expected node has a verified, conformant result and
/// nothing regressed; 1 otherwise; 2 when an input cannot be read.
pub fn fleet(args: &FleetArgs, catalogue: &Catalogue) -> anyhow::Result<u8> {
    let keys = trusted(&args.trusted_keys)?;
    let expected = match &args.expect_nodes {
        Some(path) => fleet::read_expected_nodes(path)?,
        None => Vec::new(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (paths, unlisted) = fleet::find_results(&args.dirs)?;
    let current = fleet::read_results(&paths, &keys, threads);
    let baseline = if args.baseline.is_empty() {
        None
    } else {
        let (paths, mut unlisted_before) = fleet::find_results(&args.baseline)?;
        let mut read = fleet::read_results(&paths, &keys, threads);
        read.extend(unlisted_before.drain(..).map(Err));
        Some(read)
    };
    // The outlier factor of each profile the results ran under, as this build knows it.
    let mut profile_outlier_mad = BTreeMap::new();
    let library = Library::standard();
    let ids: std::collections::BTreeSet<&str> = current
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.profile.as_str())
        .collect();
    for id in ids {
        if let Ok(profile) = library.load(id, catalogue, Date::today())
            && let Some(k) = profile.fleet_outlier_mad
        {
            profile_outlier_mad.insert(id.to_string(), k);
        }
    }
    let report = fleet::build(FleetInput {
        current,
        unlisted,
        baseline,
        expected,
        keys_given: !keys.is_empty(),
        outlier_mad: args.outlier_mad,
        profile_outlier_mad,
    });
    let text = match args.format {
        FleetFormat::Text => fleet::text(&report),
        FleetFormat::Markdown => fleet::markdown(&report),
        FleetFormat::Html => fleet::html(&report),
        FleetFormat::Junit => fleet::junit(&report),
        FleetFormat::Json => fleet::json(&report),
    };
    match (&args.out, args.format) {
        (Some(path), FleetFormat::Markdown) => hilt_harness::report::append(path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        (out, _) => emit(out.as_deref(), &text)?,
    }
    if args.out.is_some() && args.format != FleetFormat::Text {
        eprintln!("hilt fleet: {}", report.headline());
    }
    Ok(report.exit_code())
}
