//! AMD GPUs as the amdgpu kernel driver describes them in sysfs, read through a
//! [`HostFs`] root (so a capture carries them and a replay gives them back), and how
//! tenants share them.
//!
//! Reading and mapping are kept apart, as for NVML ([`crate::nvml`]): [`read`] fills a
//! plain [`AmdgpuFunction`] from the function's sysfs directory
//! (`/sys/bus/pci/devices/ADDRESS/`: `product_name`, `vbios_version`,
//! `mem_info_vram_total`, `current_compute_partition`, `current_memory_partition`,
//! `enforce_isolation`, `fw_version/*`, `ras/*_err_count`, `physfn`, `sriov_numvfs`) and
//! from the KFD topology (`/sys/class/kfd/kfd/topology/nodes/*/properties`); [`facts`]
//! maps it into `amdgpu.*` device facts, and [`sharing_mode`] says how tenants share the
//! GPU (partitions, SR-IOV virtual functions, or the whole device), recorded as evidence
//! on every residue and isolation outcome of the device.
//!
//! Where the figures come from: the kernel's amdgpu documentation (`gpu/amdgpu/
//! driver-misc`, `gpu/amdgpu/process-isolation`, `gpu/amdgpu/ras`) and the driver's
//! sysfs code (`amdgpu_gfx.c`: `enforce_isolation` prints one unsigned value per
//! partition, space-separated; `amdgpu_kfd_topology.c`: `location_id` is the PCI
//! bus, device and function as `pci_dev_id`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hostfs::{HostError, HostErrorKind, HostFs};
use crate::pci::{DEVICES, PciFunction};

/// The kernel driver's name.
pub const DRIVER: &str = "amdgpu";

/// Where the KFD lists its topology nodes (one per GPU partition, and the CPUs).
pub const KFD_NODES: &str = "/sys/class/kfd/kfd/topology/nodes";

/// PCI device ids of AMD SR-IOV virtual functions (pci.ids 2026.08.22): inside a guest a
/// VF has no `physfn` link, so its id is how it is known.
pub const VF_DEVICE_IDS: [u16; 2] = [
    0x74b5, // Aqua Vanjaram [Instinct MI300X VF]
    0x74b9, // Aqua Vanjaram [Instinct MI325X VF]
];

/// What amdgpu's sysfs says about one PCI function; a field is `None` (or empty) where
/// the driver does not offer the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AmdgpuFunction {
    /// The bus address.
    pub address: String,
    /// The PCI device id.
    pub device: u16,
    /// The board's product name from its FRU (`AMD Instinct MI300X OAM`).
    pub product_name: Option<String>,
    /// The board's product number.
    pub product_number: Option<String>,
    /// The board's serial number.
    pub serial_number: Option<String>,
    /// The VBIOS version (`113-M3000100-102`).
    pub vbios_version: Option<String>,
    /// VRAM, bytes (`mem_info_vram_total`).
    pub vram_total_bytes: Option<u64>,
    /// The compute partition mode: `SPX`, `DPX`, `TPX`, `QPX` or `CPX`.
    pub compute_partition: Option<String>,
    /// The compute partition modes the GPU offers.
    pub compute_partitions_available: Option<String>,
    /// The memory partition mode: `NPS1`, `NPS2`, `NPS4` or `NPS8`.
    pub memory_partition: Option<String>,
    /// The memory partition modes the GPU offers.
    pub memory_partitions_available: Option<String>,
    /// `enforce_isolation` as read, trimmed: one value per partition.
    pub enforce_isolation: Option<String>,
    /// Whether the driver offers the cleaner shader on this GPU (its `run_cleaner_shader`
    /// file exists).
    pub cleaner_shader: bool,
    /// True for an SR-IOV virtual function (a `physfn` link, or a VF device id).
    pub sriov_vf: bool,
    /// For a physical function: the virtual functions enabled.
    pub sriov_numvfs: Option<u32>,
    /// For a physical function: the virtual functions it can have.
    pub sriov_totalvfs: Option<u32>,
    /// Firmware versions by name (`fw_version/*_fw_version`, the suffix taken off).
    pub firmware: BTreeMap<String, String>,
    /// RAS error counts by block (`ras/*_err_count`): uncorrectable and correctable.
    pub ras: BTreeMap<String, RasCount>,
    /// The KFD topology nodes of this function (one per partition), in node order.
    pub kfd_nodes: Vec<KfdNode>,
    /// Files that exist but could not be read, with why.
    pub unreadable: Vec<String>,
}

