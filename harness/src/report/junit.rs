//! JUnit XML, as CI systems read it: one test suite per device, one test case per trial.
//!
//! Verdicts map onto JUnit's four states: `pass` is a success; `not_applicable` is
//! skipped, with its reason; `fail` is a failure, with the reason and measurements as
//! message and text (a waived failure too, its waiver in the text); `error` and
//! `inconclusive` are errors, since CI must not read either as a pass. Device, driver and
//! firmware facts are properties of each device's suite; the run's profile, tier,
//! conformance and signature are properties of every suite.

use std::time::Duration;

use hilt_results::Verdict;
use quick_junit::{NonSuccessKind, Property, Report as JReport, TestCase, TestCaseStatus, TestSuite};

use super::{Report, Signature, describe_measurement};

/// Text from the record made valid in XML 1.0: characters XML cannot hold (most control
/// characters, U+FFFE, U+FFFF) become U+FFFD, so a reader never rejects the whole file.
pub(crate) fn xml(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// The JUnit XML of a report.
///
/// Trials the plan held that have no outcome (a run that did not finish) are errors of
/// type `not run`, and a signature that did not verify is an error case of its own
/// (`hilt::signature`), so that neither can leave a CI page green.
pub fn render(report: &Report<'_>) -> String {
    let record = report.record;
    let mut junit = JReport::new(xml(&format!("hilt {} {}", record.profile.id, record.run.tier)));
    let mut total = Duration::ZERO;
    let mut devices: Vec<&str> = record
        .outcomes
        .iter()
        .map(|o| o.device.as_str())
        .chain(record.run.planned.iter().filter_map(|t| t.rsplit("::").next()))
        .collect();
    devices.sort_unstable();
    devices.dedup();
    for device in devices {
        let mut suite = TestSuite::new(xml(&format!("hilt::{device}")));
        let mut suite_time = Duration::ZERO;
        let mut property = |name: &str, value: &str| {
            suite.add_property(Property::new(xml(name), xml(value)));
        };
        property("hilt.profile", &record.profile.id);
        property("hilt.profile_digest", &record.profile.digest);
        property("hilt.tier", record.run.tier.as_str());
        property("hilt.conformance", record.conformance.status.as_str());
        property("hilt.signature", &report.signature.describe());
        property("hilt.version", &record.tool.version);
        if let Some(d) = record.devices.iter().find(|d| d.id == device) {
            property("device.name", &d.name);
            property("device.backend", &d.backend);
            if let Some(a) = &d.pci_address {
                property("device.pci_address", a);
            }
            for (k, v) in &d.facts {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                property(&format!("device.{k}"), &text);
            }
        }
        let mut outcomes: Vec<_> = record.outcomes.iter().filter(|o| o.device == device).collect();
        outcomes.sort_by(|a, b| a.trial.cmp(&b.trial));
        for o in outcomes {
            let reason = o.reason.clone().unwrap_or_default();
            let mut details: Vec<String> = o.measurements.iter().map(describe_measurement).collect();
            if let Some(w) = &o.waiver {
                details.push(format!("waived until {}: {}", w.expires, w.reason));
            }
            let status = match o.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::NotApplicable => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(xml(&format!("not applicable: {reason}")));
                    s
                }
                Verdict::Fail => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(xml(&reason))
                        .set_type(if o.waiver.is_some() { "waived failure" } else { "fail" })
                        .set_description(xml(&details.join("\n")));
                    s
                }
                other => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message(xml(&reason))
                        .set_type(other.as_str())
                        .set_description(xml(&details.join("\n")));
                    s
                }
            };
            let mut case = TestCase::new(xml(&o.trial), status);
            case.set_classname(xml(&format!("hilt.{}", o.check)));
            let time = Duration::from_millis(o.duration_ms);
            suite_time += time;
            case.set_time(time);
            // Test-case properties are not in every reader's schema; standard output is.
            case.set_system_out(xml(&format!(
                "level: {}\nrequirements: {}\n",
                o.level.as_str(),
                o.requirements.join(" ")
            )));
            suite.add_test_case(case);
        }
        // Planned trials on this device that never finished, when the run itself did not
        // (in a finished run, a missing trial is one a filter left out).
        for trial in record
            .run
            .planned
            .iter()
            .filter(|_| !record.run.complete)
            .filter(|t| t.rsplit("::").next() == Some(device))
            .filter(|t| !record.outcomes.iter().any(|o| &o.trial == *t))
        {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message("the run ended before this trial finished (or a filter left it out)")
                .set_type("not run");
            suite.add_test_case(TestCase::new(xml(trial), s));
        }
        suite.set_time(suite_time);
        total += suite_time;
        junit.add_test_suite(suite);
    }
    if let Signature::NotVerified { reasons } = &report.signature {
        let mut suite = TestSuite::new("hilt::signature");
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        s.set_message(xml(&format!("the signature did not verify: {}", reasons.join("; "))))
            .set_type("not verified");
        suite.add_test_case(TestCase::new("hilt::signature", s));
        junit.add_test_suite(suite);
    }
    junit.set_time(total);
    // Serialising strings the library escapes cannot fail; an empty report would be
    // visibly wrong.
    junit.to_string().unwrap_or_default()
}
