//! Every read of the host's files goes through a root directory, so that a live host
//! (`/`), a hand-made fixture tree and an unpacked `hilt capture` are read the same way.
//!
//! Paths are written as on the host (`/sys/class/tpm`) and joined under the root. A root
//! may hold a capture manifest ([`MANIFEST`]) that replays what a plain file tree cannot
//! carry: the mode and owner of device nodes (git keeps neither), the files the capture
//! could not read (they read back with the error they gave, so a replayed capture gives
//! the verdicts the live host gave), what it covered and which pseudo file systems were
//! mounted.
//!
//! A replayed root is a tree someone else made, so it is read defensively: every link and
//! `..` is resolved and a path that leads outside the root is refused
//! ([`HostErrorKind::Refused`]), only regular files are read, and no read takes more than
//! [`READ_LIMIT`] bytes (option ROMs a little more). Nothing is ever written under it.
//!
//! Errors keep their meaning for checks: [`HostErrorKind::NotFound`] usually means the
//! host lacks the facility, [`HostErrorKind::PermissionDenied`] means hilt could not look.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The name of the capture manifest at the top of a root.
pub const MANIFEST: &str = "hilt-capture.json";

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 2;

/// The most bytes [`HostFs::read`] takes from one file: far above any sysfs attribute or
/// configuration file, far below what `/dev/zero` behind a link would give.
pub const READ_LIMIT: u64 = 16 << 20;

/// A host file system seen through a root directory.
#[derive(Debug, Clone)]
pub struct HostFs {
    root: PathBuf,
    /// The canonical root: every path a non-live root resolves to must lie under it.
    canonical: PathBuf,
    live: bool,
    manifest: Manifest,
}

/// Why a host file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to read {path}: {message}")]
pub struct HostError {
    /// The path as on the host (`/sys/...`).
    pub path: String,
    /// What kind of failure.
    pub kind: HostErrorKind,
    /// The operating system's message.
    pub message: String,
    /// The operating system's error number, where there was one (`EINVAL` from a ROM
    /// whose reading is not enabled).
    pub os_error: Option<i32>,
}

impl HostError {
    /// An error without an operating system error number.
    pub fn new(path: impl Into<String>, kind: HostErrorKind, message: impl Into<String>) -> HostError {
        HostError {
            path: path.into(),
            kind,
            message: message.into(),
            os_error: None,
        }
    }
}

/// The kinds of read failure a check tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostErrorKind {
    /// The file does not exist.
    NotFound,
    /// The file exists but hilt may not read it.
    PermissionDenied,
    /// The path leads outside a replayed root (a link or `..`), or a capture left it out
    /// on purpose (a link out of its allowlist): hilt will not look.
    Refused,
    /// Anything else (an I/O error, a file that is not text, one too large).
    Other,
}

/// Mode and owner of a file, as `stat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStat {
    /// The full `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl NodeStat {
    /// The permission bits, `0o7777` of the mode.
    pub fn perms(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// The manifest of a capture: what the tree alone cannot say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format, [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The root the capture was taken from.
    #[serde(default)]
    pub source_root: String,
    /// When, RFC 3339 UTC; empty for hand-made fixtures.
    #[serde(default)]
    pub captured_at: String,
    /// Mode and owner of device nodes and other files whose permissions matter, by host
    /// path (`/dev/nvidia0`).
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeStat>,
    /// Files and directories that could not be read when captured, with why; they read
    /// back with the same kind of error.
    #[serde(default)]
    pub unreadable: BTreeMap<String, Unreadable>,
    /// Files stored empty because only their existence matters (`/usr/sbin/sshd`).
    #[serde(default)]
    pub existence_only: Vec<String>,
    /// The host path patterns the capture looked at (its allowlist and the sshd
    /// `Include` patterns it followed); `None` for hand-made trees, which cover
    /// everything. A pattern outside them was not captured, so its absence proves nothing.
    #[serde(default)]
    pub covered: Option<Vec<String>>,
    /// The pseudo file systems that were mounted (`/sys/firmware/efi/efivars`,
    /// `/sys/kernel/security`), by mount point; `None` for hand-made trees, where a
    /// non-empty directory counts as mounted.
    #[serde(default)]
    pub mounted: Option<Vec<String>>,
    /// The size `stat` gave files whose size is a fact (a PCI `rom` file's size is the
    /// size of the device's ROM), by host path.
    #[serde(default)]
    pub sizes: BTreeMap<String, u64>,
    /// PCI functions whose attributes could not be read or parsed, by address.
    #[serde(default)]
    pub pci_errors: BTreeMap<String, String>,
}

