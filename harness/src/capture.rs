//! `hilt capture`: the host files that host checks read, and nothing else, in a tar that
//! replays with `hilt run --sysfs-root DIR` once unpacked.
//!
//! What is captured is an allowlist ([`RULES`]): exact paths and `*` globs, each with how
//! to store it. Keys, password hashes and anything not on the list never enter the
//! archive (`/etc/ssh/sshd_config` does; `/etc/ssh/ssh_host_*_key` and `/etc/shadow` do
//! not). sysfs files report a size of 4096 whatever they hold, so each file is read
//! first and stored with the length it actually had. Files that cannot be read are left
//! out and listed in the manifest ([`crate::hostfs::MANIFEST`]), where they replay as
//! permission denied; device nodes are stored as empty files with their mode and owner
//! in the manifest, since neither git nor an unprivileged unpack keeps them.

use std::io::Write;

use crate::hostfs::{HostError, HostErrorKind, HostFs, MANIFEST, Manifest};

/// How a captured path is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Its contents.
    File,
    /// A symbolic link with its target as written (checks read only the last component).
    Link,
    /// A character or block device: an empty file, mode and owner in the manifest.
    Node,
    /// An empty file: only its existence matters (`/usr/sbin/sshd`).
    Exists,
    /// A directory, so that "present but empty" replays as such.
    Dir,
    /// A PCI option ROM, read as `firmware.rom_measurement` reads it (see
    /// [`crate::pci::read_rom`]); only for accelerator functions.
    Rom,
}

/// The allowlist: every path host checks read, as host paths with `*` globs.
pub const RULES: &[(&str, Store)] = &[
    ("/sys/bus/pci/devices", Store::Dir),
    ("/sys/bus/pci/devices/*/vendor", Store::File),
    ("/sys/bus/pci/devices/*/device", Store::File),
    ("/sys/bus/pci/devices/*/subsystem_vendor", Store::File),
    ("/sys/bus/pci/devices/*/subsystem_device", Store::File),
    ("/sys/bus/pci/devices/*/class", Store::File),
    ("/sys/bus/pci/devices/*/current_link_speed", Store::File),
    ("/sys/bus/pci/devices/*/current_link_width", Store::File),
    ("/sys/bus/pci/devices/*/max_link_speed", Store::File),
    ("/sys/bus/pci/devices/*/max_link_width", Store::File),
    ("/sys/bus/pci/devices/*/driver", Store::Link),
    ("/sys/bus/pci/devices/*/iommu_group", Store::Link),
    ("/sys/bus/pci/devices/*/rom", Store::Rom),
    ("/sys/kernel/iommu_groups", Store::Dir),
    ("/sys/kernel/iommu_groups/*/type", Store::File),
    ("/sys/kernel/iommu_groups/*/devices/*", Store::Link),
    ("/sys/class/iommu", Store::Dir),
    ("/sys/class/iommu/*", Store::Link),
    ("/sys/firmware/efi", Store::Dir),
    (
        "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
        Store::File,
    ),
    (
        "/sys/firmware/efi/efivars/SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c",
        Store::File,
    ),
    ("/sys/kernel/security", Store::Dir),
    ("/sys/kernel/security/lockdown", Store::File),
    ("/sys/kernel/security/lsm", Store::File),
    ("/sys/module/module/parameters/sig_enforce", Store::File),
    ("/proc/sys/kernel/tainted", Store::File),
    ("/proc/modules", Store::Exists),
    ("/sys/class/tpm", Store::Dir),
    ("/sys/class/tpm/*/tpm_version_major", Store::File),
    ("/etc/ssh/sshd_config", Store::File),
    ("/etc/ssh/sshd_config.d/*.conf", Store::File),
    ("/usr/sbin/sshd", Store::Exists),
    ("/usr/bin/sshd", Store::Exists),
    ("/proc/driver/nvidia/params", Store::File),
    ("/proc/driver/nvidia/version", Store::File),
    ("/sys/module/nvidia/version", Store::File),
    ("/sys/module/amdgpu/version", Store::File),
    ("/dev/nvidia*", Store::Node),
    ("/dev/nvidia-caps/*", Store::Node),
    ("/dev/kfd", Store::Node),
    ("/dev/dri/renderD*", Store::Node),
    ("/dev/accel/accel*", Store::Node),
];

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The archive could not be written.
    #[error("failed to write the capture archive: {0}")]
    Write(#[from] std::io::Error),
    /// A listing needed to expand the allowlist failed.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// What a capture stored.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CaptureReport {
    /// Files stored with their contents.
    pub files: usize,
    /// Links, nodes, existence markers and directories stored.
    pub entries: usize,
    /// Bytes of file contents.
    pub bytes: u64,
    /// Paths left out because they could not be read.
    pub unreadable: usize,
}

