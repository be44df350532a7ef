//! The event stream of a run and the reporters that consume it.
//!
//! The runner emits typed [`Event`]s; the [`Recorder`] folds them into the
//! [`ResultRecord`] and hands each event and the record so far to every [`Reporter`]:
//! the events file (`events.jsonl`, one line per event, flushed as it happens) and the
//! result file (`result.json`, rewritten atomically after every trial, marked complete
//! only at the end). A killed run therefore leaves both a readable partial record and the
//! event lines up to the kill. A run stopped by SIGINT, SIGTERM or SIGHUP ends with
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
use hilt_results::{Conformance, ConformanceStatus, ExitCode, Interruption, Level, Outcome, ResultRecord, Summary};
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

/// What a record says about accelerators it should have examined and did not: none at all
/// (the run fell back to the simulated device), or fewer than expected. `None` when the
/// run examined what it should. The terminal and JUnit show it as a failing entry of its
/// own, `hilt::accelerators`, so that neither looks green when the exit status is not.
pub fn accelerator_shortfall(record: &ResultRecord) -> Option<String> {
    let coverage = Coverage::of(record);
    match coverage.no_accelerator {
        Some(why) => Some(format!("no accelerator was examined: {why}")),
        None => coverage.missing_devices,
    }
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
    /// Of `failed`, mandatory trials of a certification run that no tenant could run
    /// (`run.not_run`: a replayed capture's device checks).
    pub could_not_run: u32,
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
    /// Of `ignored`: trials no tenant could run that do not leave the run unsettled (below
    /// the certification tier, or not mandatory).
    pub could_not_run_aside: u32,
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
        for n in &record.run.not_run {
            if n.blocks(record.run.tier) {
                t.could_not_run += 1;
                t.failed += 1;
            } else {
                t.could_not_run_aside += 1;
                t.ignored += 1;
            }
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
        if self.could_not_run > 0 {
            of_them.push(format!("{} could not run", self.could_not_run));
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
            (self.could_not_run_aside, "could not run"),
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

/// The conformance decision and where each outcome stands in it live in `hilt-results`,
/// so that every reader of a record decides as the run did.
pub use hilt_results::{Coverage, Standing, decide, standing};

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
