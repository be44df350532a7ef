//! What `hilt run` prints, kept from ending the run when nobody reads it any more.
//!
//! libtest-mimic prints the trial lines to standard output and panics when a write fails.
//! A reader that goes away (`hilt run | head`, a log collector that died, a closed
//! terminal) makes every later write fail with a broken pipe, so the run would panic
//! half-way, with its reports and envelope unwritten. [`StdoutShield`] puts a pipe of
//! hilt's own in front of standard output while the trials run: a thread copies it to the
//! real standard output and, once that is closed, goes on reading and drops the rest. The
//! run never sees a failed write. [`say!`] is `eprintln!` that does not panic either.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::thread::JoinHandle;

/// `eprintln!`, except that a standard error nobody reads (`hilt run 2>&1 | head`) is not
/// a panic: what hilt says never changes how a run ends.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use say;

/// Standard output routed through a pipe that never breaks, until dropped.
pub struct StdoutShield {
    /// The real standard output, to put back.
    real: OwnedFd,
    forwarder: Option<JoinHandle<()>>,
}

impl StdoutShield {
    /// Routes file descriptor 1 through a pipe whose reader copies to the real standard
    /// output while it can.
    ///
    /// # Errors
    ///
    /// When the pipe or a duplicate of the descriptor cannot be made.
    pub fn install() -> std::io::Result<StdoutShield> {
        let _ = std::io::stdout().flush();
        let real = std::io::stdout().as_fd().try_clone_to_owned()?;
        let mut target = File::from(real.try_clone()?);
        let (mut reader, writer) = std::io::pipe()?;
        dup2(writer.as_raw_fd(), libc::STDOUT_FILENO)?;
        drop(writer);
        let forwarder = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut open = true;
            // Reads until every writer is gone (the shield put the real output back).
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if open && target.write_all(&buf[..n]).is_err() {
                    open = false;
                }
            }
        });
        Ok(StdoutShield {
            real,
            forwarder: Some(forwarder),
        })
    }

    /// Whether the real standard output is a terminal that takes colour, as libtest-mimic
    /// would decide for `--color auto` (behind the shield it would see a pipe).
    pub fn colour_auto() -> bool {
        !matches!(
            anstream::AutoStream::choice(&std::io::stdout()),
            anstream::ColorChoice::Never
        )
    }
}

impl Drop for StdoutShield {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        // Putting the real output back closes the pipe's last writer: the forwarder copies
        // what is left and ends.
        if dup2(self.real.as_raw_fd(), libc::STDOUT_FILENO).is_ok()
            && let Some(forwarder) = self.forwarder.take()
        {
            let _ = forwarder.join();
        }
    }
}

fn dup2(from: i32, to: i32) -> std::io::Result<()> {
    // SAFETY: dup2 only changes which file descriptor `to` names; `from` stays open.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
