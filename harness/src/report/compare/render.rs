//! A [`Comparison`] for people: aligned text for a terminal, Markdown tables, one
//! self-contained HTML page. All three draw the same rows (see [`grid`]): the platforms
//! and their summary, then the checks, then the measurements; between them the notes and
//! the regressions against the baseline.

use std::fmt::Write;

use super::{Comparison, MeasurementRow, Platform, Standing, Value, share, verdict_list};
use crate::report::html::esc;
use crate::report::markdown::{cell as md, table_code as md_code};
use crate::report::{Signature, number, one_line};

/// One line of a block: a label, the check's level (checks only), one cell per result.
struct Line {
    label: String,
    level: String,
    cells: Vec<Cell>,
}

/// One cell: its text, the call on it (shown in bold) and what follows the call, and the
/// standing that colours it (none: not coloured).
struct Cell {
    text: String,
    call: Option<String>,
    tail: String,
    standing: Option<Standing>,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            call: None,
            tail: String::new(),
            standing: None,
        }
    }

    /// The whole text, call included.
    fn full(&self) -> String {
        match &self.call {
            Some(call) => format!("{} {call}{}", self.text, self.tail),
            None => format!("{}{}", self.text, self.tail),
        }
    }
}

/// The blocks every format shows: what ran where with its summary, the checks, the
/// measurements.
struct Grid {
    platforms: Vec<Line>,
    summary: Vec<Line>,
    checks: Vec<Line>,
    measurements: Vec<Line>,
}

/// The column title of a result: its device model, the first marked as the baseline.
fn title(c: &Comparison, i: usize, p: &Platform) -> String {
    if i == 0 && c.platforms.len() > 1 {
        format!("{} (baseline)", p.device_model)
    } else {
        p.device_model.clone()
    }
}

fn grid(c: &Comparison) -> Grid {
    let row = |label: &str, f: &dyn Fn(&Platform) -> String| Line {
        label: label.to_string(),
        level: String::new(),
        cells: c.platforms.iter().map(|p| Cell::plain(f(p))).collect(),
    };
    let platforms = vec![
        row("node", &|p| p.node.clone()),
        row("date", &|p| date(&p.started_at)),
        row("profile", &|p| format!("{} {}", p.profile, p.profile_version)),
        row("tier", &|p| p.tier.clone()),
        row("hilt", &|p| p.hilt_version.clone()),
        row("file", &|p| p.label.clone()),
        row("signature", &|p| signature(&p.signature)),
    ];
    let mut summary = vec![
        row("conformance", &|p| {
            if p.signature.unverified() {
                format!("claims: {}", p.summary.conformance)
            } else {
                p.summary.conformance.clone()
            }
        }),
        row("mandatory failures", &|p| p.summary.mandatory_failures.to_string()),
        row("waived failures", &|p| p.summary.waived_failures.to_string()),
        row("mandatory inconclusive or error", &|p| {
            p.summary.mandatory_inconclusive.to_string()
        }),
        row("other checks failed or unsettled", &|p| {
            p.summary.other_problems.to_string()
        }),
        row("trials run", &|p| {
            format!("{} of {} planned", p.summary.trials_run, p.summary.trials_planned)
        }),
        row("least memory scanned", &|p| {
            p.summary
                .least_scanned_share
                .map_or("-".to_string(), |s| share(s, "ratio"))
        }),
        row("requirements passed", &|p| p.summary.requirements.passed.to_string()),
        row("requirements failed", &|p| p.summary.requirements.failed.to_string()),
        row("requirements unsettled", &|p| {
            p.summary.requirements.unsettled.to_string()
        }),
        row("requirements not run", &|p| p.summary.requirements.not_run.to_string()),
        row("requirements manual", &|p| p.summary.requirements.manual.to_string()),
    ];
    // The headline numbers are coloured by what they say.
    let tone = |n: usize, bad: Standing| if n == 0 { Standing::Pass } else { bad };
    for (k, p) in c.platforms.iter().enumerate() {
        // What a record that did not verify says is a claim, never a green badge.
        summary[0].cells[k].standing = Some(match p.summary.conformance.as_str() {
            _ if p.signature.unverified() => Standing::Inconclusive,
            "conformant" => Standing::Pass,
            "not_conformant" => Standing::Fail,
            _ => Standing::Inconclusive,
        });
        if !p.signature.unverified() {
            summary[1].cells[k].standing = Some(tone(p.summary.mandatory_failures, Standing::Fail));
            summary[3].cells[k].standing = Some(tone(p.summary.mandatory_inconclusive, Standing::Inconclusive));
        }
    }
    let checks = c
        .checks
        .iter()
        .map(|r| Line {
            label: r.check.clone(),
            level: r.level.map_or("differs".to_string(), |l| l.as_str().to_string()),
            cells: r
                .cells
                .iter()
                .map(|cell| match cell {
                    None => Cell::plain("not run"),
                    Some(cell) => Cell {
                        standing: Some(cell.worst),
                        ..Cell::plain(match r.level {
                            Some(_) => verdict_list(&cell.verdicts),
                            None => format!("{} [{}]", verdict_list(&cell.verdicts), cell.level.as_str()),
                        })
                    },
                })
                .collect(),
        })
        .collect();
    let measurements = c
        .measurements
        .iter()
        .map(|r| Line {
            label: format!(
                "{} {} ({})",
                r.check,
                r.name,
                if r.unit == "ratio" { "%" } else { &r.unit }
            ),
            level: String::new(),
            cells: r
                .cells
                .iter()
                .enumerate()
                .map(|(i, v)| value_cell(r, v.as_ref(), i == 0))
                .collect(),
        })
        .collect();
    Grid {
        platforms,
        summary,
        checks,
        measurements,
    }
}

