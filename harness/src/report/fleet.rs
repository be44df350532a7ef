//! A fleet: one night's results of many nodes read together, for `hilt fleet`.
//!
//! A fleet report answers what a site asks the morning after a nightly run: which nodes
//! are conformant, which are not and why, which results cannot be trusted (not signed, or
//! not verified against the site's keys), which nodes sent nothing, whose figures stand
//! apart from the rest, and what broke since the night before and what changed on the
//! node when it did ("residue came back after the driver moved from 550.127.05 to
//! 550.144.03").
//!
//! Reading: every `result.dsse.json` (or, where a run left no envelope, `result.json`)
//! below the directories given, symbolic links not followed (so a `latest` link never
//! counts a run twice), a flat `DIR/result.json` included; the files are verified and
//! reduced to what the report needs ([`NodeResult`]) on every core, and the full records
//! are dropped, so a thousand 8-GPU nodes fit in a few hundred MiB. A node's newest
//! result (by start time) stands for it; older ones are listed as superseded. A file
//! that holds the very result standing for its node (one run id, the same content: a
//! `latest` link that an artifact upload or `cp -L` turned into a folder, a file named
//! twice) is that run read again: counted once, and listed as a copy.
//!
//! Deciding: a node counts as conformant only with a result signed by a trusted key whose
//! conformance status is `conformant` and in which nothing regressed since the baseline.
//! The fleet is green (exit 0) only when every expected node (those found, those named in
//! `--expect-nodes`, those in the baseline) is; a result file that cannot be read at all
//! makes the exit 2.
//!
//! Outliers: per measurement (check, name, unit), the values of every device of every
//! node; a value lies `distance` median absolute deviations (MAD) from the fleet median,
//! and more than the factor (default [`DEFAULT_OUTLIER_MAD`]) flags it. The MAD, unlike
//! the standard deviation, is not dragged along by the outliers it is meant to find.
//! When more than half the values are equal the MAD is 0, and every other value is an
//! outlier.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hilt_results::signed::TrustedKey;
use hilt_results::{Better, ConformanceStatus, Level, ResultRecord, Tier, Verdict};
use quick_junit::{NonSuccessKind, Property, Report as JReport, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use super::compare::Standing;
use super::html::{CSP, esc};
use super::markdown::{cell as md, code, table_code};
use super::{Signature, number, one_line};

/// The outlier factor, in median absolute deviations, when neither `--outlier-mad` nor the
/// results' profile (`fleet_outlier_mad`) sets one: 3.5 / 0.6745, Iglewicz and Hoaglin's
/// cut-off for the modified z-score (3.5, in units of 1.4826 MAD, the MAD scaled to the
/// standard deviation of normal data), written in plain MADs ("How to Detect and Handle
/// Outliers", ASQC, 1993).
pub const DEFAULT_OUTLIER_MAD: f64 = 5.0;

/// The file names a run writes its result under (contract: `DIR/<run-dir>/result.json`
/// and `result.dsse.json`, or flat in `DIR`).
pub const RESULT_FILES: [&str; 2] = ["result.dsse.json", "result.json"];

/// Why a fleet's inputs cannot be used at all (exit 2, nothing reported).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// A directory or file given on the command line cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Input {
        /// The path given.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A line of the expected-nodes file is not a node name.
    #[error("{}:{line}: `{text}` is not a node name (one per line; `#` starts a comment)", .path.display())]
    ExpectedNode {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What it held.
        text: String,
    },
}

/// A result file that could not be read, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unreadable {
    /// The file.
    pub path: PathBuf,
    /// Why, in words.
    pub error: String,
}

/// Every result file below `inputs`: in each directory its `result.dsse.json`, else its
/// `result.json`; a file given itself is taken as it is. Symbolic links below the inputs
/// are not followed. Directories below that cannot be listed are returned as unreadable.
pub fn find_results(inputs: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<Unreadable>), FleetError> {
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|source| FleetError::Input {
            path: input.clone(),
            source,
        })?;
        if !meta.is_dir() {
            found.push(input.clone());
            continue;
        }
        let mut stack = vec![input.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(source) if dir == *input => {
                    return Err(FleetError::Input {
                        path: input.clone(),
                        source,
                    });
                }
                Err(e) => {
                    unreadable.push(Unreadable {
                        path: dir.clone(),
                        error: format!("cannot list the directory: {e}"),
                    });
                    continue;
                }
            };
            let mut files = BTreeSet::new();
            let mut dirs = Vec::new();
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else { continue };
                let name = entry.file_name().to_string_lossy().into_owned();
                if kind.is_dir() {
                    dirs.push(entry.path());
                } else if kind.is_file() && RESULT_FILES.contains(&name.as_str()) {
                    files.insert(name);
                }
            }
            if let Some(name) = RESULT_FILES.iter().find(|n| files.contains(**n)) {
                found.push(dir.join(name));
            }
            dirs.sort();
            stack.extend(dirs.into_iter().rev());
        }
    }
    found.sort();
    found.dedup();
    Ok((found, unreadable))
}

/// The node names of an expected-nodes file: one per line, blank lines and `#` comments
/// ignored (`scontrol show hostnames`, `kubectl get nodes -o name` with `node/` cut, or a
/// hand-kept list).
pub fn read_expected_nodes(path: &Path) -> Result<Vec<String>, FleetError> {
    let text = std::fs::read_to_string(path).map_err(|source| FleetError::Input {
        path: path.to_path_buf(),
        source,
    })?;
    let mut nodes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.split('#').next().unwrap_or_default().trim();
        if name.is_empty() {
            continue;
        }
        let name = name.strip_prefix("node/").unwrap_or(name);
        if !valid_node_name(name) {
            return Err(FleetError::ExpectedNode {
                path: path.to_path_buf(),
                line: i + 1,
                text: one_line(name),
            });
        }
        nodes.push(name.to_string());
    }
    Ok(nodes)
}

/// Whether `name` is a node name as `hilt run --node` accepts it: 1 to 253 letters,
/// digits, `.`, `-` and `_`, not starting with `.`.
pub fn valid_node_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !name.starts_with('.')
}

/// What a fleet report keeps of one result: everything its sections show, far less than
/// the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeResult {
    /// The node (`host.node`, else `host.hostname`).
    pub node: String,
    /// The machine that ran it (`host.machine`), where the record says.
    pub machine: Option<String>,
    /// The file it came from.
    pub path: PathBuf,
    /// What its signature says.
    pub signature: Signature,
    /// True when a one-off development key signed it (no lab key was given to the run).
    pub development_key: bool,
    /// The run's id.
    pub run_id: String,
    /// When the run started (RFC 3339 UTC).
    pub started_at: String,
    /// Whether the run finished.
    pub complete: bool,
    /// The run's conformance status.
    pub status: ConformanceStatus,
    /// The run's reasons for it.
    pub reasons: Vec<String>,
    /// The profile's id.
    pub profile: String,
    /// The profile's digest.
    pub profile_digest: String,
    /// The tier.
    pub tier: Tier,
    /// The hilt version that ran.
    pub hilt_version: String,
    /// True when a simulated device was among the devices.
    pub simulated: bool,
    /// The accelerator devices the run planned trials for (the host excepted), by id.
    pub devices: Vec<String>,
    /// Per check id and device id, the outcome.
    pub cells: BTreeMap<(String, String), Cell>,
    /// Every measurement.
    pub samples: Vec<Sample>,
    /// What identifies the node's software and firmware, for "what changed": item and
    /// device (empty for the node itself) → value.
    pub fingerprint: BTreeMap<(String, String), String>,
}