/// What identifies a replayed tree, for the record of a run that read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayIdentity {
    /// When it was captured (RFC 3339 UTC), from its manifest; `None` for hand-made trees.
    pub captured_at: Option<String>,
    /// The root it was captured from, from its manifest; `None` for hand-made trees.
    pub source_root: Option<String>,
    /// The sha256 (hex) of its manifest as stored; `None` without one.
    pub manifest_sha256: Option<String>,
    /// The sha256 (hex) of the whole tree ([`tree_sha256`]); `None` when it could not be
    /// read in full or is larger than the digest's bounds.
    pub tree_sha256: Option<String>,
}

/// The most entries [`tree_sha256`] digests: a capture holds a few hundred.
pub const DIGEST_MAX_ENTRIES: usize = 100_000;

/// The most file bytes [`tree_sha256`] digests (option ROMs are the largest files).
pub const DIGEST_MAX_BYTES: u64 = 1 << 30;

/// The sha256 (hex) of a tree: for every entry below `root`, in byte order of its
/// relative path, its kind and path, then for a file its length and contents, for a link
/// its target as written (never followed). Directories are entries too, so an empty one
/// counts; other kinds (FIFOs, sockets, devices) count by kind and path only and are
/// never opened. `None` when an entry cannot be read, or beyond [`DIGEST_MAX_ENTRIES`]
/// entries or [`DIGEST_MAX_BYTES`] bytes.
pub fn tree_sha256(root: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let mut hasher = sha2::Sha256::new();
    let mut entries = 0usize;
    let mut bytes = 0u64;
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(root.join(&dir))
            .ok()?
            .map(|e| e.map(|e| dir.join(e.file_name())))
            .collect::<Result<_, _>>()
            .ok()?;
        names.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
        // Depth first, in order: subdirectories go on the stack in reverse.
        let mut subdirs = Vec::new();
        for rel in names {
            entries += 1;
            if entries > DIGEST_MAX_ENTRIES {
                return None;
            }
            let path = root.join(&rel);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            let kind = meta.file_type();
            let tag: &[u8] = if kind.is_dir() {
                b"d"
            } else if kind.is_file() {
                b"f"
            } else if kind.is_symlink() {
                b"l"
            } else {
                b"o"
            };
            hasher.update(tag);
            hasher.update(rel.as_os_str().as_bytes());
            hasher.update([0]);
            if kind.is_dir() {
                subdirs.push(rel);
            } else if kind.is_file() {
                bytes += meta.len();
                if bytes > DIGEST_MAX_BYTES {
                    return None;
                }
                let mut file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&path)
                    .ok()?;
                hasher.update(meta.len().to_le_bytes());
                let mut copied = 0u64;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            copied += n as u64;
                            if copied > meta.len() {
                                return None;
                            }
                            hasher.update(&buf[..n]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return None,
                    }
                }
                if copied != meta.len() {
                    return None;
                }
            } else if kind.is_symlink() {
                hasher.update(std::fs::read_link(&path).ok()?.as_os_str().as_bytes());
                hasher.update([0]);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Some(crate::hex(&hasher.finalize()))
}

/// A file a capture could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unreadable {
    /// What kind of failure.
    pub kind: HostErrorKind,
    /// The message at capture time.
    pub message: String,
}

impl HostFs {
    /// The live host.
    pub fn live() -> HostFs {
        HostFs {
            root: PathBuf::from("/"),
            canonical: PathBuf::from("/"),
            live: true,
            manifest: Manifest::default(),
        }
    }

