//! `hilt capture`: the host files that host checks read, and nothing else, in a tar that
//! replays with `hilt run --sysfs-root DIR` once unpacked.
//!
//! What is captured is an allowlist ([`RULES`]): exact paths and `*` globs, each with how
//! to store it, plus the sshd `Include` closure and each accelerator driver's version.
//! Keys, password hashes and anything not on the list never enter the archive
//! (`/etc/ssh/sshd_config` does; `/etc/ssh/ssh_host_*_key` and `/etc/shadow` do not), and a
//! file entry that is a link to a path off the list is not followed but listed in the
//! manifest. Links met under /sys on the way to a captured path are stored as links, and
//! the file where they lead (`/sys/bus/pci/devices/X` → `/sys/devices/pci0000:00/.../X`),
//! so a replay sees sysfs's own structure: a PCI function's path from its root port.
//! sysfs files report a size of 4096 whatever they hold, so each file is read
//! first and stored with the length it actually had. Files that cannot be read are left
//! out and listed in the manifest ([`crate::hostfs::MANIFEST`]) with the kind of error,
//! which replay gives back; device nodes are stored as empty files with their mode and
//! owner in the manifest, since neither git nor an unprivileged unpack keeps them. The
//! capture writes nothing to the host unless [`CaptureOptions::enable_rom_read`] asks.

use std::collections::BTreeSet;
use std::io::Write;

use crate::hostfs::{HostError, HostErrorKind, HostFs, MANIFEST, MANIFEST_FORMAT, Manifest, Unreadable, expand};

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

/// The allowlist: every path host checks read, as host paths with `*` globs. The sshd
/// `Include` closure, the version of each accelerator's driver and the UEFI variables of
/// [`crate::efi::capture_paths`] (through each interface the kernel may offer) are added
/// to it at capture time.
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
    ("/sys/bus/pci/devices/*/power_state", Store::File),
    ("/sys/bus/pci/devices/*/power/runtime_status", Store::File),
    ("/sys/bus/pci/devices/*/driver", Store::Link),
    ("/sys/bus/pci/devices/*/iommu_group", Store::Link),
    ("/sys/bus/pci/devices/*/rom", Store::Rom),
    ("/sys/kernel/iommu_groups", Store::Dir),
    ("/sys/kernel/iommu_groups/*/type", Store::File),
    ("/sys/kernel/iommu_groups/*/devices/*", Store::Link),
    ("/sys/class/iommu", Store::Dir),
    ("/sys/class/iommu/*", Store::Link),
    ("/sys/firmware/efi", Store::Dir),
    (crate::efi::SYSFS_VARS, Store::Dir),
    (crate::efi::MOKVAR, Store::Dir),
    ("/sys/kernel/security", Store::Dir),
    ("/sys/kernel/security/lockdown", Store::File),
    ("/sys/kernel/security/lsm", Store::File),
    ("/sys/module/module/parameters/sig_enforce", Store::File),
    ("/proc/sys/kernel/tainted", Store::File),
    ("/proc/modules", Store::Exists),
    ("/sys/class/tpm", Store::Dir),
    ("/sys/class/tpm/*", Store::Dir),
    ("/sys/class/tpm/*/tpm_version_major", Store::File),
    ("/etc/ssh/sshd_config", Store::File),
    ("/etc/ssh/sshd_config.d/*.conf", Store::File),
    ("/usr/sbin/sshd", Store::Exists),
    ("/usr/bin/sshd", Store::Exists),
    ("/proc/driver/nvidia/params", Store::File),
    ("/proc/driver/nvidia/version", Store::File),
    ("/sys/module/nvidia/version", Store::File),
    ("/sys/module/amdgpu/version", Store::File),
    ("/sys/module/amdgpu", Store::Dir),
    // amdgpu's view of AMD GPUs (crate::amdgpu) and what the AMD checks read.
    ("/sys/bus/pci/devices/*/product_name", Store::File),
    ("/sys/bus/pci/devices/*/product_number", Store::File),
    ("/sys/bus/pci/devices/*/serial_number", Store::File),
    ("/sys/bus/pci/devices/*/vbios_version", Store::File),
    ("/sys/bus/pci/devices/*/mem_info_vram_total", Store::File),
    ("/sys/bus/pci/devices/*/current_compute_partition", Store::File),
    ("/sys/bus/pci/devices/*/available_compute_partition", Store::File),
    ("/sys/bus/pci/devices/*/current_memory_partition", Store::File),
    ("/sys/bus/pci/devices/*/available_memory_partition", Store::File),
    ("/sys/bus/pci/devices/*/enforce_isolation", Store::File),
    ("/sys/bus/pci/devices/*/run_cleaner_shader", Store::Exists),
    ("/sys/bus/pci/devices/*/physfn", Store::Link),
    ("/sys/bus/pci/devices/*/sriov_numvfs", Store::File),
    ("/sys/bus/pci/devices/*/sriov_totalvfs", Store::File),
    ("/sys/bus/pci/devices/*/fw_version/*_fw_version", Store::File),
    ("/sys/bus/pci/devices/*/ras/*_err_count", Store::File),
    ("/sys/class/kfd/kfd/topology/nodes/*/properties", Store::File),
    ("/proc/sys/kernel/perf_event_paranoid", Store::File),
    ("/proc/sys/kernel/osrelease", Store::File),
    ("/dev/nvidia*", Store::Node),
    ("/dev/nvidia-caps/*", Store::Node),
    ("/dev/kfd", Store::Node),
    ("/dev/dri/renderD*", Store::Node),
    ("/dev/accel/accel*", Store::Node),
];

