//! The hilt conformance result record: the one format that outsiders read.
//!
//! A certification portal, a procurement spreadsheet or a CI dashboard depends on this
//! crate alone; it has no dependency on the engine that produced the record. The types
//! here are the wire format: `docs/results.md` describes them for people and
//! `results/schema/result.schema.json` (generated from these types, checked in) describes
//! them for machines.
//!
//! Versioning: [`FORMAT_MAJOR`] changes when a reader of an older major version would
//! misread a record (a field removed, renamed or given a new meaning); readers refuse a
//! major version they do not know. [`FORMAT_MINOR`] changes when fields or enum variants
//! are added; readers accept any minor version and ignore what they do not know.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod signed;

/// The major version of the result format written by this crate.
pub const FORMAT_MAJOR: u32 = 1;
/// The minor version of the result format written by this crate.
pub const FORMAT_MINOR: u32 = 2;

/// One conformance run: what ran, where, on what, and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResultRecord {
    /// The version of this format; readers refuse an unknown major version.
    pub format: FormatVersion,
    /// The program that produced the record.
    pub tool: Tool,
    /// When the run happened, whether it finished, and what it was asked to do.
    pub run: RunInfo,
    /// Facts about the machine the run happened on.
    pub host: Host,
    /// The profile the run applied, after inheritance.
    pub profile: ProfileInfo,
    /// The devices the run planned trials for.
    pub devices: Vec<Device>,
    /// One entry per trial that ran, in the order they finished.
    pub outcomes: Vec<Outcome>,
    /// Counts over `outcomes`.
    pub summary: Summary,
    /// The conformance decision and the reasons for it.
    pub conformance: Conformance,
    /// Present when the run was signed with a one-off key made for it, because no signing
    /// key was given: the signature then proves the record intact but not who ran it.
    /// Absent in records meant for a lab's own key. Since format 1.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningNote>,
}

/// How a record was meant to be signed, when that is not by a key someone holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SigningNote {
    /// Always true: results signed this way are for development only.
    pub development_only: bool,
    /// The key id (hex sha256 of the public key's DER SubjectPublicKeyInfo) of the one-off
    /// key that signed the record.
    pub keyid: String,
    /// The one-off public key, SPKI PEM, so that the record's integrity can still be
    /// checked.
    pub public_key: String,
}

/// A result format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FormatVersion {
    /// Incompatible changes bump this; readers refuse majors they do not know.
    pub major: u32,
    /// Additive changes bump this; readers accept any minor.
    pub minor: u32,
}

impl FormatVersion {
    /// The version this crate writes.
    pub const CURRENT: FormatVersion = FormatVersion {
        major: FORMAT_MAJOR,
        minor: FORMAT_MINOR,
    };
}

/// The program that produced a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tool {
    /// Always `hilt` for records written by this project.
    pub name: String,
    /// The program's version (semver).
    pub version: String,
    /// The sha256 (hex) of the executable that ran, so a verifier can tell exactly which
    /// build produced the record; absent when it could not be read. Since format 1.1.
    #[serde(default)]
    pub executable_sha256: Option<String>,
}

/// When the run happened and how it was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunInfo {
    /// A random identifier, unique per run, shared by `result.json` and `events.jsonl`.
    pub id: String,
    /// RFC 3339 UTC time at which the run started.
    pub started_at: String,
    /// RFC 3339 UTC time at which the run finished; absent while it is still going.
    pub finished_at: Option<String>,
    /// False until every selected trial has finished and the record was finalised. A
    /// record left by a killed run stays `false`.
    pub complete: bool,
    /// The tier the run executed.
    pub tier: Tier,
    /// True when name filters (`hilt run FILTER`, `--skip`, `--exact`) left planned trials
    /// out; such a run can never be conformant.
    pub filtered: bool,
    /// Every trial the plan held before filters, by name (`suite::check::device`).
    pub planned: Vec<String>,
    /// When filters left planned trials out (`filtered`): the trials they selected, by
    /// name, so that a reader of a run that never finished can tell a trial that did not
    /// get to run from one that was never meant to. Absent otherwise: then every planned
    /// trial was selected. Since format 1.2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected: Vec<String>,
    /// Simulator faults planted on purpose for this run (`--sim-fault`). A run with any
    /// planted fault is a test of hilt itself, never evidence about a platform.
    pub sim_faults: Vec<String>,
    /// Settings given on the command line that override the profile, as `key=value`
    /// (`tenant_timeout_s=5`, `sim.scrub="never"`). Overridden sim knobs make the run
    /// partial. Absent in records that have none.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// How many accelerators the run was told to expect (`hilt run --expect-devices N` or
    /// the profile's `expect_devices`); fewer examined makes the run inconclusive, naming
    /// what is missing. Absent when no count was given. Since format 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_devices: Option<u32>,
    /// Present when no accelerator was examined: the backends of the build found none, so
    /// the run fell back to the simulated device without being asked for it. Says what the
    /// backends reported. Such a run is never conformant (status `no_accelerator`). Since
    /// format 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_accelerator: Option<String>,
    /// Present when the run was stopped by a signal before every selected trial had run;
    /// the record is then partial (`complete` stays false). Since format 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interruption>,
    /// Present when the run read the host's files from a replayed tree (`hilt run
    /// --sysfs-root DIR`: an unpacked `hilt capture` or a fixture) instead of the live
    /// host: which capture it was. Host and PCI checks then speak about the captured
    /// machine, and device checks could not run on its accelerators. Since format 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
    /// Trials the profile asked for that could not run, with why: device checks on an
    /// accelerator no backend of the run could open (a replayed capture's functions, a
    /// GPU without its driver). They are never outcomes, and any of them makes the run
    /// partial. Since format 1.2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_run: Vec<NotRun>,
}

/// How a run was stopped by a signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Interruption {
    /// The signal's name (`SIGINT`, `SIGTERM`).
    pub signal: String,
    /// RFC 3339 UTC time at which the run stopped.
    pub at: String,
    /// The selected trials that did not finish, by name: never started, or stopped with
    /// their tenants. None of them has an outcome.
    pub not_run: Vec<String>,
}

/// The replayed tree a run read the host's files from: the identity of its capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Replay {
    /// When the capture was taken (RFC 3339 UTC), from its manifest; absent for trees
    /// made by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<String>,
    /// The root the capture was taken from on the captured machine (`/`), from its
    /// manifest; absent for trees made by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_root: Option<String>,
    /// The sha256 (hex) of the capture manifest (`hilt-capture.json`) as stored; absent
    /// when the tree has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The sha256 (hex) of the whole tree: every entry's path, type, link target and
    /// file contents, in path order (see `docs/host-checks.md`), so that two records
    /// name the same capture only if they read the same files. Absent when the tree
    /// could not be read in full or exceeds the bounds hilt digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_sha256: Option<String>,
}

/// A planned trial that could not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotRun {
    /// The trial's name, `suite::check::device`.
    pub trial: String,
    /// The check's stable dotted id.
    pub check: String,
    /// The device's id.
    pub device: String,
    /// The check's level in the profile.
    pub level: Level,
    /// Why it could not run.
    pub reason: String,
}

