//! Several results side by side, for procurement: per check the verdicts, per measurement
//! the values, each one's ratio to the first result and whether it is better or worse in
//! the measurement's own direction, and requirement coverage. Results run under different
//! profiles (or profile settings) or by different hilt versions are flagged at the top, not
//! hidden: their numbers may not mean the same thing.

use std::collections::BTreeMap;
use std::fmt::Write;

use hilt_results::{Better, Verdict};

use super::html::esc;
use super::markdown::{cell as md, code, table_code};
use super::{Report, TraceState, number, one_line};

/// One result in a comparison, with the name it was given by (its file).
pub struct Entry<'a> {
    /// The file name or label.
    pub label: String,
    /// The report.
    pub report: Report<'a>,
}

/// A cell of a measurement row. A result that ran on several devices is represented by
/// its weakest device (a platform is as good as its worst accelerator), with the range
/// over all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The value: the worst device's by the measurement's direction (for an undirected
    /// measurement, the first device's by id).
    pub value: f64,
    /// The values of every device, when the check ran on more than one.
    pub spread: Option<Spread>,
    /// The ratio to the first result's value, when both exist and the first is not zero.
    pub ratio: Option<f64>,
    /// Better (`Some(true)`), worse (`Some(false)`) or equal/undirected (`None`) than the
    /// first result, by the measurement's direction.
    pub better: Option<bool>,
}

/// A measurement of a check that ran on several devices of one result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// How many devices reported the measurement.
    pub devices: usize,
    /// How many devices the check ran on (some may have ended without the measurement).
    pub of: usize,
    /// The lowest value.
    pub low: f64,
    /// The highest value.
    pub high: f64,
    /// True when the cell's value is the worst device's (a directed measurement).
    pub worst: bool,
}

/// A measurement row: check id, measurement name, unit.
pub type MeasurementKey = (String, String, String);

/// The comparison, ready to render.
pub struct Comparison {
    /// The labels, in order.
    pub labels: Vec<String>,
    /// Warnings that make the results hard to compare.
    pub flags: Vec<String>,
    /// What each input's signature says.
    pub signatures: Vec<String>,
    /// Per result: conformance status.
    pub status: Vec<String>,
    /// Check id → per result, the verdicts of its outcomes (several devices: several),
    /// a waived failure as `fail (waived)`.
    pub checks: BTreeMap<String, Vec<Vec<String>>>,
    /// (check id, measurement name, unit) → per result, the worst device's value.
    pub measurements: BTreeMap<MeasurementKey, Vec<Option<Value>>>,
    /// Per result: requirements passed / failed / unsettled / not run / manual.
    pub coverage: Vec<[usize; 5]>,
}

