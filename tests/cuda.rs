//! The CUDA backend and NVML: what CI can prove without a GPU, and what a GPU runner
//! proves with one.
//!
//! Without a driver: `hilt devices` says so in one line and exits 0, `hilt run` falls back
//! to the sim, nothing panics. From fixtures (`tests/fixtures/nvml/`): NVML's facts, the
//! join of CUDA devices to NVML devices, the sharing mode, and which profile a device of
//! each NVIDIA class gets by its PCI device id; every threshold in the NVIDIA profiles
//! carries its source.
//!
//! The runtime trials need a CUDA device (and NVRTC). Where there is none they are
//! reported as ignored, with the reason; `HILT_REQUIRE_CUDA=1` (for `cargo test` on a GPU
//! runner) turns a missing device into a failure. On a GPU that no NVIDIA class profile
//! covers they run under the test profile `cuda-any` (tests/fixtures/profiles).

mod common;

use std::path::Path;
use std::process::Output;

use hilt_harness::accel::cuda::{self, DriverFacts};
use hilt_harness::host::Date;
use hilt_harness::hostfs::HostFs;
use hilt_harness::nvml::{self, NvmlDevice, NvmlSystem, SharingMode};
use hilt_harness::profile::{self, Fit, Library};
use hilt_results::ResultRecord;
use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The NVIDIA class profiles and the SKU profiles that refine them.
const PROFILES: &[&str] = &[
    "nvidia-hopper",
    "nvidia-blackwell",
    "nvidia-ampere",
    "nvidia-ada",
    "nvidia-h100-sxm",
    "nvidia-h100-nvl",
    "nvidia-h200-sxm",
    "nvidia-h200-nvl",
    "nvidia-gh200",
];

