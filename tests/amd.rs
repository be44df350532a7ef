//! AMD Instinct: a capture of an MI300X host (8 GPUs in CPX mode, 8 partitions each)
//! replays under the shipped AMD profile with amdgpu's facts in the record;
//! `isolation.cleaner_shader` fails on partitions whose process isolation is off and
//! passes when it is on, and each other setting of the kind gives its own verdict;
//! amdgpu versions are judged against AMD's bulletins; device files and performance
//! counters are judged for AMD as for NVIDIA.

mod common;

use std::path::{Path, PathBuf};

use hilt_harness::accel::{DeviceInfo, DeviceSpec};
use hilt_harness::check::TrialDevice;
use hilt_harness::host::Date;
use hilt_harness::hostfs::HostFs;
use hilt_harness::profile::{self, Fit, Library};
use hilt_results::{ConformanceStatus, Outcome};

const FIRST: &str = "pci-0000-05-00.0";
const FIRST_DIR: &str = "sys/bus/pci/devices/0000:05:00.0";

/// `hilt run` examining only the tree under `root`, with the shipped profiles alone.
fn replay(root: &Path, args: &[&str]) -> common::Run {
    let mut full = vec!["-q", "--sysfs-root", root.to_str().expect("utf-8")];
    full.extend_from_slice(args);
    common::run_with(&[("HILT_BACKENDS", "none"), ("HILT_PROFILE_PATH", "")], &full)
}

/// `hilt capture` of `source`, unpacked: (the temporary directory, the root).
fn captured(source: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar = tmp.path().join("capture.tar");
    let out = common::hilt(&[
        "capture",
        tar.to_str().expect("utf-8"),
        "--sysfs-root",
        source.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    tar::Archive::new(std::fs::File::open(&tar).expect("open"))
        .unpack(&root)
        .expect("unpack");
    (tmp, root)
}

/// A copy of fixture tree `name` to change in a test.
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

fn outcome<'r>(run: &'r common::Run, check: &str, device: &str) -> &'r Outcome {
    run.record
        .outcomes
        .iter()
        .find(|o| o.check == check && o.device == device)
        .unwrap_or_else(|| panic!("{check} did not run on {device}:\n{}\n{}", run.stdout, run.stderr))
}

fn verdict_and_reason(run: &common::Run, check: &str, device: &str) -> (String, String) {
    let o = outcome(run, check, device);
    (o.verdict.as_str().to_string(), o.reason.clone().unwrap_or_default())
}

/// The cleaner-shader verdict on the first GPU of a copy of mi300x-good after `change`.
fn cleaner_shader_after(change: impl FnOnce(&Path)) -> (String, String) {
    let dir = copy_of("mi300x-good");
    change(dir.path());
    let run = replay(dir.path(), &["--profile", "amd-mi300x", "cleaner_shader"]);
    verdict_and_reason(&run, "isolation.cleaner_shader", FIRST)
}

fn write(root: &Path, path: &str, text: &str) {
    std::fs::write(root.join(path), text).expect("write");
}

