//! One node of a fleet: the node a result names, one run per device at a time across
//! the node (two real `hilt run`s on the sim device), and other processes on a device
//! making its performance figures inconclusive.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hilt_results::ResultRecord;

fn record_below(dir: &Path) -> ResultRecord {
    let files = common::results_below(dir, false);
    assert_eq!(files.len(), 1, "one result below {}: {files:?}", dir.display());
    ResultRecord::from_json(&std::fs::read(&files[0]).expect("read")).expect("a record")
}

#[test]
fn the_node_is_the_host_name_unless_named() {
    // On the live host (the tests' default root is a replayed tree, whose node is named
    // after its capture: tests/replay.rs).
    let live = tempfile::tempdir().expect("tempdir");
    let status = common::command()
        .args(["run", "-q", "--tier", "smoke", "--out"])
        .arg(live.path())
        .env_remove("HILT_SYSFS_ROOT")
        .env_remove("HILT_NODE")
        .output()
        .expect("hilt runs");
    assert!(
        status.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let record = record_below(live.path());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    assert_eq!(record.host.node.as_deref(), Some(host.trim()));
    assert_eq!(record.format.minor, 2);

    let run = common::run(&["--tier", "smoke", "--node", "gpu-017"]);
    assert_eq!(run.record.host.node_name(), "gpu-017");
    assert_eq!(
        run.record.host.hostname,
        host.trim(),
        "the host name stays what the kernel says"
    );

    let out = tempfile::tempdir().expect("tempdir");
    let status = common::command()
        .args(["run", "-q", "--tier", "smoke", "--out"])
        .arg(out.path())
        .env("HILT_NODE", "n2.cluster")
        .output()
        .expect("hilt runs");
    assert!(status.status.success());
    assert_eq!(record_below(out.path()).host.node_name(), "n2.cluster");

    for bad in ["", "../etc", "a b", "n1/x", ".hidden", "ünï"] {
        let out = common::hilt(&["run", "--node", bad, "--list"]);
        assert_eq!(out.status.code(), Some(2), "--node {bad:?} is refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a node name"), "{err}");
    }
}

/// `hilt run` on the sim with a shared lock directory, writing under `out`.
fn run_on_sim(lock_dir: &Path, out: &Path, args: &[&str]) -> Child {
    common::command()
        .args(["run", "-q", "--tier", "smoke", "--node", "n1", "--out"])
        .arg(out)
        .args(args)
        .env("HILT_LOCK_DIR", lock_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hilt runs")
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("hilt ends");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_runs_on_one_device_take_turns_or_the_second_gives_up_with_exit_3() {
    let locks = tempfile::tempdir().expect("tempdir");
    let outs = tempfile::tempdir().expect("tempdir");
    let lock_file = locks.path().join("hilt-sim-sim0.lock");
    // A slow device keeps the first run busy for a few seconds.
    let first = run_on_sim(locks.path(), &outs.path().join("first"), &["--sim-knob", "slow_ms=100"]);
    // It has the device once its lock file names it.
    let start = Instant::now();
    while !std::fs::read_to_string(&lock_file).is_ok_and(|t| t.contains(&format!("pid {}", first.id()))) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The second gives up after a second: nothing ran, nothing was written, exit 3.
    let second_out = outs.path().join("second");
    let (code, err) = finish(run_on_sim(locks.path(), &second_out, &["--lock-timeout", "1"]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "device sim0 is in use by another hilt run (pid {} on node n1, since",
            first.id()
        )),
        "{err}"
    );
    assert!(
        err.contains("was still locked after 1 s") && err.contains("nothing ran"),
        "{err}"
    );
    assert!(
        common::results_below(&second_out, false).is_empty(),
        "a run that waited in vain writes no result"
    );

    // The third waits its turn, then runs on the device the first has let go.
    let third = run_on_sim(locks.path(), &outs.path().join("third"), &["--lock-timeout", "300"]);
    let (code, err) = finish(first);
    assert_eq!(code, 0, "{err}");
    let (code, err) = finish(third);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("device sim0 is in use by another hilt run"),
        "it said whom it waited for: {err}"
    );
    let first = record_below(&outs.path().join("first"));
    let third = record_below(&outs.path().join("third"));
    let first_end = first.run.finished_at.clone().expect("finished");
    let third_start = third
        .outcomes
        .iter()
        .map(|o| o.started_at.clone())
        .min()
        .expect("trials");
    assert!(
        third_start >= first_end,
        "the third run's trials began ({third_start}) after the first ended ({first_end})"
    );
}

