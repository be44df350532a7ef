//! `hilt compare`: columns named by platform with a summary first, levels, colour by
//! verdict, calls only for performance figures and only beyond the runs' spread, flags for
//! settings and coverage, the JSON form, `--fail-on-regression`'s exit codes, two real sim
//! runs of one profile that must not be told apart, and the HTML page in a 1300 px window.
//!
//! The browser test needs Chromium, as in `reports.rs` (`HILT_SKIP_CHROMIUM=1` skips it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What one `hilt compare` said.
struct Compared {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `hilt compare ARGS` run in `dir`, so that the labels (the paths given) do not depend on
/// where the repository is.
fn compare_in(dir: &Path, args: &[&str]) -> Compared {
    let out = common::command()
        .arg("compare")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("hilt runs");
    Compared {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `hilt compare ARGS` in the result fixtures' directory.
fn compare(args: &[&str]) -> Compared {
    compare_in(&common::fixtures().join("results"), args)
}

/// `hilt compare ARGS --format json`, parsed.
fn compare_json(dir: &Path, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["--format", "json"]);
    let out = compare_in(dir, &full);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}{}", out.stdout, out.stderr))
}

/// A result fixture as JSON.
fn fixture(name: &str) -> Value {
    let path = common::fixtures().join("results").join(name);
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
}

/// Writes `record` as `dir/name`.
fn write(dir: &Path, name: &str, record: &Value) {
    std::fs::write(dir.join(name), serde_json::to_vec(record).expect("json")).expect("write");
}

/// The outcome of `check` on `device` in a record.
fn outcome<'a>(record: &'a mut Value, check: &str) -> &'a mut Value {
    record["outcomes"]
        .as_array_mut()
        .expect("outcomes")
        .iter_mut()
        .find(|o| o["check"] == check)
        .unwrap_or_else(|| panic!("no outcome of {check}"))
}

/// Scales every measurement of `check` (median, min and max alike) by `factor`.
fn scale(record: &mut Value, check: &str, factor: f64) {
    for m in outcome(record, check)["measurements"]
        .as_array_mut()
        .expect("measurements")
    {
        m["value"] = (m["value"].as_f64().expect("value") * factor).into();
    }
}

/// The text row that starts with `label`.
fn row<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label}:\n{text}"))
}

/// The measurement row `check name` of a JSON comparison.
fn measurement<'a>(json: &'a Value, check: &str, name: &str) -> &'a Value {
    json["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .find(|m| m["check"] == check && m["name"] == name)
        .unwrap_or_else(|| panic!("no measurement {check} {name}"))
}