impl NotRun {
    /// Whether it keeps a run of `tier` from settling: a mandatory trial in the
    /// certification tier (the terminal fails it, JUnit makes it an error); otherwise it
    /// is set aside (ignored, skipped).
    pub fn blocks(&self, tier: Tier) -> bool {
        tier == Tier::Certification && self.level == Level::Mandatory
    }
}

/// The tiers of a profile, from the quickest to the most thorough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tier {
    /// Seconds per device: every CI run, and the nightly run on every node of a fleet.
    Smoke,
    /// Minutes per device: deeper scheduled runs (weekly, or after a driver or firmware
    /// change).
    Standard,
    /// Everything the profile holds, for certification; missing hardware blocks conformance.
    Certification,
}

impl Tier {
    /// Every tier, quickest first.
    pub const ALL: [Tier; 3] = [Tier::Smoke, Tier::Standard, Tier::Certification];

    /// The name used in profiles and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Smoke => "smoke",
            Tier::Standard => "standard",
            Tier::Certification => "certification",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown tier `{s}`, expected one of smoke, standard, certification"))
    }
}

/// Facts about the host machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Host {
    /// The host name as the kernel reports it.
    pub hostname: String,
    /// The operating system family (`linux`, ...).
    pub os: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The CPU architecture (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// Logical CPUs available to the run.
    pub cpus: u32,
    /// The node the run stands for in a fleet: `hilt run --node NAME` (`HILT_NODE`), by
    /// default the host name. It differs from `hostname` where the host name is not the
    /// node's: a Kubernetes pod (the manifests pass the node name from the downward API),
    /// a container, a Slurm node name that is not the host name. Absent in records before
    /// format 1.2; readers then take `hostname` ([`Host::node_name`]). Since format 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// An identity of the machine that ran hilt, the same for every run on it and across
    /// reboots, so that a fleet report can tell two machines that give the same node name
    /// apart: 32 hex digits, the first half of HMAC-SHA256 keyed by the machine ID
    /// (`/etc/machine-id`, machine-id(5)) over an identifier of hilt's own, as systemd
    /// derives application-specific IDs, so that the machine ID itself (confidential, by
    /// its man page) is not disclosed. Absent where the machine has no valid machine ID
    /// (a container image without one), in a replay of a capture (the node is then the
    /// captured machine, not the one replaying it) and in records before format 1.2. Since
    /// format 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
}

impl Host {
    /// The node a record stands for: `node` where the record has one, else `hostname`.
    pub fn node_name(&self) -> &str {
        self.node.as_deref().unwrap_or(&self.hostname)
    }
}

/// The profile a run applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileInfo {
    /// The profile's id.
    pub id: String,
    /// The profile's human title.
    pub title: String,
    /// The profile's own version string.
    pub version: String,
    /// `sha256:` and the hex digest of the profile after inheritance, in its canonical
    /// JSON form: two runs with the same digest applied exactly the same settings.
    pub digest: String,
    /// The ids of the profile and its ancestors, the profile itself first.
    pub chain: Vec<String>,
    /// False for generic or simulated profiles whose results cannot certify a platform.
    pub certifying: bool,
    /// Waivers in the profile whose last day had passed when the run started: they no
    /// longer waive anything, so a failure of their check counts. Absent when there are
    /// none. Since format 1.2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired_waivers: Vec<ExpiredWaiver>,
}

/// A waiver of the profile that had expired when the run started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExpiredWaiver {
    /// The check it was written for.
    pub check: String,
    /// Why the deviation had been accepted.
    pub reason: String,
    /// Its last day (ISO 8601 date), before the run.
    pub expires: String,
}

/// A device the run planned trials for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Device {
    /// The device's id in this run (`sim0`, `opencl0`, ...), as used in trial names.
    pub id: String,
    /// The backend that drives it (`sim`, `opencl`, `cuda`, ...).
    pub backend: String,
    /// The device's name as its backend reports it.
    pub name: String,
    /// The vendor's name, where known.
    pub vendor: Option<String>,
    /// The PCI bus address (`0000:17:00.0`), where known.
    pub pci_address: Option<String>,
    /// True for the software accelerator: its results prove hilt's logic, not a platform.
    pub simulated: bool,
    /// Backend-specific facts and settings (memory sizes, driver version, sim knobs).
    pub facts: BTreeMap<String, serde_json::Value>,
}

/// What one trial found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// The trial's name, `suite::check::device`.
    pub trial: String,
    /// The check's stable dotted id.
    pub check: String,
    /// The device's id.
    pub device: String,
    /// How much the profile makes of this check.
    pub level: Level,
    /// The requirement ids this check gives evidence for.
    pub requirements: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why: always present for every verdict but `pass`.
    pub reason: Option<String>,
    /// Present when the profile waived this check and the verdict was `fail`.
    pub waiver: Option<Waiver>,
    /// Present when the verdict was `fail` and the profile had a waiver for the check that
    /// had expired: the failure counts, and this names the waiver that no longer holds.
    /// Since format 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_waiver: Option<Waiver>,
    /// Present when the check applies to the platform but the backend that drove the
    /// device cannot perform it (OpenCL buffers have no raw device address for the
    /// foreign-pointer check). The verdict is then `not_applicable`, the reason says why,
    /// and a certification-tier run is inconclusive, never failed, for it. Since format
    /// 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_examined: Option<NotExamined>,
    /// Numbers the check measured.
    pub measurements: Vec<Measurement>,
    /// Short structured facts the check observed.
    pub evidence: BTreeMap<String, serde_json::Value>,
    /// The check's parameters as the profile set them.
    pub params: serde_json::Value,
    /// RFC 3339 UTC time at which the trial started.
    pub started_at: String,
    /// How long the trial took, in milliseconds.
    pub duration_ms: u64,
}

/// How much a profile makes of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Level {
    /// Must pass for the platform to conform.
    Mandatory,
    /// Reported, and worth fixing, but does not decide conformance.
    Recommended,
    /// Recorded as evidence only.
    Informational,
}

impl Level {
    /// The name used in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Mandatory => "mandatory",
            Level::Recommended => "recommended",
            Level::Informational => "informational",
        }
    }
}

/// A verdict. Each means one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// The check ran and the platform met the requirement.
    Pass,
    /// The check ran and the platform broke the requirement.
    Fail,
    /// The check does not apply to this platform; `reason` says why.
    NotApplicable,
    /// The check ran but could not establish the fact (for example its positive control
    /// failed); `reason` says why.
    Inconclusive,
    /// The harness or its environment failed (a tenant crashed or hung, a device call
    /// failed); `reason` says how.
    Error,
}

impl Verdict {
    /// The name used in the record and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotApplicable => "not_applicable",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Error => "error",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A waiver applied to a failing check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Waiver {
    /// Why the deviation is accepted.
    pub reason: String,
    /// The last day (ISO 8601 date) on which the waiver holds.
    pub expires: String,
}

/// A check the backend that drove the device could not perform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotExamined {
    /// The backend that drove the device (`opencl`).
    pub backend: String,
    /// The backends of hilt that can perform the check on a device they drive (`cuda`).
    pub examined_by: Vec<String>,
}