#[test]
fn a_capture_of_an_mi300x_host_replays_under_the_shipped_amd_profile_with_its_facts() {
    let (_tmp, root) = captured(&common::host_fixture("mi300x-isolation-off"));
    let run = replay(&root, &[]);
    let record = &run.record;
    assert_eq!(record.profile.id, "amd-mi300x", "{}", run.stderr);
    assert_eq!(record.profile.chain, ["amd-mi300x", "amd-cdna3", "base"]);
    assert!(record.run.replay.as_ref().is_some_and(|r| r.captured_at.is_some()));
    assert_eq!(record.conformance.status, ConformanceStatus::Partial);
    assert_eq!(run.exit, 1, "a mandatory check failed:\n{}", run.stderr);

    // Eight GPUs, each with amdgpu's facts.
    let gpus: Vec<_> = record.devices.iter().filter(|d| d.backend == "pci").collect();
    assert_eq!(gpus.len(), 8);
    for gpu in &gpus {
        assert_eq!(gpu.facts["amdgpu.compute_partition"], "CPX", "{}", gpu.id);
        assert_eq!(gpu.facts["amdgpu.partitions"], 8);
        assert_eq!(gpu.facts["amdgpu.kfd.nodes"], 8);
        assert_eq!(gpu.facts["sharing_mode"], "partitioned");
    }
    let first = gpus.iter().find(|d| d.id == FIRST).expect("first GPU");
    insta::assert_json_snapshot!("mi300x_replayed_facts", first.facts);

    // Isolation is off on partitions 2 and 5 of the first GPU, on everywhere else.
    let (verdict, reason) = verdict_and_reason(&run, "isolation.cleaner_shader", FIRST);
    assert_eq!(verdict, "fail");
    assert!(
        reason.starts_with(
            "process isolation with the cleaner shader is not on for 2 of the 8 partition(s) of 0000:05:00.0 (CPX): \
             partition 2: 0 (isolation off); partition 5: 0 (isolation off)"
        ),
        "{reason}"
    );
    assert!(
        reason.contains("`echo 1 1 1 1 1 1 1 1 > /sys/bus/pci/devices/0000:05:00.0/enforce_isolation`"),
        "{reason}"
    );
    let o = outcome(&run, "isolation.cleaner_shader", FIRST);
    assert_eq!(o.level.as_str(), "mandatory");
    assert_eq!(o.evidence["partitions_without_isolation"], serde_json::json!([2, 5]));
    assert_eq!(o.evidence["sharing_mode"], "partitioned");
    for gpu in gpus.iter().filter(|d| d.id != FIRST) {
        assert_eq!(
            verdict_and_reason(&run, "isolation.cleaner_shader", &gpu.id).0,
            "pass",
            "{}",
            gpu.id
        );
    }
    // The firmware inventory carries amdgpu's firmware and VBIOS.
    let inventory = outcome(&run, "firmware.inventory", FIRST);
    assert_eq!(inventory.evidence["device.amdgpu.vbios_version"], "113-M3000100-102");
    assert_eq!(inventory.evidence["device.amdgpu.firmware.sos"], "0x00290a36");

    // The capture carries every file the checks read: it gives the tree's own verdicts.
    let verdicts = |run: &common::Run| {
        let mut v: Vec<_> = run
            .record
            .outcomes
            .iter()
            .map(|o| (o.trial.clone(), o.verdict, o.reason.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let source = replay(&common::host_fixture("mi300x-isolation-off"), &[]);
    assert_eq!(verdicts(&source), verdicts(&run));

    // With isolation on everywhere, the same host passes.
    let (_tmp, root) = captured(&common::host_fixture("mi300x-good"));
    let run = replay(&root, &["cleaner_shader"]);
    assert_eq!(run.record.outcomes.len(), 8);
    assert!(run.record.outcomes.iter().all(|o| o.verdict.as_str() == "pass"));
}

#[test]
fn every_isolation_setting_but_one_with_the_cleaner_shader_fails() {
    let file = format!("{FIRST_DIR}/enforce_isolation");
    for (value, words) in [
        (
            "2 1 1 1 1 1 1 1\n",
            "partition 0: 2 (legacy: graphics submissions serialised, no cleaner shader)",
        ),
        (
            "1 1 1 1 1 1 1 3\n",
            "partition 7: 3 (serialised without the cleaner shader)",
        ),
        ("0 0 0 0 0 0 0 0\n", "not on for 8 of the 8 partition(s)"),
    ] {
        let (verdict, reason) = cleaner_shader_after(|r| write(r, &file, value));
        assert_eq!(verdict, "fail", "{value}: {reason}");
        assert!(reason.contains(words), "{value}: {reason}");
    }
    // What hilt cannot read as one known setting per partition is never a pass.
    for (value, words) in [
        ("1 1 1 1 1 1 1 9\n", "settings this build does not know: partition 7: 9"),
        ("1 1 1 1\n", "lists 4 partition(s) but the KFD topology has 8"),
        ("\n", "which is not one setting per partition: it is empty"),
        ("on\n", "`on` is not a partition's setting"),
        ("1 1 1 1 1 1 1 -1\n", "`-1` is not a partition's setting"),
    ] {
        let (verdict, reason) = cleaner_shader_after(|r| write(r, &file, value));
        assert_eq!(verdict, "inconclusive", "{value:?}: {reason}");
        assert!(reason.contains(words), "{value:?}: {reason}");
    }
    // A single-partition GPU (SPX, no KFD topology here) has one value.
    let (verdict, reason) = cleaner_shader_after(|r| {
        write(r, &file, "1\n");
        write(r, &format!("{FIRST_DIR}/current_compute_partition"), "SPX\n");
        std::fs::remove_dir_all(r.join("sys/class/kfd")).expect("rm");
    });
    assert_eq!((verdict.as_str(), reason.as_str()), ("pass", ""));
}

#[test]
fn without_the_feature_the_cleaner_shader_check_is_not_applicable_and_says_why() {
    let (verdict, reason) = cleaner_shader_after(|r| {
        std::fs::remove_file(r.join(format!("{FIRST_DIR}/enforce_isolation"))).expect("rm");
    });
    assert_eq!(verdict, "not_applicable");
    assert!(
        reason.contains("older kernels and amdgpu modules do not offer it"),
        "{reason}"
    );

    let (verdict, reason) = cleaner_shader_after(|r| {
        std::fs::remove_file(r.join(format!("{FIRST_DIR}/enforce_isolation"))).expect("rm");
        std::os::unix::fs::symlink("../0000:05:00.0", r.join(format!("{FIRST_DIR}/physfn"))).expect("link");
    });
    assert_eq!(verdict, "not_applicable");
    assert!(reason.contains("SR-IOV virtual function"), "{reason}");

    let (verdict, reason) = cleaner_shader_after(|r| {
        std::fs::remove_file(r.join(format!("{FIRST_DIR}/run_cleaner_shader"))).expect("rm");
    });
    assert_eq!(verdict, "not_applicable");
    assert!(
        reason.contains("no cleaner shader for the GPU at 0000:05:00.0"),
        "{reason}"
    );

    // Another vendor's GPU: the H100 host under a profile of no backend.
    let run = common::run(&["-q", "--profile", "h100-host", "cleaner_shader"]);
    let (verdict, reason) = verdict_and_reason(&run, "isolation.cleaner_shader", "pci-0000-17-00.0");
    assert_eq!(verdict, "not_applicable");
    assert!(reason.contains("is driven by `nvidia`, not amdgpu"), "{reason}");

    // A capture that did not look for the file cannot vouch for its absence.
    let (verdict, reason) = cleaner_shader_after(|r| {
        std::fs::remove_file(r.join(format!("{FIRST_DIR}/enforce_isolation"))).expect("rm");
        let manifest = r.join(hilt_harness::hostfs::MANIFEST);
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("read")).expect("json");
        m["covered"] = serde_json::json!(["/sys/bus/pci/devices/*/vendor"]);
        std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");
    });
    assert_eq!(verdict, "inconclusive");
    assert!(reason.contains("the capture did not look for"), "{reason}");

    // A file hilt may not read is inconclusive.
    let (verdict, reason) = cleaner_shader_after(|r| {
        let manifest = r.join(hilt_harness::hostfs::MANIFEST);
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("read")).expect("json");
        m["unreadable"] = serde_json::json!({ "/sys/bus/pci/devices/0000:05:00.0/enforce_isolation":
            { "kind": "permission_denied", "message": "permission denied" } });
        std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");
    });
    assert_eq!(verdict, "inconclusive");
    assert!(reason.contains("permission denied"), "{reason}");
}

#[test]
fn amdgpu_versions_are_judged_against_amds_bulletins() {
    let advisories = |change: &dyn Fn(&Path)| {
        let dir = copy_of("mi300x-good");
        change(dir.path());
        // The default profile: the one of the GPU the copy now holds.
        let run = replay(dir.path(), &["advisories"]);
        verdict_and_reason(&run, "firmware.driver_advisories", FIRST)
    };
    let version = |v: &'static str| move |r: &Path| write(r, "sys/module/amdgpu/version", v);
    let device = |id: &'static str| {
        move |r: &Path| {
            for gpu in std::fs::read_dir(r.join("sys/bus/pci/devices")).expect("list") {
                let path = gpu.expect("entry").path().join("device");
                if std::fs::read_to_string(&path).is_ok_and(|d| d.trim() == "0x74a1") {
                    std::fs::write(&path, id).expect("write");
                }
            }
        }
    };

    // ROCm 6.4's module has every fix published for the MI300X.
    assert_eq!(advisories(&version("6.12.12\n")).0, "pass");
    // ROCm 6.2's (6.8.5) is affected by both bulletins.
    let (verdict, reason) = advisories(&version("6.8.5\n"));
    assert_eq!(verdict, "fail");
    assert!(
        reason.starts_with(
            "driver amdgpu 6.8.5 (the module of ROCm 6.2.2) on the MI300X is affected by AMD-SB-6024 (2026-02-11, \
             fixed in ROCm 6.4 for the MI300X), AMD-SB-6027 (2026-05-15, fixed in ROCm 6.3.1 for the MI300X)"
        ),
        "{reason}"
    );
    assert!(
        reason.ends_with("update to the amdgpu driver of at least ROCm 6.4"),
        "{reason}"
    );
    // 6.10.5 shipped with ROCm 6.3.0 and 6.3.2: affected by SB-6024 (fixed in 6.4) ...
    let (verdict, reason) = advisories(&version("6.10.5\n"));
    assert_eq!(verdict, "fail", "{reason}");
    assert!(
        reason.contains("AMD-SB-6024") && !reason.contains("AMD-SB-6027"),
        "{reason}"
    );
    // ... while on an MI325X only SB-6027 (fixed in 6.3.1) applies, which 6.10.5 cannot
    // tell: inconclusive, never a pass.
    let (verdict, reason) = advisories(&|r: &Path| {
        version("6.10.5\n")(r);
        device("0x74a5\n")(r);
    });
    assert_eq!(verdict, "inconclusive", "{reason}");
    assert!(
        reason.contains("AMD-SB-6027") && reason.contains("cannot say whether it has the fix"),
        "{reason}"
    );
    // The MI210's fix is in ROCm 7.0: ROCm 6.4's module is affected.
    let (verdict, reason) = advisories(&|r: &Path| {
        version("6.12.12\n")(r);
        device("0x740f\n")(r);
    });
    assert_eq!(verdict, "fail", "{reason}");
    assert!(reason.contains("fixed in ROCm 7.0 for the MI210"), "{reason}");
    // A product no bulletin names, the kernel's own amdgpu, a version of another form.
    let (verdict, reason) = advisories(&device("0x75a0\n"));
    assert_eq!(verdict, "inconclusive");
    assert!(reason.contains("names no product for PCI device 1002:75a0"), "{reason}");
    let (verdict, reason) = advisories(&|r: &Path| {
        std::fs::remove_file(r.join("sys/module/amdgpu/version")).expect("rm");
    });
    assert_eq!(verdict, "inconclusive");
    assert!(
        reason.contains("the kernel's own driver, of release 6.8.0-60-generic"),
        "{reason}"
    );
    let (verdict, reason) = advisories(&version("6.8.0-60-generic\n"));
    assert_eq!(verdict, "inconclusive");
    assert!(reason.contains("but the kernel's release"), "{reason}");
}

