//! What makes results hard to compare: where any two of them differ in profile or its
//! settings, runtime settings (overrides, hilt's device settings, check parameters), hilt
//! version or tier, or coverage (memory scanned, checks run), a flag names the values and
//! which results had each, so that no difference between any two columns goes unsaid;
//! and, for each result on its own, planted sim faults, a filtered or unfinished run, an
//! unverified signature (with the verifier's reasons), a stored conformance status that
//! its outcomes do not give, several devices or a simulated one.

use std::collections::{BTreeMap, BTreeSet};

use hilt_results::ResultRecord;

use super::{COVERAGE_MEASUREMENTS, Entry, Flag, FlagKind, MeasurementRow, share};
use crate::report::Signature;

/// Device facts that are hilt's settings rather than the device's properties: how hilt
/// drove the device, chosen by whoever ran it. `opencl.alloc_host_ptr`
/// (`HILT_OPENCL_ALLOC_HOST_PTR`), kernel build options (`HILT_OPENCL_BUILD_OPTIONS`,
/// `HILT_CUDA_NVRTC_OPTIONS`), and every `sim.` knob. A backend that records a new setting
/// as a fact adds it here.
pub fn is_setting_fact(name: &str) -> bool {
    name.starts_with("sim.")
        || matches!(
            name,
            "opencl.alloc_host_ptr" | "opencl.build_options" | "cuda.nvrtc_options"
        )
}

