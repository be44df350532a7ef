//! Suite `isolation`, host side: what the host does to keep tenants' DMA, device files
//! and performance counters apart. These checks read the host's files (through
//! `--sysfs-root`); they need no tenant process.

use hilt_harness::check::{CheckDef, CheckParams, Finding, NoParams, ParamsSpec, Scope};
use hilt_harness::hostfs::path_glob;
use hilt_harness::{hostfs, pci};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hostread::{self, colon_value, optional};

/// `isolation.iommu.enabled`.
pub static IOMMU_ENABLED: CheckDef = CheckDef {
    id: "isolation.iommu.enabled",
    title: "An IOMMU confines accelerator DMA",
    description: "Looks for an active IOMMU: units in /sys/class/iommu or groups in \
        /sys/kernel/iommu_groups. Without one, every accelerator can read and write all of \
        host memory by DMA, including other tenants' data. Not applicable on a host with no \
        accelerator PCI function and no IOMMU.",
    remediation: "Enable VT-d or AMD-Vi in the firmware setup and the IOMMU on the kernel \
        command line (`intel_iommu=on` or `amd_iommu=on`), then reboot.",
    requirements: &["AI-ISO-3"],
    faults: &[],
    concurrent: true,
    scope: Scope::Host,
    host_faults: &["no-iommu"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let fs = ctx.host().clone();
            let units = fs.list_or_empty("/sys/class/iommu").map_err(hostread::unreadable)?;
            let groups = fs
                .list_or_empty("/sys/kernel/iommu_groups")
                .map_err(hostread::unreadable)?;
            ctx.evidence("iommu_units", units.clone());
            ctx.evidence("iommu_groups", groups.len());
            if !units.is_empty() || !groups.is_empty() {
                return Ok(Finding::Pass);
            }
            let accelerators = pci::accelerators(&fs).map_err(hostread::unreadable)?.functions;
            if accelerators.is_empty() {
                return Ok(Finding::NotApplicable(
                    "no IOMMU is active and no accelerator PCI function is present, so there is no accelerator \
                     DMA to confine"
                        .into(),
                ));
            }
            let addresses: Vec<&str> = accelerators.iter().map(|a| a.address.as_str()).collect();
            Ok(Finding::Fail(format!(
                "no IOMMU is active (/sys/class/iommu and /sys/kernel/iommu_groups are empty): the accelerator \
                 functions {} can reach all of host memory by DMA",
                addresses.join(", ")
            )))
        })
    },
};

/// `isolation.iommu.group`.
pub static IOMMU_GROUP: CheckDef = CheckDef {
    id: "isolation.iommu.group",
    title: "Each accelerator has an IOMMU group of its own, with a translating domain",
    description: "Reads the accelerator function's IOMMU group: every other member must be a \
        function of the same device (same bus and slot), since the members of a group can \
        reach each other's DMA and can only be given to a tenant together; PCI bridges \
        (class 0x0604) in the group are recorded and allowed, as they do no DMA of their \
        own. The group's domain type must not be `identity` (passthrough), which leaves the \
        device's DMA untranslated and unconfined; `DMA` and `DMA-FQ` domains pass, and a \
        group without a `type` file is inconclusive. An accelerator in no group while an \
        IOMMU is active fails (its DMA is not translated). Not applicable when no IOMMU is \
        active (isolation.iommu.enabled reports that).",
    remediation: "A group shared with another device usually means a PCIe switch or root port \
        without ACS: place the accelerator behind ACS-capable ports or enable ACS in the \
        firmware. An identity domain comes from `iommu=pt` or `iommu.passthrough=1` on the \
        kernel command line: remove it, or set the group's `type` to `DMA` for devices given \
        to tenants. An accelerator outside every group while the IOMMU is on sits behind a \
        unit that does not cover it: check the DMAR/IVRS tables of the platform firmware.",
    requirements: &["AI-ISO-3", "AI-ISO-1"],
    faults: &[],
    concurrent: true,
    scope: Scope::Pci,
    host_faults: &["shared-iommu-group", "identity-domain", "iommu-no-group"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let (fs, address, function) = hostread::pci_function(ctx)?;
            let Some(group) = function.iommu_group else {
                let units = fs.list_or_empty("/sys/class/iommu").map_err(hostread::unreadable)?;
                let groups = fs
                    .list_or_empty("/sys/kernel/iommu_groups")
                    .map_err(hostread::unreadable)?;
                if units.is_empty() && groups.is_empty() {
                    return Ok(Finding::NotApplicable(format!(
                        "{address} is in no IOMMU group because no IOMMU is active; isolation.iommu.enabled reports that"
                    )));
                }
                ctx.evidence("iommu_units", units);
                ctx.evidence("iommu_groups", groups.len());
                return Ok(Finding::Fail(format!(
                    "an IOMMU is active ({} groups) but {address} is in none of its groups: its DMA is not translated \
                     and can reach all of host memory",
                    groups.len()
                )));
            };
            ctx.evidence("iommu_group", group.clone());
            let dir = format!("/sys/kernel/iommu_groups/{group}");
            let members = fs.list(&format!("{dir}/devices")).map_err(hostread::unreadable)?;
            ctx.evidence("group_members", members.clone());
            let slot = slot_of(&address);
            let mut others = Vec::new();
            let mut bridges = Vec::new();
            for m in members.iter().filter(|m| slot_of(m) != slot) {
                let class = optional(fs.read_trimmed(&format!("{}/{m}/class", pci::DEVICES)))?;
                if class
                    .as_deref()
                    .and_then(pci::parse_hex)
                    .is_some_and(|c| c >> 8 == 0x0604)
                {
                    bridges.push(m.clone());
                } else {
                    others.push(m.clone());
                }
            }
            if !bridges.is_empty() {
                ctx.evidence("bridges_in_group", bridges);
            }
            let domain = optional(fs.read_trimmed(&format!("{dir}/type")))?;
            if let Some(d) = &domain {
                ctx.evidence("domain_type", d.clone());
            }
            let mut problems = Vec::new();
            if !others.is_empty() {
                problems.push(format!(
                    "{address} shares IOMMU group {group} with {}, which are not functions of the same device: they \
                     can reach each other's DMA",
                    others.join(", ")
                ));
            }
            if domain.as_deref() == Some("identity") {
                problems.push(format!(
                    "IOMMU group {group} uses an identity (passthrough) domain: the DMA of {address} is not \
                     translated or confined"
                ));
            }
            Ok(if !problems.is_empty() {
                Finding::Fail(problems.join("; "))
            } else if domain.is_none() {
                Finding::Inconclusive(format!(
                    "IOMMU group {group} of {address} has no `type` file, so its domain type is unknown (an identity \
                     domain would leave DMA untranslated); kernels before 5.11 do not report it"
                ))
            } else {
                Finding::Pass
            })
        })
    },
};

