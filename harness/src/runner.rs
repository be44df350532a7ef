//! Planning and running: profile × devices × checks becomes libtest-mimic trials.
//!
//! Each trial is named `suite::check::device` (the check id's dots become `::`), so
//! `--list`, `--exact`, name filters, `--skip` and `--format terse` behave as they do for
//! `cargo test`. Trials on one device never overlap unless the check declares that it may
//! share the device. Every finished trial is recorded as it finishes (see
//! [`crate::record`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use hilt_results::{
    ExitCode, FormatVersion, Outcome, ProfileInfo, ResultRecord, RunInfo, Summary, Tier, Tool, Verdict,
};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::accel::sim::{self, SimKnobs};
use crate::accel::{DeviceInfo, DeviceSpec};
use crate::canary::CanaryKey;
use crate::check::{Catalogue, CheckCtx, CheckDef, Finding, HOST_BACKEND, TrialDevice};
use crate::hostfs::HostFs;
use crate::profile::{CheckSettings, Profile};
use crate::record::{ENVELOPE_FILE, EnvelopeFile, Event, EventsFile, Recorder, Reporter, ResultFile};
use crate::tenant::TenantLauncher;
use hilt_results::signed::SigningKey;
use sha2::Digest;

/// Whether `profile` covers `device`: by its match rules, and always for the host.
pub fn covers(profile: &Profile, device: &DeviceInfo) -> bool {
    device.backend == HOST_BACKEND || profile.matches(device)
}

/// One planned trial.
pub struct PlannedTrial {
    /// `suite::check::device`.
    pub name: String,
    /// The check.
    pub check: &'static CheckDef,
    /// The device.
    pub device: Arc<TrialDevice>,
    /// How the profile treats the check.
    pub settings: CheckSettings,
}

/// The trials of `profile` in `tier` on `devices`, in check-id then device order. Devices
/// the profile does not match get no trials.
pub fn plan(profile: &Profile, tier: Tier, devices: &[Arc<TrialDevice>], catalogue: &Catalogue) -> Vec<PlannedTrial> {
    let mut trials = Vec::new();
    for (id, settings) in profile.checks_in(tier) {
        // Profiles are resolved against the same catalogue, so every id is known.
        let Some(check) = catalogue.get(id) else {
            continue;
        };
        for device in devices
            .iter()
            .filter(|d| covers(profile, &d.info) && check.scope.applies_to(d))
        {
            trials.push(PlannedTrial {
                name: check.trial_name(&device.info.id),
                check,
                device: Arc::clone(device),
                settings: settings.clone(),
            });
        }
    }
    trials
}

/// A simulated device for one run: its memory lives as long as this value and the
/// tenants that inherited it.
pub struct SimDevice {
    _memory: std::fs::File,
    /// The device as trials see it.
    pub device: TrialDevice,
}

/// Creates a fresh sim device `id` with `knobs`, in an anonymous memory file.
pub fn make_sim_device(id: &str, knobs: SimKnobs) -> Result<SimDevice, crate::accel::AccelError> {
    let (memory, spec) = sim::create_anonymous(id, knobs)?;
    let info: DeviceInfo = spec.info();
    Ok(SimDevice {
        _memory: memory,
        device: TrialDevice {
            info,
            spec: DeviceSpec::Sim(spec),
        },
    })
}

/// What `execute` needs besides the plan.
pub struct RunSetup {
    /// The resolved profile.
    pub profile: Profile,
    /// The tier.
    pub tier: Tier,
    /// The devices trials may run on.
    pub devices: Vec<Arc<TrialDevice>>,
    /// The root that host checks read the host's files under (`--sysfs-root`).
    pub host: HostFs,
    /// Where `result.json` and `events.jsonl` go; `None` records nothing.
    pub out_dir: Option<PathBuf>,
    /// How tenants are started.
    pub launcher: TenantLauncher,
    /// Sim faults planted on purpose.
    pub sim_faults: Vec<String>,
    /// Settings given on the command line that override the profile (`sim.scrub=never`,
    /// `tenant_timeout_s=5`); recorded, and overridden sim knobs make the run partial.
    pub overrides: Vec<String>,
    /// How the finished record is signed into `result.dsse.json`; `None` signs nothing.
    pub signer: Option<RunSigner>,
    /// More reporters: reports written when the run finishes (`--junit`, `--html`),
    /// progress on a terminal.
    pub reporters: Vec<Box<dyn Reporter>>,
    /// The node the run stands for (`--node`); `None`: the host name.
    pub node: Option<String>,
    /// Where the node-wide device locks live and how long to wait for them; `None` takes
    /// no locks.
    pub locks: Option<crate::devlock::LockSettings>,
}

