//! Reports: every format of `hilt report` on real result fixtures (snapshots), JUnit as a
//! JUnit reader sees it, the HTML page in a real browser, the reports a run writes, and
//! progress on a terminal. `hilt compare` has tests of its own, in `compare.rs`.
//!
//! The browser test needs Chromium (Debian's `chromium`). Without it the test fails,
//! saying so, unless `HILT_SKIP_CHROMIUM=1` asks to skip it; `ci/test.sh` installs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use quick_xml::events::Event;

fn fixture(name: &str) -> String {
    common::fixtures()
        .join("results")
        .join(name)
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

fn report(args: &[&str]) -> String {
    let mut full = vec!["report"];
    full.extend_from_slice(args);
    let out = common::hilt(&full);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A fresh key pair `lab.key`/`lab.pub` in `dir`, and the result fixture `name` signed
/// with it, as `dir/signed.dsse.json`.
fn signed_fixture(dir: &Path, name: &str) -> PathBuf {
    let out = common::command()
        .args(["keygen", "--out"])
        .arg(dir.join("lab"))
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let signed = dir.join("signed.dsse.json");
    let out = common::command()
        .args(["sign", &fixture(name), "--key"])
        .arg(dir.join("lab.key"))
        .arg("--out")
        .arg(&signed)
        .output()
        .expect("sign");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    signed
}

#[test]
fn markdown_summary_of_a_result() {
    insta::assert_snapshot!(report(&[&fixture("sim-faults.json"), "--format", "markdown"]));
}

#[test]
fn junit_of_a_result() {
    insta::assert_snapshot!(report(&[&fixture("sim-faults.json"), "--format", "junit"]));
}

#[test]
fn html_of_a_result() {
    insta::assert_snapshot!(report(&[&fixture("pocl.json"), "--format", "html"]));
}

#[test]
fn json_of_a_result() {
    let text = report(&[&fixture("sim-faults.json"), "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["signature"]["status"], "unsigned");
    let trace = value["traceability"].as_array().expect("traceability");
    let dp7 = trace.iter().find(|t| t["id"] == "DP-7").expect("DP-7");
    assert_eq!(dp7["state"], "failed", "residue failed under the planted fault");
    assert!(
        trace.iter().any(|t| t["state"] == "manual"),
        "some requirements need manual evidence"
    );
    insta::assert_json_snapshot!(value["traceability"]);
}

/// Attribute `name` of an XML start tag.
fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name.as_bytes())
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
}

#[test]
fn junit_counts_and_shape_are_what_junit_readers_expect() {
    let xml = report(&[&fixture("sim-faults.json"), "--format", "junit"]);
    let record = hilt_results::ResultRecord::from_json(&std::fs::read(fixture("sim-faults.json")).expect("fixture"))
        .expect("record");
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut stack: Vec<String> = Vec::new();
    let (mut cases, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    let mut root_counts = None;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) if stack.is_empty() => {
                assert_eq!(e.name().as_ref(), b"testsuites", "the root is <testsuites>");
                root_counts = Some((
                    attr(&e, "tests"),
                    attr(&e, "failures"),
                    attr(&e, "errors"),
                    attr(&e, "skipped"),
                ));
                stack.push("testsuites".into());
            }
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let parent = stack.last().cloned().unwrap_or_default();
                match name.as_str() {
                    "testsuite" => assert_eq!(parent, "testsuites"),
                    "testcase" => {
                        assert_eq!(parent, "testsuite");
                        assert!(attr(&e, "name").is_some() && attr(&e, "classname").is_some());
                        assert!(attr(&e, "time").is_some_and(|t| t.parse::<f64>().is_ok()));
                        cases += 1;
                    }
                    "properties" => assert_eq!(parent, "testsuite", "properties only on suites"),
                    "failure" | "error" | "system-out" | "skipped" => assert_eq!(parent, "testcase"),
                    other => panic!("unexpected element <{other}> in <{parent}>"),
                }
                if name == "skipped" {
                    assert!(attr(&e, "message").is_some(), "<skipped> says why");
                }
                errors += usize::from(name == "error");
                failures += usize::from(name == "failure");
                skipped += usize::from(name == "skipped");
                stack.push(name);
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let parent = stack.last().cloned().unwrap_or_default();
                match name.as_str() {
                    "property" => assert_eq!(parent, "properties"),
                    "skipped" | "failure" | "error" => {
                        assert_eq!(parent, "testcase");
                        assert!(attr(&e, "message").is_some(), "<{name}> says why");
                    }
                    other => panic!("unexpected element <{other}/> in <{parent}>"),
                }
                skipped += usize::from(name == "skipped");
                errors += usize::from(name == "error");
                failures += usize::from(name == "failure");
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    // JUnit counts as the run decides: only what keeps the run from being conformant is
    // a failure or an error; what does not decide is skipped.
    use hilt_harness::record::{Standing, standing};
    let standings: Vec<Standing> = record.outcomes.iter().map(|o| standing(o, record.run.tier)).collect();
    let blocks = |f: bool| {
        standings
            .iter()
            .filter(|s| matches!(s, Standing::Blocks { failure, .. } if *failure == f))
            .count()
    };
    assert_eq!(cases, record.outcomes.len());
    assert_eq!(
        failures,
        blocks(true),
        "mandatory failures without a waiver are failures"
    );
    assert_eq!(errors, blocks(false), "inconclusive and error are errors, never a pass");
    assert_eq!(
        skipped,
        standings.iter().filter(|s| matches!(s, Standing::Aside(_))).count(),
        "what does not decide is skipped, with its reason"
    );
    assert!(skipped > 0 && failures > 0, "the fixture has both");
    let n = |v: usize| Some(v.to_string());
    assert_eq!(root_counts, Some((n(cases), n(failures), n(errors), n(skipped))));
}

#[test]
fn signed_results_are_reported_with_their_signature_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signed = signed_fixture(dir.path(), "pocl.json");
    let signed = signed.to_str().expect("utf-8");
    let public = dir.path().join("lab.pub");
    let verified = report(&[signed, "--trusted-key", public.to_str().expect("utf-8")]);
    assert!(verified.contains("Signature: verified: signed by"), "{verified}");
    let unverified = report(&[signed]);
    assert!(
        unverified.contains("Signature: NOT VERIFIED: signature: no trusted key given"),
        "{unverified}"
    );
    let html = report(&[signed, "--format", "html"]);
    assert!(
        html.contains("<span class=\"sig-bad\">NOT VERIFIED"),
        "the page says so"
    );
}

#[test]
fn a_run_writes_the_reports_it_is_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    let run = common::run(&[
        "--junit",
        &path("r.xml"),
        "--html",
        &path("r.html"),
        "--markdown",
        &path("r.md"),
        "residue::global",
    ]);
    assert_eq!(run.exit, 0, "{}", run.stderr);
    let xml = std::fs::read_to_string(path("r.xml")).expect("junit written");
    assert!(
        xml.contains("::residue::global::cross_process::sim0\" classname="),
        "{xml}"
    );
    let md = std::fs::read_to_string(path("r.md")).expect("markdown written");
    assert!(md.starts_with("## hilt: partial"), "{md}");
    let html = std::fs::read_to_string(path("r.html")).expect("html written");
    assert!(html.contains("Requirement traceability"));
    // Not a terminal here: no progress lines.
    assert!(!run.stderr.contains("hilt: [1/"), "{}", run.stderr);
}

