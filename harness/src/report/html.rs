//! One self-contained HTML page: the verdict, what needs attention, measurements against
//! their thresholds as inline SVG charts, every outcome, requirement traceability, the
//! device and firmware inventory, and who signed. No script, no external resource: the
//! page renders the same offline, in a mail attachment or an archive, years later.

use std::fmt::Write;

use hilt_results::{Better, Verdict};

use super::{Report, Signature, TraceState, describe_measurement, leak_bound, meets, number};

/// The page may load nothing: no script, no image, no stylesheet from anywhere.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #1d1d1f; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0; }
th, td { text-align: left; padding: 0.25em 0.5em; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f5f5f7; }
code { font-size: 0.92em; }
.badge { display: inline-block; padding: 0.15em 0.6em; border-radius: 0.3em; font-weight: 600; color: #fff; }
.pass, .conformant, .passed { background: #1b7f3b; } .fail, .not_conformant, .failed { background: #b3261e; }
.inconclusive, .error, .unsettled, .incomplete, .no_accelerator { background: #a05a00; } .not_applicable, .partial, .not-run { background: #6b6b70; }
.manual { background: #3a4db0; } .waived { background: #7a4fa0; }
.meta td:first-child { width: 14em; color: #555; }
.sig-bad { color: #b3261e; font-weight: 600; } .sig-ok { color: #1b7f3b; font-weight: 600; }
svg text { font: 12px system-ui, sans-serif; }
"#;

/// The HTML page of a report.
pub fn render(report: &Report<'_>) -> String {
    let r = report.record;
    let mut out = String::new();
    let status = r.conformance.status.as_str();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <title>hilt: {} on {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&r.profile.id),
        esc(&r.host.hostname)
    );
    let _ = writeln!(out, "<h1>hilt conformance report</h1>");
    if report.signature.unverified() {
        let _ = writeln!(
            out,
            "<p class=\"sig-bad\">NOT VERIFIED: this result's signature did not verify. What follows is what it \
             claims, not evidence.</p>"
        );
    }
    let _ = writeln!(
        out,
        "<p><span class=\"badge {}\">{}</span> profile <code>{}</code> {}, tier <code>{}</code>{}</p>",
        if report.signature.unverified() {
            "unsettled"
        } else {
            status
        },
        esc(&if report.signature.unverified() {
            format!("claims: {}", status.replace('_', " "))
        } else {
            status.replace('_', " ")
        }),
        esc(&r.profile.id),
        esc(&r.profile.version),
        r.run.tier,
        if r.profile.certifying {
            ""
        } else {
            " &middot; this profile does not certify"
        }
    );
    if let Some(note) = super::replay_note(r) {
        let _ = writeln!(out, "<p><strong>{}</strong></p>", esc(&note));
    }
    for reason in &r.conformance.reasons {
        let _ = writeln!(out, "<p>{}</p>", esc(reason));
    }

    // Who, what, when.
    let (sig_class, sig_text) = match &report.signature {
        Signature::Verified { .. } => ("sig-ok", report.signature.describe()),
        Signature::NotVerified { .. } | Signature::Unsigned => ("sig-bad", report.signature.describe()),
        Signature::Pending => ("", report.signature.describe()),
    };
    let _ = writeln!(out, "<table class=\"meta\">");
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "<tr><td>{k}</td><td>{v}</td></tr>");
    };
    row(
        &mut out,
        "signature",
        format!("<span class=\"{sig_class}\">{}</span>", esc(&sig_text)),
    );
    row(&mut out, "run", format!("<code>{}</code>", esc(&r.run.id)));
    row(
        &mut out,
        "started / finished",
        format!(
            "{} / {}{}",
            esc(&r.run.started_at),
            esc(r.run.finished_at.as_deref().unwrap_or("not finished")),
            if r.run.complete { "" } else { " (incomplete run)" }
        ),
    );
    row(
        &mut out,
        "host",
        format!(
            "{} ({}, kernel {}, {}, {} CPUs)",
            esc(&r.host.hostname),
            esc(&r.host.os),
            esc(&r.host.kernel),
            esc(&r.host.arch),
            r.host.cpus
        ),
    );
    if r.host.node_name() != r.host.hostname {
        row(&mut out, "node", esc(r.host.node_name()));
    }
    row(
        &mut out,
        "tool",
        format!(
            "{} {} (executable sha256 <code>{}</code>)",
            esc(&r.tool.name),
            esc(&r.tool.version),
            esc(r.tool.executable_sha256.as_deref().unwrap_or("unknown"))
        ),
    );
    row(
        &mut out,
        "profile digest",
        format!(
            "<code>{}</code> ({})",
            esc(&r.profile.digest),
            r.profile
                .chain
                .iter()
                .map(|c| esc(c))
                .collect::<Vec<_>>()
                .join(" &larr; ")
        ),
    );
    if !r.run.sim_faults.is_empty() || !r.run.overrides.is_empty() {
        row(
            &mut out,
            "planted faults, overrides",
            esc(&[r.run.sim_faults.clone(), r.run.overrides.clone()].concat().join(", ")),
        );
    }
    let _ = writeln!(out, "</table>");

    let s = &r.summary;
    let _ = writeln!(out, "<h2>Summary</h2>");
    let _ = writeln!(
        out,
        "<table><tr><th>pass</th><th>fail</th><th>of which waived</th><th>not applicable</th>\
         <th>inconclusive</th><th>error</th><th>selected</th></tr>\n<tr><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        s.pass, s.fail, s.waived, s.not_applicable, s.inconclusive, s.error, s.selected
    );

    let problems = report.problems();
    if !problems.is_empty() {
        let _ = writeln!(out, "<h2>Needs attention</h2>\n<ul>");
        for o in problems {
            let _ = write!(
                out,
                "<li>{} <code>{}</code> ({}): {}",
                badge(o.verdict, o.waiver.is_some()),
                esc(&o.trial),
                o.level.as_str(),
                esc(o.reason.as_deref().unwrap_or_default())
            );
            if let Some(c) = report.catalogue.get(&o.check) {
                let _ = write!(out, "<br><small>What to do: {}</small>", esc(c.remediation));
            }
            let _ = writeln!(out, "</li>");
        }
        let _ = writeln!(out, "</ul>");
    }

    measurements(&mut out, report);
    outcomes(&mut out, report);
    traceability(&mut out, report);
    inventory(&mut out, report);

    let _ = writeln!(out, "</body>\n</html>");
    out
}

fn measurements(out: &mut String, report: &Report<'_>) {
    let charted: Vec<_> = report
        .outcomes_sorted()
        .into_iter()
        .flat_map(|o| {
            o.measurements
                .iter()
                .filter(|m| m.threshold.is_some())
                .map(move |m| (o, m))
        })
        .collect();
    if charted.is_empty() {
        return;
    }
    let _ = writeln!(out, "<h2>Measurements against thresholds</h2>");
    let _ = writeln!(
        out,
        "<p>Each bar is the value; the black line is the threshold. Green meets it, red does not.</p>"
    );
    let height = 28;
    let _ = writeln!(
        out,
        "<svg role=\"img\" aria-label=\"measurements\" width=\"100%\" viewBox=\"0 0 1040 {}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        charted.len() * height + 10
    );
    for (i, (o, m)) in charted.iter().enumerate() {
        let y = i * height + 5;
        let threshold = m.threshold.unwrap_or(0.0);
        let scale = (m.value.abs().max(threshold.abs()).max(f64::MIN_POSITIVE) * 1.15).min(f64::MAX);
        let width = |v: f64| (v.abs() / scale * 420.0).clamp(0.0, 420.0);
        let ok = meets(m).unwrap_or(true);
        let color = if ok { "#1b7f3b" } else { "#b3261e" };
        let label = format!("{} {}", short_trial(&o.trial), m.name);
        let _ = writeln!(
            out,
            "<text x=\"0\" y=\"{}\"><title>{}</title>{}</text>\
             <rect x=\"330\" y=\"{}\" width=\"{:.1}\" height=\"16\" fill=\"{color}\"><title>{}</title></rect>\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#000\" stroke-width=\"2\"/>\
             <text x=\"760\" y=\"{}\">{} {} ({} {})</text>",
            y + 13,
            esc(&label),
            esc(&fit(&label, LABEL_CHARS)),
            y + 1,
            width(m.value).max(1.0),
            esc(&describe_measurement(m)),
            330.0 + width(threshold),
            330.0 + width(threshold),
            y - 1,
            y + 19,
            y + 13,
            esc(&number(m.value)),
            esc(&m.unit),
            match m.better {
                Better::Higher => "&ge;",
                Better::Lower => "&le;",
                _ => "vs",
            },
            esc(&number(threshold)),
        );
    }
    let _ = writeln!(out, "</svg>");
}

/// The most characters of a chart label that fit left of the bars (about 6.6 units a character at 12 px, with a margin).
const LABEL_CHARS: usize = 44;

/// `text` in at most `max` characters. The check's name gives way to an ellipsis first, so
/// the device and the measurement (after the last `::`) stay whole where they fit;
/// otherwise the middle does.
fn fit(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    if let Some(at) = text.rfind("::") {
        let kept = text[at..].chars().count();
        if kept + 8 <= max {
            let head: String = text.chars().take(max - 1 - kept).collect();
            return format!("{head}\u{2026}{}", &text[at..]);
        }
    }
    let tail = (max - 1) / 2;
    let head = max - 1 - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}\u{2026}{end}")
}

fn outcomes(out: &mut String, report: &Report<'_>) {
    let _ = writeln!(out, "<h2>Outcomes</h2>");
    let _ = writeln!(
        out,
        "<table><tr><th>trial</th><th>level</th><th>verdict</th><th>reason and measurements</th><th>ms</th></tr>"
    );
    for o in report.outcomes_sorted() {
        let mut detail = esc(o.reason.as_deref().unwrap_or_default());
        for m in &o.measurements {
            let _ = write!(detail, "<br><small>{}</small>", esc(&describe_measurement(m)));
        }
        if let Some(w) = &o.waiver {
            let _ = write!(
                detail,
                "<br><small>waived until {}: {}</small>",
                esc(&w.expires),
                esc(&w.reason)
            );
        }
        let bound = leak_bound(o)
            .map(|b| format!("<br><small>{}</small>", esc(&b)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code><br><small>{}</small></td><td>{}</td><td>{}{bound}</td><td>{detail}</td><td>{}</td></tr>",
            esc(&o.trial),
            esc(report.title(&o.check)),
            o.level.as_str(),
            badge(o.verdict, o.waiver.is_some()),
            o.duration_ms
        );
    }
    // Trials the profile asked for that no tenant could run (a replayed capture's device
    // checks): shown as not run, with why, never left out.
    for n in &report.record.run.not_run {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code><br><small>{}</small></td><td>{}</td><td><span class=\"badge not-run\">not \
             run</span></td><td>{}</td><td></td></tr>",
            esc(&n.trial),
            esc(report.title(&n.check)),
            n.level.as_str(),
            esc(&n.reason)
        );
    }
    let _ = writeln!(out, "</table>");
}

fn traceability(out: &mut String, report: &Report<'_>) {
    let _ = writeln!(out, "<h2>Requirement traceability (ETSI TS 104 033)</h2>");
    let _ = writeln!(
        out,
        "<p>Each requirement of hilt's catalogue, the trials that gave evidence for it in this result, and \
         checks that exist for it but did not run. Requirements that no automated check covers need manual \
         evidence.</p>"
    );
    let _ = writeln!(
        out,
        "<table><tr><th>requirement</th><th>state</th><th>evidence in this result</th></tr>"
    );
    for t in report.traceability() {
        let class = match t.state {
            TraceState::NotRun => "not-run",
            TraceState::Manual => "manual",
            other => other.as_str(),
        };
        let mut evidence: Vec<String> = t
            .outcomes
            .iter()
            .map(|(trial, v)| format!("<code>{}</code> {}", esc(trial), esc(v.as_str())))
            .collect();
        if !t.not_run.is_empty() {
            evidence.push(format!("<small>not run: {}</small>", esc(&t.not_run.join(", "))));
        }
        let _ = writeln!(
            out,
            "<tr><td><b>{}</b> <small>{}</small><br>{}</td><td><span class=\"badge {class}\">{}</span></td><td>{}</td></tr>",
            esc(&t.id),
            esc(&t.group),
            esc(&t.summary),
            esc(t.state.as_str()),
            evidence.join("<br>")
        );
    }
    let _ = writeln!(out, "</table>");
}

fn inventory(out: &mut String, report: &Report<'_>) {
    let _ = writeln!(out, "<h2>Devices and firmware</h2>");
    for d in &report.record.devices {
        let _ = writeln!(
            out,
            "<h3><code>{}</code> {} <small>({}{}{})</small></h3>",
            esc(&d.id),
            esc(&d.name),
            esc(&d.backend),
            d.pci_address
                .as_deref()
                .map(|a| format!(", {}", esc(a)))
                .unwrap_or_default(),
            if d.simulated { ", simulated" } else { "" }
        );
        if d.facts.is_empty() {
            continue;
        }
        let _ = writeln!(out, "<table class=\"meta\">");
        for (k, v) in &d.facts {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = writeln!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&text));
        }
        let _ = writeln!(out, "</table>");
    }
}

