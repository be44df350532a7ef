//! The command line as people and scripts meet it: listings, the default run, the record
//! and event stream it leaves, filters, exit codes, and bad input.

mod common;

use std::time::{Duration, Instant};

use hilt_results::{ConformanceStatus, ResultRecord};

fn stdout(args: &[&str]) -> String {
    let out = common::hilt(args);
    assert!(
        out.status.success(),
        "hilt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).replace(env!("CARGO_MANIFEST_DIR"), "[repo]")
}

#[test]
fn checks_listing() {
    insta::assert_snapshot!(stdout(&["checks"]));
}

#[test]
fn checks_listing_as_json() {
    let json: serde_json::Value = serde_json::from_str(&stdout(&["checks", "--json"])).expect("json");
    insta::assert_json_snapshot!(json);
}

#[test]
fn devices_listing() {
    insta::assert_snapshot!(stdout(&["devices"]));
}

#[test]
fn profiles_listing() {
    insta::assert_snapshot!(stdout(&["profiles"]));
}

#[test]
fn run_list_names_trials_like_cargo_test() {
    insta::assert_snapshot!(stdout(&["run", "--list"]));
}

#[test]
fn the_default_run_uses_the_sim_says_so_and_is_conformant() {
    let run = common::run(&[]);
    assert_eq!(run.exit, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .lines()
            .next()
            .unwrap_or_default()
            .contains("no accelerator found by the backends of this build (opencl: not probed (HILT_BACKENDS=sim); cuda: not probed (HILT_BACKENDS=sim); vulkan: not probed (HILT_BACKENDS=sim)); running the simulated device sim0 with profile sim-reference"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("test result: ok. 20 passed; 0 failed"),
        "{}",
        run.stdout
    );
    let r = &run.record;
    assert!(r.run.complete);
    assert!(r.conformance.conformant);
    assert_eq!(r.profile.chain, ["sim-reference", "base"]);
    assert!(!r.profile.certifying);
    // The sim, and the host that host checks ran on (the compliant fixture host here).
    assert!(r.devices.iter().filter(|d| d.id != "host").all(|d| d.simulated));
    assert_eq!(r.summary.pass, 20);
    assert_eq!(r.outcomes.len(), r.run.planned.len());

    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.out.path().join("result.json")).expect("result")).expect("json");
    // Trials finish in any order on two threads; the snapshot shows them sorted.
    if let Some(outcomes) = value["outcomes"].as_array_mut() {
        outcomes.sort_by_key(|o| o["trial"].as_str().unwrap_or_default().to_string());
        // Timings vary from run to run; their names, units and thresholds do not.
        for o in outcomes
            .iter_mut()
            .filter(|o| o["check"].as_str().unwrap_or_default().starts_with("performance."))
        {
            for m in o["measurements"].as_array_mut().into_iter().flatten() {
                m["value"] = "[measured]".into();
            }
        }
    }
    insta::assert_snapshot!(common::redact(&serde_json::to_string_pretty(&value).expect("json")));
}

#[test]
fn events_stream_header_trials_and_end() {
    let run = common::run(&["--test-threads", "1"]);
    let text = std::fs::read_to_string(run.out.path().join("events.jsonl")).expect("events");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap_or_default()).collect();
    let trials = run.record.run.planned.len();
    let mut expected = vec!["run_started"];
    for _ in 0..trials {
        expected.extend(["trial_started", "trial_finished"]);
    }
    expected.push("run_finished");
    assert_eq!(
        kinds, expected,
        "one thread: each trial starts and finishes before the next"
    );
    assert_eq!(events[0]["run"]["id"].as_str(), Some(run.record.run.id.as_str()));
    assert_eq!(events[0]["profile"]["id"], "sim-reference");
    assert_eq!(events[kinds.len() - 1]["conformance"]["status"], "conformant");
}

#[test]
fn filters_make_a_partial_run_that_is_never_conformant() {
    let run = common::run(&["--skip", "local"]);
    assert_eq!(run.exit, 0);
    assert!(run.record.run.filtered);
    assert_eq!(
        run.record.run.planned.len(),
        20,
        "twelve device trials and eight host trials"
    );
    assert_eq!(run.record.outcomes.len(), 17);
    assert_eq!(run.record.summary.selected, 17);
    assert_eq!(run.record.conformance.status, ConformanceStatus::Partial);
    assert!(!run.record.conformance.conformant);
}

#[test]
fn a_filter_that_selects_nothing_is_inconclusive_not_a_pass() {
    let run = common::run(&["no-such-trial"]);
    assert_eq!(run.exit, 3);
    assert!(run.record.outcomes.is_empty());
    assert!(run.record.conformance.reasons.iter().any(|r| r == "no trial ran"));
}

#[test]
fn the_tier_selects_checks_and_is_recorded() {
    let run = common::run(&["--profile", "tuned"]);
    assert_eq!(run.record.run.tier, hilt_results::Tier::Smoke, "tuned's default tier");
    let residue = |run: &common::Run| -> Vec<String> {
        run.record
            .run
            .planned
            .iter()
            .filter(|p| p.starts_with("residue"))
            .cloned()
            .collect()
    };
    assert_eq!(residue(&run), ["residue::global::cross_process::sim0"]);
    let run = common::run(&["--profile", "tuned", "--tier", "certification"]);
    assert_eq!(residue(&run).len(), 4, "global cross_context is disabled in tuned");
    assert_eq!(
        run.record.devices[0].facts["sim.memory_mib"], 16,
        "sim knobs from the profile"
    );
}

