//! `hilt`: the command line. A thin layer over `hilt-harness` (the engine) and
//! `hilt-suites` (the checks); what it writes is described by `hilt-results`.
//!
//! Exit codes (also in README.md and docs/results.md): 0 conformant, 1 not conformant,
//! 2 usage or profile error, 3 inconclusive.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, Subcommand};
use hilt_harness::accel::sim::{self, SimKnobs};
use hilt_harness::accel::{DeviceInfo, DeviceSpec, cuda, opencl};
use hilt_harness::check::{Catalogue, Scope, TrialDevice};
use hilt_harness::host::Date;
use hilt_harness::hostfs::HostFs;
use hilt_harness::pci::{self, PciFunction};
use hilt_harness::profile::{self, Fit, Library, Profile};
use hilt_harness::runner::{self, RunSetup};
use hilt_harness::tenant::TenantLauncher;
use hilt_results::Tier;

mod reports;
mod signing;

/// Hardware-in-the-loop conformance checks for AI computing platforms (ETSI TS 104 033).
#[derive(Parser)]
#[command(name = "hilt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a profile's checks on the devices it matches and record a result.
    ///
    /// Trials are named `suite::check::device`; a name filter, `--exact`, `--skip`,
    /// `--list`, `--format terse` and `--test-threads` behave as they do for `cargo test`.
    Run(Box<RunArgs>),
    /// List the check catalogue.
    Checks {
        /// JSON instead of text.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Markdown, as in docs/checks.md.
        #[arg(long)]
        markdown: bool,
    },
    /// List profiles and the devices here that each matches.
    Profiles,
    /// List the devices hilt can drive here, and the accelerator PCI functions it sees.
    Devices {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Read the host under this root instead of `/`.
        #[arg(long, value_name = "DIR", env = "HILT_SYSFS_ROOT")]
        sysfs_root: Option<PathBuf>,
    },
    /// Write the host files that host checks read (and nothing else) to a tar archive;
    /// unpacked, it replays with `hilt run --sysfs-root DIR`.
    Capture {
        /// The archive to write.
        out: PathBuf,
        /// Read the host under this root instead of `/`.
        #[arg(long, value_name = "DIR", env = "HILT_SYSFS_ROOT")]
        sysfs_root: Option<PathBuf>,
        /// Also capture option ROMs the kernel refuses to read by enabling their reading
        /// (a write to sysfs that changes device state briefly: the kernel maps the ROM
        /// during the read); disabled again right after. Live host only.
        #[arg(long)]
        enable_rom_read: bool,
    },
    /// Make an Ed25519 key pair for signing results: NAME.key (PKCS#8 PEM, mode 0600) and
    /// NAME.pub (SPKI PEM).
    Keygen {
        /// The path and base name of the two files.
        #[arg(long, value_name = "NAME")]
        out: PathBuf,
    },
    /// Sign an unsigned result (result.json) with a key, into a DSSE envelope.
    Sign(signing::SignArgs),
    /// Verify a signed result: exit 0 verified, 1 not verified, 2 unreadable input.
    Verify(signing::VerifyArgs),
    /// Render a result (signed or not) as JUnit, Markdown, HTML or JSON.
    Report(reports::ReportArgs),
    /// Show two or more results side by side, each verified first.
    Compare(reports::CompareArgs),
    /// The requirement catalogue and the checks that cover each requirement.
    Requirements {
        /// Markdown, as in docs/requirements.md.
        #[arg(long)]
        markdown: bool,
    },
    /// Serve the tenant protocol on stdin/stdout (spawned by `hilt run`).
    #[command(hide = true)]
    Tenant,
}

