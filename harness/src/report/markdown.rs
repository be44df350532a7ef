//! Markdown fit for a CI step summary (`$GITHUB_STEP_SUMMARY` and the like): the verdict,
//! the counts, and each failure with what it measured.

use std::fmt::Write;

use super::{Report, TraceState, describe_measurement, leak_bound};

/// The Markdown summary of a report.
pub fn render(report: &Report<'_>) -> String {
    let r = report.record;
    let s = &r.summary;
    let mut out = String::new();
    let status = r.conformance.status.as_str().replace('_', " ");
    if report.signature.unverified() {
        let _ = writeln!(out, "## hilt: NOT VERIFIED (the result claims: {status})");
    } else {
        let _ = writeln!(out, "## hilt: {status}");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Profile {} {} ({}), tier `{}`, on {}; hilt {}.",
        code(&r.profile.id),
        cell(&r.profile.version),
        if r.profile.certifying {
            "certifying"
        } else {
            "not certifying"
        },
        r.run.tier,
        r.devices
            .iter()
            .map(|d| format!("{} ({})", code(&d.id), cell(&d.name)))
            .collect::<Vec<_>>()
            .join(", "),
        cell(&r.tool.version),
    );
    if let Some(note) = super::replay_note(r) {
        let _ = writeln!(out);
        let _ = writeln!(out, "**{}**", cell(&note));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Signature: {}.", cell(&report.signature.describe()));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| selected | finished | pass | fail | of which waived | not applicable | inconclusive | error |"
    );
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        s.selected, s.finished, s.pass, s.fail, s.waived, s.not_applicable, s.inconclusive, s.error
    );
    if !r.conformance.reasons.is_empty() {
        let _ = writeln!(out);
        for reason in &r.conformance.reasons {
            let _ = writeln!(out, "- {}", cell(reason));
        }
    }
    let problems = report.problems();
    if !problems.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "### Needs attention");
        let _ = writeln!(out);
        for o in problems {
            let _ = writeln!(
                out,
                "- **{}** {} ({}): {}",
                o.verdict.as_str(),
                code(&o.trial),
                o.level.as_str(),
                cell(o.reason.as_deref().unwrap_or_default())
            );
            for m in &o.measurements {
                let _ = writeln!(out, "  - {}", cell(&describe_measurement(m)));
            }
            if let Some(w) = &o.waiver {
                let _ = writeln!(out, "  - waived until {}: {}", cell(&w.expires), cell(&w.reason));
            }
        }
    }
    let not_run = &r.run.not_run;
    if !not_run.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "### Could not run");
        let _ = writeln!(out);
        // One line per check: its level, the devices, and why (the first device's words).
        let mut checks: Vec<&str> = Vec::new();
        for n in not_run {
            if !checks.contains(&n.check.as_str()) {
                checks.push(&n.check);
            }
        }
        for check in checks {
            let of: Vec<_> = not_run.iter().filter(|n| n.check == check).collect();
            let devices: Vec<String> = of.iter().map(|n| code(&n.device)).collect();
            let _ = writeln!(
                out,
                "- **not run** {} ({}) on {}: {}",
                code(check),
                of[0].level.as_str(),
                devices.join(", "),
                cell(&of[0].reason)
            );
        }
    }
    let bounds: Vec<_> = report
        .outcomes_sorted()
        .into_iter()
        .filter_map(|o| leak_bound(o).map(|b| (o, b)))
        .collect();
    if !bounds.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "### Leak probability");
        let _ = writeln!(out);
        for (o, bound) in bounds {
            let _ = writeln!(out, "- **{}** {}: {}", o.verdict.as_str(), code(&o.trial), cell(&bound));
        }
    }
    let trace = report.traceability();
    let count = |state: TraceState| trace.iter().filter(|t| t.state == state).count();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Requirements: {} passed, {} failed, {} unsettled, {} with checks that did not run, {} needing manual evidence.",
        count(TraceState::Passed),
        count(TraceState::Failed),
        count(TraceState::Unsettled),
        count(TraceState::NotRun),
        count(TraceState::Manual),
    );
    out
}

/// [`code`] for a table cell: a `|` ends a cell even inside a code span (GitHub Flavored
/// Markdown splits the row first), so it is escaped, which such a table shows as `|`.
pub fn table_code(text: &str) -> String {
    code(text).replace('|', "\\|")
}

/// Text from the record as a Markdown code span: on one line, fenced with more backticks
/// than any run inside it. In a table cell use [`table_code`].
pub fn code(text: &str) -> String {
    let text = super::one_line(text);
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// Text from the record, made safe inside a Markdown line, list item or table cell, or a
/// code span: control characters become spaces, and everything Markdown would read as
/// markup (emphasis, links, images, code, tables, HTML) is escaped.
pub fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in super::one_line(text).chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '!' | '|' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_in_a_table_code_span_stays_in_its_cell() {
        let row = format!("| {} | x |", table_code("a|b`c"));
        assert_eq!(row, "| ``a\\|b`c`` | x |");
        // Unescaped pipes: the row's own three.
        let bare = row.replace("\\|", "");
        assert_eq!(bare.matches('|').count(), 3);
    }
}
