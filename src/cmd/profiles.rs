//! `hilt profiles`: the profiles hilt knows, whether each can certify a platform, and the
//! devices here that each matches.

use std::io::Write;

use hilt_harness::accel::DeviceInfo;
use hilt_harness::check::Catalogue;
use hilt_harness::discovery::{self, Discovery};
use hilt_harness::host::Date;
use hilt_harness::profile::Library;

use crate::cmd::host_fs;

/// `hilt profiles [--sysfs-root DIR]`: each profile against the devices here as a run
/// under it would see them (hardware that several backends see, through the backend the
/// profile names). Under a replayed root, the devices are the accelerator functions of the
/// tree (and the simulated device), not this machine's.
pub fn print_profiles(catalogue: &Catalogue, root: Option<&std::path::Path>) -> anyhow::Result<()> {
    let library = Library::standard();
    let host = host_fs(root)?;
    let mut out = std::io::stdout().lock();
    // Every view of every backend, made one per piece of hardware per profile below; under
    // a replayed root, the tree's functions instead.
    let (every_view, tree) = if host.is_live() {
        (discovery::discover_all(), Vec::new())
    } else {
        let tree = discovery::pci_only_devices(&host, &[]);
        writeln!(
            out,
            "matched against the accelerator functions of {} (a replayed tree) and the simulated device",
            host.root().display()
        )?;
        for warning in &tree.warnings {
            writeln!(out, "warning: {warning}")?;
        }
        let empty = Discovery {
            devices: Vec::new(),
            notes: Vec::new(),
        };
        (empty, tree.devices.into_iter().map(|d| d.info).collect())
    };
    for (id, source) in library.list() {
        match library.load(&id, catalogue, Date::today()) {
            Ok(p) => {
                let mut found = Discovery {
                    devices: every_view.devices.clone(),
                    notes: Vec::new(),
                };
                discovery::one_per_hardware(&mut found, discovery::preferred_backend(&p).as_deref());
                let mut here: Vec<DeviceInfo> = found.devices.into_iter().map(|d| d.info).collect();
                here.extend(tree.iter().cloned());
                here.push(discovery::sim_info());
                let matched: Vec<&str> = here.iter().filter(|d| p.matches(d)).map(|d| d.id.as_str()).collect();
                let matches = if p.matches.is_empty() {
                    "abstract (matches no device)".to_string()
                } else if matched.is_empty() {
                    "matches no device here".to_string()
                } else {
                    format!("matches {}", matched.join(", "))
                };
                // Whether a result under the profile can certify a platform, before anyone
                // runs a certification tier under it.
                let certifies = if p.certifying { "certifies" } else { "does not certify" };
                writeln!(out, "{id:<20} {:<48} {certifies:<17} {matches}", p.title)?;
                writeln!(out, "{:<20} {source}", "")?;
            }
            Err(e) => writeln!(out, "{id:<20} cannot be loaded: {e}")?,
        }
    }
    Ok(())
}