#[test]
fn columns_are_platforms_with_a_summary_first_and_levels_shown() {
    let out = compare(&["sim-faults.json", "pocl.json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = &out.stdout;
    // Columns are named by platform; the files are one row among others.
    let head = row(text, "platform ");
    assert!(
        head.contains("hilt simulated accelerator (baseline)") && head.contains("pthread-skylake-avx512-AMD EPYC"),
        "{head}"
    );
    for label in ["node ", "date ", "profile ", "tier ", "hilt ", "file "] {
        row(text, label);
    }
    assert!(row(text, "date ").contains("2026-11-26 14:48 UTC"));
    assert!(row(text, "profile ").contains("waived 1.0.0") && row(text, "profile ").contains("pocl-cpu 0.1.0"));
    // The summary comes before any check.
    let summary = text.find("mandatory failures").expect("summary");
    assert!(summary < text.find("residue.global.cross_process ").expect("checks"));
    assert!(row(text, "mandatory failures ").ends_with("1                                          2"));
    assert!(
        row(text, "least memory scanned ").contains("50 %") && row(text, "least memory scanned ").contains("0.5 %")
    );
    // Levels: one column when the profiles agree, per cell when they do not.
    assert!(row(text, "residue.local.cross_context ").contains("mandatory"));
    assert!(row(text, "platform.tpm ").contains("fail [informational]"));
    assert!(row(text, "platform.tpm ").contains("pass [recommended]"));
    assert!(text.contains("fail (waived)"), "a waived failure is labelled");
    insta::assert_snapshot!("compare_text", text);
    let md = compare(&["sim-faults.json", "pocl.json", "--format", "markdown"]);
    insta::assert_snapshot!("compare_markdown", md.stdout);
    assert_eq!(compare(&["pocl.json"]).code, Some(2), "two results at least");
}

#[test]
fn leaks_are_coloured_by_verdict_and_only_performance_figures_get_ratios() {
    let dir = common::fixtures().join("results");
    let json = compare_json(&dir, &["sim-faults.json", "pocl.json"]);
    for m in json["measurements"].as_array().expect("measurements") {
        let performance = m["check"].as_str().expect("check").starts_with("performance.");
        assert_eq!(m["performance"], performance, "{m}");
        if !performance {
            for cell in m["cells"].as_array().expect("cells").iter().filter(|c| !c.is_null()) {
                assert!(cell["ratio"].is_null() && cell["call"].is_null(), "{m}");
            }
        }
    }
    // The sim leaked and failed: red, never "better" for the side with fewer bytes.
    let leak = measurement(&json, "residue.global.cross_process", "leaked_bytes");
    assert_eq!(leak["cells"][0]["standing"], "fail");
    assert_eq!(leak["cells"][1]["standing"], "pass");
    let local = measurement(&json, "residue.local.cross_kernel", "leaked_bytes");
    assert_eq!(local["cells"][1]["standing"], "fail", "PoCL leaks local memory");
    let html = compare(&["sim-faults.json", "pocl.json", "--format", "html"]).stdout;
    let html_row = |label: &str| -> &str {
        let start = html
            .find(&format!("<tr><th scope=\"row\">{label}"))
            .unwrap_or_else(|| panic!("no row {label}"));
        &html[start..start + html[start..].find("</tr>").expect("row end")]
    };
    let leak_row = html_row("residue.global.cross_process leaked_bytes");
    assert!(
        leak_row.contains("<td class=\"v-fail\">34668544</td>") && leak_row.contains("<td class=\"v-pass\">0</td>"),
        "{leak_row}"
    );
    assert!(
        !leak_row.contains("better") && !leak_row.contains("worse"),
        "{leak_row}"
    );
    // Performance figures get a ratio; against the simulated device's timings, no call.
    let h2d = html_row("performance.host_to_device_bandwidth bandwidth_median");
    assert!(
        h2d.contains("x0.65 <b class=\"call-other\">simulated, not called</b>"),
        "{h2d}"
    );
    assert!(html.contains("Content-Security-Policy"));
    // Between two PoCL results: the call, beyond both runs' spread only.
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = fixture("pocl.json");
    let mut slower = base.clone();
    scale(&mut slower, "performance.host_to_device_bandwidth", 0.65);
    scale(&mut slower, "performance.device_to_host_bandwidth", 0.9);
    write(tmp.path(), "pocl.json", &base);
    write(tmp.path(), "slower.json", &slower);
    let json = compare_json(tmp.path(), &["pocl.json", "slower.json"]);
    let h2d = measurement(&json, "performance.host_to_device_bandwidth", "bandwidth_median");
    assert_eq!(h2d["cells"][1]["call"], "worse", "{h2d}");
    let d2h = measurement(&json, "performance.device_to_host_bandwidth", "bandwidth_median");
    assert_eq!(
        d2h["cells"][1]["call"], "within_spread",
        "x0.90, but the ranges overlap: {d2h}"
    );
    let html = compare_in(tmp.path(), &["pocl.json", "slower.json", "--format", "html"]).stdout;
    assert!(html.contains("x0.65 <b class=\"call-worse\">worse</b>"), "{html}");
}

#[test]
fn the_json_form_has_platforms_flags_regressions_checks_and_measurements() {
    let dir = common::fixtures().join("results");
    let json = compare_json(&dir, &["sim-faults.json", "pocl.json"]);
    let platforms = json["platforms"].as_array().expect("platforms");
    assert_eq!(platforms.len(), 2);
    let p = &platforms[1];
    for (key, expected) in [
        ("label", "pocl.json"),
        ("device_model", "pthread-skylake-avx512-AMD EPYC"),
        ("node", "vm"),
        ("profile", "pocl-cpu"),
        ("tier", "standard"),
        ("hilt_version", "0.1.0"),
    ] {
        assert_eq!(p[key], expected, "{key}");
    }
    assert!(p["started_at"].as_str().is_some_and(|s| s.starts_with("2026-11-26T")));
    assert_eq!(p["signature"]["status"], "unsigned");
    let s = &p["summary"];
    assert_eq!(s["conformance"], "not_conformant");
    assert_eq!(s["mandatory_failures"], 2);
    assert_eq!(s["waived_failures"], 0);
    assert_eq!(s["mandatory_inconclusive"], 0);
    assert!(
        s["least_scanned_share"]
            .as_f64()
            .is_some_and(|v| (v - 0.005).abs() < 1e-6)
    );
    assert_eq!(s["requirements"]["passed"], 9);
    for flag in json["flags"].as_array().expect("flags") {
        assert!(flag["kind"].is_string() && flag["text"].is_string(), "{flag}");
    }
    assert!(json["flags"].as_array().expect("flags").iter().any(|f| {
        f["kind"] == "coverage"
            && f["text"]
                .as_str()
                .is_some_and(|t| t.contains("(50 % in sim-faults.json; 0.5 % in pocl.json)"))
    }));
    let regressions = json["regressions"].as_array().expect("regressions");
    assert_eq!(regressions[0], serde_json::json!([]), "the baseline has none");
    assert!(regressions[1].as_array().expect("list").iter().any(|r| r
        == &serde_json::json!({"kind": "check", "check": "residue.local.cross_kernel", "level": "mandatory", "was": ["pass"], "now": ["fail"]})));
    assert_eq!(json["noise_threshold"], 0.05);
    let check = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == "residue.global.cross_context")
        .expect("row");
    assert_eq!(check["level"], "mandatory");
    assert_eq!(check["cells"][0]["verdicts"], serde_json::json!(["fail (waived)"]));
    assert_eq!(check["cells"][0]["worst"], "waived");
    let latency = measurement(&json, "performance.launch_latency", "latency_median");
    assert_eq!(latency["better"], "lower");
    let cell = &latency["cells"][1];
    let spread: Vec<f64> = cell["spread"]
        .as_array()
        .expect("[min, max]")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    assert!(
        (spread[0] - 26.6).abs() < 1e-3 && (spread[1] - 118.297).abs() < 1e-3,
        "{spread:?}"
    );
    assert_eq!(cell["repetitions"], 100);
    assert_eq!(
        cell["call"], "simulated",
        "the baseline's timings are the simulated device's"
    );
    assert!(
        cell["ratio"]
            .as_f64()
            .is_some_and(|r| (r - 32.769 / 1.422).abs() < 0.01)
    );
    // Ranges are folded into their median: no separate min and max rows.
    assert!(
        !json["measurements"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|m| m["name"] == "latency_min" || m["name"] == "latency_max")
    );
}

#[test]
fn differing_settings_and_coverage_are_flagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = fixture("pocl.json");
    let mut other = base.clone();
    other["devices"][0]["facts"]["opencl.alloc_host_ptr"] = true.into();
    other["run"]["overrides"] = serde_json::json!(["tenant_timeout_s=5"]);
    other["profile"]["digest"] = "sha256:0000".into();
    outcome(&mut other, "residue.global.cross_process")["params"]["share"] = 0.5.into();
    for m in outcome(&mut other, "residue.global.cross_process")["measurements"]
        .as_array_mut()
        .expect("measurements")
    {
        if m["name"] == "scanned_share" {
            m["value"] = 0.5.into();
        }
    }
    other["outcomes"]
        .as_array_mut()
        .expect("outcomes")
        .retain(|o| o["check"] != "platform.tpm");
    write(dir.path(), "a.json", &base);
    write(dir.path(), "b.json", &other);
    let out = compare_in(dir.path(), &["a.json", "b.json"]);
    let notes: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("note: ")).collect();
    let has = |text: &str| notes.iter().any(|n| n.contains(text));
    for note in [
        "hilt drove the devices with different opencl.alloc_host_ptr (false in a.json; true in b.json)",
        "the results ran with different overrides (none in a.json; tenant_timeout_s=5 in b.json)",
        "profile pocl-cpu was applied with other settings (sha256:7b69",
        "; sha256:0000 in b.json)",
        "check parameters differ: residue.global.cross_process share (0.005 in a.json; 0.5 in b.json)",
        "the results scanned different shares of device memory in residue.global.cross_process (0.5 % in a.json; 50 % \
         in b.json): a pass over less memory is weaker evidence",
        "b.json did not run 1 check(s) that another result ran: platform.tpm",
    ] {
        assert!(has(note), "missing {note:?} in {notes:#?}");
    }
    // Sim knobs are settings too. Any two results that differ are flagged, not only a
    // result and the baseline; a backend only some results drove is compared among those.
    let sim = fixture("sim-faults.json");
    let mut knob = sim.clone();
    knob["devices"][0]["facts"]["sim.scrub"] = "on_free".into();
    write(dir.path(), "sim.json", &sim);
    write(dir.path(), "knob.json", &knob);
    let out = compare_in(dir.path(), &["a.json", "sim.json", "b.json", "knob.json"]);
    let notes: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("note: ")).collect();
    let has = |text: &str| notes.iter().any(|n| n.contains(text));
    assert!(
        has("hilt drove the devices with different sim.scrub (\"never\" in sim.json; \"on_free\" in knob.json)"),
        "{notes:#?}"
    );
    assert!(
        has("hilt drove the devices with different opencl.alloc_host_ptr (false in a.json; true in b.json)"),
        "{notes:#?}"
    );
    assert!(
        has("the results ran different profiles (pocl-cpu in a.json, b.json; waived in sim.json, knob.json)"),
        "{notes:#?}"
    );
}

