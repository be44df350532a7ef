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

use crate::hostfs::{HostError, HostErrorKind, HostFs, kernel_decimal};
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
    /// The memory partition mode: one of [`MEMORY_PARTITION_MODES`].
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
    /// Files that were read but hold what amdgpu does not write (a count that is not a
    /// number, a partition mode amdgpu has no name for), by file name relative to the
    /// function (`sriov_numvfs`, `ras/umc_err_count`), with what they hold. Such a value
    /// is never taken for another: the fact is left out, and a sharing mode that rests on
    /// it is [`SharingMode::Unknown`].
    pub malformed: BTreeMap<String, String>,
}

/// The compute partition modes amdgpu names (`amdgpu_gfx.c`,
/// `amdgpu_gfx_compute_mode_desc`): one, two, three, four and eight partitions.
pub const COMPUTE_PARTITION_MODES: [&str; 5] = ["SPX", "DPX", "TPX", "QPX", "CPX"];

/// The memory partition modes amdgpu names (`amdgpu_gmc.c`, `nps_desc`).
pub const MEMORY_PARTITION_MODES: [&str; 6] = ["NPS1", "NPS2", "NPS3", "NPS4", "NPS6", "NPS8"];

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
/// negative number, a number the kernel's `%u` never writes such as `+1` or `01`).
pub fn parse_enforce_isolation(text: &str) -> Result<Vec<u32>, String> {
    let values: Vec<&str> = text.split_whitespace().collect();
    if values.is_empty() {
        return Err("it is empty".into());
    }
    values
        .iter()
        .map(|v| {
            kernel_decimal(v)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("`{v}` is not a partition's setting (0, 1, 2 or 3)"))
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
    let mut malformed = BTreeMap::new();
    // A number as amdgpu writes it ([`kernel_decimal`]); anything else is kept as malformed.
    let number = |name: &str, text: Option<String>, malformed: &mut BTreeMap<String, String>| -> Option<u64> {
        let text = text?;
        let n = kernel_decimal(&text);
        if n.is_none() {
            malformed.insert(name.to_string(), format!("`{}`, not a decimal number", clip(&text)));
        }
        n
    };
    a.product_name = text("product_name", &mut unreadable);
    a.product_number = text("product_number", &mut unreadable);
    a.serial_number = text("serial_number", &mut unreadable);
    a.vbios_version = text("vbios_version", &mut unreadable);
    a.vram_total_bytes = number(
        "mem_info_vram_total",
        text("mem_info_vram_total", &mut unreadable),
        &mut malformed,
    );
    a.compute_partition = text("current_compute_partition", &mut unreadable);
    a.compute_partitions_available = text("available_compute_partition", &mut unreadable);
    a.memory_partition = text("current_memory_partition", &mut unreadable);
    a.memory_partitions_available = text("available_memory_partition", &mut unreadable);
    a.enforce_isolation = text("enforce_isolation", &mut unreadable);
    a.sriov_numvfs = number("sriov_numvfs", text("sriov_numvfs", &mut unreadable), &mut malformed)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    a.sriov_totalvfs = number(
        "sriov_totalvfs",
        text("sriov_totalvfs", &mut unreadable),
        &mut malformed,
    )
    .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    for (name, value, known) in [
        (
            "current_compute_partition",
            &a.compute_partition,
            &COMPUTE_PARTITION_MODES[..],
        ),
        (
            "current_memory_partition",
            &a.memory_partition,
            &MEMORY_PARTITION_MODES[..],
        ),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !known.contains(v)) {
            malformed.insert(
                name.to_string(),
                format!("`{}`, not a mode amdgpu names ({})", clip(v), known.join(", ")),
            );
        }
    }
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
        let file = format!("ras/{name}");
        if let Some(t) = text(&file, &mut unreadable) {
            match parse_ras(&t) {
                Some(count) => {
                    a.ras.insert(block.to_string(), count);
                }
                None => {
                    malformed.insert(file, format!("`{}`, not `ue: N` and `ce: N` lines", clip(&t)));
                }
            }
        }
    }
    a.kfd_nodes = kfd_nodes(fs, &f.address, &mut unreadable);
    a.unreadable = unreadable;
    a.malformed = malformed;
    a
}

/// `text` as recorded in a finding: at most 64 characters, control characters escaped.
fn clip(text: &str) -> String {
    let escaped: String = text.chars().flat_map(char::escape_debug).collect();
    match escaped.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &escaped[..at]),
        None => escaped,
    }
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
    if !a.malformed.is_empty() {
        let list: Vec<String> = a
            .malformed
            .iter()
            .map(|(file, what)| format!("{DEVICES}/{}/{file} holds {what}", a.address))
            .collect();
        put("malformed", Some(list.into()));
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
    /// A file the mode rests on (`sriov_numvfs`, `current_compute_partition`) holds what
    /// amdgpu does not write: the mode is not guessed.
    Unknown,
}