/// Builds the comparison of `entries` (at least one).
pub fn compare(entries: &[Entry<'_>]) -> Comparison {
    let n = entries.len();
    let mut flags = Vec::new();
    if let Some(first) = entries.first() {
        let r0 = first.report.record;
        for e in &entries[1..] {
            let r = e.report.record;
            if r.profile.id != r0.profile.id {
                flags.push(format!(
                    "{} ran profile {}, {} ran {}: checks and thresholds may differ",
                    e.label, r.profile.id, first.label, r0.profile.id
                ));
            } else if r.profile.digest != r0.profile.digest {
                flags.push(format!(
                    "{} ran profile {} with other settings ({} vs {})",
                    e.label, r.profile.id, r.profile.digest, r0.profile.digest
                ));
            }
            if r.tool.version != r0.tool.version {
                flags.push(format!(
                    "{} was made by hilt {}, {} by hilt {}",
                    e.label, r.tool.version, first.label, r0.tool.version
                ));
            }
            if r.run.tier != r0.run.tier {
                flags.push(format!(
                    "{} ran tier {}, {} ran {}",
                    e.label, r.run.tier, first.label, r0.run.tier
                ));
            }
        }
        for e in entries {
            if e.report.signature.unverified() {
                flags.push(format!(
                    "{} did NOT verify: its content is a claim, not evidence",
                    e.label
                ));
            }
            let mut devices: Vec<&str> = e.report.record.outcomes.iter().map(|o| o.device.as_str()).collect();
            devices.sort_unstable();
            devices.dedup();
            let accelerators: Vec<&str> = devices.iter().copied().filter(|d| *d != "host").collect();
            if accelerators.len() > 1 {
                flags.push(format!(
                    "{} ran on {} devices ({}): verdicts count every device's, measurements show the worst device's value and the range over all",
                    e.label,
                    accelerators.len(),
                    accelerators.join(", ")
                ));
            }
            if e.report.record.devices.iter().any(|d| d.simulated) {
                flags.push(format!(
                    "{} ran on a simulated device: it describes hilt, not a platform",
                    e.label
                ));
            }
            if !e.report.record.run.complete {
                flags.push(format!("{} is from a run that did not finish", e.label));
            }
        }
    }

    let mut checks: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    // Per row and result: every device's value, in device order.
    let mut measurements: BTreeMap<MeasurementKey, Vec<Vec<(f64, Better)>>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        for o in e.report.outcomes_sorted() {
            let verdict = match (o.verdict, &o.waiver) {
                (Verdict::Fail, Some(_)) => "fail (waived)".to_string(),
                (v, _) => v.as_str().to_string(),
            };
            checks.entry(o.check.clone()).or_insert_with(|| vec![Vec::new(); n])[i].push(verdict);
            for m in &o.measurements {
                measurements
                    .entry((o.check.clone(), m.name.clone(), m.unit.clone()))
                    .or_insert_with(|| vec![Vec::new(); n])[i]
                    .push((m.value, m.better));
            }
        }
    }
    let measurements = measurements
        .into_iter()
        .map(|(key, cells)| {
            let cells: Vec<Option<(f64, Better, Option<Spread>)>> = cells
                .iter()
                .enumerate()
                .map(|(i, values)| worst(values, checks.get(&key.0).map_or(0, |c| c[i].len())))
                .collect();
            let base = cells.first().copied().flatten();
            let row = cells
                .iter()
                .map(|c| {
                    c.map(|(value, better, spread)| {
                        let ratio = base.and_then(|(b, _, _)| (b != 0.0).then_some(value / b));
                        let better = base.and_then(|(b, _, _)| match better {
                            _ if value == b => None,
                            Better::Higher => Some(value > b),
                            Better::Lower => Some(value < b),
                            _ => None,
                        });
                        Value {
                            value,
                            spread,
                            ratio,
                            better,
                        }
                    })
                })
                .collect();
            (key, row)
        })
        .collect();
    let coverage = entries
        .iter()
        .map(|e| {
            let t = e.report.traceability();
            let count = |s: TraceState| t.iter().filter(|x| x.state == s).count();
            [
                count(TraceState::Passed),
                count(TraceState::Failed),
                count(TraceState::Unsettled),
                count(TraceState::NotRun),
                count(TraceState::Manual),
            ]
        })
        .collect();
    Comparison {
        labels: entries.iter().map(|e| e.label.clone()).collect(),
        flags,
        signatures: entries.iter().map(|e| e.report.signature.describe()).collect(),
        status: entries
            .iter()
            .map(|e| e.report.record.conformance.status.as_str().to_string())
            .collect(),
        checks,
        measurements,
        coverage,
    }
}

/// The value that stands for one result: the worst of its devices' values, with their
/// count and range when the check ran on several (`of` devices).
fn worst(values: &[(f64, Better)], of: usize) -> Option<(f64, Better, Option<Spread>)> {
    let &(first, better) = values.first()?;
    let low = values.iter().map(|v| v.0).fold(first, f64::min);
    let high = values.iter().map(|v| v.0).fold(first, f64::max);
    let (value, worst) = match better {
        Better::Higher => (low, true),
        Better::Lower => (high, true),
        _ => (first, false),
    };
    let spread = (values.len() > 1 || of > 1).then_some(Spread {
        devices: values.len(),
        of: of.max(values.len()),
        low,
        high,
        worst,
    });
    Some((value, better, spread))
}

