//! `hilt fleet`: a night of results from many nodes, made from the real fixture records
//! (signed with `hilt sign`, one tampered, one unsigned, one signed by a stranger, one by
//! a real `hilt run` without a lab key, one missing), checked against the night before.
//! Every format; the HTML page in headless Chromium; the exit codes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use serde_json::Value;

/// The fleet's directory, its keys and the expected-nodes file.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for name in ["lab", "stranger"] {
            let out = common::command()
                .args(["keygen", "--out"])
                .arg(site.path(name))
                .output()
                .expect("keygen");
            assert!(out.status.success());
        }
        site
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `hilt fleet ARGS`, paths relative to the site.
    fn fleet(&self, args: &[&str]) -> Output {
        let mut cmd = common::command();
        cmd.current_dir(self.dir.path()).arg("fleet").args(args);
        cmd.output().expect("hilt fleet runs")
    }

    /// Text made stable: the site's path, its keys' ids and run-to-run values.
    fn redact(&self, text: &str) -> String {
        let text = text.replace(&self.dir.path().display().to_string(), "[site]");
        let text = regex_lite::Regex::new(r"key [0-9a-f]{16}")
            .expect("pattern")
            .replace_all(&text, "key [keyid]");
        let text = regex_lite::Regex::new(r"keyid [0-9a-f]{16}…")
            .expect("pattern")
            .replace_all(&text, "keyid [keyid]…");
        common::redact(&text)
    }
}

/// A fixture record as node `node`, changed by `edit`.
fn record(fixture: &str, node: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let path = common::fixtures().join("results").join(fixture);
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    v["host"]["node"] = node.into();
    edit(&mut v);
    v
}

/// Makes every failing outcome of a record pass, and the record conformant.
fn all_pass(v: &mut Value) {
    for o in v["outcomes"].as_array_mut().expect("outcomes") {
        if o["verdict"] == "fail" {
            o["verdict"] = "pass".into();
            o["reason"] = Value::Null;
        }
    }
    v["conformance"] = serde_json::json!({"conformant": true, "status": "conformant", "reasons": []});
}

