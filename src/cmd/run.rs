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
use hilt_harness::profile::{Library, Profile};
use hilt_harness::runner::{self, RunSetup};
use hilt_harness::tenant::TenantLauncher;
use hilt_results::Tier;

use crate::cmd::{files, host_fs};

/// `hilt run` arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Profile id or path to a profile file; default: the profile for the devices here
    /// (`sim-reference` when there is no accelerator).
    #[arg(long)]
    profile: Option<String>,
    /// Tier: smoke, standard or certification; default: the profile's.
    #[arg(long)]
    tier: Option<Tier>,
    /// Only devices whose id or backend is this (`sim0`, `sim`).
    #[arg(long)]
    device: Option<String>,
    /// Read the host's files (sysfs, /proc, /dev, /etc) under this root instead of `/`:
    /// a fixture tree or an unpacked `hilt capture`.
    #[arg(long, value_name = "DIR", env = "HILT_SYSFS_ROOT")]
    sysfs_root: Option<PathBuf>,
    /// Where to write result.json, result.dsse.json and events.jsonl.
    #[arg(long, default_value = "hilt-out")]
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
    format: Option<libtest_mimic::FormatSetting>,
    /// Trials to run at once (devices still run one exclusive trial at a time).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    test_threads: Option<u32>,
    /// Terse output, one character per trial.
    #[arg(short, long)]
    quiet: bool,
    /// Colour: auto, always or never.
    #[arg(long, value_enum)]
    color: Option<libtest_mimic::ColorSetting>,
    /// The node this run stands for in a fleet report; default: the host name. Under
    /// Slurm pass `$SLURMD_NODENAME`, in a Kubernetes pod the node name from the downward
    /// API (the pod's host name is the pod's).
    #[arg(long, value_name = "NAME", env = "HILT_NODE", value_parser = node_name)]
    node: Option<String>,
    /// How long to wait for a device that another hilt run on this node holds, seconds;
    /// then nothing runs and hilt exits 3. Locks live in /run/lock, or in HILT_LOCK_DIR.
    #[arg(long, value_name = "SECS", env = "HILT_LOCK_TIMEOUT", default_value_t = devlock::DEFAULT_TIMEOUT_S,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    lock_timeout: u64,
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
        format: args.format,
        test_threads: args.test_threads.map(|n| n as usize),
        quiet: args.quiet,
        color: args.color,
        ..libtest_mimic::Arguments::default()
    };
    let host = host_fs(args.sysfs_root.as_deref())?;
    let Discovery { devices: real, notes } = discovery::discover();
    let any_real = !real.is_empty();
    // Planting sim faults or setting sim knobs asks for the sim.
    let wants_sim = args.device.as_deref().is_some_and(|d| d.starts_with("sim"))
        || real.is_empty()
        || !args.sim_faults.is_empty()
        || !args.sim_knobs.is_empty();
    let profile_spec = match &args.profile {
        Some(p) => p.clone(),
        None if wants_sim => "sim-reference".to_string(),
        None => discovery::default_profile(
            &Library::standard(),
            catalogue,
            &real,
            args.device.as_deref(),
            Date::today(),
        )?,
    };
    let profile = Library::standard().load(&profile_spec, catalogue, Date::today())?;
    let tier = args.tier.unwrap_or(profile.default_tier);

    let sim_device = if wants_sim {
        let knobs = sim_knobs(&profile, &args.sim_knobs, &args.sim_faults)?;
        Some(runner::make_sim_device("sim0", knobs)?)
    } else {
        None
    };
    // With sim faults or knobs, the run is about the sim alone.
    let sim_only = !args.sim_faults.is_empty() || !args.sim_knobs.is_empty();
    let mut devices: Vec<Arc<TrialDevice>> = if sim_only {
        Vec::new()
    } else {
        real.into_iter()
            .map(|d| Arc::new(discovery::unjoined(d, &host)))
            .collect()
    };
    devices.extend(sim_device.as_ref().map(|s| Arc::new(s.device.clone())));
    let pci_only = discovery::pci_only_devices(&host, &devices);
    for warning in &pci_only.warnings {
        eprintln!("hilt: warning: {warning}");
    }
    devices.extend(pci_only.devices.into_iter().map(Arc::new));
    devices.push(Arc::new(check::host_device()));
    if let Some(sel) = &args.device {
        // The host stays: host checks run whichever device is selected.
        devices.retain(|d| d.info.id == *sel || d.info.backend == *sel || d.info.backend == check::HOST_BACKEND);
        if devices.iter().all(|d| d.info.backend == check::HOST_BACKEND) {
            bail!("no device here is `{sel}`; see `hilt devices`");
        }
    }
    let matched: Vec<&str> = devices
        .iter()
        .filter(|d| profile.matches(&d.info))
        .map(|d| d.info.id.as_str())
        .collect();
    if matched.is_empty() {
        let here: Vec<&str> = devices
            .iter()
            .filter(|d| d.info.backend != check::HOST_BACKEND)
            .map(|d| d.info.id.as_str())
            .collect();
        bail!(
            "profile `{}` matches none of the devices here ({})",
            profile.id,
            here.join(", ")
        );
    }
    let listing = test_args.list;
    if !listing && devices.iter().all(|d| d.info.simulated || !d.spec.openable()) && args.profile.is_none() {
        let why = if notes.is_empty() || any_real {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        if any_real {
            eprintln!(
                "hilt: running the simulated device sim0 with profile sim-reference, as asked (this tests hilt \
                 itself and certifies nothing)"
            );
        } else {
            eprintln!(
                "hilt: no accelerator found by the backends of this build{why}; running the simulated device sim0 \
                 with profile sim-reference (this tests hilt itself and certifies nothing)"
            );
        }
    } else if !listing && args.profile.is_none() {
        eprintln!(
            "hilt: profile {} chosen for the devices here (`--profile` to choose another)",
            profile.id
        );
    }

    let mut overrides: Vec<String> = args.sim_knobs.iter().map(|k| format!("sim.{}", k.trim())).collect();
    for (var, backend, name) in [
        ("HILT_OPENCL_BUILD_OPTIONS", "opencl", "opencl.build_options"),
        ("HILT_CUDA_NVRTC_OPTIONS", "cuda", "cuda.nvrtc_options"),
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
        node: args.node.clone(),
        locks: Some(devlock::LockSettings::from_env(Duration::from_secs(args.lock_timeout))),
    };
    let end = runner::execute(setup, catalogue, &test_args)
        .with_context(|| format!("failed to record the run in {}", args.out.display()))?;
    if let Some(why) = &end.not_run {
        eprintln!("error: {why}");
        return Ok(end.exit.code());
    }
    if let Some(record) = &end.record {
        let c = &record.conformance;
        let status = c.status.as_str();
        let s = &record.summary;
        eprintln!(
            "hilt: {status}: profile {} tier {}: {} pass, {} fail ({} waived), {} not applicable, {} inconclusive, {} error; result in {}",
            record.profile.id,
            record.run.tier,
            s.pass,
            s.fail,
            s.waived,
            s.not_applicable,
            s.inconclusive,
            s.error,
            args.out.join("result.json").display()
        );
        for reason in &c.reasons {
            eprintln!("hilt:   {reason}");
        }
        let envelope = args.out.join(hilt_harness::record::ENVELOPE_FILE);
        if record.signing.is_some() {
            eprintln!(
                "hilt: signed in {} with a one-off key: development only, not attributable (use --sign-key)",
                envelope.display()
            );
        } else if args.sign_key.is_some() {
            eprintln!("hilt: signed in {}", envelope.display());
        }
    }
    if !end.recording_errors.is_empty() {
        // The verdicts stand, but the evidence is not all where it should be: never exit 0.
        eprintln!(
            "error: the run finished but its record in {} is incomplete (see the warnings above)",
            args.out.display()
        );
        return Ok(match end.exit {
            hilt_results::ExitCode::NotConformant => end.exit.code(),
            _ => hilt_results::ExitCode::Inconclusive.code(),
        });
    }
    Ok(end.exit.code())
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
    let quiet = args.quiet || !matches!(args.format, None | Some(libtest_mimic::FormatSetting::Pretty));
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
