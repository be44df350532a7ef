//! Several results side by side, for procurement and for a CI gate: which platform is
//! safer and which is faster, and whether the results can be compared at all.
//!
//! Each result becomes a column named by its platform (device model, node, date, profile,
//! tier, hilt version), with a summary first (conformance, mandatory failures,
//! inconclusive outcomes, coverage). Then the checks, with their level and verdicts; then
//! the measurements. Verdicts decide the colour of a cell, never the direction of a
//! number: fewer leaked bytes are not "better", a leak is a failure. Only performance
//! figures (the `performance` suite's) get a ratio to the first result (the baseline) and
//! a call, better or worse, and only when the difference lies outside the runs' own
//! spread (see [`Call`]). What makes results hard to compare (other profiles, settings,
//! coverage, hilt versions, unverified signatures) is flagged, not hidden.
//!
//! A result that ran on several devices stands for its weakest device.

mod flags;
pub mod render;

use std::collections::BTreeMap;

use hilt_results::{Better, Level, Outcome, Verdict};
use serde::Serialize;

use super::{Report, Signature, TraceState, node, number};

pub use flags::is_setting_fact;
pub use render::{html, markdown, text};

/// One result in a comparison, with the name it was given by (its file).
pub struct Entry<'a> {
    /// The file name or label.
    pub label: String,
    /// The report.
    pub report: Report<'a>,
}

/// The comparison, ready to render (or to serialize: `hilt compare --format json`).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The least relative difference from the baseline (0.05: 5 %) that a performance
    /// figure with a range needs to be called better or worse (see [`Call`]).
    pub noise_threshold: f64,
    /// One column per result, in the order given; the first is the baseline.
    pub platforms: Vec<Platform>,
    /// What makes the results hard to compare: every difference between any two of them,
    /// then what makes each hard to read on its own.
    pub flags: Vec<Flag>,
    /// Per result, what got worse against the baseline (empty for the baseline itself).
    pub regressions: Vec<Vec<Regression>>,
    /// One row per check that ran in any result, by check id.
    pub checks: Vec<CheckRow>,
    /// One row per measurement, by check id and measurement name.
    pub measurements: Vec<MeasurementRow>,
}

/// A result's column: what ran where, and its summary.
#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    /// The file or label it was given by.
    pub label: String,
    /// The accelerators it ran on, by model: `hilt simulated accelerator`,
    /// `8 × NVIDIA H100 80GB HBM3`; `no accelerator` when only host checks ran.
    pub device_model: String,
    /// Every accelerator, in the record's order.
    pub devices: Vec<PlatformDevice>,
    /// The node the run was on (the record's host name).
    pub node: String,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    /// The profile's id.
    pub profile: String,
    /// The profile's version.
    pub profile_version: String,
    /// The profile's digest (`sha256:...`).
    pub profile_digest: String,
    /// The tier.
    pub tier: String,
    /// The hilt version that made the record.
    pub hilt_version: String,
    /// What is known about the record's signature.
    pub signature: Signature,
    /// The summary.
    pub summary: PlatformSummary,
}

/// An accelerator of a result.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformDevice {
    /// Its id in the run (`cuda0`).
    pub id: String,
    /// Its name as its backend reports it.
    pub name: String,
}

/// The numbers that answer "is it safe" for one result, before any detail.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformSummary {
    /// The conformance status that the record's outcomes give (its verdicts, levels,
    /// waivers, tier, and whether the run was partial or unfinished), decided here as the
    /// run decides it, never read from the record's stored field; a record that claims
    /// another is flagged.
    pub conformance: String,
    /// The conformance status the record states, when it differs from `conformance`
    /// (the record was edited, or written by a hilt that decides otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_conformance: Option<String>,
    /// Outcomes of mandatory checks that failed without a waiver.
    pub mandatory_failures: usize,
    /// Outcomes that failed under a waiver.
    pub waived_failures: usize,
    /// Outcomes of mandatory checks that ended inconclusive or in error.
    pub mandatory_inconclusive: usize,
    /// Outcomes of recommended or informational checks that failed, ended inconclusive or
    /// in error.
    pub other_problems: usize,
    /// Trials that finished.
    pub trials_run: usize,
    /// Trials the plan held.
    pub trials_planned: usize,
    /// The least share of device memory a residue check read (`scanned_share`, 0 to 1),
    /// over every check and device; none when no check measured it.
    pub least_scanned_share: Option<f64>,
    /// TS 104 033 requirements by state.
    pub requirements: RequirementCoverage,
}