/// One outcome, as the fleet report keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// The verdict.
    pub verdict: Verdict,
    /// True for a failure under a waiver.
    pub waived: bool,
    /// The check's level.
    pub level: Level,
    /// Why, for every verdict but `pass`.
    pub reason: Option<String>,
    /// Where the outcome stands in its run's decision ([`hilt_results::standing`]): what
    /// the run's JUnit, terminal and exit code said of it, and what the fleet's JUnit says.
    #[serde(skip)]
    pub decision: hilt_results::Standing,
}

/// One measured value of one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The check id.
    pub check: String,
    /// The measurement's name.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// The device id.
    pub device: String,
    /// The value.
    pub value: f64,
}

impl NodeResult {
    /// The fleet's view of `record`, read from `path` with `signature`.
    pub fn from_record(path: PathBuf, record: ResultRecord, signature: Signature) -> NodeResult {
        let mut cells = BTreeMap::new();
        let mut samples = Vec::new();
        let mut fingerprint = BTreeMap::new();
        let node = record.host.node_name().to_string();
        fingerprint.insert(("kernel".to_string(), String::new()), record.host.kernel.clone());
        fingerprint.insert(("hilt".to_string(), String::new()), record.tool.version.clone());
        fingerprint.insert(
            ("profile".to_string(), String::new()),
            format!("{} {}", record.profile.id, short_digest(&record.profile.digest)),
        );
        for (item, list) in [
            ("sim faults", &record.run.sim_faults),
            ("overrides", &record.run.overrides),
        ] {
            if !list.is_empty() {
                fingerprint.insert((item.to_string(), String::new()), list.join(" "));
            }
        }
        for d in record
            .devices
            .iter()
            .filter(|d| d.backend != crate::check::HOST_BACKEND)
        {
            for (key, value) in &d.facts {
                if versioned(key) {
                    fingerprint.insert((key.clone(), d.id.clone()), text_of(value));
                }
            }
        }
        for o in record.outcomes {
            let decision = hilt_results::standing(&o, record.run.tier);
            if o.check.starts_with("firmware.") {
                for (key, value) in &o.evidence {
                    if matches!(key.as_str(), "driver_version" | "rom_sha256") {
                        fingerprint.insert((key.clone(), o.device.clone()), short_digest(&text_of(value)));
                    }
                }
            }
            for m in o.measurements {
                samples.push(Sample {
                    check: o.check.clone(),
                    name: m.name,
                    unit: m.unit,
                    better: m.better,
                    device: o.device.clone(),
                    value: m.value,
                });
            }
            cells.insert(
                (o.check, o.device),
                Cell {
                    decision,
                    verdict: o.verdict,
                    waived: o.waiver.is_some(),
                    level: o.level,
                    reason: if o.verdict == Verdict::Pass { None } else { o.reason },
                },
            );
        }
        NodeResult {
            node,
            machine: record.host.machine,
            path,
            signature,
            development_key: record.signing.is_some(),
            run_id: record.run.id,
            started_at: record.run.started_at,
            complete: record.run.complete,
            status: record.conformance.status,
            reasons: record.conformance.reasons,
            profile: record.profile.id,
            profile_digest: record.profile.digest,
            tier: record.run.tier,
            hilt_version: record.tool.version,
            simulated: record.devices.iter().any(|d| d.simulated),
            devices: record
                .devices
                .iter()
                .filter(|d| d.backend != crate::check::HOST_BACKEND)
                .map(|d| d.id.clone())
                .collect(),
            cells,
            samples,
            fingerprint,
        }
    }
}

/// Device facts that identify software or firmware: what a "what changed" line names.
fn versioned(key: &str) -> bool {
    ["version", "driver", "vbios", "firmware", "inforom"]
        .iter()
        .any(|w| key.contains(w))
}

fn text_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `sha256:` digests cut to 12 hex digits; other text as it is.
fn short_digest(text: &str) -> String {
    match text.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}", &hex[..12]),
        _ if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) => text[..12].to_string(),
        _ => text.to_string(),
    }
}

/// Reads and verifies `paths` against `keys` on `threads` threads, each reduced to its
/// [`NodeResult`] as soon as it is read; in the order of `paths`.
pub fn read_results(paths: &[PathBuf], keys: &[TrustedKey], threads: usize) -> Vec<Result<NodeResult, Unreadable>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let read_one = |path: &PathBuf| {
        super::read_result(path, keys)
            .map(|(record, signature)| NodeResult::from_record(path.clone(), record, signature))
            .map_err(|error| Unreadable {
                path: path.clone(),
                error,
            })
    };
    let mut done: Vec<(usize, Result<NodeResult, Unreadable>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.clamp(1, paths.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { break };
                        mine.push((i, read_one(path)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            // A worker that panicked lost its files; they are read again below.
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(paths.len());
    let mut it = done.into_iter().peekable();
    for (i, path) in paths.iter().enumerate() {
        match it.next_if(|(j, _)| *j == i) {
            Some((_, r)) => out.push(r),
            None => out.push(read_one(path)),
        }
    }
    out
}

/// What a fleet report is made from.
pub struct FleetInput {
    /// Tonight's results, as read.
    pub current: Vec<Result<NodeResult, Unreadable>>,
    /// Directories below the inputs that could not be listed.
    pub unlisted: Vec<Unreadable>,
    /// Last night's results (`--baseline`), if any were given.
    pub baseline: Option<Vec<Result<NodeResult, Unreadable>>>,
    /// Nodes that must have a result (`--expect-nodes`).
    pub expected: Vec<String>,
    /// Whether trusted keys were given (without them nothing verifies).
    pub keys_given: bool,
    /// The outlier factor given on the command line (`--outlier-mad`).
    pub outlier_mad: Option<f64>,
    /// The outlier factor of each profile that sets one (`fleet_outlier_mad`), by id.
    pub profile_outlier_mad: BTreeMap<String, f64>,
}

/// How a node stands in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Expected, and no result came back.
    Missing,
    /// Its result is signed, but not by a trusted key, or was altered.
    NotVerified,
    /// Its result is not signed at all.
    Unsigned,
    /// Results from more than one machine name themselves this node, so which machine
    /// the node's result describes is a guess: the others' are hidden behind it (see
    /// [`NodeEntry::machines`]).
    SharedName,
    /// A mandatory check failed.
    NotConformant,
    /// The run did not finish.
    Incomplete,
    /// A mandatory check ended inconclusive or in error.
    Inconclusive,
    /// Filters, planted faults or overridden settings made the run a partial one.
    Partial,
    /// Conformant tonight, but a check stands worse than in the baseline (see
    /// [`NodeEntry::regressions`]).
    Regressed,
    /// A verified, conformant result, nothing regressed.
    Conformant,
}

impl NodeStatus {
    /// The name shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Missing => "missing",
            NodeStatus::NotVerified => "not_verified",
            NodeStatus::Unsigned => "unsigned",
            NodeStatus::SharedName => "shared_name",
            NodeStatus::NotConformant => "not_conformant",
            NodeStatus::Incomplete => "incomplete",
            NodeStatus::Inconclusive => "inconclusive",
            NodeStatus::Partial => "partial",
            NodeStatus::Regressed => "regressed",
            NodeStatus::Conformant => "conformant",
        }
    }
}

/// A check on a device whose verdict moved between the baseline and tonight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// The check id.
    pub check: String,
    /// The device id.
    pub device: String,
    /// Where it stood in the baseline (its verdict, `waived` for a failure under a waiver).
    pub before: Standing,
    /// Where it stands tonight; `None` when it did not run tonight.
    pub after: Option<Standing>,
    /// Tonight's reason.
    pub reason: Option<String>,
}