/// pocl.json as if the node had three such devices: the second one slower, the third one
/// failing the copy floor and ending two checks in error.
fn three_devices() -> Value {
    let mut record = fixture("pocl.json");
    let outcomes = record["outcomes"].as_array().expect("outcomes").clone();
    let devices = record["devices"].as_array().expect("devices").clone();
    for (id, scale) in [("opencl1", 0.5), ("opencl2", 0.01)] {
        let mut device = devices[0].clone();
        device["id"] = id.into();
        record["devices"].as_array_mut().expect("devices").push(device);
        for o in outcomes.iter().filter(|o| o["device"] == "opencl0") {
            let mut o = o.clone();
            o["device"] = id.into();
            o["trial"] = o["trial"].as_str().expect("trial").replace("opencl0", id).into();
            for m in o["measurements"].as_array_mut().expect("measurements") {
                m["value"] = (m["value"].as_f64().expect("value") * scale).into();
            }
            if id == "opencl2" && o["check"] == "performance.device_copy_bandwidth" {
                o["verdict"] = "fail".into();
            }
            if o["check"] == "performance.fma_throughput"
                || id == "opencl2" && o["check"] == "performance.launch_latency"
            {
                o["verdict"] = "error".into();
                o["measurements"] = serde_json::json!([]);
            }
            let trial = o["trial"].clone();
            record["run"]["planned"].as_array_mut().expect("planned").push(trial);
            record["outcomes"].as_array_mut().expect("outcomes").push(o);
        }
    }
    // As a run of three devices would have written it: its counts and decision follow
    // from its outcomes, so that `hilt sign` takes it.
    let mut r: hilt_results::ResultRecord = serde_json::from_value(record).expect("a record");
    r.summary = hilt_results::Summary::tally(r.outcomes.len() as u32, &r.outcomes);
    r.conformance = r.derived_conformance();
    serde_json::to_value(r).expect("json")
}