/// A process that is not hilt's holding `path` open, until killed.
struct Holder(Child);

impl Holder {
    fn new(path: &Path) -> Holder {
        let file = std::fs::File::open(path).expect("open");
        Holder(Command::new("sleep").arg("300").stdin(file).spawn().expect("sleep"))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn another_process_on_the_device_makes_performance_inconclusive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("accel0");
    std::fs::write(&node, "").expect("device file");
    let knob = format!("device_file=\"{}\"", node.display());
    let performance = |r: &ResultRecord| -> Vec<(String, String)> {
        r.outcomes
            .iter()
            .filter(|o| o.check.starts_with("performance.") && o.device == "sim0")
            .map(|o| (o.check.clone(), o.verdict.as_str().to_string()))
            .collect()
    };

    // Nobody else: the figures stand, and the record says what was looked at.
    let quiet = common::run(&["--device", "sim0", "--sim-knob", &knob]);
    let perf = performance(&quiet.record);
    assert_eq!(perf.len(), 5, "{perf:?}");
    assert!(perf.iter().all(|(_, v)| v == "pass"), "{perf:?}");
    let o = quiet
        .record
        .outcomes
        .iter()
        .find(|o| o.device == "sim0")
        .expect("a device trial");
    assert_eq!(
        o.evidence["device_users_looked_at"],
        serde_json::json!([node.display().to_string()])
    );
    assert!(!o.evidence.contains_key("device_users"));

    // A process holding the device's file: every device trial names it, and no
    // performance figure counts.
    let holder = Holder::new(&node);
    let busy = common::run(&["--device", "sim0", "--sim-knob", &knob]);
    let expected = format!("pid {} (sleep) holds {}", holder.0.id(), node.display());
    for (check, verdict) in performance(&busy.record) {
        assert_eq!(verdict, "inconclusive", "{check}");
    }
    for o in busy.record.outcomes.iter().filter(|o| o.device == "sim0") {
        assert_eq!(o.evidence["device_users"], serde_json::json!([expected]), "{}", o.trial);
        if o.check.starts_with("performance.") {
            let reason = o.reason.as_deref().unwrap_or_default();
            assert!(
                reason.contains("other processes used the device") && reason.contains(&expected),
                "{reason}"
            );
        } else {
            assert_eq!(
                o.verdict.as_str(),
                "pass",
                "{}: only performance figures are spoiled",
                o.trial
            );
        }
    }
}

#[test]
fn a_lock_directory_made_under_a_strict_umask_is_reachable_by_every_user() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().expect("tempdir");
    let outs = tempfile::tempdir().expect("tempdir");
    let locks = base.path().join("a/b/locks");
    // A site's hardened umask (077) must not make the parents hilt creates private: the
    // 1777 lock directory under them would be out of every other user's reach.
    let out = common::command_for("sh")
        .args(["-c", "umask 077 && exec \"$0\" \"$@\""])
        .arg(common::hilt_bin())
        .args(["run", "-q", "--tier", "smoke", "--node", "n1", "--out"])
        .arg(outs.path())
        .arg("isolation")
        .env("HILT_LOCK_DIR", &locks)
        .output()
        .expect("hilt runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &Path| std::fs::metadata(p).expect("made").permissions().mode() & 0o7777;
    assert_eq!(mode(&base.path().join("a")), 0o755);
    assert_eq!(mode(&base.path().join("a/b")), 0o755);
    assert_eq!(mode(&locks), 0o1777);
}