impl Transition {
    fn after_str(&self) -> &'static str {
        self.after.map_or("not run", Standing::as_str)
    }
}

/// One node of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeEntry {
    /// The node's name.
    pub node: String,
    /// How it stands.
    pub status: NodeStatus,
    /// Why, one sentence per fact.
    pub why: Vec<String>,
    /// Its result, when one came back.
    pub result: Option<NodeResult>,
    /// Checks that stand worse than in the baseline, by `hilt compare`'s rule: a pass
    /// that no longer passes, a waived failure now unwaived, an inconclusive check that
    /// now fails, a check that applied in the baseline and did not run tonight.
    pub regressions: Vec<Transition>,
    /// Checks that did not pass in the baseline and pass now.
    pub recoveries: Vec<Transition>,
    /// What changed on the node since the baseline, one line each.
    pub changes: Vec<String>,
    /// Whether the node was expected (`--expect-nodes` or the baseline).
    pub expected: bool,
    /// The machines (`host.machine`) whose results of this night name this node, where
    /// more than one does; empty otherwise.
    pub machines: Vec<String>,
}

/// The values of one measurement across the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasurementStats {
    /// The check id.
    pub check: String,
    /// The measurement's name.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// How many values (devices of all nodes).
    pub count: usize,
    /// How many nodes.
    pub nodes: usize,
    /// The median.
    pub median: f64,
    /// The lowest value.
    pub min: f64,
    /// The highest value.
    pub max: f64,
    /// The median absolute deviation from the median.
    pub mad: f64,
    /// The outlier factor applied, in MADs.
    pub factor: f64,
    /// The values further than `factor` MADs from the median.
    pub outliers: Vec<Outlier>,
}

/// A value far from the fleet's median.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outlier {
    /// The node.
    pub node: String,
    /// The device.
    pub device: String,
    /// The value.
    pub value: f64,
    /// How far from the median, in MADs; `None` when the MAD is 0 (most values equal).
    pub distance: Option<f64>,
    /// True when the value is worse than the median by the measurement's direction,
    /// false when better; `None` for an undirected measurement.
    pub worse: Option<bool>,
    /// True when the node's result did not verify against the trusted keys (or is
    /// unsigned): the value is a claim.
    pub unverified: bool,
}

/// A result that a newer one of the same node stands in for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Superseded {
    /// The node.
    pub node: String,
    /// The older result.
    pub path: PathBuf,
}

/// The fleet, ready to render.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// Every node, found or expected: nodes with regressions first, then by status
    /// (worst first), then by name.
    pub nodes: Vec<NodeEntry>,
    /// Result files that could not be read.
    pub unreadable: Vec<Unreadable>,
    /// Older results of nodes that have a newer one.
    pub superseded: Vec<Superseded>,
    /// Files holding the same result as the one standing for their node (one run, the
    /// same content), read again: counted once.
    pub copies: Vec<Superseded>,
    /// Whether a baseline was given.
    pub baseline: bool,
    /// Whether trusted keys were given.
    pub keys_given: bool,
    /// Every check id that ran on some node: the columns of the node × check grid.
    pub checks: Vec<String>,
    /// Every measurement across the fleet.
    pub measurements: Vec<MeasurementStats>,
}

/// Whether `a` and `b` say the same, wherever they were read from.
fn same_but_path(a: &NodeResult, b: &NodeResult) -> bool {
    let NodeResult {
        node,
        machine,
        path: _,
        signature,
        development_key,
        run_id,
        started_at,
        complete,
        status,
        reasons,
        profile,
        profile_digest,
        tier,
        hilt_version,
        simulated,
        devices,
        cells,
        samples,
        fingerprint,
    } = a;
    // Every field but the path, named so that a field added later is compared too.
    *node == b.node
        && *machine == b.machine
        && *signature == b.signature
        && *development_key == b.development_key
        && *run_id == b.run_id
        && *started_at == b.started_at
        && *complete == b.complete
        && *status == b.status
        && *reasons == b.reasons
        && *profile == b.profile
        && *profile_digest == b.profile_digest
        && *tier == b.tier
        && *hilt_version == b.hilt_version
        && *simulated == b.simulated
        && *devices == b.devices
        && *cells == b.cells
        && *samples == b.samples
        && *fingerprint == b.fingerprint
}

/// The newest result of each node, the older ones, and the files that held a result
/// already read.
fn newest_by_node(
    read: Vec<Result<NodeResult, Unreadable>>,
    unreadable: &mut Vec<Unreadable>,
    superseded: &mut Vec<Superseded>,
    copies: &mut Vec<Superseded>,
) -> BTreeMap<String, NodeResult> {
    let mut by_node: BTreeMap<String, NodeResult> = BTreeMap::new();
    for r in read {
        let result = match r {
            Err(u) => {
                unreadable.push(u);
                continue;
            }
            Ok(result) => result,
        };
        // A second file of the run standing for the node, saying the same: a copy, not an
        // older result. (A copy of a run that a newer one superseded is an older result.)
        if by_node
            .get(&result.node)
            .is_some_and(|have| have.run_id == result.run_id && same_but_path(have, &result))
        {
            copies.push(Superseded {
                node: result.node,
                path: result.path,
            });
            continue;
        }
        match by_node.get(&result.node) {
            Some(have) if (&have.started_at, &have.path) >= (&result.started_at, &result.path) => {
                superseded.push(Superseded {
                    node: result.node.clone(),
                    path: result.path,
                });
            }
            _ => {
                if let Some(old) = by_node.insert(result.node.clone(), result) {
                    superseded.push(Superseded {
                        node: old.node,
                        path: old.path,
                    });
                }
            }
        }
    }
    by_node
}

