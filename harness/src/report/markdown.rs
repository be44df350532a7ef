//! Markdown fit for a CI step summary (`$GITHUB_STEP_SUMMARY` and the like): the verdict,
//! the counts, and each failure with what it measured.

use std::fmt::Write;

use super::{Report, TraceState, describe_measurement};

/// The Markdown summary of a report.
pub fn render(report: &Report<'_>) -> String {
    let r = report.record;
    let s = &r.summary;
    let mut out = String::new();
    let _ = writeln!(out, "## hilt: {}", r.conformance.status.as_str().replace('_', " "));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Profile `{}` {} ({}), tier `{}`, on {}; hilt {}.",
        cell(&r.profile.id),
        cell(&r.profile.version),
        if r.profile.certifying {
            "certifying"
        } else {
            "not certifying"
        },
        r.run.tier,
        r.devices
            .iter()
            .map(|d| format!("`{}` ({})", cell(&d.id), cell(&d.name)))
            .collect::<Vec<_>>()
            .join(", "),
        cell(&r.tool.version),
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Signature: {}.", cell(&report.signature.describe()));
    let _ = writeln!(out);
    let _ = writeln!(out, "| pass | fail | waived | not applicable | inconclusive | error |");
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} |",
        s.pass, s.fail, s.waived, s.not_applicable, s.inconclusive, s.error
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
                "- **{}** `{}` ({}): {}",
                o.verdict.as_str(),
                cell(&o.trial),
                o.level.as_str(),
                cell(o.reason.as_deref().unwrap_or_default())
            );
            for m in &o.measurements {
                let _ = writeln!(out, "  - {}", cell(&describe_measurement(m)));
            }
            if let Some(w) = &o.waiver {
                let _ = writeln!(out, "  - waived until {}: {}", w.expires, cell(&w.reason));
            }
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

/// Text from the record, made safe inside a Markdown line or table cell.
fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|").replace('<', "&lt;")
}
