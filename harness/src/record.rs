//! The event stream of a run and the reporters that consume it.
//!
//! The runner emits typed [`Event`]s; the [`Recorder`] folds them into the
//! [`ResultRecord`] and hands each event and the record so far to every [`Reporter`]:
//! the events file (`events.jsonl`, one line per event, flushed as it happens) and the
//! result file (`result.json`, rewritten atomically after every trial, marked complete
//! only at the end). A killed run therefore leaves both a readable partial record and the
//! event lines up to the kill. A run stopped by SIGINT or SIGTERM ends with
//! [`Event::RunInterrupted`] instead: the record, every report and the envelope are
//! written for what ran, and the trials that did not run are named. A reporter that fails
//! is reported once on stderr and dropped; it never changes a verdict.
//!
//! [`standing`] says where one outcome stands in the decision; the terminal's libtest
//! line, JUnit and hilt's summary all count by it, so they always agree with [`decide`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use hilt_results::signed::SigningKey;
use hilt_results::{
    Conformance, ConformanceStatus, ExitCode, Interruption, Level, Outcome, ResultRecord, Summary, Tier, Verdict,
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
    /// The run was stopped by a signal before every selected trial had run; the record
    /// stays incomplete.
    RunInterrupted {
        /// The signal and the trials that did not run.
        interrupted: Interruption,
        /// The counts over what ran.
        summary: Summary,
        /// The decision: `incomplete`, with what was found so far among its reasons.
        conformance: Conformance,
    },
}

impl Event {
    /// True for the event that ends a run, finished or interrupted: reports and the
    /// envelope are written on it.
    pub fn ends_run(&self) -> bool {
        matches!(self, Event::RunFinished { .. } | Event::RunInterrupted { .. })
    }
}

/// A consumer of the event stream.
pub trait Reporter: Send {
    /// A short name for error messages.
    fn name(&self) -> String;
    /// Handles one event; `record` is the record after the event was applied.
    fn report(&mut self, event: &Event, record: &ResultRecord) -> std::io::Result<()>;
    /// What the reporter's failure costs.
    fn kind(&self) -> ReporterKind {
        ReporterKind::Evidence
    }
}

/// What a reporter writes, and so what its failure costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReporterKind {
    /// The run's evidence (`result.json`, `events.jsonl`, the signed envelope): if it
    /// fails, the record is not where it should be.
    Evidence,
    /// A report someone asked for (`--junit`, `--html`, `--markdown`): if it fails, a
    /// pipeline loses what it reads, so the run must not exit 0.
    Report,
    /// Progress lines on a terminal: a failure costs nothing.
    Progress,
}

/// A reporter that failed: which, what it writes, and why, in words.
#[derive(Debug, Clone)]
pub struct ReporterFailure {
    /// The reporter's name (its file).
    pub name: String,
    /// What it writes.
    pub kind: ReporterKind,
    /// Why it failed.
    pub error: String,
}

