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
    copy_into(name, dir.path());
    dir
}

/// Copies fixture tree `name` (links as links) into the existing directory `dest`.
fn copy_into(name: &str, dest: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", common::host_fixture(name).display()))
        .arg(dest)
        .status()
        .expect("cp runs");
    assert!(status.success());
}

/// Runs the host checks of the profile for fixture `name`'s hardware: the shipped
/// `amd-mi300x` for the MI300X trees (`mi300x-*`), else `h100-host`.
fn run_on_its_profile(name: &str) -> common::Run {
    match name.strip_prefix("mi300x-") {
        Some(_) => common::run(&[
            "--profile",
            "amd-mi300x",
            "--sysfs-root",
            common::host_fixture(name).to_str().expect("utf-8"),
        ]),
        None => run_on(&common::host_fixture(name), &[]),
    }
}

#[test]
fn every_host_check_passes_on_the_good_host_and_fails_on_its_faults() {
    let catalogue = hilt_suites::catalogue();
    let host_checks: Vec<_> = catalogue.checks().iter().filter(|c| c.scope != Scope::Device).collect();
    assert!(host_checks.len() >= 12);
    // Each check passes on one of the good hosts and is never worse than not applicable
    // on the other (an AMD check does not apply to the H100, an option ROM to the MI300X).
    let good = run_on(&common::host_fixture("h100-good"), &[]);
    assert_eq!(good.exit, 0, "{}\n{}", good.stdout, good.stderr);
    let amd = run_on_its_profile("mi300x-good");
    assert_ne!(amd.exit, 1, "{}\n{}", amd.stdout, amd.stderr);
    for check in &host_checks {
        let verdicts = [&good, &amd].map(|run| {
            run.record
                .outcomes
                .iter()
                .filter(|o| o.check == check.id)
                .map(|o| o.verdict.as_str())
                .collect::<Vec<_>>()
        });
        assert!(
            verdicts.iter().any(|v| !v.is_empty() && v.iter().all(|v| *v == "pass")),
            "{} passes on no good host: {verdicts:?}",
            check.id
        );
        assert!(
            verdicts
                .iter()
                .flatten()
                .all(|v| ["pass", "not_applicable"].contains(v)),
            "{} on the good hosts: {verdicts:?}",
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
        let run = run_on_its_profile(fault);
        for check in checks {
            // A host of several accelerators fails where its fault is planted.
            assert!(
                run.record
                    .outcomes
                    .iter()
                    .any(|o| o.check == check && o.verdict == hilt_results::Verdict::Fail),
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
    let run = run_on(&common::host_fixture("root-login-key"), &["remote_root_login"]);
    assert_eq!(
        reason(&run, "platform.remote_root_login"),
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
    mark_unreadable(dir.path(), "/etc/ssh/sshd_config");
    let run = run_on(dir.path(), &["remote_root_login"]);
    assert_eq!(
        common::verdict(&run.record, "platform.remote_root_login"),
        "inconclusive"
    );
    assert!(reason(&run, "platform.remote_root_login").contains("failed to read /etc/ssh/sshd_config"));
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
    assert!(reason(&run, "firmware.driver_advisories").contains("bound to `vfio-pci` for passthrough"));

    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink("../../../../bus/pci/drivers/habanalabs", &link).expect("link");
    let run = run_on(dir.path(), &["advisories"]);
    assert_eq!(
        common::verdict(&run.record, "firmware.driver_advisories"),
        "inconclusive",
        "a present driver hilt has no data for is not a missing facility"
    );
    assert!(
        reason(&run, "firmware.driver_advisories").starts_with("hilt has no advisory data for driver `habanalabs` yet")
    );

    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink("../../../../bus/pci/drivers/nvidia", &link).expect("link");
    std::fs::write(&version, "535.abc.01\n").expect("write");
    let run = run_on(dir.path(), &["advisories"]);
    assert_eq!(
        common::verdict(&run.record, "firmware.driver_advisories"),
        "inconclusive"
    );
    assert!(reason(&run, "firmware.driver_advisories").contains("cannot be compared"));
}

/// A profile file in `dir` that extends h100-host with `body` (TOML).
fn profile_in(dir: &Path, id: &str, body: &str) -> String {
    let path = dir.join(format!("{id}.toml"));
    let text = format!(
        "id = \"{id}\"\ntitle = \"test\"\nversion = \"0.1.0\"\nextends = \"h100-host\"\n\n\
         [[match]]\npci_vendor = 0x10de\n\n{body}"
    );
    std::fs::write(&path, text).expect("write profile");
    path.to_str().expect("utf-8").to_string()
}

fn run_with_profile(root: &Path, profile: &str, filter: &str) -> common::Run {
    common::run(&[
        "--profile",
        profile,
        "--sysfs-root",
        root.to_str().expect("utf-8"),
        filter,
    ])
}

#[test]
fn replayed_trees_are_confined_to_their_root_and_reads_are_bounded() {
    // rom -> /dev/zero, and an Include that climbs out of the root: neither is read.
    let run = run_on(&common::host_fixture("hostile"), &[]);
    assert_eq!(common::verdict(&run.record, "firmware.rom_measurement"), "inconclusive");
    let why = reason(&run, "firmware.rom_measurement");
    assert!(
        why.contains("leads through a link to the absolute path /dev/zero"),
        "{why}"
    );
    assert_eq!(
        common::verdict(&run.record, "platform.remote_root_login"),
        "inconclusive"
    );
    let why = reason(&run, "platform.remote_root_login");
    assert!(
        why.contains("climbs above the top of the root") && why.contains("(to /etc/passwd)"),
        "{why}"
    );
    // The inventory will not take the size of a ROM that leads out of the root either.
    assert_eq!(common::verdict(&run.record, "firmware.inventory"), "inconclusive");

    let run = run_on(&common::host_fixture("include-link-out"), &["remote_root_login"]);
    assert_eq!(
        common::verdict(&run.record, "platform.remote_root_login"),
        "inconclusive"
    );
    assert!(
        reason(&run, "platform.remote_root_login")
            .contains("20-escape.conf: leads through a link to the absolute path /etc/passwd")
    );
}

#[test]
fn where_a_tree_lies_never_changes_its_verdicts() {
    // A `..` chain that leaves a tree in a shallow directory must be refused under a deep
    // one too, not read as a harmless missing file.
    for name in ["hostile", "include-link-out"] {
        let source = common::host_fixture(name);
        let tmp = tempfile::tempdir().expect("tempdir");
        let deep = tmp.path().join("d/".repeat(40)).join(name);
        std::fs::create_dir_all(&deep).expect("mkdir");
        copy_into(name, &deep);
        let verdicts = |root: &Path| -> Vec<(String, String)> {
            let run = run_on(root, &[]);
            let mut v: Vec<_> = run
                .record
                .outcomes
                .iter()
                .map(|o| (o.trial.clone(), o.verdict.as_str().to_string()))
                .collect();
            v.sort();
            v
        };
        let here = verdicts(&source);
        assert!(
            here.iter()
                .any(|(t, v)| t.contains("remote_root_login") && v == "inconclusive")
        );
        assert_eq!(verdicts(&deep), here, "{name}");
    }
}

#[test]
fn a_capture_of_a_hostile_tree_holds_nothing_from_outside_it() {
    for name in ["hostile", "include-link-out"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tar = tmp.path().join("capture.tar");
        let out = common::hilt(&[
            "capture",
            tar.to_str().expect("utf-8"),
            "--sysfs-root",
            common::host_fixture(name).to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&tar).expect("read");
        assert!(bytes.len() < 1 << 20, "{name}: {} bytes", bytes.len());
        let passwd = std::fs::read("/etc/passwd").expect("this machine has /etc/passwd");
        let first_line = passwd.split(|b| *b == b'\n').next().expect("a line");
        assert!(
            !bytes.windows(first_line.len()).any(|w| w == first_line),
            "{name}: /etc/passwd entered the capture"
        );
        let manifest = manifest_of(&tar);
        let refused: Vec<&String> = manifest["unreadable"]
            .as_object()
            .expect("unreadable")
            .iter()
            .filter(|(_, v)| v["kind"] == "refused")
            .map(|(k, _)| k)
            .collect();
        assert!(!refused.is_empty(), "{name}: {manifest}");
    }
}

#[test]
fn the_rom_enable_write_is_opt_in_and_never_made_under_a_replayed_root() {
    let dir = copy_of("h100-good");
    let rom = dir.path().join("sys/bus/pci/devices/0000:17:00.0/rom");
    std::fs::write(&rom, "").expect("empty rom");
    let profiles = tempfile::tempdir().expect("tempdir");
    let p = profile_in(
        profiles.path(),
        "rom-enabled",
        "[check.\"firmware.rom_measurement\".params]\nenable_rom_read = true\n",
    );
    let run = run_with_profile(dir.path(), &p, "rom");
    assert_eq!(common::verdict(&run.record, "firmware.rom_measurement"), "inconclusive");
    assert_eq!(
        std::fs::read(&rom).expect("read"),
        b"",
        "nothing was written into the tree"
    );
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/base.toml"))
        .expect("base profile");
    assert!(
        base.contains("params = { enable_rom_read = false }"),
        "the write is opt-in"
    );
}

#[test]
fn one_malformed_pci_function_leaves_the_others_checked() {
    let run = run_on(&common::host_fixture("pci-malformed"), &[]);
    assert_eq!(run.exit, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(common::verdict(&run.record, "isolation.iommu.group"), "pass");
    for address in ["0000:18:00.0", "0000:19:00.0", "0000:1a:00.0"] {
        assert!(
            run.stderr
                .contains(&format!("warning: left out PCI function {address}")),
            "{address}: {}",
            run.stderr
        );
    }
    assert!(
        run.stderr.contains("`zz` is not a hexadecimal number"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("0000:02:00.0"),
        "the BMC display is no accelerator"
    );
    let out = common::hilt(&[
        "devices",
        "--sysfs-root",
        common::host_fixture("pci-malformed").to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0000:17:00.0  10de:2330"), "{text}");
    assert!(text.contains("unreadable: PCI function 0000:18:00.0"), "{text}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let tar = tmp.path().join("capture.tar");
    let out = common::hilt(&[
        "capture",
        tar.to_str().expect("utf-8"),
        "--sysfs-root",
        common::host_fixture("pci-malformed").to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = manifest_of(&tar);
    assert!(
        manifest["pci_errors"]["0000:18:00.0"]
            .as_str()
            .expect("recorded")
            .contains("zz")
    );
}

/// The manifest inside a capture archive.
fn manifest_of(tar: &Path) -> serde_json::Value {
    let mut archive = tar::Archive::new(std::fs::File::open(tar).expect("open"));
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").to_str() == Some(hilt_harness::hostfs::MANIFEST) {
            return serde_json::from_reader(&mut entry).expect("json");
        }
    }
    panic!("no manifest in {}", tar.display())
}

#[test]
fn iommu_groups_without_a_group_or_a_type_are_never_a_pass() {
    let run = run_on(&common::host_fixture("iommu-no-group"), &["iommu"]);
    assert_eq!(common::verdict(&run.record, "isolation.iommu.group"), "fail");
    assert!(reason(&run, "isolation.iommu.group").contains("is in none of its groups: its DMA is not translated"));

    let run = run_on(&common::host_fixture("iommu-no-type"), &["iommu"]);
    let o = outcome(&run, "isolation.iommu.group");
    assert_eq!(o.verdict.as_str(), "inconclusive", "{:?}", o.reason);
    assert!(reason(&run, "isolation.iommu.group").contains("domain type is unknown"));
    assert_eq!(o.evidence["bridges_in_group"], serde_json::json!(["0000:16:01.0"]));
}

#[test]
fn a_link_that_is_down_fails_and_an_unknown_speed_is_inconclusive_when_full_speed_is_required() {
    let run = run_on(&common::host_fixture("link-down"), &["pcie_link"]);
    assert_eq!(
        reason(&run, "performance.pcie_link"),
        "the link of 0000:17:00.0 is down: its current speed is `Unknown` while it supports 32 GT/s"
    );
    let dir = copy_of("h100-good");
    std::fs::write(
        dir.path().join("sys/bus/pci/devices/0000:17:00.0/max_link_speed"),
        "garbage\n",
    )
    .expect("write");
    let profiles = tempfile::tempdir().expect("tempdir");
    let strict = profile_in(
        profiles.path(),
        "full-speed",
        "[check.\"performance.pcie_link\".params]\nallow_speed_downtraining = false\n",
    );
    let run = run_with_profile(dir.path(), &strict, "pcie_link");
    assert_eq!(common::verdict(&run.record, "performance.pcie_link"), "inconclusive");
    assert!(reason(&run, "performance.pcie_link").contains("maximum `garbage`"));
    let run = run_on(dir.path(), &["pcie_link"]);
    assert_eq!(
        common::verdict(&run.record, "performance.pcie_link"),
        "pass",
        "speed may drop"
    );
}

#[test]
fn a_profile_can_allow_world_access_to_named_device_files() {
    let profiles = tempfile::tempdir().expect("tempdir");
    let p = profile_in(
        profiles.path(),
        "nodes-open",
        "[check.\"isolation.device_nodes\".params]\nallow_world_access = [\"/dev/nvidia*\"]\n",
    );
    let root = common::host_fixture("world-writable-nodes");
    let run = run_with_profile(&root, &p, "device_nodes");
    let o = outcome(&run, "isolation.device_nodes");
    assert_eq!(o.verdict.as_str(), "pass", "{:?}", o.reason);
    assert!(
        o.evidence["allowed_world_access"]
            .to_string()
            .contains("/dev/nvidia0 has mode 0666")
    );
    let p = profile_in(
        profiles.path(),
        "render-open",
        "[check.\"isolation.device_nodes\".params]\nallow_world_access = [\"/dev/dri/renderD*\"]\n",
    );
    let run = run_with_profile(&root, &p, "device_nodes");
    assert_eq!(common::verdict(&run.record, "isolation.device_nodes"), "fail");
}

#[test]
fn sshd_edge_cases_give_honest_verdicts() {
    // The binary without a configuration: the default cannot be assumed.
    let dir = copy_of("h100-good");
    std::fs::remove_file(dir.path().join("etc/ssh/sshd_config")).expect("rm");
    let run = run_on(dir.path(), &["remote_root_login"]);
    assert_eq!(
        common::verdict(&run.record, "platform.remote_root_login"),
        "inconclusive"
    );
    assert!(reason(&run, "platform.remote_root_login").contains("does not exist"));

    // An Include directory that could not be listed is inconclusive, never skipped.
    let dir = copy_of("h100-good");
    mark_unreadable(dir.path(), "/etc/ssh/sshd_config.d");
    let run = run_on(dir.path(), &["remote_root_login"]);
    assert_eq!(
        common::verdict(&run.record, "platform.remote_root_login"),
        "inconclusive"
    );
    assert!(reason(&run, "platform.remote_root_login").contains("failed to read /etc/ssh/sshd_config.d"));

    // A capture that did not cover an Include's pattern cannot vouch for its absence.
    let manifest = dir.path().join(hilt_harness::hostfs::MANIFEST);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    m["unreadable"] = serde_json::json!({});
    m["covered"] = serde_json::json!(["/etc/ssh/sshd_config"]);
    std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");
    let run = run_on(dir.path(), &["remote_root_login"]);
    assert_eq!(
        common::verdict(&run.record, "platform.remote_root_login"),
        "inconclusive"
    );
    assert!(reason(&run, "platform.remote_root_login").contains("did not cover"));
}

#[test]
fn the_inventory_records_firmware_facts_and_fails_without_a_driver() {
    let run = run_on(&common::host_fixture("h100-good"), &["inventory"]);
    let o = outcome(&run, "firmware.inventory");
    assert_eq!(o.verdict.as_str(), "pass", "{:?}", o.reason);
    assert_eq!(o.evidence["driver"], "nvidia");
    assert_eq!(o.evidence["driver_version"], "580.178.04");
    assert_eq!(o.evidence["option_rom"], true);
    assert_eq!(o.evidence["option_rom_bytes"], 43);
    assert_eq!(o.evidence["iommu_group"], "40");
    assert_eq!(o.evidence["max_link_width"], "16");
    let run = run_on(&common::host_fixture("no-driver"), &["inventory"]);
    assert_eq!(
        reason(&run, "firmware.inventory"),
        "no driver is bound to 0000:17:00.0: the accelerator serves no tenant, receives no driver fixes, and its \
         driver cannot be inventoried"
    );
}

#[test]
fn profiling_restrictions_of_other_vendors_are_inconclusive_not_absent() {
    let dir = copy_of("h100-good");
    std::fs::remove_file(dir.path().join("proc/driver/nvidia/params")).expect("rm");
    let link = dir.path().join("sys/bus/pci/devices/0000:17:00.0/driver");
    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink("../../../../bus/pci/drivers/habanalabs", &link).expect("link");
    let run = run_on(dir.path(), &["profiling"]);
    assert_eq!(
        common::verdict(&run.record, "isolation.profiling_admin_only"),
        "inconclusive"
    );
    assert!(reason(&run, "isolation.profiling_admin_only").contains("0000:17:00.0 (habanalabs)"));
}

#[test]
fn a_capture_replays_with_the_same_verdicts() {
    for name in [
        "h100-good",
        "world-writable-nodes",
        "root-login-key",
        "devvm",
        "no-tpm-version",
        "secure-boot-var-missing",
        "pci-malformed",
    ] {
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

/// Records in a tree's capture manifest that `path` could not be read (permission denied),
/// as a capture made without root would.
fn mark_unreadable(root: &std::path::Path, path: &str) {
    let manifest = root.join(hilt_harness::hostfs::MANIFEST);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    m["unreadable"] = serde_json::json!({ path: { "kind": "permission_denied", "message": "permission denied" } });
    std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");
}
