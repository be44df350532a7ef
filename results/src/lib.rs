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
    /// Simulator faults planted on purpose for this run (`--sim-fault`). A run with any
    /// planted fault is a test of hilt itself, never evidence about a platform.
    pub sim_faults: Vec<String>,
    /// Settings given on the command line that override the profile, as `key=value`
    /// (`tenant_timeout_s=5`, `sim.scrub="never"`). Overridden sim knobs make the run
    /// partial. Absent in records that have none.
    #[serde(default)]
    pub overrides: Vec<String>,
}

/// The tiers of a profile, from the quickest to the most thorough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tier {
    /// Seconds per device, for every CI run.
    Smoke,
    /// Minutes per device, for nightly runs.
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
    /// The run did not finish.
    Incomplete,
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
        }
    }
}

/// The exit codes of `hilt run`, a contract for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCode {
    /// 0: conformant (for a filtered run: no selected trial failed or was inconclusive).
    Conformant,
    /// 1: not conformant (a mandatory check failed).
    NotConformant,
    /// 2: usage error, or a profile that cannot be loaded.
    Usage,
    /// 3: inconclusive (a mandatory check ended inconclusive or in error, or could not run
    /// for lack of hardware in the certification tier).
    Inconclusive,
}

impl ExitCode {
    /// The numeric process exit status.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Conformant => 0,
            ExitCode::NotConformant => 1,
            ExitCode::Usage => 2,
            ExitCode::Inconclusive => 3,
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
                sim_faults: vec![],
                overrides: vec![],
            },
            host: Host {
                hostname: "h".into(),
                os: "linux".into(),
                kernel: "6".into(),
                arch: "x86_64".into(),
                cpus: 2,
                node: None,
            },
            profile: ProfileInfo {
                id: "p".into(),
                title: "t".into(),
                version: "1".into(),
                digest: "sha256:00".into(),
                chain: vec!["p".into()],
                certifying: false,
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
    }
}
