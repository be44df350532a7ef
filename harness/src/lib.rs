//! The hilt engine: profiles, devices and their backends, planning, running, tenant
//! processes and their watchdogs, and the event stream that becomes the result record.
//!
//! What outsiders read (the result record, exit codes) lives in `hilt-results`; the checks
//! live in `hilt-suites` and reach devices only through [`accel`] via [`tenant`]s. This
//! crate may change freely between releases.

pub mod accel;
pub mod amdgpu;
pub mod canary;
pub mod capture;
pub mod check;
pub mod confidence;
pub mod device_users;
pub mod devlock;
pub mod discovery;
pub mod efi;
pub mod host;
pub mod hostfs;
pub mod interrupt;
pub mod nvml;
pub mod pci;
pub mod profile;
pub mod record;
pub mod report;
pub mod requirements;
pub mod runner;
pub mod sshd;
pub mod tenant;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