#[test]
fn amd_performance_counters_and_device_files_are_judged() {
    let check = |check: &str, filter: &str, change: &dyn Fn(&Path)| {
        let dir = copy_of("mi300x-good");
        change(dir.path());
        let run = replay(dir.path(), &["--profile", "amd-mi300x", filter]);
        verdict_and_reason(&run, check, "host")
    };
    let paranoid = |v: &'static str| move |r: &Path| write(r, "proc/sys/kernel/perf_event_paranoid", v);
    let profiling = "isolation.profiling_admin_only";
    assert_eq!(check(profiling, "profiling", &paranoid("2\n")).0, "pass");
    assert_eq!(check(profiling, "profiling", &paranoid("1\n")).0, "pass");
    for level in ["0\n", "-1\n"] {
        let (verdict, reason) = check(profiling, "profiling", &paranoid(level));
        assert_eq!(verdict, "fail", "{level}");
        assert!(
            reason.contains("including the amdgpu counters of 0000:05:00.0"),
            "{reason}"
        );
    }
    // What the kernel's `%d` never writes was edited in: no level, whatever it looks like.
    for edited in ["lots\n", "+1\n", "02\n", "-0\n", "1 0\n"] {
        assert_eq!(
            check(profiling, "profiling", &paranoid(edited)).0,
            "inconclusive",
            "{edited}"
        );
    }
    let (verdict, reason) = check(profiling, "profiling", &|r: &Path| {
        std::fs::remove_file(r.join("proc/sys/kernel/perf_event_paranoid")).expect("rm");
    });
    assert_eq!(verdict, "inconclusive");
    assert!(reason.contains("perf_event_paranoid cannot be read"), "{reason}");
    // Both vendors on one host: both must pass.
    let (verdict, reason) = check(profiling, "profiling", &|r: &Path| {
        std::fs::create_dir_all(r.join("proc/driver/nvidia")).expect("mkdir");
        write(r, "proc/driver/nvidia/params", "RmProfilingAdminOnly: 0\n");
    });
    assert_eq!(verdict, "fail");
    assert!(reason.contains("RmProfilingAdminOnly is 0"), "{reason}");

    // /dev/kfd, or one partition's render node, open to every user.
    let mode = |node: &'static str| {
        move |r: &Path| {
            let manifest = r.join(hilt_harness::hostfs::MANIFEST);
            let mut m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&manifest).expect("read")).expect("json");
            m["nodes"][node]["mode"] = 0o20666.into();
            std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");
        }
    };
    let nodes = "isolation.device_nodes";
    assert_eq!(check(nodes, "device_nodes", &|_: &Path| {}).0, "pass");
    for node in ["/dev/kfd", "/dev/dri/renderD141"] {
        let (verdict, reason) = check(nodes, "device_nodes", &mode(node));
        assert_eq!(verdict, "fail", "{node}");
        assert!(reason.contains(&format!("{node} has mode 0666")), "{reason}");
    }
}