fn main() {
    let args = Arguments::from_args();
    let runtime = |name: &str, test: fn() -> Result<(), Failed>| {
        Trial::ignorable_test(name, move || match cuda_here() {
            Ok(()) => test().map(|()| Completion::Completed),
            Err(why) => Ok(Completion::ignored_with(why)),
        })
    };
    let no_driver = |name: &str, test: fn() -> Result<(), Failed>| {
        Trial::ignorable_test(name, move || {
            if cuda::driver_present() {
                Ok(Completion::ignored_with("a CUDA driver is installed here"))
            } else {
                test().map(|()| Completion::Completed)
            }
        })
    };
    let trials = vec![
        no_driver(
            "cuda::without_a_driver_devices_says_so_in_one_line",
            without_a_driver_devices_says_so_in_one_line,
        ),
        no_driver(
            "cuda::without_a_driver_run_falls_back_to_the_sim",
            without_a_driver_run_falls_back_to_the_sim,
        ),
        Trial::test("nvml::facts_from_an_h100", nvml_facts_from_an_h100),
        Trial::test(
            "nvml::facts_without_the_confidential_computing_query",
            nvml_facts_without_the_confidential_computing_query,
        ),
        Trial::test("nvml::mps_is_found_by_process_or_pipe", mps_is_found_by_process_or_pipe),
        Trial::test(
            "nvml::sharing_mode_from_nvml_and_the_host",
            sharing_mode_from_nvml_and_the_host,
        ),
        Trial::test(
            "cuda::devices_join_nvml_by_bus_id_or_fall_back_to_sysfs",
            devices_join_nvml_by_bus_id_or_fall_back_to_sysfs,
        ),
        Trial::test(
            "profiles::each_nvidia_class_is_matched_by_pci_device_id",
            each_nvidia_class_is_matched_by_pci_device_id,
        ),
        Trial::test(
            "profiles::nvidia_profiles_load_certify_and_set_every_threshold",
            nvidia_profiles_load_certify_and_set_every_threshold,
        ),
        Trial::test(
            "profiles::every_nvidia_figure_carries_its_source",
            every_nvidia_figure_carries_its_source,
        ),
        Trial::ignorable_test("cuda::kernels_compile", kernels_compile),
        runtime(
            "cuda::devices_are_listed_with_nvml_facts",
            devices_are_listed_with_nvml_facts,
        ),
        runtime(
            "cuda::smoke_checks_pass_on_a_healthy_gpu",
            smoke_checks_pass_on_a_healthy_gpu,
        ),
        runtime(
            "cuda::a_faulting_tenant_leaves_its_neighbour_intact",
            a_faulting_tenant_leaves_its_neighbour_intact,
        ),
        runtime(
            "cuda::a_kernel_build_failure_is_an_error_with_the_log",
            a_kernel_build_failure_is_an_error_with_the_log,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// Whether a CUDA device is here; `Err` with the reason when not (a panic, so a failure,
/// when `HILT_REQUIRE_CUDA=1`).
fn cuda_here() -> Result<(), String> {
    common::backend_device("cuda", "HILT_REQUIRE_CUDA", hilt(&["devices"], &[]))
}

fn required() -> bool {
    std::env::var("HILT_REQUIRE_CUDA").as_deref() == Ok("1")
}

/// `hilt ARGS` with only the CUDA backend probed, and `env` added.
fn hilt(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = common::command();
    cmd.env("HILT_BACKENDS", "cuda").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("hilt runs")
}

/// `hilt run --device cuda0 --out TMP ARGS` under `env`; the record it wrote.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, ResultRecord, String) {
    common::run_device(|full| hilt(full, env), "cuda0", args)
}

fn fixture(name: &str) -> std::path::PathBuf {
    common::fixtures().join("nvml").join(name)
}

fn system(name: &str) -> NvmlSystem {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture");
    serde_json::from_str(&text).expect("an NvmlSystem")
}

fn host(name: &str) -> HostFs {
    HostFs::at(&fixture("hosts").join(name)).expect("host fixture")
}

/// One entry of `devices.json`: a device of an NVIDIA class, its PCI device id and the
/// profile it must get (none for a class hilt has no profile for).
struct ClassDevice {
    pci_device: String,
    profile: Option<String>,
    driver: DriverFacts,
}

fn class_devices() -> Vec<ClassDevice> {
    let text = std::fs::read_to_string(fixture("devices.json")).expect("devices.json");
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).expect("devices.json parses");
    list.into_iter()
        .map(|v| ClassDevice {
            pci_device: v["pci_device"].as_str().expect("pci_device").to_string(),
            profile: v["profile"].as_str().map(String::from),
            driver: serde_json::from_value(v["driver"].clone()).expect("DriverFacts"),
        })
        .collect()
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what().into()) }
}

// --- Without a driver -------------------------------------------------------------------