#[derive(clap::Args)]
struct RunArgs {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let catalogue = hilt_suites::catalogue();
    let result = match cli.command {
        Command::Run(args) => run(*args, &catalogue),
        Command::Checks { markdown: true, .. } => print_checks_markdown(&catalogue).map(|()| 0),
        Command::Checks { json, .. } => print_checks(&catalogue, json).map(|()| 0),
        Command::Profiles => print_profiles(&catalogue).map(|()| 0),
        Command::Devices { json, sysfs_root } => print_devices(json, sysfs_root.as_deref()).map(|()| 0),
        Command::Capture {
            out,
            sysfs_root,
            enable_rom_read,
        } => capture(&out, sysfs_root.as_deref(), enable_rom_read).map(|()| 0),
        Command::Keygen { out } => signing::keygen(&out),
        Command::Sign(args) => signing::sign(&args),
        Command::Verify(args) => signing::verify(&args),
        Command::Report(args) => reports::report(&args, &catalogue),
        Command::Compare(args) => reports::compare(&args, &catalogue),
        Command::Requirements { markdown } => reports::requirements_matrix(&catalogue, markdown),
        Command::Tenant => {
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            hilt_harness::tenant::serve(stdin.lock(), stdout.lock())
                .map(|()| 0)
                .map_err(Into::into)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // `hilt checks | head`: the reader has what it wanted.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(hilt_results::ExitCode::Usage.code())
        }
    }
}

