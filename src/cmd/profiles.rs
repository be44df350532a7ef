//! `hilt profiles`: the profiles hilt knows and the devices here that each matches.

use std::io::Write;

use hilt_harness::accel::DeviceInfo;
use hilt_harness::check::Catalogue;
use hilt_harness::discovery::{self, Discovery};
use hilt_harness::host::Date;
use hilt_harness::profile::Library;

/// `hilt profiles`: each profile against the devices here as a run under it would see them
/// (hardware that several backends see, through the backend the profile names).
pub fn print_profiles(catalogue: &Catalogue) -> anyhow::Result<()> {
    let library = Library::standard();
    let every_view = discovery::discover_all();
    let mut out = std::io::stdout().lock();
    for (id, source) in library.list() {
        match library.load(&id, catalogue, Date::today()) {
            Ok(p) => {
                let mut found = Discovery {
                    devices: every_view.devices.clone(),
                    notes: Vec::new(),
                };
                discovery::one_per_hardware(&mut found, discovery::preferred_backend(&p).as_deref());
                let mut here: Vec<DeviceInfo> = found.devices.into_iter().map(|d| d.info).collect();
                here.push(discovery::sim_info());
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
