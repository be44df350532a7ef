//! SIGINT, SIGTERM and SIGHUP stop a run, whatever handler a library installed before
//! hilt's; a signal ignored when the run starts (`nohup`) stays ignored.
//!
//! Signals reach the whole test process, so each case runs in a child process: this test
//! binary again, told by an environment variable to play the run's part. The parent
//! holds the child to its exit status and what it printed.

use std::process::Command;

use hilt_harness::interrupt;

/// Set in the child: which signal to raise at itself.
const CHILD: &str = "HILT_TEST_INTERRUPT_CHILD";

/// LLVM's handler for SIGINT and SIGTERM, as PoCL's OpenCL driver installs it in the
/// process that loads it: put the previous action back (the default) and raise the signal
/// again, which then ends the process.
extern "C" fn llvm_like_handler(signal: libc::c_int) {
    // SAFETY: signal and raise are async-signal-safe.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// In the child: a library's handler first, then hilt's, then the signal. The child must
/// live to see the stop requested.
fn child(signal: libc::c_int) {
    let handler = llvm_like_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installs a handler that only calls async-signal-safe functions.
    unsafe {
        libc::signal(signal, handler);
    }
    interrupt::install().expect("handlers installed");
    // SAFETY: raise sends the signal to this thread.
    unsafe {
        libc::raise(signal);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let got = interrupt::requested().map(|s| s.number());
    println!("stop requested by signal {got:?}");
    assert_eq!(got, Some(signal));
}

#[test]
fn a_library_handler_installed_earlier_does_not_end_the_run() {
    if let Ok(signal) = std::env::var(CHILD) {
        child(signal.parse().expect("a signal number"));
        return;
    }
    for (signal, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let out = Command::new(std::env::current_exe().expect("this test binary"))
            .args([
                "--exact",
                "a_library_handler_installed_earlier_does_not_end_the_run",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, signal.to_string())
            .output()
            .expect("the child runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("stop requested by signal Some({signal})")),
            "{name} with a library's handler installed first: {:?}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Set in the child of the test below: which signal to ignore, then raise.
const IGNORED_CHILD: &str = "HILT_TEST_IGNORED_CHILD";

#[test]
fn a_signal_ignored_when_the_run_starts_stays_ignored() {
    if let Ok(case) = std::env::var(IGNORED_CHILD) {
        let (signal, library) = case.split_once('+').map_or((case.as_str(), false), |(s, _)| (s, true));
        let signal: libc::c_int = signal.parse().expect("a signal number");
        // As `nohup` leaves SIGHUP, and a shell a background job's SIGINT.
        // SAFETY: SIG_IGN is a valid disposition; raise sends the signal to this thread.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
        interrupt::note_ignored_at_start();
        if library {
            // A library loaded later puts its handler in place of the ignored signal, as
            // LLVM (which PoCL loads) does for SIGHUP.
            let handler = llvm_like_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // SAFETY: installs a handler that only calls async-signal-safe functions.
            unsafe {
                libc::signal(signal, handler);
            }
        }
        interrupt::install().expect("handlers installed");
        unsafe {
            libc::raise(signal);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        println!("stop requested: {:?}", interrupt::requested().map(|s| s.number()));
        return;
    }
    let (hup, int) = (libc::SIGHUP, libc::SIGINT);
    for case in [
        format!("{hup}"),
        format!("{int}"),
        format!("{hup}+library"),
        format!("{int}+library"),
    ] {
        let signal = &case;
        let out = Command::new(std::env::current_exe().expect("this test binary"))
            .args([
                "--exact",
                "a_signal_ignored_when_the_run_starts_stays_ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(IGNORED_CHILD, signal)
            .output()
            .expect("the child runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("stop requested: None"),
            "signal {signal}, ignored before: {:?}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