#[test]
fn amd_classes_and_skus_are_matched_by_pci_device_id_through_opencl_and_on_replay() {
    let library = Library::with_dirs(Vec::new(), true);
    let catalogue = hilt_suites::catalogue();
    let profiles: Vec<_> = library
        .list()
        .into_iter()
        .map(|(id, _)| {
            library
                .load(&id, &catalogue, Date::today())
                .expect("every built-in loads")
        })
        .collect();
    let info = |backend: &str, id: u16| DeviceInfo {
        id: format!("{backend}0"),
        backend: backend.into(),
        name: "gfx942:sramecc+:xnack-".into(),
        vendor: Some("Advanced Micro Devices, Inc.".into()),
        pci_vendor: Some(0x1002),
        pci_device: Some(id),
        pci_address: Some("0000:05:00.0".into()),
        simulated: false,
        global_mem_bytes: 0,
        local_mem_bytes: 0,
        compute_units: 0,
        facts: Default::default(),
    };
    for (id, expected) in [
        (0x74a1, "amd-mi300x"),
        (0x74a9, "amd-mi300x"),
        (0x74bd, "amd-mi300x"),
        (0x74b5, "amd-cdna3"),
        (0x74a0, "amd-cdna3"),
        (0x74a2, "amd-mi308x"),
        (0x74a5, "amd-mi325x"),
        (0x74b9, "amd-cdna3"),
        (0x740f, "amd-cdna2"),
        (0x740c, "amd-cdna2"),
        (0x7408, "amd-cdna2"),
        (0x75a0, "amd-cdna4"),
        (0x75a3, "amd-cdna4"),
    ] {
        for backend in ["opencl", "pci"] {
            let device = info(backend, id);
            let chosen = match profile::best_fit(&profiles, &[&device]) {
                Fit::One(p) => p.id.clone(),
                other => panic!("1002:{id:04x} on {backend}: {other:?}"),
            };
            assert_eq!(chosen, expected, "1002:{id:04x} on {backend}");
        }
    }
    assert!(matches!(
        profile::best_fit(&profiles, &[&info("opencl", 0x73ff)]),
        Fit::One(p) if p.id == "opencl-generic"
    ));

    // An OpenCL device of ROCm reports only its bus address: hilt joins it to its PCI
    // function for the ids and amdgpu's facts, so the SKU profile matches it.
    let host = HostFs::at(&common::host_fixture("mi300x-good")).expect("root");
    let mut device = info("opencl", 0);
    device.pci_device = None;
    let mut devices = vec![TrialDevice {
        info: device,
        spec: DeviceSpec::NotOpenable,
    }];
    hilt_harness::discovery::join_driver_facts(&mut devices, &host);
    let joined = &devices[0].info;
    assert_eq!(joined.pci_device, Some(0x74a1));
    assert_eq!(joined.facts["amdgpu.compute_partition"], "CPX");
    assert_eq!(joined.facts["sharing_mode"], "partitioned");
    assert!(matches!(profile::best_fit(&profiles, &[joined]), Fit::One(p) if p.id == "amd-mi300x"));
}

