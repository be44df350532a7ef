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
        Some("the link 0000:16:01.0–0000:17:00.0 runs at x8 of x16 lanes")
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
        "the link 0000:16:01.0–0000:17:00.0 is down: its current speed is `Unknown` while it supports 32 GT/s"
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
    assert!(
        reason(&run, "performance.pcie_link").contains("`garbage`"),
        "{}",
        reason(&run, "performance.pcie_link")
    );
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
        "shim-insecure",
        "shim-insecure-mokvar",
        "shim-insecure-legacy",
        "shim-state-non-volatile",
        "shim-secure",
        "audit-mode",
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

#[test]
fn secure_boot_on_the_pre_6_0_interface_replays_with_the_same_verdict() {
    // A host whose kernel offers only the sysfs efivars interface. The capture keeps the
    // variables hilt reads, not the interface's whole listing, so whether the interface is
    // there must not be told from the listing, or the replay would say "no interface"
    // where the host said "no SecureBoot variable".
    let trees: [(&str, &[HostFile]); 3] = [
        (
            "fail",
            &[(
                "/sys/firmware/efi/vars/Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c/data",
                b"\x01\x00",
            )],
        ),
        (
            "pass",
            &[(
                "/sys/firmware/efi/vars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c/data",
                b"\x01",
            )],
        ),
        // The interface's own files, as a live kernel with CONFIG_EFI_VARS shows them.
        (
            "fail",
            &[
                ("/sys/firmware/efi/vars/new_var", b""),
                ("/sys/firmware/efi/vars/del_var", b""),
            ],
        ),
    ];
    for (expected, files) in trees {
        let source = copy_of("h100-good");
        let vars = source.path().join("sys/firmware/efi/efivars");
        std::fs::remove_dir_all(&vars).expect("rm");
        std::fs::create_dir(&vars).expect("mkdir");
        for (path, bytes) in files {
            put(source.path(), path, bytes);
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let tar = tmp.path().join("capture.tar");
        let out = common::hilt(&[
            "capture",
            tar.to_str().expect("utf-8"),
            "--sysfs-root",
            source.path().to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let unpacked = tmp.path().join("root");
        std::fs::create_dir(&unpacked).expect("mkdir");
        tar::Archive::new(std::fs::File::open(&tar).expect("open"))
            .unpack(&unpacked)
            .expect("unpack");
        let live = secure_boot_on(source.path());
        assert_eq!(live.0, expected, "{files:?}: {}", live.1);
        assert_eq!(secure_boot_on(&unpacked), live, "{files:?}");
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

/// The verdict and reason of `platform.secure_boot` on fixture tree `name`.
fn secure_boot_on(root: &Path) -> (String, String) {
    let run = run_on(root, &["secure_boot"]);
    let o = outcome(&run, "platform.secure_boot");
    (o.verdict.as_str().to_string(), o.reason.clone().unwrap_or_default())
}

#[test]
fn secure_boot_is_judged_by_whether_signatures_are_enforced() {
    // The state a public bug report showed: the firmware says secure boot is on, and shim
    // was told not to validate images (efivarfs, attributes BS|RT, value 1).
    let (verdict, why) = secure_boot_on(&common::host_fixture("shim-insecure"));
    assert_eq!(verdict, "fail");
    assert_eq!(
        why,
        "shim has been told not to validate images (MokSBStateRT = 1 in \
         /sys/firmware/efi/efivars/MokSBStateRT-605dab50-e046-4300-abb6-3dd810dd8b23): any boot loader, kernel \
         or module is accepted although the firmware's SecureBoot reads 1"
    );
    // The same kind through the other interfaces and the firmware's own modes.
    for (tree, says) in [
        (
            "shim-insecure-mokvar",
            "(MokSBStateRT = 1 in /sys/firmware/efi/mok-variables/MokSBStateRT)",
        ),
        (
            "shim-insecure-legacy",
            "(MokSBStateRT = 1 in /sys/firmware/efi/vars/MokSBStateRT-605dab50-e046-4300-abb6-3dd810dd8b23/data)",
        ),
        (
            "setup-mode",
            "the firmware is in setup mode (SetupMode = 1 in \
             /sys/firmware/efi/efivars/SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c)",
        ),
        (
            "audit-mode",
            "the firmware is in audit mode (AuditMode = 1 in \
             /sys/firmware/efi/efivars/AuditMode-8be4df61-93ca-11d2-aa0d-00e098032b8c): it only logs",
        ),
        (
            "secure-boot-off",
            "secure boot is disabled (SecureBoot = 0 in \
             /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c)",
        ),
    ] {
        let (verdict, why) = secure_boot_on(&common::host_fixture(tree));
        assert_eq!(verdict, "fail", "{tree}: {why}");
        assert!(why.contains(says), "{tree}: {why}");
    }
    // Variables that exist with value 0, deployed mode, shim ignoring db, a non-volatile
    // MokSBStateRT that shim did not set, and the pre-6.0 interface of an enforcing host.
    for tree in ["shim-secure", "shim-state-non-volatile", "secure-legacy"] {
        let run = run_on(&common::host_fixture(tree), &["secure_boot"]);
        let o = outcome(&run, "platform.secure_boot");
        assert_eq!(o.verdict.as_str(), "pass", "{tree}: {:?}", o.reason);
        if tree == "shim-state-non-volatile" {
            assert!(
                o.evidence["MokSBStateRT_ignored"]
                    .as_str()
                    .is_some_and(|s| s.contains("non-volatile")),
                "{:?}",
                o.evidence
            );
        }
        if tree == "shim-secure" {
            assert_eq!(o.evidence["DeployedMode"], 1);
            assert_eq!(o.evidence["MokSBStateRT (MOK table)"], 0);
        }
    }
    // A variable that is not the one byte the specification defines is not guessed at.
    let (verdict, why) = secure_boot_on(&common::host_fixture("shim-state-malformed"));
    assert_eq!(verdict, "inconclusive");
    assert!(why.contains("MokSBStateRT in /sys/firmware/efi/efivars/"), "{why}");
    assert!(why.contains("holds 2 bytes"), "{why}");
}

/// A host file to plant: its host path and contents.
type HostFile<'a> = (&'a str, &'a [u8]);

/// A planted state: what it is, the files planted (host path, contents), the verdict and
/// words its reason must hold.
type Case = (&'static str, Vec<(String, Vec<u8>)>, &'static str, &'static str);

/// Writes `bytes` at host path `path` under `root`, making its directories.
fn put(root: &Path, path: &str, bytes: &[u8]) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, bytes).expect("write");
}

#[test]
fn secure_boot_verdicts_rest_only_on_values_the_specification_defines() {
    use hilt_harness::efi;
    let efivar = |v: efi::Variable, bytes: &[u8]| (v.efivarfs_path(), bytes.to_vec());
    let cases: Vec<Case> = vec![
        // The firmware's mode variables are 0 or 1 (UEFI 2.10 section 3.3). shim validates
        // images only while SecureBoot reads exactly 1, so any other value fails; the
        // other modes' undefined values are read differently by shim and the kernel's EFI
        // stub (both take SetupMode = 2 as user mode), so nothing can be read from them.
        (
            "SecureBoot = 2",
            vec![efivar(efi::SECURE_BOOT, b"\x06\x00\x00\x00\x02")],
            "fail",
            "secure boot is not on (SecureBoot = 2 in \
             /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c, a value the UEFI \
             specification does not define; shim validates images only while SecureBoot reads 1)",
        ),
        (
            "SetupMode = 2",
            vec![efivar(efi::SETUP_MODE, b"\x06\x00\x00\x00\x02")],
            "inconclusive",
            "SetupMode = 2 in",
        ),
        (
            "AuditMode = 255 through sysfs",
            vec![(format!("{}/data", efi::AUDIT_MODE.sysfs_dir()), b"\xff".to_vec())],
            "inconclusive",
            "AuditMode = 255 in /sys/firmware/efi/vars/AuditMode-",
        ),
        // DeployedMode and MokIgnoreDB are evidence: both of DeployedMode's states enforce
        // and MokIgnoreDB only makes shim stricter, so an unreadable one decides nothing.
        (
            "DeployedMode = 255 through sysfs",
            vec![(format!("{}/data", efi::DEPLOYED_MODE.sysfs_dir()), b"\xff".to_vec())],
            "pass",
            "",
        ),
        (
            "a 2-byte MokIgnoreDB",
            vec![efivar(efi::MOK_IGNORE_DB, b"\x06\x00\x00\x00\x01\x00")],
            "pass",
            "",
        ),
        // An efivarfs file shorter than its attribute word is malformed input, judged like
        // a value of the wrong size: inconclusive, naming the file, not a broken check.
        (
            "SecureBoot of 3 bytes",
            vec![efivar(efi::SECURE_BOOT, b"\x06\x00\x00")],
            "inconclusive",
            "SecureBoot in /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c holds 3 bytes, \
             fewer than the four attribute bytes",
        ),
        (
            "an empty SetupMode",
            vec![efivar(efi::SETUP_MODE, b"")],
            "inconclusive",
            "SetupMode in",
        ),
        // A well-formed variable that turns enforcement off fails the check whatever else
        // could not be read.
        (
            "SecureBoot = 0 beside a malformed AuditMode",
            vec![
                efivar(efi::SECURE_BOOT, b"\x06\x00\x00\x00\x00"),
                efivar(efi::AUDIT_MODE, b"\x06\x00\x00\x00\x00\x00"),
            ],
            "fail",
            "secure boot is disabled (SecureBoot = 0 in",
        ),
        (
            "shim insecure beside SetupMode = 7",
            vec![
                efivar(efi::SETUP_MODE, b"\x06\x00\x00\x00\x07"),
                efivar(efi::MOK_SB_STATE, b"\x06\x00\x00\x00\x01"),
            ],
            "fail",
            "shim has been told not to validate images",
        ),
        // Both layouts present and disagreeing: the one that says enforcement is off wins.
        (
            "efivarfs SecureBoot = 1, sysfs SecureBoot = 0",
            vec![(format!("{}/data", efi::SECURE_BOOT.sysfs_dir()), b"\x00".to_vec())],
            "fail",
            "secure boot is disabled (SecureBoot = 0 in /sys/firmware/efi/vars/SecureBoot-",
        ),
    ];
    for (what, files, verdict, says) in cases {
        let dir = copy_of("h100-good");
        for (path, bytes) in &files {
            put(dir.path(), path, bytes);
        }
        let (got, why) = secure_boot_on(dir.path());
        assert_eq!(got, verdict, "{what}: {why}");
        assert!(why.contains(says), "{what}: {why}");
    }
}

#[test]
fn shims_mok_table_alone_cannot_say_the_firmware_lacks_secure_boot() {
    // efivarfs not mounted, no pre-6.0 sysfs interface, and the MOK table of a shim older
    // than 16.0, which copies its own state there but not the firmware's SecureBoot: the
    // table's silence is no evidence that the firmware lacks secure boot.
    let dir = copy_of("h100-good");
    let vars = dir.path().join("sys/firmware/efi/efivars");
    std::fs::remove_dir_all(&vars).expect("rm");
    std::fs::create_dir(&vars).expect("mkdir");
    put(dir.path(), &hilt_harness::efi::MOK_SB_STATE.mokvar_path(), b"\x00");
    let (verdict, why) = secure_boot_on(dir.path());
    assert_eq!(verdict, "inconclusive", "{why}");
    assert!(
        why.contains("holds only the variables shim copied there, and SecureBoot is not among them"),
        "{why}"
    );
    // shim 16's table carries the firmware's SecureBoot: that copy is read.
    put(dir.path(), &hilt_harness::efi::SECURE_BOOT.mokvar_path(), b"\x00");
    let (verdict, why) = secure_boot_on(dir.path());
    assert_eq!(verdict, "fail", "{why}");
    assert!(
        why.contains("SecureBoot = 0 in /sys/firmware/efi/mok-variables/SecureBoot"),
        "{why}"
    );
    // The pre-6.0 interface lists every variable: without SecureBoot there, the firmware
    // has none.
    let dir = copy_of("h100-good");
    let vars = dir.path().join("sys/firmware/efi/efivars");
    std::fs::remove_dir_all(&vars).expect("rm");
    std::fs::create_dir(&vars).expect("mkdir");
    put(
        dir.path(),
        "/sys/firmware/efi/vars/Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c/data",
        b"\x01\x00",
    );
    let (verdict, why) = secure_boot_on(dir.path());
    assert_eq!(verdict, "fail", "{why}");
    assert!(why.contains("no SecureBoot variable"), "{why}");
}

#[test]
fn secure_boot_without_a_readable_interface_or_capture_coverage_is_inconclusive() {
    // efivarfs not mounted (an empty directory) and no other interface.
    let dir = copy_of("h100-good");
    let vars = dir.path().join("sys/firmware/efi/efivars");
    std::fs::remove_dir_all(&vars).expect("rm");
    std::fs::create_dir(&vars).expect("mkdir");
    let (verdict, why) = secure_boot_on(dir.path());
    assert_eq!(verdict, "inconclusive");
    assert!(
        why.starts_with("efivarfs is not mounted at /sys/firmware/efi/efivars"),
        "{why}"
    );

    // A capture by a hilt that did not look at shim's variables proves nothing about them.
    let dir = copy_of("h100-good");
    let manifest = dir.path().join(hilt_harness::hostfs::MANIFEST);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    m["covered"] = serde_json::json!([
        "/sys/firmware/efi",
        "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
        "/sys/firmware/efi/efivars/SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    ]);
    m["mounted"] = serde_json::json!(["/sys/firmware/efi/efivars"]);
    std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");
    let (verdict, why) = secure_boot_on(dir.path());
    assert_eq!(verdict, "inconclusive");
    assert!(why.contains("the capture did not cover"), "{why}");
}

/// A profile file in `dir` that runs the base checks on the GPUs of the link fixtures:
/// the H100, the AMD GPU behind its switch, the Intel integrated GPU. `body` is added.
fn gpu_profile(dir: &Path, id: &str, body: &str) -> String {
    let path = dir.join(format!("{id}.toml"));
    let text = format!(
        "id = \"{id}\"\ntitle = \"test\"\nversion = \"0.1.0\"\nextends = \"base\"\n\n\
         [[match]]\npci_vendor = 0x10de\n\n[[match]]\npci_vendor = 0x1002\n\n[[match]]\npci_vendor = 0x8086\n\
         pci_device = [0x9a49]\n\n{body}"
    );
    std::fs::write(&path, text).expect("write profile");
    path.to_str().expect("utf-8").to_string()
}

/// The `performance.pcie_link` outcome of PCI function `address` on tree `root`.
fn link_outcome(root: &Path, profile: &str, address: &str) -> hilt_results::Outcome {
    let run = run_with_profile(root, profile, "pcie_link");
    let device = format!("pci-{}", address.replace(':', "-"));
    run.record
        .outcomes
        .iter()
        .find(|o| o.check == "performance.pcie_link" && o.device == device)
        .cloned()
        .unwrap_or_else(|| panic!("no pcie_link trial on {device}:\n{}\n{}", run.stdout, run.stderr))
}

#[test]
fn a_function_without_a_pcie_link_is_not_applicable() {
    // An Intel integrated GPU: `Unknown speed`, width 255 (the kernel's "unknown") and 0.
    let profiles = tempfile::tempdir().expect("tempdir");
    let p = gpu_profile(profiles.path(), "gpus", "");
    let o = link_outcome(&common::host_fixture("igpu-no-link"), &p, "0000:00:02.0");
    assert_eq!(o.verdict.as_str(), "not_applicable", "{:?}", o.reason);
    let why = o.reason.unwrap_or_default();
    assert!(why.starts_with("0000:00:02.0 has no PCIe link to judge"), "{why}");
    assert!(why.contains("`Unknown speed`") && why.contains("`255`"), "{why}");
    assert!(
        o.measurements.is_empty(),
        "no number is made of an unknown: {:?}",
        o.measurements
    );
}

#[test]
fn the_whole_path_from_the_root_port_is_judged_hop_by_hop() {
    let profiles = tempfile::tempdir().expect("tempdir");
    let lenient = gpu_profile(profiles.path(), "gpus", "");
    let strict = gpu_profile(
        profiles.path(),
        "gpus-strict",
        "[check.\"performance.pcie_link\".params]\nallow_speed_downtraining = false\n",
    );
    // The AMD GPU reads 16 GT/s x16 itself; the hop above its board's switch runs at 8 of 16.
    let root = common::host_fixture("amd-switch");
    let o = link_outcome(&root, &lenient, "0000:03:00.0");
    assert_eq!(o.verdict.as_str(), "pass", "{:?}", o.reason);
    assert_eq!(
        o.evidence["path"],
        serde_json::json!([
            "0000:00:01.1–0000:01:00.0: 8 GT/s x8 of 16 GT/s x8",
            "0000:02:00.0–0000:03:00.0: 16 GT/s x16 of 16 GT/s x16"
        ])
    );
    assert!(
        o.evidence["speed_note"]
            .as_str()
            .is_some_and(|n| n.starts_with("0000:00:01.1–0000:01:00.0 running at 8 of 16 GT/s")),
        "{:?}",
        o.evidence
    );
    assert_eq!(o.evidence["deciding_hop"], "0000:00:01.1–0000:01:00.0");
    let o = link_outcome(&root, &strict, "0000:03:00.0");
    assert_eq!(o.verdict.as_str(), "fail", "{:?}", o.reason);
    assert_eq!(
        o.reason.as_deref(),
        Some("the link 0000:00:01.1–0000:01:00.0 runs at 8 of 16 GT/s")
    );

    // An H100 behind an HGX-style switch whose upstream hop trained narrow.
    let o = link_outcome(&common::host_fixture("switch-degraded"), &lenient, "0000:17:00.0");
    assert_eq!(
        o.reason.as_deref(),
        Some("the link 0000:14:01.0–0000:15:00.0 runs at x8 of x16 lanes")
    );
    let width = o
        .measurements
        .iter()
        .find(|m| m.name == "current_link_width")
        .expect("measured");
    assert_eq!((width.value, width.threshold), (8.0, Some(16.0)));

    // A port whose own maximum is below the device's: the hop's capability is the lesser.
    let dir = copy_of("h100-good");
    let rp = dir.path().join("sys/bus/pci/devices/0000:16:01.0");
    std::fs::write(rp.join("max_link_width"), "8\n").expect("write");
    std::fs::write(rp.join("current_link_width"), "8\n").expect("write");
    std::fs::write(
        dir.path().join("sys/bus/pci/devices/0000:17:00.0/current_link_width"),
        "8\n",
    )
    .expect("write");
    let o = link_outcome(dir.path(), &lenient, "0000:17:00.0");
    assert_eq!(
        o.verdict.as_str(),
        "pass",
        "an x8 slot runs an x16 card at its full x8: {:?}",
        o.reason
    );
}

#[test]
fn a_virtual_function_is_judged_by_its_physical_functions_path() {
    // An SR-IOV VF of the H100 on the host: the PCIe specification reserves a VF's link
    // fields (the kernel reads `Unknown` and 0), and its traffic runs over the PF's link.
    let profiles = tempfile::tempdir().expect("tempdir");
    let p = gpu_profile(profiles.path(), "gpus", "");
    let dir = copy_of("h100-good");
    let port = dir.path().join("sys/devices/pci0000:16/0000:16:01.0");
    let (pf, vf) = (port.join("0000:17:00.0"), port.join("0000:17:00.1"));
    std::fs::create_dir_all(vf.join("power")).expect("mkdir");
    for f in ["class", "vendor", "device", "subsystem_vendor", "subsystem_device"] {
        std::fs::copy(pf.join(f), vf.join(f)).expect("copy");
    }
    for (f, v) in [
        ("max_link_speed", "Unknown\n"),
        ("current_link_speed", "Unknown\n"),
        ("max_link_width", "0\n"),
        ("current_link_width", "0\n"),
        ("power/runtime_status", "active\n"),
        ("power_state", "D0\n"),
    ] {
        std::fs::write(vf.join(f), v).expect("write");
    }
    std::os::unix::fs::symlink("../0000:17:00.0", vf.join("physfn")).expect("physfn");
    std::os::unix::fs::symlink(
        "../../../devices/pci0000:16/0000:16:01.0/0000:17:00.1",
        dir.path().join("sys/bus/pci/devices/0000:17:00.1"),
    )
    .expect("bus link");
    let o = link_outcome(dir.path(), &p, "0000:17:00.1");
    assert_eq!(o.verdict.as_str(), "pass", "{:?}", o.reason);
    assert_eq!(o.evidence["physical_function"], "0000:17:00.0");
    assert_eq!(
        o.evidence["path"],
        serde_json::json!(["0000:16:01.0–0000:17:00.0: 32 GT/s x16 of 32 GT/s x16"])
    );
    // The PF's link trained narrow: the VF's traffic runs over it.
    std::fs::write(pf.join("current_link_width"), "8\n").expect("write");
    let o = link_outcome(dir.path(), &p, "0000:17:00.1");
    assert_eq!(
        o.reason.as_deref(),
        Some("the link 0000:16:01.0–0000:17:00.0 runs at x8 of x16 lanes")
    );
}

#[test]
fn unknown_encodings_and_powered_down_functions_are_never_numbers() {
    let profiles = tempfile::tempdir().expect("tempdir");
    let p = gpu_profile(profiles.path(), "gpus", "");
    // A GPU runtime-suspended in D3cold: inconclusive, and hilt writes nothing to wake it.
    let root = common::host_fixture("amd-suspended");
    let o = link_outcome(&root, &p, "0000:03:00.0");
    assert_eq!(o.verdict.as_str(), "inconclusive", "{:?}", o.reason);
    let why = o.reason.unwrap_or_default();
    assert!(
        why.contains("0000:03:00.0 is powered down (runtime_status suspended, power_state D3cold)")
            && why.contains("which hilt never does"),
        "{why}"
    );
    assert!(
        !root
            .join("sys/devices/pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0/power/control")
            .exists()
    );

    let link = |dir: &tempfile::TempDir, address: &str, name: &str, value: &str| {
        std::fs::write(dir.path().join(format!("sys/bus/pci/devices/{address}/{name}")), value).expect("write");
    };
    // A port on the path that is suspended.
    let dir = copy_of("h100-good");
    link(&dir, "0000:16:01.0", "power/runtime_status", "suspended\n");
    let o = link_outcome(dir.path(), &p, "0000:17:00.0");
    assert_eq!(o.verdict.as_str(), "inconclusive", "{:?}", o.reason);
    assert!(
        o.reason
            .unwrap_or_default()
            .contains("0000:16:01.0 is powered down (runtime_status suspended")
    );

    // A width of all ones (63): no width the PCIe specification defines.
    let dir = copy_of("h100-good");
    link(&dir, "0000:17:00.0", "current_link_width", "63\n");
    link(&dir, "0000:16:01.0", "current_link_width", "63\n");
    let o = link_outcome(dir.path(), &p, "0000:17:00.0");
    assert_eq!(o.verdict.as_str(), "inconclusive", "{:?}", o.reason);
    assert!(
        o.reason
            .unwrap_or_default()
            .contains("reads `63`, which is no PCIe link width")
    );

    // A maximum width of 255 at one end: the hop's width cannot be told.
    let dir = copy_of("h100-good");
    link(&dir, "0000:17:00.0", "max_link_width", "255\n");
    let o = link_outcome(dir.path(), &p, "0000:17:00.0");
    assert_eq!(o.verdict.as_str(), "inconclusive", "{:?}", o.reason);
    assert!(o.reason.unwrap_or_default().contains("reads `255`"));

    // A kernel before 5.3: `16 GT/s` and `Unknown speed`, and a width of 0: the link is down.
    let dir = copy_of("h100-good");
    for address in ["0000:16:01.0", "0000:17:00.0"] {
        link(&dir, address, "max_link_speed", "32 GT/s\n");
        link(&dir, address, "current_link_speed", "Unknown speed\n");
    }
    let o = link_outcome(dir.path(), &p, "0000:17:00.0");
    assert_eq!(
        o.reason.as_deref(),
        Some(
            "the link 0000:16:01.0–0000:17:00.0 is down: its current speed is `Unknown speed` while it supports 32 GT/s"
        )
    );
    let dir = copy_of("h100-good");
    link(&dir, "0000:17:00.0", "current_link_width", "0\n");
    let o = link_outcome(dir.path(), &p, "0000:17:00.0");
    assert_eq!(
        o.reason.as_deref(),
        Some("the link 0000:16:01.0–0000:17:00.0 is down: its current width is 0 while it supports x16")
    );

    // A tree without the link into /sys/devices: the path is unknown, never a pass.
    let dir = copy_of("h100-good");
    let entry = dir.path().join("sys/bus/pci/devices/0000:17:00.0");
    std::fs::remove_file(&entry).expect("rm link");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.path().join("sys/devices/pci0000:16/0000:16:01.0/0000:17:00.0"))
        .arg(&entry)
        .status()
        .expect("cp");
    assert!(status.success());
    let o = link_outcome(dir.path(), &p, "0000:17:00.0");
    assert_eq!(o.verdict.as_str(), "inconclusive", "{:?}", o.reason);
    assert!(
        o.reason
            .unwrap_or_default()
            .contains("the path from the root port to 0000:17:00.0 cannot be read")
    );
}

#[test]
fn a_capture_keeps_the_pci_paths_and_power_states_so_link_verdicts_replay() {
    let profiles = tempfile::tempdir().expect("tempdir");
    let strict = gpu_profile(
        profiles.path(),
        "gpus-strict",
        "[check.\"performance.pcie_link\".params]\nallow_speed_downtraining = false\n",
    );
    for (name, address) in [
        ("amd-switch", "0000:03:00.0"),
        ("amd-suspended", "0000:03:00.0"),
        ("switch-degraded", "0000:17:00.0"),
        ("igpu-no-link", "0000:00:02.0"),
        ("h100-good", "0000:17:00.0"),
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
        let link = std::fs::read_link(unpacked.join(format!("sys/bus/pci/devices/{address}"))).expect("kept as a link");
        assert!(
            link.to_string_lossy().starts_with("../../../devices/pci"),
            "{name}: {}",
            link.display()
        );
        let (before, after) = (
            link_outcome(&source, &strict, address),
            link_outcome(&unpacked, &strict, address),
        );
        assert_eq!(
            (before.verdict, &before.reason, &before.evidence["path"]),
            (after.verdict, &after.reason, &after.evidence["path"]),
            "capture of {name}"
        );
    }
}

#[test]
fn a_taint_mask_the_kernel_never_wrote_is_no_pass() {
    // `%lu` writes neither a sign nor a leading zero: such a value was edited in.
    for edited in ["+4096", "04096", "0x1000"] {
        let dir = copy_of("h100-good");
        std::fs::write(dir.path().join("proc/sys/kernel/tainted"), format!("{edited}\n")).expect("write");
        let run = run_on(dir.path(), &["module_signatures"]);
        let o = outcome(&run, "platform.module_signatures");
        assert_ne!(o.verdict, hilt_results::Verdict::Pass, "{edited}: {:?}", o.reason);
        assert!(
            reason(&run, "platform.module_signatures").contains(edited),
            "{:?}",
            o.reason
        );
    }
}