fn without_a_driver_devices_says_so_in_one_line() -> Result<(), Failed> {
    let out = hilt(&["devices"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(out.status.success(), || format!("exit {:?}: {stderr}", out.status))?;
    let notes: Vec<&str> = stdout.lines().filter(|l| l.starts_with("cuda")).collect();
    check(notes == [format!("cuda: {}", cuda::NO_DRIVER)], || {
        format!("expected one cuda note, got {notes:?}\n{stdout}")
    })?;
    check(!stderr.contains("panicked"), || format!("a panic: {stderr}"))
}

/// The nightly-CI case: `HILT_BACKENDS=cuda hilt run --tier smoke --junit j.xml` on a
/// node whose driver is gone. The sim stands in, but nothing about the run is green: exit
/// 3, status `no_accelerator`, and a JUnit file with an error that says so.
fn without_a_driver_run_falls_back_to_the_sim() -> Result<(), Failed> {
    let out = tempfile::tempdir().expect("tempdir");
    let junit = out.path().join("j.xml");
    // A host without accelerators (the development VM's capture): with no CUDA device and
    // none in the host's files, the sim is all there is to run.
    let vm = common::host_fixture("devvm");
    let output = hilt(
        &[
            "run",
            "-q",
            "--tier",
            "smoke",
            "--out",
            out.path().to_str().expect("utf-8"),
            "--junit",
            junit.to_str().expect("utf-8"),
        ],
        &[("HILT_SYSFS_ROOT", vm.to_str().expect("utf-8"))],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    check(output.status.code() == Some(3), || {
        format!("exit {:?}: {stderr}", output.status)
    })?;
    check(
        stderr.contains(&format!("cuda: {}", cuda::NO_DRIVER)) && stderr.contains("running the simulated device sim0"),
        || format!("no fallback note: {stderr}"),
    )?;
    check(
        stderr.contains("hilt: exit status 3: no accelerator was examined"),
        || format!("no plain exit line: {stderr}"),
    )?;
    check(!stdout.contains("test result: ok"), || {
        format!("the terminal says ok: {stdout}")
    })?;
    let record = ResultRecord::from_json(&std::fs::read(out.path().join("latest/result.json"))?)?;
    check(
        record.devices.iter().any(|d| d.id == "sim0") && record.devices.iter().all(|d| d.backend != "cuda"),
        || "the sim ran, and no CUDA device".into(),
    )?;
    check(
        record.conformance.status == hilt_results::ConformanceStatus::NoAccelerator && !record.conformance.conformant,
        || format!("{:?}", record.conformance),
    )?;
    check(
        record
            .run
            .no_accelerator
            .as_deref()
            .is_some_and(|w| w.contains(cuda::NO_DRIVER)),
        || format!("{:?}", record.run.no_accelerator),
    )?;
    let xml = std::fs::read_to_string(&junit)?;
    check(
        xml.contains("type=\"accelerators missing\"") && xml.contains("no accelerator was examined"),
        || format!("the JUnit file looks clean: {xml}"),
    )?;
    check(!stderr.contains("panicked"), || format!("a panic: {stderr}"))
}

// --- NVML and sharing modes, from fixtures ----------------------------------------------

fn nvml_facts_from_an_h100() -> Result<(), Failed> {
    let s = system("h100-sxm.json");
    let facts = nvml::facts(&s, &s.devices[0]);
    insta::assert_json_snapshot!("nvml_facts_h100", facts);
    Ok(())
}

fn nvml_facts_without_the_confidential_computing_query() -> Result<(), Failed> {
    let s = system("mig-a100.json");
    let facts = nvml::facts(&s, &s.devices[0]);
    check(facts["nvml.confidential_compute"] == "not offered", || {
        format!("{facts:?}")
    })?;
    check(facts["nvml.mig_mode"] == "enabled", || format!("{facts:?}"))?;
    check(facts["nvml.pci_id"] == "10de:20b2", || format!("{facts:?}"))?;
    check(facts["nvml.pci_bus_id"] == "0000:4e:00.0", || format!("{facts:?}"))?;
    check(facts["nvml.cuda_driver_version"] == "12.2", || format!("{facts:?}"))?;
    check(!facts.contains_key("nvml.pci_subsystem_id"), || format!("{facts:?}"))?;
    check(!facts.contains_key("nvml.inforom.power_version"), || {
        format!("{facts:?}")
    })
}

fn mps_is_found_by_process_or_pipe() -> Result<(), Failed> {
    let got = |name: &str, pipe: Option<&str>| nvml::detect_mps(&host(name), pipe);
    check(
        got("mps-daemon", None).as_deref() == Some("process nvidia-cuda-mps-control (pid 4242)"),
        || format!("{:?}", got("mps-daemon", None)),
    )?;
    check(
        got("mps-pipe", None).as_deref() == Some("control pipe /tmp/nvidia-mps/control"),
        || format!("{:?}", got("mps-pipe", None)),
    )?;
    check(got("mps-custom-pipe", None).is_none(), || {
        "a custom pipe directory is not the default".into()
    })?;
    check(
        got("mps-custom-pipe", Some("/run/mps/")).as_deref() == Some("control pipe /run/mps/control"),
        || format!("{:?}", got("mps-custom-pipe", Some("/run/mps/"))),
    )?;
    check(got("no-mps", None).is_none(), || format!("{:?}", got("no-mps", None)))
}

fn sharing_mode_from_nvml_and_the_host() -> Result<(), Failed> {
    let h100 = system("h100-sxm.json");
    let a100 = system("mig-a100.json");
    let mps = nvml::detect_mps(&host("mps-daemon"), None);
    let none = nvml::detect_mps(&host("no-mps"), None);
    let cases: [(Option<&NvmlDevice>, Option<String>, SharingMode); 5] = [
        (Some(&h100.devices[0]), none.clone(), SharingMode::TimeSliced),
        (Some(&h100.devices[0]), mps.clone(), SharingMode::Mps),
        (Some(&a100.devices[0]), mps.clone(), SharingMode::Mig),
        (None, none.clone(), SharingMode::TimeSliced),
        (None, mps.clone(), SharingMode::Mps),
    ];
    for (device, mps, want) in cases {
        let (got, why) = nvml::sharing_mode(device, mps.as_deref());
        check(got == want, || format!("{want:?} expected, got {got:?} ({why})"))?;
    }
    let mut exclusive = h100.devices[0].clone();
    exclusive.compute_mode = Some("exclusive_process".into());
    let (got, why) = nvml::sharing_mode(Some(&exclusive), None);
    check(
        got == SharingMode::Exclusive && why.contains("exclusive_process"),
        || format!("{got:?}: {why}"),
    )
}

fn devices_join_nvml_by_bus_id_or_fall_back_to_sysfs() -> Result<(), Failed> {
    let s = system("h100-sxm.json");
    let h100 = &class_devices()[0].driver;
    let info = cuda::device_info(h100, Ok(&s), None, &host("no-mps"));
    check(info.id == "cuda0" && info.backend == "cuda", || format!("{info:?}"))?;
    check(
        info.pci_vendor == Some(0x10de) && info.pci_device == Some(0x2330),
        || format!("{info:?}"),
    )?;
    check(info.pci_address.as_deref() == Some("0000:17:00.0"), || {
        format!("{info:?}")
    })?;
    check(info.compute_units == 132 && info.local_mem_bytes == 232_448, || {
        format!("{info:?}")
    })?;
    check(info.facts["sharing_mode"] == "time_sliced", || {
        format!("{:?}", info.facts)
    })?;
    check(info.facts["nvml.serial"] == "1650123456789", || {
        format!("{:?}", info.facts)
    })?;
    check(info.facts["cuda.compute_capability"] == "9.0", || {
        format!("{:?}", info.facts)
    })?;

    // By UUID when the bus ids disagree (a virtual machine may renumber the bus).
    let mut moved = h100.clone();
    moved.pci_address = Some("0000:99:00.0".into());
    let info = cuda::device_info(&moved, Ok(&s), None, &host("no-mps"));
    check(info.pci_device == Some(0x2330), || format!("joined by UUID: {info:?}"))?;

    // Without NVML: the PCI device id from sysfs, and the reason recorded.
    let info = cuda::device_info(h100, Err("NVML unavailable: test"), None, &host("no-mps"));
    check(info.pci_device == Some(0x2330), || format!("{info:?}"))?;
    check(info.facts["nvml.unavailable"] == "NVML unavailable: test", || {
        format!("{:?}", info.facts)
    })?;
    check(!info.facts.keys().any(|k| k.starts_with("nvml.serial")), || {
        format!("{:?}", info.facts)
    })
}

// --- Profiles ---------------------------------------------------------------------------

fn today() -> Date {
    Date {
        year: 2026,
        month: 11,
        day: 26,
    }
}

fn each_nvidia_class_is_matched_by_pci_device_id() -> Result<(), Failed> {
    let library = Library::standard();
    let catalogue = hilt_suites::catalogue();
    let profiles: Vec<_> = library
        .list()
        .into_iter()
        .map(|(id, _)| library.load(&id, &catalogue, today()).expect("every built-in loads"))
        .collect();
    for d in class_devices() {
        let id = u16::from_str_radix(&d.pci_device, 16)?;
        let system = NvmlSystem {
            devices: vec![NvmlDevice {
                pci_bus_id: d.driver.pci_address.clone(),
                pci_device_id: Some(u32::from(id) << 16 | 0x10de),
                ..NvmlDevice::default()
            }],
            ..NvmlSystem::default()
        };
        let info = cuda::device_info(&d.driver, Ok(&system), None, &host("no-mps"));
        let chosen = match profile::best_fit(&profiles, &[&info]) {
            Fit::One(p) => Some(p.id.as_str()),
            Fit::None => None,
            Fit::Tie(a, b) => return Err(format!("10de:{}: {} and {} tie", d.pci_device, a.id, b.id).into()),
        };
        check(chosen == d.profile.as_deref(), || {
            format!(
                "10de:{} ({}) got {chosen:?}, expected {:?}",
                d.pci_device, d.driver.name, d.profile
            )
        })?;
        // A SKU's profile refines its class's: both match, the SKU's is chosen.
        if let Some(p) = chosen.and_then(|id| profiles.iter().find(|p| p.id == id)) {
            for ancestor in &p.chain[1..] {
                let a = profiles.iter().find(|q| q.id == *ancestor).expect("ancestor loads");
                check(a.id == "base" || a.matches(&info), || {
                    format!("{} extends {} but the device is outside {}", p.id, a.id, a.id)
                })?;
            }
        }
    }
    Ok(())
}

fn nvidia_profiles_load_certify_and_set_every_threshold() -> Result<(), Failed> {
    let library = Library::standard();
    let catalogue = hilt_suites::catalogue();
    for id in PROFILES {
        let p = library.load(id, &catalogue, today())?;
        check(p.certifying, || format!("{id} certifies"))?;
        check(p.chain.last().map(String::as_str) == Some("base"), || {
            format!("{id} extends base: {:?}", p.chain)
        })?;
        for (check_id, key) in [
            ("performance.host_to_device_bandwidth", "min_gib_s"),
            ("performance.device_to_host_bandwidth", "min_gib_s"),
            ("performance.device_copy_bandwidth", "min_gib_s"),
            ("performance.launch_latency", "max_us"),
            ("performance.fma_throughput", "min_gflops"),
        ] {
            let value = &p.checks[check_id].params[key];
            check(value.as_f64().is_some_and(|v| v > 0.0), || {
                format!("{id}: {check_id} has no {key}: {value}")
            })?;
        }
        check(p.checks.contains_key("isolation.foreign_pointer"), || {
            format!("{id} runs isolation.foreign_pointer")
        })?;
    }
    Ok(())
}

/// Every threshold line and every PCI id line of the NVIDIA profiles has its source: a
/// comment block just above a threshold names a source tag (`[dcgm]`) or says it is
/// hilt's own assumption (`(U)`), and every id names its product.
fn every_nvidia_figure_carries_its_source() -> Result<(), Failed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    for id in PROFILES {
        let text = std::fs::read_to_string(dir.join(format!("{id}.toml")))?;
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
                let sourced = block.iter().any(|l| l.contains("[dcgm]") || l.contains("(U)"));
                check(sourced, || {
                    format!("{id}.toml line {}: a threshold without a source", n + 1)
                })?;
            }
            if line.trim_start().starts_with("0x") {
                check(line.contains("# ") && line.contains("[ids]"), || {
                    format!("{id}.toml line {}: a PCI id without its product and source", n + 1)
                })?;
            }
        }
    }
    Ok(())
}

