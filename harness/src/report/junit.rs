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

use super::{Report, describe_measurement};

/// The JUnit XML of a report.
pub fn render(report: &Report<'_>) -> String {
    let record = report.record;
    let mut junit = JReport::new(format!("hilt {} {}", record.profile.id, record.run.tier));
    let mut devices: Vec<&str> = record.outcomes.iter().map(|o| o.device.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    for device in devices {
        let mut suite = TestSuite::new(format!("hilt::{device}"));
        suite.add_property(Property::new("hilt.profile", record.profile.id.as_str()));
        suite.add_property(Property::new("hilt.profile_digest", record.profile.digest.as_str()));
        suite.add_property(Property::new("hilt.tier", record.run.tier.as_str()));
        suite.add_property(Property::new("hilt.conformance", record.conformance.status.as_str()));
        suite.add_property(Property::new("hilt.signature", report.signature.describe()));
        suite.add_property(Property::new("hilt.version", record.tool.version.as_str()));
        if let Some(d) = record.devices.iter().find(|d| d.id == device) {
            suite.add_property(Property::new("device.name", d.name.as_str()));
            suite.add_property(Property::new("device.backend", d.backend.as_str()));
            if let Some(a) = &d.pci_address {
                suite.add_property(Property::new("device.pci_address", a.as_str()));
            }
            for (k, v) in &d.facts {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                suite.add_property(Property::new(format!("device.{k}"), text));
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
                    s.set_message(format!("not applicable: {reason}"));
                    s
                }
                Verdict::Fail => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(reason.clone())
                        .set_type(if o.waiver.is_some() { "waived failure" } else { "fail" })
                        .set_description(details.join("\n"));
                    s
                }
                other => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message(reason.clone())
                        .set_type(other.as_str())
                        .set_description(details.join("\n"));
                    s
                }
            };
            let mut case = TestCase::new(o.trial.as_str(), status);
            case.set_classname(format!("hilt.{}", o.check));
            case.set_time(Duration::from_millis(o.duration_ms));
            // Test-case properties are not in every reader's schema; standard output is.
            case.set_system_out(format!(
                "level: {}\nrequirements: {}\n",
                o.level.as_str(),
                o.requirements.join(" ")
            ));
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    // Serialising strings the library escapes cannot fail; an empty report would be
    // visibly wrong.
    junit.to_string().unwrap_or_default()
}
