//! Stopping a run on SIGINT, SIGTERM or SIGHUP without losing what it found.
//!
//! A CI job that times out, a scheduler that preempts a job (Slurm's `scancel`,
//! Kubernetes' pod deletion), a person pressing Ctrl-C and a terminal or SSH session that
//! hangs up all send one of these signals. A signal ignored when the run starts stays
//! ignored (`nohup` ignores SIGHUP, a shell a background job's SIGINT): hilt takes over
//! only the signals that would end it. [`install`] makes the first one set a flag instead of ending the process;
//! everything that waits polls [`requested`]: a tenant call stops waiting and kills its
//! tenant, a trial that has not started does not start, and the runner then records the
//! trials that did not run, writes the partial record and every report, signs the record
//! and removes its lock. A second signal while that happens ends the process at once with
//! the conventional status (128 + the signal's number), leaving the record as it was last
//! written: readable, marked incomplete.
//!
//! The handlers only store numbers in atomics (what `signal_hook::flag` does); no code of
//! ours runs in signal context.
//!
//! The run owns these signals. A library loaded before [`install`] may have put a
//! handler of its own there: LLVM, which PoCL's OpenCL driver loads into the harness
//! during discovery, installs one that removes its temporary files and then re-raises the
//! signal with the default action. signal-hook calls the handler it found after its own,
//! so that one would end the process on the first signal, before the run could keep what
//! it found. [`install`] therefore puts the default action back first, so that nothing but
//! hilt's handlers runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The signal that asked the run to stop, or 0.
static SIGNAL: AtomicUsize = AtomicUsize::new(0);
/// True once any of the handled signals arrived; arms the immediate exit on the next one.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Bit n set: signal n was ignored when the process started ([`note_ignored_at_start`]).
static IGNORED_AT_START: AtomicUsize = AtomicUsize::new(0);
/// The signals a run takes over.
const HANDLED: [Signal; 3] = [Signal::INT, Signal::TERM, Signal::HUP];

/// Notes which of the signals a run takes over were ignored when the process started
/// (`nohup`, a shell's background job), before any library is loaded: a library may put a
/// handler of its own in place of an ignored signal (LLVM, which PoCL loads, does for
/// SIGHUP), and [`install`] must still leave those ignored. Call first thing in `main`.
pub fn note_ignored_at_start() {
    for signal in HANDLED {
        if current_action(signal.number()).is_ok_and(|a| a == libc::SIG_IGN) {
            IGNORED_AT_START.fetch_or(1 << signal.number(), Ordering::SeqCst);
        }
    }
}

/// A signal that stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    /// SIGINT: Ctrl-C at a terminal.
    pub const INT: Signal = Signal(libc::SIGINT);
    /// SIGTERM: what CI timeouts and schedulers send.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// SIGHUP: the terminal or SSH session the run was started from went away.
    pub const HUP: Signal = Signal(libc::SIGHUP);

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The signal's name (`SIGINT`, `SIGTERM`, `SIGHUP`).
    pub fn name(self) -> String {
        match self.0 {
            libc::SIGINT => "SIGINT".into(),
            libc::SIGTERM => "SIGTERM".into(),
            libc::SIGHUP => "SIGHUP".into(),
            n => format!("signal {n}"),
        }
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP request a stop instead of ending the process; a
/// second one ends it at once with status 128 + its number. A signal ignored when this is
/// called stays ignored (`nohup`'s SIGHUP, a background job's SIGINT). Call once, before the run starts and
/// after every library the harness process loads (the backends' discovery): a handler a
/// library installed earlier is dropped, never called. Calling it again does nothing.
///
/// # Errors
///
/// When a handler cannot be registered (the operating system refused it).
pub fn install() -> std::io::Result<()> {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return Ok(());
    }
    for signal in HANDLED {
        let n = signal.number();
        // A signal ignored when the run started stays ignored, as whoever started it
        // asked: `nohup` for SIGHUP, a shell for the SIGINT of a background job. A
        // library's handler found in its place is dropped for the ignoring.
        let ignored_at_start = IGNORED_AT_START.load(Ordering::SeqCst) & (1 << n) != 0;
        if ignored_at_start || current_action(n)? == libc::SIG_IGN {
            ignore(n)?;
            continue;
        }
        // signal-hook keeps the handler it finds and calls it after its own: it must find
        // the default action, never a library's handler that ends the process.
        drop_foreign_handler(n)?;
        // The exit must be registered first: it runs before the flag is set, so it ends
        // the process only when an earlier signal had already armed it.
        signal_hook::flag::register_conditional_shutdown(n, 128 + n, &ARMED)?;
        signal_hook::flag::register_usize(n, &SIGNAL, n as usize)?;
        signal_hook::flag::register(n, &ARMED)?;
    }
    *installed = true;
    Ok(())
}

/// Puts the default action back for `signal` when a handler function is installed for it
/// (one a library put there); an ignored signal stays as it is.
fn drop_foreign_handler(signal: i32) -> std::io::Result<()> {
    let current = current_action(signal)?;
    if current == libc::SIG_DFL || current == libc::SIG_IGN {
        return Ok(());
    }
    // SAFETY: installs the default action, a zeroed sigaction with SIG_DFL (0) as its
    // handler, an empty mask and no flags.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    if unsafe { libc::sigaction(signal, &default, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Ignores `signal` (`SIG_IGN`).
fn ignore(signal: i32) -> std::io::Result<()> {
    // SAFETY: installs SIG_IGN, a valid disposition, with an empty mask and no flags.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = libc::SIG_IGN;
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The action installed for `signal`: `SIG_DFL`, `SIG_IGN` or a handler's address.
fn current_action(signal: i32) -> std::io::Result<libc::sighandler_t> {
    // SAFETY: sigaction with a null new action only reads the current one into `current`,
    // a zeroed sigaction the call fills in.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(current.sa_sigaction)
}

/// The signal that asked this process to stop, if one did.
pub fn requested() -> Option<Signal> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(Signal(i32::try_from(n).unwrap_or(i32::MAX))),
    }
}
