//! `hilt run`: discover the devices, choose the profile, run its trials, record, sign and
//! report the result.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use hilt_harness::accel::sim::{self, SimKnobs};
use hilt_harness::check::{self, Catalogue, TrialDevice};
use hilt_harness::devlock;
use hilt_harness::discovery::{self, Discovery};
use hilt_harness::host::Date;
use hilt_harness::hostfs::HostFs;
use hilt_harness::profile::{Library, Profile};
use hilt_harness::record::{Coverage, ReporterKind, Tally};
use hilt_harness::runner::{self, RunSetup};
use hilt_harness::tenant::TenantLauncher;
use hilt_results::{ConformanceStatus, ResultRecord, Tier};

use crate::cmd::terminal::{StdoutShield, say};
use crate::cmd::{files, host_fs};

/// How libtest-mimic prints the trials (`--format`). hilt's own enum, so that `hilt run
/// --help` shows hilt's words for each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TermFormat {
    /// One line per trial, with its verdict (the default).
    Pretty,
    /// One character per trial: useful for runs with many trials.
    Terse,
    /// libtest's JSON lines, one per event.
    Json,
}

impl TermFormat {
    fn libtest(self) -> libtest_mimic::FormatSetting {
        match self {
            TermFormat::Pretty => libtest_mimic::FormatSetting::Pretty,
            TermFormat::Terse => libtest_mimic::FormatSetting::Terse,
            TermFormat::Json => libtest_mimic::FormatSetting::Json,
        }
    }
}

/// Whether the trial lines are coloured (`--color`); hilt's own enum, as [`TermFormat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TermColor {
    /// Colour when standard output is a terminal (the default).
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl TermColor {
    fn libtest(self) -> libtest_mimic::ColorSetting {
        match self {
            TermColor::Auto => libtest_mimic::ColorSetting::Auto,
            TermColor::Always => libtest_mimic::ColorSetting::Always,
            TermColor::Never => libtest_mimic::ColorSetting::Never,
        }
    }
}

