//! Suite `isolation`, host side: what the host does to keep tenants' DMA, device files
//! and performance counters apart. These checks read the host's files (through
//! `--sysfs-root`); they need no tenant process.

use hilt_harness::check::{CheckDef, CheckParams, Finding, NoParams, ParamsSpec, Scope};
use hilt_harness::hostfs::path_glob;
use hilt_harness::{amdgpu, hostfs, pci};
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
        is allowed when the list covers `/dev/nvidia*`. On AMD hosts /dev/kfd (ROCm's \
        compute interface, one for all GPUs) and every render node (one per GPU \
        partition) must be 0660 or stricter, owned by a group of authorised users \
        (`render` by ROCm's convention, recorded as evidence); systemd's default rule \
        makes /dev/kfd 0666. Not applicable where there are none of these files and no \
        NVIDIA driver.",
    remediation: "Restrict the device files to a group of authorised users: for NVIDIA set \
        the module options `NVreg_DeviceFileMode=0660 NVreg_DeviceFileGID=<gid>` (and \
        `NVreg_DeviceFileUID`); for AMD and accel devices, add a udev rule that gives \
        /dev/kfd and the render nodes mode 0660 and the `render` group \
        (`KERNEL==\"kfd\", GROUP=\"render\", MODE=\"0660\"` and \
        `SUBSYSTEM==\"drm\", KERNEL==\"renderD*\", GROUP=\"render\", MODE=\"0660\"`), and \
        admit users to the group.",
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
        `RmProfilingAdminOnly` is 1 in /proc/driver/nvidia/params. On AMD (amdgpu) the \
        device-wide counters are perf events, which the kernel gives only to \
        administrators while /proc/sys/kernel/perf_event_paranoid is 1 or more; counters a \
        process reads of its own dispatches through the KFD have no such switch and are \
        recorded as not judged. With both vendors present both must pass. Inconclusive \
        where an accelerator of another vendor has a driver bound (its restriction is not \
        checked yet); not applicable where no accelerator driver is loaded at all.",
    remediation: "Load the NVIDIA module with `NVreg_RestrictProfilingToAdminUsers=1` (the \
        default in current drivers; something set it to 0). On AMD hosts set \
        `kernel.perf_event_paranoid` to 2 (the kernel's default) or more with sysctl, and \
        grant profiling to named users with CAP_PERFMON instead.",
    requirements: &["AI-ISO-2", "AC-5"],
    faults: &[],
    concurrent: true,
    scope: Scope::Host,
    host_faults: &["profiling-open"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let fs = ctx.host().clone();
            let amd: Vec<String> = pci::accelerators(&fs)
                .map_err(hostread::unreadable)?
                .functions
                .into_iter()
                .filter(|f| f.driver.as_deref() == Some(amdgpu::DRIVER))
                .map(|f| f.address)
                .collect();
            let nvidia_params = optional(fs.read_text("/proc/driver/nvidia/params"))?;
            if !amd.is_empty() {
                let amd_finding = amd_profiling(ctx, &fs, &amd)?;
                let Some(text) = nvidia_params else {
                    return Ok(amd_finding);
                };
                return Ok(worst(amd_finding, nvidia_profiling(ctx, &text)));
            }
            let Some(text) = nvidia_params else {
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
            Ok(nvidia_profiling(ctx, &text))
        })
    },
};

