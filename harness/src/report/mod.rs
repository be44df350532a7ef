//! Reports for people and pipelines, made from a result record: JUnit for CI systems,
//! Markdown for a CI step summary, one self-contained HTML page for a lab to hand over,
//! and side-by-side comparisons of several results.
//!
//! Every report is a pure function of a [`Report`]: the record, what is known about its
//! signature, and the catalogues that give it meaning (the checks of this build and the
//! TS 104 033 requirement catalogue). The same functions serve `hilt report` on a finished
//! result and the reporters of a running `hilt run`.

pub mod compare;
pub mod fleet;
pub mod html;
pub mod junit;
pub mod markdown;

use std::collections::BTreeMap;

use hilt_results::signed::{self, TrustedKey};
use hilt_results::{Better, Level, Measurement, Outcome, ResultRecord, Verdict};
use serde::Serialize;

use crate::check::Catalogue;
use crate::record::{Event, Reporter, ReporterKind};
use crate::requirements::Requirement;

/// The node a record was made on, as reports name it (JUnit suites and test cases, so that
/// files merged from many nodes never collide; comparison columns; the fleet report): the
/// record's `host.node` (`hilt run --node`), else the host name it recorded.
pub fn node(record: &ResultRecord) -> &str {
    record.host.node_name()
}

/// The formats a report can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JUnit XML, for CI systems.
    Junit,
    /// Markdown, for a CI step summary.
    Markdown,
    /// One self-contained HTML page.
    Html,
    /// The record with its signature status and traceability, as JSON.
    Json,
}

/// Renders `report` in `format`.
pub fn render(format: Format, report: &Report<'_>) -> String {
    match format {
        Format::Junit => junit::render(report),
        Format::Markdown => markdown::render(report),
        Format::Html => html::render(report),
        Format::Json => {
            let value = serde_json::json!({
                "signature": report.signature,
                "traceability": report.traceability(),
                "record": report.record,
            });
            serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
        }
    }
}

/// A report written by a running `hilt run` (`--junit`, `--html`, `--markdown`) when the
/// run ends, finished or interrupted. Like every reporter, its failure never changes a
/// verdict; it does keep the run from exiting 0.
pub struct RunReport {
    path: std::path::PathBuf,
    format: Format,
    catalogue: Catalogue,
    requirements: Vec<Requirement>,
}

impl RunReport {
    /// A report in `format` at `path`.
    pub fn new(path: std::path::PathBuf, format: Format, catalogue: Catalogue) -> RunReport {
        RunReport {
            path,
            format,
            catalogue,
            requirements: crate::requirements::ts_104_033(),
        }
    }
}

impl Reporter for RunReport {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn kind(&self) -> ReporterKind {
        ReporterKind::Report
    }

    fn report(&mut self, event: &Event, record: &ResultRecord) -> std::io::Result<()> {
        if !event.ends_run() {
            return Ok(());
        }
        let report = Report {
            record,
            signature: Signature::Pending,
            catalogue: &self.catalogue,
            requirements: &self.requirements,
        };
        let text = render(self.format, &report);
        if self.format == Format::Markdown {
            // A step summary (`$GITHUB_STEP_SUMMARY`) collects what every step appends.
            append(&self.path, text.as_bytes())
        } else {
            write_output(&self.path, text.as_bytes())
        }
    }
}

/// Writes a report to `path`: atomically (beside, then renamed) for a regular file or a
/// new path, directly for anything else (a pipe, `/dev/stdout`, a symbolic link, which is
/// written through, never replaced).
pub fn write_output(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => std::fs::write(path, bytes),
        _ => crate::record::write_bytes_atomically(path, bytes),
    }
}

/// Appends to `path`, creating it if needed.
pub fn append(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?
        .write_all(bytes)
}

/// Progress on a terminal: after each trial, how many of the selected trials finished
/// and how long the run has taken, on stderr. Silent unless stderr is a terminal.
pub struct Progress {
    started: std::time::Instant,
    done: u32,
}