/// Builds the fleet report.
pub fn build(input: FleetInput) -> Fleet {
    let mut unreadable = input.unlisted;
    let mut superseded = Vec::new();
    let mut copies = Vec::new();
    let mut shared = shared_names(&input.current);
    let current = newest_by_node(input.current, &mut unreadable, &mut superseded, &mut copies);
    let mut ignored = Vec::new();
    let mut ignored_copies = Vec::new();
    let baseline = input.baseline.as_ref().is_some();
    let before = input
        .baseline
        .map(|b| newest_by_node(b, &mut unreadable, &mut ignored, &mut ignored_copies))
        .unwrap_or_default();
    let expected: BTreeSet<String> = input.expected.iter().cloned().chain(before.keys().cloned()).collect();
    let names: BTreeSet<String> = expected.iter().cloned().chain(current.keys().cloned()).collect();

    let measurements = measurement_stats(&current, input.outlier_mad, &input.profile_outlier_mad);
    let checks: Vec<String> = current
        .values()
        .flat_map(|r| r.cells.keys().map(|(c, _)| c.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let mut current = current;
    let mut nodes: Vec<NodeEntry> = names
        .into_iter()
        .map(|name| {
            let result = current.remove(&name);
            let base = before.get(&name);
            let (regressions, recoveries) = match (&result, base) {
                (Some(now), Some(then)) => transitions(then, now),
                _ => (Vec::new(), Vec::new()),
            };
            let changes = match (&result, base) {
                (Some(now), Some(then)) => changes(then, now),
                _ => Vec::new(),
            };
            let machines = shared.remove(&name).unwrap_or_default();
            let (status, why) = status_of(
                result.as_ref(),
                &regressions,
                input.keys_given,
                input.expected.contains(&name),
                &machines,
            );
            NodeEntry {
                machines,
                expected: expected.contains(&name),
                node: name,
                status,
                why,
                result,
                regressions,
                recoveries,
                changes,
            }
        })
        .collect();
    nodes.sort_by(|a, b| {
        (a.regressions.is_empty(), a.status, &a.node).cmp(&(b.regressions.is_empty(), b.status, &b.node))
    });
    Fleet {
        nodes,
        unreadable,
        superseded,
        copies,
        baseline,
        keys_given: input.keys_given,
        checks,
        measurements,
    }
}

/// Per node, the machines whose results name it, for the nodes more than one machine
/// names. Results without a machine identity (records before format 1.2, machines without
/// a machine ID, a value not of its form) cannot be told apart and are left out.
fn shared_names(read: &[Result<NodeResult, Unreadable>]) -> BTreeMap<String, Vec<String>> {
    let mut machines: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in read.iter().flatten() {
        // A value of another form is no identity (and makes its record not verified).
        if let Some(m) = r.machine.as_ref().filter(|m| hilt_results::is_machine_identity(m)) {
            machines.entry(&r.node).or_default().insert(m);
        }
    }
    machines
        .into_iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|(node, m)| (node.to_string(), m.into_iter().map(str::to_string).collect()))
        .collect()
}

fn status_of(
    result: Option<&NodeResult>,
    regressions: &[Transition],
    keys_given: bool,
    listed: bool,
    machines: &[String],
) -> (NodeStatus, Vec<String>) {
    let Some(r) = result else {
        let from = if listed { "--expect-nodes" } else { "the baseline" };
        return (
            NodeStatus::Missing,
            vec![format!("no result came back from this node (expected from {from})")],
        );
    };
    let mut why = Vec::new();
    let status = match &r.signature {
        Signature::Verified { .. } | Signature::Pending => None,
        Signature::Unsigned => {
            why.push("unsigned: a result.json with no signed result.dsse.json; nothing vouches for it".into());
            Some(NodeStatus::Unsigned)
        }
        Signature::NotVerified { reasons } => {
            // What the record itself gets wrong (`record: ...`) is said whatever the key.
            let record = reasons.iter().filter(|r| r.starts_with("record: ")).cloned();
            if r.development_key {
                why.push("signed with a one-off development key (the run had no --sign-key): not attributable".into());
                why.extend(record);
            } else if !keys_given {
                why.push("signed, but no --trusted-key was given to verify it against".into());
                why.extend(record);
            } else {
                why.push(format!("signature NOT VERIFIED: {}", reasons.join("; ")));
            }
            Some(NodeStatus::NotVerified)
        }
    };
    let shared = (machines.len() > 1).then(|| {
        let shown = r.machine.as_deref().unwrap_or("none recorded");
        why.push(format!(
            "results from {} machines name themselves this node (machine identities {}): the newest, from {shown}, \
             stands for the node and the others' are hidden behind it; give each machine a node name of its own \
             (`hilt run --node NAME`)",
            machines.len(),
            machines.join(", ")
        ));
        NodeStatus::SharedName
    });
    let status = status.or(shared);
    let claimed = match r.status {
        ConformanceStatus::Conformant => None,
        ConformanceStatus::NotConformant => Some(NodeStatus::NotConformant),
        ConformanceStatus::Inconclusive => Some(NodeStatus::Inconclusive),
        ConformanceStatus::Partial => Some(NodeStatus::Partial),
        _ => Some(NodeStatus::Incomplete),
    };
    if claimed.is_some() {
        if r.reasons.is_empty() {
            why.push(format!("the run's status is {}", r.status.as_str()));
        }
        why.extend(r.reasons.iter().cloned());
    }
    if !regressions.is_empty() {
        why.push(format!("{} check(s) regressed since the baseline", regressions.len()));
    }
    let status = status.or(claimed).unwrap_or(if regressions.is_empty() {
        NodeStatus::Conformant
    } else {
        NodeStatus::Regressed
    });
    (status, why)
}

/// Where a cell stands for the regression rule ([`Standing`], as `hilt compare` ranks it).
fn standing(cell: &Cell) -> Standing {
    Standing::from_verdict(cell.verdict, cell.waived)
}

fn transitions(then: &NodeResult, now: &NodeResult) -> (Vec<Transition>, Vec<Transition>) {
    let mut regressions = Vec::new();
    let mut recoveries = Vec::new();
    for ((check, device), was) in &then.cells {
        let is = now.cells.get(&(check.clone(), device.clone()));
        let t = || Transition {
            check: check.clone(),
            device: device.clone(),
            before: standing(was),
            after: is.map(standing),
            reason: is.and_then(|c| c.reason.clone()),
        };
        // The rule of `hilt compare`'s gate, cell by cell: any standing that got worse,
        // from any standing (a pass that no longer passes, a waived failure that is now
        // unwaived, an inconclusive check that now fails), and a check that ran and
        // applied in the baseline but did not run tonight. Inconclusive and error are
        // one rank.
        let before = standing(was);
        match is.map(standing) {
            None if before != Standing::NotApplicable => regressions.push(t()),
            Some(after) if after.severity() > before.severity() => regressions.push(t()),
            Some(Standing::Pass) if before != Standing::Pass && before != Standing::NotApplicable => {
                recoveries.push(t());
            }
            _ => {}
        }
    }
    (regressions, recoveries)
}

/// What changed on a node between two results: one line per change, a change shared by
/// several devices said once.
fn changes(then: &NodeResult, now: &NodeResult) -> Vec<String> {
    let mut grouped: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    let keys: BTreeSet<&(String, String)> = then.fingerprint.keys().chain(now.fingerprint.keys()).collect();
    for key in keys {
        let (a, b) = (then.fingerprint.get(key), now.fingerprint.get(key));
        if a != b {
            grouped
                .entry((
                    key.0.clone(),
                    a.cloned().unwrap_or_else(|| "none".into()),
                    b.cloned().unwrap_or_else(|| "none".into()),
                ))
                .or_default()
                .push(key.1.clone());
        }
    }
    let mut lines: Vec<String> = grouped
        .into_iter()
        .map(|((item, a, b), devices)| {
            let devices: Vec<String> = devices.into_iter().filter(|d| !d.is_empty()).collect();
            let on = match devices.len() {
                0 => String::new(),
                1..=3 => format!(" on {}", devices.join(", ")),
                n => format!(" on {n} devices"),
            };
            format!("{item} {} → {}{on}", one_line(&a), one_line(&b))
        })
        .collect();
    let gone: Vec<&String> = then.devices.iter().filter(|d| !now.devices.contains(d)).collect();
    let new: Vec<&String> = now.devices.iter().filter(|d| !then.devices.contains(d)).collect();
    if !gone.is_empty() || !new.is_empty() {
        let mut s = format!("devices {} → {}", then.devices.len(), now.devices.len());
        if !gone.is_empty() {
            let _ = write!(s, " (gone: {})", list(&gone));
        }
        if !new.is_empty() {
            let _ = write!(s, " (new: {})", list(&new));
        }
        lines.push(s);
    }
    lines
}

fn list(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn measurement_stats(
    current: &BTreeMap<String, NodeResult>,
    factor: Option<f64>,
    by_profile: &BTreeMap<String, f64>,
) -> Vec<MeasurementStats> {
    /// One measurement's values: node, device, value, whether the result is unverified.
    struct Series<'a> {
        better: Better,
        points: Vec<(&'a str, &'a str, f64, bool)>,
        /// How many values each profile gave.
        profiles: BTreeMap<&'a str, usize>,
    }
    let mut values: BTreeMap<(String, String, String), Series<'_>> = BTreeMap::new();
    for r in current.values() {
        for s in &r.samples {
            let entry = values
                .entry((s.check.clone(), s.name.clone(), s.unit.clone()))
                .or_insert_with(|| Series {
                    better: s.better,
                    points: Vec::new(),
                    profiles: BTreeMap::new(),
                });
            let unverified = !matches!(r.signature, Signature::Verified { .. });
            entry
                .points
                .push((r.node.as_str(), s.device.as_str(), s.value, unverified));
            *entry.profiles.entry(r.profile.as_str()).or_default() += 1;
        }
    }
    values
        .into_iter()
        .map(
            |(
                (check, name, unit),
                Series {
                    better,
                    points,
                    profiles,
                },
            )| {
                let mut sorted: Vec<f64> = points.iter().map(|p| p.2).collect();
                sorted.sort_by(f64::total_cmp);
                let median = median_of_sorted(&sorted);
                let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - median).abs()).collect();
                deviations.sort_by(f64::total_cmp);
                let mad = median_of_sorted(&deviations);
                // The profile most of these values ran under decides, unless the command line did.
                let common = profiles.iter().max_by_key(|(_, n)| **n).map(|(p, _)| *p);
                let factor = factor
                    .or_else(|| common.and_then(|p| by_profile.get(p).copied()))
                    .unwrap_or(DEFAULT_OUTLIER_MAD);
                let outliers = points
                    .iter()
                    .filter_map(|&(node, device, value, unverified)| {
                        let off = (value - median).abs();
                        let distance = (mad > 0.0).then(|| off / mad);
                        let flagged = match distance {
                            Some(d) => d > factor,
                            None => off > 0.0,
                        };
                        flagged.then(|| Outlier {
                            node: node.to_string(),
                            device: device.to_string(),
                            value,
                            distance,
                            worse: match better {
                                Better::Higher => Some(value < median),
                                Better::Lower => Some(value > median),
                                _ => None,
                            },
                            unverified,
                        })
                    })
                    .collect();
                let nodes = points.iter().map(|p| p.0).collect::<BTreeSet<_>>().len();
                MeasurementStats {
                    check,
                    name,
                    unit,
                    better,
                    count: sorted.len(),
                    nodes,
                    median,
                    min: sorted.first().copied().unwrap_or_default(),
                    max: sorted.last().copied().unwrap_or_default(),
                    mad,
                    factor,
                    outliers,
                }
            },
        )
        .collect()
}

