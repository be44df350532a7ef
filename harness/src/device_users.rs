//! Other processes using a device while a check measures it.
//!
//! The device lock ([`crate::devlock`]) keeps other hilt runs away, but not a training
//! job, a monitoring agent or a forgotten notebook. Whoever else uses the device shares
//! its memory bandwidth and its compute, so a performance figure taken beside them is not
//! the device's own. When a device check starts and when it ends, hilt looks for such
//! processes in two ways:
//!
//! - the holders of the device's files: every process (this run's own excluded) with one
//!   of them open, found through `/proc/PID/fd`. A device node is recognised by its
//!   device number, so a holder in another container, whose `/dev` is its own, is found
//!   too; another file by its inode. The files of a PCI accelerator are read from the
//!   host's tree: `/dev/nvidia<minor>` from `/proc/driver/nvidia/gpus/<address>/information`,
//!   `/dev/dri/card*` and `renderD*` from the function's `drm` directory, `/dev/accel/accel*`
//!   from its `accel` directory. Files that every GPU of a kind shares (`/dev/nvidiactl`,
//!   `/dev/kfd`) say nothing about one device and are not looked at.
//! - NVML's list of processes running on an NVIDIA GPU (compute and graphics), which sees
//!   processes in every container of the node.
//!
//! What was found is evidence on the trial; a performance check that saw another user
//! ends `inconclusive`, with who it was, whatever it measured.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use crate::accel::DeviceInfo;
use crate::check::{CheckCtx, Finding};
use crate::hostfs::HostFs;

/// A process other than the run's own that was using the device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceUser {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`), where it could be read.
    pub command: Option<String>,
    /// How it was seen: `holds /dev/nvidia0`, `NVML lists a compute context (1024 MiB)`.
    pub how: String,
}

impl std::fmt::Display for DeviceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.command {
            Some(c) => write!(f, "pid {} ({c}) {}", self.pid, self.how),
            None => write!(f, "pid {} {}", self.pid, self.how),
        }
    }
}

/// One look at who uses a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// What was looked at: the device's files (host paths), and `NVML`.
    pub looked_at: Vec<String>,
    /// The other users found.
    pub users: BTreeSet<DeviceUser>,
    /// What could not be seen, in words (processes whose open files hilt may not read, an
    /// NVML that could not answer).
    pub unseen: Vec<String>,
}

/// The files that stand for `device` on the host (host paths), as the module
/// documentation describes; for the simulated device, its `device_file` knob.
pub fn device_files(host: &HostFs, device: &DeviceInfo) -> Vec<String> {
    let mut files = Vec::new();
    if let Some(serde_json::Value::String(path)) = device.facts.get("sim.device_file") {
        files.push(path.clone());
    }
    let Some(address) = &device.pci_address else {
        return files;
    };
    if let Ok(info) = host.read_text(&format!("/proc/driver/nvidia/gpus/{address}/information"))
        && let Some(minor) = info.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "Device Minor").then(|| value.trim().parse::<u32>().ok())?
        })
    {
        files.push(format!("/dev/nvidia{minor}"));
    }
    for (class, dev_dir, prefixes) in [
        ("drm", "/dev/dri", &["card", "renderD"][..]),
        ("accel", "/dev/accel", &["accel"][..]),
    ] {
        for name in host
            .list_or_empty(&format!("/sys/bus/pci/devices/{address}/{class}"))
            .unwrap_or_default()
        {
            if prefixes.iter().any(|p| {
                name.strip_prefix(p)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            }) {
                files.push(format!("{dev_dir}/{name}"));
            }
        }
    }
    files
}