/// The pseudo file systems whose being mounted the manifest records.
pub const MOUNT_POINTS: [&str; 2] = ["/sys/firmware/efi/efivars", "/sys/kernel/security"];

/// What `hilt capture` may do beyond reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Enable reading option ROMs the kernel refuses to read (a brief change of device
    /// state on the live host; see [`crate::pci::read_rom`]). Off by default.
    pub enable_rom_read: bool,
}

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
    /// Paths left out because they could not be read or lead out of the allowlist.
    pub unreadable: usize,
    /// PCI functions whose attributes could not be read or parsed.
    pub pci_errors: usize,
}

/// Writes a tar of the allowlisted files under `fs` to `out`, manifest included.
pub fn capture(
    fs: &HostFs,
    out: impl Write,
    captured_at: &str,
    options: CaptureOptions,
) -> Result<CaptureReport, CaptureError> {
    let mut c = Capture {
        fs,
        tar: tar::Builder::new(out),
        report: CaptureReport::default(),
        manifest: Manifest {
            format: MANIFEST_FORMAT,
            source_root: fs.root().display().to_string(),
            captured_at: captured_at.into(),
            covered: Some(Vec::new()),
            ..Manifest::default()
        },
        dirs_done: BTreeSet::new(),
        stored: BTreeSet::new(),
        links_done: BTreeSet::new(),
    };
    c.tar.mode(tar::HeaderMode::Deterministic);
    let scan = crate::pci::accelerators(fs).unwrap_or_else(|e| {
        c.manifest.pci_errors.insert(crate::pci::DEVICES.into(), e.to_string());
        crate::pci::PciScan::default()
    });
    for broken in &scan.broken {
        c.manifest
            .pci_errors
            .insert(broken.address.clone(), broken.error.to_string());
    }
    c.report.pci_errors = c.manifest.pci_errors.len();
    let accelerators: Vec<String> = scan.functions.iter().map(|f| f.address.clone()).collect();
    let mut rules: Vec<(String, Store)> = RULES.iter().map(|(p, s)| (p.to_string(), *s)).collect();
    rules.extend(crate::efi::capture_paths().into_iter().map(|p| (p, Store::File)));
    for driver in scan.functions.iter().filter_map(|f| f.driver.clone()) {
        rules.push((format!("/sys/module/{driver}/version"), Store::File));
    }
    for (pattern, store) in &rules {
        c.covered(pattern);
        let paths = match expand(fs, pattern) {
            Ok(paths) => paths,
            Err(e) => {
                c.unreadable(&e.path.clone(), e);
                continue;
            }
        };
        for path in paths {
            if *store == Store::Rom {
                let address = path.split('/').nth(5).unwrap_or_default();
                if accelerators.iter().any(|a| a == address) {
                    c.rom(&path, address, options.enable_rom_read)?;
                }
                continue;
            }
            c.entry(&path, *store)?;
        }
    }
    c.sshd_includes()?;
    for mount_point in MOUNT_POINTS {
        if fs.mounted(mount_point).unwrap_or(false) {
            c.manifest.mounted.get_or_insert_with(Vec::new).push(mount_point.into());
        }
    }
    c.manifest.mounted.get_or_insert_with(Vec::new);
    // Denials the source root itself replays stay denials in the capture.
    for (path, why) in &fs.manifest().unreadable {
        c.manifest.unreadable.entry(path.clone()).or_insert_with(|| why.clone());
    }
    let Capture {
        mut tar,
        manifest,
        report,
        ..
    } = c;
    let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    let mut h = file_header(0o644);
    h.set_mtime(0);
    h.set_size(json.len() as u64);
    tar.append_data(&mut h, MANIFEST, json.as_slice())?;
    tar.into_inner()?.flush()?;
    Ok(report)
}