/// How many requirements a result passed, failed, left unsettled, did not run, or leaves
/// to manual evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RequirementCoverage {
    /// Every outcome for the requirement passed.
    pub passed: usize,
    /// An outcome for it failed.
    pub failed: usize,
    /// None failed, not all passed.
    pub unsettled: usize,
    /// Checks exist for it, none ran.
    pub not_run: usize,
    /// No automated check covers it.
    pub manual: usize,
}

/// Something that makes two results hard to compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// What kind of difference.
    pub kind: FlagKind,
    /// One sentence for people.
    pub text: String,
}

/// The kinds of [`Flag`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// Another profile, or the same profile with other settings.
    Profile,
    /// Runtime settings differ: overrides, hilt's device settings (`opencl.alloc_host_ptr`,
    /// sim knobs, kernel build options), planted sim faults, check parameters.
    Settings,
    /// The results examined different amounts: memory scanned, checks run, filtered or
    /// unfinished runs.
    Coverage,
    /// Another hilt version or tier.
    Run,
    /// A signature that did not verify.
    Signature,
    /// A record that claims what its outcomes do not give (its conformance status).
    Record,
    /// Several devices, or a simulated one.
    Devices,
}

/// A check's row.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    /// The check id.
    pub check: String,
    /// The level, when every result that ran the check gave it the same one.
    pub level: Option<Level>,
    /// Per result: the check's outcomes there, or none when it did not run.
    pub cells: Vec<Option<CheckCell>>,
}

/// A check in one result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckCell {
    /// The level this result's profile gave the check.
    pub level: Level,
    /// Each device's verdict, in trial order; a waived failure as `fail (waived)`.
    pub verdicts: Vec<String>,
    /// The worst of them, which colours the cell.
    pub worst: Standing,
    /// Each device's standing, in trial order (what the regression gate compares).
    #[serde(skip)]
    pub standings: Vec<Standing>,
}

/// A verdict as it colours a cell, from the best to the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Passed.
    Pass,
    /// Did not apply.
    NotApplicable,
    /// Failed under a waiver.
    Waived,
    /// Could not establish the fact.
    Inconclusive,
    /// The harness or its environment failed.
    Error,
    /// Failed.
    Fail,
}

impl Standing {
    /// The standing of one outcome.
    pub fn of(o: &Outcome) -> Standing {
        Standing::from_verdict(o.verdict, o.waiver.is_some())
    }

    /// The standing of a verdict, `waived` for a failure under a waiver.
    pub fn from_verdict(verdict: Verdict, waived: bool) -> Standing {
        match (verdict, waived) {
            (Verdict::Pass, _) => Standing::Pass,
            (Verdict::Fail, true) => Standing::Waived,
            (Verdict::Fail, false) => Standing::Fail,
            (Verdict::NotApplicable, _) => Standing::NotApplicable,
            (Verdict::Inconclusive, _) => Standing::Inconclusive,
            _ => Standing::Error,
        }
    }

    /// How bad the standing is for the regression gate, from 0 (pass): not applicable,
    /// a waived failure, inconclusive or in error (one rank: neither says more about the
    /// platform than the other), an unwaived failure.
    pub fn severity(self) -> u8 {
        match self {
            Standing::Pass => 0,
            Standing::NotApplicable => 1,
            Standing::Waived => 2,
            Standing::Inconclusive | Standing::Error => 3,
            Standing::Fail => 4,
        }
    }

    /// The name used in reports and as a CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Pass => "pass",
            Standing::NotApplicable => "not_applicable",
            Standing::Waived => "waived",
            Standing::Inconclusive => "inconclusive",
            Standing::Error => "error",
            Standing::Fail => "fail",
        }
    }
}

/// A measurement's row.
#[derive(Debug, Clone, Serialize)]
pub struct MeasurementRow {
    /// The check id.
    pub check: String,
    /// The measurement's name as recorded (`bandwidth_median`, `leaked_bytes`).
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// True for a performance figure (a check of the `performance` suite): only these get
    /// a ratio and a call.
    pub performance: bool,
    /// Per result: the value that stands for it, or none.
    pub cells: Vec<Option<Value>>,
}

/// A measurement in one result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Value {
    /// The value: the worst device's by the measurement's direction; the least for a
    /// coverage share; for other undirected measurements the first device's.
    pub value: f64,
    /// The lowest and highest repetition of the device that stands for the result, when
    /// the check recorded them (`*_min` and `*_max` beside a `*_median`).
    pub spread: Option<(f64, f64)>,
    /// The timed repetitions behind it (the outcome's `repetitions` evidence).
    pub repetitions: Option<u32>,
    /// Every device's value, when the check ran on more than one device.
    pub devices: Option<DeviceSpread>,
    /// The ratio to the baseline's value (performance figures only; none for the
    /// baseline, or when the baseline's value is zero or missing).
    pub ratio: Option<f64>,
    /// Better or worse than the baseline, or why neither (performance figures only).
    pub call: Option<Call>,
    /// The worst verdict of the check in this result, which colours the cell.
    pub standing: Standing,
}