/// A RAS error count of one block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RasCount {
    /// Uncorrectable errors (`ue:`).
    pub ue: u64,
    /// Correctable errors (`ce:`).
    pub ce: u64,
}

/// One KFD topology node: a GPU partition as ROCm sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KfdNode {
    /// The node's number in the topology.
    pub node: u32,
    /// `gfx_target_version` (`90402` for gfx942).
    pub gfx_target_version: Option<u64>,
    /// SIMDs of the node.
    pub simd_count: Option<u64>,
    /// The DRM render minor (`128` is `/dev/dri/renderD128`).
    pub drm_render_minor: Option<u64>,
}

/// A partition's process isolation as `enforce_isolation` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// 0: off; processes of several tenants run side by side, nothing is cleared.
    Off,
    /// 1: processes are serialised (graphics and KFD compute alike) and the cleaner
    /// shader clears LDS and registers between them.
    On,
    /// 2: legacy mode: kernel graphics submissions are serialised, KFD compute is not,
    /// and no cleaner shader runs.
    Legacy,
    /// 3: serialised without the cleaner shader: nothing is cleared between processes.
    NoCleanerShader,
    /// A value this build does not know.
    Unknown(u32),
}

impl Isolation {
    /// The mode of value `v`.
    pub fn from_value(v: u32) -> Isolation {
        match v {
            0 => Isolation::Off,
            1 => Isolation::On,
            2 => Isolation::Legacy,
            3 => Isolation::NoCleanerShader,
            other => Isolation::Unknown(other),
        }
    }

    /// What the mode does, in words.
    pub fn describe(self) -> String {
        match self {
            Isolation::Off => "0 (isolation off)".into(),
            Isolation::On => "1 (serialised, cleaner shader between processes)".into(),
            Isolation::Legacy => "2 (legacy: graphics submissions serialised, no cleaner shader)".into(),
            Isolation::NoCleanerShader => "3 (serialised without the cleaner shader)".into(),
            Isolation::Unknown(v) => format!("{v} (a mode this build does not know)"),
        }
    }
}

/// The values of an `enforce_isolation` file: unsigned integers separated by white
/// space, one per partition. An error, in words, for anything else (nothing, a word, a
/// negative number).
pub fn parse_enforce_isolation(text: &str) -> Result<Vec<u32>, String> {
    let values: Vec<&str> = text.split_whitespace().collect();
    if values.is_empty() {
        return Err("it is empty".into());
    }
    values
        .iter()
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| format!("`{v}` is not a partition's setting (0, 1, 2 or 3)"))
        })
        .collect()
}

/// Reads function `f`'s amdgpu view under `fs`. Missing files are left out; files that
/// exist but cannot be read are listed in [`AmdgpuFunction::unreadable`], never an error
/// of the whole read.
pub fn read(fs: &HostFs, f: &PciFunction) -> AmdgpuFunction {
    let dir = format!("{DEVICES}/{}", f.address);
    let mut a = AmdgpuFunction {
        address: f.address.clone(),
        device: f.device,
        ..AmdgpuFunction::default()
    };
    let text = |name: &str, unreadable: &mut Vec<String>| -> Option<String> {
        let path = format!("{dir}/{name}");
        match fs.read_trimmed(&path) {
            Ok(t) if !t.is_empty() => Some(t),
            Ok(_) => None,
            Err(e) => keep_unreadable(e, unreadable),
        }
    };
    let mut unreadable = Vec::new();
    a.product_name = text("product_name", &mut unreadable);
    a.product_number = text("product_number", &mut unreadable);
    a.serial_number = text("serial_number", &mut unreadable);
    a.vbios_version = text("vbios_version", &mut unreadable);
    a.vram_total_bytes = text("mem_info_vram_total", &mut unreadable).and_then(|t| t.parse().ok());
    a.compute_partition = text("current_compute_partition", &mut unreadable);
    a.compute_partitions_available = text("available_compute_partition", &mut unreadable);
    a.memory_partition = text("current_memory_partition", &mut unreadable);
    a.memory_partitions_available = text("available_memory_partition", &mut unreadable);
    a.enforce_isolation = text("enforce_isolation", &mut unreadable);
    a.sriov_numvfs = text("sriov_numvfs", &mut unreadable).and_then(|t| t.parse().ok());
    a.sriov_totalvfs = text("sriov_totalvfs", &mut unreadable).and_then(|t| t.parse().ok());
    a.cleaner_shader = fs.exists(&format!("{dir}/run_cleaner_shader"));
    a.sriov_vf = fs.exists(&format!("{dir}/physfn")) || VF_DEVICE_IDS.contains(&f.device);
    for name in list(fs, &format!("{dir}/fw_version"), &mut unreadable) {
        let key = name.strip_suffix("_fw_version").unwrap_or(&name).to_string();
        if let Some(v) = text(&format!("fw_version/{name}"), &mut unreadable) {
            a.firmware.insert(key, v);
        }
    }
    for name in list(fs, &format!("{dir}/ras"), &mut unreadable) {
        let Some(block) = name.strip_suffix("_err_count") else {
            continue;
        };
        if let Some(count) = text(&format!("ras/{name}"), &mut unreadable).and_then(|t| parse_ras(&t)) {
            a.ras.insert(block.to_string(), count);
        }
    }
    a.kfd_nodes = kfd_nodes(fs, &f.address, &mut unreadable);
    a.unreadable = unreadable;
    a
}