/// One measured number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Measurement {
    /// What was measured (`leaked_bytes`, `scanned_share`, ...).
    pub name: String,
    /// The value.
    pub value: f64,
    /// The unit (`B`, `ratio`, `GB/s`, `us`, ...).
    pub unit: String,
    /// The limit the check compared the value against, if any.
    pub threshold: Option<f64>,
    /// Which direction is better.
    pub better: Better,
}

/// Which direction of a measurement is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Better {
    /// Larger values are better (bandwidth).
    Higher,
    /// Smaller values are better (leaked bytes, latency).
    Lower,
    /// Neither: the number is context (bytes scanned).
    Neither,
}

/// Counts of verdicts over the outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Trials planned after filters.
    pub selected: u32,
    /// Trials that finished with a verdict.
    pub finished: u32,
    /// Verdict `pass`.
    pub pass: u32,
    /// Verdict `fail`, waived ones included.
    pub fail: u32,
    /// Verdict `fail` under a waiver.
    pub waived: u32,
    /// Verdict `not_applicable`.
    pub not_applicable: u32,
    /// Verdict `inconclusive`.
    pub inconclusive: u32,
    /// Verdict `error`.
    pub error: u32,
}

impl Summary {
    /// Counts the verdicts of `outcomes`.
    pub fn tally<'a>(selected: u32, outcomes: impl IntoIterator<Item = &'a Outcome>) -> Summary {
        let mut s = Summary {
            selected,
            ..Summary::default()
        };
        for o in outcomes {
            s.finished += 1;
            match o.verdict {
                Verdict::Pass => s.pass += 1,
                Verdict::Fail => {
                    s.fail += 1;
                    if o.waiver.is_some() {
                        s.waived += 1;
                    }
                }
                Verdict::NotApplicable => s.not_applicable += 1,
                Verdict::Inconclusive => s.inconclusive += 1,
                Verdict::Error => s.error += 1,
            }
        }
        s
    }
}

/// The conformance decision of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Conformance {
    /// True only when `status` is `conformant`.
    pub conformant: bool,
    /// The decision.
    pub status: ConformanceStatus,
    /// One sentence per fact that decided the status (empty when conformant).
    pub reasons: Vec<String>,
}

/// The conformance decision of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConformanceStatus {
    /// Every mandatory check of the tier passed (or failed under a valid waiver).
    Conformant,
    /// A mandatory check failed.
    NotConformant,
    /// No mandatory check failed, but one ended inconclusive or in error, or (in the
    /// certification tier) could not run.
    Inconclusive,
    /// Filters or planted sim faults make this run a partial one: it says nothing about
    /// conformance.
    Partial,
    /// The run did not finish: it is still going, it was stopped by a signal
    /// (`run.interrupted` says which), or it was killed.
    Incomplete,
    /// No accelerator was examined: the backends found none and the run fell back to the
    /// simulated device without being asked for it (`run.no_accelerator` says why). Since
    /// format 1.2.
    NoAccelerator,
}

impl ConformanceStatus {
    /// The name used in the record and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ConformanceStatus::Conformant => "conformant",
            ConformanceStatus::NotConformant => "not_conformant",
            ConformanceStatus::Inconclusive => "inconclusive",
            ConformanceStatus::Partial => "partial",
            ConformanceStatus::Incomplete => "incomplete",
            ConformanceStatus::NoAccelerator => "no_accelerator",
        }
    }
}

/// What a run could not examine, decided before its trials ran.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// Set when no accelerator was examined: the run fell back to the simulated device
    /// without being asked for it. Says what the backends reported.
    pub no_accelerator: Option<String>,
    /// Set when fewer accelerators were examined than expected: says which are missing.
    pub missing_devices: Option<String>,
    /// The mandatory trials of the profile that could not run (`run.not_run` at level
    /// mandatory: the device checks on a replayed capture's accelerators), by trial name.
    /// In the certification tier each leaves the run inconclusive, as a mandatory check
    /// that could not run does.
    pub not_run_mandatory: Vec<String>,
}

impl Coverage {
    /// What `record` says it could not examine: `run.no_accelerator` as it stands, and,
    /// when `run.expected_devices` is set, whether fewer accelerators were examined (the
    /// devices that are neither the host nor a PCI function no backend drives; the
    /// simulated device counts only in a run that asked for it, that is one without
    /// `no_accelerator`).
    pub fn of(record: &ResultRecord) -> Coverage {
        let examined: Vec<&str> = record
            .devices
            .iter()
            .filter(|d| !NOT_ACCELERATORS.contains(&d.backend.as_str()))
            .filter(|d| !d.simulated || record.run.no_accelerator.is_none())
            .map(|d| d.id.as_str())
            .collect();
        let missing_devices = record.run.expected_devices.and_then(|expected| {
            (examined.len() < expected as usize).then(|| {
                format!(
                    "expected {expected} accelerator(s), examined {}{}",
                    examined.len(),
                    if examined.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", examined.join(", "))
                    }
                )
            })
        });
        Coverage {
            no_accelerator: record.run.no_accelerator.clone(),
            missing_devices,
            not_run_mandatory: Coverage::mandatory_not_run(&record.run),
        }
    }

    /// The trial names of the mandatory trials `run.not_run` lists.
    pub fn mandatory_not_run(run: &RunInfo) -> Vec<String> {
        run.not_run
            .iter()
            .filter(|n| n.level == Level::Mandatory)
            .map(|n| n.trial.clone())
            .collect()
    }
}

/// The backends of a record's devices that are not accelerators: `host`, the trial device
/// of host-scope checks, and `pci`, an accelerator PCI function no backend drives.
pub const NOT_ACCELERATORS: [&str; 2] = ["host", "pci"];

/// Where one outcome stands in the run's conformance decision. The terminal (libtest's
/// passed/failed/ignored), JUnit (success/failure or error/skipped) and hilt's summary all
/// count by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The check passed.
    Passed,
    /// The outcome keeps the run from being conformant.
    Blocks {
        /// True when the platform broke the requirement (a JUnit failure); false when the
        /// fact could not be established (a JUnit error).
        failure: bool,
        /// What the outcome was, in one word for people and JUnit's `type`: `fail`,
        /// `inconclusive`, `error`, `not_applicable`, `not_examined`.
        kind: &'static str,
        /// The sentence for the decision's reasons, after the trial's name (`failed: ...`).
        sentence: String,
        /// Why, without the verdict: the reason, and an expired waiver where there is one.
        detail: String,
    },
    /// The outcome does not decide conformance (a recommended or informational check
    /// that did not pass, a waived failure, a check that does not apply); the text says
    /// what it was and why, with its level.
    Aside(String),
}