/// A measurement of a check that ran on several devices of one result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeviceSpread {
    /// How many devices reported the measurement.
    pub devices: usize,
    /// How many devices the check ran on (some may have ended without the measurement).
    pub of: usize,
    /// The lowest value.
    pub low: f64,
    /// The highest value.
    pub high: f64,
    /// Which device's value the cell shows: `worst`, `least` (coverage) or `first`.
    pub shown: &'static str,
}

/// How a performance figure compares with the baseline's.
///
/// A call is made only when the two runs' ranges (min..max over their repetitions) do
/// not overlap, so that every repetition of one run beat every repetition of the other,
/// and when the repetitions behind them are enough for that to mean something: if both
/// runs measured one unchanged platform with independent repetitions, their ranges would
/// come apart by chance with probability 2 / C(n + m, n) for n and m repetitions (every
/// order of the n + m values being equally likely, two of them put one run's values all
/// below the other's): 10 % for 3 and 3, 0.8 % for 5 and 5, 1e-5 for 10 and 10. hilt
/// calls a difference only where that chance is below 1 % ([`CHANCE_LIMIT`]), and only
/// when both runs recorded their repetitions.
///
/// Repetitions measured back to back share the run's placement, clocks and load, so two
/// runs of one unchanged platform come apart beyond both ranges more often than that
/// chance says (two default runs of the simulated device here: launch latencies of
/// 1.97 us (1.96..2.28) and 2.60 us (2.36..6.94)). So a difference is called only beyond
/// a noise threshold too, a share of the baseline's value (`hilt compare
/// --noise-threshold`, [`NOISE_THRESHOLD`] by default), and never on a simulated device,
/// whose timings are those of hilt's own processes on the host. A figure recorded
/// without a range (the PCIe link width) is exact: any difference is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// Better beyond both runs' spread and the noise threshold.
    Better,
    /// Worse beyond both runs' spread and the noise threshold.
    Worse,
    /// The ranges overlap: the difference is noise as far as these runs can tell.
    WithinSpread,
    /// The ranges do not overlap, but too few repetitions (or repetitions not recorded)
    /// stand behind them to say so.
    TooFewRepetitions,
    /// Beyond both ranges, but smaller than the noise threshold.
    WithinNoiseThreshold,
    /// A simulated device's figure, in either result: not called.
    Simulated,
    /// The very same value.
    Same,
}

impl Call {
    /// The words shown after the ratio.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Better => "better",
            Call::Worse => "worse",
            Call::WithinSpread => "within spread",
            Call::TooFewRepetitions => "too few repetitions to call",
            Call::WithinNoiseThreshold => "within noise threshold",
            Call::Simulated => "simulated, not called",
            Call::Same => "same",
        }
    }
}

/// The chance below which disjoint ranges are taken as a real difference (see [`Call`]).
pub const CHANCE_LIMIT: f64 = 0.01;

/// The default noise threshold (see [`Call`]): 5 % of the baseline's value. A default
/// chosen, not measured: what moves between two runs of one unchanged node depends on
/// the node; compare two such runs of yours and set `--noise-threshold` above what they
/// differ by.
pub const NOISE_THRESHOLD: f64 = 0.05;

/// How a comparison is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// The noise threshold, a share of the baseline's value (0.05: 5 %).
    pub noise_threshold: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            noise_threshold: NOISE_THRESHOLD,
        }
    }
}

/// What got worse in a result against the baseline. `hilt compare --fail-on-regression`
/// exits 4 when the second of two results has any.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Regression {
    /// A check whose outcomes are worse than the baseline's (see [`check_regressed`]).
    Check {
        /// The check id.
        check: String,
        /// Its level in this result (in the baseline when it no longer ran).
        level: Level,
        /// Its verdicts in the baseline (empty when it did not run there).
        was: Vec<String>,
        /// Its verdicts here (empty when it did not run).
        now: Vec<String>,
    },
    /// A performance figure worse than the baseline's beyond both runs' spread and the
    /// noise threshold.
    Performance {
        /// The check id.
        check: String,
        /// The measurement's name.
        measurement: String,
        /// Its unit.
        unit: String,
        /// The baseline's value.
        was: f64,
        /// This result's value.
        now: f64,
    },
}

impl Regression {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Regression::Check { check, level, was, now } => {
                let shown = |v: &[String], none: &str| {
                    if v.is_empty() {
                        none.to_string()
                    } else {
                        verdict_list(v)
                    }
                };
                format!(
                    "{check} ({}): was {}; now {}",
                    level.as_str(),
                    shown(was, "not run"),
                    shown(now, "did not run")
                )
            }
            Regression::Performance {
                check,
                measurement,
                unit,
                was,
                now,
            } => format!(
                "{check} {measurement}: {} {unit}, was {} {unit}, worse beyond both runs' spread and the noise threshold",
                number(*now),
                number(*was)
            ),
        }
    }
}