/// Folds events into the record and feeds the reporters.
pub struct Recorder {
    record: ResultRecord,
    reporters: Vec<Box<dyn Reporter>>,
    failures: Vec<ReporterFailure>,
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
            Event::RunInterrupted {
                interrupted,
                summary,
                conformance,
            } => {
                self.record.summary = summary.clone();
                self.record.conformance = conformance.clone();
                self.record.run.finished_at = Some(interrupted.at.clone());
                self.record.run.interrupted = Some(interrupted.clone());
            }
        }
        let record = &self.record;
        let failures = &mut self.failures;
        self.reporters.retain_mut(|r| match r.report(&event, record) {
            Ok(()) => true,
            Err(e) => {
                // Progress lines cost nothing; everything else is said once, at the end,
                // by whoever runs the recorder.
                if r.kind() != ReporterKind::Progress {
                    failures.push(ReporterFailure {
                        name: r.name(),
                        kind: r.kind(),
                        error: plain_io_error(&e),
                    });
                }
                false
            }
        });
    }

    /// Decides conformance, emits the final event and returns the record, the exit code
    /// and the failures of reporters.
    pub fn finish(
        mut self,
        partial: Vec<String>,
        coverage: &Coverage,
    ) -> (ResultRecord, ExitCode, Vec<ReporterFailure>) {
        let (conformance, exit) = decide(&self.record.outcomes, self.record.run.tier, partial, coverage);
        let summary = Summary::tally(self.record.summary.selected, &self.record.outcomes);
        self.emit(Event::RunFinished { summary, conformance });
        (self.record, exit, self.failures)
    }

    /// Ends a run stopped by `signal` with `not_run` trials left: the record stays
    /// incomplete, its reasons say what stopped it and what was found before.
    pub fn interrupt(
        mut self,
        signal: crate::interrupt::Signal,
        not_run: Vec<String>,
        coverage: &Coverage,
    ) -> (ResultRecord, ExitCode, Vec<ReporterFailure>) {
        let (found, _) = decide(&self.record.outcomes, self.record.run.tier, Vec::new(), coverage);
        let summary = Summary::tally(self.record.summary.selected, &self.record.outcomes);
        let mut reasons = vec![format!(
            "the run was interrupted by {} after {} of {} selected trials; {} did not run",
            signal.name(),
            summary.finished,
            summary.selected,
            not_run.len()
        )];
        // What was found before the stop, for the reader; it decides nothing.
        reasons.extend(
            found
                .reasons
                .into_iter()
                .filter(|r| r != "no trial ran" && r != "no mandatory check passed, so nothing supports conformance"),
        );
        let conformance = Conformance {
            conformant: false,
            status: ConformanceStatus::Incomplete,
            reasons,
        };
        let interrupted = Interruption {
            signal: signal.name(),
            at: crate::host::rfc3339(std::time::SystemTime::now()),
            not_run,
        };
        self.emit(Event::RunInterrupted {
            interrupted,
            summary,
            conformance,
        });
        let exit = ExitCode::Interrupted {
            signal: u8::try_from(signal.number()).unwrap_or(u8::MAX - 128),
        };
        (self.record, exit, self.failures)
    }
}

/// An I/O error in plain words, for a person who must fix it.
pub fn plain_io_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let os = e.raw_os_error();
    let words = match e.kind() {
        ErrorKind::NotFound => "its directory does not exist",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::IsADirectory => "a directory is in the way",
        ErrorKind::NotADirectory => "a part of the path is a file, not a directory",
        ErrorKind::ReadOnlyFilesystem => "the file system is read-only",
        ErrorKind::StorageFull => "the disk is full",
        ErrorKind::QuotaExceeded => "the disk quota is exceeded",
        _ => "",
    };
    match (words, os) {
        ("", _) => e.to_string(),
        (w, Some(code)) => format!("{w} (os error {code})"),
        (w, None) => format!("{w} ({e})"),
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
}

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

/// What a record says about accelerators it should have examined and did not: none at all
/// (the run fell back to the simulated device), or fewer than expected. `None` when the
/// run examined what it should. The terminal and JUnit show it as a failing entry of its
/// own, `hilt::accelerators`, so that neither looks green when the exit status is not.
pub fn accelerator_shortfall(record: &ResultRecord) -> Option<String> {
    if let Some(why) = &record.run.no_accelerator {
        return Some(format!("no accelerator was examined: {why}"));
    }
    let expected = record.run.expected_devices?;
    let examined: Vec<&str> = record
        .devices
        .iter()
        .filter(|d| d.backend != crate::check::HOST_BACKEND && d.backend != crate::pci::BACKEND)
        .map(|d| d.id.as_str())
        .collect();
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
}

/// The name under which the terminal and JUnit show an [`accelerator_shortfall`].
pub const SHORTFALL_TRIAL: &str = "hilt::accelerators";