/// `isolation.device_nodes`.
pub static DEVICE_NODES: CheckDef = CheckDef {
    id: "isolation.device_nodes",
    title: "Accelerator device files are not open to every local user",
    description: "Reads the mode of the accelerator device files (/dev/nvidia*, \
        /dev/nvidia-caps/*, /dev/kfd, /dev/dri/renderD*, /dev/accel/accel*) and, for \
        NVIDIA, the mode the driver gives the files it creates (`DeviceFileMode` in \
        /proc/driver/nvidia/params, whose default 0666 lets any local user open the GPU). \
        Any file readable or writable by others fails, unless the profile allows it: \
        `allow_world_access` lists globs of device files that may be open to every user \
        (`/dev/dri/renderD*` on a desktop), recorded as allowed; NVIDIA's `DeviceFileMode` \
        is allowed when the list covers `/dev/nvidia*`. Not applicable where there are \
        none of these files and no NVIDIA driver.",
    remediation: "Restrict the device files to a group of authorised users: for NVIDIA set \
        the module options `NVreg_DeviceFileMode=0660 NVreg_DeviceFileGID=<gid>` (and \
        `NVreg_DeviceFileUID`); for AMD and accel devices, change the udev rules that set \
        the mode of /dev/kfd and the render nodes to 0660 with a dedicated group.",
    requirements: &["AC-4"],
    faults: &[],
    concurrent: true,
    scope: Scope::Host,
    host_faults: &["world-writable-nodes"],
    params: ParamsSpec::of::<NodeParams>(),
    run: |ctx| {
        hostread::run::<NodeParams>(ctx, |ctx, params| {
            let fs = ctx.host().clone();
            let allowed = |path: &str| params.allow_world_access.iter().any(|g| path_glob(g, path));
            let mut allowed_open = Vec::new();
            let mut nodes = Vec::new();
            for pattern in NODE_PATTERNS {
                nodes.extend(hostfs::expand(&fs, pattern).map_err(hostread::unreadable)?);
            }
            let mut open = Vec::new();
            let mut seen = Vec::new();
            for node in &nodes {
                let stat = match optional(fs.stat(node))? {
                    Some(s) if s.mode & 0o170000 != 0o040000 => s,
                    _ => continue,
                };
                seen.push(format!("{node} {:04o} {}:{}", stat.perms(), stat.uid, stat.gid));
                if stat.perms() & 0o006 != 0 {
                    if allowed(node) {
                        allowed_open.push(format!("{node} has mode {:04o}", stat.perms()));
                    } else {
                        open.push(format!("{node} has mode {:04o}", stat.perms()));
                    }
                }
            }
            ctx.evidence("device_files", seen.clone());
            let nvidia = optional(fs.read_text("/proc/driver/nvidia/params"))?;
            if let Some(text) = &nvidia {
                if let Some(mode) = colon_value(text, "DeviceFileMode").and_then(|m| m.parse::<u32>().ok()) {
                    ctx.evidence("nvidia_device_file_mode", format!("{mode:04o}"));
                    if mode & 0o006 != 0 && allowed("/dev/nvidia*") {
                        allowed_open.push(format!("NVIDIA DeviceFileMode {mode:04o}"));
                    } else if mode & 0o006 != 0 {
                        open.push(format!(
                            "the NVIDIA driver creates its device files with mode {mode:04o} (DeviceFileMode {mode} in \
                             /proc/driver/nvidia/params)"
                        ));
                    }
                }
                for key in ["DeviceFileUID", "DeviceFileGID"] {
                    if let Some(v) = colon_value(text, key) {
                        ctx.evidence(&format!("nvidia_{}", key.to_lowercase()), v);
                    }
                }
            }
            if !allowed_open.is_empty() {
                ctx.evidence("allowed_world_access", allowed_open);
            }
            if seen.is_empty() && nvidia.is_none() {
                return Ok(Finding::NotApplicable(
                    "no accelerator device files (/dev/nvidia*, /dev/kfd, /dev/dri/renderD*, /dev/accel/*) and no \
                     NVIDIA driver on this host"
                        .into(),
                ));
            }
            Ok(if open.is_empty() {
                Finding::Pass
            } else {
                Finding::Fail(format!(
                    "accelerator device files are open to every local user: {}",
                    open.join("; ")
                ))
            })
        })
    },
};

