//! Reports: every format of `hilt report` on real result fixtures (snapshots), JUnit as a
//! JUnit reader sees it, the HTML page in a real browser, `hilt compare`, the reports a
//! run writes, and progress on a terminal.
//!
//! The browser test needs Chromium (Debian's `chromium`). Without it the test fails,
//! saying so, unless `HILT_SKIP_CHROMIUM=1` asks to skip it; `.ci/run` installs it.

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

/// The fixtures' paths as the snapshots show them.
fn redact(text: &str) -> String {
    text.replace(&fixture(""), "[fixtures]/")
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
                    "failure" | "error" | "system-out" => assert_eq!(parent, "testcase"),
                    other => panic!("unexpected element <{other}> in <{parent}>"),
                }
                errors += usize::from(name == "error");
                failures += usize::from(name == "failure");
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
    let s = &record.summary;
    assert_eq!(cases, record.outcomes.len());
    assert_eq!(failures, s.fail as usize, "every fail, waived or not, is a failure");
    assert_eq!(
        errors,
        (s.error + s.inconclusive) as usize,
        "inconclusive is an error, never a pass"
    );
    assert_eq!(skipped, s.not_applicable as usize);
    let n = |v: usize| Some(v.to_string());
    assert_eq!(root_counts, Some((n(cases), n(failures), n(errors), n(skipped))));
}

#[test]
fn signed_results_are_reported_with_their_signature_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::command()
        .args(["keygen", "--out"])
        .arg(dir.path().join("lab"))
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let signed = dir.path().join("fixture.dsse.json");
    let out = common::command()
        .args(["sign", &fixture("pocl.json"), "--key"])
        .arg(dir.path().join("lab.key"))
        .arg("--out")
        .arg(&signed)
        .output()
        .expect("sign");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
fn compare_shows_results_side_by_side_and_flags_what_differs() {
    let out = common::hilt(&["compare", &fixture("sim-faults.json"), &fixture("pocl.json")]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = redact(&String::from_utf8(out.stdout).expect("utf-8"));
    assert!(text.contains("note: [fixtures]/pocl.json ran profile pocl-cpu, [fixtures]/sim-faults.json ran waived"));
    assert!(text.contains("ran on a simulated device"));
    insta::assert_snapshot!("compare_text", text);
    let out = common::hilt(&[
        "compare",
        &fixture("sim-faults.json"),
        &fixture("pocl.json"),
        "--format",
        "markdown",
    ]);
    insta::assert_snapshot!(
        "compare_markdown",
        redact(&String::from_utf8(out.stdout).expect("utf-8"))
    );
    let out = common::hilt(&["compare", &fixture("pocl.json"), "--format", "html"]);
    assert_eq!(out.status.code(), Some(2), "two results at least");
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
        xml.contains("<testcase name=\"residue::global::cross_process::sim0\""),
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
fn progress_shows_on_a_terminal() {
    // `script` gives the run a pseudo-terminal.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` (util-linux) to make a terminal");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cmd = format!(
        "{} run -q --out {} residue::global",
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

/// Chromium, or why the browser test is skipped.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(PathBuf::from);
    if found.is_none() && std::env::var("HILT_SKIP_CHROMIUM").as_deref() != Ok("1") {
        panic!("this test needs Chromium (Debian: apt-get install chromium); set HILT_SKIP_CHROMIUM=1 to skip it");
    }
    found
}

#[test]
fn the_html_report_renders_in_a_browser_without_console_errors() {
    let Some(browser) = chromium() else {
        eprintln!("skipped on request: no Chromium");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("report.html");
    std::fs::write(&page, report(&[&fixture("sim-faults.json"), "--format", "html"])).expect("write");
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-artefacts");
    std::fs::create_dir_all(&artefacts).expect("artefact dir");
    let shot = artefacts.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("file://{}", page.display());
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,2400",
    ];
    let out = Command::new(&browser)
        .args(base)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(shot.metadata().is_ok_and(|m| m.len() > 10_000), "no screenshot:\n{log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages:\n{}", console.join("\n"));
    // The browser's own parse of the page holds every section.
    let dom = Command::new(&browser)
        .args(base)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
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
    eprintln!("screenshot: {}", shot.display());
}