/// Writes a tar of the allowlisted files under `fs` to `out`, manifest included.
pub fn capture(fs: &HostFs, out: impl Write, captured_at: &str) -> Result<CaptureReport, CaptureError> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut report = CaptureReport::default();
    let mut manifest = Manifest {
        format: 1,
        source_root: fs.root().display().to_string(),
        captured_at: captured_at.into(),
        ..Manifest::default()
    };
    let mut dirs_done: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let accelerators: Vec<String> = crate::pci::accelerators(fs)
        .map(|a| a.into_iter().map(|f| f.address).collect())
        .unwrap_or_default();
    for (pattern, store) in RULES {
        for path in expand(fs, pattern)? {
            match store {
                Store::File | Store::Rom => {
                    let bytes = if *store == Store::Rom {
                        let address = path.split('/').nth(5).unwrap_or_default();
                        if !accelerators.iter().any(|a| a == address) {
                            continue;
                        }
                        crate::pci::read_rom(fs, address, true)
                    } else {
                        fs.read(&path)
                    };
                    match bytes {
                        Ok(bytes) => {
                            append_file(&mut tar, &path, &bytes, &mut dirs_done)?;
                            report.files += 1;
                            report.bytes += bytes.len() as u64;
                        }
                        Err(e) if e.kind == HostErrorKind::NotFound => {}
                        Err(e) => {
                            manifest.unreadable.insert(path.clone(), e.message);
                            report.unreadable += 1;
                        }
                    }
                }
                Store::Link => {
                    let target = match std::fs::read_link(fs.resolve(&path)) {
                        Ok(t) => t,
                        Err(e) => {
                            let e = crate::hostfs::error(&path, &e);
                            if e.kind != HostErrorKind::NotFound {
                                manifest.unreadable.insert(path.clone(), e.message);
                                report.unreadable += 1;
                            }
                            continue;
                        }
                    };
                    add_parents(&mut tar, &path, &mut dirs_done)?;
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_mtime(0);
                    h.set_size(0);
                    tar.append_link(&mut h, rel(&path), target)?;
                    report.entries += 1;
                }
                Store::Node => {
                    if std::fs::metadata(fs.resolve(&path)).is_ok_and(|m| m.is_dir()) {
                        continue;
                    }
                    match fs.stat(&path) {
                        Ok(stat) => {
                            manifest.nodes.insert(path.clone(), stat);
                            append_file(&mut tar, &path, &[], &mut dirs_done)?;
                            report.entries += 1;
                        }
                        Err(e) if e.kind == HostErrorKind::NotFound => {}
                        Err(e) => {
                            manifest.unreadable.insert(path.clone(), e.message);
                            report.unreadable += 1;
                        }
                    }
                }
                Store::Exists => {
                    if fs.exists(&path) {
                        manifest.existence_only.push(path.clone());
                        append_file(&mut tar, &path, &[], &mut dirs_done)?;
                        report.entries += 1;
                    }
                }
                Store::Dir => {
                    if std::fs::metadata(fs.resolve(&path)).is_ok_and(|m| m.is_dir()) {
                        add_parents(&mut tar, &format!("{path}/x"), &mut dirs_done)?;
                        report.entries += 1;
                    }
                }
            }
        }
    }
    // Denials the source root itself replays stay denials in the capture.
    for (path, why) in &fs.manifest().unreadable {
        manifest.unreadable.entry(path.clone()).or_insert_with(|| why.clone());
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    let mut h = file_header(0o644);
    h.set_mtime(0);
    h.set_size(json.len() as u64);
    tar.append_data(&mut h, MANIFEST, json.as_slice())?;
    tar.into_inner()?.flush()?;
    Ok(report)
}

