//! Planning and running: profile × devices × checks becomes libtest-mimic trials.
//!
//! Each trial is named `suite::check::device` (the check id's dots become `::`), so
//! `--list`, `--exact`, name filters, `--skip` and `--format terse` behave as they do for
//! `cargo test`; `--list` shows each trial's level and tiers in brackets, as libtest-mimic
//! shows a trial's kind. Trials on one device never overlap unless the check declares that
//! it may share the device. Every finished trial is recorded as it finishes (see
//! [`crate::record`]), into a folder of its own under the output directory
//! ([`RunDir`]). What libtest-mimic prints for a trial follows
//! [`crate::record::standing`]: a pass is `ok`, whatever keeps the run from being
//! conformant is `FAILED`, everything else is `ignored` with its verdict, level and reason.
//!
//! A run asked to stop ([`crate::interrupt`]) starts no further trial; trials that were
//! running are not recorded (their tenants were stopped, so what they found is not
//! evidence), and the run ends with the record, reports and envelope of what ran.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
use crate::record::{
    Coverage, ENVELOPE_FILE, EnvelopeFile, Event, EventsFile, Recorder, Reporter, ReporterFailure, ResultFile,
    Standing, standing,
};
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

/// The trials `profile` asks for in `tier` that cannot run: device checks on matched
/// devices that no tenant can open (a replayed capture's functions, an accelerator no
/// backend of this build drives), in check-id then device order, each with why.
pub fn not_runnable(
    profile: &Profile,
    tier: Tier,
    devices: &[Arc<TrialDevice>],
    catalogue: &Catalogue,
    host: &HostFs,
) -> Vec<hilt_results::NotRun> {
    let mut list = Vec::new();
    for (id, settings) in profile.checks_in(tier) {
        let Some(check) = catalogue.get(id) else {
            continue;
        };
        if check.scope != crate::check::Scope::Device {
            continue;
        }
        for device in devices.iter().filter(|d| {
            d.info.backend != HOST_BACKEND && !d.info.simulated && !d.spec.openable() && covers(profile, &d.info)
        }) {
            let reason = if host.is_live() {
                format!(
                    "{} is an accelerator no backend of this run opens (no driver or runtime for it here), so no \
                     tenant can run on it",
                    device.info.id
                )
            } else {
                format!(
                    "{} is a PCI function of the replayed capture {}: a capture holds the host's files, not the \
                     accelerator, so no tenant can run on it",
                    device.info.id,
                    host.root().display()
                )
            };
            list.push(hilt_results::NotRun {
                trial: check.trial_name(&device.info.id),
                check: check.id.into(),
                device: device.info.id.clone(),
                level: settings.level,
                reason,
            });
        }
    }
    list
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
    /// The output directory: the run writes `result.json`, `result.dsse.json` and
    /// `events.jsonl` into a folder of its own inside it ([`RunDir`]); `None` records
    /// nothing.
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
    /// How many accelerators the run must examine (`--expect-devices`, the profile's
    /// `expect_devices`), recorded.
    pub expected_devices: Option<u32>,
    /// What the run cannot examine, known before it starts: no accelerator (a fallback to
    /// the simulated device), fewer accelerators than expected.
    pub coverage: Coverage,
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
    /// The folder the run wrote, unless it only listed trials.
    pub run_dir: Option<PathBuf>,
    /// The process exit code.
    pub exit: ExitCode,
    /// Reporters that failed (a file that could not be written): the run's verdicts stand,
    /// but a file it was asked for is missing.
    pub failures: Vec<ReporterFailure>,
    /// Why nothing ran, when a device stayed locked by another run (exit 3) or the locks
    /// could not be taken at all (exit 2).
    pub not_run: Option<String>,
}

/// The folder one run writes: `OUT/<UTC start as YYYYMMDDTHHMMSSZ>-<first 8 hex of the run
/// id>/`, created new (never reused), with `OUT/latest` a relative symbolic link to it,
/// replaced atomically when the run starts. While the run writes the folder it holds an
/// exclusive lock on `.hilt.lock` inside it, and removes the file when it ends; a folder
/// whose `.hilt.lock` no process holds was left by a run that was killed outright.
pub struct RunDir {
    /// The run's folder.
    pub path: PathBuf,
    lock: Option<std::fs::File>,
}

/// The name of the link to the newest run's folder, in the output directory.
pub const LATEST: &str = "latest";
/// The name of the lock file a running run holds in its folder.
pub const LOCK_FILE: &str = ".hilt.lock";

