//! Every read of the host's files goes through a root directory, so that a live host
//! (`/`), a hand-made fixture tree and an unpacked `hilt capture` are read the same way.
//!
//! Paths are written as on the host (`/sys/class/tpm`) and joined under the root. A root
//! may hold a capture manifest ([`MANIFEST`]) that replays what a plain file tree cannot
//! carry: the mode and owner of device nodes (git keeps neither) and the files the
//! capture could not read (they read back as "permission denied", so a replayed capture
//! gives the verdicts the live host gave).
//!
//! Errors keep their meaning for checks: [`HostErrorKind::NotFound`] usually means the
//! host lacks the facility, [`HostErrorKind::PermissionDenied`] means hilt could not look.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The name of the capture manifest at the top of a root.
pub const MANIFEST: &str = "hilt-capture.json";

/// A host file system seen through a root directory.
#[derive(Debug, Clone)]
pub struct HostFs {
    root: PathBuf,
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
}

/// The kinds of read failure a check tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostErrorKind {
    /// The file does not exist.
    NotFound,
    /// The file exists but hilt may not read it.
    PermissionDenied,
    /// Anything else (an I/O error, a file that is not text).
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
    /// The manifest format, 1.
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
    /// Files that could not be read when captured, with the reason; they read back as
    /// permission denied.
    #[serde(default)]
    pub unreadable: BTreeMap<String, String>,
    /// Files stored empty because only their existence matters (`/usr/sbin/sshd`).
    #[serde(default)]
    pub existence_only: Vec<String>,
}

impl HostFs {
    /// The live host.
    pub fn live() -> HostFs {
        HostFs {
            root: PathBuf::from("/"),
            manifest: Manifest::default(),
        }
    }

    /// The host under `root`, with its capture manifest if it has one.
    pub fn at(root: &Path) -> Result<HostFs, HostError> {
        let meta = std::fs::metadata(root).map_err(|e| error(&root.display().to_string(), &e))?;
        if !meta.is_dir() {
            return Err(HostError {
                path: root.display().to_string(),
                kind: HostErrorKind::Other,
                message: "not a directory".into(),
            });
        }
        let path = root.join(MANIFEST);
        let manifest = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| HostError {
                path: path.display().to_string(),
                kind: HostErrorKind::Other,
                message: format!("not a hilt capture manifest: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(error(&path.display().to_string(), &e)),
        };
        Ok(HostFs {
            root: root.to_path_buf(),
            manifest,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the root is the live host's `/`.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The manifest (empty for the live host and for trees without one).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where host path `path` lies under the root.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The bytes of a file.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, HostError> {
        self.replayed_denial(path)?;
        std::fs::read(self.resolve(path)).map_err(|e| error(path, &e))
    }

    /// A text file, trimmed of surrounding whitespace.
    pub fn read_trimmed(&self, path: &str) -> Result<String, HostError> {
        self.read_text(path).map(|s| s.trim().to_string())
    }

    /// A text file as it is.
    pub fn read_text(&self, path: &str) -> Result<String, HostError> {
        let bytes = self.read(path)?;
        String::from_utf8(bytes).map_err(|_| HostError {
            path: path.into(),
            kind: HostErrorKind::Other,
            message: "not UTF-8 text".into(),
        })
    }

    /// The names in a directory, sorted.
    pub fn list(&self, path: &str) -> Result<Vec<String>, HostError> {
        self.replayed_denial(path)?;
        let entries = std::fs::read_dir(self.resolve(path)).map_err(|e| error(path, &e))?;
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

    /// The last component of a symbolic link's target (`driver` → `nvidia`).
    pub fn link_name(&self, path: &str) -> Result<String, HostError> {
        self.replayed_denial(path)?;
        let target = std::fs::read_link(self.resolve(path)).map_err(|e| error(path, &e))?;
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| HostError {
                path: path.into(),
                kind: HostErrorKind::Other,
                message: format!("link target {} has no name", target.display()),
            })
    }

    /// Whether something exists at `path` (a dangling link counts).
    pub fn exists(&self, path: &str) -> bool {
        self.manifest.unreadable.contains_key(path) || std::fs::symlink_metadata(self.resolve(path)).is_ok()
    }

    /// Mode and owner of `path`: from the manifest where it records them, else `stat`.
    pub fn stat(&self, path: &str) -> Result<NodeStat, HostError> {
        if let Some(stat) = self.manifest.nodes.get(path) {
            return Ok(*stat);
        }
        self.replayed_denial(path)?;
        let meta = std::fs::metadata(self.resolve(path)).map_err(|e| error(path, &e))?;
        Ok(NodeStat {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    /// Writes `value` to a sysfs attribute: the only write hilt makes to a host, used to
    /// enable reading a PCI option ROM (see [`crate::pci::read_rom`]).
    pub fn write_attribute(&self, path: &str, value: &str) -> Result<(), HostError> {
        std::fs::write(self.resolve(path), value).map_err(|e| error(path, &e))
    }

    fn replayed_denial(&self, path: &str) -> Result<(), HostError> {
        match self.manifest.unreadable.get(path) {
            Some(why) => Err(HostError {
                path: path.into(),
                kind: HostErrorKind::PermissionDenied,
                message: format!("unreadable when captured ({why})"),
            }),
            None => Ok(()),
        }
    }
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
        HostErrorKind::Other => e.to_string(),
    };
    HostError {
        path: path.into(),
        kind,
        message,
    }
}

#[cfg(test)]
mod tests {
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
    fn the_manifest_replays_modes_and_denials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = Manifest {
            format: 1,
            nodes: [(
                "/dev/nvidia0".to_string(),
                NodeStat {
                    mode: 0o20666,
                    uid: 0,
                    gid: 0,
                },
            )]
            .into(),
            unreadable: [("/etc/ssh/sshd_config".to_string(), "permission denied".to_string())].into(),
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