/// The kernels compile where a compiler is here: NVRTC (what hilt uses), else `nvcc`.
/// Elsewhere only `harness/src/accel/cuda.rs`'s unit tests check the source (every
/// launched kernel defined with C linkage, balanced brackets).
fn kernels_compile() -> Result<Completion, Failed> {
    if cuda::nvrtc_present() {
        for cc in [(8, 0), (8, 9), (9, 0)] {
            let cubin = cuda::compile(cc, &[]).map_err(|e| format!("sm_{}{}: {e}", cc.0, cc.1))?;
            // Every kernel the backend launches is in the image under its C name.
            for name in cuda::KERNEL_NAMES {
                check(cubin.windows(name.len()).any(|w| w == name.as_bytes()), || {
                    format!("sm_{}{}: no {name} in the cubin", cc.0, cc.1)
                })?;
            }
        }
        let err = cuda::compile((9, 0), &["--no-such-option".into()]).expect_err("a bad option fails");
        check(err.contains("NVRTC"), || err.clone())?;
        return Ok(Completion::Completed);
    }
    let nvcc = std::process::Command::new("nvcc").arg("--version").output();
    if nvcc.is_ok_and(|o| o.status.success()) {
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("hilt_kernels.cu");
        std::fs::write(&src, cuda::KERNELS)?;
        let out = std::process::Command::new("nvcc")
            .args(["-arch=sm_80", "-c", "-o"])
            .arg(dir.path().join("k.o"))
            .arg(&src)
            .output()?;
        check(out.status.success(), || {
            String::from_utf8_lossy(&out.stderr).into_owned()
        })?;
        return Ok(Completion::Completed);
    }
    if required() || std::env::var("HILT_REQUIRE_NVRTC").as_deref() == Ok("1") {
        return Err("HILT_REQUIRE_CUDA=1 or HILT_REQUIRE_NVRTC=1, but neither NVRTC nor nvcc is here".into());
    }
    Ok(Completion::ignored_with(
        "neither NVRTC nor nvcc here: the kernel source is checked only by the unit tests",
    ))
}