#[test]
fn a_result_of_several_devices_is_compared_by_its_weakest() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "node.json", &three_devices());
    write(dir.path(), "pocl.json", &fixture("pocl.json"));
    let out = compare_in(dir.path(), &["pocl.json", "node.json"]);
    let text = &out.stdout;
    assert_eq!(out.code, Some(0), "{text}");
    assert!(
        row(text, "platform ").contains("3 × pthread-skylake-avx512-AMD EPYC"),
        "{text}"
    );
    assert!(
        text.contains("node.json ran on 3 devices (opencl0, opencl1, opencl2): verdicts count every device's"),
        "{text}"
    );
    // Higher is better: the third device's value (1 %) stands for the node, with its own
    // repetitions' range; worse beyond both ranges.
    let copy = row(text, "performance.device_copy_bandwidth bandwidth_median");
    assert!(
        copy.contains("0.2607 (0.2463..0.2740) x0.01 worse; worst of 3 devices, range 0.2607..26.065"),
        "{copy}"
    );
    // Lower is better: the slowest launch is the node's; the ranges overlap.
    let latency = row(text, "performance.launch_latency latency_median");
    assert!(
        latency.contains("x1.00 same; worst of 2 of 3 devices, 1 without a value"),
        "{latency}"
    );
    let fma = row(text, "performance.fma_throughput rate_median");
    assert!(fma.contains("x1.00 same; only 1 of 3 devices has a value"), "{fma}");
    // A coverage share stands by its least.
    let share = row(text, "residue.global.cross_context scanned_share");
    assert!(share.contains("least of 3 devices"), "{share}");
    let verdicts = row(text, "performance.device_copy_bandwidth ");
    assert!(verdicts.contains("2 pass, 1 fail"), "{verdicts}");
    assert!(
        text.contains("regression: performance.device_copy_bandwidth (recommended): was pass; now 2 pass, 1 fail"),
        "{text}"
    );
}

#[test]
fn fail_on_regression_exits_4_on_a_regression_and_0_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = fixture("pocl.json");
    write(dir.path(), "base.json", &base);
    let gate = |candidate: &str| compare_in(dir.path(), &["base.json", candidate, "--fail-on-regression"]);
    // The same result: nothing to call.
    write(dir.path(), "same.json", &base);
    let same = gate("same.json");
    assert_eq!(same.code, Some(0), "{}{}", same.stdout, same.stderr);
    assert!(same.stdout.contains("same.json: no regression against base.json"));
    // Faster beyond the spread, and a check that now passes: better, not a regression.
    let mut better = base.clone();
    scale(&mut better, "performance.host_to_device_bandwidth", 2.0);
    outcome(&mut better, "residue.local.cross_kernel")["verdict"] = "pass".into();
    write(dir.path(), "better.json", &better);
    let out = gate("better.json");
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(row(&out.stdout, "performance.host_to_device_bandwidth bandwidth_median").contains("x2.00 better"));
    // A check that passed now inconclusive: a regression.
    let mut unsettled = base.clone();
    outcome(&mut unsettled, "isolation.fault_containment")["verdict"] = "inconclusive".into();
    write(dir.path(), "unsettled.json", &unsettled);
    let out = gate("unsettled.json");
    assert_eq!(out.code, Some(4), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("hilt:   isolation.fault_containment (mandatory): was pass; now inconclusive"),
        "{}",
        out.stderr
    );
    // A recommended check that no longer ran: a regression too.
    let mut missing = base.clone();
    missing["outcomes"]
        .as_array_mut()
        .expect("outcomes")
        .retain(|o| o["check"] != "platform.tpm");
    write(dir.path(), "missing.json", &missing);
    let out = gate("missing.json");
    assert_eq!(out.code, Some(4));
    assert!(
        out.stderr
            .contains("platform.tpm (recommended): was pass; now did not run"),
        "{}",
        out.stderr
    );
    // Slower beyond both runs' spread: a regression; slower within it: none.
    let mut slower = base.clone();
    scale(&mut slower, "performance.device_copy_bandwidth", 0.8);
    write(dir.path(), "slower.json", &slower);
    let out = gate("slower.json");
    assert_eq!(out.code, Some(4), "{}", out.stdout);
    assert!(
        out.stderr.contains(
            "performance.device_copy_bandwidth bandwidth_median: 20.852 GiB/s, was 26.065 GiB/s, worse beyond both \
             runs' spread and the noise threshold"
        ),
        "{}",
        out.stderr
    );
    let mut noise = base.clone();
    scale(&mut noise, "performance.device_copy_bandwidth", 0.95);
    write(dir.path(), "noise.json", &noise);
    let out = gate("noise.json");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(row(&out.stdout, "performance.device_copy_bandwidth bandwidth_median").contains("x0.95 within spread"));
    // Disjoint ranges from 3 repetitions each are not enough to call.
    let mut few = base.clone();
    outcome(&mut few, "performance.device_copy_bandwidth")["evidence"]["repetitions"] = 3.into();
    let mut few_slow = few.clone();
    scale(&mut few_slow, "performance.device_copy_bandwidth", 0.5);
    write(dir.path(), "few.json", &few);
    write(dir.path(), "few-slow.json", &few_slow);
    let out = compare_in(dir.path(), &["few.json", "few-slow.json", "--fail-on-regression"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(
        row(&out.stdout, "performance.device_copy_bandwidth bandwidth_median")
            .contains("x0.50 too few repetitions to call"),
        "{}",
        out.stdout
    );
    // The gate compares two results, no more.
    let out = compare_in(
        dir.path(),
        &["base.json", "same.json", "slower.json", "--fail-on-regression"],
    );
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("--fail-on-regression compares exactly two results"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_input_that_does_not_verify_exits_1_before_any_regression() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::command()
        .args(["keygen", "--out"])
        .arg(dir.path().join("lab"))
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let mut slower = fixture("pocl.json");
    scale(&mut slower, "performance.device_copy_bandwidth", 0.5);
    write(dir.path(), "base.json", &fixture("pocl.json"));
    write(dir.path(), "slower.json", &slower);
    let out = compare_in(
        dir.path(),
        &[
            "base.json",
            "slower.json",
            "--fail-on-regression",
            "--trusted-key",
            "lab.pub",
        ],
    );
    assert_eq!(
        out.code,
        Some(1),
        "unsigned inputs with a trusted key given: {}",
        out.stderr
    );
}

/// Where `hilt run --out DIR` put its record: the one `result.json` below DIR (a run may
/// write into a folder of its own), links not followed.
fn find_result(dir: &Path) -> PathBuf {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && entry.file_name() == "result.json" {
                found.push(entry.path());
            }
        }
    }
    assert_eq!(found.len(), 1, "one result.json below {}: {found:?}", dir.display());
    found.remove(0)
}