/// `isolation.profiling_admin_only`.
pub static PROFILING_ADMIN_ONLY: CheckDef = CheckDef {
    id: "isolation.profiling_admin_only",
    title: "Only administrators can read accelerator performance counters",
    description: "GPU performance counters let one tenant watch another's kernels (a side \
        channel). On NVIDIA the driver restricts profiling to administrators when \
        `RmProfilingAdminOnly` is 1 in /proc/driver/nvidia/params. Inconclusive where an \
        accelerator of another vendor has a driver bound (its restriction is not checked \
        yet); not applicable where no accelerator driver is loaded at all.",
    remediation: "Load the NVIDIA module with `NVreg_RestrictProfilingToAdminUsers=1` (the \
        default in current drivers; something set it to 0).",
    requirements: &["AI-ISO-2", "AC-5"],
    faults: &[],
    concurrent: true,
    scope: Scope::Host,
    host_faults: &["profiling-open"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let fs = ctx.host().clone();
            let Some(text) = optional(fs.read_text("/proc/driver/nvidia/params"))? else {
                let others: Vec<String> = pci::accelerators(&fs)
                    .map_err(hostread::unreadable)?
                    .functions
                    .into_iter()
                    .filter_map(|f| f.driver.map(|d| format!("{} ({d})", f.address)))
                    .filter(|d| !d.ends_with("(vfio-pci)") && !d.ends_with("(pci-stub)"))
                    .collect();
                if !others.is_empty() {
                    return Ok(Finding::Inconclusive(format!(
                        "hilt checks the profiling restriction of the NVIDIA driver only (through \
                         /proc/driver/nvidia/params, which this host lacks), and accelerators here have drivers \
                         bound: {}",
                        others.join(", ")
                    )));
                }
                return Ok(Finding::NotApplicable(
                    "no accelerator driver is loaded (no /proc/driver/nvidia/params and no accelerator function with \
                     a driver bound), so there are no counters to restrict"
                        .into(),
                ));
            };
            let Some(value) = colon_value(&text, "RmProfilingAdminOnly") else {
                return Ok(Finding::Inconclusive(
                    "/proc/driver/nvidia/params has no RmProfilingAdminOnly line".into(),
                ));
            };
            ctx.evidence("rm_profiling_admin_only", value);
            Ok(match value {
                "1" => Finding::Pass,
                "0" => Finding::Fail(
                    "RmProfilingAdminOnly is 0: any user who can open the GPU can read its performance counters".into(),
                ),
                other => Finding::Inconclusive(format!("RmProfilingAdminOnly has an unknown value `{other}`")),
            })
        })
    },
};

/// Parameters of `isolation.device_nodes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NodeParams {
    /// Device files that may be open to every local user, as host path globs (`*`
    /// within one component): `["/dev/dri/renderD*"]`. Empty by default.
    pub allow_world_access: Vec<String>,
}

impl CheckParams for NodeParams {
    fn validate(&self) -> Result<(), String> {
        match self.allow_world_access.iter().find(|g| !g.starts_with("/dev/")) {
            Some(g) => Err(format!("`allow_world_access` entry `{g}` is not a path under /dev/")),
            None => Ok(()),
        }
    }
}

/// The accelerator device files `isolation.device_nodes` looks at.
const NODE_PATTERNS: [&str; 5] = [
    "/dev/nvidia*",
    "/dev/nvidia-caps/*",
    "/dev/kfd",
    "/dev/dri/renderD*",
    "/dev/accel/accel*",
];

/// `0000:17:00` of `0000:17:00.1`: functions of one device share it.
fn slot_of(address: &str) -> &str {
    address.rsplit_once('.').map_or(address, |(slot, _)| slot)
}