/// The key a run signs its record with.
pub enum RunSigner {
    /// A key someone holds (a lab's): the signed result is attributable to it.
    Key(SigningKey),
    /// A one-off key made for this run because none was given: the record says so, and
    /// verification reports the result as intact but not attributable.
    Development(SigningKey),
}

/// How a run ended.
pub struct RunEnd {
    /// The record, unless the run only listed trials.
    pub record: Option<ResultRecord>,
    /// The process exit code.
    pub exit: ExitCode,
    /// Reporters that failed (a result file that could not be written): the run's verdicts
    /// stand, but its record is not where it should be.
    pub recording_errors: Vec<String>,
    /// Why nothing ran, when a device stayed locked by another run (exit 3) or the locks
    /// could not be taken at all (exit 2).
    pub not_run: Option<String>,
}

/// Plans and runs the trials with libtest-mimic `args`, recording as it goes.
pub fn execute(mut setup: RunSetup, catalogue: &Catalogue, args: &Arguments) -> std::io::Result<RunEnd> {
    let planned = plan(&setup.profile, setup.tier, &setup.devices, catalogue);
    if args.list {
        let trials = planned.iter().map(|p| Trial::test(p.name.clone(), || Ok(()))).collect();
        let _ = libtest_mimic::run(args, trials);
        return Ok(RunEnd {
            record: None,
            exit: ExitCode::Conformant,
            recording_errors: Vec::new(),
            not_run: None,
        });
    }

    let selected: Vec<bool> = planned
        .iter()
        .map(|p| {
            let probe = Trial::test(p.name.clone(), || Ok(()));
            !args.is_filtered_out(&probe) && !args.is_ignored(&probe)
        })
        .collect();
    let filtered = selected.iter().any(|s| !s);
    // One run per device on the node: the devices tenants will open are locked before
    // anything is written, and held until this function returns.
    let node = setup.node.clone().unwrap_or_else(|| crate::host::host_facts().hostname);
    let _device_locks = match &setup.locks {
        None => None,
        Some(settings) => {
            let opened: Vec<&DeviceInfo> = planned
                .iter()
                .zip(&selected)
                .filter(|(p, s)| **s && p.device.spec.openable())
                .map(|(p, _)| &p.device.info)
                .collect();
            match crate::devlock::acquire(&opened, settings, &node, |m| eprintln!("hilt: {m}")) {
                Ok(locks) => Some(locks),
                Err(e) => {
                    let exit = match e {
                        crate::devlock::LockError::Busy { .. } => ExitCode::Inconclusive,
                        _ => ExitCode::Usage,
                    };
                    return Ok(RunEnd {
                        record: None,
                        exit,
                        recording_errors: Vec::new(),
                        not_run: Some(e.to_string()),
                    });
                }
            }
        }
    };
    let mut partial = Vec::new();
    if filtered {
        partial.push(format!(
            "partial run: filters selected {} of {} planned trials",
            selected.iter().filter(|s| **s).count(),
            planned.len()
        ));
    }
    // Overridden sim knobs and kernel build options change what the checks measure.
    let knob_overrides: Vec<&str> = setup
        .overrides
        .iter()
        .filter(|o| {
            o.starts_with("sim.") || o.starts_with("opencl.build_options") || o.starts_with("cuda.nvrtc_options")
        })
        .map(String::as_str)
        .collect();
    if !knob_overrides.is_empty() {
        partial.push(format!(
            "settings that change the checks overridden: {}",
            knob_overrides.join(", ")
        ));
    }
    if !setup.sim_faults.is_empty() {
        partial.push(format!(
            "sim faults planted on purpose: {}",
            setup.sim_faults.join(", ")
        ));
    }

    let mut header = header(
        &setup,
        node,
        &planned,
        filtered,
        selected.iter().filter(|s| **s).count() as u32,
    );
    let signer = setup.signer.take();
    if let Some(RunSigner::Development(key)) = &signer {
        header.signing = Some(key.development_note());
    }
    let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
    let mut _out_lock = None;
    if let Some(dir) = &setup.out_dir {
        std::fs::create_dir_all(dir)?;
        // Two runs writing the same directory would interleave their records.
        let lock = std::fs::File::create(dir.join(".hilt.lock"))?;
        if lock.try_lock().is_err() {
            return Err(std::io::Error::other(format!(
                "another hilt run is writing to {}",
                dir.display()
            )));
        }
        _out_lock = Some(lock);
        // An envelope left by an earlier run must never sit beside this run's record.
        match std::fs::remove_file(dir.join(ENVELOPE_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        reporters.push(Box::new(EventsFile::create(dir)?));
        reporters.push(Box::new(ResultFile::new(dir)));
        if let Some(RunSigner::Key(key) | RunSigner::Development(key)) = signer {
            reporters.push(Box::new(EnvelopeFile::new(dir.join(ENVELOPE_FILE), key)));
        }
    }
    reporters.append(&mut setup.reporters);
    let recorder = Arc::new(Mutex::new(Recorder::new(header, reporters)));
    let launcher = Arc::new(setup.launcher);
    let run_key = CanaryKey::random();
    let locks: BTreeMap<String, Arc<RwLock<()>>> = setup
        .devices
        .iter()
        .map(|d| (d.info.id.clone(), Arc::new(RwLock::new(()))))
        .collect();

    let trials = planned
        .into_iter()
        .enumerate()
        .map(|(index, p)| {
            let recorder = Arc::clone(&recorder);
            let launcher = Arc::clone(&launcher);
            let host = setup.host.clone();
            let lock = locks.get(&p.device.info.id).cloned().unwrap_or_default();
            let key = run_key.derive(index as u64);
            let name = p.name.clone();
            Trial::ignorable_test(name, move || run_trial(&p, key, &launcher, &host, &lock, &recorder))
        })
        .collect();
    let _conclusion = libtest_mimic::run(args, trials);

    let recorder = Arc::try_unwrap(recorder)
        .map_err(|_| std::io::Error::other("a trial outlived the run"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let (record, exit, recording_errors) = recorder.finish(partial);
    Ok(RunEnd {
        record: Some(record),
        exit,
        recording_errors,
        not_run: None,
    })
}

fn run_trial(
    p: &PlannedTrial,
    key: CanaryKey,
    launcher: &TenantLauncher,
    host: &HostFs,
    device_lock: &RwLock<()>,
    recorder: &Mutex<Recorder>,
) -> Result<Completion, Failed> {
    // Exclusive checks hold the device for the whole trial; concurrent ones share it with
    // each other but never with an exclusive one.
    let (_shared, _exclusive) = if p.check.concurrent {
        (Some(device_lock.read().unwrap_or_else(|e| e.into_inner())), None)
    } else {
        (None, Some(device_lock.write().unwrap_or_else(|e| e.into_inner())))
    };
    let started_at = crate::host::rfc3339(SystemTime::now());
    lock(recorder).emit(Event::TrialStarted {
        trial: p.name.clone(),
        at: started_at.clone(),
    });
    let start = Instant::now();
    let mut ctx = CheckCtx::new(&p.device, key, &p.settings.params, launcher).with_host(host.clone());
    // How tenants share the device is evidence for every residue and isolation verdict
    // on it: the same check means something else under MPS than under MIG.
    if p.check.scope == crate::check::Scope::Device
        && matches!(p.check.suite(), "residue" | "isolation")
        && let Some(mode) = p.device.info.facts.get("sharing_mode")
    {
        ctx.evidence("sharing_mode", mode.clone());
    }
    // Other processes on the device are evidence, and spoil a performance figure.
    let watch =
        (p.check.scope == crate::check::Scope::Device).then(|| crate::device_users::Watch::start(host, &p.device.info));
    let run = p.check.run;
    // A panicking check is a harness bug: record it as an error, never lose the trial.
    let finding = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut ctx))).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        Finding::Error(format!("the check panicked: {msg}"))
    });
    let performance = p.check.suite() == "performance";
    let finding = match watch {
        Some(watch) => watch.finish(host, &p.device.info, performance, &mut ctx, finding),
        None => finding,
    };
    let (verdict, reason) = match finding {
        Finding::Pass => (Verdict::Pass, None),
        Finding::Fail(r) => (Verdict::Fail, Some(r)),
        Finding::NotApplicable(r) => (Verdict::NotApplicable, Some(r)),
        Finding::Inconclusive(r) => (Verdict::Inconclusive, Some(r)),
        Finding::Error(r) => (Verdict::Error, Some(r)),
    };
    let waiver = match (&p.settings.waiver, verdict) {
        (Some(w), Verdict::Fail) => Some(hilt_results::Waiver {
            reason: w.reason.clone(),
            expires: w.expires.to_string(),
        }),
        _ => None,
    };
    let outcome = Outcome {
        trial: p.name.clone(),
        check: p.check.id.into(),
        device: p.device.info.id.clone(),
        level: p.settings.level,
        requirements: p.check.requirements.iter().map(|r| (*r).to_string()).collect(),
        verdict,
        reason: reason.clone(),
        waiver: waiver.clone(),
        measurements: ctx.measurements,
        evidence: ctx.evidence,
        params: p.settings.params.clone(),
        started_at,
        duration_ms: start.elapsed().as_millis() as u64,
    };
    lock(recorder).emit(Event::TrialFinished {
        outcome: Box::new(outcome),
    });
    let reason = reason.unwrap_or_default();
    // Informational checks are evidence only: whatever they found is shown, but as a
    // skipped test, so that the terminal's verdict tracks the checks that decide.
    if p.settings.level == hilt_results::Level::Informational && verdict != Verdict::Pass {
        return Ok(Completion::ignored_with(format!(
            "informational: {}: {reason}",
            verdict.as_str()
        )));
    }
    match verdict {
        Verdict::Pass => Ok(Completion::Completed),
        Verdict::NotApplicable => Ok(Completion::ignored_with(format!("not applicable: {reason}"))),
        Verdict::Fail => match waiver {
            Some(w) => Ok(Completion::ignored_with(format!(
                "waived until {}: {}; {reason}",
                w.expires, w.reason
            ))),
            None => Err(format!("FAIL: {reason}").into()),
        },
        Verdict::Inconclusive => Err(format!("INCONCLUSIVE: {reason}").into()),
        _ => Err(format!("ERROR: {reason}").into()),
    }
}