    /// The host under `root`, with its capture manifest if it has one. A root that
    /// canonicalises to `/` is the live host.
    pub fn at(root: &Path) -> Result<HostFs, HostError> {
        let shown = root.display().to_string();
        let canonical = std::fs::canonicalize(root).map_err(|e| error(&shown, &e))?;
        if !canonical.is_dir() {
            return Err(HostError::new(shown, HostErrorKind::Other, "not a directory"));
        }
        if canonical == Path::new("/") {
            return Ok(HostFs::live());
        }
        let path = canonical.join(MANIFEST);
        let manifest = match read_capped(&path, READ_LIMIT, true) {
            Ok(bytes) => parse_manifest(&bytes)
                .map_err(|message| HostError::new(path.display().to_string(), HostErrorKind::Other, message))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(error(&path.display().to_string(), &e)),
        };
        Ok(HostFs {
            root: root.to_path_buf(),
            canonical,
            live: false,
            manifest,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the root is the live host's `/`.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The manifest (empty for the live host and for trees without one).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What identifies a replayed tree (`None` for the live host): its manifest's
    /// capture time and source, the sha256 of the manifest, and the sha256 of the whole
    /// tree (see [`tree_sha256`]). Reads the whole tree, so it is for the run's header,
    /// once.
    pub fn replay_identity(&self) -> Option<ReplayIdentity> {
        if self.live {
            return None;
        }
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let manifest_sha256 = read_capped(&self.canonical.join(MANIFEST), READ_LIMIT, true)
            .ok()
            .map(|bytes| crate::hex(&sha2::Sha256::digest(&bytes)));
        Some(ReplayIdentity {
            captured_at: non_empty(&self.manifest.captured_at),
            source_root: non_empty(&self.manifest.source_root),
            manifest_sha256,
            tree_sha256: tree_sha256(&self.canonical),
        })
    }

    /// Where host path `path` lies under the root, joined without resolving anything.
    /// Reads go through [`HostFs::resolve_confined`] instead.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Where host path `path` lies under the root, with every link and `..` resolved.
    /// Under a replayed root, a path that resolves outside it is refused; on the live
    /// host it is the path itself.
    pub fn resolve_confined(&self, path: &str) -> Result<PathBuf, HostError> {
        if self.live {
            return Ok(self.resolve(path));
        }
        self.resolve_in_root(path)
    }

    /// Resolves host path `path` under a replayed root one component at a time, the way
    /// the host would resolve it, and refuses it the moment it leaves the root: a `..`
    /// above the root's top or a link to an absolute path. Where the root lies on this
    /// machine never changes the answer (a `..` chain that would climb out of a shallow
    /// root is refused under a deep one too).
    fn resolve_in_root(&self, path: &str) -> Result<PathBuf, HostError> {
        use std::collections::VecDeque;
        use std::ffi::OsString;
        use std::path::Component;
        /// As many links as Linux follows in one lookup before `ELOOP`.
        const MAX_LINKS: u32 = 40;
        let names = |p: &Path| -> Vec<OsString> {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_os_string()),
                    Component::ParentDir => Some(OsString::from("..")),
                    Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
                })
                .collect()
        };
        let mut below: PathBuf = PathBuf::new();
        let mut pending: VecDeque<OsString> = names(Path::new(path)).into();
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                if !below.pop() {
                    let rest: PathBuf = pending.iter().collect();
                    return Err(self.refused(
                        path,
                        format!(
                            "climbs above the top of the root {} (to {})",
                            self.root.display(),
                            normalise(&Path::new("/").join(rest)).display()
                        ),
                    ));
                }
                continue;
            }
            let here = self.canonical.join(&below).join(&name);
            let meta = std::fs::symlink_metadata(&here).map_err(|e| error(path, &e))?;
            if !meta.file_type().is_symlink() {
                // As on the host: nothing lies below a file, not even `..`.
                let more = !pending.is_empty() || path.ends_with('/');
                if more && !meta.is_dir() {
                    return Err(error(path, &std::io::Error::from_raw_os_error(libc::ENOTDIR)));
                }
                below.push(&name);
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(HostError::new(
                    path,
                    HostErrorKind::Other,
                    format!("more than {MAX_LINKS} links on the way"),
                ));
            }
            let target = std::fs::read_link(&here).map_err(|e| error(path, &e))?;
            if target.is_absolute() {
                return Err(self.refused(
                    path,
                    format!(
                        "leads through a link to the absolute path {}, which hilt does not follow under the \
                         replayed root {}",
                        target.display(),
                        self.root.display()
                    ),
                ));
            }
            for n in names(&target).into_iter().rev() {
                pending.push_front(n);
            }
        }
        Ok(self.canonical.join(below))
    }

    /// The refusal of `path`, which would leave a replayed root, and `why`.
    fn refused(&self, path: &str, why: String) -> HostError {
        HostError::new(path, HostErrorKind::Refused, format!("{why}, so hilt will not read it"))
    }

    /// The host path that `path` resolves to, every link and `..` followed
    /// (`/sys/bus/pci/devices/0000:17:00.0/vendor` → `/sys/devices/pci0000:16/.../vendor`).
    pub fn canonical_host_path(&self, path: &str) -> Result<String, HostError> {
        let canonical = match self.live {
            true => std::fs::canonicalize(self.resolve(path)).map_err(|e| error(path, &e))?,
            false => self.resolve_confined(path)?,
        };
        let below = canonical.strip_prefix(&self.canonical).unwrap_or(&canonical);
        Ok(format!("/{}", below.display()).replace("//", "/"))
    }

    /// The bytes of a file, at most [`READ_LIMIT`].
    pub fn read(&self, path: &str) -> Result<Vec<u8>, HostError> {
        self.read_limited(path, READ_LIMIT)
    }

    /// The bytes of a file, at most `limit` of them (a larger file is an error). Under a
    /// replayed root only regular files are read.
    pub fn read_limited(&self, path: &str, limit: u64) -> Result<Vec<u8>, HostError> {
        self.replayed_denial(path)?;
        let file = self.resolve_confined(path)?;
        read_capped(&file, limit, !self.live).map_err(|e| error(path, &e))
    }

    /// A text file, trimmed of surrounding whitespace.
    pub fn read_trimmed(&self, path: &str) -> Result<String, HostError> {
        self.read_text(path).map(|s| s.trim().to_string())
    }

    /// A text file as it is.
    pub fn read_text(&self, path: &str) -> Result<String, HostError> {
        let bytes = self.read(path)?;
        String::from_utf8(bytes).map_err(|_| HostError::new(path, HostErrorKind::Other, "not UTF-8 text"))
    }

    /// The names in a directory, sorted.
    pub fn list(&self, path: &str) -> Result<Vec<String>, HostError> {
        self.replayed_denial(path)?;
        let dir = self.resolve_confined(path)?;
        let entries = std::fs::read_dir(dir).map_err(|e| error(path, &e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| error(path, &e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// The names in a directory, or none when it does not exist.
    pub fn list_or_empty(&self, path: &str) -> Result<Vec<String>, HostError> {
        match self.list(path) {
            Err(e) if e.kind == HostErrorKind::NotFound => Ok(Vec::new()),
            other => other,
        }
    }

    /// The target of the symbolic link at `path`, as written, without following it.
    pub fn read_link(&self, path: &str) -> Result<PathBuf, HostError> {
        self.replayed_denial(path)?;
        let link = self.resolve_unfollowed(path)?;
        std::fs::read_link(link).map_err(|e| error(path, &e))
    }

    /// The last component of a symbolic link's target (`driver` → `nvidia`).
    pub fn link_name(&self, path: &str) -> Result<String, HostError> {
        let target = self.read_link(path)?;
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                HostError::new(
                    path,
                    HostErrorKind::Other,
                    format!("link target {} has no name", target.display()),
                )
            })
    }

    /// Whether something exists at `path` (a dangling link counts).
    pub fn exists(&self, path: &str) -> bool {
        self.manifest.unreadable.contains_key(path)
            || self
                .resolve_unfollowed(path)
                .is_ok_and(|p| std::fs::symlink_metadata(p).is_ok())
    }

    /// Mode and owner of `path`: from the manifest where it records them, else `stat`.
    pub fn stat(&self, path: &str) -> Result<NodeStat, HostError> {
        if let Some(stat) = self.manifest.nodes.get(path) {
            return Ok(*stat);
        }
        self.replayed_denial(path)?;
        let meta = std::fs::metadata(self.resolve_confined(path)?).map_err(|e| error(path, &e))?;
        Ok(NodeStat {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    /// The size of a file as `stat` gives it (for a PCI `rom` file, the ROM's size): from
    /// the manifest where it records it, else `stat`.
    pub fn size(&self, path: &str) -> Result<u64, HostError> {
        if let Some(size) = self.manifest.sizes.get(path) {
            return Ok(*size);
        }
        self.replayed_denial(path)?;
        let meta = std::fs::metadata(self.resolve_confined(path)?).map_err(|e| error(path, &e))?;
        Ok(meta.len())
    }

    /// Whether the pseudo file system at `mount_point` was mounted: what the capture
    /// recorded, else whether the directory has entries (an unmounted efivarfs or
    /// securityfs is an empty directory).
    pub fn mounted(&self, mount_point: &str) -> Result<bool, HostError> {
        match &self.manifest.mounted {
            Some(list) => Ok(list.iter().any(|m| m == mount_point)),
            None => Ok(!self.list_or_empty(mount_point)?.is_empty()),
        }
    }

    /// Whether the files matching host path pattern `pattern` are in this tree as they
    /// were on the host: always for the live host and hand-made trees; for a capture,
    /// when the pattern lies within what it looked at.
    pub fn covers(&self, pattern: &str) -> bool {
        match &self.manifest.covered {
            None => true,
            Some(covered) => covered.iter().any(|c| c == pattern || path_glob(c, pattern)),
        }
    }

    /// Writes `value` to a sysfs attribute of the live host: the only write hilt makes
    /// to a host, used to let the kernel read a PCI option ROM when a profile or
    /// `hilt capture --enable-rom-read` opts in (see [`crate::pci::read_rom`]).
    ///
    /// Refused unless the root is the live `/` and `path` resolves under
    /// `/sys/devices/`; the file is opened without following a final link, never
    /// created, and written with one `write`, as sysfs attributes expect.
    pub fn write_attribute(&self, path: &str, value: &[u8]) -> Result<(), HostError> {
        if !self.live {
            return Err(HostError::new(
                path,
                HostErrorKind::Refused,
                format!(
                    "hilt writes only to the live host's sysfs, not under {}",
                    self.root.display()
                ),
            ));
        }
        let canonical = std::fs::canonicalize(self.resolve(path)).map_err(|e| error(path, &e))?;
        if !canonical.starts_with("/sys/devices/") {
            return Err(HostError::new(
                path,
                HostErrorKind::Refused,
                format!(
                    "resolves to {}, outside /sys/devices/, so hilt will not write to it",
                    canonical.display()
                ),
            ));
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&canonical)
            .map_err(|e| error(path, &e))?;
        match std::io::Write::write(&mut file, value) {
            Ok(n) if n == value.len() => Ok(()),
            Ok(n) => Err(HostError::new(
                path,
                HostErrorKind::Other,
                format!("wrote {n} of {} bytes", value.len()),
            )),
            Err(e) => Err(error(path, &e)),
        }
    }

    /// The path of `path` itself (its last component not followed) under the root, with
    /// its directory confined like [`HostFs::resolve_confined`].
    fn resolve_unfollowed(&self, path: &str) -> Result<PathBuf, HostError> {
        if self.live {
            return Ok(self.resolve(path));
        }
        let trimmed = path.trim_end_matches('/');
        let (dir, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        if name.is_empty() || name == "." || name == ".." {
            return self.resolve_confined(path);
        }
        Ok(self.resolve_in_root(dir)?.join(name))
    }

    fn replayed_denial(&self, path: &str) -> Result<(), HostError> {
        match self.manifest.unreadable.get(path) {
            Some(why) => Err(HostError::new(
                path,
                why.kind,
                format!("unreadable when captured ({})", why.message),
            )),
            None => Ok(()),
        }
    }
}

/// `path` with `.` and `..` taken away lexically, `..` at the top staying there, as on a
/// host (`/etc/../../x` is `/x`): for messages only.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A host error for `path` from an I/O error.
pub fn error(path: &str, e: &std::io::Error) -> HostError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => HostErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => HostErrorKind::PermissionDenied,
        _ if e.raw_os_error() == Some(libc::ENOTDIR) => HostErrorKind::NotFound,
        _ => HostErrorKind::Other,
    };
    let message = match kind {
        HostErrorKind::NotFound => "no such file or directory".to_string(),
        HostErrorKind::PermissionDenied => "permission denied".to_string(),
        HostErrorKind::Refused | HostErrorKind::Other => e.to_string(),
    };
    HostError {
        path: path.into(),
        kind,
        message,
        os_error: e.raw_os_error(),
    }
}

/// The host paths under `fs` that `pattern` names: `*` matches within one component. A
/// directory that does not exist matches nothing; one that cannot be listed is an error,
/// never silently nothing.
pub fn expand(fs: &HostFs, pattern: &str) -> Result<Vec<String>, HostError> {
    let mut paths = vec![String::new()];
    for component in pattern.trim_start_matches('/').split('/') {
        let mut next = Vec::new();
        for base in paths {
            if component.contains('*') {
                let dir = if base.is_empty() { "/".to_string() } else { base.clone() };
                let names = match fs.list(&dir) {
                    Ok(n) => n,
                    Err(e) if e.kind == HostErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                next.extend(
                    names
                        .into_iter()
                        .filter(|n| n != MANIFEST && glob(component, n))
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

/// Whether host path `path` matches `pattern`, component by component, `*` matching
/// within one component (`/dev/dri/renderD*` matches `/dev/dri/renderD128`).
pub fn path_glob(pattern: &str, path: &str) -> bool {
    let (p, t): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == t.len() && p.iter().zip(&t).all(|(p, t)| glob(p, t))
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
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

/// Reads at most `limit` bytes of `path`; more is an error. With `regular_only`, the
/// file is opened without following a final link and without blocking (a FIFO), and
/// anything but a regular file is refused.
fn read_capped(path: &Path, limit: u64, regular_only: bool) -> std::io::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    if regular_only {
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if regular_only && !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file, which a replayed root may not hold",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than the {limit} bytes hilt reads from one file"
        )));
    }
    Ok(bytes)
}

/// A manifest from its JSON, refusing other formats with a message that says so.
fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a hilt capture manifest: {e}"))?;
    let format = value.get("format").and_then(serde_json::Value::as_u64);
    if format != Some(u64::from(MANIFEST_FORMAT)) {
        return Err(format!(
            "capture manifest format {}, but this hilt reads format {MANIFEST_FORMAT} (capture again)",
            format.map_or_else(|| "missing".to_string(), |f| f.to_string())
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("not a hilt capture manifest: {e}"))
}

/// `text` as the kernel's `%u`/`%llu` writes a number: decimal digits, no sign, no
/// leading zero (but `0` itself); `None` for anything else, which no kernel wrote (a
/// replayed tree edited by hand: `+1`, `01`, `0x1`).
pub fn kernel_decimal(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    if digits && canonical { text.parse().ok() } else { None }
}

/// `text` as the kernel's `%d`/`%ld` writes a number: [`kernel_decimal`] with an optional
/// leading `-` (never `-0`); `None` for anything else.
pub fn kernel_int(text: &str) -> Option<i64> {
    match text.strip_prefix('-') {
        Some(magnitude) => kernel_decimal(magnitude)
            .filter(|n| *n != 0)
            .and_then(|n| i64::try_from(n).ok())
            .map(|n| -n),
        None => kernel_decimal(text).and_then(|n| i64::try_from(n).ok()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_read_as_the_kernel_writes_them() {
        assert_eq!(kernel_decimal("0"), Some(0));
        assert_eq!(kernel_decimal("206158430208"), Some(206_158_430_208));
        assert_eq!(kernel_int("-1"), Some(-1));
        assert_eq!(kernel_int("2"), Some(2));
        for edited in ["", "+1", "01", "0x1", "1.0", " 1", "-", "1e3"] {
            assert_eq!(kernel_decimal(edited), None, "{edited:?}");
            assert_eq!(kernel_int(edited), None, "{edited:?}");
        }
        for edited in ["-0", "--1", "-01", "+-1"] {
            assert_eq!(kernel_int(edited), None, "{edited:?}");
        }
        assert_eq!(kernel_decimal("-1"), None);
    }

    use super::*;

    #[test]
    fn reads_go_under_the_root_and_errors_keep_their_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys/x")).expect("mkdir");
        std::fs::write(dir.path().join("sys/x/a"), " 1\n").expect("write");
        let fs = HostFs::at(dir.path()).expect("root");
        assert_eq!(fs.read_trimmed("/sys/x/a").expect("read"), "1");
        assert_eq!(fs.list("/sys/x").expect("list"), ["a"]);
        let e = fs.read("/sys/x/missing").expect_err("missing");
        assert_eq!(e.kind, HostErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "failed to read /sys/x/missing: no such file or directory"
        );
        assert_eq!(
            fs.read("/sys/x/a/below").expect_err("below a file").kind,
            HostErrorKind::NotFound
        );
    }

    #[test]
    fn a_replayed_root_confines_links_and_dots_and_bounds_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("x.conf"), "secret").expect("write");
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/ssh")).expect("mkdir");
        std::fs::write(root.join("etc/ok"), "inside").expect("write");
        std::os::unix::fs::symlink("../ok", root.join("etc/ssh/in.conf")).expect("link");
        std::os::unix::fs::symlink(outside.path().join("x.conf"), root.join("etc/ssh/out.conf")).expect("link");
        std::os::unix::fs::symlink("/dev/zero", root.join("etc/zero")).expect("link");
        std::fs::write(root.join("etc/big"), vec![b'x'; READ_LIMIT as usize + 1]).expect("write");
        let fifo = std::ffi::CString::new(root.join("etc/fifo").as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let fs = HostFs::at(root).expect("root");
        assert!(!fs.is_live());
        assert_eq!(fs.read_trimmed("/etc/ssh/in.conf").expect("inside link"), "inside");
        let climb = format!(
            "/etc/ssh/{}/x.conf",
            "../".repeat(12) + outside.path().to_str().expect("utf-8")
        );
        for path in ["/etc/ssh/out.conf", "/etc/zero", climb.as_str()] {
            let e = fs.read(path).expect_err(path);
            assert_eq!(e.kind, HostErrorKind::Refused, "{path}: {e}");
            assert!(
                e.message.contains("climbs above the top of the root")
                    || e.message.contains("leads through a link to the absolute path"),
                "{e}"
            );
        }
        // Refused whatever the root's depth on this machine: a climb that leaves a shallow
        // root must not turn into a harmless miss under a deep one.
        let deep = dir.path().join("d/".repeat(30)).join("root");
        std::fs::create_dir_all(deep.join("etc/ssh")).expect("mkdir");
        std::fs::write(deep.join("x.conf"), "inside").expect("write");
        let deep_fs = HostFs::at(&deep).expect("deep root");
        for (path, shown) in [
            ("/etc/ssh/../../../../../../../../etc/passwd", "/etc/passwd"),
            ("/etc/ssh/../../../x.conf", "/x.conf"),
        ] {
            let e = deep_fs.read(path).expect_err(path);
            assert_eq!(e.kind, HostErrorKind::Refused, "{path}: {e}");
            assert!(
                e.message.contains("climbs above the top of the root") && e.message.contains(&format!("(to {shown})")),
                "{e}"
            );
        }
        assert_eq!(
            deep_fs.read_trimmed("/etc/ssh/../../x.conf").expect("stays inside"),
            "inside"
        );
        // Nothing lies below a file, not even `..`: the host says ENOTDIR, hilt NotFound.
        for path in ["/x.conf/../x.conf", "/x.conf/"] {
            let e = deep_fs.read(path).expect_err(path);
            assert_eq!(e.kind, HostErrorKind::NotFound, "{path}: {e}");
        }
        std::os::unix::fs::symlink("loop", root.join("etc/loop")).expect("link");
        let e = fs.read("/etc/loop").expect_err("a link to itself");
        assert!(e.message.contains("links on the way"), "{e}");
        let e = fs.read("/etc/big").expect_err("too large");
        assert!(e.message.contains("larger than"), "{e}");
        let e = fs.read("/etc/fifo").expect_err("fifo");
        assert!(e.message.contains("not a regular file"), "{e}");
        assert_eq!(fs.link_name("/etc/ssh/out.conf").expect("a link itself"), "x.conf");
        assert!(HostFs::at(Path::new("/")).expect("live").is_live());
    }

    #[test]
    fn a_tree_digest_changes_with_any_byte_name_or_link_and_never_follows_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("sys/a")).expect("mkdir");
        std::fs::create_dir_all(root.join("empty")).expect("mkdir");
        std::fs::write(root.join("sys/a/x"), "1\n").expect("write");
        std::os::unix::fs::symlink("/dev/zero", root.join("sys/zero")).expect("link");
        let first = tree_sha256(root).expect("digest");
        assert_eq!(tree_sha256(root).as_deref(), Some(first.as_str()), "stable");
        std::fs::write(root.join("sys/a/x"), "2\n").expect("write");
        let second = tree_sha256(root).expect("digest");
        assert_ne!(first, second, "a changed byte");
        std::fs::rename(root.join("sys/a/x"), root.join("sys/a/y")).expect("rename");
        assert_ne!(tree_sha256(root).expect("digest"), second, "a renamed file");
        std::fs::rename(root.join("sys/a/y"), root.join("sys/a/x")).expect("rename");
        assert_eq!(tree_sha256(root).expect("digest"), second);
        std::fs::remove_dir(root.join("empty")).expect("rmdir");
        assert_ne!(tree_sha256(root).expect("digest"), second, "an empty directory counts");
        std::fs::create_dir(root.join("empty")).expect("mkdir");
        std::fs::remove_file(root.join("sys/zero")).expect("rm");
        std::os::unix::fs::symlink("/dev/null", root.join("sys/zero")).expect("link");
        assert_ne!(tree_sha256(root).expect("digest"), second, "a link's target counts");
        let fs = HostFs::at(root).expect("root");
        let id = fs.replay_identity().expect("replayed");
        assert_eq!(id.tree_sha256, tree_sha256(root));
        assert_eq!((id.captured_at, id.manifest_sha256), (None, None));
        assert_eq!(HostFs::live().replay_identity(), None);
    }

    #[test]
    fn the_manifest_replays_modes_and_denials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            nodes: [(
                "/dev/nvidia0".to_string(),
                NodeStat {
                    mode: 0o20666,
                    uid: 0,
                    gid: 0,
                },
            )]
            .into(),
            unreadable: [(
                "/etc/ssh/sshd_config".to_string(),
                Unreadable {
                    kind: HostErrorKind::PermissionDenied,
                    message: "permission denied".to_string(),
                },
            )]
            .into(),
            ..Manifest::default()
        };
        std::fs::write(dir.path().join(MANIFEST), serde_json::to_vec(&manifest).expect("json")).expect("write");
        let fs = HostFs::at(dir.path()).expect("root");
        assert_eq!(fs.stat("/dev/nvidia0").expect("stat").perms(), 0o666);
        let e = fs.read("/etc/ssh/sshd_config").expect_err("denied");
        assert_eq!(e.kind, HostErrorKind::PermissionDenied);
        assert!(fs.exists("/etc/ssh/sshd_config"));
    }
}
