//! `hilt`: the command line. A thin layer over `hilt-harness` (the engine) and
//! `hilt-suites` (the checks); what it writes is described by `hilt-results`. Each
//! subcommand lives in a module of its own under `cmd/`.
//!
//! Exit codes (also in README.md and docs/results.md): 0 conformant, 1 not conformant,
//! 2 usage or profile error, 3 inconclusive.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

use cmd::{capture, checks, compare, devices, fleet, keygen, profiles, report, requirements, run, sign, verify};

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
    Sign(sign::SignArgs),
    /// Verify a signed result: exit 0 verified, 1 not verified, 2 unreadable input.
    Verify(verify::VerifyArgs),
    /// Render a result (signed or not) as JUnit, Markdown, HTML or JSON.
    Report(report::ReportArgs),
    /// Show two or more results side by side, each verified first.
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
    let cli = Cli::parse();
    let catalogue = hilt_suites::catalogue();
    let result = match cli.command {
        Command::Run(args) => run::run(*args, &catalogue),
        Command::Checks { markdown: true, .. } => checks::print_checks_markdown(&catalogue).map(|()| 0),
        Command::Checks { json, .. } => checks::print_checks(&catalogue, json).map(|()| 0),
        Command::Profiles => profiles::print_profiles(&catalogue).map(|()| 0),
        Command::Devices { json, sysfs_root } => devices::print_devices(json, sysfs_root.as_deref()).map(|()| 0),
        Command::Capture {
            out,
            sysfs_root,
            enable_rom_read,
        } => capture::capture(&out, sysfs_root.as_deref(), enable_rom_read).map(|()| 0),
        Command::Keygen { out } => keygen::keygen(&out),
        Command::Sign(args) => sign::sign(&args),
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
            eprintln!("error: {e:#}");
            ExitCode::from(hilt_results::ExitCode::Usage.code())
        }
    }
}