impl Progress {
    /// A progress reporter, or none when stderr is not a terminal or the terminal output
    /// is to be terse (`quiet`: `-q`, `--format terse` or `json`).
    pub fn on_terminal(quiet: bool) -> Option<Progress> {
        use std::io::IsTerminal;
        (!quiet && std::io::stderr().is_terminal()).then(|| Progress {
            started: std::time::Instant::now(),
            done: 0,
        })
    }
}

impl Reporter for Progress {
    fn name(&self) -> String {
        "progress".into()
    }

    fn kind(&self) -> ReporterKind {
        ReporterKind::Progress
    }

    fn report(&mut self, event: &Event, record: &ResultRecord) -> std::io::Result<()> {
        use std::io::Write as _;
        if let Event::TrialFinished { outcome } = event {
            self.done += 1;
            let mut err = std::io::stderr().lock();
            writeln!(
                err,
                "hilt: [{}/{}] {:.1} s: {} {}",
                self.done,
                record.summary.selected,
                self.started.elapsed().as_secs_f64(),
                outcome.trial,
                outcome.verdict.as_str()
            )?;
        }
        Ok(())
    }
}

/// What is known about a result's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Signature {
    /// A plain `result.json`: nothing vouches for it.
    Unsigned,
    /// A valid signature by a trusted key.
    Verified {
        /// The trusted key that signed (the file it was given as).
        signer: String,
        /// Its key id.
        keyid: String,
    },
    /// An envelope whose signature could not be established; the findings say why.
    NotVerified {
        /// The verifier's failed findings.
        reasons: Vec<String>,
    },
    /// A run in progress or just finished, signed (or not) after this report was made.
    Pending,
}

impl Signature {
    /// True when the content must be shown as a claim, not a fact: the envelope did not
    /// verify.
    pub fn unverified(&self) -> bool {
        matches!(self, Signature::NotVerified { .. })
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Signature::Unsigned => "unsigned: nothing vouches for this record".into(),
            Signature::Verified { signer, keyid } => format!("verified: signed by {signer} (keyid {keyid})"),
            Signature::NotVerified { reasons } => format!("NOT VERIFIED: {}", reasons.join("; ")),
            Signature::Pending => "written by the run itself; see result.dsse.json for its signature".into(),
        }
    }
}

/// Reads a result file: a plain record (`Unsigned`), or a DSSE envelope verified against
/// `keys` (`Verified`, or `NotVerified` with the verifier's failed findings and the record
/// the envelope claims). An error in words when the file cannot be read, or holds
/// neither a record nor an envelope whose payload can be read.
pub fn read_result(path: &std::path::Path, keys: &[TrustedKey]) -> Result<(ResultRecord, Signature), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    read_result_bytes(&bytes, keys).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// [`read_result`] of bytes already read. A record whose summary or conformance do not
/// follow from its own outcomes is `NotVerified` too, whatever its signature, with those
/// findings among the reasons: no report shows such a record's claims as facts.
pub fn read_result_bytes(bytes: &[u8], keys: &[TrustedKey]) -> Result<(ResultRecord, Signature), String> {
    let (record, signature) = read_result_unchecked(bytes, keys)?;
    let problems = record.inconsistencies();
    if problems.is_empty() {
        return Ok((record, signature));
    }
    let mut reasons = match signature {
        Signature::NotVerified { reasons } => reasons,
        _ => Vec::new(),
    };
    reasons.extend(problems.into_iter().map(|p| format!("record: {p}")));
    Ok((record, Signature::NotVerified { reasons }))
}

