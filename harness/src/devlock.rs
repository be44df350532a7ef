//! One run per device at a time, across the whole node: a Slurm job, a Kubernetes pod and
//! a CI job that land on the same machine must never measure one accelerator at once,
//! since each would see the other's work in its figures and its memory.
//!
//! Every device a run will open gets a lock file in a directory shared by the node
//! (`/run/lock` by default, or `HILT_LOCK_DIR`; a pod mounts the host's), named by the
//! device's identity: its PCI address where it has one, so that the CUDA and the OpenCL
//! view of one GPU take the same lock, else its backend and id (`sim-sim0`). The lock is
//! an advisory `flock(2)` on that file, held for the whole run and released by the
//! kernel when the process ends however it ends, so a killed run never leaves a device
//! locked. Locks are taken in name order, so two runs that want the same devices never
//! hold one each while waiting for the other. A run that finds a device locked waits up
//! to a timeout, then gives up without running anything.
//!
//! The holder writes who it is (pid, node, when it took the lock) into the file, so the
//! one that waits can say whom it waits for.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::accel::DeviceInfo;

/// The lock directory when `HILT_LOCK_DIR` is not set: the Filesystem Hierarchy
/// Standard's place for lock files, shared by every process of the node.
pub const DEFAULT_DIR: &str = "/run/lock";

/// How long a run waits for a busy device by default, seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 900;

/// Where locks live and how long to wait for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSettings {
    /// The directory of the lock files, shared by every hilt run on the node.
    pub dir: PathBuf,
    /// How long to wait for all devices to be free, from the first attempt.
    pub timeout: Duration,
}

impl LockSettings {
    /// The settings from `HILT_LOCK_DIR` (default [`DEFAULT_DIR`]) and `timeout`.
    pub fn from_env(timeout: Duration) -> LockSettings {
        LockSettings {
            dir: std::env::var_os("HILT_LOCK_DIR")
                .filter(|d| !d.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from),
            timeout,
        }
    }
}

/// Why the devices could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another run held a device for longer than the timeout.
    #[error(
        "device {device} is in use by another hilt run ({holder}) and was still locked after {} s \
         (lock file {}); nothing ran. `--lock-timeout` waits longer",
        .waited.as_secs(),
        .path.display()
    )]
    Busy {
        /// The device's id in this run.
        device: String,
        /// Who holds it, as its lock file says.
        holder: String,
        /// How long this run waited.
        waited: Duration,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock directory or a lock file could not be used.
    #[error(
        "cannot use the device lock file {}: {source} (set HILT_LOCK_DIR to a directory that every hilt run on \
         this node can write)",
        .path.display()
    )]
    Unusable {
        /// The lock file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Locks held for a run; dropping it releases them.
#[derive(Debug)]
pub struct DeviceLocks {
    held: Vec<(String, File)>,
}

impl DeviceLocks {
    /// The lock names held, in order.
    pub fn names(&self) -> Vec<&str> {
        self.held.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// The name of `device`'s lock: `pci-` and its PCI address where it has one, else its
/// backend and id; characters that do not belong in a file name become `_`.
pub fn lock_name(device: &DeviceInfo) -> String {
    let raw = match &device.pci_address {
        Some(address) => format!("pci-{address}"),
        None => format!("{}-{}", device.backend, device.id),
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The lock file of lock `name` in `dir`.
pub fn lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("hilt-{name}.lock"))
}

/// Locks every device of `devices` (a device seen twice, or two views of one PCI
/// function, locks once), waiting up to the timeout for those another run holds.
/// `waiting` is told, once per busy device, whom the run waits for. `node` and `run`
/// are written into each lock file for others to read.
pub fn acquire(
    devices: &[&DeviceInfo],
    settings: &LockSettings,
    node: &str,
    mut waiting: impl FnMut(String),
) -> Result<DeviceLocks, LockError> {
    let mut wanted: Vec<(String, &str)> = devices.iter().map(|d| (lock_name(d), d.id.as_str())).collect();
    wanted.sort();
    wanted.dedup_by(|a, b| a.0 == b.0);
    if !wanted.is_empty() && !settings.dir.is_dir() {
        make_shared_dir(&settings.dir).map_err(|source| LockError::Unusable {
            path: settings.dir.clone(),
            source,
        })?;
    }
    let start = Instant::now();
    let deadline = start + settings.timeout;
    let mut held = Vec::new();
    for (name, device) in wanted {
        let path = lock_path(&settings.dir, &name);
        let mut file = open(&path)?;
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(source)) => return Err(LockError::Unusable { path, source }),
            }
            let holder = holder(&mut file);
            let now = Instant::now();
            if now >= deadline {
                return Err(LockError::Busy {
                    device: device.to_string(),
                    holder,
                    waited: now - start,
                    path,
                });
            }
            if !told {
                waiting(format!(
                    "device {device} is in use by another hilt run ({holder}); waiting up to {} s for it",
                    deadline.saturating_duration_since(now).as_secs()
                ));
                told = true;
            }
            std::thread::sleep(Duration::from_millis(100).min(deadline - now));
        }
        // Best effort: a lock file made by another user may not be writable, and the lock
        // holds all the same.
        let _ = describe_holder(&mut file, node);
        held.push((name, file));
    }
    Ok(DeviceLocks { held })
}