/// Every difference between any of `entries` (see the module's documentation).
pub(super) fn across(entries: &[Entry<'_>], measurements: &[MeasurementRow]) -> Vec<Flag> {
    let records: Vec<(&str, &ResultRecord)> = entries.iter().map(|e| (e.label.as_str(), e.report.record)).collect();
    let mut flags = Vec::new();
    let mut flag = |kind: FlagKind, text: String| flags.push(Flag { kind, text });
    let profiles = grouped(records.iter().map(|(l, r)| (r.profile.id.clone(), *l)));
    if profiles.len() > 1 {
        flag(
            FlagKind::Profile,
            format!(
                "the results ran different profiles ({}): checks and thresholds may differ",
                described(&profiles)
            ),
        );
    }
    for (id, _) in &profiles {
        let same: Vec<(&str, &ResultRecord)> = records.iter().copied().filter(|(_, r)| &r.profile.id == id).collect();
        let digests = grouped(same.iter().map(|(l, r)| (r.profile.digest.clone(), *l)));
        if digests.len() > 1 {
            flag(
                FlagKind::Profile,
                format!("profile {id} was applied with other settings ({})", described(&digests)),
            );
            for text in param_differences(&same) {
                flag(FlagKind::Settings, format!("check parameters differ: {text}"));
            }
        }
    }
    let versions = grouped(records.iter().map(|(l, r)| (r.tool.version.clone(), *l)));
    if versions.len() > 1 {
        flag(
            FlagKind::Run,
            format!(
                "the results were made by different hilt versions ({})",
                described(&versions)
            ),
        );
    }
    let tiers = grouped(records.iter().map(|(l, r)| (r.run.tier.as_str().to_string(), *l)));
    if tiers.len() > 1 {
        flag(
            FlagKind::Run,
            format!("the results ran different tiers ({})", described(&tiers)),
        );
    }
    let overrides = grouped(records.iter().map(|(l, r)| (list_or_none(&r.run.overrides), *l)));
    if overrides.len() > 1 {
        flag(
            FlagKind::Settings,
            format!("the results ran with different overrides ({})", described(&overrides)),
        );
    }
    for (name, values) in setting_differences(&records) {
        flag(
            FlagKind::Settings,
            format!("hilt drove the devices with different {name} ({})", described(&values)),
        );
    }
    for text in coverage_differences(entries, measurements) {
        flag(
            FlagKind::Coverage,
            format!(
                "the results scanned different shares of device memory in {text}: a pass over less memory is \
                 weaker evidence"
            ),
        );
    }
    let ran = |r: &ResultRecord| r.outcomes.iter().map(|o| o.check.clone()).collect::<BTreeSet<String>>();
    let all: BTreeSet<String> = records.iter().flat_map(|(_, r)| ran(r)).collect();
    for (label, r) in &records {
        let own = ran(r);
        let missing: Vec<&String> = all.difference(&own).collect();
        if !missing.is_empty() {
            flag(
                FlagKind::Coverage,
                format!(
                    "{label} did not run {} check(s) that another result ran: {}",
                    missing.len(),
                    join(&missing)
                ),
            );
        }
    }
    flags
}

/// `values` (each with the results that had it, in the order first seen) as
/// `a in x.json, y.json; b in z.json`.
fn described(values: &[(String, Vec<&str>)]) -> String {
    values
        .iter()
        .map(|(value, labels)| format!("{value} in {}", labels.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Values, each with the labels of the results that had it.
type Groups<'a> = Vec<(String, Vec<&'a str>)>;

/// Labels grouped by value, values in the order first seen.
fn grouped<'a>(items: impl Iterator<Item = (String, &'a str)>) -> Groups<'a> {
    let mut groups: Vec<(String, Vec<&'a str>)> = Vec::new();
    for (value, label) in items {
        match groups.iter_mut().find(|(v, _)| *v == value) {
            Some((_, labels)) => labels.push(label),
            None => groups.push((value, vec![label])),
        }
    }
    groups
}

/// What makes one result hard to read on its own.
pub(super) fn of(e: &Entry<'_>) -> Vec<Flag> {
    let r = e.report.record;
    let l = &e.label;
    let mut flags = Vec::new();
    let mut flag = |kind: FlagKind, text: String| flags.push(Flag { kind, text });
    if let Signature::NotVerified { reasons } = &e.report.signature {
        flag(
            FlagKind::Signature,
            format!(
                "{l} did NOT verify ({}): its content is a claim, not evidence",
                reasons.join("; ")
            ),
        );
    }
    let derived = r.derived_conformance().status;
    if r.conformance.status != derived {
        flag(
            FlagKind::Record,
            format!(
                "{l} records its conformance as {}, but its outcomes give {}: the record was edited, or written by a \
                 hilt that decides otherwise; shown as its outcomes give it",
                r.conformance.status.as_str(),
                derived.as_str()
            ),
        );
    }
    let mut devices: Vec<&str> = r.outcomes.iter().map(|o| o.device.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    let accelerators: Vec<&str> = devices.iter().copied().filter(|d| *d != "host").collect();
    if accelerators.len() > 1 {
        flag(
            FlagKind::Devices,
            format!(
                "{l} ran on {} devices ({}): verdicts count every device's, measurements show the worst device's \
                 value and the range over all",
                accelerators.len(),
                accelerators.join(", ")
            ),
        );
    }
    if r.devices.iter().any(|d| d.simulated) {
        flag(
            FlagKind::Devices,
            format!("{l} ran on a simulated device: it describes hilt, not a platform"),
        );
    }
    if !r.run.sim_faults.is_empty() {
        flag(
            FlagKind::Settings,
            format!(
                "{l} had sim faults planted ({}): a test of hilt itself",
                r.run.sim_faults.join(", ")
            ),
        );
    }
    if r.run.filtered {
        flag(
            FlagKind::Coverage,
            format!(
                "{l} is a filtered run: {} of {} planned trials ran",
                r.outcomes.len(),
                r.run.planned.len()
            ),
        );
    }
    if !r.run.complete {
        flag(FlagKind::Coverage, format!("{l} is from a run that did not finish"));
    }
    flags
}

/// Per check that several of `records` (one profile's) ran with parameters that differ:
/// `check key: a in x.json; b in y.json` for every key whose values differ.
fn param_differences(records: &[(&str, &ResultRecord)]) -> Vec<String> {
    let mut by_check: BTreeMap<&str, Vec<(&str, &serde_json::Value)>> = BTreeMap::new();
    for (label, r) in records {
        let mut seen = BTreeSet::new();
        for o in &r.outcomes {
            if seen.insert(o.check.as_str()) {
                by_check.entry(o.check.as_str()).or_default().push((label, &o.params));
            }
        }
    }
    let mut out = Vec::new();
    for (check, params) in by_check {
        if params.len() < 2 || params.iter().all(|(_, p)| *p == params[0].1) {
            continue;
        }
        let keys: BTreeSet<&String> = params
            .iter()
            .filter_map(|(_, p)| p.as_object())
            .flat_map(|m| m.keys())
            .collect();
        let shown = |v: Option<&serde_json::Value>| v.map_or("unset".to_string(), ToString::to_string);
        let differing: Vec<String> = keys
            .into_iter()
            .filter(|k| {
                params
                    .iter()
                    .any(|(_, p)| p.get(k.as_str()) != params[0].1.get(k.as_str()))
            })
            .map(|k| {
                let values = grouped(params.iter().map(|(l, p)| (shown(p.get(k.as_str())), *l)));
                format!("{check} {k} ({})", described(&values))
            })
            .collect();
        if differing.is_empty() {
            let values = grouped(params.iter().map(|(l, p)| (p.to_string(), *l)));
            out.push(format!("{check} ({})", described(&values)));
        }
        out.extend(differing);
    }
    out
}

/// Per setting fact (see [`is_setting_fact`]) whose values differ among the records that
/// drove the fact's backend (`opencl.` facts among those with an `opencl` device): the
/// fact, and its values with the records that had each (`not recorded` where a record
/// has no such fact).
fn setting_differences<'a>(records: &[(&'a str, &ResultRecord)]) -> Vec<(String, Groups<'a>)> {
    let names: BTreeSet<&String> = records
        .iter()
        .flat_map(|(_, r)| r.devices.iter().flat_map(|d| d.facts.keys()))
        .filter(|k| is_setting_fact(k))
        .collect();
    let mut out = Vec::new();
    for name in names {
        let backend = name.split('.').next().unwrap_or_default();
        let values = grouped(records.iter().filter_map(|(label, r)| {
            let devices: Vec<&hilt_results::Device> = r.devices.iter().filter(|d| d.backend == backend).collect();
            if devices.is_empty() {
                return None;
            }
            let values: BTreeSet<String> = devices
                .iter()
                .filter_map(|d| d.facts.get(name.as_str()))
                .map(ToString::to_string)
                .collect();
            let value = if values.is_empty() {
                "not recorded".to_string()
            } else {
                values.into_iter().collect::<Vec<_>>().join(" and ")
            };
            Some((value, *label))
        }));
        if values.len() > 1 {
            out.push((name.clone(), values));
        }
    }
    out
}

/// Per coverage measurement whose values differ by more than 1 % of the largest: `check
/// (a in x.json; b in y.json)`.
fn coverage_differences(entries: &[Entry<'_>], rows: &[MeasurementRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| COVERAGE_MEASUREMENTS.contains(&r.name.as_str()))
        .filter_map(|r| {
            let present: Vec<(&str, f64)> = r
                .cells
                .iter()
                .zip(entries)
                .filter_map(|(c, e)| Some((e.label.as_str(), c.as_ref()?.value)))
                .collect();
            let low = present.iter().map(|p| p.1).reduce(f64::min)?;
            let high = present.iter().map(|p| p.1).reduce(f64::max)?;
            (high - low > 0.01 * high.abs().max(low.abs())).then(|| {
                let values = grouped(present.iter().map(|(l, v)| (share(*v, &r.unit), *l)));
                format!("{} ({})", r.check, described(&values))
            })
        })
        .collect()
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn join(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}