#[test]
fn the_leak_bound_stands_beside_the_verdict() {
    // One probabilistic check that passes and one that fails at its first attempt.
    let run = common::run(&[
        "--sim-fault",
        "local-clear-cross-process-only",
        "residue::local::cross_",
    ]);
    let result = run.dir.join("result.json");
    let result = result.to_str().expect("utf-8");
    let md = report(&[result, "--format", "markdown"]);
    let section = md
        .split("### Leak probability")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").nth(1))
        .expect("a leak probability section");
    insta::assert_snapshot!(section);
    let html = report(&[result, "--format", "html"]);
    assert!(
        html.contains(
            "<span class=\"badge fail\">fail</span><br><small>leak probability per attempt at most 1 at 90 % \
             confidence (1 attempt, 1 hit)</small>"
        ),
        "{html}"
    );
    // A check that is not probabilistic states no bound.
    let perf = common::run(&["performance::launch_latency"]);
    let result = perf.dir.join("result.json");
    assert!(!report(&[result.to_str().expect("utf-8"), "--format", "markdown"]).contains("Leak probability"));
}

#[test]
fn a_global_checks_bound_is_stated_per_size_with_its_basis() {
    // The global residue checks hold the leak target at each allocation size: the bound
    // comes from the size with the fewest attempts, never from all attempts together.
    let run = common::run(&["residue::global::cross_process"]);
    let o = &run.record.outcomes[0];
    let sizes = o.evidence["round_bytes"].as_array().expect("round_bytes").len();
    let per_size = o.evidence["attempts_needed_per_size"].as_u64().expect("per size");
    let attempts = o.evidence["attempts"].as_u64().expect("attempts");
    assert_eq!(o.verdict.as_str(), "pass", "{:?}", o.reason);
    assert!(sizes > 1 && attempts > per_size, "{:?}", o.evidence);
    let result = run.dir.join("result.json");
    let md = report(&[result.to_str().expect("utf-8"), "--format", "markdown"]);
    let expected = format!(
        "at 90 % confidence at each of {sizes} sizes ({per_size} attempts at the size with the fewest, {attempts} \
         in all, 0 hits)"
    );
    assert!(md.contains(&expected), "{expected}\n{md}");
    assert!(!md.contains(&format!("({attempts} attempts, 0 hits)")), "{md}");
}