fn read_result_unchecked(bytes: &[u8], keys: &[TrustedKey]) -> Result<(ResultRecord, Signature), String> {
    if serde_json::from_slice::<signed::Envelope>(bytes).is_err() {
        let record = ResultRecord::from_json(bytes).map_err(|e| e.to_string())?;
        return Ok((record, Signature::Unsigned));
    }
    let policy = signed::Policy {
        trusted: keys.to_vec(),
        ..signed::Policy::default()
    };
    let verification = signed::verify(bytes, &policy).map_err(|e| e.to_string())?;
    if let (true, Some(record), Some(signer)) = (verification.verified(), verification.record, verification.signer) {
        let keyid = keys
            .iter()
            .find(|k| k.label == signer)
            .map(|k| k.key.keyid().to_string())
            .unwrap_or_default();
        return Ok((record, Signature::Verified { signer, keyid }));
    }
    let reasons = verification
        .findings
        .into_iter()
        .filter(|f| !f.ok)
        .map(|f| f.text)
        .collect();
    let record = signed::read_unverified(bytes)
        .map_err(|e| format!("it does not verify and its payload cannot be read: {e}"))?;
    Ok((record, Signature::NotVerified { reasons }))
}

/// Everything a report is made from.
pub struct Report<'a> {
    /// The record.
    pub record: &'a ResultRecord,
    /// Its signature status.
    pub signature: Signature,
    /// The checks of this build, for titles and coverage.
    pub catalogue: &'a Catalogue,
    /// The requirement catalogue.
    pub requirements: &'a [Requirement],
}

/// How the result stands on one requirement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The requirement id.
    pub id: String,
    /// Its group.
    pub group: String,
    /// Its summary.
    pub summary: String,
    /// The outcomes in this result that give evidence for it: trial and verdict.
    pub outcomes: Vec<(String, Verdict)>,
    /// Checks of this build that name it but did not run in this result.
    pub not_run: Vec<String>,
    /// The overall state.
    pub state: TraceState,
}

/// The state of one requirement in a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceState {
    /// Every outcome for it passed (waived failures count as failures here), and every
    /// trial of its checks that the run was asked for has an outcome.
    Passed,
    /// At least one outcome for it failed.
    Failed,
    /// Outcomes for it, none failed, but not all passed (inconclusive, error, not
    /// applicable), or all passed while trials of its checks that the run was asked for
    /// could not run (`run.not_run`) or were stopped (`run.interrupted`).
    Unsettled,
    /// Checks exist for it but none ran in this result.
    NotRun,
    /// No automated check covers it: it needs manual evidence.
    Manual,
}

impl TraceState {
    /// The name shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceState::Passed => "passed",
            TraceState::Failed => "failed",
            TraceState::Unsettled => "unsettled",
            TraceState::NotRun => "not run",
            TraceState::Manual => "manual evidence needed",
        }
    }
}

