//! One module per subcommand, and what several of them share.

use anyhow::Context as _;
use hilt_harness::hostfs::HostFs;

pub mod capture;
pub mod checks;
pub mod compare;
pub mod devices;
pub mod files;
pub mod fleet;
pub mod keygen;
pub mod profiles;
pub mod report;
pub mod requirements;
pub mod run;
pub mod sign;
pub mod terminal;
pub mod verify;

/// The host's files under `root`, or the live host.
pub fn host_fs(root: Option<&std::path::Path>) -> anyhow::Result<HostFs> {
    match root {
        None => Ok(HostFs::live()),
        Some(r) => HostFs::at(r).with_context(|| format!("--sysfs-root {}", r.display())),
    }
}
