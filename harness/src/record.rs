//! The event stream of a run and the reporters that consume it.
//!
//! The runner emits typed [`Event`]s; the [`Recorder`] folds them into the
//! [`ResultRecord`] and hands each event and the record so far to every [`Reporter`]:
//! the events file (`events.jsonl`, one line per event, flushed as it happens) and the
//! result file (`result.json`, rewritten atomically after every trial, marked complete
//! only at the end). A killed run therefore leaves both a readable partial record and the
//! event lines up to the kill. A reporter that fails is reported once on stderr and
//! dropped; it never changes a verdict.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use hilt_results::signed::SigningKey;
use hilt_results::{
    Conformance, ConformanceStatus, ExitCode, Level, Outcome, ResultRecord, RunInfo, Summary, Tier, Verdict,
};
use serde::Serialize;

/// Something that happened during a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The run began; the record holds the header.
    RunStarted {
        /// The run id.
        run: String,
    },
    /// A trial began.
    TrialStarted {
        /// Its name.
        trial: String,
        /// When.
        at: String,
    },
    /// A trial ended with an outcome.
    TrialFinished {
        /// The outcome.
        outcome: Box<Outcome>,
    },
    /// The run ended.
    RunFinished {
        /// The counts.
        summary: Summary,
        /// The decision.
        conformance: Conformance,
    },
}

/// A consumer of the event stream.
pub trait Reporter: Send {
    /// A short name for error messages.
    fn name(&self) -> String;
    /// Handles one event; `record` is the record after the event was applied.
    fn report(&mut self, event: &Event, record: &ResultRecord) -> std::io::Result<()>;
    /// True when the reporter keeps the run's evidence (`result.json`, `events.jsonl`,
    /// the signed envelope): its failure means the record is not where it should be.
    /// Reports for people and progress lines are not evidence; their failures are
    /// warnings only.
    fn keeps_evidence(&self) -> bool {
        true
    }
}

/// Folds events into the record and feeds the reporters.
pub struct Recorder {
    record: ResultRecord,
    reporters: Vec<Box<dyn Reporter>>,
    failures: Vec<String>,
}

impl Recorder {
    /// A recorder for a run whose header is `record` (no outcomes yet).
    pub fn new(record: ResultRecord, reporters: Vec<Box<dyn Reporter>>) -> Recorder {
        let mut r = Recorder {
            record,
            reporters,
            failures: Vec::new(),
        };
        let run = r.record.run.id.clone();
        r.emit(Event::RunStarted { run });
        r
    }

    /// The record so far.
    pub fn record(&self) -> &ResultRecord {
        &self.record
    }

    /// Applies an event and hands it to every reporter.
    pub fn emit(&mut self, event: Event) {
        match &event {
            Event::RunStarted { .. } | Event::TrialStarted { .. } => {}
            Event::TrialFinished { outcome } => {
                self.record.outcomes.push((**outcome).clone());
                self.record.summary = Summary::tally(self.record.summary.selected, &self.record.outcomes);
            }
            Event::RunFinished { summary, conformance } => {
                self.record.summary = summary.clone();
                self.record.conformance = conformance.clone();
                self.record.run.complete = true;
                self.record.run.finished_at = Some(crate::host::rfc3339(std::time::SystemTime::now()));
            }
        }
        let record = &self.record;
        let failures = &mut self.failures;
        self.reporters.retain_mut(|r| match r.report(&event, record) {
            Ok(()) => true,
            Err(e) => {
                let message = format!("reporter {} failed and was stopped: {e}", r.name());
                eprintln!("warning: {message}");
                if r.keeps_evidence() {
                    failures.push(message);
                }
                false
            }
        });
    }

    /// Decides conformance, emits the final event and returns the record, the exit code
    /// and the failures of reporters.
    pub fn finish(mut self, partial: Vec<String>) -> (ResultRecord, ExitCode, Vec<String>) {
        let (conformance, exit) = decide(&self.record.outcomes, self.record.run.tier, partial);
        let summary = Summary::tally(self.record.summary.selected, &self.record.outcomes);
        self.emit(Event::RunFinished { summary, conformance });
        (self.record, exit, self.failures)
    }
}