#[test]
fn amd_profiles_set_every_threshold_with_its_source() {
    let library = Library::with_dirs(Vec::new(), true);
    let catalogue = hilt_suites::catalogue();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    for id in [
        "amd-cdna2",
        "amd-cdna3",
        "amd-cdna4",
        "amd-mi300x",
        "amd-mi325x",
        "amd-mi308x",
    ] {
        let p = library.load(id, &catalogue, Date::today()).expect("loads");
        assert!(p.certifying, "{id}");
        assert_eq!(p.checks["isolation.cleaner_shader"].level.as_str(), "mandatory", "{id}");
        for (check_id, key) in [
            ("performance.host_to_device_bandwidth", "min_gib_s"),
            ("performance.device_to_host_bandwidth", "min_gib_s"),
            ("performance.device_copy_bandwidth", "min_gib_s"),
            ("performance.launch_latency", "max_us"),
            ("performance.fma_throughput", "min_gflops"),
        ] {
            let value = &p.checks[check_id].params[key];
            assert!(value.as_f64().is_some_and(|v| v > 0.0), "{id}: {check_id} {key}");
        }
        let text = std::fs::read_to_string(dir.join(format!("{id}.toml"))).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            if ["min_gib_s", "max_us", "min_gflops"].iter().any(|k| line.contains(k)) {
                let block: Vec<&str> = lines[..n]
                    .iter()
                    .rev()
                    .skip_while(|l| l.starts_with('['))
                    .take_while(|l| l.starts_with('#'))
                    .copied()
                    .collect();
                assert!(
                    block.iter().any(|l| l.contains("[rvs]") || l.contains("(U)")),
                    "{id}.toml line {}: a threshold without a source",
                    n + 1
                );
            }
            if line.trim_start().starts_with("0x") {
                assert!(
                    line.contains("# ") && line.contains("[ids]"),
                    "{id}.toml line {}",
                    n + 1
                );
            }
        }
    }
}