// --- On a GPU ---------------------------------------------------------------------------

fn devices_are_listed_with_nvml_facts() -> Result<(), Failed> {
    let out = hilt(&["devices", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let cuda0 = v["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "cuda0"))
        .ok_or("no cuda0 in `hilt devices --json`")?;
    let facts = &cuda0["facts"];
    for key in ["cuda.compute_capability", "cuda.uuid", "sharing_mode"] {
        check(!facts[key].is_null(), || format!("no fact {key}: {facts}"))?;
    }
    check(
        !facts["nvml.uuid"].is_null() || !facts["nvml.unavailable"].is_null(),
        || format!("neither NVML facts nor why not: {facts}"),
    )
}

fn smoke_checks_pass_on_a_healthy_gpu() -> Result<(), Failed> {
    let (_, record, stderr) = run(&["--tier", "smoke", "--tenant-timeout", "120"], &[]);
    for id in [
        "residue.global.cross_process",
        "residue.global.cross_context",
        "residue.local.cross_kernel",
        "isolation.foreign_pointer",
    ] {
        let got = common::verdict(&record, id);
        check(got == "pass", || format!("{id}: {got}\n{stderr}"))?;
        let outcome = record
            .outcomes
            .iter()
            .find(|o| o.check == id && o.device == "cuda0")
            .ok_or("no outcome")?;
        check(outcome.evidence.contains_key("sharing_mode"), || {
            format!("{id} records no sharing mode")
        })?;
    }
    Ok(())
}

fn a_faulting_tenant_leaves_its_neighbour_intact() -> Result<(), Failed> {
    let (_, record, stderr) = run(
        &["--tier", "standard", "--exact", "isolation::fault_containment::cuda0"],
        &[],
    );
    let got = common::verdict(&record, "isolation.fault_containment");
    check(got == "pass", || format!("{got}\n{stderr}"))
}

fn a_kernel_build_failure_is_an_error_with_the_log() -> Result<(), Failed> {
    let (_, record, _) = run(
        &["--tier", "smoke", "--exact", "residue::local::cross_kernel::cuda0"],
        &[("HILT_CUDA_NVRTC_OPTIONS", "--no-such-option")],
    );
    let outcome = record.outcomes.first().ok_or("no outcome")?;
    let reason = outcome.reason.clone().unwrap_or_default();
    check(
        outcome.verdict.as_str() == "error" && reason.contains("NVRTC") && reason.contains("no-such-option"),
        || format!("{:?}: {reason}", outcome.verdict),
    )
}