/// A capture in progress.
struct Capture<'f, W: Write> {
    fs: &'f HostFs,
    tar: tar::Builder<W>,
    report: CaptureReport,
    manifest: Manifest,
    dirs_done: BTreeSet<String>,
    stored: BTreeSet<String>,
    links_done: BTreeSet<String>,
}

impl<W: Write> Capture<'_, W> {
    fn covered(&mut self, pattern: &str) {
        let covered = self.manifest.covered.get_or_insert_with(Vec::new);
        if !covered.iter().any(|c| c == pattern) {
            covered.push(pattern.to_string());
        }
    }

    fn unreadable(&mut self, path: &str, e: HostError) {
        self.manifest.unreadable.insert(
            path.to_string(),
            Unreadable {
                kind: e.kind,
                message: e.message,
            },
        );
        self.report.unreadable += 1;
    }

    fn entry(&mut self, path: &str, store: Store) -> std::io::Result<()> {
        if !self.stored.insert(path.to_string()) {
            return Ok(());
        }
        let fs = self.fs;
        // Where the entry lies once links under /sys are followed (the links stored).
        let keep_last = matches!(store, Store::Link);
        let placed = match self.place(path, keep_last) {
            Ok(p) => p,
            Err(e) if e.kind == HostErrorKind::NotFound => return Ok(()),
            Err(e) => {
                self.unreadable(path, e);
                return Ok(());
            }
        };
        match store {
            Store::File | Store::Rom => {
                if let Err(e) = self.follows_allowed_links(path) {
                    if e.kind != HostErrorKind::NotFound {
                        self.unreadable(path, e);
                    }
                    return Ok(());
                }
                match fs.read(path) {
                    Ok(bytes) => self.file(&placed, &bytes)?,
                    Err(e) if e.kind == HostErrorKind::NotFound => {}
                    Err(e) => self.unreadable(path, e),
                }
            }
            Store::Link => match fs.read_link(path) {
                Ok(target) => self.link(&placed, &target)?,
                Err(e) if e.kind == HostErrorKind::NotFound => {}
                Err(e) => self.unreadable(path, e),
            },
            Store::Node => {
                if is_dir(fs, path) {
                    return Ok(());
                }
                match fs.stat(path) {
                    Ok(stat) => {
                        self.manifest.nodes.insert(path.to_string(), stat);
                        append_file(&mut self.tar, &placed, &[], &mut self.dirs_done)?;
                        self.report.entries += 1;
                    }
                    Err(e) if e.kind == HostErrorKind::NotFound => {}
                    Err(e) => self.unreadable(path, e),
                }
            }
            Store::Exists => {
                if fs.exists(path) {
                    self.manifest.existence_only.push(path.to_string());
                    append_file(&mut self.tar, &placed, &[], &mut self.dirs_done)?;
                    self.report.entries += 1;
                }
            }
            Store::Dir => {
                if is_dir(fs, path) {
                    add_parents(&mut self.tar, &format!("{placed}/x"), &mut self.dirs_done)?;
                    self.report.entries += 1;
                }
            }
        }
        Ok(())
    }

    /// Stores a symbolic link at host path `path` with `target` as written, once.
    fn link(&mut self, path: &str, target: &std::path::Path) -> std::io::Result<()> {
        if !self.links_done.insert(path.to_string()) {
            return Ok(());
        }
        add_parents(&mut self.tar, path, &mut self.dirs_done)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_mtime(0);
        h.set_size(0);
        self.tar.append_link(&mut h, rel(path), target)?;
        self.report.entries += 1;
        Ok(())
    }

    /// The host path `path` leads to with every link under /sys on the way followed (its
    /// last component too, unless `keep_last`), each such link stored as a link. Paths
    /// outside /sys are kept as they are: their links are judged by
    /// [`Capture::follows_allowed_links`].
    fn place(&mut self, path: &str, keep_last: bool) -> Result<String, HostError> {
        use std::collections::VecDeque;
        /// As many links as Linux follows in one lookup before `ELOOP`.
        const MAX_LINKS: u32 = 40;
        if !path.starts_with("/sys/") {
            return Ok(path.to_string());
        }
        let mut done: Vec<String> = Vec::new();
        let mut pending: VecDeque<String> = path.split('/').filter(|c| !c.is_empty()).map(str::to_string).collect();
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            match name.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let here = format!("/{}/{name}", done.join("/")).replace("//", "/");
            let last = pending.is_empty();
            if here.starts_with("/sys/")
                && !(last && keep_last)
                && let Ok(target) = self.fs.read_link(&here)
            {
                links += 1;
                if links > MAX_LINKS {
                    return Err(HostError::new(
                        path,
                        HostErrorKind::Other,
                        format!("more than {MAX_LINKS} links on the way"),
                    ));
                }
                let parts: Vec<String> = target
                    .to_string_lossy()
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect();
                // Only links that stay in /sys are stored and followed.
                let mut lands: Vec<&str> = done.iter().map(String::as_str).collect();
                for part in &parts {
                    match part.as_str() {
                        ".." => {
                            lands.pop();
                        }
                        "." => {}
                        other => lands.push(other),
                    }
                }
                if target.is_absolute() || lands.first() != Some(&"sys") {
                    return Err(HostError::new(
                        path,
                        HostErrorKind::Refused,
                        format!("{here} is a link to {}, outside /sys: not captured", target.display()),
                    ));
                }
                self.link(&here, &target).map_err(|e| crate::hostfs::error(path, &e))?;
                for part in parts.into_iter().rev() {
                    pending.push_front(part);
                }
                continue;
            }
            done.push(name);
        }
        Ok(format!("/{}", done.join("/")))
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        append_file(&mut self.tar, path, bytes, &mut self.dirs_done)?;
        self.report.files += 1;
        self.report.bytes += bytes.len() as u64;
        Ok(())
    }

    /// The option ROM of an accelerator; one that needs the opt-in write is recorded as
    /// unreadable with that reason, so that replay says so too.
    fn rom(&mut self, path: &str, address: &str, enable: bool) -> std::io::Result<()> {
        if !self.stored.insert(path.to_string()) {
            return Ok(());
        }
        if let Err(e) = self.follows_allowed_links(path) {
            if e.kind != HostErrorKind::NotFound {
                self.unreadable(path, e);
            }
            return Ok(());
        }
        if let Ok(size) = self.fs.size(path) {
            self.manifest.sizes.insert(path.to_string(), size);
        }
        let placed = match self.place(path, false) {
            Ok(p) => p,
            Err(e) => {
                self.unreadable(path, e);
                return Ok(());
            }
        };
        match crate::pci::read_rom(self.fs, address, enable) {
            Ok(bytes) => self.file(&placed, &bytes),
            Err(e) if e.kind == HostErrorKind::NotFound => Ok(()),
            Err(e) => {
                self.unreadable(path, e);
                Ok(())
            }
        }
    }

    /// Follows the sshd configuration's `Include` lines as sshd does and stores every
    /// file they name (links out of /etc and secrets excepted); the patterns join the
    /// manifest's `covered`.
    fn sshd_includes(&mut self) -> std::io::Result<()> {
        let main = match self.fs.read_text(crate::sshd::SSHD_CONFIG) {
            Ok(text) => text,
            Err(_) => return Ok(()),
        };
        let closure = crate::sshd::include_closure(self.fs, &main);
        for e in closure.errors {
            if !self.stored.contains(&e.path) {
                self.stored.insert(e.path.clone());
                self.unreadable(&e.path.clone(), e);
            }
        }
        for pattern in &closure.patterns {
            self.covered(pattern);
        }
        for file in closure.files.iter().skip(1) {
            if is_secret(file) {
                let e = HostError::new(
                    file.as_str(),
                    HostErrorKind::Refused,
                    "named by an sshd Include, but it looks like a secret, which a capture never holds",
                );
                self.unreadable(file, e);
                continue;
            }
            self.entry(file, Store::File)?;
        }
        Ok(())
    }

    /// Whether `path` may be read for the archive: a path without links, a sysfs path
    /// whose links stay in sysfs, or one whose links end on another allowlisted path. A
    /// link elsewhere (`sshd_config.d/10.conf -> /etc/shadow`) is refused, so that no
    /// secret enters the archive through a link.
    fn follows_allowed_links(&self, path: &str) -> Result<(), HostError> {
        let target = self.fs.canonical_host_path(path)?;
        let within_sysfs = path.starts_with("/sys/") && target.starts_with("/sys/");
        let allowed = target == path
            || within_sysfs
            || (!is_secret(&target)
                && (RULES
                    .iter()
                    .any(|(p, s)| *s == Store::File && crate::hostfs::path_glob(p, &target))
                    || self
                        .manifest
                        .covered
                        .iter()
                        .flatten()
                        .any(|p| p.starts_with("/etc/") && crate::hostfs::path_glob(p, &target))));
        if allowed {
            Ok(())
        } else {
            Err(HostError::new(
                path,
                HostErrorKind::Refused,
                format!("a link to {target}, outside the capture allowlist: not captured"),
            ))
        }
    }
}