/// The host paths under `fs` that `pattern` names: `*` matches within one component.
pub fn expand(fs: &HostFs, pattern: &str) -> Result<Vec<String>, HostError> {
    let mut paths = vec![String::new()];
    for component in pattern.trim_start_matches('/').split('/') {
        let mut next = Vec::new();
        for base in paths {
            if component.contains('*') {
                let dir = if base.is_empty() { "/".to_string() } else { base.clone() };
                let names = match fs.list(&dir) {
                    Ok(n) => n,
                    Err(e) if matches!(e.kind, HostErrorKind::NotFound | HostErrorKind::PermissionDenied) => {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                next.extend(
                    names
                        .into_iter()
                        .filter(|n| n != crate::hostfs::MANIFEST && glob(component, n))
                        .map(|n| format!("{base}/{n}")),
                );
            } else {
                next.push(format!("{base}/{component}"));
            }
        }
        paths = next;
    }
    Ok(paths)
}

/// Adds a regular file (mode 0644, owner root, time 0) and the directories above it.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    done: &mut std::collections::BTreeSet<String>,
) -> std::io::Result<()> {
    add_parents(tar, path, done)?;
    let mut h = file_header(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, rel(path), data)
}

fn file_header(mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h
}

fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// Adds the directories above `path` that are not in the archive yet.
fn add_parents<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    done: &mut std::collections::BTreeSet<String>,
) -> std::io::Result<()> {
    let parts: Vec<&str> = rel(path).split('/').collect();
    for i in 1..parts.len() {
        let dir = parts[..i].join("/");
        if done.insert(dir.clone()) {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_mtime(0);
            h.set_size(0);
            tar.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
        }
    }
    Ok(())
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(remaining) = text.strip_prefix(head) else {
                return false;
            };
            (0..=remaining.len())
                .filter(|i| remaining.is_char_boundary(*i))
                .any(|i| glob(rest, &remaining[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_keeps_secrets_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for (path, body) in [
            ("etc/ssh/sshd_config", "PermitRootLogin no\n"),
            ("etc/ssh/ssh_host_ed25519_key", "PRIVATE"),
            ("etc/ssh/sshd_config.d/10-local.conf", "PasswordAuthentication no\n"),
            ("etc/shadow", "root:$6$hash"),
            ("sys/kernel/security/lockdown", "none [integrity] confidentiality\n"),
        ] {
            std::fs::create_dir_all(root.join(path).parent().expect("parent")).expect("mkdir");
            std::fs::write(root.join(path), body).expect("write");
        }
        let fs = HostFs::at(root).expect("root");
        let mut tar_bytes = Vec::new();
        let report = capture(&fs, &mut tar_bytes, "").expect("capture");
        assert_eq!(report.files, 3);
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            names.push(entry.path().expect("path").display().to_string());
        }
        assert!(names.contains(&"etc/ssh/sshd_config".to_string()), "{names:?}");
        assert!(names.contains(&"etc/ssh/sshd_config.d/10-local.conf".to_string()));
        assert!(
            !names.iter().any(|n| n.contains("key") || n.contains("shadow")),
            "{names:?}"
        );
        assert!(names.contains(&MANIFEST.to_string()));
    }

    #[test]
    fn globs_match_within_a_component() {
        assert!(glob("renderD*", "renderD128"));
        assert!(glob("*.conf", "10-a.conf"));
        assert!(!glob("*.conf", "10-a.conf.bak"));
        assert!(glob("nvidia*", "nvidia"));
    }
}