/// Makes the lock directory where it does not exist, shared as `/run/lock` is:
/// world-writable with the sticky bit (mode 1777), since every user's runs on the node
/// take their locks in it and none may remove another's files. Parents it has to make get
/// mode 0755 whatever the umask, so that every user can reach the directory (a umask of
/// 077 would otherwise make them 0700 and shut every other user out). Only what this call
/// made has its mode set: a directory another run made in between keeps its owner's.
fn make_shared_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut missing = Vec::new();
    let mut at = dir;
    while std::fs::symlink_metadata(at).is_err() {
        missing.push(at);
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    for (i, d) in missing.iter().rev().enumerate() {
        match std::fs::create_dir(d) {
            Ok(()) => {
                let leaf = i + 1 == missing.len();
                let mode = if leaf { 0o1777 } else { 0o755 };
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    if dir.is_dir() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        ))
    }
}

/// Opens (or makes) a lock file. An existing file is opened without `O_CREAT`, which a
/// sticky world-writable directory refuses for another user's file
/// (`fs.protected_regular`); a read-only open is enough for `flock`. A symbolic link is
/// never followed (`O_NOFOLLOW`): in a directory every user may write, a link planted
/// under a lock's name would otherwise have the holder write into the link's target.
fn open(path: &Path) -> Result<File, LockError> {
    use std::os::unix::fs::OpenOptionsExt;
    let unusable = |source| LockError::Unusable {
        path: path.to_path_buf(),
        source,
    };
    let options = || {
        let mut o = OpenOptions::new();
        o.read(true).custom_flags(libc::O_NOFOLLOW);
        o
    };
    match options().write(true).open(path) {
        Ok(f) => return Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return options().open(path).map_err(unusable);
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(unusable(e)),
        Err(_) => {}
    }
    match options().write(true).create_new(true).open(path) {
        Ok(f) => {
            // Every user's runs share the node's devices: let them all take the lock.
            use std::os::unix::fs::PermissionsExt;
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o666));
            Ok(f)
        }
        // Another run made it in between.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => open(path),
        Err(e) => Err(unusable(e)),
    }
}

/// What the holder wrote into the lock file, in one line.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let read = file.rewind().and_then(|()| file.take(4096).read_to_string(&mut text));
    let line = text.lines().next().unwrap_or_default().trim();
    if read.is_err() || line.is_empty() {
        "its lock file does not say which".into()
    } else {
        // Whatever the file holds, one line of plain text.
        line.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
    }
}