/// A signature in one short cell, so that a key id or a verifier's reasons do not widen
/// a column: the reasons of one that did not verify are in the notes.
fn signature(s: &Signature) -> String {
    match s {
        Signature::Verified { signer, keyid } => {
            let short: String = keyid.chars().take(16).collect();
            format!("verified: {signer} (keyid {short})")
        }
        Signature::NotVerified { .. } => "NOT VERIFIED (see the notes)".into(),
        Signature::Unsigned | Signature::Pending => s.describe(),
    }
}

/// A ratio as people read it: two decimals where they say something, else the number's
/// own form (`x1.200e5`, `x1.000e-4`), never hundreds of digits.
fn ratio(r: f64) -> String {
    if r == 0.0 || (0.005..1000.0).contains(&r.abs()) {
        format!("x{r:.2}")
    } else {
        format!("x{}", number(r))
    }
}

/// `2025-06-01T12:34:56.789Z` as `2025-06-01 12:34 UTC`; anything else as it is.
fn date(rfc3339: &str) -> String {
    let b = rfc3339.as_bytes();
    if b.len() >= 16 && b[10] == b'T' && rfc3339.ends_with('Z') && rfc3339.is_char_boundary(16) {
        format!("{} {} UTC", &rfc3339[..10], &rfc3339[11..16])
    } else {
        rfc3339.to_string()
    }
}

fn value_cell(row: &MeasurementRow, v: Option<&Value>, baseline: bool) -> Cell {
    let Some(v) = v else { return Cell::plain("-") };
    let mut text = if row.unit == "ratio" {
        share(v.value, "ratio")
    } else {
        number(v.value)
    };
    if let Some((lo, hi)) = v.spread {
        let _ = write!(text, " ({}..{})", number(lo), number(hi));
    }
    if !baseline && let Some(r) = v.ratio {
        let _ = write!(text, " {}", ratio(r));
    }
    let tail = match v.devices {
        None => String::new(),
        Some(s) if s.devices > 1 => {
            let devices = if s.devices == s.of {
                format!("{} devices", s.devices)
            } else {
                format!(
                    "{} of {} devices, {} without a value",
                    s.devices,
                    s.of,
                    s.of - s.devices
                )
            };
            format!(
                "; {} of {devices}, range {}..{}",
                s.shown,
                number(s.low),
                number(s.high)
            )
        }
        Some(s) => format!("; only 1 of {} devices has a value", s.of),
    };
    Cell {
        text,
        call: v.call.map(|c| c.as_str().to_string()),
        tail,
        standing: Some(v.standing),
    }
}

const TITLE: &str = "hilt: results side by side";

fn intro(c: &Comparison) -> String {
    match c.platforms.len() {
        1 => "1 result.".to_string(),
        n => format!(
            "{n} results; the first is the baseline that ratios, calls and regressions are taken against. A \
             performance figure is called better or worse only beyond both runs' ranges and by {} or more.",
            share(c.noise_threshold, "ratio")
        ),
    }
}

fn regression_heading(c: &Comparison, i: usize) -> String {
    let (p, b) = (&c.platforms[i], &c.platforms[0]);
    match c.regressions[i].len() {
        0 => format!("{}: no regression against {}", p.label, b.label),
        n => format!("{}: {n} regression(s) against {}", p.label, b.label),
    }
}