fn median_of_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Fleet {
    /// The exit code of `hilt fleet`: 2 when a result file could not be read; 0 when there
    /// are results and every node is conformant (verified, nothing regressed); 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if !self.unreadable.is_empty() {
            2
        } else if !self.nodes.is_empty() && self.nodes.iter().all(|n| n.status == NodeStatus::Conformant) {
            0
        } else {
            1
        }
    }

    /// How many nodes have each status.
    pub fn counts(&self) -> BTreeMap<NodeStatus, usize> {
        let mut counts = BTreeMap::new();
        for n in &self.nodes {
            *counts.entry(n.status).or_default() += 1;
        }
        counts
    }

    /// The one-line verdict.
    pub fn headline(&self) -> String {
        let counts = self.counts();
        let conformant = counts.get(&NodeStatus::Conformant).copied().unwrap_or(0);
        let mut s = if self.nodes.is_empty() {
            "NO RESULTS: no result was found under the directories given".to_string()
        } else {
            format!(
                "{}: {conformant} of {} nodes conformant",
                if self.exit_code() == 0 {
                    "CONFORMANT"
                } else {
                    "NOT CONFORMANT"
                },
                self.nodes.len()
            )
        };
        let others: Vec<String> = counts
            .iter()
            .filter(|(s, _)| **s != NodeStatus::Conformant)
            .map(|(s, n)| format!("{n} {}", s.as_str().replace('_', " ")))
            .collect();
        if !others.is_empty() {
            let _ = write!(s, "; {}", others.join(", "));
        }
        let regressions: usize = self.nodes.iter().map(|n| n.regressions.len()).sum();
        if regressions > 0 {
            let _ = write!(s, "; {regressions} regression(s)");
        }
        if !self.unreadable.is_empty() {
            let _ = write!(s, "; {} unreadable file(s)", self.unreadable.len());
        }
        s
    }

    /// Notes about the inputs: no trusted keys, superseded results.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.keys_given {
            notes.push(
                "no --trusted-key was given: no result can be verified, so no node counts as conformant".to_string(),
            );
        }
        if !self.superseded.is_empty() {
            notes.push(format!(
                "{} older result(s) of nodes with a newer one were left out",
                self.superseded.len()
            ));
        }
        if !self.copies.is_empty() {
            notes.push(format!(
                "{} file(s) held a result already read from another file (a `latest` link copied as a folder, a \
                 file named twice) and were counted once",
                self.copies.len()
            ));
        }
        notes
    }

    fn regressions(&self) -> impl Iterator<Item = (&NodeEntry, &Transition)> {
        self.nodes
            .iter()
            .flat_map(|n| n.regressions.iter().map(move |t| (n, t)))
    }

    fn recoveries(&self) -> impl Iterator<Item = (&NodeEntry, &Transition)> {
        self.nodes.iter().flat_map(|n| n.recoveries.iter().map(move |t| (n, t)))
    }

    fn attention(&self) -> impl Iterator<Item = &NodeEntry> {
        self.nodes
            .iter()
            .filter(|n| !matches!(n.status, NodeStatus::Conformant | NodeStatus::Regressed))
    }

    fn outliers(&self) -> impl Iterator<Item = (&MeasurementStats, &Outlier)> {
        self.measurements
            .iter()
            .flat_map(|m| m.outliers.iter().map(move |o| (m, o)))
    }
}

/// One regression or recovery in one line, with what changed on its node.
fn transition_line(n: &NodeEntry, t: &Transition) -> String {
    let mut s = format!(
        "{}: {} on {}: {} → {}",
        n.node,
        t.check,
        t.device,
        t.before.as_str(),
        t.after_str()
    );
    if let Some(r) = &t.reason {
        let _ = write!(s, " ({})", clip(r, 160));
    }
    if !n.changes.is_empty() {
        let _ = write!(s, "; changed on {}: {}", n.node, n.changes.join(", "));
    } else {
        let _ = write!(s, "; nothing recorded changed on {}", n.node);
    }
    one_line(&s)
}