/// Decides conformance from the outcomes of a finished run.
///
/// A mandatory check that failed without a waiver makes the run not conformant; one that
/// ended inconclusive or in error (or, in the certification tier, could not run) makes it
/// inconclusive; a run in which nothing ran is inconclusive too. `partial` lists why the
/// run cannot speak for conformance at all (filters, planted faults); the exit code of a
/// partial run reflects its selected trials only.
pub fn decide(outcomes: &[Outcome], tier: Tier, partial: Vec<String>) -> (Conformance, ExitCode) {
    let mut failed = Vec::new();
    let mut unsure = Vec::new();
    let mut supported = 0;
    for o in outcomes.iter().filter(|o| o.level == Level::Mandatory) {
        // Only a pass supports conformance; a waived failure merely does not block it.
        if o.verdict == Verdict::Pass {
            supported += 1;
        }
        let why = o.reason.as_deref().unwrap_or("no reason given");
        match o.verdict {
            Verdict::Fail if o.waiver.is_none() => failed.push(format!("{} failed: {why}", o.trial)),
            Verdict::Inconclusive => unsure.push(format!("{} was inconclusive: {why}", o.trial)),
            Verdict::Error => unsure.push(format!("{} ended in error: {why}", o.trial)),
            Verdict::NotApplicable if tier == Tier::Certification => {
                unsure.push(format!("{} could not run in the certification tier: {why}", o.trial));
            }
            _ => {}
        }
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
    let mut reasons = partial.clone();
    reasons.extend(failed);
    reasons.extend(unsure);
    let status = if partial.is_empty() {
        status
    } else {
        ConformanceStatus::Partial
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

/// The overridden settings that change what checks measure (sim knobs, kernel build
/// options): a run with any of them is partial.
pub const CHECK_CHANGING_OVERRIDES: [&str; 3] = ["sim.", "opencl.build_options", "cuda.nvrtc_options"];

/// Why a run cannot speak for conformance at all, as its record tells: name filters left
/// planned trials out (`selected` of `run.planned`), settings that change the checks were
/// overridden ([`CHECK_CHANGING_OVERRIDES`]), or sim faults were planted on purpose. The
/// runner decides with this list, and readers of a record derive the same one from it.
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
    partial
}

/// The conformance decision that a record's outcomes (their verdicts, levels and
/// waivers), its tier and what it says of the run give: [`decide`] over
/// [`partial_reasons`], and `incomplete` for a run that did not finish. Readers decide
/// with this, never with the stored `conformance`, which an edit can change alone.
pub fn derived_conformance(record: &ResultRecord) -> Conformance {
    if !record.run.complete {
        return Conformance {
            conformant: false,
            status: ConformanceStatus::Incomplete,
            reasons: vec!["the run has not finished".into()],
        };
    }
    let partial = partial_reasons(&record.run, record.summary.selected);
    decide(&record.outcomes, record.run.tier, partial).0
}

/// Writes every event as one JSON line to `events.jsonl`, flushed as it happens.
pub struct EventsFile {
    path: PathBuf,
    file: File,
}

impl EventsFile {
    /// Creates (truncates) `dir/events.jsonl`.
    pub fn create(dir: &Path) -> std::io::Result<EventsFile> {
        let path = dir.join("events.jsonl");
        Ok(EventsFile {
            file: File::create(&path)?,
            path,
        })
    }
}

impl Reporter for EventsFile {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn report(&mut self, event: &Event, record: &ResultRecord) -> std::io::Result<()> {
        let line = match event {
            // The first line carries the header, so the events file alone says what ran.
            Event::RunStarted { .. } => serde_json::to_string(&serde_json::json!({
                "event": "run_started",
                "format": record.format,
                "tool": record.tool,
                "run": record.run,
                "host": record.host,
                "profile": record.profile,
                "devices": record.devices,
            })),
            other => serde_json::to_string(other),
        }?;
        writeln!(self.file, "{line}")?;
        self.file.flush()
    }
}

/// Rewrites `result.json` atomically (write beside, then rename) after every trial and at
/// the end.
pub struct ResultFile {
    path: PathBuf,
}

impl ResultFile {
    /// A result file at `dir/result.json`.
    pub fn new(dir: &Path) -> ResultFile {
        ResultFile {
            path: dir.join("result.json"),
        }
    }
}

impl Reporter for ResultFile {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn report(&mut self, event: &Event, record: &ResultRecord) -> std::io::Result<()> {
        if matches!(event, Event::TrialStarted { .. }) {
            return Ok(());
        }
        write_atomically(&self.path, &serde_json::to_vec_pretty(record)?)
    }
}

/// The name of the signed envelope beside `result.json`.
pub const ENVELOPE_FILE: &str = "result.dsse.json";

/// Signs the finished record into `result.dsse.json`. Only a finished record is signed: a
/// killed run leaves its partial `result.json` and no envelope.
pub struct EnvelopeFile {
    path: PathBuf,
    key: SigningKey,
}

impl EnvelopeFile {
    /// An envelope at `path`, signed with `key`.
    pub fn new(path: PathBuf, key: SigningKey) -> EnvelopeFile {
        EnvelopeFile { path, key }
    }
}

impl Reporter for EnvelopeFile {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn report(&mut self, event: &Event, record: &ResultRecord) -> std::io::Result<()> {
        if !matches!(event, Event::RunFinished { .. }) {
            return Ok(());
        }
        // Sign only what `result.json` beside it holds: if that file could not be written,
        // an envelope would vouch for a record nobody can see.
        let beside = self.path.with_file_name("result.json");
        let on_disk = std::fs::read(&beside)
            .ok()
            .and_then(|b| ResultRecord::from_json(&b).ok());
        if on_disk.as_ref() != Some(record) {
            return Err(std::io::Error::other(format!(
                "{} does not hold the finished record; the result is not signed",
                beside.display()
            )));
        }
        let bytes = self.key.sign(record).map_err(std::io::Error::other)?;
        write_bytes_atomically(&self.path, &bytes)
    }
}

/// Writes `bytes` and a newline to `path` so that readers see the old file or the new
/// one, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut all = Vec::with_capacity(bytes.len() + 1);
    all.extend_from_slice(bytes);
    all.push(b'\n');
    write_bytes_atomically(path, &all)
}

/// Writes exactly `bytes` to `path`, atomically (write beside, then rename).
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let result = written.and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(level: Level, verdict: Verdict, waived: bool) -> Outcome {
        Outcome {
            trial: "residue::x::sim0".into(),
            check: "residue.x".into(),
            device: "sim0".into(),
            level,
            requirements: vec![],
            verdict,
            reason: (verdict != Verdict::Pass).then(|| "because".into()),
            waiver: waived.then(|| hilt_results::Waiver {
                reason: "known".into(),
                expires: "2099-01-01".into(),
            }),
            measurements: vec![],
            evidence: Default::default(),
            params: serde_json::Value::Null,
            started_at: String::new(),
            duration_ms: 0,
        }
    }

    fn status(outcomes: &[Outcome], tier: Tier) -> (ConformanceStatus, u8) {
        let (c, e) = decide(outcomes, tier, vec![]);
        (c.status, e.code())
    }

    #[test]
    fn conformance_follows_mandatory_verdicts() {
        use Level::*;
        use Verdict::*;
        let t = Tier::Standard;
        let pass = || outcome(Mandatory, Pass, false);
        assert_eq!(status(&[pass()], t), (ConformanceStatus::Conformant, 0));
        assert_eq!(
            status(&[pass(), outcome(Mandatory, Fail, false)], t),
            (ConformanceStatus::NotConformant, 1)
        );
        assert_eq!(
            status(&[pass(), outcome(Mandatory, Fail, true)], t),
            (ConformanceStatus::Conformant, 0),
            "a waived failure does not block"
        );
        assert_eq!(
            status(&[pass(), outcome(Recommended, Fail, false)], t),
            (ConformanceStatus::Conformant, 0)
        );
        assert_eq!(
            status(&[pass(), outcome(Mandatory, Inconclusive, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
        assert_eq!(
            status(&[pass(), outcome(Mandatory, Error, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
        assert_eq!(
            status(&[outcome(Mandatory, Error, false), outcome(Mandatory, Fail, false)], t),
            (ConformanceStatus::NotConformant, 1)
        );
        assert_eq!(
            status(&[pass(), outcome(Mandatory, NotApplicable, false)], t),
            (ConformanceStatus::Conformant, 0)
        );
        assert_eq!(
            status(&[pass(), outcome(Mandatory, NotApplicable, false)], Tier::Certification),
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
            status(&[outcome(Mandatory, Fail, true)], t),
            (ConformanceStatus::Inconclusive, 3),
            "waived failures alone support nothing"
        );
        assert_eq!(
            status(&[outcome(Mandatory, NotApplicable, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
        assert_eq!(
            status(&[outcome(Recommended, Pass, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
        assert_eq!(
            status(&[outcome(Informational, Pass, false)], t),
            (ConformanceStatus::Inconclusive, 3)
        );
    }

    #[test]
    fn a_partial_run_is_never_conformant_but_exits_on_its_trials() {
        let (c, e) = decide(
            &[outcome(Level::Mandatory, Verdict::Pass, false)],
            Tier::Smoke,
            vec!["filtered".into()],
        );
        assert_eq!(c.status, ConformanceStatus::Partial);
        assert!(!c.conformant);
        assert_eq!(e.code(), 0);
        let (_, e) = decide(
            &[outcome(Level::Mandatory, Verdict::Fail, false)],
            Tier::Smoke,
            vec!["filtered".into()],
        );
        assert_eq!(e.code(), 1);
    }
}