/// Plain text for a terminal.
pub fn text(c: &Comparison) -> String {
    let g = grid(c);
    let mut head = Line {
        label: String::new(),
        level: String::new(),
        cells: c
            .platforms
            .iter()
            .enumerate()
            .map(|(i, p)| Cell::plain(title(c, i, p)))
            .collect(),
    };
    head.label = "platform".into();
    let checks_head = Line {
        label: "check".into(),
        level: "level".into(),
        cells: c.platforms.iter().map(|_| Cell::plain("")).collect(),
    };
    let measurements_head = Line {
        label: "measurement".into(),
        level: String::new(),
        cells: c.platforms.iter().map(|_| Cell::plain("")).collect(),
    };
    let blocks: [Vec<&Line>; 3] = [
        std::iter::once(&head).chain(&g.platforms).chain(&g.summary).collect(),
        std::iter::once(&checks_head).chain(&g.checks).collect(),
        std::iter::once(&measurements_head).chain(&g.measurements).collect(),
    ];
    let columns = 2 + c.platforms.len();
    let texts = |l: &Line| -> Vec<String> {
        let mut v = vec![one_line(&l.label), one_line(&l.level)];
        v.extend(l.cells.iter().map(|c| one_line(&c.full())));
        v
    };
    let mut widths = vec![0; columns];
    for line in blocks.iter().flatten() {
        for (k, t) in texts(line).iter().enumerate() {
            widths[k] = widths[k].max(t.chars().count());
        }
    }
    let render = |out: &mut String, block: &[&Line]| {
        for line in block {
            let cols: Vec<String> = texts(line)
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != 1 || widths[1] > 0)
                .map(|(k, t)| format!("{t:<w$}", w = widths[k]))
                .collect();
            let _ = writeln!(out, "{}", cols.join("  ").trim_end());
        }
    };
    let mut out = format!("{TITLE}: {}\n\n", intro(c));
    render(&mut out, &blocks[0]);
    if !c.flags.is_empty() {
        let _ = writeln!(out);
        for flag in &c.flags {
            let _ = writeln!(out, "note: {}", one_line(&flag.text));
        }
    }
    for i in 1..c.platforms.len() {
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", one_line(&regression_heading(c, i)));
        for r in &c.regressions[i] {
            let _ = writeln!(out, "  regression: {}", one_line(&r.describe()));
        }
    }
    for block in &blocks[1..] {
        if block.len() > 1 {
            let _ = writeln!(out);
            render(&mut out, block);
        }
    }
    out
}

/// Markdown tables.
pub fn markdown(c: &Comparison) -> String {
    let g = grid(c);
    let mut out = format!("## {TITLE}\n\n{}\n\n", intro(c));
    let header = |out: &mut String, first: &str, level: bool| {
        let titles: Vec<String> = c
            .platforms
            .iter()
            .enumerate()
            .map(|(i, p)| md(&title(c, i, p)))
            .collect();
        let level_head = if level { " level |" } else { "" };
        let _ = writeln!(out, "| {first} |{level_head} {} |", titles.join(" | "));
        let _ = writeln!(
            out,
            "| --- |{}{}",
            if level { " --- |" } else { "" },
            " --- |".repeat(c.platforms.len())
        );
    };
    let rows = |out: &mut String, lines: &[Line], level: bool, code: bool| {
        for l in lines {
            let label = if code { md_code(&l.label) } else { md(&l.label) };
            let level_cell = if level {
                format!(" {} |", md(&l.level))
            } else {
                String::new()
            };
            let cells: Vec<String> = l
                .cells
                .iter()
                .map(|cell| match &cell.call {
                    Some(call) => format!("{} **{}**{}", md(&cell.text), md(call), md(&cell.tail)),
                    None => md(&cell.full()),
                })
                .collect();
            let _ = writeln!(out, "| {label} |{level_cell} {} |", cells.join(" | "));
        }
    };
    header(&mut out, "platform", false);
    rows(&mut out, &g.platforms, false, false);
    rows(&mut out, &g.summary, false, false);
    if !c.flags.is_empty() {
        let _ = writeln!(out);
        for flag in &c.flags {
            let _ = writeln!(out, "- **note:** {}", md(&flag.text));
        }
    }
    for i in 1..c.platforms.len() {
        let _ = writeln!(out);
        let _ = writeln!(out, "**{}**", md(&regression_heading(c, i)));
        if !c.regressions[i].is_empty() {
            let _ = writeln!(out);
        }
        for r in &c.regressions[i] {
            let _ = writeln!(out, "- {}", md(&r.describe()));
        }
    }
    if !g.checks.is_empty() {
        let _ = writeln!(out);
        header(&mut out, "check", true);
        rows(&mut out, &g.checks, true, true);
    }
    if !g.measurements.is_empty() {
        let _ = writeln!(out);
        header(&mut out, "measurement", false);
        rows(&mut out, &g.measurements, false, false);
    }
    out
}