#[test]
fn progress_shows_on_a_terminal() {
    // `script` gives the run a pseudo-terminal.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` (util-linux) to make a terminal");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cmd = format!(
        "{} run --out {} residue::global",
        common::hilt_bin().display(),
        dir.path().display()
    );
    let out = common::command_for("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hilt: [1/2]") && text.contains("hilt: [2/2]"), "{text}");
}

#[test]
fn the_html_report_renders_in_a_browser_without_console_errors() {
    let Some(browser) = common::chromium() else {
        eprintln!("skipped on request: no Chromium");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("report.html");
    std::fs::write(&page, report(&[&fixture("sim-faults.json"), "--format", "html"])).expect("write");
    // Nothing to fetch: no reference to anything outside the page.
    let html = std::fs::read_to_string(&page).expect("page");
    for outside in ["src=", "href=", "url(", "@import", "<script", "<link", "<iframe"] {
        assert!(!html.contains(outside), "the page refers outside itself: {outside}");
    }
    let rendered = common::render_in_chromium(&browser, &page, "report.png");
    // The page's content security policy makes any attempt to load something a console
    // message, so "no console message" also means "nothing tried to load".
    assert!(
        rendered.console.is_empty(),
        "console messages:\n{}",
        rendered.console.join("\n")
    );
    // The browser's own parse of the page holds every section.
    let dom = rendered.dom;
    for section in [
        "Summary",
        "Needs attention",
        "Measurements against thresholds",
        "Outcomes",
        "Requirement traceability",
        "Devices and firmware",
    ] {
        assert!(
            dom.contains(&format!("<h2>{section}")),
            "{section} missing from the rendered page"
        );
    }
    assert!(dom.contains("<svg"), "the chart is inline SVG");
    assert!(
        !dom.contains("http://") || !dom.contains("src=\"http"),
        "nothing is fetched"
    );
}

/// A record whose texts try to break every format: line breaks, escape sequences,
/// Markdown and HTML markup, characters XML cannot hold.
fn hostile_record() -> String {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("sim-faults.json")).expect("fixture")).expect("json");
    let nasty = "x\r## Injected\n<img src=x onerror=alert(1)> ![i](http://e/x.png) `tick` | pipe \u{1b}[31m \u{fffe}";
    let outcomes = value["outcomes"].as_array_mut().expect("outcomes");
    let failed = outcomes
        .iter_mut()
        .find(|o| o["verdict"] == "fail")
        .expect("a failed outcome");
    failed["reason"] = nasty.into();
    value["profile"]["id"] = "p`rofile\nx".into();
    let dir = std::env::temp_dir().join(format!("hilt-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("hostile.json");
    std::fs::write(&path, serde_json::to_vec(&value).expect("json")).expect("write");
    path.to_str().expect("utf-8").to_string()
}

#[test]
fn hostile_texts_cannot_break_any_format() {
    let path = hostile_record();
    let md = report(&[&path, "--format", "markdown"]);
    assert!(!md.lines().any(|l| l.starts_with("## Injected")), "{md}");
    assert!(
        !md.contains('\r') && !md.contains('\u{1b}'),
        "control characters reach the summary"
    );
    assert!(!md.contains("<img") && !md.contains("![i]"), "{md}");
    let html = report(&[&path, "--format", "html"]);
    assert!(
        !html.contains("<img") && html.contains("&lt;img"),
        "HTML escapes the reason"
    );
    let xml = report(&[&path, "--format", "junit"]);
    let mut reader = quick_xml::Reader::from_str(&xml);
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("JUnit not well-formed: {e}"),
        }
    }
    assert!(!xml.contains('\u{fffe}'), "a character XML 1.0 cannot hold");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn an_unfinished_run_is_never_green_in_junit() {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("pocl.json")).expect("fixture")).expect("json");
    value["outcomes"].as_array_mut().expect("outcomes").truncate(3);
    value["run"]["complete"] = false.into();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("partial.json");
    std::fs::write(&path, serde_json::to_vec(&value).expect("json")).expect("write");
    let xml = report(&[path.to_str().expect("utf-8"), "--format", "junit"]);
    let planned = value["run"]["planned"].as_array().expect("planned").len();
    assert_eq!(xml.matches("type=\"not run\"").count(), planned - 3, "{xml}");
}

