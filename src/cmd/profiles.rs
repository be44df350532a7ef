//! `hilt profiles`: the profiles hilt knows and the devices here that each matches.

use std::io::Write;

use hilt_harness::check::Catalogue;
use hilt_harness::host::Date;
use hilt_harness::profile::Library;

use crate::cmd::devices::devices_and_notes;

/// `hilt profiles`.
pub fn print_profiles(catalogue: &Catalogue) -> anyhow::Result<()> {
    let library = Library::standard();
    let (here, _) = devices_and_notes(None)?;
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
