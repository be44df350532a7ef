//! JUnit XML, as CI systems read it: one test suite per device, one test case per trial.
//!
//! JUnit's states follow the run's decision ([`standing`]), so a CI page, the terminal and
//! the exit code agree: a pass is a success; a mandatory check that failed without a
//! waiver is a failure; one that ended inconclusive or in error (or, in the certification
//! tier, could not run or was not examined by its backend) is an error, since CI must not
//! read either as a pass; everything that does not decide conformance (a recommended or
//! informational check that did not pass, a waived failure, a check that does not apply)
//! is skipped, its verdict, level and reason in the skip message and again as the skip's
//! text (Jenkins shows the message, GitLab the text; see docs/reports.md). Trials the run
//! did not get to (it was interrupted or killed) are errors of type `not run`; trials the
//! profile asked for that no tenant could run (`run.not_run`: a replayed capture's
//! accelerators) are skipped, with why, never passed.
//!
//! A run that examined no accelerator, or fewer than expected, gets an error case of its
//! own (`hilt::accelerators`), and so does a signature that did not verify.
//!
//! Suite and case names carry the node ([`super::node`]), so JUnit files merged from many
//! nodes never collide. Device, driver and firmware facts are properties of each device's
//! suite; the run's profile, tier, conformance and signature are properties of every
//! suite.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report as JReport, TestCase, TestCaseStatus, TestSuite};

use super::{Report, Signature, describe_measurement, node};
use crate::record::{Standing, standing};

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
/// Trials the plan held that have no outcome in a run that did not finish are errors of
/// type `not run`, and a signature that did not verify is an error case of its own
/// (`hilt::signature`), so that neither can leave a CI page green.
pub fn render(report: &Report<'_>) -> String {
    let record = report.record;
    let node = node(record);
    let mut junit = JReport::new(xml(&format!(
        "hilt {} {} on {node}",
        record.profile.id, record.run.tier
    )));
    let mut total = Duration::ZERO;
    let mut devices: Vec<&str> = record
        .outcomes
        .iter()
        .map(|o| o.device.as_str())
        .chain(record.run.planned.iter().filter_map(|t| t.rsplit("::").next()))
        .chain(record.run.not_run.iter().map(|n| n.device.as_str()))
        .collect();
    devices.sort_unstable();
    devices.dedup();
    let not_run = |trial: &str| -> Option<String> {
        if let Some(i) = &record.run.interrupted {
            return i.not_run.iter().any(|t| t == trial).then(|| {
                format!(
                    "not run: the run was interrupted by {} before this trial finished",
                    i.signal
                )
            });
        }
        // In a finished run, a planned trial without an outcome is one a filter left out;
        // in one that did not finish, only a trial the filters selected was to run.
        let selected =
            !record.run.filtered || record.run.selected.is_empty() || record.run.selected.iter().any(|t| t == trial);
        (!record.run.complete && selected && !record.outcomes.iter().any(|o| o.trial == trial))
            .then(|| "not run: the run ended before this trial finished (it was killed, or is still going)".to_string())
    };
    for device in devices {
        let mut suite = TestSuite::new(xml(&format!("hilt::{node}::{device}")));
        let mut suite_time = Duration::ZERO;
        let mut property = |name: &str, value: &str| {
            suite.add_property(Property::new(xml(name), xml(value)));
        };
        property("hilt.node", node);
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
            let mut details: Vec<String> = o.measurements.iter().map(describe_measurement).collect();
            if let Some(w) = &o.waiver {
                details.push(format!("waived until {}: {}", w.expires, w.reason));
            }
            if let Some(w) = &o.expired_waiver {
                details.push(format!("its waiver expired on {}: {}", w.expires, w.reason));
            }
            let status = match standing(o, record.run.tier) {
                Standing::Passed => TestCaseStatus::success(),
                Standing::Blocks {
                    failure,
                    kind,
                    sentence,
                    ..
                } => {
                    let mut s = TestCaseStatus::non_success(if failure {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    });
                    s.set_message(xml(&sentence))
                        .set_type(kind)
                        .set_description(xml(&details.join("\n")));
                    s
                }
                Standing::Aside(text) => {
                    let mut s = TestCaseStatus::skipped();
                    let mut body = vec![text.clone()];
                    body.extend(details);
                    s.set_message(xml(&text)).set_description(xml(&body.join("\n")));
                    s
                }
            };
            let mut case = TestCase::new(xml(&format!("{node}::{}", o.trial)), status);
            case.set_classname(xml(&format!("hilt.{}", o.check)));
            let time = Duration::from_millis(o.duration_ms);
            suite_time += time;
            case.set_time(time);
            // Test-case properties are not in every reader's schema; standard output is.
            case.set_system_out(xml(&format!(
                "level: {}\nverdict: {}\nrequirements: {}\n",
                o.level.as_str(),
                o.verdict.as_str(),
                o.requirements.join(" ")
            )));
            suite.add_test_case(case);
        }
        for trial in record
            .run
            .planned
            .iter()
            .filter(|t| t.rsplit("::").next() == Some(device))
            .filter(|t| !record.outcomes.iter().any(|o| &o.trial == *t))
        {
            let Some(message) = not_run(trial) else {
                continue;
            };
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(xml(&message)).set_type("not run");
            suite.add_test_case(TestCase::new(xml(&format!("{node}::{trial}")), s));
        }
        // Trials the profile asked for that no tenant could run (a replayed capture's
        // accelerators): skipped, with why, never passed; in the certification tier a
        // mandatory one is an error, as it leaves the run inconclusive (exit 3).
        for n in record.run.not_run.iter().filter(|n| n.device == device) {
            let blocks = n.blocks(record.run.tier);
            let mut s = if blocks {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_type("not run");
                s
            } else {
                TestCaseStatus::skipped()
            };
            s.set_message(xml(&format!("not run: {}", n.reason)));
            let mut case = TestCase::new(xml(&format!("{node}::{}", n.trial)), s);
            case.set_classname(xml(&format!("hilt.{}", n.check)));
            suite.add_test_case(case);
        }
        suite.set_time(suite_time);
        total += suite_time;
        junit.add_test_suite(suite);
    }
    if let Some(why) = crate::record::accelerator_shortfall(record) {
        let mut suite = TestSuite::new(xml(&format!("hilt::{node}::accelerators")));
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        s.set_message(xml(&why)).set_type("accelerators missing");
        suite.add_test_case(TestCase::new(
            xml(&format!("{node}::{}", crate::record::SHORTFALL_TRIAL)),
            s,
        ));
        junit.add_test_suite(suite);
    }
    if let Signature::NotVerified { reasons } = &report.signature {
        let mut suite = TestSuite::new(xml(&format!("hilt::{node}::signature")));
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        s.set_message(xml(&format!("the signature did not verify: {}", reasons.join("; "))))
            .set_type("not verified");
        suite.add_test_case(TestCase::new(xml(&format!("{node}::hilt::signature")), s));
        junit.add_test_suite(suite);
    }
    junit.set_time(total);
    // Serialising strings the library escapes cannot fail; an empty report would be
    // visibly wrong.
    junit.to_string().unwrap_or_default()
}
