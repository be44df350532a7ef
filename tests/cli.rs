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
fn a_record_names_the_machine_that_ran_it_without_disclosing_its_machine_id() {
    // On the live host the record carries the machine's identity, derived from the
    // machine ID; a replay (the default of these tests) stands for the captured machine.
    let args = [
        "--profile",
        "sim-reference",
        "--tier",
        "smoke",
        "performance::launch_latency",
    ];
    let live = common::run_with(&[("HILT_SYSFS_ROOT", ""), ("HILT_BACKENDS", "sim")], &args);
    let id = std::fs::read("/etc/machine-id").unwrap_or_default();
    let expected = hilt_harness::host::machine_identity(&id);
    assert_eq!(live.record.host.machine, expected, "{}", live.stderr);
    let raw = String::from_utf8_lossy(&id).trim().to_string();
    let text = std::fs::read_to_string(live.dir.join("result.json")).expect("result");
    assert!(
        raw.is_empty() || !text.contains(&raw),
        "the machine ID itself is in the record"
    );
    let replay = common::run(&args);
    assert_eq!(replay.record.host.machine, None, "{}", replay.stderr);
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
fn devices_as_json_say_what_the_backends_said() {
    // The JSON a script reads holds the notes the text shows: why a backend found nothing,
    // or which view of a piece of hardware was left out.
    let out = common::command()
        .args(["devices", "--json"])
        .env("HILT_BACKENDS", "sim,nosuch")
        .output()
        .expect("hilt runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let notes: Vec<&str> = json["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    let text = common::command()
        .args(["devices"])
        .env("HILT_BACKENDS", "sim,nosuch")
        .output()
        .expect("hilt runs");
    let text = String::from_utf8_lossy(&text.stdout);
    for backend in hilt_harness::discovery::BACKENDS {
        let note = format!("{backend}: not probed (HILT_BACKENDS=sim,nosuch)");
        assert!(notes.contains(&note.as_str()), "{note} not in {notes:?}");
    }
    assert!(notes.iter().any(|n| n.contains("`nosuch`")), "{notes:?}");
    for note in &notes {
        assert!(text.contains(note), "the text says {note} too:\n{text}");
    }
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
            .contains("running the simulated device sim0 with profile sim-reference, as asked"),
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
        serde_json::from_slice(&std::fs::read(run.dir.join("result.json")).expect("result")).expect("json");
    // Trials finish in any order on two threads; the snapshot shows them sorted.
    if let Some(outcomes) = value["outcomes"].as_array_mut() {
        outcomes.sort_by_key(|o| o["trial"].as_str().unwrap_or_default().to_string());
        // Timings vary from run to run; their names, units and thresholds do not.
        for o in outcomes.iter_mut() {
            let timed = o["check"].as_str().unwrap_or_default().starts_with("performance.");
            for m in o["measurements"].as_array_mut().into_iter().flatten() {
                if timed || m["name"].as_str().unwrap_or_default().ends_with("_throughput") {
                    m["value"] = "[measured]".into();
                }
            }
            for key in ["device_seconds", "sweep_device_seconds"] {
                if let Some(v) = o["evidence"].get_mut(key) {
                    *v = "[measured]".into();
                }
            }
        }
    }
    insta::assert_snapshot!(common::redact(&serde_json::to_string_pretty(&value).expect("json")));
}

#[test]
fn events_stream_header_trials_and_end() {
    let run = common::run(&["--test-threads", "1"]);
    let text = std::fs::read_to_string(run.dir.join("events.jsonl")).expect("events");
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
            "no profile `no-such-profile` (looked in",
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
    let tenants = wait_for_a_tenant(&child, out.path());
    child.kill().expect("kill");
    child.wait().expect("wait");

    let run_dir = common::run_dir(out.path());
    let record = ResultRecord::from_json(&std::fs::read(run_dir.join("result.json")).expect("result.json"))
        .expect("the partial record is readable");
    assert!(!record.run.complete);
    assert_eq!(record.conformance.status, ConformanceStatus::Incomplete);
    assert!(record.run.finished_at.is_none());
    assert!(
        !run_dir.join("result.dsse.json").exists(),
        "a run killed outright leaves no envelope"
    );
    assert!(
        run_dir.join(".hilt.lock").exists(),
        "the lock file of a killed run stays, held by nobody: the sign of a run killed outright"
    );

    // The tenant got SIGKILL with its parent (PR_SET_PDEATHSIG).
    let deadline = Instant::now() + Duration::from_secs(10);
    while tenants.iter().any(|pid| alive(*pid)) {
        assert!(Instant::now() < deadline, "a tenant outlived the killed harness");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A narrowed run killed outright: the record names the trials the filters selected, so
/// its JUnit shows those, and only those, as not run; the ones filtered out were never to
/// run.
#[test]
fn a_killed_narrowed_run_shows_only_its_selected_trials_as_not_run() {
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = common::command()
        .args(["run", "--out", out.path().to_str().expect("utf-8")])
        .args([
            "--sim-fault",
            "kernel-hang",
            "--tenant-timeout",
            "60",
            "residue::global",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("hilt starts");
    wait_for_a_tenant(&child, out.path());
    child.kill().expect("kill");
    child.wait().expect("wait");
    let result = common::run_dir(out.path()).join("result.json");
    let record = ResultRecord::from_json(&std::fs::read(&result).expect("result.json")).expect("readable");
    assert!(record.run.filtered && !record.run.complete);
    assert_eq!(
        record.run.selected,
        [
            "residue::global::cross_context::sim0",
            "residue::global::cross_process::sim0"
        ]
    );
    let junit = common::hilt(&["report", result.to_str().expect("utf-8"), "--format", "junit"]);
    let xml = String::from_utf8_lossy(&junit.stdout);
    let not_run = record.run.selected.len() - record.outcomes.len();
    assert_eq!(xml.matches("type=\"not run\"").count(), not_run, "{xml}");
    let root = xml.lines().nth(1).expect("root line");
    assert!(
        root.contains(&format!("tests=\"{}\"", record.run.selected.len())),
        "{root}"
    );
}

/// Waits until the run writing into `out` has started a trial and its tenant; the
/// tenants' pids.
fn wait_for_a_tenant(child: &std::process::Child, out: &std::path::Path) -> Vec<u32> {
    let events = out.join("latest/events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&events)
        .unwrap_or_default()
        .contains("trial_started")
    {
        assert!(Instant::now() < deadline, "the run never started a trial");
        std::thread::sleep(Duration::from_millis(20));
    }
    let tenants = loop {
        let found = children_of(child.id());
        if !found.is_empty() {
            break found;
        }
        assert!(Instant::now() < deadline, "the trial never started its tenant");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    tenants
}

/// What SIGINT (Ctrl-C) and SIGTERM (CI timeouts, schedulers) leave: the tenants stopped,
/// the partial record marked incomplete and naming the signal and every trial not run,
/// every report asked for (trials not run shown as not run), the partial record signed by
/// the lab key and verifying as such, the lock removed, a message saying what was left,
/// and exit status 128 + the signal.
#[test]
fn an_interrupted_run_keeps_everything_it_found() {
    for (signal, status) in [("TERM", 143), ("INT", 130), ("HUP", 129)] {
        let out = tempfile::tempdir().expect("tempdir");
        let keys = tempfile::tempdir().expect("tempdir");
        let key = keys.path().join("lab");
        assert!(
            common::hilt(&["keygen", "--out", key.to_str().expect("utf-8")])
                .status
                .success()
        );
        let report = |name: &str| out.path().join(name).to_str().expect("utf-8").to_string();
        let child = common::command()
            .args(["run", "--out", out.path().to_str().expect("utf-8")])
            .args([
                "--sim-fault",
                "kernel-hang",
                "--tenant-timeout",
                "60",
                "--test-threads",
                "1",
            ])
            .args([
                "--junit",
                &report("j.xml"),
                "--markdown",
                &report("s.md"),
                "--html",
                &report("r.html"),
            ])
            .args(["--sign-key", &format!("{}.key", key.display())])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("hilt starts");
        let tenants = wait_for_a_tenant(&child, out.path());
        let run_dir = common::run_dir(out.path());
        assert!(run_dir.join(".hilt.lock").exists(), "a running run holds its lock");
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let started = Instant::now();
        let output = child.wait_with_output().expect("hilt ends");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "SIG{signal} must not wait for the tenant's 60 s watchdog"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(status), "SIG{signal}: {stderr}");
        assert!(tenants.iter().all(|pid| !alive(*pid)), "the tenants were stopped");

        let record = ResultRecord::from_json(&std::fs::read(run_dir.join("result.json")).expect("result.json"))
            .expect("readable");
        assert!(!record.run.complete);
        assert_eq!(record.conformance.status, ConformanceStatus::Incomplete);
        let interrupted = record
            .run
            .interrupted
            .as_ref()
            .expect("the record says it was interrupted");
        assert_eq!(interrupted.signal, format!("SIG{signal}"));
        assert_eq!(
            interrupted.not_run.len() + record.outcomes.len(),
            record.run.planned.len(),
            "every trial either has an outcome or is named as not run"
        );
        assert!(
            interrupted
                .not_run
                .iter()
                .any(|t| t.starts_with("isolation::fault_containment")),
            "the trial that was running when the signal came is not run, not an error: {interrupted:?}"
        );
        assert!(
            record
                .outcomes
                .iter()
                .all(|o| o.verdict != hilt_results::Verdict::Error),
            "nothing the stop caused is recorded as a finding"
        );
        assert!(record.conformance.reasons[0].starts_with(&format!("the run was interrupted by SIG{signal}")));
        assert!(!run_dir.join(".hilt.lock").exists(), "the lock is removed");

        let xml = std::fs::read_to_string(out.path().join("j.xml")).expect("JUnit written");
        assert_eq!(
            xml.matches("type=\"not run\"").count(),
            interrupted.not_run.len(),
            "{xml}"
        );
        let md = std::fs::read_to_string(out.path().join("s.md")).expect("Markdown written");
        assert!(md.contains("incomplete"), "{md}");
        assert!(out.path().join("r.html").exists(), "HTML written");

        let verify = common::hilt(&[
            "verify",
            run_dir.join("result.dsse.json").to_str().expect("utf-8"),
            "--trusted-key",
            &format!("{}.pub", key.display()),
        ]);
        let said = String::from_utf8_lossy(&verify.stdout);
        assert!(said.contains("signature: valid, by trusted key"), "{said}");
        assert!(
            said.contains("incomplete"),
            "the envelope signs the partial record: {said}"
        );

        assert!(stdout.contains("NOT RUN: the run was interrupted by"), "{stdout}");
        assert!(
            stderr.contains(&format!("hilt: interrupted by SIG{signal}:"))
                && stderr.contains("(signs the partial record)"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("hilt: exit status {status}: interrupted")),
            "{stderr}"
        );
        if signal == "TERM" {
            let end: Vec<&str> = stderr
                .lines()
                .skip_while(|l| !l.starts_with("hilt: incomplete"))
                .collect();
            let end = end.join("\n").replace(&out.path().display().to_string(), "[out]");
            insta::assert_snapshot!("interrupted_by_sigterm", common::redact(&end));
        }
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

/// A report asked for that cannot be written when the run ends (here a directory stands
/// where it would be written beside its path) costs the pipeline its results: the run's
/// record is kept, the message names the file and says why in plain words, and the exit
/// status is not 0.
#[test]
fn a_report_that_cannot_be_written_is_not_reported_as_success() {
    let out = tempfile::tempdir().expect("tempdir");
    let junit = out.path().join("j.xml");
    std::fs::create_dir(out.path().join("j.xml.tmp")).expect("a directory where the file is written");
    let output = common::hilt(&[
        "run",
        "--out",
        out.path().to_str().expect("utf-8"),
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: the JUnit report"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(line.contains(&junit.display().to_string()), "{line}");
    assert!(line.contains("a directory is in the way"), "in plain words: {line}");
    assert!(line.contains("The run's record is kept in"), "{line}");
    assert!(stderr.contains("hilt: exit status 3: a file the run was asked to write could not be written"));
    let record =
        ResultRecord::from_json(&std::fs::read(common::run_dir(out.path()).join("result.json")).expect("kept"))
            .expect("readable");
    assert!(
        record.run.complete && record.conformance.conformant,
        "the verdicts stand"
    );
}

/// Nobody reading what the run prints changes nothing: with its standard output closed
/// (`hilt run | head`, a log collector that died), or its standard error, the run writes
/// its record, reports and envelope and exits with its own status, without a panic.
/// `--list` into a closed pipe ends quietly too.
#[test]
fn a_closed_output_does_not_end_the_run() {
    use std::process::Stdio;
    for closed in ["stdout", "stderr", "both"] {
        let out = tempfile::tempdir().expect("tempdir");
        let junit = out.path().join("j.xml");
        let mut child = common::command()
            .args(["run", "--out", out.path().to_str().expect("utf-8")])
            .args(["--junit", junit.to_str().expect("utf-8")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hilt starts");
        // The reading ends close before hilt writes anything.
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let kept = match closed {
            "stdout" => {
                drop(stdout);
                Some(stderr)
            }
            "stderr" => {
                drop(stderr);
                // The trial lines are read, so that a full pipe cannot hold the run.
                std::thread::spawn(move || std::io::copy(&mut { stdout }, &mut std::io::sink()));
                None
            }
            _ => {
                drop((stdout, stderr));
                None
            }
        };
        let said = kept.map(|mut e| {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
            text
        });
        let status = child.wait().expect("hilt ends");
        let said = said.unwrap_or_default();
        assert_eq!(status.code(), Some(0), "{closed} closed: {said}");
        assert!(!said.contains("panicked"), "{closed} closed: {said}");
        let dir = common::run_dir(out.path());
        let record =
            ResultRecord::from_json(&std::fs::read(dir.join("result.json")).expect("result.json")).expect("readable");
        assert!(record.run.complete, "{closed} closed: the run finished");
        assert!(junit.exists(), "{closed} closed: the JUnit report was written");
        assert!(dir.join("result.dsse.json").exists(), "{closed} closed: signed");
    }
    let mut child = common::command()
        .args(["run", "--list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hilt starts");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("hilt ends");
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "--list: {said}");
    assert!(!said.contains("panicked"), "--list: {said}");
}

/// An earlier run's folder is never written into, however `--out` reaches it (through
/// `latest`, by its name, below it): refused before anything runs. A `latest` that is not
/// a link (a folder or file someone put there) is left as it is, and the run goes on.
/// Nothing is left behind by either: no stray lock, no temporary link.
#[test]
fn no_run_writes_into_an_earlier_run_or_over_a_latest_it_did_not_make() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().to_str().expect("utf-8");
    assert_eq!(common::hilt(&["run", "-q", "--out", dir]).status.code(), Some(0));
    let earlier = common::run_dir(out.path());
    let listing = |path: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = walk(path).iter().map(|p| p.display().to_string()).collect();
        names.sort();
        names
    };
    let before = listing(out.path());
    let holder = std::fs::canonicalize(out.path()).expect("canonical");
    for inside in [
        out.path().join("latest"),
        earlier.clone(),
        out.path().join("latest").join("more"),
    ] {
        let output = common::hilt(&["run", "-q", "--out", inside.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{}: {stderr}", inside.display());
        assert!(
            stderr.contains("the folder of an earlier run") && stderr.contains(&format!("--out {})", holder.display())),
            "says why and what to give instead: {stderr}"
        );
        assert_eq!(
            listing(out.path()),
            before,
            "nothing written for --out {}",
            inside.display()
        );
    }

    for (what, make) in [
        (
            "a folder",
            (|p: &std::path::Path| std::fs::create_dir(p)) as fn(&std::path::Path) -> std::io::Result<()>,
        ),
        ("a file", |p: &std::path::Path| std::fs::write(p, "someone's notes\n")),
    ] {
        let out = tempfile::tempdir().expect("tempdir");
        let latest = out.path().join("latest");
        make(&latest).expect("latest made");
        let output = common::hilt(&["run", "-q", "--out", out.path().to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "latest {what}: {stderr}");
        assert!(
            stderr.contains("latest is not a link hilt made, so it was left as it is"),
            "latest {what}: {stderr}"
        );
        assert!(!latest.is_symlink(), "latest {what} left as it was");
        if latest.is_file() {
            assert_eq!(std::fs::read_to_string(&latest).expect("kept"), "someone's notes\n");
        }
        let left: Vec<String> = walk(out.path())
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "latest {what}: left behind {left:?}");
        let runs = common::run_dirs(out.path());
        let run = runs.iter().find(|d| !d.ends_with("latest")).expect("the run's folder");
        assert!(
            run.join("result.dsse.json").exists(),
            "latest {what}: the run was recorded"
        );
    }
}

/// Every path below `dir`, links not followed.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        found.push(path.clone());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&path));
        }
    }
    found
}

/// When the record itself cannot be written, hilt does not say where it is: it names the
/// file and why, and the exit status is not 0.
#[test]
fn a_record_that_cannot_be_written_is_never_said_to_be_there() {
    let out = tempfile::tempdir().expect("tempdir");
    let child = common::command()
        .args(["run", "--out", out.path().to_str().expect("utf-8")])
        .args(["--sim-fault", "kernel-hang", "--tenant-timeout", "2"])
        .args(["--exact", "isolation::fault_containment::sim0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hilt starts");
    // The hanging trial holds the run for its 2 s watchdog: time enough to put a directory
    // where the record is written, so that every later write of it fails.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dir = loop {
        if let Ok(target) = std::fs::read_link(out.path().join("latest")) {
            break out.path().join(target);
        }
        assert!(Instant::now() < deadline, "the run never made its folder");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The record may be being written at that moment, through that very name.
    while let Err(e) = std::fs::create_dir(dir.join("result.json.tmp")) {
        assert!(Instant::now() < deadline, "cannot get in the way: {e}");
        std::thread::sleep(Duration::from_millis(1));
    }
    let output = child.wait_with_output().expect("hilt ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("hilt: result in"), "{stderr}");
    assert!(!stderr.contains("hilt: signed"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: {} could not be written: a directory is in the way",
            dir.join("result.json").display()
        )),
        "{stderr}"
    );
}

/// Two reports asked into one file, however the path is written, are refused before
/// anything runs: one would overwrite the other (a JUnit file holding HTML).
#[test]
fn two_reports_into_one_file_are_refused_before_the_run() {
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("report.xml");
    let same = out.path().join(".").join("report.xml");
    std::fs::write(&file, "kept\n").expect("an earlier file");
    for (a, b) in [
        ("--junit", "--html"),
        ("--junit", "--markdown"),
        ("--html", "--markdown"),
    ] {
        let output = common::hilt(&[
            "run",
            "--out",
            out.path().join("runs").to_str().expect("utf-8"),
            a,
            file.to_str().expect("utf-8"),
            b,
            same.to_str().expect("utf-8"),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{a} {b}: {stderr}");
        assert!(stderr.contains("name the same file"), "{a} {b}: {stderr}");
        assert!(!out.path().join("runs").exists(), "{a} {b}: nothing ran");
        assert_eq!(std::fs::read_to_string(&file).expect("kept"), "kept\n");
    }
}

/// A report asked for whose directory does not exist is refused before anything runs.
#[test]
fn a_report_in_a_missing_directory_is_refused_before_the_run() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = common::hilt(&[
        "run",
        "--out",
        out.path().to_str().expect("utf-8"),
        "--junit",
        "nodir/j.xml",
    ]);
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stderr));
    assert!(!out.path().join("latest").exists(), "nothing ran");
}

#[test]
fn runner_options_and_hilt_options_mix_in_any_order() {
    let run = common::run(&["-q", "--skip", "global", "--sim-fault", "local-no-clear", "local"]);
    assert_eq!(run.record.run.sim_faults, ["local-no-clear"]);
    assert_eq!(run.record.outcomes.len(), 3);
    assert!(run.record.outcomes.iter().all(|o| o.check.starts_with("residue.local")));
    assert_eq!(run.exit, 1);
}

/// Results are never lost: each run writes a folder of its own, `latest` points at the
/// newest, and an earlier run's signed result stays as it was, byte for byte.
#[test]
fn each_run_keeps_its_own_folder_and_latest_points_to_the_newest() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().to_str().expect("utf-8");
    let first = common::hilt(&["run", "-q", "--out", dir]);
    assert_eq!(first.status.code(), Some(0));
    let earlier = common::run_dir(out.path());
    let name = earlier.file_name().and_then(|n| n.to_str()).expect("name").to_string();
    assert!(
        regex_lite::Regex::new(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
            .expect("re")
            .is_match(&name),
        "{name}"
    );
    let record = ResultRecord::from_json(&std::fs::read(earlier.join("result.json")).expect("record")).expect("ok");
    assert!(name.ends_with(&record.run.id[..8]), "named by the run id");
    assert_eq!(
        &name[..15],
        record.run.started_at.replace(['-', ':'], "").get(..15).expect("start"),
        "named by the UTC start"
    );
    let signed = std::fs::read(earlier.join("result.dsse.json")).expect("envelope");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains(&format!(
            "hilt: result in {}/result.json ({dir}/latest points to it)",
            earlier.display()
        )),
        "says where the result went: {stderr}"
    );

    // Interrupted after a second, as in the report that asked for this.
    let second = common::hilt(&["run", "-q", "--out", dir, "no-such-trial"]);
    assert_eq!(second.status.code(), Some(3));
    let dirs = common::run_dirs(out.path());
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    assert_eq!(common::run_dir(out.path()), dirs[1], "latest is the newer run");
    assert_eq!(
        std::fs::read(earlier.join("result.dsse.json")).expect("still there"),
        signed
    );
    assert!(
        dirs.iter().all(|d| !d.join(".hilt.lock").exists()),
        "finished runs hold no lock"
    );
}

/// `--out` naming a file is refused before anything runs, saying what `--out` takes.
#[test]
fn out_naming_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("result.json");
    std::fs::write(&file, "{}").expect("a file");
    let output = common::hilt(&["run", "--out", file.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&dir.path().display().to_string(), "[tmp]");
    insta::assert_snapshot!(stderr);
    assert_eq!(std::fs::read_to_string(&file).expect("untouched"), "{}");
}

/// Without an accelerator and without asking for the simulated device, the sim stands in
/// but nothing is green: status `no_accelerator`, exit 3, libtest's line not `ok`, and a
/// plain last line saying why. Asking for the sim (`--device sim0`, `HILT_BACKENDS=sim`, a
/// sim profile) makes the same run green.
#[test]
fn a_run_that_fell_back_to_the_sim_is_never_green() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], backends: &str| {
        // A host without accelerators in its files (the development VM's capture): the
        // H100 of the default fixture tree would be examined as a replay.
        let output = common::command()
            .env("HILT_BACKENDS", backends)
            .env("HILT_SYSFS_ROOT", common::host_fixture("devvm"))
            .args(["run", "--out", out.path().to_str().expect("utf-8")])
            .args(args)
            .output()
            .expect("hilt runs");
        let record = ResultRecord::from_json(&std::fs::read(out.path().join("latest/result.json")).expect("record"))
            .expect("readable");
        (output, record)
    };
    let (output, record) = run(&["--tier", "smoke"], "none");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(record.conformance.status, ConformanceStatus::NoAccelerator);
    assert!(!record.conformance.conformant);
    assert!(
        record
            .run
            .no_accelerator
            .as_deref()
            .is_some_and(|w| w.contains("opencl: not probed"))
    );
    assert!(stdout.contains("test result: FAILED."), "{stdout}");
    assert!(stdout.contains("NOT EXAMINED: no accelerator was examined"), "{stdout}");
    assert!(
        stderr.contains("hilt: exit status 3: no accelerator was examined"),
        "{stderr}"
    );
    assert!(!stderr.contains("hilt: conformant"), "{stderr}");
    insta::assert_snapshot!(
        "fallback_messages",
        common::redact(&stderr.replace(&out.path().display().to_string(), "[out]"))
    );

    for (args, backends) in [
        (&["--tier", "smoke", "--device", "sim0"][..], "none"),
        (&["--tier", "smoke", "--profile", "sim-reference"][..], "none"),
        (&["--tier", "smoke"][..], "sim"),
    ] {
        let (output, record) = run(args, backends);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?} HILT_BACKENDS={backends}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(record.conformance.status, ConformanceStatus::Conformant);
        assert!(record.run.no_accelerator.is_none());
    }
}

/// libtest's line, hilt's summary and JUnit count the same trials the same way, whatever
/// the filters: an accelerator shortfall is a failing entry in all three (the exit status
/// is 3), never filtered away in one of them only.
#[test]
fn the_terminal_the_summary_and_junit_agree_whatever_the_filters() {
    let number = |text: &str, after: &str, word: &str| -> u32 {
        let from = text.find(after).unwrap_or_else(|| panic!("no `{after}` in {text}")) + after.len();
        let rest = &text[from..];
        let at = rest
            .find(word)
            .unwrap_or_else(|| panic!("no `{word}` after `{after}` in {text}"));
        let digits: String = rest[..at].trim_end().rsplit(' ').next().unwrap_or_default().to_string();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("`{digits}` before `{word}` in {text}"))
    };
    let attribute = |xml: &str, name: &str| -> u32 {
        let root = xml.lines().nth(1).expect("root line");
        number(root, &format!("{name}=\""), "\"")
    };
    for (backends, args) in [
        ("none", &["--tier", "smoke"][..]),
        ("none", &["--tier", "smoke", "residue"][..]),
        ("none", &["--tier", "smoke", "--skip", "hilt"][..]),
        ("none", &["--exact", "residue::global::cross_process::sim0"][..]),
        (
            "sim",
            &["--tier", "smoke", "--expect-devices", "2", "residue::global"][..],
        ),
        (
            "sim",
            &["--tier", "smoke", "--expect-devices", "2", "--skip", "accelerators"][..],
        ),
    ] {
        let out = tempfile::tempdir().expect("tempdir");
        let junit = out.path().join("j.xml");
        // A host without accelerator functions: with no backend, the run falls back.
        let output = common::command()
            .env("HILT_BACKENDS", backends)
            .env("HILT_SYSFS_ROOT", common::host_fixture("devvm"))
            .args(["run", "--out", out.path().to_str().expect("utf-8")])
            .args(["--junit", junit.to_str().expect("utf-8")])
            .args(args)
            .output()
            .expect("hilt runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let case = format!("HILT_BACKENDS={backends} {args:?}");
        assert_eq!(output.status.code(), Some(3), "{case}: {stderr}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("test result: "))
            .unwrap_or_else(|| panic!("{case}: no libtest line: {stdout}"));
        assert!(line.starts_with("test result: FAILED."), "{case}: {line}");
        let summary = stderr
            .lines()
            .find(|l| l.contains(" tier smoke: ") || l.contains(" tier standard: "))
            .unwrap_or_else(|| panic!("{case}: no summary: {stderr}"));
        let xml = std::fs::read_to_string(&junit).expect("JUnit written");
        let (passed, failed, ignored, filtered) = (
            number(line, "FAILED.", "passed"),
            number(line, "passed;", "failed"),
            number(line, "failed;", "ignored"),
            number(line, "measured;", "filtered out"),
        );
        assert!(failed >= 1, "{case}: the shortfall is a failing entry: {line}");
        assert_eq!(number(summary, ": ", "passed"), passed, "{case}: {summary} / {line}");
        assert_eq!(
            number(summary, "passed;", "failed"),
            failed,
            "{case}: {summary} / {line}"
        );
        assert_eq!(
            number(summary, "failed", "ignored"),
            ignored,
            "{case}: {summary} / {line}"
        );
        assert_eq!(
            number(summary, "ignored", "filtered out"),
            filtered,
            "{case}: {summary} / {line}"
        );
        assert_eq!(
            attribute(&xml, "tests"),
            passed + failed + ignored,
            "{case}: {line}\n{xml}"
        );
        assert_eq!(
            attribute(&xml, "failures") + attribute(&xml, "errors"),
            failed,
            "{case}: {line}\n{xml}"
        );
        assert_eq!(attribute(&xml, "skipped"), ignored, "{case}: {line}\n{xml}");
    }
}

/// Fewer accelerators than expected (`--expect-devices`, or the profile's
/// `expect_devices`) make the run inconclusive, naming what is there and what is not.
#[test]
fn fewer_devices_than_expected_is_inconclusive_and_names_what_is_missing() {
    let run = common::run(&["--expect-devices", "2", "--tier", "smoke"]);
    assert_eq!(run.exit, 3, "{}", run.stderr);
    assert_eq!(run.record.conformance.status, ConformanceStatus::Inconclusive);
    assert_eq!(run.record.run.expected_devices, Some(2));
    assert_eq!(
        run.record.conformance.reasons[0],
        "expected 2 accelerator(s), examined 1 (sim0); accelerator PCI functions that no backend drives: \
         0000:17:00.0 GH100 [H100 SXM5 80GB] (driver nvidia); the backends said: opencl: not probed \
         (HILT_BACKENDS=sim); cuda: not probed (HILT_BACKENDS=sim); vulkan: not probed (HILT_BACKENDS=sim)"
    );
    assert!(run.stdout.contains("test result: FAILED."), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("hilt: warning: expected 2 accelerator(s), examined 1"),
        "{}",
        run.stderr
    );

    let enough = common::run(&["--expect-devices", "1", "--tier", "smoke"]);
    assert_eq!(enough.exit, 0, "{}", enough.stderr);

    // The profile's key does the same, and the command line overrides it.
    let by_profile = common::run(&["--profile", "eight-devices", "--tier", "smoke"]);
    assert_eq!(by_profile.exit, 3, "{}", by_profile.stderr);
    assert_eq!(by_profile.record.run.expected_devices, Some(8));
    let overridden = common::run(&["--profile", "eight-devices", "--tier", "smoke", "--expect-devices", "1"]);
    assert_eq!(overridden.exit, 0, "{}", overridden.stderr);
}

/// Messages for what a person gets wrong, or what the machine lacks, each saying what is
/// wrong and what to do.
#[test]
fn messages_say_what_is_wrong_and_what_to_do() {
    let mut report = String::new();
    for (args, backends, code) in [
        (&["run", "--device", "cuda0"][..], "none", 3),
        (&["run", "--device", "cuda0"][..], "sim", 3),
        (&["run", "--profile", "nvidia-hoper"][..], "sim", 2),
        (&["run", "--profile", "nvidia-hopper"][..], "none", 3),
        (&["run", "--profile", "nvidia-hopper"][..], "sim", 2),
    ] {
        // A host without accelerators in its files: the machine's accelerators are gone.
        let output = common::command()
            .env("HILT_BACKENDS", backends)
            .env("HILT_SYSFS_ROOT", common::host_fixture("devvm"))
            .args(args)
            .arg("--list")
            .output()
            .expect("hilt runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?} {backends}: {stderr}");
        let stderr = stderr.replace(env!("CARGO_MANIFEST_DIR"), "[repo]");
        report.push_str(&format!(
            "=== HILT_BACKENDS={backends} hilt {}\n{stderr}\n",
            args.join(" ")
        ));
    }
    insta::assert_snapshot!(report);
}

/// `hilt run --help` speaks hilt's own words (no typo from a dependency's doc strings) and
/// documents the exit codes.
#[test]
fn run_help_documents_exit_codes_in_hilts_words() {
    let help = stdout(&["run", "--help"]);
    assert!(!help.contains("Usefull"), "{help}");
    assert!(!help.contains("run on serially"), "{help}");
    for code in ["  0 ", "  1 ", "  2 ", "  3 ", "  130 ", "143"] {
        assert!(help.contains(code), "exit code {code} documented: {help}");
    }
    assert!(help.contains("useful for runs with many trials"), "{help}");
}

/// A certification-tier run under a profile that cannot certify says so before it runs.
#[test]
fn certification_under_a_non_certifying_profile_is_said_at_the_start() {
    let run = common::run(&["--tier", "certification", "residue::global::cross_process"]);
    let first = run.stderr.lines().take(3).collect::<Vec<_>>().join("\n");
    assert!(
        first.contains("hilt: note: profile sim-reference does not certify"),
        "said before anything ran: {}",
        run.stderr
    );
    let run = common::run(&[
        "--tier",
        "certification",
        "--profile",
        "claims-certifying",
        "residue::global::cross_process",
    ]);
    assert!(
        run.stderr.contains("hilt: note: the simulated device never certifies"),
        "{}",
        run.stderr
    );
}

/// `ci/gpu-smoke.sh` on the sim (`GPU_SMOKE_DEVICE=sim0`, the script's own way to be tried
/// without a GPU): its certification sweep runs beside the on-device copy benchmark in one
/// `hilt run`, so `throughput.txt` sets the detector's throughput against the copy median
/// of the same run, the figure docs/benchmarks.md aims at, and the run holds nothing else.
#[test]
fn the_gpu_smoke_script_sets_the_detector_against_the_copy_of_the_same_run() {
    let out = tempfile::tempdir().expect("tempdir");
    let status = common::command_for("ci/gpu-smoke.sh")
        .arg(out.path())
        .env("GPU_SMOKE_DEVICE", "sim0")
        .env("HILT_BIN", common::hilt_bin())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("ci/gpu-smoke.sh runs");
    let summary = std::fs::read_to_string(out.path().join("summary.txt")).unwrap_or_default();
    assert!(status.success(), "{summary}");
    let sweep = common::run_dir(&out.path().join("run-sweep"));
    let record =
        ResultRecord::from_json(&std::fs::read(sweep.join("result.json")).expect("result.json")).expect("record");
    let mut trials: Vec<&str> = record.outcomes.iter().map(|o| o.trial.as_str()).collect();
    trials.sort_unstable();
    assert_eq!(
        trials,
        [
            "performance::device_copy_bandwidth::sim0",
            "residue::global::cross_context::sim0"
        ],
        "{summary}"
    );
    let figures = std::fs::read_to_string(out.path().join("throughput.txt")).expect("throughput.txt");
    assert!(figures.contains("run-sweep: device copy median"), "{figures}");
    assert!(
        figures.lines().any(
            |l| l.starts_with("run-sweep: residue::global::cross_context::sim0 pass")
                && l.contains("listener_throughput")
                && l.contains(" of the copy median")
                && l.contains("sweep covered")
        ),
        "{figures}"
    );
}