/// Who other than this process and its descendants uses `device` now.
pub fn survey(host: &HostFs, device: &DeviceInfo) -> Survey {
    let mut survey = Survey::default();
    let files = device_files(host, device);
    let nvidia = device.pci_vendor == Some(0x10de) || device.backend == "cuda";
    if files.is_empty() && !nvidia {
        return survey;
    }
    let processes = Processes::scan();
    if !files.is_empty() {
        let targets: Vec<(String, Identity)> = files
            .iter()
            .filter_map(|f| {
                // The sim's file is a path on this machine; the others are host paths.
                let path = if device.facts.contains_key("sim.device_file") {
                    PathBuf::from(f)
                } else {
                    host.resolve_confined(f).ok()?
                };
                Some((f.clone(), Identity::of(&std::fs::metadata(path).ok()?)))
            })
            .collect();
        survey.looked_at.extend(files);
        let (found, unreadable) = processes.holders(&targets);
        survey.users.extend(found);
        if unreadable > 0 {
            survey.unseen.push(format!(
                "the open files of {unreadable} process(es) could not be read (root with CAP_DAC_READ_SEARCH and \
                 CAP_SYS_PTRACE, and the host's process namespace in a container, let hilt see them)"
            ));
        }
    }
    if nvidia && let Some(address) = &device.pci_address {
        survey.looked_at.push("NVML".into());
        match crate::nvml::running_processes(address) {
            Ok(list) => {
                survey.users.extend(
                    list.into_iter()
                        .filter(|p| !processes.own.contains(&p.pid))
                        .map(|p| DeviceUser {
                            pid: p.pid,
                            command: processes.command(p.pid),
                            how: match p.used_memory_bytes {
                                Some(b) => format!("NVML lists a {} context ({} MiB)", p.kind, b >> 20),
                                None => format!("NVML lists a {} context", p.kind),
                            },
                        }),
                )
            }
            Err(why) => survey.unseen.push(why),
        }
    }
    survey
}

/// A look at the device when a check starts, finished by another when it ends.
pub struct Watch {
    start: Survey,
}

impl Watch {
    /// Looks at who uses `device` as a check starts.
    pub fn start(host: &HostFs, device: &DeviceInfo) -> Watch {
        Watch {
            start: survey(host, device),
        }
    }

    /// Looks again as the check ends; records both looks as evidence on `ctx` and, for a
    /// `performance` check that saw another user, turns a pass or a failure into
    /// `inconclusive` with who it was.
    pub fn finish(
        self,
        host: &HostFs,
        device: &DeviceInfo,
        performance: bool,
        ctx: &mut CheckCtx<'_>,
        finding: Finding,
    ) -> Finding {
        if self.start.looked_at.is_empty() {
            return finding;
        }
        let end = survey(host, device);
        let mut users = self.start.users;
        users.extend(end.users);
        let mut unseen = self.start.unseen;
        unseen.extend(end.unseen);
        unseen.dedup();
        ctx.evidence("device_users_looked_at", self.start.looked_at);
        if !unseen.is_empty() {
            ctx.evidence("device_users_unseen", unseen);
        }
        if users.is_empty() {
            return finding;
        }
        let shown: Vec<String> = users.iter().map(ToString::to_string).collect();
        ctx.evidence("device_users", shown.clone());
        match finding {
            Finding::Pass | Finding::Fail(_) if performance => Finding::Inconclusive(format!(
                "other processes used the device while it was measured, so the figures are not the device's own: {}",
                shown.join("; ")
            )),
            other => other,
        }
    }
}

/// What identifies an open file: a device node by its device number, anything else by
/// its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Identity {
    Node { rdev: u64, block: bool },
    Inode { dev: u64, ino: u64 },
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        let t = meta.file_type();
        if t.is_char_device() || t.is_block_device() {
            Identity::Node {
                rdev: meta.rdev(),
                block: t.is_block_device(),
            }
        } else {
            Identity::Inode {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
    }
}

/// The processes of this machine (as `/proc` shows them) and which are this run's.
struct Processes {
    /// Every pid.
    all: Vec<u32>,
    /// This process and its descendants (its tenants among them).
    own: BTreeSet<u32>,
}

