//! `hilt capture`: the host files that host checks read, and nothing else, into a tar
//! archive that replays with `hilt run --sysfs-root DIR`.

use anyhow::Context as _;

use crate::cmd::host_fs;

/// `hilt capture OUT`.
pub fn capture(out: &std::path::Path, root: Option<&std::path::Path>, enable_rom_read: bool) -> anyhow::Result<()> {
    let host = host_fs(root)?;
    let start = std::time::Instant::now();
    let file = std::fs::File::create(out).with_context(|| format!("failed to create {}", out.display()))?;
    let report = hilt_harness::capture::capture(
        &host,
        std::io::BufWriter::new(file),
        &hilt_harness::host::rfc3339(std::time::SystemTime::now()),
        hilt_harness::capture::CaptureOptions { enable_rom_read },
    )
    .with_context(|| format!("failed to capture {} into {}", host.root().display(), out.display()))?;
    eprintln!(
        "hilt: captured {} files ({} bytes) and {} links, nodes and directories from {} into {} in {} ms; {} \
         unreadable and {} unreadable PCI functions (listed in its manifest)",
        report.files,
        report.bytes,
        report.entries,
        host.root().display(),
        out.display(),
        start.elapsed().as_millis(),
        report.unreadable,
        report.pci_errors
    );
    Ok(())
}
