//! Suite `isolation`, host side: what the host does to keep tenants' DMA, device files
//! and performance counters apart. These checks read the host's files (through
//! `--sysfs-root`); they need no tenant process.

use hilt_harness::check::{CheckDef, Finding, NoParams, ParamsSpec, Scope};
use hilt_harness::{capture, pci};

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
            let accelerators = pci::accelerators(&fs).map_err(hostread::unreadable)?;
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
        reach each other's DMA and can only be given to a tenant together; and the group's \
        domain type must not be `identity` (passthrough), which leaves the device's DMA \
        untranslated and unconfined. `DMA` and `DMA-FQ` domains pass.",
    remediation: "A group shared with another device usually means a PCIe switch or root port \
        without ACS: place the accelerator behind ACS-capable ports or enable ACS in the \
        firmware. An identity domain comes from `iommu=pt` or `iommu.passthrough=1` on the \
        kernel command line: remove it, or set the group's `type` to `DMA` for devices given \
        to tenants.",
    requirements: &["AI-ISO-3", "AI-ISO-1"],
    faults: &[],
    concurrent: true,
    scope: Scope::Pci,
    host_faults: &["shared-iommu-group", "identity-domain"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let fs = ctx.host().clone();
            let address = hostread::pci_address(ctx)?;
            let function = pci::read_function(&fs, &address).map_err(hostread::unreadable)?;
            let Some(group) = function.iommu_group else {
                return Ok(Finding::NotApplicable(format!(
                    "{address} is in no IOMMU group because no IOMMU is active; isolation.iommu.enabled reports that"
                )));
            };
            ctx.evidence("iommu_group", group.clone());
            let dir = format!("/sys/kernel/iommu_groups/{group}");
            let members = fs.list(&format!("{dir}/devices")).map_err(hostread::unreadable)?;
            ctx.evidence("group_members", members.clone());
            let slot = slot_of(&address);
            let others: Vec<&String> = members.iter().filter(|m| slot_of(m) != slot).collect();
            let domain = optional(fs.read_trimmed(&format!("{dir}/type")))?;
            if let Some(d) = &domain {
                ctx.evidence("domain_type", d.clone());
            }
            let mut problems = Vec::new();
            if !others.is_empty() {
                let list: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
                problems.push(format!(
                    "{address} shares IOMMU group {group} with {}, which are not functions of the same device: they \
                     can reach each other's DMA",
                    list.join(", ")
                ));
            }
            if domain.as_deref() == Some("identity") {
                problems.push(format!(
                    "IOMMU group {group} uses an identity (passthrough) domain: the DMA of {address} is not \
                     translated or confined"
                ));
            }
            Ok(if problems.is_empty() {
                Finding::Pass
            } else {
                Finding::Fail(problems.join("; "))
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
        Any file readable or writable by others fails. Not applicable where there are \
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
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let fs = ctx.host().clone();
            let mut nodes = Vec::new();
            for pattern in NODE_PATTERNS {
                nodes.extend(capture::expand(&fs, pattern).map_err(hostread::unreadable)?);
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
                    open.push(format!("{node} has mode {:04o}", stat.perms()));
                }
            }
            ctx.evidence("device_files", seen.clone());
            let params = optional(fs.read_text("/proc/driver/nvidia/params"))?;
            if let Some(text) = &params {
                if let Some(mode) = colon_value(text, "DeviceFileMode").and_then(|m| m.parse::<u32>().ok()) {
                    ctx.evidence("nvidia_device_file_mode", format!("{mode:04o}"));
                    if mode & 0o006 != 0 {
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
            if seen.is_empty() && params.is_none() {
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

/// `isolation.perf_counters.admin_only`.
pub static PERF_COUNTERS: CheckDef = CheckDef {
    id: "isolation.perf_counters.admin_only",
    title: "Only administrators can read accelerator performance counters",
    description: "GPU performance counters let one tenant watch another's kernels (a side \
        channel). On NVIDIA the driver restricts profiling to administrators when \
        `RmProfilingAdminOnly` is 1 in /proc/driver/nvidia/params. Not applicable without \
        the NVIDIA driver: no other vendor's counter restriction is checked yet.",
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
            let text = hostread::or_not_applicable(ctx.host().read_text("/proc/driver/nvidia/params"), || {
                "no NVIDIA driver is loaded (no /proc/driver/nvidia/params); no other vendor's counter \
                 restriction is checked yet"
                    .into()
            })?;
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