impl Report<'_> {
    /// Requirement → outcomes, for every requirement of the catalogue, in catalogue order;
    /// then any requirement ids the record names that the catalogue does not know.
    pub fn traceability(&self) -> Vec<Trace> {
        let mut by_req: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
        for o in &self.record.outcomes {
            for r in &o.requirements {
                by_req.entry(r.as_str()).or_default().push(o);
            }
        }
        let asked_not_run = self.asked_not_run();
        let mut rows: Vec<Trace> = self
            .requirements
            .iter()
            .map(|req| {
                let outcomes: Vec<(String, Verdict)> = by_req
                    .get(req.id.as_str())
                    .map(|os| os.iter().map(|o| (o.trial.clone(), o.verdict)).collect())
                    .unwrap_or_default();
                // A check that ran at all did run, even if the record (written by another
                // build) maps it to other requirements.
                let ran: Vec<&str> = self.record.outcomes.iter().map(|o| o.check.as_str()).collect();
                let not_run: Vec<String> = self
                    .catalogue
                    .checks()
                    .iter()
                    .filter(|c| c.requirements.contains(&req.id.as_str()) && !ran.contains(&c.id))
                    .map(|c| c.id.to_string())
                    .collect();
                let mut state = trace_state(&outcomes, !not_run.is_empty());
                // A check the run was asked for that went without an outcome (a replayed
                // capture's device checks, trials an interrupt stopped) leaves its
                // requirement open, whatever the checks that did run found.
                let unrun = self
                    .catalogue
                    .checks()
                    .iter()
                    .any(|c| c.requirements.contains(&req.id.as_str()) && asked_not_run.contains(c.id));
                if state == TraceState::Passed && unrun {
                    state = TraceState::Unsettled;
                }
                Trace {
                    id: req.id.clone(),
                    group: req.group.clone(),
                    summary: req.summary.clone(),
                    outcomes,
                    not_run,
                    state,
                }
            })
            .collect();
        for (id, os) in by_req {
            if !self.requirements.iter().any(|r| r.id == id) {
                let outcomes: Vec<(String, Verdict)> = os.iter().map(|o| (o.trial.clone(), o.verdict)).collect();
                rows.push(Trace {
                    id: id.to_string(),
                    group: "unknown to this build".into(),
                    summary: String::new(),
                    state: trace_state(&outcomes, false),
                    outcomes,
                    not_run: Vec::new(),
                });
            }
        }
        rows
    }

    /// The checks (dotted ids) of trials the run was asked for that have no outcome:
    /// `run.not_run` (no tenant could run them: a replayed capture's device checks) and
    /// `run.interrupted.not_run` (a signal stopped the run before they finished).
    pub fn asked_not_run(&self) -> std::collections::BTreeSet<String> {
        let run = &self.record.run;
        let mut checks: std::collections::BTreeSet<String> = run.not_run.iter().map(|n| n.check.clone()).collect();
        for trial in run.interrupted.iter().flat_map(|i| &i.not_run) {
            // `suite::check::device`: the device id holds no `::`.
            if let Some((check, _device)) = trial.rsplit_once("::") {
                checks.insert(check.replace("::", "."));
            }
        }
        checks
    }

    /// The outcomes that need attention: failures first, then errors and inconclusive
    /// results, mandatory before the rest.
    pub fn problems(&self) -> Vec<&Outcome> {
        let mut list: Vec<&Outcome> = self
            .record
            .outcomes
            .iter()
            .filter(|o| matches!(o.verdict, Verdict::Fail | Verdict::Error | Verdict::Inconclusive))
            .collect();
        list.sort_by_key(|o| {
            (
                match o.verdict {
                    Verdict::Fail => 0,
                    Verdict::Error => 1,
                    _ => 2,
                },
                level_rank(o.level),
                o.trial.clone(),
            )
        });
        list
    }

    /// The outcomes in trial-name order (trials finish in any order).
    pub fn outcomes_sorted(&self) -> Vec<&Outcome> {
        let mut list: Vec<&Outcome> = self.record.outcomes.iter().collect();
        list.sort_by(|a, b| a.trial.cmp(&b.trial));
        list
    }

    /// The title of a check, if this build knows it.
    pub fn title(&self, check: &str) -> &str {
        self.catalogue.get(check).map_or("", |c| c.title)
    }
}

fn trace_state(outcomes: &[(String, Verdict)], more_checks: bool) -> TraceState {
    if outcomes.is_empty() {
        return if more_checks {
            TraceState::NotRun
        } else {
            TraceState::Manual
        };
    }
    if outcomes.iter().any(|(_, v)| *v == Verdict::Fail) {
        TraceState::Failed
    } else if outcomes.iter().all(|(_, v)| *v == Verdict::Pass) {
        TraceState::Passed
    } else {
        TraceState::Unsettled
    }
}

fn level_rank(level: Level) -> u8 {
    match level {
        Level::Mandatory => 0,
        Level::Recommended => 1,
        _ => 2,
    }
}

/// A measurement as `value unit (threshold: limit, better: direction)`.
pub fn describe_measurement(m: &Measurement) -> String {
    let mut s = format!("{} = {} {}", m.name, number(m.value), m.unit);
    if let Some(t) = m.threshold {
        let rel = match m.better {
            Better::Higher => "at least",
            Better::Lower => "at most",
            _ => "against",
        };
        s.push_str(&format!(" ({rel} {} {})", number(t), m.unit));
    }
    s
}

/// Whether a measurement meets its threshold; `None` without one.
pub fn meets(m: &Measurement) -> Option<bool> {
    let t = m.threshold?;
    Some(match m.better {
        Better::Higher => m.value >= t,
        Better::Lower => m.value <= t,
        _ => true,
    })
}