/// `hilt run` arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Profile id or path to a profile file; default: the profile that fits the devices
    /// here (`hilt profiles`). Pin it in CI, with --expect-devices.
    #[arg(long)]
    profile: Option<String>,
    /// Tier: smoke, standard or certification; default: the profile's.
    #[arg(long)]
    tier: Option<Tier>,
    /// Only devices whose id or backend is this (`cuda0`, `opencl`); `sim0` asks for the
    /// simulated device (as do `HILT_BACKENDS=sim`, `--profile sim-reference`, sim faults
    /// and knobs): without such a request it only stands in when no accelerator is found,
    /// and that run exits 3.
    #[arg(long)]
    device: Option<String>,
    /// The number of accelerators this node must have; fewer examined makes the run
    /// inconclusive (exit 3), naming what is missing. Overrides the profile's
    /// `expect_devices`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    expect_devices: Option<u32>,
    /// Drive hardware that several backends see through this one (`vulkan`); default: the
    /// backend the profile's match rules name, else CUDA, then OpenCL, then Vulkan.
    #[arg(long, value_name = "BACKEND", env = "HILT_BACKEND")]
    backend: Option<String>,
    /// Read the host's files (sysfs, /proc, /dev, /etc) under this root instead of `/`:
    /// a fixture tree or an unpacked `hilt capture`.
    #[arg(long, value_name = "DIR", env = "HILT_SYSFS_ROOT")]
    sysfs_root: Option<PathBuf>,
    /// The output directory: each run writes a folder of its own in it,
    /// `<UTC start as YYYYMMDDTHHMMSSZ>-<first 8 hex of the run id>/`, holding result.json,
    /// result.dsse.json and events.jsonl, and points `DIR/latest` at it. Nothing an earlier
    /// run wrote is touched.
    #[arg(long, value_name = "DIR", default_value = "hilt-out")]
    out: PathBuf,
    /// Also write the result as JUnit XML here when the run finishes.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Also write the result as one self-contained HTML page here when the run finishes.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
    /// Also write a Markdown summary here when the run finishes (`$GITHUB_STEP_SUMMARY`).
    #[arg(long, value_name = "PATH")]
    markdown: Option<PathBuf>,
    /// Sign the result with this private key (PKCS#8 PEM, mode 0600, from `hilt keygen`);
    /// without one, a one-off key signs it and the result is development-only.
    #[arg(long, value_name = "PATH", env = "HILT_SIGN_KEY", hide_env_values = true)]
    sign_key: Option<PathBuf>,
    /// Plant a sim fault for this run (repeatable); see `hilt checks`.
    #[arg(long = "sim-fault", value_name = "NAME")]
    sim_faults: Vec<String>,
    /// Set a sim knob for this run, overriding the profile (repeatable): `scrub=never`.
    #[arg(long = "sim-knob", value_name = "KEY=VALUE")]
    sim_knobs: Vec<String>,
    /// The watchdog deadline of each tenant call, seconds (1 to 86400); default: the profile's.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    tenant_timeout: Option<u64>,
    /// Run only trials whose name contains this (`residue::global`), as with `cargo test`.
    #[arg(value_name = "FILTER")]
    filter: Option<String>,
    /// Match FILTER (and --skip) against whole trial names.
    #[arg(long)]
    exact: bool,
    /// Leave out trials whose name contains this (repeatable).
    #[arg(long, value_name = "FILTER")]
    skip: Vec<String>,
    /// List the planned trials and run nothing.
    #[arg(long)]
    list: bool,
    /// Terminal output: pretty, terse or json.
    #[arg(long, value_enum)]
    format: Option<TermFormat>,
    /// Trials to run at once (devices still run one exclusive trial at a time).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    test_threads: Option<u32>,
    /// Terse output, one character per trial.
    #[arg(short, long)]
    quiet: bool,
    /// Colour: auto, always or never.
    #[arg(long, value_enum)]
    color: Option<TermColor>,
    /// The node this run stands for in a fleet report; default: the host name, or for a
    /// replay (`--sysfs-root`) `replay-` and the start of the tree's sha256. Under Slurm
    /// pass `$SLURMD_NODENAME`, in a Kubernetes pod the node name from the downward API
    /// (the pod's host name is the pod's).
    #[arg(long, value_name = "NAME", env = "HILT_NODE", value_parser = node_name)]
    node: Option<String>,
    /// How long to wait for a device that another hilt run on this node holds, seconds;
    /// then nothing runs and hilt exits 3. Locks live in /run/lock, or in HILT_LOCK_DIR.
    #[arg(long, value_name = "SECS", env = "HILT_LOCK_TIMEOUT", default_value_t = devlock::DEFAULT_TIMEOUT_S,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    lock_timeout: u64,
}

/// The node a run stands for: `--node` (or `HILT_NODE`) when given; for a replayed
/// capture without one, `replay-` and the first 12 hex digits of the tree's sha256 (of its
/// manifest's where the tree is too large to digest), since the machine that replays is
/// not the node the capture came from, and two captures replayed on one machine must not
/// become one node in `hilt fleet`; otherwise `None`, the host name.
fn replay_node(given: Option<&str>, host: &HostFs, listing: bool) -> Option<String> {
    if given.is_some() || host.is_live() {
        return given.map(str::to_string);
    }
    let id = host.replay_identity()?;
    let digest = id.tree_sha256.or(id.manifest_sha256)?;
    let node = format!("replay-{}", &digest[..12.min(digest.len())]);
    if !listing {
        say!(
            "hilt: the replay is recorded as node {node}, not as this machine (`--node NAME` names the node the \
             capture came from)"
        );
    }
    Some(node)
}