fn outlier_line(m: &MeasurementStats, o: &Outlier) -> String {
    let side = if o.value < m.median { "below" } else { "above" };
    let judged = match o.worse {
        Some(true) => ", worse",
        Some(false) => ", better",
        None => "",
    };
    let median = format!("the median {} {}", number(m.median), m.unit);
    let how = match o.distance {
        Some(d) => format!("{d:.1} MADs {side} {median}{judged}"),
        None => format!("{side} {median}, which most values equal{judged}"),
    };
    one_line(&format!(
        "{} {}: {} {} = {} {} ({how}){}",
        o.node,
        o.device,
        m.check,
        m.name,
        number(o.value),
        m.unit,
        if o.unverified { " [result not verified]" } else { "" }
    ))
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

/// The worst verdict of a node's devices on a check, how many devices share it, and of
/// how many; `None` when the check did not run on the node.
fn grid_cell(r: &NodeResult, check: &str) -> Option<(Verdict, bool, usize, usize)> {
    let cells: Vec<&Cell> = r
        .cells
        .range((check.to_string(), String::new())..)
        .take_while(|((c, _), _)| c == check)
        .map(|(_, c)| c)
        .collect();
    let rank = |c: &Cell| match (c.verdict, c.waived) {
        (Verdict::Fail, false) => 0,
        (Verdict::Error, _) => 1,
        (Verdict::Inconclusive, _) => 2,
        (Verdict::Fail, true) => 3,
        (Verdict::NotApplicable, _) => 4,
        _ => 5,
    };
    let worst = cells.iter().min_by_key(|c| rank(c))?;
    let same = cells.iter().filter(|c| rank(c) == rank(worst)).count();
    Some((worst.verdict, worst.waived, same, cells.len()))
}

/// Plain text, for a terminal.
pub fn text(fleet: &Fleet) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "hilt fleet: {}", fleet.headline());
    for note in fleet.notes() {
        let _ = writeln!(out, "note: {note}");
    }
    let section = |out: &mut String, title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{title} ({}):", lines.len());
            for l in lines {
                let _ = writeln!(out, "  {l}");
            }
        }
    };
    section(
        &mut out,
        "Regressions since the baseline",
        fleet.regressions().map(|(n, t)| transition_line(n, t)).collect(),
    );
    section(
        &mut out,
        "Nodes that need attention",
        fleet
            .attention()
            .map(|n| one_line(&format!("{} {}: {}", n.node, n.status.as_str(), n.why.join("; "))))
            .collect(),
    );
    section(
        &mut out,
        "Unreadable results",
        fleet
            .unreadable
            .iter()
            .map(|u| one_line(&format!("{}: {}", u.path.display(), u.error)))
            .collect(),
    );
    section(
        &mut out,
        "Outliers",
        fleet.outliers().map(|(m, o)| outlier_line(m, o)).collect(),
    );
    section(
        &mut out,
        "Recoveries since the baseline",
        fleet.recoveries().map(|(n, t)| transition_line(n, t)).collect(),
    );
    if !fleet.measurements.is_empty() {
        let _ = writeln!(out, "\nMeasurements across the fleet:");
        let rows: Vec<[String; 6]> = fleet
            .measurements
            .iter()
            .map(|m| {
                [
                    one_line(&format!("{} {} ({})", m.check, m.name, m.unit)),
                    m.count.to_string(),
                    number(m.median),
                    format!("{} .. {}", number(m.min), number(m.max)),
                    number(m.mad),
                    m.outliers.len().to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            ["measurement", "values", "median", "range", "MAD", "outliers"],
            &rows,
        );
    }
    let _ = writeln!(out, "\nNodes:");
    let rows: Vec<[String; 6]> = fleet
        .nodes
        .iter()
        .map(|n| {
            let r = n.result.as_ref();
            let count = |v: Verdict| {
                r.map_or(0, |r| r.cells.values().filter(|c| c.verdict == v).count())
                    .to_string()
            };
            [
                one_line(&n.node),
                n.status.as_str().to_string(),
                r.map_or(0, |r| r.devices.len()).to_string(),
                format!(
                    "{}/{}/{}",
                    count(Verdict::Pass),
                    count(Verdict::Fail),
                    r.map_or(0, |r| r
                        .cells
                        .values()
                        .filter(|c| matches!(c.verdict, Verdict::Inconclusive | Verdict::Error))
                        .count())
                ),
                n.regressions.len().to_string(),
                r.map_or_else(|| "-".into(), |r| one_line(&r.path.display().to_string())),
            ]
        })
        .collect();
    table(
        &mut out,
        ["node", "status", "devices", "pass/fail/other", "regressed", "result"],
        &rows,
    );
    out
}

fn table<const N: usize>(out: &mut String, head: [&str; N], rows: &[[String; N]]) {
    let mut widths: [usize; N] = head.map(|h| h.chars().count());
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut s = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            let _ = write!(s, " {c}{}", " ".repeat(pad));
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(out, head.to_vec());
    for row in rows {
        line(out, row.iter().map(String::as_str).collect());
    }
}

/// Markdown for a CI step summary: the verdict, every problem, and the measurements;
/// conformant nodes are counted, not listed, so that a large fleet fits a summary.
pub fn markdown(fleet: &Fleet) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## hilt fleet: {}\n", md(&fleet.headline()));
    for note in fleet.notes() {
        let _ = writeln!(out, "> {}\n", md(&note));
    }
    let items = |out: &mut String, title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            let _ = writeln!(out, "### {title} ({})\n", lines.len());
            for l in lines {
                let _ = writeln!(out, "- {l}");
            }
            let _ = writeln!(out);
        }
    };
    items(
        &mut out,
        "Regressions since the baseline",
        fleet
            .regressions()
            .map(|(n, t)| {
                let mut s = format!(
                    "**{}** {} on {}: {} → **{}**",
                    md(&n.node),
                    code(&t.check),
                    code(&t.device),
                    t.before.as_str(),
                    t.after_str()
                );
                if let Some(r) = &t.reason {
                    let _ = write!(s, " ({})", md(&clip(r, 160)));
                }
                if !n.changes.is_empty() {
                    let _ = write!(s, "; changed: {}", md(&n.changes.join(", ")));
                }
                s
            })
            .collect(),
    );
    items(
        &mut out,
        "Nodes that need attention",
        fleet
            .attention()
            .map(|n| format!("**{}** {}: {}", md(&n.node), n.status.as_str(), md(&n.why.join("; "))))
            .collect(),
    );
    items(
        &mut out,
        "Unreadable results",
        fleet
            .unreadable
            .iter()
            .map(|u| format!("{}: {}", code(&u.path.display().to_string()), md(&u.error)))
            .collect(),
    );
    items(
        &mut out,
        "Outliers",
        fleet.outliers().map(|(m, o)| md(&outlier_line(m, o))).collect(),
    );
    items(
        &mut out,
        "Recoveries since the baseline",
        fleet.recoveries().map(|(n, t)| md(&transition_line(n, t))).collect(),
    );
    if !fleet.measurements.is_empty() {
        let _ = writeln!(out, "### Measurements across the fleet\n");
        let _ = writeln!(
            out,
            "| check | measurement | unit | values | median | range | outliers |"
        );
        let _ = writeln!(out, "| --- | --- | --- | ---: | ---: | --- | ---: |");
        for m in &fleet.measurements {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} .. {} | {} |",
                table_code(&m.check),
                md(&m.name),
                md(&m.unit),
                m.count,
                number(m.median),
                number(m.min),
                number(m.max),
                m.outliers.len()
            );
        }
        let _ = writeln!(out);
    }
    out
}