/// Files a capture never holds, whatever names them: private keys and password hashes.
fn is_secret(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.contains("key")
        || name.starts_with("shadow")
        || name.starts_with("gshadow")
        || path.starts_with("/etc/ssh/ssh_host_")
        || path.starts_with("/root/")
}

fn is_dir(fs: &HostFs, path: &str) -> bool {
    fs.resolve_confined(path)
        .is_ok_and(|p| std::fs::metadata(p).is_ok_and(|m| m.is_dir()))
}

/// Adds a regular file (mode 0644, owner root, time 0) and the directories above it.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    done: &mut BTreeSet<String>,
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
fn add_parents<W: Write>(tar: &mut tar::Builder<W>, path: &str, done: &mut BTreeSet<String>) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostfs::glob;
    use std::collections::BTreeMap;

    /// The archive's entries: path, and contents for files or the target for links.
    fn entries(tar_bytes: &[u8]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut archive = tar::Archive::new(tar_bytes);
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            let body = match entry.link_name().expect("link") {
                Some(target) => format!("-> {}", target.display()),
                None => {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut entry, &mut s).expect("read");
                    s
                }
            };
            out.insert(name, body);
        }
        out
    }

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, body) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, body).expect("write");
        }
        dir
    }

    #[test]
    fn the_allowlist_keeps_secrets_out_even_through_links() {
        let dir = tree(&[
            (
                "etc/ssh/sshd_config",
                "Include /etc/ssh/sshd_config.d/*.conf\nInclude /etc/crypto/opensshserver.config\nPermitRootLogin no\n",
            ),
            ("etc/ssh/ssh_host_ed25519_key", "PRIVATE-KEY-MATERIAL"),
            ("etc/ssh/sshd_config.d/10-local.conf", "PasswordAuthentication no\n"),
            ("etc/crypto/opensshserver.config", "Ciphers aes256-gcm@openssh.com\n"),
            ("etc/shadow", "root:$6$secrethash"),
            ("etc/other/secret.txt", "TOP-SECRET"),
            ("sys/kernel/security/lockdown", "none [integrity] confidentiality\n"),
        ]);
        let root = dir.path();
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("x.conf"), "OUTSIDE-THE-ROOT").expect("write");
        let d = root.join("etc/ssh/sshd_config.d");
        std::os::unix::fs::symlink("/etc/shadow", d.join("20-shadow.conf")).expect("link");
        std::os::unix::fs::symlink("../../other/secret.txt", d.join("30-secret.conf")).expect("link");
        std::os::unix::fs::symlink(outside.path().join("x.conf"), d.join("40-out.conf")).expect("link");
        let fs = HostFs::at(root).expect("root");
        let mut tar_bytes = Vec::new();
        let report = capture(&fs, &mut tar_bytes, "", CaptureOptions::default()).expect("capture");
        let entries = entries(&tar_bytes);
        assert_eq!(
            entries["etc/ssh/sshd_config.d/10-local.conf"],
            "PasswordAuthentication no\n"
        );
        assert_eq!(
            entries["etc/crypto/opensshserver.config"], "Ciphers aes256-gcm@openssh.com\n",
            "the Include closure is captured"
        );
        assert_eq!(report.files, 4, "{entries:?}");
        for (name, body) in &entries {
            for secret in ["PRIVATE", "secrethash", "TOP-SECRET", "OUTSIDE"] {
                assert!(!body.contains(secret), "{name} holds {secret}");
            }
            assert!(!name.contains("key") && !name.contains("shadow"), "{name}");
        }
        let manifest: Manifest = serde_json::from_str(&entries[MANIFEST]).expect("manifest");
        for link in ["20-shadow.conf", "30-secret.conf", "40-out.conf"] {
            let why = &manifest.unreadable[&format!("/etc/ssh/sshd_config.d/{link}")];
            assert_eq!(why.kind, HostErrorKind::Refused, "{link}: {why:?}");
        }
        let covered = manifest.covered.expect("covered");
        assert!(covered.contains(&"/etc/crypto/opensshserver.config".to_string()));
    }

    #[test]
    fn a_directory_that_cannot_be_listed_is_an_error_and_recorded_never_nothing() {
        let dir = tree(&[
            ("etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\n"),
            ("etc/ssh/sshd_config.d/10.conf", "PermitRootLogin yes\n"),
        ]);
        // The source replays a directory it could not list (as root, chmod would not do).
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            unreadable: [(
                "/etc/ssh/sshd_config.d".to_string(),
                Unreadable {
                    kind: HostErrorKind::PermissionDenied,
                    message: "permission denied".into(),
                },
            )]
            .into(),
            ..Manifest::default()
        };
        std::fs::write(dir.path().join(MANIFEST), serde_json::to_vec(&manifest).expect("json")).expect("write");
        let fs = HostFs::at(dir.path()).expect("root");
        let e = expand(&fs, "/etc/ssh/sshd_config.d/*.conf").expect_err("denied");
        assert_eq!(e.kind, HostErrorKind::PermissionDenied);
        let mut tar_bytes = Vec::new();
        capture(&fs, &mut tar_bytes, "", CaptureOptions::default()).expect("capture");
        let entries = entries(&tar_bytes);
        assert!(!entries.contains_key("etc/ssh/sshd_config.d/10.conf"));
        let manifest: Manifest = serde_json::from_str(&entries[MANIFEST]).expect("manifest");
        assert_eq!(
            manifest.unreadable["/etc/ssh/sshd_config.d"].kind,
            HostErrorKind::PermissionDenied
        );
    }

    #[test]
    fn globs_match_within_a_component() {
        assert!(glob("renderD*", "renderD128"));
        assert!(glob("*.conf", "10-a.conf"));
        assert!(!glob("*.conf", "10-a.conf.bak"));
        assert!(glob("nvidia*", "nvidia"));
    }
}