/// A node name, as `hilt fleet` reads them back (`report::fleet::valid_node_name`): it
/// names a directory in fleet layouts.
fn node_name(text: &str) -> Result<String, String> {
    if hilt_harness::report::fleet::valid_node_name(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{}` is not a node name: 1 to 253 letters, digits, `.`, `-` and `_`, not starting with `.`",
            text.escape_debug()
        ))
    }
}

/// `hilt run`.
pub fn run(args: RunArgs, catalogue: &Catalogue) -> anyhow::Result<u8> {
    let test_args = libtest_mimic::Arguments {
        filter: args.filter.clone(),
        exact: args.exact,
        skip: args.skip.clone(),
        list: args.list,
        format: args.format.map(TermFormat::libtest),
        test_threads: args.test_threads.map(|n| n as usize),
        quiet: args.quiet,
        // Behind the shield (below) libtest-mimic would see a pipe: `auto` is decided on
        // the real standard output first.
        color: Some(match args.color {
            None | Some(TermColor::Auto) if StdoutShield::colour_auto() => libtest_mimic::ColorSetting::Always,
            None | Some(TermColor::Auto) => libtest_mimic::ColorSetting::Never,
            Some(c) => c.libtest(),
        }),
        ..libtest_mimic::Arguments::default()
    };
    let listing = test_args.list;
    if !listing {
        check_outputs(&args)?;
    }
    let host = host_fs(args.sysfs_root.as_deref())?;
    let Discovery { devices: real, notes } =
        discovery::discover_for_run(args.backend.as_deref(), args.profile.as_deref(), catalogue)?;
    // Under a replayed root the run is about the captured machine: its accelerator
    // functions are the subjects, and live devices only when `--device` names them.
    let (real, left_out) = discovery::live_subjects(real, &host, args.device.as_deref());
    left_out.iter().for_each(|note| say!("hilt: {note}"));
    // Nothing to examine: no live device and no accelerator in a replayed tree.
    let nothing_here = discovery::nothing_to_examine(&real, &host);
    let today = Date::today();
    let given = match &args.profile {
        Some(spec) => Some(Library::standard().load(spec, catalogue, today)?),
        None => None,
    };
    // The simulated device runs green only when asked for: by `--device sim0`,
    // `HILT_BACKENDS=sim`, a profile made for it (`sim-reference`), or sim faults and
    // knobs. Otherwise it stands in for accelerators that are not there, and says so.
    let sim_by_device = args.device.as_deref().is_some_and(|d| d.starts_with("sim"));
    let sim_by_tuning = !args.sim_faults.is_empty() || !args.sim_knobs.is_empty();
    let sim_by_profile = given.as_ref().is_some_and(|p| p.matches(&discovery::sim_info()));
    let sim_by_env = discovery::sim_named_by_env();
    let sim_asked = sim_by_device || sim_by_tuning || sim_by_profile || sim_by_env;
    if real.is_empty()
        && !sim_asked
        && let Some(sel) = args.device.as_deref().filter(|d| discovery::names_real_device(d))
    {
        return refuse(format!(
            "no device here is `{sel}`: no accelerator was found ({}); nothing ran. `hilt devices` lists what \
             hilt finds here",
            notes.join("; ")
        ));
    }
    let fallback = nothing_here && !sim_asked;
    let wants_sim = sim_by_device || sim_by_tuning || sim_by_profile || discovery::sim_requested() || nothing_here;
    let profile = match given {
        Some(p) => p,
        None => {
            let spec = if wants_sim {
                "sim-reference".to_string()
            } else {
                let subjects = discovery::profile_subjects(&real, &host);
                // A device that is not here chooses no profile: say so, not that no profile fits.
                if let Some(sel) = args.device.as_deref()
                    && !subjects.iter().any(|d| d.info.id == sel || d.info.backend == sel)
                {
                    let here: Vec<String> = subjects
                        .iter()
                        .map(|d| format!("{} ({})", d.info.id, d.info.backend))
                        .collect();
                    return no_such_device(sel, &here.join(", "), &notes);
                }
                discovery::default_profile(
                    &Library::standard(),
                    catalogue,
                    &subjects,
                    args.device.as_deref(),
                    today,
                )?
            };
            Library::standard().load(&spec, catalogue, today)?
        }
    };
    let tier = args.tier.unwrap_or(profile.default_tier);

    let sim_device = if wants_sim {
        let knobs = sim_knobs(&profile, &args.sim_knobs, &args.sim_faults)?;
        Some(runner::make_sim_device("sim0", knobs)?)
    } else {
        None
    };
    // With sim faults or knobs, the run is about the sim alone.
    let mut devices: Vec<Arc<TrialDevice>> = if sim_by_tuning {
        Vec::new()
    } else {
        real.into_iter()
            .map(|d| Arc::new(discovery::unjoined(d, &host)))
            .collect()
    };
    devices.extend(sim_device.as_ref().map(|s| Arc::new(s.device.clone())));
    let pci_only = discovery::pci_only_devices(&host, &devices);
    for warning in &pci_only.warnings {
        say!("hilt: warning: {warning}");
    }
    devices.extend(pci_only.devices.into_iter().map(Arc::new));
    let mut host_device = check::host_device();
    if !host.is_live() {
        // The host checks read the captured machine's files, not this one's.
        host_device.info.name = format!("the captured host, replayed from {}", host.root().display());
    }
    devices.push(Arc::new(host_device));
    if let Some(sel) = &args.device {
        let here = describe_devices(&devices);
        // The host stays: host checks run whichever device is selected.
        devices.retain(|d| d.info.id == *sel || d.info.backend == *sel || d.info.backend == check::HOST_BACKEND);
        if devices.iter().all(|d| d.info.backend == check::HOST_BACKEND) {
            return no_such_device(sel, &here, &notes);
        }
    }
    let matched: Vec<&str> = devices
        .iter()
        .filter(|d| profile.matches(&d.info))
        .map(|d| d.info.id.as_str())
        .collect();
    if matched.is_empty() {
        let expected = args.expect_devices.or(profile.expect_devices);
        let message = format!(
            "profile `{}` matches none of the devices here: {}{}{}; `hilt profiles` shows which profile matches \
             which device",
            profile.id,
            describe_devices(&devices),
            match expected {
                Some(n) => format!("; expected {n} accelerator(s), examined 0"),
                None => String::new(),
            },
            match (fallback, notes.is_empty()) {
                (true, _) => format!("; no accelerator was found: {}", notes.join("; ")),
                (false, false) => format!("; the backends said: {}", notes.join("; ")),
                (false, true) => String::new(),
            }
        );
        // A pinned hardware profile on a node whose accelerators are gone is the node's
        // fault, not the command's: exit 3, as for a run that examined no accelerator or
        // fewer than it was told to expect.
        if fallback || expected.is_some() {
            return refuse(message);
        }
        bail!("{message}");
    }

    let pci_functions: Vec<&hilt_harness::accel::DeviceInfo> = devices
        .iter()
        .filter(|d| d.info.backend == hilt_harness::pci::BACKEND)
        .map(|d| &d.info)
        .collect();
    let examined = discovery::examined(&devices, &profile);
    let no_accelerator = fallback.then(|| {
        let mut why = format!("the backends of this build found none ({})", notes.join("; "));
        if !pci_functions.is_empty() {
            let functions: Vec<String> = pci_functions.iter().map(|d| discovery::describe_function(d)).collect();
            why.push_str(&format!(
                "; accelerator PCI functions that no backend drives: {}",
                functions.join("; ")
            ));
        }
        why
    });
    let expected_devices = args.expect_devices.or(profile.expect_devices);
    let missing = expected_devices.and_then(|n| {
        // The simulated device stands in for nothing: only an explicit sim run counts it.
        let counted: Vec<&hilt_harness::accel::DeviceInfo> =
            examined.iter().copied().filter(|d| !d.simulated || sim_asked).collect();
        discovery::missing_devices(n, &counted, &pci_functions, &notes)
    });
    if !listing {
        say_what_runs(&args, &profile, tier, no_accelerator.as_deref(), sim_asked, &devices);
        if let Some(m) = &missing {
            say!("hilt: warning: {m}; the run will be inconclusive (exit status 3)");
        }
        for (check, waiver) in profile.expired_waivers() {
            say!(
                "hilt: warning: the waiver of `{check}` in profile {} expired on {} ({}); it no longer waives: a \
                 failure of `{check}` counts. Renew it with a new date and reason, or remove it",
                profile.id,
                waiver.expires,
                waiver.reason
            );
        }
    }

    let mut overrides: Vec<String> = args.sim_knobs.iter().map(|k| format!("sim.{}", k.trim())).collect();
    for (var, backend, name) in [
        ("HILT_OPENCL_BUILD_OPTIONS", "opencl", "opencl.build_options"),
        ("HILT_CUDA_NVRTC_OPTIONS", "cuda", "cuda.nvrtc_options"),
        ("HILT_VULKAN_SHARED_BYTES", "vulkan", "vulkan.shared_bytes"),
    ] {
        if let Ok(options) = std::env::var(var)
            && !options.is_empty()
            && devices.iter().any(|d| d.info.backend == backend)
        {
            overrides.push(format!("{name}={options}"));
        }
    }
    if let Some(t) = args.tenant_timeout {
        overrides.push(format!("tenant_timeout_s={t}"));
    }
    // The key is read before anything runs: a refused key must not cost a whole run.
    let signer = if listing {
        None
    } else {
        Some(files::run_signer(args.sign_key.as_deref())?)
    };
    let program = std::env::current_exe().context("cannot find the hilt executable to start tenants")?;
    let timeout = Duration::from_secs(args.tenant_timeout.unwrap_or(profile.tenant_timeout_s).max(1));
    let node = replay_node(args.node.as_deref(), &host, listing);
    let setup = RunSetup {
        profile,
        tier,
        devices,
        host,
        out_dir: (!listing).then(|| args.out.clone()),
        launcher: TenantLauncher {
            program,
            args: vec!["tenant".into()],
            timeout,
        },
        sim_faults: args.sim_faults.clone(),
        overrides,
        signer,
        reporters: if listing {
            Vec::new()
        } else {
            run_reporters(&args, catalogue)
        },
        expected_devices,
        coverage: Coverage {
            no_accelerator,
            missing_devices: missing,
            // Known once the trials are planned (the runner fills it in).
            not_run_mandatory: Vec::new(),
        },
        node,
        locks: Some(devlock::LockSettings::from_env(Duration::from_secs(args.lock_timeout))),
    };
    if !listing {
        // From here on, SIGINT, SIGTERM and SIGHUP stop the run and keep what it found.
        hilt_harness::interrupt::install().context("cannot handle SIGINT, SIGTERM and SIGHUP")?;
    }
    // A reader of the trial lines that goes away (`hilt run | head`) must not end the run
    // before it has written what it found.
    let shield = StdoutShield::install().context("cannot route standard output")?;
    let end = runner::execute(setup, catalogue, &test_args);
    drop(shield);
    let end = end.with_context(|| format!("failed to record the run in {}", args.out.display()))?;
    if let Some(why) = &end.not_run {
        say!("error: {why}");
        return Ok(end.exit.code());
    }
    let (Some(record), Some(dir)) = (&end.record, &end.run_dir) else {
        return Ok(end.exit.code());
    };
    Ok(say_how_it_ended(&args, record, dir, &end))
}

/// An error that is the machine's, not the command's (a named accelerator is not here):
/// said on stderr, exit status 3.
fn refuse(message: String) -> anyhow::Result<u8> {
    say!("error: {message}");
    Ok(hilt_results::ExitCode::Inconclusive.code())
}

/// `--device SEL` names no device here: exit 3 when SEL names a device of a real backend
/// (`cuda0` on a node whose driver is gone: the machine's fault), else a usage error.
fn no_such_device(sel: &str, here: &str, notes: &[String]) -> anyhow::Result<u8> {
    let here = if here.is_empty() { "none" } else { here };
    let message = format!(
        "no device here is `{sel}`; the devices here: {here}{}. `--device` takes a device id or a backend as `hilt \
         devices` lists them; nothing ran",
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        }
    );
    if discovery::names_real_device(sel) {
        return refuse(message);
    }
    bail!("{message}");
}

/// The devices of a run as people read them: `opencl0 (opencl), sim0 (simulated)`.
fn describe_devices(devices: &[Arc<TrialDevice>]) -> String {
    let list: Vec<String> = devices
        .iter()
        .filter(|d| d.info.backend != check::HOST_BACKEND)
        .map(|d| {
            if d.info.simulated {
                format!("{} (simulated)", d.info.id)
            } else if !d.spec.openable() {
                format!("{} (a PCI function no backend drives)", d.info.id)
            } else {
                format!("{} ({})", d.info.id, d.info.backend)
            }
        })
        .collect();
    if list.is_empty() {
        "none but the host itself".into()
    } else {
        list.join(", ")
    }
}

/// Refuses, before anything runs, outputs that cannot be written: `--out` naming a file or
/// an earlier run's folder (or a path inside one), a report whose directory does not exist
/// or whose path is a directory.
fn check_outputs(args: &RunArgs) -> anyhow::Result<()> {
    if let Some(why) = runner::RunDir::within_a_run(&args.out) {
        bail!("{why}");
    }
    if args.out.exists() && !args.out.is_dir() {
        bail!(
            "--out {} names a file; --out takes a directory, in which each run writes a folder of its own \
             (<UTC start>-<run id>/ with result.json, result.dsse.json and events.jsonl) and a `latest` link to \
             the newest. Give a directory (it is created if missing), or leave --out out for hilt-out",
            args.out.display()
        );
    }
    for (flag, path) in [
        ("--junit", &args.junit),
        ("--html", &args.html),
        ("--markdown", &args.markdown),
    ] {
        let Some(path) = path else {
            continue;
        };
        if path.is_dir() {
            bail!(
                "{flag} {} is a directory; give the path of the file to write",
                path.display()
            );
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        if !parent.is_dir() {
            bail!(
                "{flag} {}: the directory {} does not exist; create it first, or give a path in an existing \
                 directory (nothing ran)",
                path.display(),
                parent.display()
            );
        }
    }
    // Two reports into one file would leave only the last (or a mix): one would be lost.
    let mut seen: Vec<(&str, &std::path::Path, PathBuf)> = Vec::new();
    for (flag, path) in [
        ("--junit", &args.junit),
        ("--html", &args.html),
        ("--markdown", &args.markdown),
    ] {
        let Some(path) = path else {
            continue;
        };
        let key = same_file_key(path);
        if let Some((other, other_path, _)) = seen.iter().find(|(_, _, k)| *k == key) {
            bail!(
                "{other} {} and {flag} {} name the same file: one report would overwrite the other; give each \
                 report its own path (nothing ran)",
                other_path.display(),
                path.display()
            );
        }
        seen.push((flag, path, key));
    }
    Ok(())
}

/// What names one file whatever way the path is written: the directory resolved, then the
/// file name, and the target when the path is a link (`/dev/stdout`).
fn same_file_key(path: &std::path::Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let dir = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
    dir.join(path.file_name().unwrap_or_default())
}

/// What runs, and why, said before the first trial.
fn say_what_runs(
    args: &RunArgs,
    profile: &Profile,
    tier: Tier,
    no_accelerator: Option<&str>,
    sim_asked: bool,
    devices: &[Arc<TrialDevice>],
) {
    if let Some(why) = no_accelerator {
        say!("hilt: no accelerator found: {why}");
        say!(
            "hilt: running the simulated device sim0 under profile {} in its place: this tests hilt itself and \
             examines no accelerator, so the run ends `no_accelerator` with exit status 3 (`--device sim0` asks \
             for the simulated device; then a clean run exits 0)",
            profile.id
        );
    } else if sim_asked && devices.iter().any(|d| d.info.simulated) {
        say!(
            "hilt: running the simulated device sim0 with profile {}, as asked (this tests hilt itself and \
             certifies nothing)",
            profile.id
        );
    } else if args.profile.is_none() {
        say!(
            "hilt: profile {} chosen for the devices here (`--profile` to choose another)",
            profile.id
        );
    }
    if tier == Tier::Certification {
        if !profile.certifying {
            say!(
                "hilt: note: profile {} does not certify: this run checks everything the certification tier holds, \
                 but its result cannot certify a platform (`hilt profiles` shows which profiles certify)",
                profile.id
            );
        } else if devices.iter().any(|d| d.info.simulated && profile.matches(&d.info)) {
            say!("hilt: note: the simulated device never certifies: this certification-tier run tests hilt itself");
        }
    }
}

/// The end of a run in plain words: the status, the counts as libtest counts them, the
/// reasons, where everything went, what failed to be written, and the exit status and why.
fn say_how_it_ended(args: &RunArgs, record: &ResultRecord, dir: &std::path::Path, end: &runner::RunEnd) -> u8 {
    let c = &record.conformance;
    say!(
        "hilt: {}: profile {} tier {}: {}",
        c.status.as_str(),
        record.profile.id,
        record.run.tier,
        Tally::of(record).line()
    );
    for reason in &c.reasons {
        say!("hilt:   {reason}");
    }
    if let Some(note) = hilt_harness::report::replay_note(record) {
        say!("hilt:   {note}");
    }
    let envelope = dir.join(hilt_harness::record::ENVELOPE_FILE);
    let (result, events) = (dir.join("result.json"), dir.join("events.jsonl"));
    let written = |path: &std::path::Path| !end.failures.iter().any(|f| f.name == path.display().to_string());
    // Only what is there is said to be there; the errors below say what is not.
    if written(&result) {
        say!("hilt: result in {} ({})", result.display(), latest_note(&args.out, dir));
    }
    if written(&envelope) {
        let what = if record.run.interrupted.is_some() {
            "the partial record, marked incomplete, "
        } else {
            ""
        };
        if record.signing.is_some() {
            say!(
                "hilt: signed {what}in {} with a one-off key: development only, not attributable (use --sign-key)",
                envelope.display()
            );
        } else {
            say!("hilt: signed {what}in {}", envelope.display());
        }
    }
    let mut code = end.exit;
    for failure in &end.failures {
        let what = match failure.kind {
            ReporterKind::Report => {
                let format = [
                    (&args.junit, "JUnit"),
                    (&args.html, "HTML"),
                    (&args.markdown, "Markdown"),
                ]
                .iter()
                .find(|(p, _)| p.as_ref().is_some_and(|p| p.display().to_string() == failure.name))
                .map_or("the", |(_, f)| *f);
                format!(
                    "the {format} report {} could not be written: {}. The run's record is kept in {}; `hilt report \
                     {} --format {} --out PATH` writes the report again",
                    failure.name,
                    failure.error,
                    dir.join("result.json").display(),
                    dir.join("result.json").display(),
                    format.to_ascii_lowercase()
                )
            }
            _ => format!(
                "{} could not be written: {}; the verdicts stand, but this evidence of the run is missing",
                failure.name, failure.error
            ),
        };
        say!("error: {what}");
    }
    if !end.failures.is_empty() && matches!(code, hilt_results::ExitCode::Conformant) {
        code = hilt_results::ExitCode::Inconclusive;
    }
    if let Some(i) = &record.run.interrupted {
        let mut left = Vec::new();
        if written(&result) {
            left.push(format!("{} (partial, marked incomplete)", result.display()));
        }
        if written(&events) {
            left.push(format!("{} (every event up to the stop)", events.display()));
        }
        if written(&envelope) {
            left.push(format!("{} (signs the partial record)", envelope.display()));
        }
        for path in [&args.junit, &args.html, &args.markdown].into_iter().flatten() {
            if written(path) {
                left.push(format!("{} (trials not run shown as not run)", path.display()));
            }
        }
        say!(
            "hilt: interrupted by {}: {} trial(s) did not run ({}); left {}",
            i.signal,
            i.not_run.len(),
            one_line_list(&i.not_run),
            if left.is_empty() {
                "nothing it could write (see the errors above)".to_string()
            } else {
                left.join(", ")
            }
        );
    }
    let why = match code {
        hilt_results::ExitCode::Conformant if c.status == ConformanceStatus::Partial => {
            "no selected trial kept the run from being conformant (a partial run is never conformant)".to_string()
        }
        hilt_results::ExitCode::Conformant => "conformant".into(),
        hilt_results::ExitCode::NotConformant if c.status == ConformanceStatus::Partial => {
            "a selected mandatory check failed (a partial run says nothing about conformance)".into()
        }
        hilt_results::ExitCode::NotConformant => "not conformant: a mandatory check failed".into(),
        hilt_results::ExitCode::Inconclusive if c.status == ConformanceStatus::NoAccelerator => {
            "no accelerator was examined (the simulated device ran in its place)".into()
        }
        hilt_results::ExitCode::Inconclusive if !end.failures.is_empty() => {
            "a file the run was asked to write could not be written".into()
        }
        hilt_results::ExitCode::Inconclusive => "inconclusive (see the reasons above)".into(),
        hilt_results::ExitCode::Interrupted { .. } => "interrupted".into(),
        _ => String::new(),
    };
    say!("hilt: exit status {}: {why}", code.code());
    code.code()
}

/// Where `OUT/latest` stands for the run in `dir`: pointing to it, taken by a newer run, or
/// left alone (a file or folder someone put there, or a file system without links).
fn latest_note(out: &std::path::Path, dir: &std::path::Path) -> String {
    let latest = out.join(runner::LATEST);
    match std::fs::read_link(&latest) {
        Ok(target) if Some(target.as_os_str()) == dir.file_name() => format!("{} points to it", latest.display()),
        Ok(_) => format!("{} points to a newer run", latest.display()),
        Err(_) if std::fs::symlink_metadata(&latest).is_ok() => format!(
            "{} is not a link hilt made, so it was left as it is and does not point to this run",
            latest.display()
        ),
        Err(_) => format!(
            "{} could not be made here (no symbolic links on this file system?)",
            latest.display()
        ),
    }
}

/// Up to five names, then how many more.
fn one_line_list(names: &[String]) -> String {
    let mut shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = names.len().saturating_sub(5);
    let more_text = format!("and {more} more");
    if more > 0 {
        shown.push(&more_text);
    }
    shown.join(", ")
}

/// The reporters `hilt run`'s options ask for, and progress on a terminal.
fn run_reporters(args: &RunArgs, catalogue: &Catalogue) -> Vec<Box<dyn hilt_harness::record::Reporter>> {
    use hilt_harness::report::{Format, Progress, RunReport};
    let mut list: Vec<Box<dyn hilt_harness::record::Reporter>> = Vec::new();
    for (path, format) in [
        (&args.junit, Format::Junit),
        (&args.html, Format::Html),
        (&args.markdown, Format::Markdown),
    ] {
        if let Some(path) = path {
            list.push(Box::new(RunReport::new(path.clone(), format, catalogue.clone())));
        }
    }
    let quiet = args.quiet || !matches!(args.format, None | Some(TermFormat::Pretty));
    if let Some(progress) = Progress::on_terminal(quiet) {
        list.push(Box::new(progress));
    }
    list
}

/// The profile's sim knobs, then `--sim-knob` overrides, then `--sim-fault`s.
fn sim_knobs(profile: &Profile, overrides: &[String], faults: &[String]) -> anyhow::Result<SimKnobs> {
    let mut table = toml::Table::try_from(&profile.sim).context("sim knobs")?;
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| anyhow!("--sim-knob `{o}` is not KEY=VALUE"))?;
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        table.insert(key.trim().to_string(), value);
    }
    let mut knobs: SimKnobs = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| anyhow!("--sim-knob: {}", e.message().trim_end()))?;
    for name in faults {
        let fault = sim::fault(name).ok_or_else(|| {
            let known: Vec<&str> = sim::FAULTS.iter().map(|f| f.name).collect();
            anyhow!("unknown sim fault `{name}`; known faults: {}", known.join(", "))
        })?;
        (fault.apply)(&mut knobs);
    }
    Ok(knobs)
}
