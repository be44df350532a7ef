//! Host checks: every one passes on the compliant fixture host and fails on each fixture
//! tree it names (`host_faults`), through the real `hilt` binary with `--sysfs-root`; a
//! capture replays with the verdicts of the tree it was taken from; what the host lacks
//! is not applicable and what hilt cannot read is inconclusive, never a pass.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use hilt_harness::check::Scope;

/// Runs the host checks of profile `h100-host` on fixture `root`.
fn run_on(root: &Path, extra: &[&str]) -> common::Run {
    let root = root.to_str().expect("utf-8 path");
    let mut args = vec!["--profile", "h100-host", "--sysfs-root", root];
    args.extend_from_slice(extra);
    common::run(&args)
}

fn outcome<'r>(run: &'r common::Run, check: &str) -> &'r hilt_results::Outcome {
    run.record
        .outcomes
        .iter()
        .find(|o| o.check == check)
        .unwrap_or_else(|| panic!("{check} did not run:\n{}", run.stdout))
}

fn reason(run: &common::Run, check: &str) -> String {
    outcome(run, check).reason.clone().unwrap_or_default()
}

/// A copy of a fixture tree to change in a test.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", common::host_fixture(name).display()))
        .arg(dir.path())
        .status()
        .expect("cp runs");
    assert!(status.success());
    dir
}

#[test]
fn every_host_check_passes_on_the_good_host_and_fails_on_its_faults() {
    let catalogue = hilt_suites::catalogue();
    let host_checks: Vec<_> = catalogue.checks().iter().filter(|c| c.scope != Scope::Device).collect();
    assert!(host_checks.len() >= 12);
    let good = run_on(&common::host_fixture("h100-good"), &[]);
    assert_eq!(good.exit, 0, "{}\n{}", good.stdout, good.stderr);
    for check in &host_checks {
        assert_eq!(
            common::verdict(&good.record, check.id),
            "pass",
            "{} on h100-good",
            check.id
        );
    }
    let mut faults: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for check in &host_checks {
        for fault in check.host_faults {
            faults.entry(fault).or_default().push(check.id);
        }
    }
    for (fault, checks) in faults {
        let run = run_on(&common::host_fixture(fault), &[]);
        for check in checks {
            assert_eq!(
                common::verdict(&run.record, check),
                "fail",
                "{check} on fixture {fault}: {:?}",
                outcome(&run, check).reason
            );
        }
    }
}

#[test]
fn a_filtered_run_on_the_good_host_passes_through_the_cli() {
    let run = common::run(&[
        "--sysfs-root",
        common::host_fixture("h100-good").to_str().expect("utf-8"),
        "platform",
    ]);
    assert_eq!(run.record.outcomes.len(), 5, "{}", run.stdout);
    assert!(
        run.record
            .outcomes
            .iter()
            .all(|o| o.verdict == hilt_results::Verdict::Pass)
    );
    assert!(
        run.stdout.contains("test result: ok. 5 passed; 0 failed"),
        "{}",
        run.stdout
    );
}

#[test]
fn failures_say_what_was_found_and_where() {
    let run = run_on(&common::host_fixture("root-login-key"), &["sshd"]);
    assert_eq!(
        reason(&run, "platform.sshd.root_login"),
        "PermitRootLogin is `prohibit-password` (/etc/ssh/sshd_config.d/05-cloud-init.conf:1): root can log in \
         remotely with a key"
    );
    assert_eq!(run.exit, 1, "a mandatory check failed");

    let run = run_on(&common::host_fixture("degraded-link"), &["pcie_link"]);
    let o = outcome(&run, "performance.pcie_link");
    assert_eq!(
        o.reason.as_deref(),
        Some("the link of 0000:17:00.0 runs at x8 of x16 lanes")
    );
    let width = o
        .measurements
        .iter()
        .find(|m| m.name == "current_link_width")
        .expect("measured");
    assert_eq!((width.value, width.threshold), (8.0, Some(16.0)));

    let run = run_on(&common::host_fixture("vulnerable-driver"), &["advisories"]);
    let why = reason(&run, "firmware.driver_advisories");
    assert!(
        why.starts_with("driver nvidia 535.161.07 is affected by NVIDIA-5551 (2024-06-06, fixed in 535.183.01)"),
        "{why}"
    );
    assert!(why.ends_with("update to at least 535.309.01 on branch R535"), "{why}");

    let run = run_on(&common::host_fixture("shared-iommu-group"), &["iommu"]);
    assert!(reason(&run, "isolation.iommu.group").contains("shares IOMMU group 40 with 0000:18:00.0"));

    let run = run_on(&common::host_fixture("rom-mismatch"), &["rom"]);
    assert!(reason(&run, "firmware.rom_measurement").contains("matches none of the 1 reference(s)"));
}

