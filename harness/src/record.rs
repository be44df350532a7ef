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
use hilt_results::{Conformance, ExitCode, Outcome, ResultRecord, Summary};
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

/// The conformance decision, which lives in `hilt-results` so that every reader of a
/// record decides as the run did.
pub use hilt_results::decide;

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
