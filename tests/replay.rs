//! A capture replayed under the profiles hilt ships: the profile of the captured hardware
//! runs its host and PCI checks on the capture's functions, records its device checks as
//! not run, says which capture it replayed and that the run is partial; the live devices
//! of the machine that replays are left out unless `--device` names them; and without
//! `--profile` a replay picks the profile of the captured hardware.

mod common;

use std::path::{Path, PathBuf};

use hilt_harness::check::Scope;
use hilt_results::{ConformanceStatus, Level, Standing, Verdict, standing};
use sha2::Digest;

/// `hilt capture` of fixture tree `name`, unpacked: (the temporary directory, the root).
fn captured(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar = tmp.path().join("capture.tar");
    let out = common::hilt(&[
        "capture",
        tar.to_str().expect("utf-8"),
        "--sysfs-root",
        common::host_fixture(name).to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    tar::Archive::new(std::fs::File::open(&tar).expect("open"))
        .unpack(&root)
        .expect("unpack");
    (tmp, root)
}

/// `hilt run` examining only the tree under `root` (no backend probed, no sim asked
/// for), with the shipped profiles alone.
fn replay(root: &Path, args: &[&str]) -> common::Run {
    let mut full = vec!["--sysfs-root", root.to_str().expect("utf-8")];
    full.extend_from_slice(args);
    common::run_with(&[("HILT_BACKENDS", "none"), ("HILT_PROFILE_PATH", "")], &full)
}

#[test]
fn a_capture_replays_under_the_shipped_profile_of_its_hardware() {
    let (_tmp, root) = captured("h100-good");
    let run = replay(&root, &["--profile", "nvidia-h100-sxm"]);
    assert_ne!(run.exit, 2, "the profile matches the capture's H100:\n{}", run.stderr);
    let record = &run.record;
    assert_eq!(record.profile.id, "nvidia-h100-sxm");
    let device = "pci-0000-17-00.0";
    assert!(record.devices.iter().any(|d| d.id == device));

    // Every host and PCI check of the tier ran; no device check did.
    let catalogue = hilt_suites::catalogue();
    let profile = hilt_harness::profile::Library::standard()
        .load("nvidia-h100-sxm", &catalogue, hilt_harness::host::Date::today())
        .expect("shipped profile");
    let mut device_checks = Vec::new();
    for (id, settings) in profile.checks_in(record.run.tier) {
        let check = catalogue.get(id).expect("known check");
        let on = match check.scope {
            Scope::Host => "host",
            Scope::Pci => device,
            Scope::Device => {
                device_checks.push((id, settings.level));
                continue;
            }
        };
        assert!(
            record.outcomes.iter().any(|o| o.check == id && o.device == on),
            "{id} did not run on {on}"
        );
    }
    assert!(device_checks.len() >= 10, "{device_checks:?}");
    assert!(
        record
            .outcomes
            .iter()
            .all(|o| catalogue.get(&o.check).is_some_and(|c| c.scope != Scope::Device)),
        "no device check can run on a capture"
    );

    // The device checks are recorded as not run, with why, at the profile's levels.
    let not_run: Vec<(&str, Level)> = record.run.not_run.iter().map(|n| (n.check.as_str(), n.level)).collect();
    assert_eq!(not_run, device_checks);
    for n in &record.run.not_run {
        assert_eq!(n.device, device);
        assert!(
            n.reason
                .contains("a capture holds the host's files, not the accelerator"),
            "{}",
            n.reason
        );
        assert!(!record.outcomes.iter().any(|o| o.trial == n.trial));
    }

    // Partial, and says of which capture.
    assert_eq!(record.conformance.status, ConformanceStatus::Partial);
    assert!(
        record.conformance.reasons[0].starts_with(&format!(
            "{} device trial(s) of the profile could not run: no tenant can open {device}",
            device_checks.len()
        )),
        "{:?}",
        record.conformance.reasons
    );
    let replay = record.run.replay.as_ref().expect("the record says it is a replay");
    let manifest = std::fs::read(root.join(hilt_harness::hostfs::MANIFEST)).expect("manifest");
    let captured: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    assert_eq!(replay.captured_at.as_deref(), captured["captured_at"].as_str());
    assert!(replay.captured_at.is_some(), "a capture knows when it was taken");
    assert_eq!(
        replay.manifest_sha256.as_deref(),
        Some(hilt_harness::hex(&sha2::Sha256::digest(&manifest)).as_str())
    );
    assert_eq!(
        replay.tree_sha256,
        hilt_harness::hostfs::tree_sha256(&root),
        "the digest of the tree that was read"
    );

    // JUnit shows the device checks as skipped, never as passed.
    let junit = common::hilt(&[
        "report",
        run.dir.join("result.json").to_str().expect("utf-8"),
        "--format",
        "junit",
    ]);
    let xml = String::from_utf8_lossy(&junit.stdout);
    assert!(
        xml.contains("residue::global::cross_process::pci-0000-17-00.0") && xml.contains("not run: pci-0000-17-00.0"),
        "{xml}"
    );
}

#[test]
fn the_live_host_and_a_replay_of_another_tree_are_told_apart() {
    let (_tmp, root) = captured("h100-good");
    let first = replay(&root, &["--profile", "nvidia-h100-sxm", "platform"]);
    let other = replay(
        &common::host_fixture("root-login-key"),
        &["--profile", "nvidia-h100-sxm", "platform"],
    );
    let (a, b) = (
        first.record.run.replay.expect("replay"),
        other.record.run.replay.expect("replay"),
    );
    assert_ne!(a.tree_sha256, b.tree_sha256);
    assert_eq!(b.captured_at, None, "a hand-made tree has no capture time");
    // Filters apply to what could not run too: a platform-only run asked for no device check.
    assert!(first.record.run.not_run.is_empty(), "{:?}", first.record.run.not_run);
}

#[test]
fn without_a_profile_a_replay_picks_the_profile_of_the_captured_hardware() {
    let (_tmp, root) = captured("h100-good");
    let run = replay(&root, &["-q"]);
    assert_eq!(run.record.profile.id, "nvidia-h100-sxm", "{}", run.stderr);
    assert!(
        run.stderr
            .contains("profile nvidia-h100-sxm chosen for the devices here"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("simulated device"), "{}", run.stderr);
    assert!(run.record.devices.iter().all(|d| !d.simulated));

    // A tree with no accelerator falls back to the sim, as a live host without one does.
    let run = replay(&common::host_fixture("devvm"), &["-q"]);
    assert_eq!(run.record.profile.id, "sim-reference", "{}", run.stderr);

    // HILT_BACKENDS=sim asks for the sim whatever the tree holds (the test suite runs so).
    let run = common::run(&["-q", "--sysfs-root", root.to_str().expect("utf-8")]);
    assert_eq!(run.record.profile.id, "sim-reference");
    assert!(
        run.record.run.not_run.is_empty(),
        "the sim profile does not match the H100"
    );
}

#[test]
fn profiles_list_what_a_replayed_tree_matches() {
    let out = common::command()
        .env("HILT_BACKENDS", "none")
        .env_remove("HILT_PROFILE_PATH")
        .args(["profiles", "--sysfs-root"])
        .arg(common::host_fixture("h100-good"))
        .output()
        .expect("hilt runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{id} not listed:\n{text}"))
            .to_string()
    };
    for id in ["nvidia-h100-sxm", "nvidia-hopper"] {
        assert!(line(id).ends_with("matches pci-0000-17-00.0"), "{}", line(id));
    }
    for id in ["nvidia-ada", "nvidia-h200-sxm", "opencl-generic"] {
        assert!(line(id).ends_with("matches no device here"), "{}", line(id));
    }
    assert!(line("sim-reference").ends_with("matches sim0"));
}

#[test]
fn live_devices_are_left_out_of_a_replay_unless_named() {
    let devices = common::command()
        .env("HILT_BACKENDS", "opencl")
        .arg("devices")
        .output()
        .expect("hilt runs");
    if let Err(why) = common::backend_device("opencl", "HILT_REQUIRE_OPENCL", devices) {
        eprintln!("skipped: {why}");
        return;
    }
    let root = common::host_fixture("h100-good");
    let root = root.to_str().expect("utf-8");
    let env = [("HILT_BACKENDS", "opencl"), ("HILT_PROFILE_PATH", "")];
    let run = common::run_with(
        &env,
        &["-q", "--sysfs-root", root, "--profile", "nvidia-h100-sxm", "platform"],
    );
    assert!(
        run.record.devices.iter().all(|d| d.backend != "opencl"),
        "{:?}",
        run.record.devices
    );
    assert!(
        run.stderr
            .contains("live device(s) of this machine left out: the run replays"),
        "{}",
        run.stderr
    );
    // Named, a live device is examined too, unjoined from the tree.
    let run = common::run_with(
        &env,
        &[
            "-q",
            "--sysfs-root",
            root,
            "--device",
            "opencl0",
            "--profile",
            "pocl-cpu",
            "performance::launch_latency",
        ],
    );
    assert!(run.record.devices.iter().any(|d| d.id == "opencl0"), "{}", run.stderr);
    assert!(
        run.record
            .outcomes
            .iter()
            .any(|o| o.device == "opencl0" && o.verdict == Verdict::Pass),
        "{}",
        run.stderr
    );
}

#[test]
fn a_replay_never_certifies_what_it_could_not_run() {
    // Every host and PCI check of amd-mi300x passes on this tree; the device checks cannot
    // run on a capture. Below the certification tier the partial run exits by what ran;
    // in the certification tier a mandatory trial that could not run leaves it
    // inconclusive, as a mandatory check that could not run does.
    let root = common::host_fixture("mi300x-good");
    let standard = replay(&root, &["--profile", "amd-mi300x", "--tier", "standard"]);
    assert_eq!(standard.exit, 0, "{}", standard.stderr);
    assert_eq!(standard.record.conformance.status, ConformanceStatus::Partial);

    let run = replay(&root, &["--profile", "amd-mi300x", "--tier", "certification"]);
    assert_eq!(run.exit, 3, "{}", run.stderr);
    let record = &run.record;
    assert_eq!(record.conformance.status, ConformanceStatus::Partial);
    assert!(!record.conformance.conformant);
    let mandatory = record
        .run
        .not_run
        .iter()
        .filter(|n| n.level == Level::Mandatory)
        .count();
    assert!(mandatory > 0, "{:?}", record.run.not_run);
    let why = format!("{mandatory} mandatory trial(s) could not run in the certification tier");
    assert!(
        record.conformance.reasons.iter().any(|r| r.starts_with(&why)),
        "{:?}",
        record.conformance.reasons
    );
    assert!(run.stderr.contains(&why), "the summary says why: {}", run.stderr);
    // A tree made by hand says how it was made, not a root it was taken from.
    assert!(
        run.stderr
            .contains("(source: hand-made by tests/fixtures/hosts/generate.sh; tree sha256 "),
        "{}",
        run.stderr
    );
    // JUnit is not green where the exit status is not: the mandatory trials that could
    // not run are errors in the certification tier (skipped below it).
    let junit = |run: &common::Run| {
        let out = common::hilt(&[
            "report",
            run.dir.join("result.json").to_str().expect("utf-8"),
            "--format",
            "junit",
        ]);
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let xml = junit(&run);
    let root = xml.lines().nth(1).expect("root line");
    assert!(root.contains(&format!("errors=\"{mandatory}\"")), "{root}");
    // Nor is the terminal's libtest line: each trial that could not run has a line of its
    // own, failed where JUnit has an error, ignored with why where JUnit skips it.
    let line = |run: &common::Run, trial: &str| -> String {
        let prefix = format!("test {trial} ");
        let found = run.stdout.lines().find(|l| l.starts_with(&prefix));
        found
            .map(|l| l[prefix.len()..].trim_start().to_string())
            .unwrap_or_default()
    };
    let ignored = |run: &common::Run| {
        let aside = |o: &&hilt_results::Outcome| matches!(standing(o, run.record.run.tier), Standing::Aside(_));
        run.record.outcomes.iter().filter(aside).count()
    };
    let result = |run: &common::Run| {
        let found = run.stdout.lines().find(|l| l.starts_with("test result:"));
        found.unwrap_or_default().to_string()
    };
    for n in &record.run.not_run {
        let expected = match n.level {
            Level::Mandatory => "... FAILED".to_string(),
            _ => format!("... ignored (not run: {})", n.reason),
        };
        assert_eq!(line(&run, &n.trial), expected, "{}", n.trial);
        assert_eq!(
            line(&standard, &n.trial),
            format!("... ignored (not run: {})", n.reason)
        );
    }
    assert!(
        run.stdout
            .contains(&format!("NOT RUN: {}; ", record.run.not_run[0].reason)),
        "{}",
        run.stdout
    );
    let (passed, others) = (record.summary.pass, record.run.not_run.len() - mandatory);
    assert!(
        result(&run).starts_with(&format!(
            "test result: FAILED. {passed} passed; {mandatory} failed; {} ignored;",
            ignored(&run) + others
        )),
        "{}",
        result(&run)
    );
    assert!(
        result(&standard).starts_with(&format!(
            "test result: ok. {} passed; 0 failed; {} ignored;",
            standard.record.summary.pass,
            ignored(&standard) + standard.record.run.not_run.len()
        )),
        "{}",
        result(&standard)
    );
    // hilt's summary counts them as libtest does, and says what they were.
    let summary = format!(
        ": {passed} passed; {mandatory} failed (of them {mandatory} could not run); {} ignored, as not deciding (",
        ignored(&run) + others
    );
    assert!(run.stderr.contains(&summary), "{summary}\n{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("{others} could not run); 0 filtered out")),
        "{}",
        run.stderr
    );
    let summary = format!(
        ": {} passed; 0 failed; {} ignored, as not deciding (",
        standard.record.summary.pass,
        ignored(&standard) + standard.record.run.not_run.len()
    );
    assert!(standard.stderr.contains(&summary), "{summary}\n{}", standard.stderr);
    let xml = junit(&standard);
    let root = xml.lines().nth(1).expect("root line");
    assert!(root.contains("errors=\"0\""), "{root}");
    // Readers derive the same decision from the record.
    assert_eq!(record.derived_conformance().status, record.conformance.status);
    assert!(record.inconsistencies().is_empty(), "{:?}", record.inconsistencies());
}

#[test]
fn the_reports_of_a_replay_say_what_was_replayed_and_pass_no_requirement_on_what_did_not_run() {
    let (_tmp, root) = captured("mi300x-good");
    let run = replay(&root, &["--profile", "amd-mi300x"]);
    assert_eq!(run.exit, 0, "{}", run.stderr);
    let record = &run.record;
    let tree = record
        .run
        .replay
        .as_ref()
        .and_then(|r| r.tree_sha256.clone())
        .expect("tree digest");
    let result = run.dir.join("result.json");
    let report = |format: &str| {
        let out = common::hilt(&["report", result.to_str().expect("utf-8"), "--format", format]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    };

    // Every report a person reads says it is a replay, of which capture, and that the
    // host it describes is the captured one.
    let source = common::host_fixture("mi300x-good");
    for text in [report("markdown"), report("html"), run.stderr.clone()] {
        assert!(text.contains("Replay of a captured host (captured at "), "{text}");
        assert!(text.contains(&format!("from {}", source.display())), "{text}");
        assert!(text.contains(&format!("tree sha256 {tree}")), "{text}");
        assert!(
            text.contains(&format!("{} device trial(s) could not run", record.run.not_run.len())),
            "{text}"
        );
    }
    // And which trials could not run, with why: every one in the HTML page, every check
    // with its devices in Markdown.
    let (html, markdown) = (report("html"), report("markdown"));
    assert!(markdown.contains("### Could not run"), "{markdown}");
    for n in &record.run.not_run {
        let row = format!("<code>{}</code>", n.trial);
        assert!(html.contains(&row), "{} missing from the HTML page", n.trial);
        let line = markdown
            .lines()
            .find(|l| l.starts_with(&format!("- **not run** `{}` ({})", n.check, n.level.as_str())))
            .unwrap_or_else(|| panic!("no line for {} in:\n{markdown}", n.check));
        assert!(line.contains(&format!("`{}`", n.device)), "{line}");
    }
    assert!(
        html.contains("a capture holds the host&#39;s files")
            || html.contains("a capture holds the host&apos;s files")
            || html.contains("a capture holds the host's files"),
        "the reason is shown"
    );
    let host = record.devices.iter().find(|d| d.id == "host").expect("host device");
    assert_eq!(
        host.name,
        format!("the captured host, replayed from {}", root.display()),
        "the host checks examined the capture, not this host"
    );

    // A requirement whose device checks could not run is not passed, however its host
    // and PCI checks ended: AI-ISO-1 and DP-7 rest on the residue checks too.
    let json: serde_json::Value = serde_json::from_str(&report("json")).expect("json");
    let rows = json["traceability"].as_array().expect("traceability");
    let not_run: std::collections::BTreeSet<&str> = record.run.not_run.iter().map(|n| n.check.as_str()).collect();
    let catalogue = hilt_suites::catalogue();
    let mut open = 0;
    for row in rows {
        let id = row["id"].as_str().expect("id");
        let unrun = catalogue
            .checks()
            .iter()
            .any(|c| c.requirements.contains(&id) && not_run.contains(c.id));
        if unrun {
            assert_ne!(
                row["state"], "passed",
                "{id} passed with checks that did not run: {row}"
            );
            open += 1;
        }
    }
    assert!(open >= 2, "AI-ISO-1 and DP-7 at least");
    for id in ["AI-ISO-1", "DP-7"] {
        let row = rows.iter().find(|r| r["id"] == id).expect("requirement");
        assert_eq!(row["state"], "unsettled", "{row}");
    }
}

#[test]
fn replays_of_two_captures_are_two_nodes_never_the_machine_that_replays() {
    // A lab replays the captures of several nodes on one workstation: each result stands
    // for its capture, so `hilt fleet` neither merges them nor keeps only the newest.
    let good = replay(&common::host_fixture("mi300x-good"), &["--profile", "amd-mi300x"]);
    let off = replay(
        &common::host_fixture("mi300x-isolation-off"),
        &["--profile", "amd-mi300x"],
    );
    let node = |run: &common::Run| run.record.host.node.clone().expect("node");
    let (a, b) = (node(&good), node(&off));
    let digest = |run: &common::Run| {
        run.record
            .run
            .replay
            .as_ref()
            .and_then(|r| r.tree_sha256.clone())
            .expect("tree digest")
    };
    assert_eq!(a, format!("replay-{}", &digest(&good)[..12]));
    assert_eq!(b, format!("replay-{}", &digest(&off)[..12]));
    assert_ne!(a, b);
    assert_ne!(a, good.record.host.hostname, "the replaying machine is not the node");
    assert!(
        good.stderr.contains(&format!("recorded as node {a}")),
        "{}",
        good.stderr
    );
    // A lab that knows the node names it.
    let named = replay(
        &common::host_fixture("mi300x-good"),
        &["--profile", "amd-mi300x", "--node", "gpu-17"],
    );
    assert_eq!(node(&named), "gpu-17");
    assert!(!named.stderr.contains("recorded as node"), "{}", named.stderr);
}

#[test]
fn list_shows_the_trials_a_replay_shows_it_could_not_run() {
    let (_tmp, root) = captured("mi300x-good");
    let root = root.to_str().expect("utf-8");
    for filter in [&["residue"][..], &["--skip", "residue"], &[]] {
        let mut args = vec!["--sysfs-root", root, "--profile", "amd-mi300x"];
        args.extend_from_slice(filter);
        let run = replay(Path::new(root), &args[2..]);
        let shown: Vec<&str> = run
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("test ")?.split_once(" ... ").map(|(n, _)| n.trim_end()))
            .collect();
        assert!(!shown.is_empty(), "{}", run.stdout);
        let mut list = common::command();
        list.env("HILT_BACKENDS", "none").env_remove("HILT_PROFILE_PATH");
        let listed = list.args(["run", "--list"]).args(&args).output().expect("hilt runs");
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let mut names: Vec<&str> = listed
            .lines()
            .filter_map(|l| l.strip_suffix(": test")?.rsplit_once("] ").map(|(_, n)| n))
            .collect();
        let mut shown = shown;
        names.sort_unstable();
        shown.sort_unstable();
        assert_eq!(names, shown, "--list {filter:?} lists what the run shows:\n{listed}");
    }
}