/// The verdicts of one check in one result: listed for one or two devices, counted for
/// more (`7 pass, 1 fail`).
fn verdicts(v: &[String]) -> String {
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

fn value_text(v: &Option<Value>, first: bool) -> String {
    let Some(v) = v else { return "-".into() };
    let mut text = number(v.value);
    let mut notes = Vec::new();
    if !first {
        let mark = match v.better {
            Some(true) => " better",
            Some(false) => " worse",
            None => "",
        };
        match v.ratio {
            Some(r) => notes.push(format!("x{r:.2}{mark}")),
            None => text.push_str(mark),
        }
    }
    if let Some(s) = v.spread {
        let which = if s.worst { "worst" } else { "first" };
        let devices = match s.devices == s.of {
            true => format!("{} devices", s.devices),
            false => format!(
                "{} of {} devices, {} without a value",
                s.devices,
                s.of,
                s.of - s.devices
            ),
        };
        if s.devices > 1 {
            notes.push(format!(
                "{which} of {devices}, range {}..{}",
                number(s.low),
                number(s.high)
            ));
        } else {
            notes.push(format!("only 1 of {} devices has a value", s.of));
        }
    }
    if !notes.is_empty() {
        let _ = write!(text, " ({})", notes.join("; "));
    }
    text
}

const COVERAGE: [&str; 5] = ["passed", "failed", "unsettled", "not run", "manual"];

/// Plain text for a terminal.
pub fn text(c: &Comparison) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["".to_string()];
    head.extend(c.labels.iter().cloned());
    rows.push(head);
    let mut status = vec!["conformance".to_string()];
    status.extend(c.status.iter().cloned());
    rows.push(status);
    for (check, cells) in &c.checks {
        let mut row = vec![check.clone()];
        row.extend(cells.iter().map(|v| verdicts(v)));
        rows.push(row);
    }
    for ((check, name, unit), cells) in &c.measurements {
        let mut row = vec![format!("{check} {name} ({unit})")];
        row.extend(cells.iter().enumerate().map(|(i, v)| value_text(v, i == 0)));
        rows.push(row);
    }
    for (k, label) in COVERAGE.iter().enumerate() {
        let mut row = vec![format!("requirements {label}")];
        row.extend(c.coverage.iter().map(|cov| cov[k].to_string()));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for flag in &c.flags {
        let _ = writeln!(out, "note: {}", one_line(flag));
    }
    for (label, sig) in c.labels.iter().zip(&c.signatures) {
        let _ = writeln!(out, "{}: {}", one_line(label), one_line(sig));
    }
    if !c.flags.is_empty() || !c.signatures.is_empty() {
        let _ = writeln!(out);
    }
    for row in rows {
        let row: Vec<String> = row.iter().map(|s| one_line(s)).collect();
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// Markdown tables.
pub fn markdown(c: &Comparison) -> String {
    let cell = |s: &str| md(s);
    let mut out = String::from("## hilt: results side by side\n\n");
    for flag in &c.flags {
        let _ = writeln!(out, "- **note:** {}", cell(flag));
    }
    for (label, sig) in c.labels.iter().zip(&c.signatures) {
        let _ = writeln!(out, "- {}: {}", code(label), cell(sig));
    }
    let _ = writeln!(out);
    let header = |out: &mut String, first: &str| {
        let _ = writeln!(
            out,
            "| {first} | {} |",
            c.labels
                .iter()
                .map(|l| format!("`{}`", cell(l)))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "| --- |{}", " --- |".repeat(c.labels.len()));
    };
    header(&mut out, "check");
    let _ = writeln!(
        out,
        "| conformance | {} |",
        c.status.iter().map(|s| cell(s)).collect::<Vec<_>>().join(" | ")
    );
    for (check, cells) in &c.checks {
        let _ = writeln!(
            out,
            "| {} | {} |",
            table_code(check),
            cells.iter().map(|v| verdicts(v)).collect::<Vec<_>>().join(" | ")
        );
    }
    if !c.measurements.is_empty() {
        let _ = writeln!(out);
        header(&mut out, "measurement");
        for ((check, name, unit), cells) in &c.measurements {
            let _ = writeln!(
                out,
                "| {} {} ({}) | {} |",
                table_code(check),
                cell(name),
                cell(unit),
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, v)| value_text(v, i == 0))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
    }
    let _ = writeln!(out);
    header(&mut out, "requirements");
    for (k, label) in COVERAGE.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {label} | {} |",
            c.coverage
                .iter()
                .map(|cov| cov[k].to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    out
}

/// A self-contained HTML page.
pub fn html(c: &Comparison) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>hilt: results side by side</title>\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <style>body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:80em;padding:0 1em}\
         table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee}\
         th{background:#f5f5f7}.better{color:#1b7f3b}.worse{color:#b3261e}.note{color:#a05a00}</style>\n</head>\n<body>\n\
         <h1>hilt: results side by side</h1>\n",
    );
    for flag in &c.flags {
        let _ = writeln!(out, "<p class=\"note\">note: {}</p>", esc(flag));
    }
    let _ = writeln!(out, "<table><tr><th></th>");
    for l in &c.labels {
        let _ = write!(out, "<th>{}</th>", esc(l));
    }
    let _ = writeln!(out, "</tr><tr><td>signature</td>");
    for s in &c.signatures {
        let _ = write!(out, "<td>{}</td>", esc(s));
    }
    let _ = writeln!(out, "</tr><tr><td>conformance</td>");
    for s in &c.status {
        let _ = write!(out, "<td>{}</td>", esc(s));
    }
    let _ = writeln!(out, "</tr>");
    for (check, cells) in &c.checks {
        let _ = write!(out, "<tr><td><code>{}</code></td>", esc(check));
        for v in cells {
            let _ = write!(out, "<td>{}</td>", esc(&verdicts(v)));
        }
        let _ = writeln!(out, "</tr>");
    }
    for ((check, name, unit), cells) in &c.measurements {
        let _ = write!(
            out,
            "<tr><td><code>{}</code> {} ({})</td>",
            esc(check),
            esc(name),
            esc(unit)
        );
        for (i, v) in cells.iter().enumerate() {
            let class = match v.as_ref().and_then(|v| v.better) {
                Some(true) => "better",
                Some(false) => "worse",
                None => "",
            };
            let _ = write!(out, "<td class=\"{class}\">{}</td>", esc(&value_text(v, i == 0)));
        }
        let _ = writeln!(out, "</tr>");
    }
    for (k, label) in COVERAGE.iter().enumerate() {
        let _ = write!(out, "<tr><td>requirements {label}</td>");
        for cov in &c.coverage {
            let _ = write!(out, "<td>{}</td>", cov[k]);
        }
        let _ = writeln!(out, "</tr>");
    }
    let _ = writeln!(out, "</table>\n</body>\n</html>");
    out
}