#[test]
fn two_real_runs_of_the_simulated_device_are_not_told_apart() {
    // Two runs under the default sim-reference profile: their launch latencies came apart
    // beyond both ranges (1.97 us (1.96..2.28) and 2.60 us (2.36..6.94)) and were called
    // worse, failing the gate, in 2 of 8 pairs of such runs. A simulated device's timings
    // are hilt's own processes on the host: never called, never a regression.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut results = Vec::new();
    for name in ["a", "b"] {
        let out = dir.path().join(name);
        let run = common::command()
            .args(["run", "-q", "--device", "sim0", "--out"])
            .arg(&out)
            .output()
            .expect("hilt runs");
        assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
        let result = find_result(&out);
        results.push(result.to_str().expect("utf-8").to_string());
    }
    let args = [results[0].as_str(), results[1].as_str()];
    let json = compare_json(dir.path(), &args);
    let mut differing = 0;
    for m in json["measurements"].as_array().expect("measurements") {
        let (a, b) = (&m["cells"][0], &m["cells"][1]);
        if m["performance"] == true && a["value"] != b["value"] {
            assert_eq!(b["call"], "simulated", "{m:#}");
            differing += 1;
        }
    }
    assert!(differing > 0, "the runs' timings differ, and no call was made on them");
    assert_eq!(json["regressions"][1], serde_json::json!([]));
    let mut gate = args.to_vec();
    gate.push("--fail-on-regression");
    let out = compare_in(dir.path(), &gate);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("performance."))
            .all(|l| !l.contains(" better") && !l.contains(" worse")),
        "{}",
        out.stdout
    );
}