/// Writes this process's description into the lock file it holds.
fn describe_holder(file: &mut File, node: &str) -> std::io::Result<()> {
    let line = format!(
        "pid {} on node {node}, since {}\n",
        std::process::id(),
        crate::host::rfc3339(std::time::SystemTime::now())
    );
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::host_device;

    fn device(id: &str, backend: &str, pci: Option<&str>) -> DeviceInfo {
        let mut info = host_device().info;
        info.id = id.into();
        info.backend = backend.into();
        info.pci_address = pci.map(str::to_owned);
        info
    }

    #[test]
    fn two_views_of_one_function_share_a_lock_and_names_are_file_names() {
        let cuda = device("cuda0", "cuda", Some("0000:17:00.0"));
        let opencl = device("opencl1", "opencl", Some("0000:17:00.0"));
        assert_eq!(lock_name(&cuda), lock_name(&opencl));
        assert_eq!(lock_name(&cuda), "pci-0000:17:00.0");
        assert_eq!(lock_name(&device("sim0", "sim", None)), "sim-sim0");
        assert_eq!(lock_name(&device("../x y", "sim", None)), "sim-.._x_y");
    }

    #[test]
    fn a_lock_directory_hilt_makes_is_shared_and_a_planted_link_is_never_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = LockSettings {
            dir: dir.path().join("a/locks"),
            timeout: Duration::from_millis(100),
        };
        let sim = device("sim0", "sim", None);
        drop(acquire(&[&sim], &settings, "n1", |_| {}).expect("free device"));
        let mode = std::fs::metadata(&settings.dir).expect("made").permissions().mode();
        assert_eq!(mode & 0o7777, 0o1777, "{mode:o}");
        // A link under a lock's name, to a file the holder would otherwise write into.
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").expect("write");
        let other = device("sim1", "sim", None);
        std::os::unix::fs::symlink(&target, lock_path(&settings.dir, &lock_name(&other))).expect("link");
        let err = acquire(&[&other], &settings, "n1", |_| {}).expect_err("a link is refused");
        assert!(matches!(err, LockError::Unusable { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep me");
        // A directory that exists keeps the mode its owner gave it.
        let own = dir.path().join("own");
        std::fs::create_dir(&own).expect("mkdir");
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let settings = LockSettings {
            dir: own.clone(),
            ..settings
        };
        drop(acquire(&[&sim], &settings, "n1", |_| {}).expect("free device"));
        let mode = std::fs::metadata(&own).expect("there").permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
    }

    #[test]
    fn a_held_device_makes_the_second_wait_then_give_up_naming_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = LockSettings {
            dir: dir.path().join("locks"),
            timeout: Duration::from_millis(300),
        };
        let sim = device("sim0", "sim", None);
        let first = acquire(&[&sim, &sim], &settings, "n1", |_| {}).expect("free device");
        assert_eq!(first.names(), ["sim-sim0"]);
        let mut told = Vec::new();
        let err = acquire(&[&sim], &settings, "n1", |m| told.push(m)).expect_err("held");
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {} on node n1", std::process::id())),
            "{text}"
        );
        assert!(text.contains("device sim0 is in use by another hilt run"), "{text}");
        assert_eq!(told.len(), 1, "{told:?}");
        drop(first);
        acquire(&[&sim], &settings, "n2", |_| {}).expect("released with its holder");
    }

    #[test]
    fn an_unusable_directory_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").expect("write");
        let settings = LockSettings {
            dir: file.clone(),
            timeout: Duration::ZERO,
        };
        let err = acquire(&[&device("sim0", "sim", None)], &settings, "n1", |_| {}).expect_err("a file");
        assert!(matches!(err, LockError::Unusable { .. }), "{err}");
        assert!(err.to_string().contains("HILT_LOCK_DIR"), "{err}");
        // Nothing to lock, nothing to refuse.
        acquire(&[], &settings, "n1", |_| {}).expect("no devices");
    }
}