/// Writes `record` as `dir/result.json` and, with a key, signs it into
/// `dir/result.dsse.json` with `hilt sign`.
fn put(dir: &Path, record: &Value, key: Option<&Path>) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let plain = dir.join("result.json");
    // The summary and conformance follow from the edited outcomes, as a run writes them
    // (`hilt sign` refuses a record whose claims do not).
    let mut record: hilt_results::ResultRecord = serde_json::from_value(record.clone()).expect("a record");
    record.summary = hilt_results::Summary::tally(record.summary.selected, &record.outcomes);
    record.conformance = record.derived_conformance();
    std::fs::write(&plain, serde_json::to_vec_pretty(&record).expect("json")).expect("write");
    if let Some(key) = key {
        let out = common::command()
            .arg("sign")
            .arg(&plain)
            .arg("--key")
            .arg(key)
            .arg("--out")
            .arg(dir.join("result.dsse.json"))
            .output()
            .expect("hilt sign");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Tonight and last night, as the module documentation says.
fn night(site: &Site) {
    let lab = site.path("lab.key");
    let stranger = site.path("stranger.key");
    // Last night: n1 and n2 conformant, n2 on PoCL's older driver.
    put(
        &site.path("base/n1"),
        &record("sim-smoke.json", "n1", |_| {}),
        Some(&lab),
    );
    put(
        &site.path("base/n2"),
        &record("pocl.json", "n2", |v| {
            all_pass(v);
            v["devices"][0]["facts"]["opencl.driver_version"] = "3.0+debian".into();
        }),
        Some(&lab),
    );
    // Tonight. n1 in the per-run layout, with an older run and a `latest` link.
    put(
        &site.path("now/n1/20261129T020000Z-0badc0de"),
        &record("sim-smoke.json", "n1", |v| {
            v["run"]["started_at"] = "2026-11-29T02:00:00.000Z".into()
        }),
        Some(&lab),
    );
    put(
        &site.path("now/n1/20261130T020000Z-600dc0de"),
        &record("sim-smoke.json", "n1", |v| {
            v["run"]["started_at"] = "2026-11-30T02:00:00.000Z".into()
        }),
        Some(&lab),
    );
    std::os::unix::fs::symlink("20261130T020000Z-600dc0de", site.path("now/n1/latest")).expect("link");
    // n2: PoCL as it is, local memory leaking after the driver moved.
    put(&site.path("now/n2"), &record("pocl.json", "n2", |_| {}), Some(&lab));
    // n3: signed, then its payload changed to claim conformance.
    put(&site.path("now/n3"), &record("pocl.json", "n3", |_| {}), Some(&lab));
    tamper(&site.path("now/n3/result.dsse.json"));
    // n4: a result nobody signed.
    put(&site.path("now/n4"), &record("sim-smoke.json", "n4", |_| {}), None);
    // n6: signed by a key the site does not trust.
    put(
        &site.path("now/n6"),
        &record("sim-smoke.json", "n6", |_| {}),
        Some(&stranger),
    );
    std::fs::write(
        site.path("expected.txt"),
        "# the nodes of the nightly run\nn1\nn2\nn3\nn4\nn5\nn6\n",
    )
    .expect("write");
}

/// Changes the conformance the envelope's payload claims, keeping it valid JSON.
fn tamper(path: &Path) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut env: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    let payload = b64.decode(env["payload"].as_str().expect("payload")).expect("base64");
    let text = String::from_utf8(payload)
        .expect("utf-8")
        .replace("\"not_conformant\"", "\"conformant\"");
    env["payload"] = b64.encode(text).into();
    std::fs::write(path, serde_json::to_vec(&env).expect("json")).expect("write");
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_night_with_a_regression_a_tampered_an_unsigned_a_stranger_and_a_missing_node() {
    let site = Site::new();
    night(&site);
    let args = [
        "now",
        "--baseline",
        "base",
        "--trusted-key",
        "lab.pub",
        "--expect-nodes",
        "expected.txt",
    ];
    let out = site.fleet(&args);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report = text(&out);
    // The regression and what changed on its node, in one line.
    assert!(
        report.contains("n2: residue.local.cross_kernel on opencl0: pass → fail (the listener kernel read ")
            && report.contains("; changed on n2: opencl.driver_version 3.0+debian → 3.1+debian on opencl0"),
        "{report}"
    );
    insta::assert_snapshot!("fleet_text", site.redact(&report));
    let fleet = |format: &str| text(&site.fleet(&[&args[..], &["--format", format]].concat()));
    insta::assert_snapshot!("fleet_markdown", site.redact(&fleet("markdown")));
    insta::assert_snapshot!("fleet_json", site.redact(&fleet("json")));
    junit_shape(&fleet("junit"));

    // n7: a real run, without a lab key.
    let run = common::command()
        .args(["run", "-q", "--tier", "smoke", "--node", "n7", "--out"])
        .arg(site.path("now/n7"))
        .output()
        .expect("hilt run");
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let json: Value = serde_json::from_str(&fleet("json")).expect("json");
    let node = |name: &str| -> Value {
        json["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["node"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not listed"))
    };
    for (name, status) in [
        ("n1", "conformant"),
        ("n2", "not_conformant"),
        ("n3", "not_verified"),
        ("n4", "unsigned"),
        ("n5", "missing"),
        ("n6", "not_verified"),
        ("n7", "not_verified"),
    ] {
        assert_eq!(node(name)["status"], status, "{name}");
    }
    assert_eq!(json["exit"], 1);
    assert_eq!(json["nodes"].as_array().expect("nodes").len(), 7);
    // The older n1 run is superseded; the `latest` link counted nothing twice.
    let superseded = json["superseded"].as_array().expect("superseded");
    assert_eq!(superseded.len(), 1, "{superseded:?}");
    assert!(
        superseded[0]["path"]
            .as_str()
            .expect("path")
            .contains("20261129T020000Z")
    );
    assert!(node("n3")["why"].to_string().contains("signature NOT VERIFIED"));
    assert!(node("n7")["why"].to_string().contains("one-off development key"));
}

