//! `hilt`: the command line. A thin layer over `hilt-harness` (the engine) and
//! `hilt-suites` (the checks); what it writes is described by `hilt-results`. Each
//! subcommand lives in a module of its own under `cmd/`.
//!
//! Exit codes of `hilt run` ([`RUN_EXIT_CODES`], also in README.md, docs/results.md and
//! docs/reports.md): 0 conformant, 1 not conformant, 2 usage or profile error (nothing
//! ran), 3 inconclusive (including no accelerator examined, fewer than expected, a file
//! that could not be written), 129, 130 and 143 interrupted by SIGHUP, SIGINT and SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

use cmd::{capture, checks, compare, devices, fleet, keygen, profiles, report, requirements, run, sign, verify};

/// The exit codes of `hilt run`, as `hilt run --help` shows them.
const RUN_EXIT_CODES: &str = "\
Exit status:
  0    conformant (a partial run: no selected mandatory trial failed or was inconclusive)
  1    not conformant: a mandatory check failed
  2    usage error, or a profile that cannot be loaded: nothing ran
  3    inconclusive: a mandatory check ended inconclusive or in error, or could not run in the
       certification tier; or no accelerator was examined (the simulated device ran in place of
       accelerators that were not found); or fewer accelerators than --expect-devices; or a device
       named by --device is not here; or a file the run was asked to write could not be written
  130  interrupted by SIGINT, 143 by SIGTERM, 129 by SIGHUP: the partial record, the reports and
       the envelope are written, trials not run are named, the lock is removed (a second signal
       ends at once; a signal ignored when the run started, as nohup ignores SIGHUP, stays ignored)

Results: DIR/<YYYYMMDDTHHMMSSZ>-<run id>/{result.json,result.dsse.json,events.jsonl}, and
DIR/latest pointing at the newest (DIR is --out, default hilt-out).";

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
    #[command(after_help = RUN_EXIT_CODES)]
    Run(Box<run::RunArgs>),
    /// List the check catalogue.
    Checks {
        /// JSON instead of text.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Markdown, as in docs/checks.md.
        #[arg(long)]
        markdown: bool,
    },
    /// List profiles, whether each certifies, and the devices here that each matches.
    Profiles {
        /// Match against the accelerator functions of the host's files under this root (a
        /// fixture tree or an unpacked `hilt capture`) instead of this machine's devices.
        #[arg(long, value_name = "DIR", env = "HILT_SYSFS_ROOT")]
        sysfs_root: Option<PathBuf>,
    },
    /// List the devices hilt can drive here, and the accelerator PCI functions it sees.
    Devices {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Read the host under this root instead of `/`.
        #[arg(long, value_name = "DIR", env = "HILT_SYSFS_ROOT")]
        sysfs_root: Option<PathBuf>,
        /// Show hardware that several backends see as this backend's device, as `hilt run
        /// --backend` would drive it.
        #[arg(long, value_name = "BACKEND", env = "HILT_BACKEND")]
        backend: Option<String>,
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
    Sign(sign::SignArgs),
    /// Verify a signed result: exit 0 verified, 1 not verified, 2 unreadable input.
    Verify(verify::VerifyArgs),
    /// Render a result (signed or not) as JUnit, Markdown, HTML or JSON.
    Report(report::ReportArgs),
    /// Show two or more results side by side, each verified first; with
    /// --fail-on-regression, exit 4 when the second of two regressed against the first.
    Compare(compare::CompareArgs),
    /// Report the results of many nodes: who is conformant, who is not and why, which
    /// results do not verify, which nodes are missing, outliers, and what regressed since
    /// a baseline. Exit 0 only when every expected node has a verified, conformant result
    /// and nothing regressed; 1 otherwise; 2 for unreadable input.
    Fleet(fleet::FleetArgs),
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

fn main() -> ExitCode {
    // Before any library (the backends' runtimes) can change what was ignored.
    hilt_harness::interrupt::note_ignored_at_start();
    let cli = Cli::parse();
    let catalogue = hilt_suites::catalogue();
    let result = match cli.command {
        Command::Run(args) => run::run(*args, &catalogue),
        Command::Checks { markdown: true, .. } => checks::print_checks_markdown(&catalogue).map(|()| 0),
        Command::Checks { json, .. } => checks::print_checks(&catalogue, json).map(|()| 0),
        Command::Profiles { sysfs_root } => profiles::print_profiles(&catalogue, sysfs_root.as_deref()).map(|()| 0),
        Command::Devices {
            json,
            sysfs_root,
            backend,
        } => devices::print_devices(json, sysfs_root.as_deref(), backend.as_deref()).map(|()| 0),
        Command::Capture {
            out,
            sysfs_root,
            enable_rom_read,
        } => capture::capture(&out, sysfs_root.as_deref(), enable_rom_read).map(|()| 0),
        Command::Keygen { out } => keygen::keygen(&out),
        Command::Sign(args) => sign::sign(&args, &catalogue),
        Command::Verify(args) => verify::verify(&args),
        Command::Report(args) => report::report(&args, &catalogue),
        Command::Compare(args) => compare::compare(&args, &catalogue),
        Command::Fleet(args) => fleet::fleet(&args, &catalogue),
        Command::Requirements { markdown } => requirements::requirements_matrix(&catalogue, markdown),
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
            cmd::terminal::say!("error: {}", error_text(&e));
            ExitCode::from(hilt_results::ExitCode::Usage.code())
        }
    }
}

/// An error and its causes in one line, `what: why: why`, each cause said once: an error
/// whose own text already names its cause (`cannot read DIR: {source}`) is not followed
/// by that cause again.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if said.is_empty() || text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}