#[test]
fn a_simulated_device_s_timings_are_never_called() {
    // The sim fixture's launch latency, made slower than the baseline beyond both ranges
    // with its 10 repetitions: a call, and a regression, before; not called now. Its
    // verdicts still count.
    let dir = tempfile::tempdir().expect("tempdir");
    let base = fixture("sim-faults.json");
    let mut slower = base.clone();
    scale(&mut slower, "performance.launch_latency", 1.4);
    write(dir.path(), "base.json", &base);
    write(dir.path(), "slower.json", &slower);
    let out = compare_in(dir.path(), &["base.json", "slower.json", "--fail-on-regression"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        row(&out.stdout, "performance.launch_latency latency_median").contains("x1.40 simulated, not called"),
        "{}",
        out.stdout
    );
    outcome(&mut slower, "performance.launch_latency")["verdict"] = "fail".into();
    write(dir.path(), "failed.json", &slower);
    let out = compare_in(dir.path(), &["base.json", "failed.json", "--fail-on-regression"]);
    assert_eq!(out.code, Some(4), "{}{}", out.stdout, out.stderr);
}

#[test]
fn a_difference_inside_the_noise_threshold_is_not_called_and_does_not_fail_the_gate() {
    // Ranges of 100 repetitions each, a fraction of a percent wide, 3 % apart: two runs of
    // one unchanged GPU differ by that much between nights, and their ranges come apart.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut base = fixture("pocl.json");
    let tighten = |record: &mut Value| {
        let ms = outcome(record, "performance.device_copy_bandwidth")["measurements"]
            .as_array_mut()
            .expect("measurements");
        let median = ms
            .iter()
            .find(|m| m["name"] == "bandwidth_median")
            .and_then(|m| m["value"].as_f64())
            .expect("median");
        for m in ms.iter_mut() {
            match m["name"].as_str() {
                Some("bandwidth_min") => m["value"] = (median * 0.999).into(),
                Some("bandwidth_max") => m["value"] = (median * 1.001).into(),
                _ => {}
            }
        }
    };
    tighten(&mut base);
    let mut drift = base.clone();
    scale(&mut drift, "performance.device_copy_bandwidth", 0.97);
    write(dir.path(), "base.json", &base);
    write(dir.path(), "drift.json", &drift);
    let gate = |extra: &[&str]| {
        let mut args = vec!["base.json", "drift.json", "--fail-on-regression"];
        args.extend_from_slice(extra);
        compare_in(dir.path(), &args)
    };
    let out = gate(&[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let copy = row(&out.stdout, "performance.device_copy_bandwidth bandwidth_median");
    assert!(copy.contains("x0.97 within noise threshold"), "{copy}");
    assert!(out.stdout.contains("and by 5 % or more"), "{}", out.stdout);
    // A threshold of one's own: 1 % calls it, and the gate fires.
    let out = gate(&["--noise-threshold", "1"]);
    assert_eq!(out.code, Some(4), "{}{}", out.stdout, out.stderr);
    assert!(row(&out.stdout, "performance.device_copy_bandwidth bandwidth_median").contains("x0.97 worse"));
    // Beyond the default threshold: called.
    let mut slower = base.clone();
    scale(&mut slower, "performance.device_copy_bandwidth", 0.9);
    write(dir.path(), "slower.json", &slower);
    let out = compare_in(dir.path(), &["base.json", "slower.json", "--fail-on-regression"]);
    assert_eq!(out.code, Some(4), "{}{}", out.stdout, out.stderr);
    // Repetitions not recorded: no chance to judge by, no call.
    let mut unknown = slower.clone();
    outcome(&mut unknown, "performance.device_copy_bandwidth")["evidence"]
        .as_object_mut()
        .expect("evidence")
        .remove("repetitions");
    write(dir.path(), "unknown.json", &unknown);
    let out = compare_in(dir.path(), &["base.json", "unknown.json", "--fail-on-regression"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        row(&out.stdout, "performance.device_copy_bandwidth bandwidth_median").contains("too few repetitions to call")
    );
    let out = gate(&["--noise-threshold", "150"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("not a percentage from 0 to 100"), "{}", out.stderr);
}

#[test]
fn the_gate_catches_a_check_that_got_worse_from_any_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = fixture("pocl.json");
    let gate = |was: &Value, now: &Value| {
        write(dir.path(), "was.json", was);
        write(dir.path(), "now.json", now);
        compare_in(dir.path(), &["was.json", "now.json", "--fail-on-regression"])
    };
    let with = |record: &Value, check: &str, verdict: &str| {
        let mut r = record.clone();
        outcome(&mut r, check)["verdict"] = verdict.into();
        r
    };
    let without = |record: &Value, check: &str| {
        let mut r = record.clone();
        r["outcomes"]
            .as_array_mut()
            .expect("outcomes")
            .retain(|o| o["check"] != check);
        r
    };
    let regressed = |was: &Value, now: &Value, line: &str| {
        let out = gate(was, now);
        assert_eq!(out.code, Some(4), "expected {line:?}:\n{}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains(line), "expected {line:?}:\n{}", out.stderr);
    };
    // A check that could not decide in the baseline finds a leak now.
    let blind = with(&base, "isolation.fault_containment", "inconclusive");
    regressed(
        &blind,
        &with(&base, "isolation.fault_containment", "fail"),
        "isolation.fault_containment (mandatory): was inconclusive; now fail",
    );
    regressed(
        &with(&base, "isolation.fault_containment", "error"),
        &with(&base, "isolation.fault_containment", "fail"),
        "was error; now fail",
    );
    // A failure is not hidden by no longer running its check.
    regressed(
        &base,
        &without(&base, "residue.local.cross_kernel"),
        "residue.local.cross_kernel (mandatory): was fail; now did not run",
    );
    // A check the baseline did not run fails now.
    regressed(
        &without(&base, "platform.tpm"),
        &with(&base, "platform.tpm", "fail"),
        "platform.tpm (recommended): was not run; now fail",
    );
    // A waiver that no longer holds.
    let mut waived = with(&base, "isolation.fault_containment", "fail");
    outcome(&mut waived, "isolation.fault_containment")["waiver"] =
        serde_json::json!({"reason": "vendor fix pending", "expires": "2099-01-01"});
    regressed(
        &waived,
        &with(&base, "isolation.fault_containment", "fail"),
        "isolation.fault_containment (mandatory): was fail (waived); now fail",
    );
    // Several devices: a node whose failing device is joined by a second failing one.
    let node = three_devices();
    let mut worse = node.clone();
    for o in worse["outcomes"].as_array_mut().expect("outcomes") {
        if o["check"] == "performance.device_copy_bandwidth" && o["device"] == "opencl1" {
            o["verdict"] = "fail".into();
        }
    }
    regressed(
        &node,
        &worse,
        "performance.device_copy_bandwidth (recommended): was 2 pass, 1 fail; now 1 pass, 2 fail",
    );
    // Not regressions: the same, better, or one unsettled standing for another.
    for (was, now) in [
        (base.clone(), base.clone()),
        (with(&base, "isolation.fault_containment", "fail"), blind.clone()),
        (blind.clone(), with(&base, "isolation.fault_containment", "error")),
        (base.clone(), with(&base, "residue.local.cross_kernel", "pass")),
        (
            with(&base, "isolation.device_nodes", "not_applicable"),
            without(&base, "isolation.device_nodes"),
        ),
    ] {
        let out = gate(&was, &now);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    }
}

#[test]
fn conformance_is_what_the_outcomes_give_and_a_claim_is_never_green() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A record edited to claim conformance over two mandatory failures.
    let base = fixture("pocl.json");
    let mut edited = base.clone();
    edited["conformance"] = serde_json::json!({"conformant": true, "status": "conformant", "reasons": []});
    write(dir.path(), "pocl.json", &base);
    write(dir.path(), "edited.json", &edited);
    let out = compare_in(dir.path(), &["pocl.json", "edited.json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let cells =
        |text: &str, label: &str| -> Vec<String> { row(text, label).split_whitespace().map(str::to_string).collect() };
    // The edit also fails verification (a record whose stored status its outcomes do not
    // give never verifies), so what its outcomes give is shown as a claim.
    assert_eq!(
        cells(&out.stdout, "conformance "),
        ["conformance", "not_conformant", "claims:", "not_conformant"],
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("note: edited.json records its conformance as conformant, but its outcomes give not_conformant"),
        "{}",
        out.stdout
    );
    let json = compare_json(dir.path(), &["pocl.json", "edited.json"]);
    assert_eq!(json["platforms"][1]["summary"]["conformance"], "not_conformant");
    assert_eq!(json["platforms"][1]["summary"]["recorded_conformance"], "conformant");
    assert!(json["platforms"][0]["summary"].get("recorded_conformance").is_none());
    assert!(
        json["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .any(|f| f["kind"] == "record")
    );
    // A signed record whose payload was altered to pass: a claim, never a green cell.
    let out = common::command()
        .args(["keygen", "--out"])
        .arg(dir.path().join("lab"))
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let mut passing = base.clone();
    for o in passing["outcomes"].as_array_mut().expect("outcomes") {
        if o["verdict"] == "fail" {
            o["verdict"] = "pass".into();
        }
    }
    passing["conformance"] = edited["conformance"].clone();
    write(dir.path(), "passing.json", &passing);
    let out = common::command()
        .args(["sign", "pocl.json", "--key", "lab.key", "--out", "signed.dsse.json"])
        .current_dir(dir.path())
        .output()
        .expect("sign");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut env: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("signed.dsse.json")).expect("envelope")).expect("json");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut statement: Value =
        serde_json::from_slice(&b64.decode(env["payload"].as_str().expect("payload")).expect("base64")).expect("json");
    statement["predicate"] = passing;
    env["payload"] = b64.encode(serde_json::to_vec(&statement).expect("json")).into();
    let mut bytes = serde_json::to_vec(&env).expect("json");
    bytes.push(b'\n');
    std::fs::write(dir.path().join("tampered.dsse.json"), bytes).expect("write");
    for args in [
        &["pocl.json", "tampered.dsse.json", "--trusted-key", "lab.pub"][..],
        &["pocl.json", "tampered.dsse.json"],
        &["pocl.json", "passing.json", "--trusted-key", "lab.pub"],
    ] {
        let candidate = args[1];
        let out = compare_in(dir.path(), args);
        let conformance = row(&out.stdout, "conformance ");
        assert!(
            conformance.ends_with("claims: conformant"),
            "{candidate}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&format!("note: {candidate} did NOT verify (")),
            "{candidate}: {}",
            out.stdout
        );
        let mut html = args.to_vec();
        html.extend(["--format", "html"]);
        let page = compare_in(dir.path(), &html).stdout;
        assert!(
            page.contains("<td class=\"v-inconclusive\">claims: conformant</td>"),
            "{page}"
        );
        // Nothing in the claiming column is green: its headline counts are claims too.
        let summary = &page[page.find("<th scope=\"row\">conformance").expect("row")..];
        let summary = &summary[..summary.find("</tbody>").expect("end")];
        for line in summary.lines() {
            let last = line.rsplit("<td").next().expect("cell");
            assert!(!last.contains("v-pass"), "{candidate}: {line}");
        }
    }
    // The verified baseline is shown as it is, signer and a short key id in one cell.
    let out = compare_in(
        dir.path(),
        &["signed.dsse.json", "pocl.json", "--trusted-key", "lab.pub"],
    );
    assert_eq!(out.code, Some(1), "the unsigned input did not verify: {}", out.stderr);
    let signature = row(&out.stdout, "signature ");
    assert!(signature.contains("verified: lab.pub (keyid "), "{signature}");
    assert!(signature.ends_with("NOT VERIFIED (see the notes)"), "{signature}");
    assert_eq!(
        cells(&out.stdout, "conformance "),
        ["conformance", "not_conformant", "claims:", "not_conformant"],
        "{}",
        out.stdout
    );
}

#[test]
fn extreme_ratios_stay_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = fixture("pocl.json");
    let mut huge = base.clone();
    scale(&mut huge, "performance.fma_throughput", 1e300);
    write(dir.path(), "base.json", &base);
    write(dir.path(), "huge.json", &huge);
    let out = compare_in(dir.path(), &["base.json", "huge.json"]);
    let fma = row(&out.stdout, "performance.fma_throughput rate_median");
    assert!(fma.len() < 200, "{fma}");
    assert!(fma.contains(" x1.000e300 better"), "{fma}");
}

/// Renders `page` in headless Chromium in a window `width` px wide, and returns how wide
/// the document is (`document.documentElement.scrollWidth`). The page is copied with a
/// script that writes the width into the DOM (its policy widened to run that script
/// alone), and the DOM is dumped; a screenshot of the page as it is goes to `shot`.
fn rendered_width(browser: &Path, page: &str, width: u32, dir: &Path, shot: &Path) -> u64 {
    let profile = format!("--user-data-dir={}", dir.join("chromium").display());
    let window = format!("--window-size={width},1600");
    let base = [
        "60",
        browser.to_str().expect("utf-8"),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        window.as_str(),
        profile.as_str(),
    ];
    let plain = dir.join("page.html");
    std::fs::write(&plain, page).expect("write");
    let _ = std::fs::remove_file(shot);
    let out = Command::new("timeout")
        .args(base)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", plain.display()))
        .output()
        .expect("chromium runs");
    assert!(
        shot.metadata().is_ok_and(|m| m.len() > 10_000),
        "no screenshot:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = "content=\"default-src 'none'; style-src 'unsafe-inline'\"";
    assert!(page.contains(policy), "the page keeps its policy");
    let measured = page
        .replace(
            policy,
            "content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\"",
        )
        .replace(
            "</body>",
            "<script>document.body.setAttribute('data-scroll-width', \
             document.documentElement.scrollWidth)</script>\n</body>",
        );
    let probe = dir.join("probe.html");
    std::fs::write(&probe, measured).expect("write");
    let dom = Command::new("timeout")
        .args(base)
        .arg("--dump-dom")
        .arg(format!("file://{}", probe.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    let at = dom
        .find("data-scroll-width=\"")
        .unwrap_or_else(|| panic!("the probe did not run:\n{dom}"));
    let rest = &dom[at + "data-scroll-width=\"".len()..];
    rest[..rest.find('"').expect("quote")].parse().expect("a number")
}

#[test]
fn the_html_comparison_fits_a_1300px_window_with_two_and_four_results() {
    let Some(browser) = common::chromium() else {
        eprintln!("skipped on request: no Chromium");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-artefacts");
    std::fs::create_dir_all(&artefacts).expect("artefact dir");
    // Four results, each signed and verified (its signature row holds a key id)
    // and given by a long path: the fixtures, a node of three devices, and PoCL again with
    // `CL_MEM_ALLOC_HOST_PTR`. Words that long are what pushed tables past the window.
    let out = common::command()
        .args(["keygen", "--out"])
        .arg(dir.path().join("lab"))
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let mut host_ptr = fixture("pocl.json");
    host_ptr["devices"][0]["facts"]["opencl.alloc_host_ptr"] = true.into();
    let records = [
        ("sim", fixture("sim-faults.json")),
        ("pocl", fixture("pocl.json")),
        ("node", three_devices()),
        ("host-ptr", host_ptr),
    ];
    let mut signed = Vec::new();
    for (name, record) in records {
        let inputs = format!("nightly/2026-11-26/rack-12-{name}-node-a100-slot-3");
        std::fs::create_dir_all(dir.path().join(&inputs)).expect("dir");
        write(dir.path(), &format!("{inputs}/result.json"), &record);
        let envelope = format!("{inputs}/result.dsse.json");
        let out = common::command()
            .args([
                "sign",
                &format!("{inputs}/result.json"),
                "--key",
                "lab.key",
                "--out",
                &envelope,
            ])
            .current_dir(dir.path())
            .output()
            .expect("sign");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        signed.push(envelope);
    }
    let cases: [(&str, &[String]); 2] = [("two", &signed[..2]), ("four", &signed[..])];
    // The measurement itself: a page wider than the window reads as wider.
    let wide = compare_in(dir.path(), &[&signed[0], &signed[1], "--format", "html"])
        .stdout
        .replace("<body>", "<body><div style=\"width:2000px\">wide</div>");
    let control = rendered_width(&browser, &wide, 1300, dir.path(), &artefacts.join("control.png"));
    assert!(control >= 2000, "the probe cannot see overflow: {control}");
    for (name, files) in cases {
        let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
        args.extend(["--format", "html", "--trusted-key", "lab.pub"]);
        let out = compare_in(dir.path(), &args);
        assert_eq!(out.code, Some(0), "every input verified: {}", out.stderr);
        let page = out.stdout;
        assert_eq!(page.matches("verified: lab.pub (keyid ").count(), files.len());
        let shot = artefacts.join(format!("compare-{name}.png"));
        let width = rendered_width(&browser, &page, 1300, dir.path(), &shot);
        assert!(
            width <= 1300,
            "{name} results: the page is {width} px wide in a 1300 px window (see {})",
            shot.display()
        );
        eprintln!("{name} results: {width} px; screenshot {}", shot.display());
    }
}

#[test]
fn hostile_texts_cannot_break_any_format() {
    let nasty = "x\r## Injected\n<img src=x onerror=alert(1)> ![i](http://e/x.png) `tick` | pipe \u{1b}[31m";
    let mut record = fixture("pocl.json");
    record["profile"]["id"] = nasty.into();
    record["devices"][0]["name"] = nasty.into();
    record["host"]["hostname"] = nasty.into();
    record["devices"][0]["facts"]["opencl.build_options"] = nasty.into();
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "pocl.json", &fixture("pocl.json"));
    write(dir.path(), "nasty.json", &record);
    let run = |format: &str| compare_in(dir.path(), &["pocl.json", "nasty.json", "--format", format]).stdout;
    let text = run("text");
    assert!(text.contains("Injected"), "the text is there, made harmless");
    assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("## Injected")));
    let md = run("markdown");
    assert!(!md.lines().any(|l| l.starts_with("## Injected")), "{md}");
    assert!(
        !md.contains("<img") && !md.contains("![i]") && !md.contains('\u{1b}'),
        "{md}"
    );
    let html = run("html");
    assert!(
        !html.contains("<img") && html.contains("&lt;img"),
        "HTML escapes record texts"
    );
    let json: Value = serde_json::from_str(&run("json")).expect("JSON holds any text");
    assert_eq!(json["platforms"][1]["node"], nasty);
}