/// The amdgpu view of `f` as `amdgpu.*` facts, with the sharing mode
/// (`sharing_mode`, `sharing_mode_evidence`) and the module's version
/// (`amdgpu.driver_version`, where `/sys/module/amdgpu/version` exists).
pub fn facts(fs: &HostFs, a: &AmdgpuFunction) -> BTreeMap<String, serde_json::Value> {
    let mut facts = BTreeMap::new();
    let mut put = |key: &str, value: Option<serde_json::Value>| {
        if let Some(v) = value {
            facts.insert(format!("amdgpu.{key}"), v);
        }
    };
    let text = |v: &Option<String>| v.clone().map(serde_json::Value::from);
    put("product_name", text(&a.product_name));
    put("product_number", text(&a.product_number));
    put("serial_number", text(&a.serial_number));
    put("vbios_version", text(&a.vbios_version));
    put("vram_total_bytes", a.vram_total_bytes.map(Into::into));
    put("compute_partition", text(&a.compute_partition));
    put("compute_partitions_available", text(&a.compute_partitions_available));
    put("memory_partition", text(&a.memory_partition));
    put("memory_partitions_available", text(&a.memory_partitions_available));
    put("enforce_isolation", text(&a.enforce_isolation));
    put(
        "partitions",
        partition_count(a).map(|n| serde_json::Value::from(n as u64)),
    );
    put("cleaner_shader", Some(a.cleaner_shader.into()));
    put("sriov", Some(sriov(a).into()));
    put(
        "driver_version",
        fs.read_trimmed("/sys/module/amdgpu/version").ok().map(Into::into),
    );
    for (name, version) in &a.firmware {
        put(&format!("firmware.{name}"), Some(version.clone().into()));
    }
    for (block, count) in &a.ras {
        put(&format!("ras.{block}.ue"), Some(count.ue.into()));
        put(&format!("ras.{block}.ce"), Some(count.ce.into()));
    }
    if !a.kfd_nodes.is_empty() {
        put("kfd.nodes", Some(a.kfd_nodes.len().into()));
        let first = &a.kfd_nodes[0];
        put("kfd.gfx_target_version", first.gfx_target_version.map(Into::into));
        put("kfd.simd_count", first.simd_count.map(Into::into));
    }
    if !a.unreadable.is_empty() {
        put("unreadable", Some(a.unreadable.clone().into()));
    }
    let (mode, why) = sharing_mode(a);
    facts.insert("sharing_mode".into(), mode.as_str().into());
    facts.insert("sharing_mode_evidence".into(), why.into());
    facts
}

/// The facts of PCI function `f` under `fs` when amdgpu drives it; none otherwise.
pub fn function_facts(fs: &HostFs, f: &PciFunction) -> BTreeMap<String, serde_json::Value> {
    if f.driver.as_deref() != Some(DRIVER) {
        return BTreeMap::new();
    }
    facts(fs, &read(fs, f))
}