/// The page's style. Cells wrap anywhere, so that no word, path or key id can make the
/// table wider than the window (the tests hold the page to a 1300 px window with two and
/// four results); verdicts colour cells, calls are bold words.
const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 90em; color: #1d1d1f; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; font-size: 1.2em; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0; }
th, td { text-align: left; padding: 0.25em 0.5em; border-bottom: 1px solid #eee; vertical-align: top; overflow-wrap: anywhere; }
thead th { background: #f5f5f7; }
tbody th { font-weight: normal; color: #444; min-width: 10em; }
code { font-size: 0.92em; }
.level { color: #555; white-space: nowrap; }
.v-pass { background: #e3f4e8; } .v-fail { background: #fbe1de; } .v-waived { background: #efe4f7; }
.v-inconclusive, .v-error { background: #fcecd4; } .v-not_applicable { background: #f0f0f2; color: #555; }
.call-better { color: #1b7f3b; } .call-worse { color: #b3261e; } .call-other { color: #555; font-weight: normal; }
.note { color: #8a4b00; } .regression { color: #b3261e; }
"#;

/// A self-contained HTML page.
pub fn html(c: &Comparison) -> String {
    let g = grid(c);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{TITLE}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{TITLE}</h1>\n<p>{}</p>\n",
        esc(&intro(c))
    );
    let head = |out: &mut String, first: &str, level: bool| {
        let _ = write!(out, "<thead><tr><th>{}</th>", esc(first));
        if level {
            let _ = write!(out, "<th>level</th>");
        }
        for (i, p) in c.platforms.iter().enumerate() {
            let _ = write!(out, "<th>{}</th>", esc(&title(c, i, p)));
        }
        let _ = writeln!(out, "</tr></thead>");
    };
    let rows = |out: &mut String, lines: &[Line], level: bool, code: bool| {
        for l in lines {
            let label = if code {
                format!("<code>{}</code>", esc(&l.label))
            } else {
                esc(&l.label)
            };
            let _ = write!(out, "<tr><th scope=\"row\">{label}</th>");
            if level {
                let _ = write!(out, "<td class=\"level\">{}</td>", esc(&l.level));
            }
            for cell in &l.cells {
                let class = cell
                    .standing
                    .map(|s| format!(" class=\"v-{}\"", s.as_str()))
                    .unwrap_or_default();
                let call = match cell.call.as_deref() {
                    Some(call @ ("better" | "worse")) => format!(" <b class=\"call-{call}\">{call}</b>"),
                    Some(other) => format!(" <b class=\"call-other\">{}</b>", esc(other)),
                    None => String::new(),
                };
                let _ = write!(out, "<td{class}>{}{call}{}</td>", esc(&cell.text), esc(&cell.tail));
            }
            let _ = writeln!(out, "</tr>");
        }
    };
    let _ = writeln!(out, "<h2>Platforms</h2>\n<table>");
    head(&mut out, "platform", false);
    let _ = writeln!(out, "<tbody>");
    rows(&mut out, &g.platforms, false, false);
    rows(&mut out, &g.summary, false, false);
    let _ = writeln!(out, "</tbody></table>");
    if !c.flags.is_empty() {
        let _ = writeln!(out, "<h2>Notes</h2>\n<ul>");
        for flag in &c.flags {
            let _ = writeln!(out, "<li class=\"note\">{}</li>", esc(&flag.text));
        }
        let _ = writeln!(out, "</ul>");
    }
    if c.platforms.len() > 1 {
        let _ = writeln!(out, "<h2>Against the baseline</h2>");
        for i in 1..c.platforms.len() {
            let _ = writeln!(out, "<p>{}</p>", esc(&regression_heading(c, i)));
            if !c.regressions[i].is_empty() {
                let _ = writeln!(out, "<ul>");
                for r in &c.regressions[i] {
                    let _ = writeln!(out, "<li class=\"regression\">{}</li>", esc(&r.describe()));
                }
                let _ = writeln!(out, "</ul>");
            }
        }
    }
    if !g.checks.is_empty() {
        let _ = writeln!(out, "<h2>Checks</h2>\n<table>");
        head(&mut out, "check", true);
        let _ = writeln!(out, "<tbody>");
        rows(&mut out, &g.checks, true, true);
        let _ = writeln!(out, "</tbody></table>");
    }
    if !g.measurements.is_empty() {
        let _ = writeln!(out, "<h2>Measurements</h2>\n<table>");
        head(&mut out, "measurement", false);
        let _ = writeln!(out, "<tbody>");
        rows(&mut out, &g.measurements, false, false);
        let _ = writeln!(out, "</tbody></table>");
    }
    let _ = writeln!(out, "</body>\n</html>");
    out
}