#[test]
fn sim_knobs_from_the_command_line_are_applied_and_recorded() {
    let run = common::run(&[
        "--sim-knob",
        "scrub=\"never\"",
        "--sim-knob",
        "memory_mib=8",
        "--tenant-timeout",
        "30",
    ]);
    assert_eq!(run.exit, 1, "a mandatory residue failure");
    assert_eq!(
        run.record.conformance.status,
        ConformanceStatus::Partial,
        "knobs changed by hand are not evidence"
    );
    assert_eq!(
        run.record.run.overrides,
        ["sim.scrub=\"never\"", "sim.memory_mib=8", "tenant_timeout_s=30"]
    );
    assert_eq!(common::verdict(&run.record, "residue.global.cross_process"), "fail");
    assert_eq!(run.record.devices[0].facts["sim.scrub"], "never");
    assert_eq!(run.record.devices[0].facts["global_mem_bytes"], 8 << 20);
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    for (args, expected) in [
        (
            &["run", "--sim-fault", "bogus"][..],
            "unknown sim fault `bogus`; known faults: global-no-scrub",
        ),
        (&["run", "--sim-knob", "scrubb=1"][..], "unknown field `scrubb`"),
        (&["run", "--device", "gpu7"][..], "no device here is `gpu7`"),
        (&["run", "--tier", "gold"][..], "unknown tier `gold`"),
        (
            &["run", "--profile", "no-such-profile"][..],
            "no profile `no-such-profile`",
        ),
        (&["run", "--test-threads", "0"][..], "0 is not in 1..=1024"),
        (&["run", "--tenant-timeout", "0"][..], "0 is not in 1..=86400"),
        (
            &["run", "--tenant-timeout", "18446744073709551615"][..],
            "not in 1..=86400",
        ),
    ] {
        let out = common::hilt(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A run killed mid-trial leaves a readable record marked incomplete, and its hung tenant
/// does not outlive it.
#[test]
fn a_killed_run_leaves_a_readable_partial_record() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().to_str().expect("utf-8");
    // An envelope from an earlier run in the same directory must not survive: it would
    // vouch for a record it never signed.
    std::fs::write(out.path().join("result.dsse.json"), "{}").expect("write");
    let mut child = common::command()
        .args([
            "run",
            "--out",
            dir,
            "--sim-fault",
            "kernel-hang",
            "--tenant-timeout",
            "60",
            "--test-threads",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("hilt starts");
    let events = out.path().join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&events)
        .unwrap_or_default()
        .contains("trial_started")
    {
        assert!(Instant::now() < deadline, "the run never started a trial");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Wait for the trial's tenant to exist, then kill the harness outright.
    let tenants = loop {
        let found = children_of(child.id());
        if !found.is_empty() {
            break found;
        }
        assert!(Instant::now() < deadline, "the trial never started its tenant");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    child.kill().expect("kill");
    child.wait().expect("wait");

    let record = ResultRecord::from_json(&std::fs::read(out.path().join("result.json")).expect("result.json"))
        .expect("the partial record is readable");
    assert!(!record.run.complete);
    assert_eq!(record.conformance.status, ConformanceStatus::Incomplete);
    assert!(record.run.finished_at.is_none());
    assert!(
        !out.path().join("result.dsse.json").exists(),
        "a killed run leaves no envelope"
    );

    // The tenant got SIGKILL with its parent (PR_SET_PDEATHSIG).
    let deadline = Instant::now() + Duration::from_secs(10);
    while tenants.iter().any(|pid| alive(*pid)) {
        assert!(Instant::now() < deadline, "a tenant outlived the killed harness");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pids of the live child processes of `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|(_, ppid)| ppid == parent) && alive(*pid))
        .collect()
}

fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The state and parent pid of a process, from /proc/PID/stat.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = text.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

#[test]
fn the_sim_never_certifies_whatever_the_profile_claims() {
    let run = common::run(&["--profile", "claims-certifying"]);
    assert_eq!(run.exit, 0);
    assert!(!run.record.profile.certifying);
    assert!(
        run.record
            .devices
            .iter()
            .filter(|d| d.id != "host")
            .all(|d| d.simulated)
    );
}

#[test]
fn a_result_that_cannot_be_written_is_not_reported_as_success() {
    let out = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(out.path().join("result.json")).expect("a directory where the file should go");
    let dir = out.path().to_str().expect("utf-8");
    let output = common::hilt(&["run", "--out", dir]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("is incomplete (see the warnings above)"), "{stderr}");
    assert!(
        stderr.contains("Is a directory"),
        "the warning says what failed: {stderr}"
    );
    assert!(
        !out.path().join("result.json.tmp").exists(),
        "no half-written file is left"
    );
}

#[test]
fn runner_options_and_hilt_options_mix_in_any_order() {
    let run = common::run(&["-q", "--skip", "global", "--sim-fault", "local-no-clear", "local"]);
    assert_eq!(run.record.run.sim_faults, ["local-no-clear"]);
    assert_eq!(run.record.outcomes.len(), 3);
    assert!(run.record.outcomes.iter().all(|o| o.check.starts_with("residue.local")));
    assert_eq!(run.exit, 1);
}

#[test]
fn two_runs_never_write_one_directory() {
    let out = tempfile::tempdir().expect("tempdir");
    let lock = std::fs::File::create(out.path().join(".hilt.lock")).expect("lock file");
    lock.lock().expect("hold the directory as a running hilt would");
    let output = common::hilt(&["run", "--out", out.path().to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("another hilt run is writing to"), "{stderr}");
    assert!(!out.path().join("result.json").exists());
}