/// How tenants share an AMD GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharingMode {
    /// The function is an SR-IOV virtual function: one virtual machine's share of a GPU.
    SriovVf,
    /// The function is a physical function with SR-IOV virtual functions enabled: the
    /// GPU is shared between virtual machines.
    SriovPf,
    /// The GPU is split into compute partitions (DPX, TPX, QPX or CPX), each a GPU of
    /// its own to ROCm, sharing the package's memory (NPS mode).
    Partitioned,
    /// One partition (SPX, or a GPU without partitions): processes share the whole GPU,
    /// the hardware scheduler running several processes' queues at once.
    WholeDevice,
}

impl SharingMode {
    /// The name recorded in facts and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            SharingMode::SriovVf => "sriov_vf",
            SharingMode::SriovPf => "sriov_pf",
            SharingMode::Partitioned => "partitioned",
            SharingMode::WholeDevice => "whole_device",
        }
    }
}

/// The sharing mode of an AMD GPU and why: a virtual function, else a physical function
/// with virtual functions enabled, else partitioned where the compute partition mode is
/// not SPX, else the whole device. Process isolation (`enforce_isolation`) is named in
/// the evidence, since it serialises processes whatever the mode.
pub fn sharing_mode(a: &AmdgpuFunction) -> (SharingMode, String) {
    let isolation = a
        .enforce_isolation
        .as_deref()
        .map_or_else(String::new, |v| format!("; enforce_isolation reads `{v}`"));
    if a.sriov_vf {
        return (
            SharingMode::SriovVf,
            format!("{} is an SR-IOV virtual function{isolation}", a.address),
        );
    }
    if let Some(n) = a.sriov_numvfs.filter(|n| *n > 0) {
        return (
            SharingMode::SriovPf,
            format!("{} has {n} SR-IOV virtual functions enabled{isolation}", a.address),
        );
    }
    let memory = a
        .memory_partition
        .as_deref()
        .map_or_else(String::new, |m| format!(", memory partition {m}"));
    match a.compute_partition.as_deref() {
        Some(mode) if mode != "SPX" => (
            SharingMode::Partitioned,
            format!(
                "compute partition {mode}{}{memory}{isolation}",
                partition_count(a).map_or_else(String::new, |n| format!(" ({n} partitions)"))
            ),
        ),
        Some(mode) => (
            SharingMode::WholeDevice,
            format!("compute partition {mode}{memory}{isolation}"),
        ),
        None => (
            SharingMode::WholeDevice,
            format!("the driver reports no compute partition mode, so the GPU is one partition{isolation}"),
        ),
    }
}

/// The number of partitions: the values of `enforce_isolation`, else the KFD nodes of
/// the function.
pub fn partition_count(a: &AmdgpuFunction) -> Option<usize> {
    a.enforce_isolation
        .as_deref()
        .and_then(|t| parse_enforce_isolation(t).ok())
        .map(|v| v.len())
        .or_else(|| (!a.kfd_nodes.is_empty()).then_some(a.kfd_nodes.len()))
}

/// How the function's SR-IOV state reads in facts.
fn sriov(a: &AmdgpuFunction) -> String {
    match (a.sriov_vf, a.sriov_numvfs, a.sriov_totalvfs) {
        (true, _, _) => "virtual function".into(),
        (false, Some(n), Some(t)) if n > 0 => format!("physical function, {n} of {t} virtual functions enabled"),
        (false, _, Some(t)) => format!("physical function, none of {t} virtual functions enabled"),
        _ => "none".into(),
    }
}

/// `ue: 0` and `ce: 3` lines as a count; `None` when neither is there.
fn parse_ras(text: &str) -> Option<RasCount> {
    let mut count = RasCount::default();
    let mut seen = false;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let Ok(n) = v.trim().parse::<u64>() else {
            continue;
        };
        match k.trim() {
            "ue" => count.ue = n,
            "ce" => count.ce = n,
            _ => continue,
        }
        seen = true;
    }
    seen.then_some(count)
}