/// Where outcome `o` stands in a run of `tier`.
pub fn standing(o: &Outcome, tier: Tier) -> Standing {
    if o.verdict == Verdict::Pass {
        return Standing::Passed;
    }
    let why = o.reason.as_deref().unwrap_or("no reason given");
    if o.level != Level::Mandatory {
        return Standing::Aside(format!(
            "{} check, does not decide conformance: {}: {why}",
            o.level.as_str(),
            o.verdict.as_str()
        ));
    }
    let blocks = |failure: bool, kind: &'static str, said: String, detail: String| Standing::Blocks {
        failure,
        kind,
        sentence: format!("{said}: {detail}"),
        detail,
    };
    match o.verdict {
        Verdict::Fail => match (&o.waiver, &o.expired_waiver) {
            (Some(w), _) => Standing::Aside(format!("waived until {}: {}; fail: {why}", w.expires, w.reason)),
            (None, Some(w)) => blocks(
                true,
                "fail",
                "failed".into(),
                format!(
                    "{why} (its waiver expired on {} and no longer holds: {})",
                    w.expires, w.reason
                ),
            ),
            (None, None) => blocks(true, "fail", "failed".into(), why.into()),
        },
        Verdict::Inconclusive => blocks(false, "inconclusive", "was inconclusive".into(), why.into()),
        Verdict::NotApplicable => match (&o.not_examined, tier) {
            (Some(n), Tier::Certification) => blocks(
                false,
                "not_examined",
                format!(
                    "was not examined by the {} backend, so the certification cannot settle it (not a finding \
                     about the platform)",
                    n.backend
                ),
                why.into(),
            ),
            (Some(_), _) => Standing::Aside(why.to_string()),
            (None, Tier::Certification) => blocks(
                false,
                "not_applicable",
                "could not run in the certification tier".into(),
                why.into(),
            ),
            (None, _) => Standing::Aside(format!("not applicable: {why}")),
        },
        _ => blocks(false, "error", "ended in error".into(), why.into()),
    }
}

/// Decides conformance from the outcomes of a finished run: the one implementation, used
/// by the run that writes a record and by everyone who reads one (`hilt sign`, `hilt
/// verify`, `hilt report`, `hilt compare`), so that a record's stored decision can always
/// be checked.
///
/// A mandatory check that failed without a waiver makes the run not conformant; one that
/// ended inconclusive or in error (or, in the certification tier, could not run or was not
/// examined by its backend) makes it inconclusive ([`standing`] says which); a run in which
/// nothing ran, or no mandatory check passed, is inconclusive too, and so is one that
/// examined fewer accelerators than expected or, in the certification tier, one in which
/// mandatory trials of the profile could not run (`coverage.not_run_mandatory`). `partial` lists why the run cannot speak for
/// conformance at all (filters, planted faults); the exit code of a partial run reflects
/// its selected trials only. A run that examined no accelerator (`coverage.no_accelerator`)
/// is `no_accelerator` and exits 3 whatever its trials found: they were about the
/// simulated device.
pub fn decide(outcomes: &[Outcome], tier: Tier, partial: Vec<String>, coverage: &Coverage) -> (Conformance, ExitCode) {
    let mut failed = Vec::new();
    let mut unsure = Vec::new();
    let mut supported = 0;
    for o in outcomes.iter().filter(|o| o.level == Level::Mandatory) {
        // Only a pass supports conformance; a waived failure merely does not block it.
        match standing(o, tier) {
            Standing::Passed => supported += 1,
            Standing::Blocks {
                failure: true,
                sentence,
                ..
            } => failed.push(format!("{} {sentence}", o.trial)),
            Standing::Blocks { sentence, .. } => unsure.push(format!("{} {sentence}", o.trial)),
            Standing::Aside(_) => {}
        }
    }
    if let Some(missing) = &coverage.missing_devices {
        unsure.insert(0, missing.clone());
    }
    if tier == Tier::Certification && !coverage.not_run_mandatory.is_empty() {
        unsure.push(format!(
            "{} mandatory trial(s) could not run in the certification tier (run.not_run), so the certification \
             cannot settle them: {}",
            coverage.not_run_mandatory.len(),
            abridged(&coverage.not_run_mandatory, 4)
        ));
    }
    if outcomes.is_empty() {
        unsure.push("no trial ran".into());
    } else if supported == 0 {
        unsure.push("no mandatory check passed, so nothing supports conformance".into());
    }
    let (status, exit) = if !failed.is_empty() {
        (ConformanceStatus::NotConformant, ExitCode::NotConformant)
    } else if !unsure.is_empty() {
        (ConformanceStatus::Inconclusive, ExitCode::Inconclusive)
    } else {
        (ConformanceStatus::Conformant, ExitCode::Conformant)
    };
    let mut reasons = Vec::new();
    if let Some(why) = &coverage.no_accelerator {
        reasons.push(format!(
            "no accelerator was examined: {why}; the trials ran on the simulated device instead, which tests \
             hilt itself"
        ));
    }
    reasons.extend(partial.iter().cloned());
    reasons.extend(failed);
    reasons.extend(unsure);
    let (status, exit) = if coverage.no_accelerator.is_some() {
        (ConformanceStatus::NoAccelerator, ExitCode::Inconclusive)
    } else if partial.is_empty() {
        (status, exit)
    } else {
        (ConformanceStatus::Partial, exit)
    };
    (
        Conformance {
            conformant: status == ConformanceStatus::Conformant,
            status,
            reasons,
        },
        exit,
    )
}