impl Processes {
    fn scan() -> Processes {
        let mut parents: HashMap<u32, u32> = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // The parent is the fourth field, after the command in parentheses (which may
            // itself hold spaces and parentheses).
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok())
                .unwrap_or(0);
            parents.insert(pid, ppid);
        }
        let me = std::process::id();
        let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (&pid, &ppid) in &parents {
            children.entry(ppid).or_default().push(pid);
        }
        let mut own = BTreeSet::from([me]);
        let mut queue = vec![me];
        while let Some(pid) = queue.pop() {
            for &child in children.get(&pid).into_iter().flatten() {
                if own.insert(child) {
                    queue.push(child);
                }
            }
        }
        let mut all: Vec<u32> = parents.into_keys().collect();
        all.sort_unstable();
        Processes { all, own }
    }

    fn command(&self, pid: u32) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|c| c.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect())
    }

    /// The processes, this run's excepted, holding any of `targets` open; and how many
    /// processes' open files could not be read.
    fn holders(&self, targets: &[(String, Identity)]) -> (Vec<DeviceUser>, usize) {
        let mut found = Vec::new();
        let mut unreadable = 0;
        if targets.is_empty() {
            return (found, unreadable);
        }
        for &pid in self.all.iter().filter(|p| !self.own.contains(p)) {
            let fds = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
                Ok(fds) => fds,
                // Gone since the scan.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => {
                    unreadable += 1;
                    continue;
                }
            };
            let mut held = BTreeSet::new();
            for fd in fds.flatten() {
                let Ok(meta) = std::fs::metadata(fd.path()) else {
                    continue;
                };
                let id = Identity::of(&meta);
                for (name, target) in targets {
                    if *target == id {
                        held.insert(name.clone());
                    }
                }
            }
            for name in held {
                found.push(DeviceUser {
                    pid,
                    command: self.command(pid),
                    how: format!("holds {name}"),
                });
            }
        }
        (found, unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::host_device;

    fn gpu(address: &str) -> DeviceInfo {
        let mut info = host_device().info;
        info.id = "pci0".into();
        info.backend = "pci".into();
        info.pci_address = Some(address.into());
        info
    }

    /// A host tree with one NVIDIA GPU (minor 3) and one DRM device, as the kernel
    /// lays them out.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let put = |p: &str, text: &str| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        put(
            "proc/driver/nvidia/gpus/0000:17:00.0/information",
            "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 140\nGPU UUID: \t GPU-1\nDevice Minor: \t 3\nBus Location: \t 0000:17:00.0\n",
        );
        put("dev/nvidia3", "");
        put("dev/nvidiactl", "");
        std::fs::create_dir_all(root.join("sys/bus/pci/devices/0000:c1:00.0/drm/card1")).expect("mkdir");
        std::fs::create_dir_all(root.join("sys/bus/pci/devices/0000:c1:00.0/drm/renderD129")).expect("mkdir");
        std::fs::create_dir_all(root.join("sys/bus/pci/devices/0000:c1:00.0/drm/version")).expect("mkdir");
        put("dev/dri/renderD129", "");
        dir
    }

    #[test]
    fn device_files_come_from_the_driver_and_the_drm_directory() {
        let dir = tree();
        let host = HostFs::at(dir.path()).expect("root");
        assert_eq!(device_files(&host, &gpu("0000:17:00.0")), ["/dev/nvidia3"]);
        assert_eq!(
            device_files(&host, &gpu("0000:c1:00.0")),
            ["/dev/dri/card1", "/dev/dri/renderD129"]
        );
        assert!(device_files(&host, &gpu("0000:99:00.0")).is_empty());
        assert!(device_files(&host, &host_device().info).is_empty());
    }

    #[test]
    fn a_process_holding_the_device_file_is_found_and_this_run_is_not() {
        let dir = tree();
        let host = HostFs::at(dir.path()).expect("root");
        let device = gpu("0000:17:00.0");
        // This process holding the file is the run itself: not another user.
        let mine = std::fs::File::open(dir.path().join("dev/nvidia3")).expect("open");
        let quiet = survey(&host, &device);
        assert!(quiet.users.is_empty(), "{quiet:?}");
        assert_eq!(quiet.looked_at, ["/dev/nvidia3"]);
        drop(mine);
        // A process that is not this one's descendant: `setsid` forks, so `sleep` is
        // reparented away from this process.
        let mut holder = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$1\"; setsid -f sleep 30 <&3; exec 3<&-")
            .arg("sh")
            .arg(dir.path().join("dev/nvidia3"))
            .spawn()
            .expect("sh");
        holder.wait().expect("sh ends");
        // Until `sleep` runs: between its fork and its exec the holder is still called
        // `setsid`, with the file already open.
        let mut found = Survey::default();
        for _ in 0..50 {
            found = survey(&host, &device);
            if found.users.iter().any(|u| u.command.as_deref() == Some("sleep")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let user = found.users.iter().next().cloned().expect("the holder is found");
        assert_eq!(user.command.as_deref(), Some("sleep"));
        assert_eq!(user.how, "holds /dev/nvidia3");
        // SAFETY: kill(2) on a pid this test started; nothing else uses it.
        unsafe { libc::kill(user.pid as i32, libc::SIGKILL) };
        // A file every GPU shares is not this device's.
        assert!(!survey(&host, &device).looked_at.contains(&"/dev/nvidiactl".to_string()));
    }
}