impl SharingMode {
    /// The name recorded in facts and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            SharingMode::SriovVf => "sriov_vf",
            SharingMode::SriovPf => "sriov_pf",
            SharingMode::Partitioned => "partitioned",
            SharingMode::WholeDevice => "whole_device",
            SharingMode::Unknown => "unknown",
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
    if let Some(what) = a.malformed.get("sriov_numvfs") {
        return (
            SharingMode::Unknown,
            format!(
                "whether {} has SR-IOV virtual functions enabled is unknown: sriov_numvfs holds {what}{isolation}",
                a.address
            ),
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
        Some(_) if a.malformed.contains_key("current_compute_partition") => (
            SharingMode::Unknown,
            format!(
                "the compute partition mode is unknown: current_compute_partition holds {}{memory}{isolation}",
                a.malformed["current_compute_partition"]
            ),
        ),
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
        (false, None, _) if a.malformed.contains_key("sriov_numvfs") => {
            "physical function, virtual functions enabled unknown (sriov_numvfs malformed)".into()
        }
        (false, Some(n), None) if n > 0 => format!("physical function, {n} virtual functions enabled"),
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
        // Numbers the kernel's `%u` never writes were edited in: not read as a setting.
        for edited in ["+1 1", "01 1", "1 0x1", "1 1.0", "1 4294967296"] {
            assert!(parse_enforce_isolation(edited).is_err(), "{edited}");
        }
        assert_eq!(parse_enforce_isolation("0 10"), Ok(vec![0, 10]));
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

    #[test]
    fn values_amdgpu_does_not_write_are_malformed_never_guessed() {
        use std::fs;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("sys/bus/pci/devices/0000:0c:00.0");
        fs::create_dir_all(dir.join("ras")).expect("mkdir");
        let good = [
            ("mem_info_vram_total", "206158430208"),
            ("current_compute_partition", "CPX"),
            ("current_memory_partition", "NPS4"),
            ("sriov_numvfs", "0"),
            ("sriov_totalvfs", "8"),
            ("ras/umc_err_count", "ue: 0\nce: 1\n"),
            ("enforce_isolation", "1 1 1 1 1 1 1 1"),
        ];
        let f = PciFunction {
            address: "0000:0c:00.0".into(),
            vendor: 0x1002,
            device: 0x74a1,
            subsystem_vendor: None,
            subsystem_device: None,
            class: 0x120000,
            driver: Some(DRIVER.into()),
            iommu_group: None,
        };
        let write = |name: &str, text: &str| fs::write(dir.join(name), text).expect("write");
        let fresh = || {
            for (name, text) in good {
                write(name, text);
            }
        };
        fresh();
        let host = HostFs::at(tmp.path()).expect("root");
        let a = read(&host, &f);
        assert!(a.malformed.is_empty(), "{:?}", a.malformed);
        assert_eq!(sharing_mode(&a).0, SharingMode::Partitioned);
        assert_eq!(a.vram_total_bytes, Some(206158430208));

        // Each file that holds what amdgpu does not write is named, and nothing is
        // taken from it: no VRAM size, no "no virtual functions", no partition guessed.
        for (name, bad, mode) in [
            ("mem_info_vram_total", "abc", SharingMode::Partitioned),
            ("mem_info_vram_total", "-1", SharingMode::Partitioned),
            ("sriov_numvfs", "nope", SharingMode::Unknown),
            ("sriov_numvfs", "-3", SharingMode::Unknown),
            ("sriov_totalvfs", "0x8", SharingMode::Partitioned),
            ("sriov_numvfs", "+2", SharingMode::Unknown),
            ("mem_info_vram_total", "0206158430208", SharingMode::Partitioned),
            ("current_compute_partition", "BOGUS", SharingMode::Unknown),
            ("current_compute_partition", "cpx", SharingMode::Unknown),
            ("current_memory_partition", "NPS5", SharingMode::Partitioned),
            ("current_compute_partition", "UNKNOWN", SharingMode::Unknown),
            ("ras/umc_err_count", "x y", SharingMode::Partitioned),
        ] {
            fresh();
            write(name, bad);
            let a = read(&host, &f);
            let what = a
                .malformed
                .get(name)
                .unwrap_or_else(|| panic!("{name} = {bad} not named: {:?}", a.malformed));
            assert!(what.contains(&format!("`{bad}`")), "{what}");
            assert_eq!(a.malformed.len(), 1, "{:?}", a.malformed);
            let (found, why) = sharing_mode(&a);
            assert_eq!(found, mode, "{name} = {bad}: {why}");
            if mode == SharingMode::Unknown {
                assert!(why.contains(bad), "{why}");
            }
            let facts = facts(&host, &a);
            let listed = facts["amdgpu.malformed"].to_string();
            assert!(
                listed.contains(&format!("0000:0c:00.0/{name} holds `{bad}`")),
                "{listed}"
            );
            match name {
                "mem_info_vram_total" => assert!(!facts.contains_key("amdgpu.vram_total_bytes")),
                "sriov_numvfs" => assert!(facts["amdgpu.sriov"].as_str().is_some_and(|s| s.contains("unknown"))),
                "ras/umc_err_count" => assert!(!facts.contains_key("amdgpu.ras.umc.ue")),
                _ => {}
            }
        }
    }
}