#[test]
fn the_development_vm_capture_is_mostly_not_applicable_and_never_a_false_pass() {
    let run = common::run(&["--sysfs-root", common::host_fixture("devvm").to_str().expect("utf-8")]);
    let verdicts: BTreeMap<String, String> = run
        .record
        .outcomes
        .iter()
        .filter(|o| o.device == "host")
        .map(|o| (o.check.clone(), o.verdict.as_str().to_string()))
        .collect();
    insta::assert_debug_snapshot!(verdicts);
    assert_eq!(
        run.exit, 0,
        "host checks are informational under sim-reference:\n{}",
        run.stderr
    );
    assert_eq!(
        reason(&run, "platform.kernel_lockdown"),
        "securityfs is not mounted at /sys/kernel/security, so the lockdown mode cannot be read (mount -t \
         securityfs securityfs /sys/kernel/security)"
    );
}

#[test]
fn a_file_hilt_may_not_read_is_inconclusive_never_a_pass() {
    let dir = copy_of("h100-good");
    let manifest = dir.path().join(hilt_harness::hostfs::MANIFEST);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    m["unreadable"] = serde_json::json!({ "/etc/ssh/sshd_config": "permission denied" });
    std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");
    let run = run_on(dir.path(), &["sshd"]);
    assert_eq!(common::verdict(&run.record, "platform.sshd.root_login"), "inconclusive");
    assert!(reason(&run, "platform.sshd.root_login").contains("failed to read /etc/ssh/sshd_config"));
}

#[test]
fn advisories_tell_unlisted_branches_and_unknown_drivers_apart() {
    let dir = copy_of("h100-good");
    let version = dir.path().join("sys/module/nvidia/version");
    std::fs::write(&version, "535.309.01\n").expect("write");
    let run = run_on(dir.path(), &["advisories"]);
    assert_eq!(
        common::verdict(&run.record, "firmware.driver_advisories"),
        "inconclusive"
    );
    assert!(
        reason(&run, "firmware.driver_advisories")
            .contains("the latest advisory, NVIDIA-5861 (2026-09-30), lists no R535 release")
    );

    let link = dir.path().join("sys/bus/pci/devices/0000:17:00.0/driver");
    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink("../../../../bus/pci/drivers/vfio-pci", &link).expect("link");
    let run = run_on(dir.path(), &["advisories"]);
    assert_eq!(
        common::verdict(&run.record, "firmware.driver_advisories"),
        "not_applicable"
    );
    assert!(reason(&run, "firmware.driver_advisories").starts_with("hilt has no advisory data for driver `vfio-pci`"));
}

#[test]
fn a_capture_replays_with_the_same_verdicts() {
    for name in ["h100-good", "world-writable-nodes", "root-login-key", "devvm"] {
        let source = common::host_fixture(name);
        let tmp = tempfile::tempdir().expect("tempdir");
        let tar = tmp.path().join("capture.tar");
        let out = common::hilt(&[
            "capture",
            tar.to_str().expect("utf-8"),
            "--sysfs-root",
            source.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let unpacked = tmp.path().join("root");
        std::fs::create_dir(&unpacked).expect("mkdir");
        tar::Archive::new(std::fs::File::open(&tar).expect("open"))
            .unpack(&unpacked)
            .expect("unpack");
        let verdicts = |run: &common::Run| -> Vec<(String, String, Option<String>)> {
            let mut v: Vec<_> = run
                .record
                .outcomes
                .iter()
                .map(|o| (o.trial.clone(), o.verdict.as_str().to_string(), o.reason.clone()))
                .filter(|(t, _, _)| !t.starts_with("residue"))
                .collect();
            v.sort();
            v
        };
        // The VM has no accelerator for h100-host to match: its host checks run under
        // the default profile.
        let replay = |root: &Path| match name {
            "devvm" => common::run(&["--sysfs-root", root.to_str().expect("utf-8")]),
            _ => run_on(root, &[]),
        };
        let (before, after) = (replay(&source), replay(&unpacked));
        assert_eq!(verdicts(&before), verdicts(&after), "capture of {name}");
        assert!(!verdicts(&before).is_empty());
    }
}
