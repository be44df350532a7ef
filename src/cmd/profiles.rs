//! `hilt profiles`: the profiles hilt knows, whether each can certify a platform, and the
//! devices here that each matches.

use std::io::Write;

use hilt_harness::check::Catalogue;
use hilt_harness::discovery;
use hilt_harness::host::Date;
use hilt_harness::profile::Library;

use crate::cmd::devices::devices_and_notes;
use crate::cmd::host_fs;

/// `hilt profiles [--sysfs-root DIR]`: under a replayed root, the devices are the
/// accelerator functions of the tree (and the simulated device), not this machine's.
pub fn print_profiles(catalogue: &Catalogue, root: Option<&std::path::Path>) -> anyhow::Result<()> {
    let library = Library::standard();
    let host = host_fs(root)?;
    let (mut here, _) = devices_and_notes();
    let mut out = std::io::stdout().lock();
    if !host.is_live() {
        here.retain(|d| d.simulated);
        let tree = discovery::pci_only_devices(&host, &[]);
        here.extend(tree.devices.into_iter().map(|d| d.info));
        writeln!(
            out,
            "matched against the accelerator functions of {} (a replayed tree) and the simulated device",
            host.root().display()
        )?;
        for warning in &tree.warnings {
            writeln!(out, "warning: {warning}")?;
        }
    }
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