/// What a check whose detection is probabilistic (the residue checks) established, to
/// show beside its verdict: its bound on the leak probability per attempt, at what
/// confidence, from how many attempts and hits ("leak probability per attempt at most
/// 0.0495 at 95 % confidence (59 attempts, 0 hits)"). `None` for other outcomes.
pub fn leak_bound(o: &Outcome) -> Option<String> {
    let bound = o
        .measurements
        .iter()
        .find(|m| m.name == "leak_probability_bound")?
        .value;
    let confidence = o.evidence.get("confidence")?.as_f64()?;
    let count = |key: &str| o.evidence.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let (attempts, hits) = (count("attempts"), count("hits"));
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    // Without a hit, a global check's bound holds at each allocation size of its cycle
    // and comes from the size that ran the fewest attempts, not from all of them.
    if let (0, Some((sizes, fewest))) = (hits, per_size_basis(o)) {
        return Some(format!(
            "leak probability per attempt at most {} at {} % confidence at each of {} sizes ({} at the size \
             with the fewest, {} in all, 0 hits)",
            number(bound),
            number(confidence * 100.0),
            sizes,
            plural(fewest, "attempt"),
            attempts
        ));
    }
    Some(format!(
        "leak probability per attempt at most {} at {} % confidence ({}, {})",
        number(bound),
        number(confidence * 100.0),
        plural(attempts, "attempt"),
        plural(hits, "hit")
    ))
}

/// For an outcome of a global residue check (evidence `round_bytes`, the sizes of its
/// cycle, and `rounds`, the attempts each ran): how many sizes, and the attempts of the
/// size that ran the fewest (0 while one has not run). `None` for other outcomes.
fn per_size_basis(o: &Outcome) -> Option<(usize, u64)> {
    let sizes = o.evidence.get("round_bytes")?.as_array()?.len();
    let ran: Vec<u64> = o
        .evidence
        .get("rounds")?
        .as_array()?
        .iter()
        .filter(|r| r.get("round").and_then(serde_json::Value::as_str) != Some("sweep"))
        .filter_map(|r| r.get("attempts").and_then(serde_json::Value::as_u64))
        .collect();
    if sizes == 0 {
        return None;
    }
    let fewest = if ran.len() < sizes {
        0
    } else {
        ran.into_iter().min().unwrap_or(0)
    };
    Some((sizes, fewest))
}

/// Text from a record made safe for one line of a terminal or Markdown: control
/// characters (line breaks, escape sequences) become spaces.
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A number as people read it: integers as integers, others with four significant digits.
pub fn number(v: f64) -> String {
    if v != 0.0 && !(1e-4..1e15).contains(&v.abs()) {
        format!("{v:.3e}")
    } else if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// For a replayed capture (`run.replay`), one sentence saying so: what was read, from
/// which capture, and that the device checks could not run; `None` for a live run.
pub fn replay_note(record: &ResultRecord) -> Option<String> {
    let replay = record.run.replay.as_ref()?;
    let mut from = Vec::new();
    if let Some(at) = &replay.captured_at {
        from.push(format!("captured at {at}"));
    }
    if let Some(root) = &replay.source_root {
        // A capture names the root it read (`/`); a tree made by hand says how it was made.
        from.push(if root.starts_with('/') {
            format!("from {root}")
        } else {
            format!("source: {root}")
        });
    }
    let tree = match &replay.tree_sha256 {
        Some(digest) => format!("tree sha256 {digest}"),
        None => "tree not digested".into(),
    };
    let from = if from.is_empty() {
        "a tree made by hand, not a capture manifest".to_string()
    } else {
        from.join(" ")
    };
    Some(format!(
        "Replay of a captured host ({from}; {tree}): the host and PCI checks read the capture's files, not \
         those of the machine that ran hilt (the record's host); {} device trial(s) could not run on a capture \
         (run.not_run).",
        record.run.not_run.len()
    ))
}