fn badge(verdict: Verdict, waived: bool) -> String {
    if waived && verdict == Verdict::Fail {
        return "<span class=\"badge waived\">fail (waived)</span>".into();
    }
    format!(
        "<span class=\"badge {0}\">{1}</span>",
        verdict.as_str(),
        verdict.as_str().replace('_', " ")
    )
}

/// `suite::check::device` without the suite, for chart labels.
fn short_trial(trial: &str) -> &str {
    trial.split_once("::").map_or(trial, |(_, rest)| rest)
}

/// Text escaped for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn long_chart_labels_lose_their_middle_not_their_ends() {
        assert_eq!(fit("short", 46), "short");
        let long = "device_copy_bandwidth::pci-0000-17-00.0 bandwidth_median";
        assert_eq!(fit(long, 44), "device_c\u{2026}::pci-0000-17-00.0 bandwidth_median");
        let longer = "device_copy_bandwidth::pci-0000-17-00.0-of-a-long-name bandwidth_median";
        let fitted = fit(longer, 44);
        assert_eq!(fitted.chars().count(), 44);
        assert!(fitted.starts_with("device_copy_bandwidth:"), "{fitted}");
        assert!(fitted.ends_with("bandwidth_median"), "{fitted}");
        assert!(fitted.contains('\u{2026}'));
        // Characters, not bytes: no panic inside a multi-byte character.
        assert_eq!(fit(&"é".repeat(60), 46).chars().count(), 46);
    }
}