/// The JUnit report as a JUnit reader sees it: a suite per node, the right cases failing.
fn junit_shape(xml: &str) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut suites = Vec::new();
    let mut current = String::new();
    let mut case = String::new();
    let mut bad: Vec<String> = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let name = |key: &str| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == key.as_bytes())
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                        .unwrap_or_default()
                };
                match e.name().as_ref() {
                    b"testsuite" => {
                        current = name("name");
                        suites.push(current.clone());
                    }
                    b"testcase" => case = name("name"),
                    b"failure" | b"error" => bad.push(format!("{current} {case}")),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    for node in ["n1", "n2", "n3", "n4", "n5", "n6"] {
        assert!(suites.contains(&format!("hilt::node::{node}")), "{suites:?}");
    }
    for expected in [
        "hilt::node::n2 residue::local::cross_kernel::opencl0",
        "hilt::node::n2 hilt::conformance",
        "hilt::node::n3 hilt::signature",
        "hilt::node::n4 hilt::signature",
        "hilt::node::n5 hilt::result",
    ] {
        assert!(bad.iter().any(|b| b == expected), "{expected} should fail: {bad:?}");
    }
    assert!(
        !bad.iter().any(|b| b.starts_with("hilt::node::n1 ")),
        "n1 is green: {bad:?}"
    );
}