/// `isolation.cleaner_shader`.
pub static CLEANER_SHADER: CheckDef = CheckDef {
    id: "isolation.cleaner_shader",
    title: "AMD GPU process isolation (the cleaner shader) is on for every partition",
    description: "AMD's mitigation of LeftoverLocals (CVE-2023-4969, AMD-SB-6010) is amdgpu's \
        process isolation: processes on the GPU are serialised and a cleaner shader clears \
        local memory (LDS) and registers between them. It is off by default. The driver \
        shows it per partition in the function's `enforce_isolation` file, one value per \
        partition, space-separated (kernel documentation gpu/amdgpu/process-isolation): 1 \
        is isolation with the cleaner shader; 0 (off), 2 (legacy: graphics submissions \
        serialised, no cleaner shader) and 3 (serialised without the cleaner shader) leave \
        what one tenant's kernel put in local memory for the next. Every partition can \
        run the processes of one tenant after another's, so each must read 1; the failure \
        names the partitions that do not. Inconclusive when the file cannot be read or \
        parsed, holds a value hilt does not know, or lists another number of partitions \
        than the KFD topology. Not applicable to a function that amdgpu does not drive, \
        to an amdgpu that offers no process isolation (no `enforce_isolation` file: older \
        kernels and amdgpu modules, and SR-IOV virtual functions, whose isolation is the \
        host's), and to a GPU for which the driver has no cleaner shader (no \
        `run_cleaner_shader` file).",
    remediation: "Turn isolation on for every partition, as root: `echo 1 1 1 1 1 1 1 1 > \
        /sys/bus/pci/devices/ADDRESS/enforce_isolation` (one 1 per partition; the failure \
        gives the exact line), and make it the default at boot with the module option \
        `amdgpu.enforce_isolation=1` (kernel command line, or `options amdgpu \
        enforce_isolation=1` in /etc/modprobe.d/). Processes on a partition then take \
        turns, which costs throughput where several shared it.",
    requirements: &["AI-ISO-1", "DP-7"],
    faults: &[],
    concurrent: true,
    scope: Scope::Pci,
    host_faults: &["mi300x-isolation-off"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let (fs, address, function) = hostread::pci_function(ctx)?;
            match function.driver.as_deref() {
                Some(amdgpu::DRIVER) => {}
                Some(other) => {
                    return Ok(Finding::NotApplicable(format!(
                        "{address} is driven by `{other}`, not amdgpu: process isolation with a cleaner shader is an \
                         amdgpu feature (the residue.local checks judge local memory on any device a backend \
                         opens)"
                    )));
                }
                None => {
                    return Ok(Finding::NotApplicable(format!(
                        "no driver is bound to {address}, so no process of any tenant runs on it"
                    )));
                }
            }
            let file = format!("{}/{address}/enforce_isolation", pci::DEVICES);
            let a = amdgpu::read(&fs, &function);
            if let Some(mode) = &a.compute_partition {
                ctx.evidence("compute_partition", mode.clone());
            }
            if let Some(mode) = &a.memory_partition {
                ctx.evidence("memory_partition", mode.clone());
            }
            let (mode, why) = amdgpu::sharing_mode(&a);
            ctx.evidence("sharing_mode", mode.as_str());
            ctx.evidence("sharing_mode_evidence", why);
            let Some(text) = optional(fs.read_trimmed(&file))? else {
                if !fs.covers(&format!("{}/*/enforce_isolation", pci::DEVICES)) {
                    return Ok(Finding::Inconclusive(format!(
                        "the capture did not look for {file}, so whether amdgpu offers process isolation on {address} \
                         is unknown (capture again with this hilt)"
                    )));
                }
                let vf = if a.sriov_vf {
                    ": it is an SR-IOV virtual function, whose isolation from other virtual machines is the host's"
                } else {
                    ": older kernels and amdgpu modules do not offer it"
                };
                return Ok(Finding::NotApplicable(format!(
                    "amdgpu offers no process isolation on {address} (no {file}){vf}"
                )));
            };
            ctx.evidence("enforce_isolation", text.clone());
            if !a.cleaner_shader {
                if !fs.covers(&format!("{}/*/run_cleaner_shader", pci::DEVICES)) {
                    return Ok(Finding::Inconclusive(format!(
                        "the capture did not look for run_cleaner_shader of {address}, so whether amdgpu has a \
                         cleaner shader for it is unknown (capture again with this hilt)"
                    )));
                }
                return Ok(Finding::NotApplicable(format!(
                    "amdgpu has no cleaner shader for the GPU at {address} (no run_cleaner_shader file), so its \
                     enforce_isolation (`{text}`) can serialise processes but not clear local memory between them; the \
                     residue.local checks judge that on the device itself"
                )));
            }
            let values = match amdgpu::parse_enforce_isolation(&text) {
                Ok(v) => v,
                Err(why) => {
                    return Ok(Finding::Inconclusive(format!(
                        "{file} reads `{text}`, which is not one setting per partition: {why}"
                    )));
                }
            };
            ctx.evidence("partitions", values.len());
            if !a.kfd_nodes.is_empty() {
                ctx.evidence("kfd_nodes", a.kfd_nodes.len());
                if a.kfd_nodes.len() != values.len() {
                    return Ok(Finding::Inconclusive(format!(
                        "{file} lists {} partition(s) but the KFD topology has {} for {address}, so which setting \
                         belongs to which partition is unknown",
                        values.len(),
                        a.kfd_nodes.len()
                    )));
                }
            }
            let modes: Vec<amdgpu::Isolation> = values.iter().map(|v| amdgpu::Isolation::from_value(*v)).collect();
            let not_on: Vec<(usize, amdgpu::Isolation)> = modes
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, m)| *m != amdgpu::Isolation::On)
                .collect();
            let off: Vec<&(usize, amdgpu::Isolation)> = not_on
                .iter()
                .filter(|(_, m)| !matches!(m, amdgpu::Isolation::Unknown(_)))
                .collect();
            let describe = |list: &[&(usize, amdgpu::Isolation)]| -> String {
                list.iter()
                    .map(|(i, m)| format!("partition {i}: {}", m.describe()))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            if !off.is_empty() {
                ctx.evidence(
                    "partitions_without_isolation",
                    off.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                );
                let all_on = vec!["1"; values.len()].join(" ");
                let partition_mode = a
                    .compute_partition
                    .as_deref()
                    .map_or_else(String::new, |m| format!(" ({m})"));
                return Ok(Finding::Fail(format!(
                    "process isolation with the cleaner shader is not on for {} of the {} partition(s) of \
                     {address}{partition_mode}: {}; a tenant's kernel there can read what the previous tenant's left \
                     in local memory and registers. Turn it on with `echo {all_on} > {file}` and \
                     `amdgpu.enforce_isolation=1` at boot",
                    off.len(),
                    values.len(),
                    describe(&off)
                )));
            }
            if !not_on.is_empty() {
                let unknown: Vec<&(usize, amdgpu::Isolation)> = not_on.iter().collect();
                return Ok(Finding::Inconclusive(format!(
                    "{file} holds settings this build does not know: {}",
                    describe(&unknown)
                )));
            }
            Ok(Finding::Pass)
        })
    },
};