impl RunDir {
    /// The folder's name for a run that started at `started_at` (RFC 3339, UTC) with id
    /// `run_id` (hex).
    pub fn name(started_at: &str, run_id: &str) -> String {
        let stamp: String = started_at
            .split('.')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let stamp = stamp.trim_end_matches('Z');
        format!("{stamp}Z-{}", run_id.get(..8).unwrap_or(run_id))
    }

    /// Creates the folder for `record`'s run in `out` (creating `out` if needed), locks
    /// it, and points `out/latest` at it. A `latest` that is not a symbolic link (a file or
    /// folder someone put there) is left as it is, and a link that cannot be made is not
    /// made: the run goes on without it.
    ///
    /// # Errors
    ///
    /// When `out` is not a directory or lies in an earlier run's folder ([`RunDir::within_a_run`]:
    /// nothing is ever written into an earlier run's folder), the folder exists already, or
    /// a file cannot be created. Nothing is left behind then: no folder, no lock.
    pub fn create(out: &Path, record: &ResultRecord) -> std::io::Result<RunDir> {
        if out.exists() && !out.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is a file, not a directory: --out takes a directory, in which each run writes a folder of its \
                 own (give a directory path, or leave --out out for hilt-out)",
                out.display()
            )));
        }
        if let Some(why) = RunDir::within_a_run(out) {
            return Err(std::io::Error::other(why));
        }
        std::fs::create_dir_all(out)?;
        let name = RunDir::name(&record.run.started_at, &record.run.id);
        let path = out.join(&name);
        std::fs::create_dir(&path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot create the run's folder {}: {e}", path.display()),
            )
        })?;
        // From here on a failure removes the folder again (the guard's drop removes the lock).
        let made = (|| {
            let lock = std::fs::File::create(path.join(LOCK_FILE))?;
            lock.try_lock()
                .map_err(|e| std::io::Error::other(format!("cannot lock {}: {e}", path.display())))?;
            Ok::<_, std::io::Error>(RunDir {
                path: path.clone(),
                lock: Some(lock),
            })
        })();
        let dir = match made {
            Ok(dir) => dir,
            Err(e) => {
                let _ = std::fs::remove_file(path.join(LOCK_FILE));
                let _ = std::fs::remove_dir(&path);
                return Err(e);
            }
        };
        let latest = out.join(LATEST);
        if std::fs::symlink_metadata(&latest).is_ok_and(|m| !m.file_type().is_symlink()) {
            return Ok(dir);
        }
        // Replaced by rename, so a reader sees the old link or the new one, never none; the
        // temporary name is the run's own, so runs started together do not collide.
        let tmp = out.join(format!(".{LATEST}.{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        // A file system without symbolic links (a FAT stick a lab exports to) costs the link,
        // never the run: `hilt run` says at the end where `latest` stands.
        let linked = std::os::unix::fs::symlink(&name, &tmp).and_then(|()| std::fs::rename(&tmp, &latest));
        if linked.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(dir)
    }

    /// Why `out` cannot hold runs' folders: it is, or lies inside, the folder of an earlier
    /// run (`--out hilt-out/latest`), into which nothing is ever written. `None` when it
    /// can. A run's folder is one named as [`RunDir::name`] names them that holds a run's
    /// files.
    pub fn within_a_run(out: &Path) -> Option<String> {
        // The nearest part of the path that exists, with links (`latest`) resolved.
        let existing = out.ancestors().find(|a| a.exists())?;
        let real = std::fs::canonicalize(existing).ok()?;
        let run = real.ancestors().find(|a| {
            a.file_name().and_then(|n| n.to_str()).is_some_and(RunDir::is_name)
                && ["result.json", "events.jsonl", LOCK_FILE]
                    .iter()
                    .any(|f| a.join(f).exists())
        })?;
        let holder = run.parent().unwrap_or(run);
        Some(format!(
            "--out {} is (or lies inside) the folder of an earlier run, {}, and nothing is ever written into an \
             earlier run's folder: give the directory that holds the runs' folders (--out {}), or another",
            out.display(),
            run.display(),
            holder.display()
        ))
    }

    /// Whether `name` is a run folder's name: `YYYYMMDDTHHMMSSZ-` and 8 hex digits.
    fn is_name(name: &str) -> bool {
        let b = name.as_bytes();
        b.len() == 25
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && &b[15..17] == b"Z-"
            && b[17..].iter().all(u8::is_ascii_hexdigit)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
            drop(lock);
        }
    }
}