/// Whether a check's outcomes `now` (each device's standing) are worse than `was`, the
/// baseline's: fewer passes (a pass that now fails, is inconclusive or in error, does
/// not apply, or did not run); more outcomes that failed (waived or not), more that are
/// inconclusive, in error or failed, or more unwaived failures (a new failure, a waiver
/// that no longer holds, a check that could not decide before and fails now); or fewer
/// outcomes than the baseline had, unless none of those applied (a device or the whole
/// check no longer examined). Devices are not matched by id, so that results of
/// different nodes compare too: the counts are.
pub fn check_regressed(was: &[Standing], now: &[Standing]) -> bool {
    let at_least = |v: &[Standing], s: Standing| v.iter().filter(|x| x.severity() >= s.severity()).count();
    let passes = |v: &[Standing]| v.iter().filter(|x| **x == Standing::Pass).count();
    (now.len() < was.len() && was.iter().any(|s| *s != Standing::NotApplicable))
        || passes(now) < passes(was)
        || [Standing::Waived, Standing::Inconclusive, Standing::Fail]
            .into_iter()
            .any(|s| at_least(now, s) > at_least(was, s))
}

/// Measurements that say how much a check examined (a share of device memory), not how
/// well the platform did: a difference is a coverage flag, and a result stands by its
/// least.
pub const COVERAGE_MEASUREMENTS: &[&str] = &["scanned_share"];