fn run(args: RunArgs, catalogue: &Catalogue) -> anyhow::Result<u8> {
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
    let Discovery { devices: real, notes } = discover();
    let any_real = !real.is_empty();
    // Planting sim faults or setting sim knobs asks for the sim.
    let wants_sim = args.device.as_deref().is_some_and(|d| d.starts_with("sim"))
        || real.is_empty()
        || !args.sim_faults.is_empty()
        || !args.sim_knobs.is_empty();
    let profile_spec = match &args.profile {
        Some(p) => p.clone(),
        None if wants_sim => "sim-reference".to_string(),
        None => default_profile(catalogue, &real, args.device.as_deref())?,
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
        real.into_iter().map(|d| Arc::new(unjoined(d, &host))).collect()
    };
    devices.extend(sim_device.as_ref().map(|s| Arc::new(s.device.clone())));
    devices.extend(pci_only_devices(&host, &devices).into_iter().map(Arc::new));
    devices.push(Arc::new(runner::host_device()));
    if let Some(sel) = &args.device {
        // The host stays: host checks run whichever device is selected.
        devices.retain(|d| d.info.id == *sel || d.info.backend == *sel || d.info.backend == runner::HOST_BACKEND);
        if devices.iter().all(|d| d.info.backend == runner::HOST_BACKEND) {
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
            .filter(|d| d.info.backend != runner::HOST_BACKEND)
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
        Some(signing::run_signer(args.sign_key.as_deref())?)
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
    };
    let end = runner::execute(setup, catalogue, &test_args)
        .with_context(|| format!("failed to record the run in {}", args.out.display()))?;
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

/// What the backends built into this binary found.
struct Discovery {
    /// Real accelerators. The sim is not among them: it is added when asked for, or when
    /// nothing real is here.
    devices: Vec<TrialDevice>,
    /// One line per backend that found nothing, saying why.
    notes: Vec<String>,
}

/// The real backends this build has.
const BACKENDS: &[&str] = &["opencl", "cuda"];

fn discover() -> Discovery {
    let mut found = Discovery {
        devices: Vec::new(),
        notes: Vec::new(),
    };
    // `HILT_BACKENDS=opencl` probes only those backends; `HILT_BACKENDS=sim` (or `none`)
    // probes none, so only the simulated device is there.
    let wanted = std::env::var("HILT_BACKENDS").ok();
    let enabled = |backend: &str| {
        wanted
            .as_deref()
            .is_none_or(|list| list.split(',').any(|b| b.trim() == backend))
    };
    if let Some(list) = &wanted {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !BACKENDS.contains(&name) && !["sim", "none"].contains(&name) {
                found.notes.push(format!(
                    "HILT_BACKENDS names `{name}`, which this build does not have (it has: {}, sim)",
                    BACKENDS.join(", ")
                ));
            }
        }
    }
    for backend in BACKENDS {
        if !enabled(backend) {
            found.notes.push(format!(
                "{backend}: not probed (HILT_BACKENDS={})",
                wanted.as_deref().unwrap_or_default()
            ));
            continue;
        }
        let listed = match *backend {
            "opencl" => opencl::discover().map(|list| {
                list.into_iter()
                    .map(|(info, spec)| TrialDevice {
                        info,
                        spec: DeviceSpec::OpenCl(spec),
                    })
                    .collect::<Vec<_>>()
            }),
            "cuda" => cuda::discover().map(|list| {
                list.into_iter()
                    .map(|(info, spec)| TrialDevice {
                        info,
                        spec: DeviceSpec::Cuda(spec),
                    })
                    .collect()
            }),
            other => Err(format!("no such backend in this build: {other}")),
        };
        match listed {
            Ok(list) => found.devices.extend(list),
            Err(note) => found.notes.push(format!("{backend}: {note}")),
        }
    }
    // One GPU can show up twice: through CUDA and through the vendor's OpenCL driver. The
    // OpenCL view of a device CUDA already drives is dropped, with a note.
    let cuda_addresses: Vec<String> = found
        .devices
        .iter()
        .filter(|d| d.info.backend == "cuda")
        .filter_map(|d| d.info.pci_address.clone())
        .collect();
    let before = found.devices.len();
    found.devices.retain(|d| {
        d.info.backend != "opencl" || d.info.pci_address.as_ref().is_none_or(|a| !cuda_addresses.contains(a))
    });
    if found.devices.len() < before {
        found.notes.push(format!(
            "opencl: {} device(s) left out that CUDA already drives (same PCI address)",
            before - found.devices.len()
        ));
    }
    found
}

/// The profile for the real devices here (those `--device` selects): see
/// [`profile::best_fit`].
fn default_profile(catalogue: &Catalogue, devices: &[TrialDevice], selected: Option<&str>) -> anyhow::Result<String> {
    let library = Library::standard();
    let devices: Vec<&DeviceInfo> = devices
        .iter()
        .filter(|d| selected.is_none_or(|s| d.info.id == s || d.info.backend == s))
        .map(|d| &d.info)
        .collect();
    let profiles: Vec<Profile> = library
        .list()
        .into_iter()
        .filter_map(|(id, _)| library.load(&id, catalogue, Date::today()).ok())
        .collect();
    let here: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    match profile::best_fit(&profiles, &devices) {
        Fit::One(p) => Ok(p.id.clone()),
        Fit::None => bail!(
            "no profile matches all the accelerators here ({}); give one with `--profile` or choose a device \
             with `--device`, see `hilt profiles`",
            here.join(", ")
        ),
        Fit::Tie(a, b) => bail!(
            "profiles `{}` and `{}` both fit the accelerators here ({}); choose one with `--profile`",
            a.id,
            b.id,
            here.join(", ")
        ),
    }
}

fn print_checks(catalogue: &Catalogue, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<serde_json::Value> = catalogue
            .checks()
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "suite": c.suite(),
                    "title": c.title,
                    "description": c.description,
                    "requirements": c.requirements,
                    "sim_faults": c.faults,
                    "scope": c.scope.as_str(),
                    "host_faults": c.host_faults,
                    "concurrent": c.concurrent,
                    "default_params": c.params.default_json(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    for c in catalogue.checks() {
        writeln!(out, "{}  [{}]", c.id, c.requirements.join(", "))?;
        writeln!(out, "    {}", c.title)?;
        if c.host_faults.is_empty() {
            writeln!(
                out,
                "    suite: {}; fails under sim faults: {}",
                c.suite(),
                c.faults.join(", ")
            )?;
        } else {
            writeln!(
                out,
                "    suite: {}; runs on: {}; fails on host fixtures: {}",
                c.suite(),
                c.scope.as_str(),
                c.host_faults.join(", ")
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "sim faults (hilt run --sim-fault NAME):")?;
    for f in sim::FAULTS {
        let kind = match f.kind {
            sim::FaultKind::Platform => "platform",
            sim::FaultKind::Harness => "harness",
        };
        writeln!(out, "    {:<32} {kind:<8} {}", f.name, f.summary)?;
    }
    Ok(())
}

/// The catalogue as Markdown: docs/checks.md is this output, checked in.
fn print_checks_markdown(catalogue: &Catalogue) -> anyhow::Result<()> {
    let requirements = hilt_harness::requirements::ts_104_033();
    let mut md = String::new();
    md.push_str("# Check catalogue\n\n");
    md.push_str("<!-- Generated by `hilt checks --markdown`; a test keeps it current. -->\n\n");
    md.push_str(
        "Every check has a stable dotted id, names the TS 104 033 requirements it gives evidence for \
         (ids from `profiles/requirements/ts-104-033.toml`), and names the planted faults that must make \
         it fail: sim faults for device checks, fixture trees under `tests/fixtures/hosts/` for host \
         checks (see docs/host-checks.md); the self-validation and host-check tests hold it to them.\n\n",
    );
    md.push_str("| check | requirements | fails under |\n| --- | --- | --- |\n");
    for c in catalogue.checks() {
        md.push_str(&format!(
            "| [`{}`](#{}) | {} | {} |\n",
            c.id,
            c.id.replace('.', ""),
            c.requirements.join(", "),
            c.faults
                .iter()
                .map(|f| format!("`{f}`"))
                .chain(c.host_faults.iter().map(|f| format!("host `{f}`")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for c in catalogue.checks() {
        md.push_str(&format!("\n## {}\n\n**{}**\n\n{}\n\n", c.id, c.title, c.description));
        md.push_str(&format!(
            "Suite `{}`; {}.\n\n",
            c.suite(),
            match (c.scope, c.concurrent) {
                (Scope::Host, _) => "runs once per run, on the host (trial device `host`), reading its files",
                (Scope::Pci, _) => "runs on each accelerator PCI function, reading its sysfs files",
                (Scope::Device, true) => "may share the device with other trials",
                (Scope::Device, false) => "needs the device to itself",
            }
        ));
        md.push_str("Requirements:\n\n");
        for id in c.requirements {
            let summary = requirements
                .iter()
                .find(|r| r.id == *id)
                .map_or("(unknown)", |r| r.summary.as_str());
            md.push_str(&format!("- {id}: {summary}\n"));
        }
        let schema = c.params.schema().to_value();
        let defaults = c.params.default_json();
        if let Some(props) = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .filter(|p| !p.is_empty())
        {
            md.push_str("\n| parameter | default | meaning |\n| --- | --- | --- |\n");
            for (name, prop) in props {
                let meaning = prop
                    .get("description")
                    .and_then(|d| d.as_str())
                    .unwrap_or_default()
                    .replace('\n', " ");
                md.push_str(&format!("| `{name}` | `{}` | {meaning} |\n", defaults[name]));
            }
        }
        md.push_str(&format!("\n**When it fails.** {}\n", c.remediation));
        if c.host_faults.is_empty() {
            let faults: Vec<String> = c
                .faults
                .iter()
                .map(|f| format!("`{f}` ({})", sim::fault(f).map_or("unknown", |f| f.summary)))
                .collect();
            md.push_str(&format!("\n**Proven to fail under** {}.\n", faults.join("; ")));
        } else {
            let faults: Vec<String> = c
                .host_faults
                .iter()
                .map(|f| format!("`tests/fixtures/hosts/{f}`"))
                .collect();
            md.push_str(&format!("\n**Proven to fail on** {}.\n", faults.join(", ")));
        }
    }
    md.push_str("\n## Sim faults\n\n");
    md.push_str(
        "`hilt run --sim-fault NAME` plants a fault in the simulated accelerator. A platform fault breaks \
         a requirement: the checks that name it must fail. A harness fault breaks the measurement: every \
         check that touches the device must end inconclusive or in error, never pass. A run with a planted \
         fault is recorded as partial and is never evidence about a platform.\n\n",
    );
    md.push_str("| fault | kind | effect |\n| --- | --- | --- |\n");
    for f in sim::FAULTS {
        let kind = match f.kind {
            sim::FaultKind::Platform => "platform",
            sim::FaultKind::Harness => "harness",
        };
        md.push_str(&format!("| `{}` | {kind} | {} |\n", f.name, f.summary));
    }
    std::io::stdout().lock().write_all(md.as_bytes())?;
    Ok(())
}

fn print_profiles(catalogue: &Catalogue) -> anyhow::Result<()> {
    let library = Library::standard();
    let here = devices_here()?;
    let mut out = std::io::stdout().lock();
    for (id, source) in library.list() {
        match library.load(&id, catalogue, Date::today()) {
            Ok(p) => {
                let matched: Vec<&str> = here.iter().filter(|d| p.matches(d)).map(|d| d.id.as_str()).collect();
                let matches = if p.matches.is_empty() {
                    "abstract (matches no device)".to_string()
                } else if matched.is_empty() {
                    "matches no device here".to_string()
                } else {
                    format!("matches {}", matched.join(", "))
                };
                writeln!(out, "{id:<20} {:<48} {matches}", p.title)?;
                writeln!(out, "{:<20} {source}", "")?;
            }
            Err(e) => writeln!(out, "{id:<20} cannot be loaded: {e}")?,
        }
    }
    Ok(())
}

/// The devices here, the sim with its default knobs included.
fn devices_here() -> anyhow::Result<Vec<DeviceInfo>> {
    Ok(devices_and_notes().0)
}

/// The devices here (the sim included) and the backends' notes, from one discovery.
fn devices_and_notes() -> (Vec<DeviceInfo>, Vec<String>) {
    let found = discover();
    let mut list: Vec<DeviceInfo> = found.devices.into_iter().map(|d| d.info).collect();
    let spec = sim::SimSpec {
        id: "sim0".into(),
        path: PathBuf::new(),
        knobs: SimKnobs::default(),
    };
    list.push(spec.info());
    (list, found.notes)
}

/// The host's files under `root`, or the live host.
fn host_fs(root: Option<&std::path::Path>) -> anyhow::Result<HostFs> {
    match root {
        None => Ok(HostFs::live()),
        Some(r) => HostFs::at(r).with_context(|| format!("--sysfs-root {}", r.display())),
    }
}

/// A live backend device as a replayed run sees it: its bus address names a function of
/// this machine, not of the tree under `--sysfs-root`, so it moves to the fact
/// `pci.live_address` and PCI checks leave the device alone.
fn unjoined(mut device: TrialDevice, host: &HostFs) -> TrialDevice {
    if !host.is_live()
        && let Some(address) = device.info.pci_address.take()
    {
        device.info.facts.insert("pci.live_address".into(), address.into());
    }
    device
}

/// Trial devices for the accelerator PCI functions that no backend device covers (joined
/// by bus address), so that host checks run on them. Under a replayed root the live
/// backend devices' addresses name functions of this machine, not of the tree, so none
/// is joined: every function of the tree gets its own trial device. A function whose
/// attributes cannot be read is a warning, never the end of the run.
fn pci_only_devices(host: &HostFs, devices: &[Arc<TrialDevice>]) -> Vec<TrialDevice> {
    let scan = match pci::accelerators(host) {
        Ok(scan) => scan,
        Err(e) => {
            eprintln!("hilt: warning: failed to list the PCI functions, so no PCI check runs on them: {e}");
            return Vec::new();
        }
    };
    for broken in &scan.broken {
        eprintln!("hilt: warning: left out {broken}");
    }
    scan.functions
        .iter()
        .filter(|f| {
            !host.is_live()
                || !devices
                    .iter()
                    .any(|d| d.info.pci_address.as_deref() == Some(f.address.as_str()))
        })
        .map(|f| TrialDevice {
            info: f.device_info(),
            spec: hilt_harness::accel::DeviceSpec::NotOpenable,
        })
        .collect()
}

fn capture(out: &std::path::Path, root: Option<&std::path::Path>, enable_rom_read: bool) -> anyhow::Result<()> {
    let host = host_fs(root)?;
    let start = std::time::Instant::now();
    let file = std::fs::File::create(out).with_context(|| format!("failed to create {}", out.display()))?;
    let report = hilt_harness::capture::capture(
        &host,
        std::io::BufWriter::new(file),
        &hilt_harness::host::rfc3339(std::time::SystemTime::now()),
        hilt_harness::capture::CaptureOptions { enable_rom_read },
    )
    .with_context(|| format!("failed to capture {} into {}", host.root().display(), out.display()))?;
    eprintln!(
        "hilt: captured {} files ({} bytes) and {} links, nodes and directories from {} into {} in {} ms; {} \
         unreadable and {} unreadable PCI functions (listed in its manifest)",
        report.files,
        report.bytes,
        report.entries,
        host.root().display(),
        out.display(),
        start.elapsed().as_millis(),
        report.unreadable,
        report.pci_errors
    );
    Ok(())
}

fn print_devices(json: bool, root: Option<&std::path::Path>) -> anyhow::Result<()> {
    let (list, notes) = devices_and_notes();
    let host = host_fs(root)?;
    let scan = pci::accelerators(&host).context("failed to list the PCI functions")?;
    let functions = scan.functions;
    let mut out = std::io::stdout().lock();
    if json {
        let records: Vec<_> = list.iter().map(runner::device_record).collect();
        let pci: Vec<_> = functions
            .iter()
            .map(|f| {
                let mut record = runner::device_record(&f.device_info());
                record.id = list
                    .iter()
                    .find(|d| d.pci_address.as_deref() == Some(f.address.as_str()))
                    .map_or(record.id, |d| d.id.clone());
                record
            })
            .collect();
        let broken: Vec<_> = scan
            .broken
            .iter()
            .map(|b| serde_json::json!({ "pci_address": b.address, "error": b.error.to_string() }))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "devices": records, "pci_accelerators": pci, "pci_unreadable": broken })
            )?
        )?;
        return Ok(());
    }
    for d in &list {
        let note = if d.simulated {
            "  (simulated: tests hilt itself, certifies nothing)"
        } else {
            ""
        };
        writeln!(
            out,
            "{:<8} {:<8} {}: {} MiB global memory, {} compute units x {} KiB local memory{note}",
            d.id,
            d.backend,
            d.name,
            d.global_mem_bytes >> 20,
            d.compute_units,
            d.local_mem_bytes >> 10
        )?;
        if !d.simulated {
            let fact = |k: &str| d.facts.get(k).and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
            writeln!(
                out,
                "{:<8} {:<8} platform {}, vendor {}, driver {}, PCI {}",
                "",
                "",
                fact(&format!("{}.platform", d.backend)),
                d.vendor.as_deref().unwrap_or("unknown"),
                fact(&format!("{}.driver_version", d.backend)),
                d.pci_address.as_deref().unwrap_or("not reported")
            )?;
        }
    }
    if list.iter().all(|d| d.simulated) {
        writeln!(
            out,
            "no accelerator found by the backends built in (opencl, cuda); only the simulated device"
        )?;
    }
    for note in &notes {
        writeln!(out, "{note}")?;
    }
    writeln!(out)?;
    print_pci(&mut out, &host, &functions, &list)?;
    for broken in &scan.broken {
        writeln!(out, "unreadable: {broken}")?;
    }
    Ok(())
}

/// The PCI view: accelerator functions in sysfs, and the backend device each is, if any.
fn print_pci(
    out: &mut impl Write,
    host: &HostFs,
    functions: &[PciFunction],
    devices: &[DeviceInfo],
) -> anyhow::Result<()> {
    let root = if host.is_live() {
        String::new()
    } else {
        format!(" under {}", host.root().display())
    };
    if functions.is_empty() {
        writeln!(out, "no accelerator PCI function (class 03, 12 or 0b) in sysfs{root}")?;
        return Ok(());
    }
    writeln!(out, "accelerator PCI functions in sysfs{root}:")?;
    for f in functions {
        let driven = devices
            .iter()
            .find(|d| d.pci_address.as_deref() == Some(f.address.as_str()))
            .map_or_else(
                || format!("host checks as {}", f.trial_id()),
                |d| format!("device {}", d.id),
            );
        writeln!(
            out,
            "{}  {:04x}:{:04x}  {} {}  [{}]  driver {}  iommu group {}  ({driven})",
            f.address,
            f.vendor,
            f.device,
            f.vendor_name().unwrap_or("unknown vendor"),
            f.device_name().unwrap_or("unknown device"),
            f.class_name().unwrap_or("unknown class"),
            f.driver.as_deref().unwrap_or("none"),
            f.iommu_group.as_deref().unwrap_or("none"),
        )?;
    }
    Ok(())
}