/// Plans and runs the trials with libtest-mimic `args`, recording as it goes.
///
/// # Errors
///
/// When the run's folder cannot be made or its evidence files cannot be created; nothing
/// has run then.
pub fn execute(mut setup: RunSetup, catalogue: &Catalogue, args: &Arguments) -> std::io::Result<RunEnd> {
    let planned = plan(&setup.profile, setup.tier, &setup.devices, catalogue);
    let not_run: Vec<hilt_results::NotRun> =
        not_runnable(&setup.profile, setup.tier, &setup.devices, catalogue, &setup.host)
            .into_iter()
            .filter(|n| !args.is_filtered_out(&Trial::test(n.trial.clone(), || Ok(()))))
            .collect();
    if args.list {
        list(&planned, &not_run, args);
        return Ok(RunEnd {
            record: None,
            run_dir: None,
            exit: ExitCode::Conformant,
            failures: Vec::new(),
            not_run: None,
        });
    }

    let selected: Vec<bool> = planned.iter().map(|p| selects(args, &p.name)).collect();
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
                        run_dir: None,
                        exit,
                        failures: Vec::new(),
                        not_run: Some(e.to_string()),
                    });
                }
            }
        }
    };
    let selected_names: Vec<String> = planned
        .iter()
        .zip(&selected)
        .filter(|(_, s)| **s)
        .map(|(p, _)| p.name.clone())
        .collect();
    let mut header = header(&setup, node, &planned, filtered.then_some(&selected_names));
    header.run.not_run = not_run;
    setup.coverage.not_run_mandatory = Coverage::mandatory_not_run(&header.run);
    // Filters, overridden settings that change the checks, planted faults and trials that
    // could not run, as the record tells them, so that readers of the record derive the
    // same.
    let partial = hilt_results::partial_reasons(&header.run, header.summary.selected);
    let could_not_run = header.run.not_run.clone();
    let signer = setup.signer.take();
    if let Some(RunSigner::Development(key)) = &signer {
        header.signing = Some(key.development_note());
    }
    let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
    let mut run_dir = None;
    if let Some(out) = &setup.out_dir {
        let dir = RunDir::create(out, &header)?;
        reporters.push(Box::new(EventsFile::create(&dir.path)?));
        reporters.push(Box::new(ResultFile::new(&dir.path)));
        if let Some(RunSigner::Key(key) | RunSigner::Development(key)) = signer {
            reporters.push(Box::new(EnvelopeFile::new(dir.path.join(ENVELOPE_FILE), key)));
        }
        run_dir = Some(dir);
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

    let run = RunSettings {
        tier: setup.tier,
        leak_target: setup.profile.leak_target,
        host: setup.host.clone(),
    };
    // The filters were applied above (`selected`); libtest-mimic leaves out, and counts as
    // filtered out, exactly the trials marked as such, so that the entry below is never
    // filtered away with them.
    let mut trials: Vec<Trial> = planned
        .into_iter()
        .zip(&selected)
        .enumerate()
        .map(|(index, (p, &chosen))| {
            if !chosen {
                return Trial::test(p.name.clone(), || Ok(())).with_kind(FILTERED_OUT);
            }
            let recorder = Arc::clone(&recorder);
            let launcher = Arc::clone(&launcher);
            let run = run.clone();
            let lock = locks.get(&p.device.info.id).cloned().unwrap_or_default();
            let key = run_key.derive(index as u64);
            let name = p.name.clone();
            Trial::ignorable_test(name, move || run_trial(&p, key, &launcher, &run, &lock, &recorder))
        })
        .collect();
    // Trials the profile asked for that no tenant could run (a replayed capture's
    // accelerators) are in the terminal as JUnit has them: in the certification tier a
    // mandatory one fails, as it leaves the run inconclusive; otherwise ignored, with why.
    let tier = setup.tier;
    trials.extend(could_not_run.into_iter().map(|n| {
        let blocks = n.blocks(tier);
        let reason = n.reason;
        if blocks {
            Trial::test(n.trial, move || {
                Err(
                    format!("NOT RUN: {reason}; a mandatory check that did not run leaves the certification unsettled")
                        .into(),
                )
            })
        } else {
            Trial::ignorable_test(n.trial, move || {
                Ok(Completion::ignored_with(format!("not run: {reason}")))
            })
        }
    }));
    // Accelerators that should have been examined and were not fail an entry of their own,
    // filters or not, so that the terminal's line is not `ok` when the exit status is not 0.
    if let Some(why) = setup
        .coverage
        .no_accelerator
        .as_ref()
        .map(|w| format!("no accelerator was examined: {w}"))
        .or_else(|| setup.coverage.missing_devices.clone())
    {
        trials.insert(
            0,
            Trial::test(crate::record::SHORTFALL_TRIAL, move || {
                Err(format!("NOT EXAMINED: {why}").into())
            }),
        );
    }
    let marked = Arguments {
        filter: None,
        exact: false,
        skip: vec![format!("[{FILTERED_OUT}] ")],
        ..args.clone()
    };
    let _conclusion = libtest_mimic::run(&marked, trials);

    let recorder = Arc::try_unwrap(recorder)
        .map_err(|_| std::io::Error::other("a trial outlived the run"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let not_run: Vec<String> = selected_names
        .into_iter()
        .filter(|t| !recorder.record().outcomes.iter().any(|o| o.trial == *t))
        .collect();
    let (record, exit, failures) = match crate::interrupt::requested() {
        Some(signal) if !not_run.is_empty() => recorder.interrupt(signal, not_run, &setup.coverage),
        _ => recorder.finish(partial, &setup.coverage),
    };
    let path = run_dir.as_ref().map(|d| d.path.clone());
    // Dropping the folder's guard removes its lock file: the run is over.
    drop(run_dir);
    Ok(RunEnd {
        record: Some(record),
        run_dir: path,
        exit,
        failures,
        not_run: None,
    })
}

/// The kind of a trial the filters left out: libtest-mimic is told to skip this kind, and
/// counts those trials as filtered out. No trial name holds `[`, so nothing else matches.
const FILTERED_OUT: &str = "filtered out by hilt";

/// Whether libtest-mimic `args` select the trial `name`: by its name alone, as `cargo
/// test` filters.
fn selects(args: &Arguments, name: &str) -> bool {
    let probe = Trial::test(name, || Ok(()));
    !args.is_filtered_out(&probe) && !args.is_ignored(&probe)
}

/// `--list`: the selected trials, each with its level and the tiers its check runs in, as
/// libtest-mimic shows a trial's kind (`[mandatory; smoke standard certification]
/// residue::global::cross_process::sim0: test`). Filters match names only, as in a run.
/// The trials the run could not run (`not_run`, already filtered: a replayed capture's
/// device checks) follow, as the run shows them: `[mandatory; could not run] ...`.
fn list(planned: &[PlannedTrial], not_run: &[hilt_results::NotRun], args: &Arguments) {
    let trials =
        planned
            .iter()
            .filter(|p| selects(args, &p.name))
            .map(|p| {
                let tiers: Vec<&str> = p.settings.tiers.iter().map(|t| t.as_str()).collect();
                Trial::test(p.name.clone(), || Ok(())).with_kind(format!(
                    "{}; {}",
                    p.settings.level.as_str(),
                    tiers.join(" ")
                ))
            })
            .chain(not_run.iter().map(|n| {
                Trial::test(n.trial.clone(), || Ok(())).with_kind(format!("{}; could not run", n.level.as_str()))
            }))
            .collect();
    let unfiltered = Arguments {
        filter: None,
        skip: Vec::new(),
        exact: false,
        ..args.clone()
    };
    let _ = libtest_mimic::run(&unfiltered, trials);
}

/// What every trial of a run shares.
#[derive(Clone)]
struct RunSettings {
    tier: Tier,
    leak_target: crate::confidence::LeakTarget,
    host: HostFs,
}

fn run_trial(
    p: &PlannedTrial,
    key: CanaryKey,
    launcher: &TenantLauncher,
    run: &RunSettings,
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
    if let Some(signal) = crate::interrupt::requested() {
        return Err(not_run(signal));
    }
    let started_at = crate::host::rfc3339(SystemTime::now());
    lock(recorder).emit(Event::TrialStarted {
        trial: p.name.clone(),
        at: started_at.clone(),
    });
    let start = Instant::now();
    let mut ctx = CheckCtx::new(&p.device, key, &p.settings.params, launcher)
        .with_host(run.host.clone())
        .with_run(run.tier, run.leak_target);
    // How tenants share the device is evidence for every residue and isolation verdict
    // on it: the same check means something else under MPS than under MIG, or on an
    // AMD GPU split into partitions than on a whole one.
    if p.check.scope != crate::check::Scope::Host
        && matches!(p.check.suite(), "residue" | "isolation")
        && let Some(mode) = p.device.info.facts.get("sharing_mode")
    {
        ctx.evidence("sharing_mode", mode.clone());
    }
    // Other processes on the device are evidence, and spoil a performance figure.
    let watch = (p.check.scope == crate::check::Scope::Device)
        .then(|| crate::device_users::Watch::start(&run.host, &p.device.info));
    let check = p.check.run;
    // A panicking check is a harness bug: record it as an error, never lose the trial.
    let finding = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut ctx))).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        Finding::Error(format!("the check panicked: {msg}"))
    });
    let performance = p.check.suite() == "performance";
    let finding = match watch {
        Some(watch) => watch.finish(&run.host, &p.device.info, performance, &mut ctx, finding),
        None => finding,
    };
    // A trial during which the run was asked to stop had its tenants stopped: whatever
    // it found is not evidence, so it is not recorded and counts as not run.
    if let Some(signal) = crate::interrupt::requested() {
        return Err(not_run(signal));
    }
    let mut not_examined = None;
    let (verdict, reason) = match finding {
        Finding::Pass => (Verdict::Pass, None),
        Finding::Fail(r) => (Verdict::Fail, Some(r)),
        Finding::NotApplicable(r) => (Verdict::NotApplicable, Some(r)),
        Finding::NotExamined { reason, examined_by } => {
            not_examined = Some(hilt_results::NotExamined {
                backend: p.device.info.backend.clone(),
                examined_by,
            });
            (Verdict::NotApplicable, Some(reason))
        }
        Finding::Inconclusive(r) => (Verdict::Inconclusive, Some(r)),
        Finding::Error(r) => (Verdict::Error, Some(r)),
    };
    let as_recorded = |w: &crate::profile::Waiver| hilt_results::Waiver {
        reason: w.reason.clone(),
        expires: w.expires.to_string(),
    };
    // An expired waiver waives nothing; the outcome names it.
    let (waiver, expired_waiver) = match (&p.settings.waiver, verdict) {
        (Some(w), Verdict::Fail) if w.expired => (None, Some(as_recorded(w))),
        (Some(w), Verdict::Fail) => (Some(as_recorded(w)), None),
        _ => (None, None),
    };
    let outcome = Outcome {
        trial: p.name.clone(),
        check: p.check.id.into(),
        device: p.device.info.id.clone(),
        level: p.settings.level,
        requirements: p.check.requirements.iter().map(|r| (*r).to_string()).collect(),
        verdict,
        reason: reason.clone(),
        waiver,
        expired_waiver,
        not_examined,
        measurements: ctx.measurements,
        evidence: ctx.evidence,
        params: p.settings.params.clone(),
        started_at,
        duration_ms: start.elapsed().as_millis() as u64,
    };
    let shown = standing(&outcome, run.tier);
    lock(recorder).emit(Event::TrialFinished {
        outcome: Box::new(outcome),
    });
    match shown {
        Standing::Passed => Ok(Completion::Completed),
        Standing::Aside(text) => Ok(Completion::ignored_with(text)),
        Standing::Blocks { kind, detail, .. } => {
            Err(format!("{}: {detail}", kind.replace('_', " ").to_ascii_uppercase()).into())
        }
    }
}