fn lock(recorder: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(|e| e.into_inner())
}

fn header(setup: &RunSetup, node: String, planned: &[PlannedTrial], filtered: bool, selected: u32) -> ResultRecord {
    let profile = &setup.profile;
    ResultRecord {
        format: FormatVersion::CURRENT,
        tool: Tool {
            name: "hilt".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            executable_sha256: executable_sha256(),
        },
        run: RunInfo {
            id: crate::hex(&rand::random::<[u8; 16]>()),
            started_at: crate::host::rfc3339(SystemTime::now()),
            finished_at: None,
            complete: false,
            tier: setup.tier,
            filtered,
            planned: planned.iter().map(|p| p.name.clone()).collect(),
            sim_faults: setup.sim_faults.clone(),
            overrides: setup.overrides.clone(),
        },
        host: hilt_results::Host {
            node: Some(node),
            ..crate::host::host_facts()
        },
        profile: ProfileInfo {
            id: profile.id.clone(),
            title: profile.title.clone(),
            version: profile.version.clone(),
            digest: profile.digest(),
            chain: profile.chain.clone(),
            // The sim proves hilt's logic; a run on it never certifies, whatever the profile says.
            certifying: profile.certifying
                && !setup
                    .devices
                    .iter()
                    .any(|d| d.info.simulated && profile.matches(&d.info)),
        },
        devices: setup
            .devices
            .iter()
            .filter(|d| covers(profile, &d.info))
            .map(|d| device_record(&d.info))
            .collect(),
        outcomes: Vec::new(),
        summary: Summary {
            selected,
            ..Summary::default()
        },
        conformance: hilt_results::Conformance {
            conformant: false,
            status: hilt_results::ConformanceStatus::Incomplete,
            reasons: vec!["the run has not finished".into()],
        },
        signing: None,
    }
}

/// The sha256 of the running executable, so the record names the exact build. On Linux
/// the running image itself is read (`/proc/self/exe`), even if its file was replaced.
fn executable_sha256() -> Option<String> {
    let mut file = match std::fs::File::open("/proc/self/exe") {
        Ok(f) => f,
        Err(_) => std::fs::File::open(std::env::current_exe().ok()?).ok()?,
    };
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(crate::hex(&hasher.finalize()))
}

/// The record's view of a device.
pub fn device_record(info: &DeviceInfo) -> hilt_results::Device {
    let mut facts = info.facts.clone();
    // Host and PCI-only devices have no memory or compute units hilt can know.
    if info.backend != HOST_BACKEND && info.backend != crate::pci::BACKEND {
        facts.insert("global_mem_bytes".into(), info.global_mem_bytes.into());
        facts.insert("local_mem_bytes".into(), info.local_mem_bytes.into());
        facts.insert("compute_units".into(), info.compute_units.into());
    }
    hilt_results::Device {
        id: info.id.clone(),
        backend: info.backend.clone(),
        name: info.name.clone(),
        vendor: info.vendor.clone(),
        pci_address: info.pci_address.clone(),
        simulated: info.simulated,
        facts,
    }
}
