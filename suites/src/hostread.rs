//! What host and PCI checks share: turning host read errors into verdicts, and the
//! adapter that runs a check body with its parameters.
//!
//! A host file that cannot be read for lack of permission, or that hilt refuses to read
//! (a replayed path leading out of its root, a link a capture left out), makes a check
//! `inconclusive` (hilt could not look), never `pass` or `fail`; any other read failure
//! is an `error`.
//! Whether a missing file means "the host lacks the facility" (`not_applicable`) or "the
//! platform breaks the requirement" (`fail`) is each check's own decision.

use hilt_harness::check::{CheckCtx, CheckParams, Finding};
use hilt_harness::hostfs::{HostError, HostErrorKind};

/// Runs a host check body: parameters that do not fit become `Error`, and a body's early
/// `Err(finding)` (from [`optional`] and friends) is its verdict.
pub fn run<P: CheckParams>(
    ctx: &mut CheckCtx<'_>,
    body: impl FnOnce(&mut CheckCtx<'_>, &P) -> Result<Finding, Finding>,
) -> Finding {
    match ctx.params::<P>() {
        Ok(params) => body(ctx, &params).unwrap_or_else(|f| f),
        Err(finding) => finding,
    }
}

/// A read whose absence the check handles itself: `None` when the file does not exist.
pub fn optional<T>(read: Result<T, HostError>) -> Result<Option<T>, Finding> {
    match read {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == HostErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreadable(e)),
    }
}

/// A read that must succeed; a missing file is `NotApplicable` with `absent` as reason.
pub fn or_not_applicable<T>(read: Result<T, HostError>, absent: impl FnOnce() -> String) -> Result<T, Finding> {
    optional(read)?.ok_or_else(|| Finding::NotApplicable(absent()))
}

/// The verdict for a host file that exists but could not be read.
pub fn unreadable(e: HostError) -> Finding {
    match e.kind {
        HostErrorKind::PermissionDenied => Finding::Inconclusive(format!("{e}; run hilt as root to check this")),
        HostErrorKind::Refused => Finding::Inconclusive(e.to_string()),
        HostErrorKind::NotFound | HostErrorKind::Other => Finding::Error(e.to_string()),
    }
}

/// The PCI address of the trial device (PCI checks only run on devices that have one).
pub fn pci_address(ctx: &CheckCtx<'_>) -> Result<String, Finding> {
    ctx.device
        .info
        .pci_address
        .clone()
        .ok_or_else(|| Finding::Error(format!("device {} has no PCI address", ctx.device.info.id)))
}

/// The trial device's PCI function as sysfs describes it, with its address and the host
/// it was read from: how every PCI-scope check begins.
pub fn pci_function(
    ctx: &CheckCtx<'_>,
) -> Result<(hilt_harness::hostfs::HostFs, String, hilt_harness::pci::PciFunction), Finding> {
    let fs = ctx.host().clone();
    let address = pci_address(ctx)?;
    let function = hilt_harness::pci::read_function(&fs, &address).map_err(unreadable)?;
    Ok((fs, address, function))
}

/// `key: value` lines (as in `/proc/driver/nvidia/params`), by key.
pub fn colon_value<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then_some(v.trim())
    })
}