#[test]
fn a_tampered_envelope_leads_with_not_verified_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signed = signed_fixture(dir.path(), "pocl.json");
    // Claim conformance in the payload, keep the signature.
    let mut env: serde_json::Value = serde_json::from_slice(&std::fs::read(&signed).expect("envelope")).expect("json");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = String::from_utf8(b64.decode(env["payload"].as_str().expect("payload")).expect("b64"))
        .expect("utf-8")
        .replace("\"status\":\"not_conformant\"", "\"status\":\"conformant\"");
    env["payload"] = b64.encode(payload).into();
    let mut bytes = serde_json::to_vec(&env).expect("json");
    bytes.push(b'\n');
    std::fs::write(&signed, bytes).expect("write");
    let public = dir.path().join("lab.pub");
    let out = common::command()
        .args(["report", signed.to_str().expect("utf-8"), "--trusted-key"])
        .arg(&public)
        .output()
        .expect("report");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a report of a tampered result is not a success"
    );
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.starts_with("## hilt: NOT VERIFIED (the result claims: conformant)"),
        "{md}"
    );
    let out = common::command()
        .args([
            "report",
            signed.to_str().expect("utf-8"),
            "--format",
            "junit",
            "--trusted-key",
        ])
        .arg(&public)
        .output()
        .expect("report");
    assert!(String::from_utf8_lossy(&out.stdout).contains("type=\"not verified\""));
}

/// The sim's smoke run is conformant and exits 0, and its JUnit agrees: informational
/// checks that did not pass are skipped with their verdict and level, never failures or
/// errors; suite and case names carry the node, so files merged from many nodes never
/// collide; libtest's line counts what hilt's summary counts.
#[test]
fn junit_of_a_conformant_run_has_no_failures_and_names_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("j.xml");
    let run = common::run(&[
        "--tier",
        "smoke",
        "--sysfs-root",
        common::host_fixture("devvm").to_str().expect("utf-8"),
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.exit, 0, "{}", run.stderr);
    let xml = std::fs::read_to_string(&junit).expect("junit");
    // The node the record stands for: a replay's own (`replay-...`), not the machine's.
    let node = run.record.host.node_name();
    assert!(node.starts_with("replay-"), "{node}");
    let root = xml.lines().nth(1).expect("root line");
    assert!(root.contains("failures=\"0\" errors=\"0\""), "{root}");
    assert!(
        !root.contains("skipped=\"0\""),
        "the host's findings are shown, as skipped: {root}"
    );
    assert!(
        xml.contains(&format!("<testsuite name=\"hilt::{node}::sim0\"")),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            "<testcase name=\"{node}::residue::global::cross_process::sim0\""
        )),
        "{xml}"
    );
    assert!(
        xml.contains("<skipped message=\"informational check, does not decide conformance: "),
        "{xml}"
    );
    // libtest's line and hilt's summary count the same trials the same way.
    let tally = hilt_harness::record::Tally::of(&run.record);
    let libtest = format!(
        "test result: ok. {} passed; {} failed; {} ignored; 0 measured; {} filtered out",
        tally.passed, tally.failed, tally.ignored, tally.filtered_out
    );
    assert!(run.stdout.contains(&libtest), "{libtest}\n{}", run.stdout);
    assert!(run.stderr.contains(&tally.line()), "{}", run.stderr);
    assert!(tally.ignored > 0, "the development VM's host checks do not pass");
}

#[test]
fn a_requirement_is_not_passed_while_trials_of_it_were_stopped() {
    // A run stopped by SIGTERM after some trials of a requirement passed: the others of
    // that requirement never ran, so the requirement is open, not passed.
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("pocl.json")).expect("fixture")).expect("json");
    let whole: serde_json::Value =
        serde_json::from_str(&report(&[&fixture("pocl.json"), "--format", "json"])).expect("json");
    let passed: Vec<String> = whole["traceability"]
        .as_array()
        .expect("traceability")
        .iter()
        .filter(|t| t["state"] == "passed" && t["outcomes"].as_array().is_some_and(|o| o.len() >= 2))
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect();
    let id = passed
        .first()
        .expect("a requirement passed by two trials or more")
        .clone();
    let mut cut = value.clone();
    let outcomes = cut["outcomes"].as_array_mut().expect("outcomes");
    let at = outcomes
        .iter()
        .rposition(|o| {
            o["requirements"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == id.as_str()))
        })
        .expect("an outcome of it");
    let stopped = outcomes.remove(at);
    cut["run"]["complete"] = false.into();
    cut["run"]["interrupted"] = serde_json::json!({
        "signal": "SIGTERM",
        "at": "2026-01-01T00:00:00Z",
        "not_run": [stopped["trial"].clone()],
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stopped.json");
    std::fs::write(&path, serde_json::to_vec(&cut).expect("json")).expect("write");
    let text = report(&[path.to_str().expect("utf-8"), "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let row = json["traceability"]
        .as_array()
        .expect("traceability")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .expect("requirement")
        .clone();
    assert_eq!(row["state"], "unsettled", "{} was stopped: {row}", stopped["trial"]);
}