/// The outcomes of a record counted as the terminal counts them: libtest-mimic's
/// `passed`, `failed` and `ignored`, with what the ignored ones were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Passed.
    pub passed: u32,
    /// Keep the run from being conformant ([`Standing::Blocks`]), and, in an interrupted
    /// run, the trials that did not run.
    pub failed: u32,
    /// Of `failed`, the trials an interrupted run did not run.
    pub not_run: u32,
    /// Of `failed`, 1 when accelerators the run should have examined were not there
    /// ([`accelerator_shortfall`]; shown whatever the filters selected).
    pub shortfall: u32,
    /// Do not decide conformance ([`Standing::Aside`]).
    pub ignored: u32,
    /// Of `ignored`: failures under a waiver.
    pub waived: u32,
    /// Of `ignored`: mandatory checks that do not apply here.
    pub not_applicable: u32,
    /// Of `ignored`: checks the backend could not perform.
    pub not_examined: u32,
    /// Of `ignored`: recommended or informational checks that did not pass.
    pub below_mandatory: u32,
    /// Planned trials that filters left out.
    pub filtered_out: u32,
}

impl Tally {
    /// Counts `record`.
    pub fn of(record: &ResultRecord) -> Tally {
        let mut t = Tally::default();
        for o in &record.outcomes {
            match standing(o, record.run.tier) {
                Standing::Passed => t.passed += 1,
                Standing::Blocks { .. } => t.failed += 1,
                Standing::Aside(_) => {
                    t.ignored += 1;
                    if o.level != Level::Mandatory {
                        t.below_mandatory += 1;
                    } else if o.waiver.is_some() {
                        t.waived += 1;
                    } else if o.not_examined.is_some() {
                        t.not_examined += 1;
                    } else {
                        t.not_applicable += 1;
                    }
                }
            }
        }
        if let Some(i) = &record.run.interrupted {
            t.not_run = i.not_run.len() as u32;
            t.failed += t.not_run;
        }
        if accelerator_shortfall(record).is_some() {
            t.shortfall = 1;
            t.failed += 1;
        }
        t.filtered_out = (record.run.planned.len() as u32).saturating_sub(record.summary.selected);
        t
    }