#[test]
fn a_fleet_is_green_only_when_every_node_verifies_and_nothing_regressed() {
    let site = Site::new();
    night(&site);
    let good = ["now/n1", "base/n2", "--trusted-key", "lab.pub"];
    let out = site.fleet(&good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).starts_with("hilt fleet: CONFORMANT: 2 of 2 nodes conformant"),
        "{}",
        text(&out)
    );
    // Without keys, nothing verifies.
    let out = site.fleet(&["now/n1", "base/n2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("note: no --trusted-key was given"),
        "{}",
        text(&out)
    );
    // A baseline node that sent nothing tonight is missing.
    let out = site.fleet(&["now/n1", "--baseline", "base", "--trusted-key", "lab.pub"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("n2 missing: no result came back from this node (expected from the baseline)"),
        "{}",
        text(&out)
    );
    // A node that passed and now does not, its own result conformant (a recommended check),
    // still fails the fleet.
    put(
        &site.path("later/n1"),
        &record("sim-smoke.json", "n1", |v| {
            let o = v["outcomes"]
                .as_array_mut()
                .expect("outcomes")
                .iter_mut()
                .find(|o| o["check"] == "performance.launch_latency")
                .expect("launch latency");
            o["verdict"] = "inconclusive".into();
            o["level"] = "recommended".into();
            o["reason"] = "other processes used the device while it was measured".into();
        }),
        Some(&site.path("lab.key")),
    );
    let out = site.fleet(&["later/n1", "--baseline", "now/n1", "--trusted-key", "lab.pub"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("performance.launch_latency on sim0: pass → inconclusive"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains(" regressed "), "{}", text(&out));
    // No result at all is never green.
    std::fs::create_dir_all(site.path("empty")).expect("mkdir");
    let out = site.fleet(&["empty", "--trusted-key", "lab.pub"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("NO RESULTS"), "{}", text(&out));
}

#[test]
fn two_machines_that_give_one_node_name_are_never_hidden_behind_each_other() {
    let site = Site::new();
    let lab = site.path("lab.key");
    // Night `dir`: node gpu-a's results at 01:00 and 02:00, as (machine, fixture, signed).
    type Run<'a> = (Option<&'a str>, &'a str, bool);
    let night = |dir: &str, runs: [Run<'_>; 2]| -> Output {
        for (i, (machine, fixture, signed)) in runs.into_iter().enumerate() {
            let started = format!("2026-11-30T0{}:00:00.000Z", i + 1);
            let v = record(fixture, "gpu-a", |v| {
                if let Some(m) = machine {
                    v["host"]["machine"] = m.into();
                }
                v["run"]["started_at"] = started.into();
            });
            put(&site.path(&format!("{dir}/{i}")), &v, signed.then_some(lab.as_path()));
        }
        site.fleet(&[dir, "--trusted-key", "lab.pub"])
    };
    let (a, b) = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210");
    // Machine A leaks; machine B, newer and under the same name, is conformant. Alone,
    // B's result would stand for the node and the fleet would be green.
    let out = night("now", [(Some(a), "pocl.json", true), (Some(b), "sim-smoke.json", true)]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let said = format!(
        "gpu-a shared_name: results from 2 machines name themselves this node (machine identities {a}, {b}): \
         the newest, from {b}, stands"
    );
    assert!(report.contains(&said), "{report}");
    let json = site.fleet(&["now", "--trusted-key", "lab.pub", "--format", "json"]);
    let v: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["nodes"][0]["status"], "shared_name", "{v}");
    assert_eq!(v["nodes"][0]["machines"], serde_json::json!([a, b]));

    // One machine's two runs: the newer supersedes the older, as ever.
    let out = night(
        "same",
        [(Some(b), "pocl.json", true), (Some(b), "sim-smoke.json", true)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A record without a machine identity (before format 1.2, or no machine ID) cannot be
    // told apart: superseded as before.
    let out = night("old", [(None, "pocl.json", true), (Some(b), "sim-smoke.json", true)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A value that is no machine identity tells no machine apart, and says so (unsigned:
    // `hilt sign` refuses such a record).
    let out = night(
        "odd",
        [
            (Some(b), "sim-smoke.json", true),
            (Some("<b>x</b>"), "sim-smoke.json", false),
        ],
    );
    let report = text(&out);
    assert!(!report.contains("shared_name"), "{report}");
    let said = "host.machine: `<b>x</b>` is not a machine identity (32 lower-case hex digits)";
    assert!(report.contains(said), "{report}");
    // A shared name under a signature problem keeps both facts.
    let out = night(
        "both",
        [(Some(a), "sim-smoke.json", false), (Some(b), "sim-smoke.json", false)],
    );
    let report = text(&out);
    assert!(report.contains("gpu-a unsigned: "), "{report}");
    assert!(
        report.contains("results from 2 machines name themselves this node"),
        "{report}"
    );
}

#[test]
fn unreadable_input_is_exit_2_and_named() {
    let site = Site::new();
    night(&site);
    // A truncated envelope: named, the rest still reported.
    let bytes = std::fs::read(site.path("now/n2/result.dsse.json")).expect("read");
    std::fs::write(site.path("now/n2/result.dsse.json"), &bytes[..bytes.len() / 2]).expect("write");
    let out = site.fleet(&["now", "--trusted-key", "lab.pub"]);
    assert_eq!(out.status.code(), Some(2));
    let report = text(&out);
    assert!(report.contains("Unreadable results (1):"), "{report}");
    assert!(report.contains("now/n2/result.dsse.json: cannot read"), "{report}");
    assert!(report.contains("n1   conformant"), "{report}");

    for (args, says) in [
        (vec!["nowhere"], "cannot read nowhere"),
        (vec!["now", "--trusted-key", "nokey.pub"], "nokey.pub"),
        (
            vec!["now", "--expect-nodes", "bad-nodes.txt"],
            "bad-nodes.txt:2: `n 2` is not a node name",
        ),
        (vec!["now", "--outlier-mad", "0"], "not a factor above 0"),
    ] {
        std::fs::write(site.path("bad-nodes.txt"), "n1\nn 2\n").expect("write");
        let out = site.fleet(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn outliers_are_flagged_by_their_distance_in_mads() {
    let site = Site::new();
    // Ten nodes measuring a launch latency around 2 us, one at 40 us.
    for i in 0..10 {
        let node = format!("n{i:02}");
        put(
            &site.path(&format!("now/{node}")),
            &record("sim-smoke.json", &node, |v| {
                for o in v["outcomes"].as_array_mut().expect("outcomes") {
                    for m in o["measurements"].as_array_mut().expect("measurements") {
                        if m["name"] == "latency_median" {
                            m["value"] = if i == 7 { 3.0 } else { 2.0 + f64::from(i) * 0.01 }.into();
                        }
                    }
                }
            }),
            Some(&site.path("lab.key")),
        );
    }
    let out = site.fleet(&["now", "--trusted-key", "lab.pub"]);
    let report = text(&out);
    assert!(
        report.contains(
            "n07 sim0: performance.launch_latency latency_median = 3 us (31.8 MADs above the median 2.045 us, worse)"
        ),
        "{report}"
    );
    assert_eq!(report.matches("latency_median =").count(), 1, "one outlier: {report}");
    // A factor beyond its distance flags nothing.
    let out = site.fleet(&["now", "--trusted-key", "lab.pub", "--outlier-mad", "40"]);
    assert!(!text(&out).contains("latency_median ="), "{}", text(&out));
}

#[test]
fn the_fleet_page_renders_in_a_browser_with_regressions_first() {
    let Some(browser) = common::chromium() else {
        eprintln!("skipped on request: no Chromium");
        return;
    };
    let site = Site::new();
    night(&site);
    let page = site.path("fleet.html");
    let out = site.fleet(&[
        "now",
        "--baseline",
        "base",
        "--trusted-key",
        "lab.pub",
        "--expect-nodes",
        "expected.txt",
        "--format",
        "html",
        "--out",
        "fleet.html",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).expect("page");
    for outside in ["src=", "href=", "url(", "@import", "<script", "<link", "<iframe"] {
        assert!(!html.contains(outside), "the page refers outside itself: {outside}");
    }
    let rendered = common::render_in_chromium(&browser, &page, "fleet.png");
    assert!(
        rendered.console.is_empty(),
        "console messages:\n{}",
        rendered.console.join("\n")
    );
    let dom = rendered.dom;
    let sections: Vec<&str> = dom
        .split("<h2>")
        .skip(1)
        .map(|s| s.split(" (").next().unwrap_or(s).split('<').next().unwrap_or(s))
        .collect();
    assert_eq!(
        sections.first(),
        Some(&"Regressions since the baseline"),
        "{sections:?}"
    );
    assert!(sections.contains(&"Nodes × checks"), "{sections:?}");
    // The grid: a row per node, the regressed node first, its moved cell outlined.
    let grid = dom.split("<h2>Nodes × checks</h2>").nth(1).expect("grid");
    let rows: Vec<&str> = grid
        .split("<tr>")
        .skip(2)
        .map(|r| {
            r.split("<td class=\"name\">")
                .nth(1)
                .unwrap_or_default()
                .split('<')
                .next()
                .unwrap_or_default()
        })
        .take_while(|n| !n.is_empty())
        .collect();
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert_eq!(rows[0], "n2", "{rows:?}");
    assert!(grid.contains("class=\"fail moved\""), "the regressed cell is outlined");
}

#[test]
fn hostile_texts_in_results_cannot_break_any_format() {
    let site = Site::new();
    let hostile = "x\n<script>alert(1)</script> | *b* \u{1b}[31m&amp;";
    // An unsigned result may claim anything: a node name nobody could give `--node`,
    // check and measurement names full of markup and escape sequences.
    put(
        &site.path("now/evil"),
        &record("sim-smoke.json", hostile, |v| {
            for o in v["outcomes"].as_array_mut().expect("outcomes") {
                o["check"] = format!("{hostile}.check").into();
                o["reason"] = hostile.into();
                o["verdict"] = "fail".into();
                for m in o["measurements"].as_array_mut().expect("measurements") {
                    m["name"] = hostile.into();
                    m["unit"] = hostile.into();
                }
            }
        }),
        None,
    );
    put(
        &site.path("now/n1"),
        &record("sim-smoke.json", "n1", |_| {}),
        Some(&site.path("lab.key")),
    );
    for format in ["text", "markdown", "html", "junit", "json"] {
        let out = site.fleet(&["now", "--trusted-key", "lab.pub", "--format", format]);
        assert_eq!(out.status.code(), Some(1), "{format}");
        let report = text(&out);
        if format != "html" {
            // (A page is no terminal: an escape character there is inert text.)
            assert!(!report.contains('\u{1b}'), "{format}: an escape sequence got through");
        }
        if format == "html" {
            assert!(!report.contains("<script>"), "{format}: markup got through");
        }
        if format == "markdown" {
            // Outside code spans, markup is escaped; a table row keeps its cells.
            for line in report.lines() {
                let outside: String = line.split('`').step_by(2).collect();
                assert!(!outside.contains("<script>"), "markup got through: {line}");
                if line.starts_with("| `") {
                    assert_eq!(line.replace("\\|", "").matches('|').count(), 8, "{line}");
                }
            }
        }
        if format == "text" || format == "markdown" {
            assert!(
                !report
                    .lines()
                    .any(|l| l.starts_with("<script") || l.starts_with("alert")),
                "{format}: a line break got through:\n{report}"
            );
        }
        if format == "json" {
            let v: Value = serde_json::from_str(&report).expect("valid JSON");
            assert!(
                v["nodes"]
                    .as_array()
                    .expect("nodes")
                    .iter()
                    .any(|n| n["node"] == hostile)
            );
        }
        if format == "junit" {
            junit_parses(&report);
        }
    }
}

fn junit_parses(xml: &str) {
    let mut reader = quick_xml::Reader::from_str(xml);
    while !matches!(
        reader.read_event().expect("well-formed XML"),
        quick_xml::events::Event::Eof
    ) {}
}

#[test]
fn an_input_that_cannot_be_read_is_said_once() {
    let site = Site::new();
    put(
        &site.path("now/n1"),
        &record("sim-smoke.json", "n1", |_| {}),
        Some(&site.path("lab.key")),
    );
    // The directory, the baseline and the expected-nodes file: each a path the operating
    // system cannot find, each named with the system's reason, that reason said once.
    for args in [
        &["gone", "--trusted-key", "lab.pub"][..],
        &["now", "--baseline", "gone", "--trusted-key", "lab.pub"],
        &["now", "--expect-nodes", "gone", "--trusted-key", "lab.pub"],
    ] {
        let out = site.fleet(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot read gone: "), "{args:?}: {err}");
        assert_eq!(err.matches("No such file or directory").count(), 1, "{args:?}: {err}");
    }
}

/// Every test case of a JUnit file: (suite, case, state), the state `success`, `failure`,
/// `error` or `skipped`.
fn junit_states(xml: &str) -> Vec<(String, String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut suite = String::new();
    let mut cases: Vec<(String, String, String)> = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |key: &str| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == key.as_bytes())
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                        .unwrap_or_default()
                };
                match e.name().as_ref() {
                    b"testsuite" => suite = attr("name"),
                    b"testcase" => cases.push((suite.clone(), attr("name"), "success".into())),
                    state @ (b"failure" | b"error" | b"skipped") => {
                        if let Some(last) = cases.last_mut() {
                            last.2 = String::from_utf8_lossy(state).into_owned();
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    cases
}

#[test]
fn the_fleet_junit_says_of_each_check_what_the_runs_junit_says() {
    let site = Site::new();
    let lab = site.path("lab.key");
    // A conformant night with what does not decide conformance: an informational check
    // that failed, a recommended one that was inconclusive, one that does not apply, and
    // a mandatory failure under a waiver.
    let tonight = |v: &mut Value| {
        for o in v["outcomes"].as_array_mut().expect("outcomes") {
            let (verdict, reason) = match o["trial"].as_str().expect("trial") {
                "platform::tpm::host" => ("fail", "no TPM"),
                "performance::launch_latency::sim0" => ("inconclusive", "another process used the device"),
                "isolation::iommu::enabled::host" => ("not_applicable", "no IOMMU on this machine"),
                "residue::local::cross_kernel::sim0" => {
                    o["waiver"] = serde_json::json!({"reason": "a known erratum", "expires": "2099-01-01"});
                    ("fail", "the listener read 64 bytes")
                }
                _ => continue,
            };
            o["verdict"] = verdict.into();
            o["reason"] = reason.into();
        }
    };
    put(
        &site.path("now/n1"),
        &record("sim-smoke.json", "n1", tonight),
        Some(&lab),
    );
    let out = site.fleet(&["now", "--trusted-key", "lab.pub", "--format", "junit"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let fleet = junit_states(&text(&out));
    let run = common::command()
        .current_dir(site.path(""))
        .args([
            "report",
            "now/n1/result.dsse.json",
            "--trusted-key",
            "lab.pub",
            "--format",
            "junit",
        ])
        .output()
        .expect("hilt report");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let run = junit_states(&text(&run));
    assert_eq!(run.len(), 13, "{run:?}");
    for (_, case, state) in &run {
        let trial = case.strip_prefix("n1::").expect("a node's case");
        let found = fleet
            .iter()
            .find(|(suite, c, _)| suite == "hilt::node::n1" && c == trial)
            .unwrap_or_else(|| panic!("{trial} is not in the fleet's JUnit: {fleet:?}"));
        assert_eq!(&found.2, state, "{trial}: the run's JUnit says {state}");
    }
    assert!(
        fleet.iter().all(|(_, _, s)| s == "success" || s == "skipped"),
        "a conformant node is green: {fleet:?}"
    );

    // Against a night when all of them passed, each is a regression, and fails.
    put(
        &site.path("base/n1"),
        &record("sim-smoke.json", "n1", |_| {}),
        Some(&lab),
    );
    let out = site.fleet(&[
        "now",
        "--baseline",
        "base",
        "--trusted-key",
        "lab.pub",
        "--format",
        "junit",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let fleet = junit_states(&text(&out));
    for trial in [
        "platform::tpm::host",
        "performance::launch_latency::sim0",
        "isolation::iommu::enabled::host",
        "residue::local::cross_kernel::sim0",
        "hilt::conformance",
    ] {
        assert!(
            fleet.iter().any(|(_, c, s)| c == trial && s == "failure"),
            "{trial} regressed: {fleet:?}"
        );
    }
}

#[test]
fn a_run_read_from_two_files_is_counted_once_and_not_called_older() {
    let site = Site::new();
    let lab = site.path("lab.key");
    // What an artifact upload (or `cp -rL`) makes of a run folder and its `latest` link:
    // two folders holding the same files.
    let run = site.path("now/n1/20261130T020000Z-600dc0de");
    put(&run, &record("sim-smoke.json", "n1", |_| {}), Some(&lab));
    let copy = site.path("now/n1/latest");
    std::fs::create_dir_all(&copy).expect("mkdir");
    for file in ["result.json", "result.dsse.json"] {
        std::fs::copy(run.join(file), copy.join(file)).expect("copy");
    }
    put(
        &site.path("now/n2"),
        &record("sim-smoke.json", "n2", |_| {}),
        Some(&lab),
    );
    // ... and a file named on the command line as well as found below a directory.
    let out = site.fleet(&[
        "now",
        "now/n2/result.dsse.json",
        "--trusted-key",
        "lab.pub",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_str(&text(&out)).expect("json");
    assert_eq!(json["superseded"], serde_json::json!([]), "a copy is no older result");
    let copies: Vec<&str> = json["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .map(|c| c["path"].as_str().expect("path"))
        .collect();
    assert_eq!(copies, ["now/n1/latest/result.dsse.json"], "{json}");
    assert!(json["notes"].to_string().contains("counted once"), "{}", json["notes"]);
    assert!(!json["notes"].to_string().contains("older result"), "{}", json["notes"]);
    assert_eq!(json["nodes"].as_array().expect("nodes").len(), 2);

    // A second file of the run that says something else (it was altered) is no copy: it
    // stays a result of its own.
    alter_kernel(&copy.join("result.dsse.json"));
    let out = site.fleet(&["now", "--trusted-key", "lab.pub", "--format", "json"]);
    let json: Value = serde_json::from_str(&text(&out)).expect("json");
    assert_eq!(json["copies"], serde_json::json!([]), "{json}");
    assert_eq!(json["superseded"].as_array().expect("superseded").len(), 1, "{json}");
}

/// Changes the kernel the envelope's payload names, keeping it valid JSON.
fn alter_kernel(path: &Path) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut env: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    let payload = b64.decode(env["payload"].as_str().expect("payload")).expect("base64");
    let mut statement: Value = serde_json::from_slice(&payload).expect("statement");
    statement["predicate"]["host"]["kernel"] = "6.6.6-altered".into();
    env["payload"] = b64.encode(serde_json::to_vec(&statement).expect("json")).into();
    std::fs::write(path, serde_json::to_vec(&env).expect("json")).expect("write");
}