/// What libtest-mimic shows for a trial the run did not get to: a failure, so that its
/// line and the exit status agree that the run did not finish.
fn not_run(signal: crate::interrupt::Signal) -> Failed {
    format!(
        "NOT RUN: the run was interrupted by {} before this trial finished",
        signal.name()
    )
    .into()
}

fn lock(recorder: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(|e| e.into_inner())
}

/// The record before any trial ran; `selected` names the trials filters selected, when
/// they left any out.
fn header(setup: &RunSetup, node: String, planned: &[PlannedTrial], selected: Option<&Vec<String>>) -> ResultRecord {
    let filtered = selected.is_some();
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
            selected: selected.cloned().unwrap_or_default(),
            sim_faults: setup.sim_faults.clone(),
            overrides: setup.overrides.clone(),
            expected_devices: setup.expected_devices,
            no_accelerator: setup.coverage.no_accelerator.clone(),
            interrupted: None,
            replay: setup.host.replay_identity().map(|id| hilt_results::Replay {
                captured_at: id.captured_at,
                source_root: id.source_root,
                manifest_sha256: id.manifest_sha256,
                tree_sha256: id.tree_sha256,
            }),
            not_run: Vec::new(),
        },
        host: {
            let facts = crate::host::host_facts();
            hilt_results::Host {
                node: Some(node),
                // A replay stands for the captured machine, not for the one replaying it.
                machine: facts.machine.filter(|_| setup.host.is_live()),
                ..facts
            }
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
            expired_waivers: profile
                .expired_waivers()
                .map(|(check, w)| hilt_results::ExpiredWaiver {
                    check: check.to_string(),
                    reason: w.reason.clone(),
                    expires: w.expires.to_string(),
                })
                .collect(),
        },
        devices: setup
            .devices
            .iter()
            .filter(|d| covers(profile, &d.info))
            .map(|d| device_record(&d.info))
            .collect(),
        outcomes: Vec::new(),
        summary: Summary {
            selected: selected.map_or(planned.len(), Vec::len) as u32,
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