/// Builds the comparison of `entries` (at least one) with the default [`Options`]; the
/// first is the baseline.
pub fn compare(entries: &[Entry<'_>]) -> Comparison {
    compare_with(entries, Options::default())
}

/// Builds the comparison of `entries` (at least one); the first is the baseline.
pub fn compare_with(entries: &[Entry<'_>], options: Options) -> Comparison {
    let platforms: Vec<Platform> = entries.iter().map(platform).collect();
    let checks = check_rows(entries);
    let measurements = measurement_rows(entries, &checks, options);
    let mut flags = flags::across(entries, &measurements);
    for e in entries {
        flags.extend(flags::of(e));
    }
    let regressions = (0..entries.len())
        .map(|i| {
            if i == 0 {
                Vec::new()
            } else {
                regressions(i, &checks, &measurements)
            }
        })
        .collect();
    Comparison {
        noise_threshold: options.noise_threshold,
        platforms,
        flags,
        regressions,
        checks,
        measurements,
    }
}

fn platform(e: &Entry<'_>) -> Platform {
    let r = e.report.record;
    let accelerators: Vec<&hilt_results::Device> = r.devices.iter().filter(|d| d.backend != "host").collect();
    let mut models: Vec<(&str, usize)> = Vec::new();
    for d in &accelerators {
        match models.iter_mut().find(|(name, _)| *name == d.name) {
            Some((_, n)) => *n += 1,
            None => models.push((&d.name, 1)),
        }
    }
    let device_model = if models.is_empty() {
        "no accelerator".to_string()
    } else {
        models
            .iter()
            .map(|(name, n)| {
                if *n == 1 {
                    name.to_string()
                } else {
                    format!("{n} × {name}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Platform {
        label: e.label.clone(),
        device_model,
        devices: accelerators
            .iter()
            .map(|d| PlatformDevice {
                id: d.id.clone(),
                name: d.name.clone(),
            })
            .collect(),
        node: node(r).to_string(),
        started_at: r.run.started_at.clone(),
        profile: r.profile.id.clone(),
        profile_version: r.profile.version.clone(),
        profile_digest: r.profile.digest.clone(),
        tier: r.run.tier.as_str().to_string(),
        hilt_version: r.tool.version.clone(),
        signature: e.report.signature.clone(),
        summary: summary(&e.report),
    }
}

fn summary(report: &Report<'_>) -> PlatformSummary {
    let r = report.record;
    let count = |f: &dyn Fn(&Outcome) -> bool| r.outcomes.iter().filter(|o| f(o)).count();
    let unsettled = |o: &Outcome| matches!(o.verdict, Verdict::Inconclusive | Verdict::Error);
    let trace = report.traceability();
    let state = |s: TraceState| trace.iter().filter(|t| t.state == s).count();
    let conformance = r.derived_conformance().status;
    PlatformSummary {
        conformance: conformance.as_str().to_string(),
        recorded_conformance: (r.conformance.status != conformance).then(|| r.conformance.status.as_str().to_string()),
        mandatory_failures: count(&|o| o.level == Level::Mandatory && Standing::of(o) == Standing::Fail),
        waived_failures: count(&|o| Standing::of(o) == Standing::Waived),
        mandatory_inconclusive: count(&|o| o.level == Level::Mandatory && unsettled(o)),
        other_problems: count(&|o| o.level != Level::Mandatory && (o.verdict == Verdict::Fail || unsettled(o))),
        trials_run: r.outcomes.len(),
        trials_planned: r.run.planned.len(),
        least_scanned_share: r
            .outcomes
            .iter()
            .flat_map(|o| &o.measurements)
            .filter(|m| COVERAGE_MEASUREMENTS.contains(&m.name.as_str()))
            .map(|m| m.value)
            .reduce(f64::min),
        requirements: RequirementCoverage {
            passed: state(TraceState::Passed),
            failed: state(TraceState::Failed),
            unsettled: state(TraceState::Unsettled),
            not_run: state(TraceState::NotRun),
            manual: state(TraceState::Manual),
        },
    }
}

fn check_rows(entries: &[Entry<'_>]) -> Vec<CheckRow> {
    let n = entries.len();
    let mut rows: BTreeMap<String, Vec<Option<CheckCell>>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        for o in e.report.outcomes_sorted() {
            let cell = &mut rows.entry(o.check.clone()).or_insert_with(|| vec![None; n])[i];
            let cell = cell.get_or_insert_with(|| CheckCell {
                level: o.level,
                verdicts: Vec::new(),
                worst: Standing::Pass,
                standings: Vec::new(),
            });
            cell.standings.push(Standing::of(o));
            cell.verdicts.push(match Standing::of(o) {
                Standing::Waived => "fail (waived)".to_string(),
                _ => o.verdict.as_str().to_string(),
            });
            cell.worst = cell.worst.max(Standing::of(o));
        }
    }
    rows.into_iter()
        .map(|(check, cells)| {
            let mut levels = cells.iter().flatten().map(|c| c.level);
            let first = levels.next();
            let level = first.filter(|l| levels.all(|m| m == *l));
            CheckRow { check, level, cells }
        })
        .collect()
}

/// One device's reading of a measurement.
#[derive(Clone, Copy)]
struct Reading {
    value: f64,
    spread: Option<(f64, f64)>,
    repetitions: Option<u32>,
}

fn measurement_rows(entries: &[Entry<'_>], checks: &[CheckRow], options: Options) -> Vec<MeasurementRow> {
    let n = entries.len();
    // Per result: the ids of its simulated devices, whose timings are not called.
    let simulated: Vec<Vec<&str>> = entries
        .iter()
        .map(|e| {
            let r = e.report.record;
            r.devices
                .iter()
                .filter(|d| d.simulated)
                .map(|d| d.id.as_str())
                .collect()
        })
        .collect();
    type Key = (String, String, String);
    // Per row and result: every device's reading, in trial order.
    let mut readings: BTreeMap<Key, (Better, Vec<Vec<Reading>>)> = BTreeMap::new();
    // Per row and result: whether it was measured on a simulated device.
    let mut on_sim: BTreeMap<Key, Vec<bool>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        for o in e.report.outcomes_sorted() {
            let folded = folded_ranges(o);
            let repetitions = o
                .evidence
                .get("repetitions")
                .and_then(serde_json::Value::as_u64)
                .and_then(|r| u32::try_from(r).ok());
            for m in &o.measurements {
                if folded.values().any(|(lo, hi)| *lo == m.name || *hi == m.name) {
                    continue;
                }
                let spread = folded.get(&m.name).map(|(lo, hi)| (value_of(o, lo), value_of(o, hi)));
                let key = (o.check.clone(), m.name.clone(), m.unit.clone());
                on_sim.entry(key.clone()).or_insert_with(|| vec![false; n])[i] |=
                    simulated[i].contains(&o.device.as_str());
                let entry = readings.entry(key).or_insert_with(|| (m.better, vec![Vec::new(); n]));
                entry.1[i].push(Reading {
                    value: m.value,
                    spread,
                    repetitions: spread.and(repetitions),
                });
            }
        }
    }
    readings
        .into_iter()
        .map(|(key, (better, per_result))| {
            let simulated = on_sim.remove(&key).unwrap_or_default();
            let (check, name, unit) = key;
            let performance = is_performance(&check);
            let coverage = COVERAGE_MEASUREMENTS.contains(&name.as_str());
            let row = checks.iter().find(|r| r.check == check);
            let mut cells: Vec<Option<Value>> = per_result
                .iter()
                .enumerate()
                .map(|(i, values)| {
                    let cell = row.and_then(|r| r.cells[i].as_ref());
                    let of = cell.map_or(0, |c| c.verdicts.len());
                    let standing = cell.map_or(Standing::Pass, |c| c.worst);
                    stand_for(values, better, coverage, of, standing)
                })
                .collect();
            if performance && matches!(better, Better::Higher | Better::Lower) {
                let base = cells.first().cloned().flatten();
                let on_sim = |i: usize| simulated.get(i).copied().unwrap_or(false);
                for (i, cell) in cells.iter_mut().enumerate().skip(1) {
                    if let (Some(base), Some(cell)) = (&base, cell) {
                        cell.ratio = (base.value != 0.0).then(|| cell.value / base.value);
                        cell.call = Some(if cell.value != base.value && (on_sim(0) || on_sim(i)) {
                            Call::Simulated
                        } else {
                            call(base, cell, better, options.noise_threshold)
                        });
                    }
                }
            }
            MeasurementRow {
                check,
                name,
                unit,
                better,
                performance,
                cells,
            }
        })
        .collect()
}

/// `P_median` → (`P_min`, `P_max`) for every median whose range the outcome recorded too.
fn folded_ranges(o: &Outcome) -> BTreeMap<String, (String, String)> {
    let has = |name: &str| o.measurements.iter().any(|m| m.name == name);
    o.measurements
        .iter()
        .filter_map(|m| {
            let stem = m.name.strip_suffix("_median")?;
            let (lo, hi) = (format!("{stem}_min"), format!("{stem}_max"));
            (has(&lo) && has(&hi)).then(|| (m.name.clone(), (lo, hi)))
        })
        .collect()
}

fn value_of(o: &Outcome, name: &str) -> f64 {
    o.measurements
        .iter()
        .find(|m| m.name == name)
        .map_or(f64::NAN, |m| m.value)
}

/// Performance figures are the measurements of the `performance` suite: they say how
/// fast, not whether safe.
fn is_performance(check: &str) -> bool {
    check.starts_with("performance.")
}

/// The reading that stands for one result: the worst of its devices' by the direction,
/// the least for a coverage share, the first otherwise; with every device's range when
/// the check ran on several (`of` devices).
fn stand_for(readings: &[Reading], better: Better, coverage: bool, of: usize, standing: Standing) -> Option<Value> {
    let first = *readings.first()?;
    let pick = |worse: fn(f64, f64) -> bool| {
        readings
            .iter()
            .copied()
            .fold(first, |a, b| if worse(b.value, a.value) { b } else { a })
    };
    let (chosen, shown) = match better {
        Better::Higher => (pick(|b, a| b < a), "worst"),
        Better::Lower => (pick(|b, a| b > a), "worst"),
        _ if coverage => (pick(|b, a| b < a), "least"),
        _ => (first, "first"),
    };
    let low = readings.iter().map(|r| r.value).fold(first.value, f64::min);
    let high = readings.iter().map(|r| r.value).fold(first.value, f64::max);
    let devices = (readings.len() > 1 || of > 1).then_some(DeviceSpread {
        devices: readings.len(),
        of: of.max(readings.len()),
        low,
        high,
        shown,
    });
    Some(Value {
        value: chosen.value,
        spread: chosen.spread,
        repetitions: chosen.repetitions,
        devices,
        ratio: None,
        call: None,
        standing,
    })
}

/// The call on `cell` against `base` for a measurement whose better direction is
/// `better`, with the noise threshold `noise` (see [`Call`]).
fn call(base: &Value, cell: &Value, better: Better, noise: f64) -> Call {
    if cell.value == base.value {
        return Call::Same;
    }
    let (b_lo, b_hi) = base.spread.unwrap_or((base.value, base.value));
    let (c_lo, c_hi) = cell.spread.unwrap_or((cell.value, cell.value));
    if c_lo <= b_hi && b_lo <= c_hi {
        return Call::WithinSpread;
    }
    // A figure with a range on either side is a median of repetitions: calling it needs
    // both sides' repetitions, and a difference beyond the noise threshold.
    if base.spread.is_some() || cell.spread.is_some() {
        match (base.spread, cell.spread, base.repetitions, cell.repetitions) {
            (Some(_), Some(_), Some(n), Some(m)) if disjoint_by_chance(n, m) < CHANCE_LIMIT => {}
            _ => return Call::TooFewRepetitions,
        }
        if (cell.value - base.value).abs() < noise * base.value.abs() {
            return Call::WithinNoiseThreshold;
        }
    }
    let higher = cell.value > base.value;
    match (better, higher) {
        (Better::Higher, true) | (Better::Lower, false) => Call::Better,
        _ => Call::Worse,
    }
}

/// The chance that two runs of one distribution, of `n` and `m` independent repetitions,
/// have ranges that do not overlap: 2 / C(n + m, n).
pub fn disjoint_by_chance(n: u32, m: u32) -> f64 {
    let (n, m) = (f64::from(n.max(1)), f64::from(m.max(1)));
    // C(n + m, n) = Π_{i=1..n} (m + i) / i, which grows past f64 into infinity: chance 0.
    let mut c = 1.0;
    let mut i = 1.0;
    while i <= n {
        c *= (m + i) / i;
        i += 1.0;
    }
    (2.0 / c).min(1.0)
}

/// A cell's standings, none for a check that did not run.
fn standings(cell: Option<&CheckCell>) -> &[Standing] {
    cell.map_or(&[], |c| c.standings.as_slice())
}

fn regressions(i: usize, checks: &[CheckRow], measurements: &[MeasurementRow]) -> Vec<Regression> {
    let mut out = Vec::new();
    for row in checks {
        let (base, cell) = (row.cells[0].as_ref(), row.cells[i].as_ref());
        if !check_regressed(standings(base), standings(cell)) {
            continue;
        }
        let verdicts = |c: Option<&CheckCell>| c.map_or(Vec::new(), |c| c.verdicts.clone());
        out.push(Regression::Check {
            check: row.check.clone(),
            level: cell.or(base).map_or(Level::Mandatory, |c| c.level),
            was: verdicts(base),
            now: verdicts(cell),
        });
    }
    for row in measurements.iter().filter(|r| r.performance) {
        if let (Some(base), Some(cell)) = (&row.cells[0], &row.cells[i])
            && cell.call == Some(Call::Worse)
        {
            out.push(Regression::Performance {
                check: row.check.clone(),
                measurement: row.name.clone(),
                unit: row.unit.clone(),
                was: base.value,
                now: cell.value,
            });
        }
    }
    out
}

/// A share (`ratio`, 0 to 1) as a percentage without trailing zeros (`0.5 %`, `50 %`);
/// other units as numbers with their unit.
pub fn share(value: f64, unit: &str) -> String {
    if unit != "ratio" {
        return format!("{} {unit}", number(value));
    }
    let percent = number(value * 100.0);
    let percent = match percent.contains('.') && !percent.contains('e') {
        true => percent.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => percent,
    };
    format!("{percent} %")
}

/// The verdicts of one check in one result: listed for one or two devices, counted for
/// more (`7 pass, 1 fail`).
pub fn verdict_list(v: &[String]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    if v.len() <= 2 {
        return v.join(", ");
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for verdict in v {
        match counts.iter_mut().find(|(name, _)| name == verdict) {
            Some((_, n)) => *n += 1,
            None => counts.push((verdict, 1)),
        }
    }
    counts
        .iter()
        .map(|(name, n)| format!("{n} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_ranges_by_chance_follow_the_order_statistics() {
        assert!((disjoint_by_chance(3, 3) - 0.1).abs() < 1e-12, "2 / C(6, 3)");
        assert!((disjoint_by_chance(5, 5) - 2.0 / 252.0).abs() < 1e-12);
        assert!((disjoint_by_chance(3, 10) - 2.0 / 286.0).abs() < 1e-12);
        assert!(disjoint_by_chance(10, 10) < 2e-5);
        assert_eq!(disjoint_by_chance(1, 1), 1.0, "two single values: always apart");
        assert_eq!(disjoint_by_chance(1000, 1000), 0.0);
    }

    fn value(value: f64, spread: Option<(f64, f64)>, repetitions: Option<u32>) -> Value {
        Value {
            value,
            spread,
            repetitions,
            devices: None,
            ratio: None,
            call: None,
            standing: Standing::Pass,
        }
    }

    #[test]
    fn a_call_needs_disjoint_ranges_and_enough_repetitions() {
        let base = value(10.0, Some((9.0, 11.0)), Some(10));
        let call = |v: Value, better| call(&base, &v, better, 0.0);
        assert_eq!(
            call(value(10.0, Some((8.0, 12.0)), Some(10)), Better::Higher),
            Call::Same
        );
        assert_eq!(
            call(value(12.0, Some((10.5, 13.0)), Some(10)), Better::Higher),
            Call::WithinSpread
        );
        assert_eq!(
            call(value(13.0, Some((12.0, 14.0)), Some(10)), Better::Higher),
            Call::Better
        );
        assert_eq!(
            call(value(13.0, Some((12.0, 14.0)), Some(10)), Better::Lower),
            Call::Worse
        );
        assert_eq!(
            call(value(7.0, Some((6.0, 8.0)), Some(10)), Better::Higher),
            Call::Worse
        );
        assert_eq!(
            call(value(7.0, Some((6.0, 8.0)), Some(10)), Better::Lower),
            Call::Better
        );
        let few = value(10.0, Some((9.0, 11.0)), Some(3));
        assert_eq!(
            super::call(&few, &value(20.0, Some((19.0, 21.0)), Some(3)), Better::Higher, 0.0),
            Call::TooFewRepetitions
        );
        // Exact figures (no range): any difference is called.
        assert_eq!(
            super::call(&value(16.0, None, None), &value(8.0, None, None), Better::Higher, 0.5),
            Call::Worse
        );
    }

    #[test]
    fn a_call_needs_a_difference_beyond_the_noise_threshold_and_known_repetitions() {
        let base = value(10.0, Some((9.9, 10.1)), Some(100));
        // Apart beyond both ranges by 3 %: within a 5 % threshold, called under 1 %.
        let slower = value(9.7, Some((9.6, 9.8)), Some(100));
        assert_eq!(call(&base, &slower, Better::Higher, 0.05), Call::WithinNoiseThreshold);
        assert_eq!(call(&base, &slower, Better::Higher, 0.01), Call::Worse);
        let faster = value(10.3, Some((10.2, 10.4)), Some(100));
        assert_eq!(call(&base, &faster, Better::Higher, 0.05), Call::WithinNoiseThreshold);
        assert_eq!(
            call(&base, &value(12.0, Some((11.9, 12.1)), Some(100)), Better::Higher, 0.05),
            Call::Better
        );
        // Repetitions not recorded, or a range on one side only: nothing to judge the
        // chance by.
        assert_eq!(
            call(&base, &value(5.0, Some((4.9, 5.1)), None), Better::Higher, 0.05),
            Call::TooFewRepetitions
        );
        assert_eq!(
            call(&base, &value(5.0, None, None), Better::Higher, 0.05),
            Call::TooFewRepetitions
        );
        assert_eq!(
            call(&value(5.0, None, None), &base, Better::Higher, 0.05),
            Call::TooFewRepetitions
        );
        // Exact figures are not held to the threshold: any difference is real.
        assert_eq!(
            call(&value(16.0, None, None), &value(15.9, None, None), Better::Higher, 0.05),
            Call::Worse
        );
    }

    #[test]
    fn a_check_regressed_when_any_outcome_got_worse_from_any_start() {
        use Standing::{Error, Fail, Inconclusive, NotApplicable as Na, Pass, Waived};
        let regressed = |was: &[Standing], now: &[Standing]| check_regressed(was, now);
        // From a pass, anything else, or nothing.
        for now in [&[Na][..], &[Waived], &[Inconclusive], &[Error], &[Fail], &[]] {
            assert!(regressed(&[Pass], now), "pass -> {now:?}");
        }
        // From a standing that was not a pass: worse is worse.
        assert!(regressed(&[Inconclusive], &[Fail]), "could not decide, now fails");
        assert!(regressed(&[Error], &[Fail]));
        assert!(regressed(&[Waived], &[Fail]), "the waiver no longer holds");
        assert!(regressed(&[Waived], &[Inconclusive]));
        assert!(regressed(&[Na], &[Fail]));
        assert!(regressed(&[Na], &[Inconclusive]));
        assert!(
            regressed(&[Fail], &[]),
            "a failure is not hidden by not running the check"
        );
        assert!(regressed(&[Inconclusive], &[]));
        // A check the baseline did not run at all: only a problem is a regression.
        assert!(regressed(&[], &[Fail]));
        assert!(regressed(&[], &[Waived]));
        assert!(!regressed(&[], &[Pass]));
        assert!(!regressed(&[], &[Na]));
        // Several devices: counted, not matched by id.
        assert!(
            regressed(&[Pass, Na], &[Inconclusive, Na]),
            "the passing device no longer passes"
        );
        assert!(regressed(&[Pass, Pass], &[Pass]), "a device no longer examined");
        assert!(regressed(&[Fail, Fail], &[Fail, Fail, Fail]), "a new device fails");
        assert!(!regressed(&[Pass], &[Pass, Na]), "a new device it does not apply to");
        assert!(!regressed(&[Pass, Na], &[Na, Pass]));
        // Not worse: the same, better, or one unsettled standing for another.
        for (was, now) in [
            (&[Pass][..], &[Pass][..]),
            (&[Fail], &[Fail]),
            (&[Fail], &[Waived]),
            (&[Fail], &[Inconclusive]),
            (&[Fail], &[Pass]),
            (&[Inconclusive], &[Error]),
            (&[Error], &[Inconclusive]),
            (&[Inconclusive], &[Waived]),
            (&[Na], &[Pass]),
            (&[Na], &[]),
            (&[Na, Na], &[Na]),
        ] {
            assert!(!regressed(was, now), "{was:?} -> {now:?}");
        }
    }
}