/// JUnit XML: one test suite per node (`hilt::node::NAME`), a case per check and device,
/// a `hilt::signature` case (an error unless verified), a `hilt::conformance` case (a
/// failure unless the node is conformant), a `regressed` error for a check that ran
/// before and not tonight; a missing node is a suite with one error case, and each
/// unreadable file an error case in `hilt::unreadable`.
pub fn junit(fleet: &Fleet) -> String {
    let xml = super::junit::xml;
    let mut report = JReport::new("hilt fleet");
    for n in &fleet.nodes {
        let mut suite = TestSuite::new(xml(&format!("hilt::node::{}", n.node)));
        suite.add_property(Property::new("hilt.node", xml(&n.node)));
        suite.add_property(Property::new("hilt.fleet_status", n.status.as_str()));
        let Some(r) = &n.result else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(xml(&n.why.join("; "))).set_type("missing");
            suite.add_test_case(TestCase::new("hilt::result", s));
            report.add_test_suite(suite);
            continue;
        };
        suite.add_property(Property::new("hilt.profile", xml(&r.profile)));
        suite.add_property(Property::new("hilt.tier", r.tier.as_str()));
        suite.add_property(Property::new("hilt.result", xml(&r.path.display().to_string())));
        for change in &n.changes {
            suite.add_property(Property::new("hilt.changed", xml(change)));
        }
        let signature = match &r.signature {
            Signature::Verified { .. } => TestCaseStatus::success(),
            other => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(xml(&other.describe())).set_type("not verified");
                s
            }
        };
        suite.add_test_case(TestCase::new("hilt::signature", signature));
        let conformance = if n.status == NodeStatus::Conformant {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(xml(&n.why.join("; "))).set_type(n.status.as_str());
            s
        };
        suite.add_test_case(TestCase::new("hilt::conformance", conformance));
        for ((check, device), c) in &r.cells {
            let regressed = n.regressions.iter().find(|t| &t.check == check && &t.device == device);
            let reason = c.reason.clone().unwrap_or_default();
            let reason = match regressed {
                Some(t) => format!("regressed (was {} in the baseline): {reason}", t.before.as_str()),
                None => reason,
            };
            // As the run's own JUnit says it (a CI page, the run's exit code and this
            // report agree): what keeps the run from being conformant is a failure or an
            // error, what does not decide conformance is skipped; and a regression fails,
            // since it fails the fleet.
            let status = match (&c.decision, regressed) {
                (hilt_results::Standing::Passed, _) => TestCaseStatus::success(),
                (hilt_results::Standing::Blocks { failure, kind, .. }, _) => {
                    let mut s = TestCaseStatus::non_success(if *failure {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    });
                    s.set_message(xml(&reason)).set_type(*kind);
                    s
                }
                (hilt_results::Standing::Aside(text), Some(t)) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(xml(&format!(
                        "regressed (was {} in the baseline): {text}",
                        t.before.as_str()
                    )))
                    .set_type("regressed");
                    s
                }
                (hilt_results::Standing::Aside(text), None) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(xml(text));
                    s
                }
            };
            let mut case = TestCase::new(xml(&format!("{}::{device}", check.replace('.', "::"))), status);
            case.set_classname(xml(&format!("hilt.{check}")));
            suite.add_test_case(case);
        }
        for t in n.regressions.iter().filter(|t| t.after.is_none()) {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(xml(&format!(
                "regressed: {} in the baseline, did not run tonight",
                t.before.as_str()
            )))
            .set_type("regressed");
            let mut case = TestCase::new(xml(&format!("{}::{}", t.check.replace('.', "::"), t.device)), s);
            case.set_classname(xml(&format!("hilt.{}", t.check)));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    if !fleet.unreadable.is_empty() {
        let mut suite = TestSuite::new("hilt::unreadable");
        for u in &fleet.unreadable {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(xml(&u.error)).set_type("unreadable");
            suite.add_test_case(TestCase::new(xml(&u.path.display().to_string()), s));
        }
        report.add_test_suite(suite);
    }
    report.set_time(Duration::ZERO);
    report.to_string().unwrap_or_default()
}