/// Up to `n` of `names`, and how many more there are.
fn abridged(names: &[String], n: usize) -> String {
    let shown = names.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(n) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// The overridden settings that change what checks measure (sim knobs, kernel build
/// options): a run with any of them is partial.
pub const CHECK_CHANGING_OVERRIDES: [&str; 4] = [
    "sim.",
    "opencl.build_options",
    "cuda.nvrtc_options",
    "vulkan.shared_bytes",
];

/// Why a run cannot speak for conformance at all, as its record tells: name filters left
/// planned trials out (`selected` of `run.planned`), settings that change the checks were
/// overridden ([`CHECK_CHANGING_OVERRIDES`]), sim faults were planted on purpose, or
/// trials of the profile could not run (`run.not_run`: a replayed capture's accelerators).
pub fn partial_reasons(run: &RunInfo, selected: u32) -> Vec<String> {
    let mut partial = Vec::new();
    if run.filtered {
        partial.push(format!(
            "partial run: filters selected {selected} of {} planned trials",
            run.planned.len()
        ));
    }
    let knob_overrides: Vec<&str> = run
        .overrides
        .iter()
        .filter(|o| CHECK_CHANGING_OVERRIDES.iter().any(|p| o.starts_with(p)))
        .map(String::as_str)
        .collect();
    if !knob_overrides.is_empty() {
        partial.push(format!(
            "settings that change the checks overridden: {}",
            knob_overrides.join(", ")
        ));
    }
    if !run.sim_faults.is_empty() {
        partial.push(format!("sim faults planted on purpose: {}", run.sim_faults.join(", ")));
    }
    if !run.not_run.is_empty() {
        let on: std::collections::BTreeSet<&str> = run.not_run.iter().map(|n| n.device.as_str()).collect();
        partial.push(format!(
            "{} device trial(s) of the profile could not run: no tenant can open {} (see run.not_run)",
            run.not_run.len(),
            on.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    partial
}

impl ResultRecord {
    /// The conformance decision that the record's outcomes, their levels and waivers, its
    /// tier and what it says of the run give ([`decide`] over [`partial_reasons`]); for a
    /// record of a run that did not finish, `incomplete`. Readers decide with this, never
    /// with the stored [`ResultRecord::conformance`].
    pub fn derived_conformance(&self) -> Conformance {
        if !self.run.complete {
            return Conformance {
                conformant: false,
                status: ConformanceStatus::Incomplete,
                reasons: vec!["the run has not finished".into()],
            };
        }
        let partial = partial_reasons(&self.run, self.summary.selected);
        decide(&self.outcomes, self.run.tier, partial, &Coverage::of(self)).0
    }

    /// What the record claims that does not follow from its outcomes: a summary whose
    /// counts are not those of the outcomes, a selection that does not fit the plan,
    /// outcomes of trials that were not planned or appear twice, a stored conformance
    /// decision other than [`ResultRecord::derived_conformance`]. Empty for every record a
    /// run writes; anything here means the record was edited, or written by a hilt whose
    /// rules differ from this one's.
    pub fn inconsistencies(&self) -> Vec<String> {
        let mut found = Vec::new();
        let s = &self.summary;
        let tally = Summary::tally(s.selected, &self.outcomes);
        if tally != *s {
            found.push(format!(
                "summary: the record counts {}, but its {} outcome(s) give {}",
                counts(s),
                self.outcomes.len(),
                counts(&tally)
            ));
        }
        let planned = self.run.planned.len();
        if !self.run.filtered && s.selected as usize != planned {
            found.push(format!(
                "summary: {} trial(s) selected, but the run planned {planned} and no filter left any out",
                s.selected
            ));
        } else if self.run.filtered && s.selected as usize >= planned {
            found.push(format!(
                "summary: the run says filters left trials out, yet {} of {planned} planned trial(s) were selected",
                s.selected
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for o in &self.outcomes {
            if !self.run.planned.contains(&o.trial) {
                found.push(format!("outcomes: {} was not among the planned trials", o.trial));
            } else if !seen.insert(o.trial.as_str()) {
                found.push(format!("outcomes: {} is recorded more than once", o.trial));
            }
        }
        if self.run.complete && self.outcomes.len() != s.selected as usize {
            found.push(format!(
                "outcomes: the run finished, but holds {} outcome(s) of {} selected trial(s)",
                self.outcomes.len(),
                s.selected
            ));
        }
        if let Some(m) = self.host.machine.as_deref().filter(|m| !is_machine_identity(m)) {
            found.push(format!(
                "host.machine: `{}` is not a machine identity (32 lower-case hex digits)",
                m.escape_debug()
            ));
        }
        let derived = self.derived_conformance();
        let stored = &self.conformance;
        if stored.status != derived.status || stored.conformant != derived.conformant {
            found.push(format!(
                "conformance: the record says {}{}, but its outcomes give {}{}",
                stored.status.as_str(),
                if stored.conformant { " (conformant: true)" } else { "" },
                derived.status.as_str(),
                derived.reasons.first().map(|r| format!(" ({r})")).unwrap_or_default()
            ));
        }
        found
    }
}

/// Whether `text` has the form of [`Host::machine`]: 32 lower-case hex digits.
pub fn is_machine_identity(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The counts of a summary in one phrase.
fn counts(s: &Summary) -> String {
    format!(
        "{} pass, {} fail ({} waived), {} not applicable, {} inconclusive, {} error of {} finished",
        s.pass, s.fail, s.waived, s.not_applicable, s.inconclusive, s.error, s.finished
    )
}

/// The exit codes of `hilt run`, a contract for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCode {
    /// 0: conformant (for a filtered run: no selected trial failed or was inconclusive).
    Conformant,
    /// 1: not conformant (a mandatory check failed).
    NotConformant,
    /// 2: usage error, or a profile that cannot be loaded; nothing ran.
    Usage,
    /// 3: inconclusive: a mandatory check ended inconclusive or in error, or could not run
    /// in the certification tier; no accelerator was examined (the run fell back to the
    /// simulated device); fewer accelerators than expected; a device named on the command
    /// line is not here; or the run finished but a file it was asked to write (record,
    /// envelope, report) could not be written.
    Inconclusive,
    /// 128 + the signal's number: the run was stopped by SIGINT (130), SIGTERM (143) or
    /// SIGHUP (129), and left a partial record saying so.
    Interrupted {
        /// The signal's number (2 for SIGINT, 15 for SIGTERM, 1 for SIGHUP).
        signal: u8,
    },
}

impl ExitCode {
    /// The numeric process exit status.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Conformant => 0,
            ExitCode::NotConformant => 1,
            ExitCode::Usage => 2,
            ExitCode::Inconclusive => 3,
            ExitCode::Interrupted { signal } => 128u8.saturating_add(signal),
        }
    }
}

/// Why a record could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes are not a JSON result record.
    Malformed(serde_json::Error),
    /// The record's major format version is not one this reader knows.
    UnsupportedVersion {
        /// The version found in the record.
        found: FormatVersion,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Malformed(e) => write!(f, "not a hilt result record: {e}"),
            ReadError::UnsupportedVersion { found } => write!(
                f,
                "result format {}.{} is not supported (this reader knows major version {FORMAT_MAJOR})",
                found.major, found.minor
            ),
        }
    }
}

impl std::error::Error for ReadError {}

impl ResultRecord {
    /// Parses a record, refusing an unknown major version before reading the rest.
    pub fn from_json(bytes: &[u8]) -> Result<ResultRecord, ReadError> {
        #[derive(Deserialize)]
        struct Probe {
            format: FormatVersion,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(ReadError::Malformed)?;
        if probe.format.major != FORMAT_MAJOR {
            return Err(ReadError::UnsupportedVersion { found: probe.format });
        }
        serde_json::from_slice(bytes).map_err(ReadError::Malformed)
    }
}

/// The JSON Schema of [`ResultRecord`], as checked in at `results/schema/result.schema.json`.
pub fn result_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(ResultRecord);
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_major_version_is_refused_before_the_body_is_read() {
        let err = ResultRecord::from_json(br#"{"format":{"major":2,"minor":0},"anything":1}"#)
            .expect_err("major 2 must be refused");
        assert!(matches!(err, ReadError::UnsupportedVersion { found } if found.major == 2));
        assert_eq!(
            err.to_string(),
            "result format 2.0 is not supported (this reader knows major version 1)"
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bytes in [&b""[..], b"{", b"[]", b"{\"format\":1}", b"\xff\xfe"] {
            assert!(matches!(ResultRecord::from_json(bytes), Err(ReadError::Malformed(_))));
        }
    }

    #[test]
    fn checked_in_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/result.schema.json");
        let fresh = serde_json::to_string_pretty(&result_schema()).expect("schema serialises") + "\n";
        if std::env::var_os("HILT_BLESS").is_some() {
            std::fs::write(path, &fresh).expect("write schema");
        }
        let current = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            current == fresh,
            "results/schema/result.schema.json is stale: run `HILT_BLESS=1 cargo test -p hilt-results`"
        );
    }

    use proptest::prelude::*;

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            Just(Verdict::Pass),
            Just(Verdict::Fail),
            Just(Verdict::NotApplicable),
            Just(Verdict::Inconclusive),
            Just(Verdict::Error)
        ]
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        (
            verdict(),
            "[a-z:_]{1,30}",
            proptest::option::of(".{0,40}"),
            -1e12f64..1e12,
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(verdict, trial, reason, value, duration_ms, waived)| Outcome {
                trial: trial.clone(),
                check: trial.replace("::", "."),
                device: "dev0".into(),
                level: Level::Mandatory,
                requirements: vec!["DP-7".into()],
                verdict,
                reason,
                waiver: waived.then(|| Waiver {
                    reason: "r".into(),
                    expires: "2099-01-01".into(),
                }),
                expired_waiver: None,
                not_examined: None,
                measurements: vec![Measurement {
                    name: "m".into(),
                    value,
                    unit: "B".into(),
                    threshold: Some(0.0),
                    better: Better::Lower,
                }],
                evidence: BTreeMap::from([("k".to_string(), serde_json::json!(duration_ms))]),
                params: serde_json::json!({ "share": 0.5 }),
                started_at: "2026-11-26T12:00:00.000Z".into(),
                duration_ms,
            })
    }

    fn record(outcomes: Vec<Outcome>) -> ResultRecord {
        ResultRecord {
            format: FormatVersion::CURRENT,
            tool: Tool {
                name: "hilt".into(),
                version: "0.1.0".into(),
                executable_sha256: Some("ab".repeat(32)),
            },
            run: RunInfo {
                id: "0".repeat(32),
                started_at: "2026-11-26T12:00:00.000Z".into(),
                finished_at: None,
                complete: false,
                tier: Tier::Smoke,
                filtered: false,
                planned: outcomes.iter().map(|o| o.trial.clone()).collect(),
                selected: vec![],
                sim_faults: vec![],
                overrides: vec![],
                expected_devices: None,
                no_accelerator: None,
                interrupted: None,
                replay: None,
                not_run: vec![],
            },
            host: Host {
                hostname: "h".into(),
                os: "linux".into(),
                kernel: "6".into(),
                arch: "x86_64".into(),
                cpus: 2,
                node: None,
                machine: None,
            },
            profile: ProfileInfo {
                id: "p".into(),
                title: "t".into(),
                version: "1".into(),
                digest: "sha256:00".into(),
                chain: vec!["p".into()],
                certifying: false,
                expired_waivers: vec![],
            },
            devices: vec![],
            summary: Summary::tally(outcomes.len() as u32, &outcomes),
            outcomes,
            conformance: Conformance {
                conformant: false,
                status: ConformanceStatus::Incomplete,
                reasons: vec![],
            },
            signing: None,
        }
    }

    proptest! {
        /// Whatever a record holds, writing it and reading it back gives the same record,
        /// and the summary counts every outcome once.
        #[test]
        fn records_round_trip(outcomes in proptest::collection::vec(outcome(), 0..20)) {
            let r = record(outcomes);
            let s = &r.summary;
            prop_assert_eq!(s.finished as usize, r.outcomes.len());
            prop_assert_eq!(s.pass + s.fail + s.not_applicable + s.inconclusive + s.error, s.finished);
            prop_assert!(s.waived <= s.fail);
            let bytes = serde_json::to_vec(&r).expect("serialises");
            prop_assert_eq!(ResultRecord::from_json(&bytes).expect("reads back"), r);
        }
    }

    #[test]
    fn status_names_are_their_wire_names() {
        for status in [
            ConformanceStatus::Conformant,
            ConformanceStatus::NotConformant,
            ConformanceStatus::Inconclusive,
            ConformanceStatus::Partial,
            ConformanceStatus::Incomplete,
            ConformanceStatus::NoAccelerator,
        ] {
            assert_eq!(serde_json::to_value(status).expect("json"), status.as_str());
        }
        for verdict in [
            Verdict::Pass,
            Verdict::Fail,
            Verdict::NotApplicable,
            Verdict::Inconclusive,
            Verdict::Error,
        ] {
            assert_eq!(serde_json::to_value(verdict).expect("json"), verdict.as_str());
        }
    }

    fn decided(level: Level, verdict: Verdict, waived: bool) -> Outcome {
        Outcome {
            trial: "residue::x::sim0".into(),
            check: "residue.x".into(),
            device: "sim0".into(),
            level,
            requirements: vec![],
            verdict,
            reason: (verdict != Verdict::Pass).then(|| "because".into()),
            waiver: waived.then(|| Waiver {
                reason: "known".into(),
                expires: "2099-01-01".into(),
            }),
            expired_waiver: None,
            not_examined: None,
            measurements: vec![],
            evidence: Default::default(),
            params: serde_json::Value::Null,
            started_at: String::new(),
            duration_ms: 0,
        }
    }

    /// A finished record of `outcomes` whose summary and conformance the run would write.
    fn finished(outcomes: Vec<Outcome>) -> ResultRecord {
        let mut r = record(outcomes);
        r.run.complete = true;
        r.conformance = r.derived_conformance();
        r
    }

    /// What a record says of the devices it examined decides as the run did: a stand-in
    /// simulated device is never conformant, fewer accelerators than expected leave the
    /// run inconclusive, and a record edited to hide either is named.
    #[test]
    fn the_devices_a_record_examined_decide_as_the_run_did() {
        let device = |id: &str, backend: &str, simulated: bool| Device {
            id: id.into(),
            backend: backend.into(),
            name: id.into(),
            vendor: None,
            pci_address: None,
            simulated,
            facts: BTreeMap::new(),
        };
        let mut stand_in = record(vec![decided(Level::Mandatory, Verdict::Pass, false)]);
        stand_in.devices = vec![device("sim0", "sim", true), device("host", "host", false)];
        stand_in.run.no_accelerator = Some("the backends of this build found none".into());
        stand_in.run.complete = true;
        stand_in.conformance = stand_in.derived_conformance();
        assert_eq!(stand_in.conformance.status, ConformanceStatus::NoAccelerator);
        assert_eq!(stand_in.inconsistencies(), Vec::<String>::new());
        let mut hidden = stand_in.clone();
        hidden.conformance = Conformance {
            conformant: true,
            status: ConformanceStatus::Conformant,
            reasons: vec![],
        };
        assert!(hidden.inconsistencies()[0].starts_with("conformance: the record says conformant"));

        // Eight expected, one examined (the host and a PCI function no backend drives do
        // not count): inconclusive, although every check passed.
        let mut short = record(vec![decided(Level::Mandatory, Verdict::Pass, false)]);
        short.devices = vec![
            device("cuda0", "cuda", false),
            device("pci-0000-18-00.0", "pci", false),
            device("host", "host", false),
        ];
        short.run.expected_devices = Some(8);
        short.run.complete = true;
        short.conformance = short.derived_conformance();
        assert_eq!(short.conformance.status, ConformanceStatus::Inconclusive);
        assert!(
            short.conformance.reasons[0].starts_with("expected 8 accelerator(s), examined 1 (cuda0)"),
            "{:?}",
            short.conformance.reasons
        );
        short.run.expected_devices = Some(1);
        assert_eq!(short.derived_conformance().status, ConformanceStatus::Conformant);
    }

    #[test]
    fn a_record_as_a_run_writes_it_is_consistent_and_edits_are_named() {
        let r = finished(vec![
            decided(Level::Mandatory, Verdict::Pass, false),
            Outcome {
                trial: "residue::y::sim0".into(),
                ..decided(Level::Mandatory, Verdict::Fail, false)
            },
        ]);
        assert_eq!(r.conformance.status, ConformanceStatus::NotConformant);
        assert_eq!(r.inconsistencies(), Vec::<String>::new());

        // Verdicts edited to pass while the summary still counts the failure.
        let mut edited = r.clone();
        edited.outcomes[1].verdict = Verdict::Pass;
        edited.outcomes[1].reason = None;
        edited.conformance = Conformance {
            conformant: true,
            status: ConformanceStatus::Conformant,
            reasons: vec![],
        };
        let found = edited.inconsistencies();
        assert!(
            found[0].starts_with("summary: the record counts 1 pass, 1 fail"),
            "{found:?}"
        );
        assert_eq!(found.len(), 1, "the edited verdicts do give conformant: {found:?}");

        // The stored decision edited alone.
        let mut edited = r.clone();
        edited.conformance.conformant = true;
        edited.conformance.status = ConformanceStatus::Conformant;
        let found = edited.inconsistencies();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "conformance: the record says conformant (conformant: true), but its outcomes give not_conformant \
                 (residue::y::sim0 failed: because)"
            ),
            "{found:?}"
        );

        // A level lowered so that a failure no longer counts.
        let mut edited = r.clone();
        edited.outcomes[1].level = Level::Recommended;
        assert!(edited.inconsistencies()[0].starts_with("conformance: the record says not_conformant"));

        // Outcomes that were never planned, or twice.
        let mut edited = r.clone();
        edited.outcomes[1].trial = "residue::x::sim0".into();
        assert!(
            edited
                .inconsistencies()
                .iter()
                .any(|f| f == "outcomes: residue::x::sim0 is recorded more than once")
        );
        let mut edited = r.clone();
        edited.outcomes[1].trial = "residue::z::sim0".into();
        assert!(
            edited
                .inconsistencies()
                .iter()
                .any(|f| f == "outcomes: residue::z::sim0 was not among the planned trials")
        );

        // A run that did not finish is incomplete, whatever it stored.
        let mut unfinished = r.clone();
        unfinished.run.complete = false;
        unfinished.outcomes.pop();
        unfinished.summary = Summary::tally(2, &unfinished.outcomes);
        unfinished.conformance = unfinished.derived_conformance();
        assert_eq!(unfinished.conformance.status, ConformanceStatus::Incomplete);
        assert_eq!(unfinished.inconsistencies(), Vec::<String>::new());
    }

    #[test]
    fn partial_reasons_come_from_what_the_record_says_of_the_run() {
        let mut r = finished(vec![decided(Level::Mandatory, Verdict::Pass, false)]);
        assert_eq!(r.conformance.status, ConformanceStatus::Conformant);
        r.run.sim_faults = vec!["residue".into()];
        r.run.overrides = vec!["tenant_timeout_s=5".into(), "sim.scrub=\"never\"".into()];
        r.run.filtered = true;
        r.run.planned.push("residue::other::sim0".into());
        assert_eq!(
            partial_reasons(&r.run, 1),
            [
                "partial run: filters selected 1 of 2 planned trials",
                "settings that change the checks overridden: sim.scrub=\"never\"",
                "sim faults planted on purpose: residue",
            ]
        );
        assert_eq!(r.derived_conformance().status, ConformanceStatus::Partial);
        assert!(r.inconsistencies()[0].starts_with("conformance: the record says conformant"));
    }

    #[test]
    fn a_record_without_a_node_stands_for_its_host_name() {
        let mut r = record(vec![]);
        assert_eq!(r.host.node_name(), "h");
        let text = serde_json::to_string(&r).expect("json");
        assert!(!text.contains("\"node\""), "an absent node is not written: {text}");
        r.host.node = Some("gpu-017".into());
        let back = ResultRecord::from_json(&serde_json::to_vec(&r).expect("json")).expect("reads");
        assert_eq!(back.host.node_name(), "gpu-017");
        // A 1.1 record (no node) reads as before.
        let old = text.replace("\"minor\":2", "\"minor\":1");
        assert_eq!(
            ResultRecord::from_json(old.as_bytes()).expect("1.1 reads").host.node,
            None
        );
    }

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        assert_eq!(ExitCode::Conformant.code(), 0);
        assert_eq!(ExitCode::NotConformant.code(), 1);
        assert_eq!(ExitCode::Usage.code(), 2);
        assert_eq!(ExitCode::Inconclusive.code(), 3);
        assert_eq!(ExitCode::Interrupted { signal: 2 }.code(), 130, "SIGINT");
        assert_eq!(ExitCode::Interrupted { signal: 15 }.code(), 143, "SIGTERM");
    }

    fn status(outcomes: &[Outcome], tier: Tier) -> (ConformanceStatus, u8) {
        let (c, e) = decide(outcomes, tier, vec![], &Coverage::default());
        (c.status, e.code())
    }

    #[test]
    fn conformance_follows_mandatory_verdicts() {
        use Level::*;
        use Verdict::*;
        let t = Tier::Standard;
        let pass = || decided(Mandatory, Pass, false);
        assert_eq!(status(&[pass()], t), (ConformanceStatus::Conformant, 0));
        assert_eq!(
            status(&[pass(), decided(Mandatory, Fail, false)], t),
            (ConformanceStatus::NotConformant, 1)
        );
        assert_eq!(
            status(&[pass(), decided(Mandatory, Fail, true)], t),
            (ConformanceStatus::Conformant, 0),
            "a waived failure does not block"
        );
        assert_eq!(
            status(&[pass(), decided(Recommended, Fail, false)], t),
            (ConformanceStatus::Conformant, 0)
        );
        assert_eq!(
            status(&[pass(), decided(Mandatory, Inconclusive, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
        assert_eq!(
            status(&[pass(), decided(Mandatory, Error, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
        assert_eq!(
            status(&[decided(Mandatory, Error, false), decided(Mandatory, Fail, false)], t),
            (ConformanceStatus::NotConformant, 1)
        );
        assert_eq!(
            status(&[pass(), decided(Mandatory, NotApplicable, false)], t),
            (ConformanceStatus::Conformant, 0)
        );
        assert_eq!(
            status(&[pass(), decided(Mandatory, NotApplicable, false)], Tier::Certification),
            (ConformanceStatus::Inconclusive, 3)
        );
    }

    #[test]
    fn nothing_that_did_not_pass_supports_conformance() {
        use Level::*;
        use Verdict::*;
        let t = Tier::Standard;
        assert_eq!(status(&[], t), (ConformanceStatus::Inconclusive, 3), "nothing ran");
        assert_eq!(
            status(&[decided(Mandatory, Fail, true)], t),
            (ConformanceStatus::Inconclusive, 3),
            "waived failures alone support nothing"
        );
        assert_eq!(
            status(&[decided(Mandatory, NotApplicable, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
        assert_eq!(
            status(&[decided(Recommended, Pass, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
        assert_eq!(
            status(&[decided(Informational, Pass, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
    }

    #[test]
    fn a_partial_run_is_never_conformant_but_exits_on_its_trials() {
        let (c, e) = decide(
            &[decided(Level::Mandatory, Verdict::Pass, false)],
            Tier::Smoke,
            vec!["filtered".into()],
            &Coverage::default(),
        );
        assert_eq!(c.status, ConformanceStatus::Partial);
        assert!(!c.conformant);
        assert_eq!(e.code(), 0);
        let (_, e) = decide(
            &[decided(Level::Mandatory, Verdict::Fail, false)],
            Tier::Smoke,
            vec!["filtered".into()],
            &Coverage::default(),
        );
        assert_eq!(e.code(), 1);
    }

    #[test]
    fn mandatory_trials_that_could_not_run_leave_a_certification_run_inconclusive() {
        // A replayed capture: every host and PCI check passed, the device checks on the
        // capture's accelerators could not run.
        let replay = Coverage {
            not_run_mandatory: (0..6)
                .map(|i| format!("residue::global::cross_process::pci-{i}"))
                .collect(),
            ..Coverage::default()
        };
        let partial = vec!["6 device trial(s) of the profile could not run".to_string()];
        let passed = [decided(Level::Mandatory, Verdict::Pass, false)];
        let (c, e) = decide(&passed, Tier::Certification, partial.clone(), &replay);
        assert_eq!((c.status, e.code()), (ConformanceStatus::Partial, 3));
        let why = c
            .reasons
            .iter()
            .find(|r| r.contains("could not run in the certification tier"));
        let why = why.expect("the reason names the trials that could not run");
        assert!(
            why.starts_with("6 mandatory trial(s)")
                && why.contains("residue::global::cross_process::pci-0")
                && why.ends_with("and 2 more"),
            "{why}"
        );
        // Below the certification tier a partial run exits by the trials that ran.
        for tier in [Tier::Smoke, Tier::Standard] {
            let (c, e) = decide(&passed, tier, partial.clone(), &replay);
            assert_eq!((c.status, e.code()), (ConformanceStatus::Partial, 0), "{tier:?}");
        }
        // A failure still says not conformant.
        let failed = [decided(Level::Mandatory, Verdict::Fail, false)];
        let (_, e) = decide(&failed, Tier::Certification, partial, &replay);
        assert_eq!(e.code(), 1);
    }

    #[test]
    fn a_run_that_examined_no_accelerator_is_never_conformant() {
        let none = Coverage {
            no_accelerator: Some("opencl: no OpenCL runtime".into()),
            ..Coverage::default()
        };
        for outcomes in [
            vec![decided(Level::Mandatory, Verdict::Pass, false)],
            vec![decided(Level::Mandatory, Verdict::Fail, false)],
            vec![],
        ] {
            let (c, e) = decide(&outcomes, Tier::Smoke, vec![], &none);
            assert_eq!(c.status, ConformanceStatus::NoAccelerator);
            assert!(!c.conformant);
            assert_eq!(e.code(), 3, "never 0, and never a platform failure either");
            assert!(c.reasons[0].starts_with("no accelerator was examined: opencl: no OpenCL runtime"));
        }
    }

    #[test]
    fn missing_devices_make_a_passing_run_inconclusive_and_a_failing_one_stays_failed() {
        let missing = Coverage {
            missing_devices: Some("expected 8 accelerators, examined 7".into()),
            ..Coverage::default()
        };
        let (c, e) = decide(
            &[decided(Level::Mandatory, Verdict::Pass, false)],
            Tier::Smoke,
            vec![],
            &missing,
        );
        assert_eq!((c.status, e.code()), (ConformanceStatus::Inconclusive, 3));
        assert_eq!(c.reasons, ["expected 8 accelerators, examined 7"]);
        let (c, e) = decide(
            &[decided(Level::Mandatory, Verdict::Fail, false)],
            Tier::Smoke,
            vec![],
            &missing,
        );
        assert_eq!((c.status, e.code()), (ConformanceStatus::NotConformant, 1));
    }

    #[test]
    fn standing_keeps_what_does_not_decide_aside() {
        use Level::*;
        use Verdict::*;
        let t = Tier::Standard;
        assert_eq!(standing(&decided(Mandatory, Pass, false), t), Standing::Passed);
        assert!(matches!(
            standing(&decided(Mandatory, Fail, false), t),
            Standing::Blocks { failure: true, .. }
        ));
        assert!(matches!(
            standing(&decided(Mandatory, Error, false), t),
            Standing::Blocks { failure: false, .. }
        ));
        for aside in [
            decided(Mandatory, Fail, true),
            decided(Recommended, Fail, false),
            decided(Informational, Inconclusive, false),
            decided(Recommended, Error, false),
            decided(Mandatory, NotApplicable, false),
        ] {
            assert!(matches!(standing(&aside, t), Standing::Aside(_)), "{aside:?}");
        }
        let Standing::Aside(text) = standing(&decided(Recommended, Fail, false), t) else {
            unreachable!("checked above")
        };
        assert_eq!(text, "recommended check, does not decide conformance: fail: because");
        // The certification tier settles everything mandatory.
        assert!(matches!(
            standing(&decided(Mandatory, NotApplicable, false), Tier::Certification),
            Standing::Blocks {
                failure: false,
                kind: "not_applicable",
                ..
            }
        ));
    }

    #[test]
    fn an_expired_waiver_no_longer_waives_and_is_named() {
        let mut o = decided(Level::Mandatory, Verdict::Fail, false);
        o.expired_waiver = Some(Waiver {
            reason: "vendor fix due".into(),
            expires: "2026-01-31".into(),
        });
        let pass = decided(Level::Mandatory, Verdict::Pass, false);
        let (c, e) = decide(&[pass, o], Tier::Standard, vec![], &Coverage::default());
        assert_eq!((c.status, e.code()), (ConformanceStatus::NotConformant, 1));
        assert_eq!(
            c.reasons,
            ["residue::x::sim0 failed: because (its waiver expired on 2026-01-31 and no longer holds: vendor fix due)"]
        );
    }

    #[test]
    fn a_check_the_backend_cannot_perform_is_never_a_platform_failure() {
        let mut o = decided(Level::Mandatory, Verdict::NotApplicable, false);
        o.not_examined = Some(NotExamined {
            backend: "opencl".into(),
            examined_by: vec!["cuda".into()],
        });
        let pass = decided(Level::Mandatory, Verdict::Pass, false);
        let (c, e) = decide(&[pass.clone(), o.clone()], Tier::Standard, vec![], &Coverage::default());
        assert_eq!((c.status, e.code()), (ConformanceStatus::Conformant, 0));
        let (c, e) = decide(&[pass, o], Tier::Certification, vec![], &Coverage::default());
        assert_eq!((c.status, e.code()), (ConformanceStatus::Inconclusive, 3));
        assert!(
            c.reasons[0].contains("was not examined by the opencl backend"),
            "{:?}",
            c.reasons
        );
    }
}