    /// One line, in libtest's words: `12 passed; 0 failed; 8 ignored (...); 0 filtered out`.
    pub fn line(&self) -> String {
        let mut failed = format!("{} failed", self.failed);
        let mut of_them = Vec::new();
        if self.not_run > 0 {
            of_them.push(format!("{} not run", self.not_run));
        }
        if self.shortfall > 0 {
            of_them.push(format!("{SHORTFALL_TRIAL}: accelerators missing"));
        }
        if !of_them.is_empty() {
            failed.push_str(&format!(" (of them {})", of_them.join(", ")));
        }
        let mut aside = Vec::new();
        for (n, what) in [
            (self.not_applicable, "not applicable"),
            (self.not_examined, "not examined by their backend"),
            (self.waived, "waived"),
            (self.below_mandatory, "recommended or informational and not passed"),
        ] {
            if n > 0 {
                aside.push(format!("{n} {what}"));
            }
        }
        let ignored = if aside.is_empty() {
            format!("{} ignored", self.ignored)
        } else {
            format!("{} ignored, as not deciding ({})", self.ignored, aside.join(", "))
        };
        format!(
            "{} passed; {failed}; {ignored}; {} filtered out",
            self.passed, self.filtered_out
        )
    }
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

/// Decides conformance from the outcomes of a finished run.
///
/// A mandatory check that failed without a waiver makes the run not conformant; one that
/// ended inconclusive or in error (or, in the certification tier, could not run or was not
/// examined by its backend) makes it inconclusive ([`standing`] says which); a run in which
/// nothing ran, or no mandatory check passed, is inconclusive too, and so is one that
/// examined fewer accelerators than expected. `partial` lists why the run cannot speak for
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

/// Signs the record into `result.dsse.json` when the run ends: finished, or stopped by a
/// signal (then the record says it is incomplete and why). A killed run leaves its partial
/// `result.json` and no envelope.
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
        if !event.ends_run() {
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
            expired_waiver: None,
            not_examined: None,
            measurements: vec![],
            evidence: Default::default(),
            params: serde_json::Value::Null,
            started_at: String::new(),
            duration_ms: 0,
        }
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
            &Coverage::default(),
        );
        assert_eq!(c.status, ConformanceStatus::Partial);
        assert!(!c.conformant);
        assert_eq!(e.code(), 0);
        let (_, e) = decide(
            &[outcome(Level::Mandatory, Verdict::Fail, false)],
            Tier::Smoke,
            vec!["filtered".into()],
            &Coverage::default(),
        );
        assert_eq!(e.code(), 1);
    }

    #[test]
    fn a_run_that_examined_no_accelerator_is_never_conformant() {
        let none = Coverage {
            no_accelerator: Some("opencl: no OpenCL runtime".into()),
            missing_devices: None,
        };
        for outcomes in [
            vec![outcome(Level::Mandatory, Verdict::Pass, false)],
            vec![outcome(Level::Mandatory, Verdict::Fail, false)],
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
            no_accelerator: None,
            missing_devices: Some("expected 8 accelerators, examined 7".into()),
        };
        let (c, e) = decide(
            &[outcome(Level::Mandatory, Verdict::Pass, false)],
            Tier::Smoke,
            vec![],
            &missing,
        );
        assert_eq!((c.status, e.code()), (ConformanceStatus::Inconclusive, 3));
        assert_eq!(c.reasons, ["expected 8 accelerators, examined 7"]);
        let (c, e) = decide(
            &[outcome(Level::Mandatory, Verdict::Fail, false)],
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
        assert_eq!(standing(&outcome(Mandatory, Pass, false), t), Standing::Passed);
        assert!(matches!(
            standing(&outcome(Mandatory, Fail, false), t),
            Standing::Blocks { failure: true, .. }
        ));
        assert!(matches!(
            standing(&outcome(Mandatory, Error, false), t),
            Standing::Blocks { failure: false, .. }
        ));
        for aside in [
            outcome(Mandatory, Fail, true),
            outcome(Recommended, Fail, false),
            outcome(Informational, Inconclusive, false),
            outcome(Recommended, Error, false),
            outcome(Mandatory, NotApplicable, false),
        ] {
            assert!(matches!(standing(&aside, t), Standing::Aside(_)), "{aside:?}");
        }
        let Standing::Aside(text) = standing(&outcome(Recommended, Fail, false), t) else {
            unreachable!("checked above")
        };
        assert_eq!(text, "recommended check, does not decide conformance: fail: because");
        // The certification tier settles everything mandatory.
        assert!(matches!(
            standing(&outcome(Mandatory, NotApplicable, false), Tier::Certification),
            Standing::Blocks {
                failure: false,
                kind: "not_applicable",
                ..
            }
        ));
    }

    #[test]
    fn an_expired_waiver_no_longer_waives_and_is_named() {
        let mut o = outcome(Level::Mandatory, Verdict::Fail, false);
        o.expired_waiver = Some(hilt_results::Waiver {
            reason: "vendor fix due".into(),
            expires: "2026-01-31".into(),
        });
        let pass = outcome(Level::Mandatory, Verdict::Pass, false);
        let (c, e) = decide(&[pass, o], Tier::Standard, vec![], &Coverage::default());
        assert_eq!((c.status, e.code()), (ConformanceStatus::NotConformant, 1));
        assert_eq!(
            c.reasons,
            ["residue::x::sim0 failed: because (its waiver expired on 2026-01-31 and no longer holds: vendor fix due)"]
        );
    }

    #[test]
    fn a_check_the_backend_cannot_perform_is_never_a_platform_failure() {
        let mut o = outcome(Level::Mandatory, Verdict::NotApplicable, false);
        o.not_examined = Some(hilt_results::NotExamined {
            backend: "opencl".into(),
            examined_by: vec!["cuda".into()],
        });
        let pass = outcome(Level::Mandatory, Verdict::Pass, false);
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