/// The KFD topology nodes whose PCI location is `address` (the KFD's `domain` and
/// `location_id`, bus << 8 | device << 3 | function).
fn kfd_nodes(fs: &HostFs, address: &str, unreadable: &mut Vec<String>) -> Vec<KfdNode> {
    let Some((domain, location)) = pci_location(address) else {
        return Vec::new();
    };
    let mut nodes = Vec::new();
    let mut names = list(fs, KFD_NODES, unreadable);
    names.sort_by_key(|n| n.parse::<u32>().unwrap_or(u32::MAX));
    for name in names {
        let Ok(node) = name.parse::<u32>() else {
            continue;
        };
        let path = format!("{KFD_NODES}/{name}/properties");
        let text = match fs.read_text(&path) {
            Ok(t) => t,
            Err(e) => {
                keep_unreadable::<()>(e, unreadable);
                continue;
            }
        };
        let props: BTreeMap<&str, u64> = text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(char::is_whitespace)?;
                Some((k, v.trim().parse().ok()?))
            })
            .collect();
        if props.get("location_id") == Some(&location)
            && props.get("domain").copied().unwrap_or(0) == domain
            && props.get("simd_count").is_some_and(|n| *n > 0)
        {
            nodes.push(KfdNode {
                node,
                gfx_target_version: props.get("gfx_target_version").copied(),
                simd_count: props.get("simd_count").copied(),
                drm_render_minor: props.get("drm_render_minor").copied(),
            });
        }
    }
    nodes
}

/// `0000:0c:00.0` as the KFD's domain and location id.
fn pci_location(address: &str) -> Option<(u64, u64)> {
    let (domain, rest) = address.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    Some((hex(domain)?, (hex(bus)? << 8) | (hex(device)? << 3) | hex(function)?))
}

fn list(fs: &HostFs, dir: &str, unreadable: &mut Vec<String>) -> Vec<String> {
    match fs.list(dir) {
        Ok(names) => names,
        Err(e) => keep_unreadable(e, unreadable).unwrap_or_default(),
    }
}

fn keep_unreadable<T>(e: HostError, unreadable: &mut Vec<String>) -> Option<T> {
    if e.kind != HostErrorKind::NotFound {
        unreadable.push(e.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforce_isolation_reads_as_the_kernel_writes_it() {
        assert_eq!(parse_enforce_isolation("1 0 1 0\n"), Ok(vec![1, 0, 1, 0]));
        assert_eq!(parse_enforce_isolation("1\n"), Ok(vec![1]));
        assert_eq!(parse_enforce_isolation("2 3"), Ok(vec![2, 3]));
        assert!(parse_enforce_isolation("").is_err());
        assert!(parse_enforce_isolation("1 -1").is_err());
        assert!(parse_enforce_isolation("on").is_err());
        assert_eq!(Isolation::from_value(1), Isolation::On);
        assert_eq!(Isolation::from_value(7), Isolation::Unknown(7));
    }

    #[test]
    fn kfd_locations_are_pci_dev_ids() {
        assert_eq!(pci_location("0000:0c:00.0"), Some((0, 0x0c00)));
        assert_eq!(pci_location("0001:9f:1f.7"), Some((1, 0x9fff)));
        assert_eq!(pci_location("nonsense"), None);
    }

    #[test]
    fn ras_counts_read_their_two_lines() {
        assert_eq!(parse_ras("ue: 2\nce: 5\n"), Some(RasCount { ue: 2, ce: 5 }));
        assert_eq!(parse_ras("garbage"), None);
    }

    #[test]
    fn virtual_functions_beat_partitions_beat_the_whole_device() {
        let base = AmdgpuFunction {
            address: "0000:0c:00.0".into(),
            compute_partition: Some("CPX".into()),
            memory_partition: Some("NPS4".into()),
            enforce_isolation: Some("1 1 1 1 1 1 1 1".into()),
            ..AmdgpuFunction::default()
        };
        let (mode, why) = sharing_mode(&base);
        assert_eq!(mode, SharingMode::Partitioned);
        assert!(why.contains("CPX (8 partitions), memory partition NPS4"), "{why}");
        let vf = AmdgpuFunction {
            sriov_vf: true,
            ..base.clone()
        };
        assert_eq!(sharing_mode(&vf).0, SharingMode::SriovVf);
        let pf = AmdgpuFunction {
            sriov_numvfs: Some(8),
            ..base.clone()
        };
        assert_eq!(sharing_mode(&pf).0, SharingMode::SriovPf);
        let spx = AmdgpuFunction {
            compute_partition: Some("SPX".into()),
            ..base
        };
        assert_eq!(sharing_mode(&spx).0, SharingMode::WholeDevice);
        assert_eq!(sharing_mode(&AmdgpuFunction::default()).0, SharingMode::WholeDevice);
    }
}