/// The NVIDIA driver's profiling restriction, from `/proc/driver/nvidia/params`.
fn nvidia_profiling(ctx: &mut hilt_harness::check::CheckCtx<'_>, params: &str) -> Finding {
    let Some(value) = colon_value(params, "RmProfilingAdminOnly") else {
        return Finding::Inconclusive("/proc/driver/nvidia/params has no RmProfilingAdminOnly line".into());
    };
    ctx.evidence("rm_profiling_admin_only", value);
    match value {
        "1" => Finding::Pass,
        "0" => Finding::Fail(
            "RmProfilingAdminOnly is 0: any user who can open the GPU can read its performance counters".into(),
        ),
        other => Finding::Inconclusive(format!("RmProfilingAdminOnly has an unknown value `{other}`")),
    }
}

/// What hilt can establish for amdgpu's performance counters: the kernel's perf gate.
/// amdgpu's PMUs (data fabric and XGMI counters, where the GPU has them) count for the
/// whole device, so the kernel lets only administrators open them unless
/// `perf_event_paranoid` is below 1 (0 or -1). Counters a process reads of its own
/// dispatches through its KFD queues (ROCm's profilers) have no administrator switch and
/// are not judged; the evidence says so.
fn amd_profiling(
    ctx: &mut hilt_harness::check::CheckCtx<'_>,
    fs: &hilt_harness::hostfs::HostFs,
    functions: &[String],
) -> Result<Finding, Finding> {
    const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";
    ctx.evidence("amdgpu_functions", functions.to_vec());
    ctx.evidence(
        "amdgpu_not_judged",
        "counters a process reads of its own dispatches through its KFD queues (ROCm's profilers) have no \
         administrator switch; with process isolation on (isolation.cleaner_shader) they see only that \
         process's work",
    );
    let Some(text) = optional(fs.read_trimmed(PARANOID))? else {
        return Ok(Finding::Inconclusive(format!(
            "{PARANOID} cannot be read (it does not exist here), so who may open the performance counters of the \
             amdgpu devices {} is unknown",
            functions.join(", ")
        )));
    };
    ctx.evidence("perf_event_paranoid", text.clone());
    // As the kernel's `%d` writes it: `+1` or `01` was edited in, and is no level.
    Ok(match hostfs::kernel_int(&text).ok_or(()) {
        Ok(level) if level >= 1 => Finding::Pass,
        Ok(level) => Finding::Fail(format!(
            "perf_event_paranoid is {level} ({PARANOID}): any local user can open system-wide performance events, \
             including the amdgpu counters of {}, which show other tenants' work on the GPU",
            functions.join(", ")
        )),
        Err(_) => Finding::Inconclusive(format!("{PARANOID} reads `{text}`, which is not a level")),
    })
}

/// The graver of two findings: fail, then error, then inconclusive, then not
/// applicable, then pass; two failures (or two of any kind with a reason) are joined.
fn worst(a: Finding, b: Finding) -> Finding {
    let rank = |f: &Finding| match f {
        Finding::Fail(_) => 4,
        Finding::Error(_) => 3,
        Finding::Inconclusive(_) => 2,
        Finding::NotApplicable(_) | Finding::NotExamined { .. } => 1,
        Finding::Pass => 0,
    };
    let reason = |f: &Finding| match f {
        Finding::Fail(r)
        | Finding::Error(r)
        | Finding::Inconclusive(r)
        | Finding::NotApplicable(r)
        | Finding::NotExamined { reason: r, .. } => Some(r.clone()),
        Finding::Pass => None,
    };
    let (hi, lo) = if rank(&a) >= rank(&b) { (a, b) } else { (b, a) };
    match (rank(&hi) == rank(&lo), reason(&hi), reason(&lo)) {
        (true, Some(x), Some(y)) => match hi {
            Finding::Fail(_) => Finding::Fail(format!("{x}; {y}")),
            Finding::Error(_) => Finding::Error(format!("{x}; {y}")),
            Finding::Inconclusive(_) => Finding::Inconclusive(format!("{x}; {y}")),
            _ => Finding::NotApplicable(format!("{x}; {y}")),
        },
        _ => hi,
    }
}

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