/// JSON: the headline, the counts, every node (under `node`, with its `status`), the
/// measurements, unreadable and superseded files.
pub fn json(fleet: &Fleet) -> String {
    #[derive(Serialize)]
    struct NodeJson<'a> {
        node: &'a str,
        status: NodeStatus,
        why: &'a [String],
        expected: bool,
        result: Option<&'a Path>,
        machine: Option<&'a str>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        machines: &'a [String],
        signature: Option<&'a Signature>,
        run_id: Option<&'a str>,
        started_at: Option<&'a str>,
        profile: Option<&'a str>,
        tier: Option<Tier>,
        devices: &'a [String],
        verdicts: BTreeMap<&'a str, BTreeMap<&'a str, &'static str>>,
        regressions: &'a [Transition],
        recoveries: &'a [Transition],
        changes: &'a [String],
    }
    let counts: BTreeMap<&str, usize> = fleet.counts().into_iter().map(|(s, n)| (s.as_str(), n)).collect();
    let nodes: Vec<NodeJson<'_>> = fleet
        .nodes
        .iter()
        .map(|n| {
            let r = n.result.as_ref();
            let mut verdicts: BTreeMap<&str, BTreeMap<&str, &'static str>> = BTreeMap::new();
            for ((check, device), c) in r.map(|r| &r.cells).into_iter().flatten() {
                verdicts
                    .entry(check)
                    .or_default()
                    .insert(device, if c.waived { "fail (waived)" } else { c.verdict.as_str() });
            }
            NodeJson {
                node: &n.node,
                status: n.status,
                why: &n.why,
                expected: n.expected,
                result: r.map(|r| r.path.as_path()),
                machine: r.and_then(|r| r.machine.as_deref()),
                machines: &n.machines,
                signature: r.map(|r| &r.signature),
                run_id: r.map(|r| r.run_id.as_str()),
                started_at: r.map(|r| r.started_at.as_str()),
                profile: r.map(|r| r.profile.as_str()),
                tier: r.map(|r| r.tier),
                devices: r.map_or(&[][..], |r| &r.devices),
                verdicts,
                regressions: &n.regressions,
                recoveries: &n.recoveries,
                changes: &n.changes,
            }
        })
        .collect();
    let value = serde_json::json!({
        "headline": fleet.headline(),
        "exit": fleet.exit_code(),
        "notes": fleet.notes(),
        "counts": counts,
        "baseline": fleet.baseline,
        "nodes": nodes,
        "measurements": fleet.measurements,
        "unreadable": fleet.unreadable,
        "superseded": fleet.superseded,
        "copies": fleet.copies,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 96em; color: #1d1d1f; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { text-align: left; padding: 0.2em 0.45em; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f5f5f7; }
.grid { overflow-x: auto; } .grid td { text-align: center; font-size: 0.85em; white-space: nowrap; }
.grid th.check { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; font-size: 0.8em; max-height: 18em; }
.grid td.name, .grid td.st { text-align: left; }
.badge { display: inline-block; padding: 0.1em 0.5em; border-radius: 0.3em; font-weight: 600; color: #fff; }
.pass, .conformant { background: #1b7f3b; color: #fff; } .fail, .not_conformant, .regressed { background: #b3261e; color: #fff; }
.inconclusive, .error, .incomplete { background: #a05a00; color: #fff; } .not_applicable, .partial, .not-run { background: #6b6b70; color: #fff; }
.missing, .not_verified, .unsigned, .shared_name { background: #5a1e8c; color: #fff; } .waived { background: #7a4fa0; color: #fff; }
td.moved { outline: 3px solid #000; outline-offset: -3px; }
.headline-bad { color: #b3261e; } .headline-ok { color: #1b7f3b; }
"#;

/// One self-contained HTML page (no script, nothing fetched): the verdict, regressions
/// first, then the nodes that need attention, the node × check grid (nodes with
/// regressions first, a moved cell outlined), outliers and measurements, recoveries.
pub fn html(fleet: &Fleet) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <title>hilt fleet: {} nodes</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        fleet.nodes.len()
    );
    let _ = writeln!(out, "<h1>hilt fleet report</h1>");
    let _ = writeln!(
        out,
        "<p class=\"{}\"><strong>{}</strong></p>",
        if fleet.exit_code() == 0 {
            "headline-ok"
        } else {
            "headline-bad"
        },
        esc(&fleet.headline())
    );
    for note in fleet.notes() {
        let _ = writeln!(out, "<p>{}</p>", esc(&note));
    }
    let list = |out: &mut String, title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            let _ = writeln!(out, "<h2>{title} ({})</h2>\n<ul>", lines.len());
            for l in lines {
                let _ = writeln!(out, "<li>{l}</li>");
            }
            let _ = writeln!(out, "</ul>");
        }
    };
    list(
        &mut out,
        "Regressions since the baseline",
        fleet
            .regressions()
            .map(|(n, t)| {
                let mut s = format!(
                    "<strong>{}</strong> <code>{}</code> on <code>{}</code>: {} &rarr; <span class=\"badge {}\">{}</span>",
                    esc(&n.node),
                    esc(&t.check),
                    esc(&t.device),
                    t.before.as_str(),
                    t.after.map_or("not-run", Standing::as_str),
                    t.after_str()
                );
                if let Some(r) = &t.reason {
                    let _ = write!(s, " {}", esc(&clip(r, 300)));
                }
                let _ = write!(
                    s,
                    "<br><small>{}</small>",
                    if n.changes.is_empty() {
                        format!("nothing recorded changed on {}", esc(&n.node))
                    } else {
                        format!("changed on {}: {}", esc(&n.node), esc(&n.changes.join(", ")))
                    }
                );
                s
            })
            .collect(),
    );
    list(
        &mut out,
        "Nodes that need attention",
        fleet
            .attention()
            .map(|n| {
                format!(
                    "<strong>{}</strong> <span class=\"badge {}\">{}</span> {}",
                    esc(&n.node),
                    n.status.as_str(),
                    n.status.as_str().replace('_', " "),
                    esc(&n.why.join("; "))
                )
            })
            .collect(),
    );
    list(
        &mut out,
        "Unreadable results",
        fleet
            .unreadable
            .iter()
            .map(|u| format!("<code>{}</code>: {}", esc(&u.path.display().to_string()), esc(&u.error)))
            .collect(),
    );

    // The grid.
    let _ = writeln!(
        out,
        "<h2>Nodes &times; checks</h2>\n<div class=\"grid\"><table>\n<tr><th>node</th><th>status</th>"
    );
    for c in &fleet.checks {
        let _ = write!(out, "<th class=\"check\" title=\"{0}\">{0}</th>", esc(c));
    }
    let _ = writeln!(out, "</tr>");
    for n in &fleet.nodes {
        let _ = write!(
            out,
            "<tr><td class=\"name\">{}</td><td class=\"st\"><span class=\"badge {}\">{}</span></td>",
            esc(&n.node),
            n.status.as_str(),
            n.status.as_str().replace('_', " ")
        );
        for c in &fleet.checks {
            let moved = n.regressions.iter().any(|t| &t.check == c) || n.recoveries.iter().any(|t| &t.check == c);
            let moved = if moved { " moved" } else { "" };
            match n.result.as_ref().and_then(|r| grid_cell(r, c)) {
                None => {
                    let _ = write!(out, "<td class=\"not-run{moved}\">&ndash;</td>");
                }
                Some((verdict, waived, same, of)) => {
                    let class = if waived { "waived" } else { verdict.as_str() };
                    let label = match verdict {
                        Verdict::Pass => "pass",
                        Verdict::Fail => "FAIL",
                        Verdict::Inconclusive => "inc",
                        Verdict::Error => "err",
                        _ => "n/a",
                    };
                    let count = if of > 1 { format!(" {same}/{of}") } else { String::new() };
                    let _ = write!(out, "<td class=\"{class}{moved}\">{label}{count}</td>");
                }
            }
        }
        let _ = writeln!(out, "</tr>");
    }
    let _ = writeln!(out, "</table></div>");
    let _ = writeln!(
        out,
        "<p><small>A cell shows the worst verdict of the node's devices on the check and, with several \
         devices, how many share it; an outlined cell changed since the baseline; &ndash; did not run.</small></p>"
    );

    list(
        &mut out,
        "Outliers",
        fleet.outliers().map(|(m, o)| esc(&outlier_line(m, o))).collect(),
    );
    if !fleet.measurements.is_empty() {
        let _ = writeln!(
            out,
            "<h2>Measurements across the fleet</h2>\n<table><tr><th>check</th><th>measurement</th><th>values</th>\
             <th>median</th><th>range</th><th>MAD</th><th>outliers</th></tr>"
        );
        for m in &fleet.measurements {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{} ({})</td><td>{}</td><td>{}</td><td>{} &ndash; {}</td><td>{}</td><td>{}</td></tr>",
                esc(&m.check),
                esc(&m.name),
                esc(&m.unit),
                m.count,
                number(m.median),
                number(m.min),
                number(m.max),
                number(m.mad),
                m.outliers.len()
            );
        }
        let _ = writeln!(out, "</table>");
    }
    list(
        &mut out,
        "Recoveries since the baseline",
        fleet.recoveries().map(|(n, t)| esc(&transition_line(n, t))).collect(),
    );
    let _ = writeln!(out, "</body>\n</html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: &str = "residue.global.cross_process";

    /// The PoCL fixture record with `CHECK` on every device set to `standing` (`None`:
    /// not run).
    fn night(standing: Option<Standing>) -> NodeResult {
        let bytes = include_bytes!("../../../tests/fixtures/results/pocl.json");
        let mut record = ResultRecord::from_json(bytes).expect("the fixture record");
        match standing {
            None => record.outcomes.retain(|o| o.check != CHECK),
            Some(s) => {
                for o in record.outcomes.iter_mut().filter(|o| o.check == CHECK) {
                    o.verdict = match s {
                        Standing::Pass => Verdict::Pass,
                        Standing::NotApplicable => Verdict::NotApplicable,
                        Standing::Waived | Standing::Fail => Verdict::Fail,
                        Standing::Inconclusive => Verdict::Inconclusive,
                        Standing::Error => Verdict::Error,
                    };
                    o.waiver = (s == Standing::Waived).then(|| hilt_results::Waiver {
                        reason: "a known erratum".into(),
                        expires: "2027-01-01".into(),
                    });
                }
            }
        }
        NodeResult::from_record(PathBuf::from("result.json"), record, Signature::Unsigned)
    }

    #[test]
    fn a_regression_is_any_standing_that_got_worse_from_any_start() {
        use Standing::*;
        // (baseline, tonight, regressed, recovered)
        let cases = [
            (Some(Pass), Some(Fail), true, false),
            (Some(Pass), Some(NotApplicable), true, false),
            (Some(Pass), None, true, false),
            (Some(Waived), Some(Fail), true, false),
            (Some(Inconclusive), Some(Fail), true, false),
            (Some(NotApplicable), Some(Waived), true, false),
            (Some(Fail), None, true, false),
            (Some(Inconclusive), Some(Error), false, false),
            (Some(Error), Some(Inconclusive), false, false),
            (Some(Fail), Some(Fail), false, false),
            (Some(Fail), Some(Waived), false, false),
            (Some(NotApplicable), None, false, false),
            (Some(NotApplicable), Some(Pass), false, false),
            (Some(Fail), Some(Pass), false, true),
            (Some(Waived), Some(Pass), false, true),
            (Some(Error), Some(Pass), false, true),
        ];
        for (was, now, regressed, recovered) in cases {
            let (regressions, recoveries) = transitions(&night(was), &night(now));
            let of_check = |ts: &[Transition]| ts.iter().any(|t| t.check == CHECK);
            assert_eq!(of_check(&regressions), regressed, "{was:?} -> {now:?}: {regressions:?}");
            assert_eq!(of_check(&recoveries), recovered, "{was:?} -> {now:?}: {recoveries:?}");
            // Nothing else in the record changed.
            assert!(regressions.iter().chain(&recoveries).all(|t| t.check == CHECK));
        }
    }
}
