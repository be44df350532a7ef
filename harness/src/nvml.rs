//! NVIDIA devices as NVML (the management library behind `nvidia-smi`) describes them, and
//! how tenants share them.
//!
//! Reading NVML and mapping what it says are kept apart: [`query`] fills a plain
//! [`NvmlSystem`] through `nvml-wrapper` (which loads `libnvidia-ml.so.1` at run time and
//! returns an error, never a panic, where the library is missing), and everything else
//! here is a pure function over that struct, so CI tests the mapping from JSON fixtures
//! (`tests/fixtures/nvml/`) on machines without an NVIDIA driver.
//!
//! [`facts`] turns one device's NVML view into `nvml.*` device facts (identity, firmware
//! versions, ECC, MIG, persistence and compute modes, confidential computing, the PCIe
//! link), which the result records and the firmware checks read. [`sharing_mode`] says how
//! tenants share the device (MIG, MPS, exclusive process, or time-sliced), recorded as
//! evidence on every residue and isolation outcome of the device.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hostfs::HostFs;

/// What NVML reports for the whole system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NvmlSystem {
    /// The kernel driver's version (`580.95.05`).
    pub driver_version: Option<String>,
    /// The CUDA version the driver supports, as NVML encodes it (`12040` for 12.4).
    pub cuda_driver_version: Option<i32>,
    /// Whether confidential computing is on (system-wide, enabled, production, accepting
    /// work); `None` where the driver offers no such query.
    pub confidential_compute: Option<bool>,
    /// The GPUs.
    pub devices: Vec<NvmlDevice>,
}

/// What NVML reports for one GPU; a field is `None` where the query is not supported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NvmlDevice {
    /// NVML's index.
    pub index: u32,
    /// The product name (`NVIDIA H100 80GB HBM3`).
    pub name: Option<String>,
    /// The UUID (`GPU-...`).
    pub uuid: Option<String>,
    /// The board serial number.
    pub serial: Option<String>,
    /// The board part number.
    pub board_part_number: Option<String>,
    /// The VBIOS version.
    pub vbios_version: Option<String>,
    /// The InfoROM image version.
    pub inforom_image_version: Option<String>,
    /// The InfoROM OEM object's version.
    pub inforom_oem_version: Option<String>,
    /// The InfoROM ECC object's version.
    pub inforom_ecc_version: Option<String>,
    /// The InfoROM power object's version.
    pub inforom_power_version: Option<String>,
    /// The PCI bus id as NVML prints it (`00000000:17:00.0`).
    pub pci_bus_id: Option<String>,
    /// NVML's combined PCI id: device id in the upper 16 bits, vendor id in the lower.
    pub pci_device_id: Option<u32>,
    /// The PCI subsystem id (subsystem device in the upper 16 bits, vendor in the lower).
    pub pci_subsystem_id: Option<u32>,
    /// ECC on now.
    pub ecc_enabled: Option<bool>,
    /// ECC on after the next reset.
    pub ecc_pending: Option<bool>,
    /// MIG on now.
    pub mig_enabled: Option<bool>,
    /// MIG on after the next reset.
    pub mig_pending: Option<bool>,
    /// Persistence mode on.
    pub persistence_mode: Option<bool>,
    /// The compute mode: `default`, `exclusive_process`, `prohibited` or
    /// `exclusive_thread`.
    pub compute_mode: Option<String>,
    /// The PCIe generation the link runs at now.
    pub pcie_gen_current: Option<u32>,
    /// The highest PCIe generation of the device and system.
    pub pcie_gen_max: Option<u32>,
    /// The PCIe link width now, lanes.
    pub pcie_width_current: Option<u32>,
    /// The widest PCIe link of the device and system, lanes.
    pub pcie_width_max: Option<u32>,
}

impl NvmlDevice {
    /// The PCI vendor and device ids.
    pub fn pci_ids(&self) -> Option<(u16, u16)> {
        self.pci_device_id.map(|id| ((id & 0xffff) as u16, (id >> 16) as u16))
    }

    /// The PCI address in sysfs form (`0000:17:00.0`).
    pub fn pci_address(&self) -> Option<String> {
        self.pci_bus_id.as_deref().and_then(normalize_bus_id)
    }
}

/// Reads NVML; an error (in words) where NVML cannot be loaded or initialised.
pub fn query() -> Result<NvmlSystem, String> {
    use nvml_wrapper::Nvml;
    use nvml_wrapper::enum_wrappers::device::{ComputeMode, InfoRom};

    let nvml = Nvml::init().map_err(|e| format!("NVML unavailable: {e}"))?;
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML could not count devices: {e}"))?;
    let mut devices = Vec::new();
    for index in 0..count {
        let Ok(d) = nvml.device_by_index(index) else {
            continue;
        };
        let pci = d.pci_info().ok();
        let ecc = d.is_ecc_enabled().ok();
        let mig = d.mig_mode().ok();
        devices.push(NvmlDevice {
            index,
            name: d.name().ok(),
            uuid: d.uuid().ok(),
            serial: d.serial().ok(),
            board_part_number: d.board_part_number().ok(),
            vbios_version: d.vbios_version().ok(),
            inforom_image_version: d.info_rom_image_version().ok(),
            inforom_oem_version: d.info_rom_version(InfoRom::OEM).ok(),
            inforom_ecc_version: d.info_rom_version(InfoRom::ECC).ok(),
            inforom_power_version: d.info_rom_version(InfoRom::Power).ok(),
            pci_bus_id: pci.as_ref().map(|p| p.bus_id.clone()),
            pci_device_id: pci.as_ref().map(|p| p.pci_device_id),
            pci_subsystem_id: pci.as_ref().and_then(|p| p.pci_sub_system_id),
            ecc_enabled: ecc.as_ref().map(|e| e.currently_enabled),
            ecc_pending: ecc.as_ref().map(|e| e.pending_enabled),
            mig_enabled: mig.as_ref().map(|m| m.current == 1),
            mig_pending: mig.as_ref().map(|m| m.pending == 1),
            persistence_mode: d.is_in_persistent_mode().ok(),
            compute_mode: d.compute_mode().ok().map(|m| {
                match m {
                    ComputeMode::Default => "default",
                    ComputeMode::ExclusiveThread => "exclusive_thread",
                    ComputeMode::Prohibited => "prohibited",
                    ComputeMode::ExclusiveProcess => "exclusive_process",
                }
                .to_string()
            }),
            pcie_gen_current: d.current_pcie_link_gen().ok(),
            pcie_gen_max: d.max_pcie_link_gen().ok(),
            pcie_width_current: d.current_pcie_link_width().ok(),
            pcie_width_max: d.max_pcie_link_width().ok(),
        });
    }
    // The confidential-computing query is system-wide and absent from older drivers.
    let confidential_compute = devices
        .first()
        .and_then(|_| nvml.device_by_index(0).ok())
        .and_then(|d| d.check_confidential_compute_status().ok());
    Ok(NvmlSystem {
        driver_version: nvml.sys_driver_version().ok(),
        cuda_driver_version: nvml.sys_cuda_driver_version().ok(),
        confidential_compute,
        devices,
    })
}

/// A process NVML lists on a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlProcess {
    /// Its process id, as the host's kernel numbers it (in a container without the host's
    /// process namespace it names nothing there).
    pub pid: u32,
    /// Device memory it holds, bytes, where NVML says.
    pub used_memory_bytes: Option<u64>,
    /// `compute` or `graphics`.
    pub kind: &'static str,
}

/// The processes NVML lists as running on the GPU at `pci_address`: compute and graphics
/// contexts. An error in words where NVML cannot be loaded or does not know the device.
/// NVML is initialised once per process and kept.
pub fn running_processes(pci_address: &str) -> Result<Vec<NvmlProcess>, String> {
    use nvml_wrapper::enums::device::UsedGpuMemory;
    static NVML: std::sync::OnceLock<Result<nvml_wrapper::Nvml, String>> = std::sync::OnceLock::new();
    let nvml = NVML
        .get_or_init(|| nvml_wrapper::Nvml::init().map_err(|e| format!("NVML unavailable: {e}")))
        .as_ref()
        .map_err(Clone::clone)?;
    let device = nvml
        .device_by_pci_bus_id(pci_address)
        .map_err(|e| format!("NVML does not know {pci_address}: {e}"))?;
    let mut list = Vec::new();
    for (kind, found) in [
        ("compute", device.running_compute_processes()),
        ("graphics", device.running_graphics_processes()),
    ] {
        let found = found.map_err(|e| format!("NVML cannot list the {kind} processes on {pci_address}: {e}"))?;
        list.extend(found.into_iter().map(|p| NvmlProcess {
            pid: p.pid,
            used_memory_bytes: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b),
                UsedGpuMemory::Unavailable => None,
            },
            kind,
        }));
    }
    Ok(list)
}

/// The NVML device at `pci_address` (any spelling of the bus id), or else the one with
/// `uuid`.
pub fn find<'a>(system: &'a NvmlSystem, pci_address: Option<&str>, uuid: Option<&str>) -> Option<&'a NvmlDevice> {
    let address = pci_address.and_then(normalize_bus_id);
    system
        .devices
        .iter()
        .find(|d| address.is_some() && d.pci_address() == address)
        .or_else(|| {
            uuid.and_then(|u| {
                system
                    .devices
                    .iter()
                    .find(|d| d.uuid.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(u)))
            })
        })
}

/// A PCI bus id in sysfs form (`0000:17:00.0`) from NVML's (`00000000:17:00.0`), CUDA's
/// (`0000:17:00.0`, upper case) or sysfs's own spelling; `None` if it is not one.
pub fn normalize_bus_id(text: &str) -> Option<String> {
    let (domain, rest) = text.trim().split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let hex = |s: &str, max: u32| u32::from_str_radix(s, 16).ok().filter(|v| *v <= max);
    Some(format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        hex(domain, 0xffff)?,
        hex(bus, 0xff)?,
        hex(device, 0x1f)?,
        hex(function, 7)?
    ))
}

/// One device's NVML view as `nvml.*` facts. Queries the device does not support are
/// left out; `nvml.confidential_compute` says `not offered` where the driver has no
/// such query.
pub fn facts(system: &NvmlSystem, device: &NvmlDevice) -> BTreeMap<String, serde_json::Value> {
    let mut facts = BTreeMap::new();
    let mut put = |key: &str, value: Option<serde_json::Value>| {
        if let Some(v) = value {
            facts.insert(format!("nvml.{key}"), v);
        }
    };
    let text = |v: &Option<String>| v.clone().map(serde_json::Value::from);
    let on_off = |v: Option<bool>| v.map(|b| serde_json::Value::from(if b { "enabled" } else { "disabled" }));
    put("index", Some(device.index.into()));
    put("name", text(&device.name));
    put("uuid", text(&device.uuid));
    put("serial", text(&device.serial));
    put("board_part_number", text(&device.board_part_number));
    put("vbios_version", text(&device.vbios_version));
    put("inforom.image_version", text(&device.inforom_image_version));
    put("inforom.oem_version", text(&device.inforom_oem_version));
    put("inforom.ecc_version", text(&device.inforom_ecc_version));
    put("inforom.power_version", text(&device.inforom_power_version));
    put("driver_version", text(&system.driver_version));
    put(
        "cuda_driver_version",
        system
            .cuda_driver_version
            .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10).into()),
    );
    put("pci_bus_id", device.pci_address().map(Into::into));
    put(
        "pci_id",
        device.pci_ids().map(|(v, d)| format!("{v:04x}:{d:04x}").into()),
    );
    put(
        "pci_subsystem_id",
        device
            .pci_subsystem_id
            .map(|s| format!("{:04x}:{:04x}", s & 0xffff, s >> 16).into()),
    );
    put("ecc_mode", on_off(device.ecc_enabled));
    put("ecc_mode_pending", on_off(device.ecc_pending));
    put("mig_mode", on_off(device.mig_enabled));
    put("mig_mode_pending", on_off(device.mig_pending));
    put("persistence_mode", on_off(device.persistence_mode));
    put("compute_mode", text(&device.compute_mode));
    put(
        "confidential_compute",
        Some(match system.confidential_compute {
            Some(true) => "on".into(),
            Some(false) => "off".into(),
            None => "not offered".into(),
        }),
    );
    put("pcie.gen_current", device.pcie_gen_current.map(Into::into));
    put("pcie.gen_max", device.pcie_gen_max.map(Into::into));
    put("pcie.width_current", device.pcie_width_current.map(Into::into));
    put("pcie.width_max", device.pcie_width_max.map(Into::into));
    facts
}

/// How tenants share a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharingMode {
    /// One process at a time (compute mode exclusive-process).
    Exclusive,
    /// Processes take turns on the whole device, each in its own context (the default).
    TimeSliced,
    /// An MPS control daemon runs: clients share the device's compute at once.
    Mps,
    /// The device is split into MIG instances, each with its own memory and compute.
    Mig,
}

impl SharingMode {
    /// The name recorded in facts and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            SharingMode::Exclusive => "exclusive",
            SharingMode::TimeSliced => "time_sliced",
            SharingMode::Mps => "mps",
            SharingMode::Mig => "mig",
        }
    }
}

/// The sharing mode of a device and why: MIG where NVML says MIG is on, else MPS where
/// a control daemon is there (`mps`: what [`detect_mps`] found), else exclusive where the
/// compute mode is exclusive-process, else time-sliced.
pub fn sharing_mode(device: Option<&NvmlDevice>, mps: Option<&str>) -> (SharingMode, String) {
    if device.and_then(|d| d.mig_enabled) == Some(true) {
        return (SharingMode::Mig, "NVML reports MIG mode enabled".into());
    }
    if let Some(why) = mps {
        return (SharingMode::Mps, format!("an MPS control daemon is present: {why}"));
    }
    match device.and_then(|d| d.compute_mode.as_deref()) {
        Some(mode @ ("exclusive_process" | "exclusive_thread")) => {
            (SharingMode::Exclusive, format!("NVML reports compute mode {mode}"))
        }
        Some(mode) => (
            SharingMode::TimeSliced,
            format!("NVML reports compute mode {mode}, MIG off, and no MPS control daemon is present"),
        ),
        None => (
            SharingMode::TimeSliced,
            "no MPS control daemon is present; without NVML, MIG and the compute mode are unknown and the \
             driver's default (time-slicing) is assumed"
                .into(),
        ),
    }
}

/// Signs of an MPS control daemon on the host under `host`: an
/// `nvidia-cuda-mps-control` process in `/proc`, or the control pipe in the pipe
/// directory (`pipe_dir`, from `CUDA_MPS_PIPE_DIRECTORY`, else `/tmp/nvidia-mps`).
pub fn detect_mps(host: &HostFs, pipe_dir: Option<&str>) -> Option<String> {
    for pid in host.list_or_empty("/proc").unwrap_or_default() {
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if host
            .read_trimmed(&format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm == "nvidia-cuda-mps-control")
        {
            return Some(format!("process nvidia-cuda-mps-control (pid {pid})"));
        }
    }
    let dir = pipe_dir.filter(|d| !d.is_empty()).unwrap_or("/tmp/nvidia-mps");
    let control = format!("{}/control", dir.trim_end_matches('/'));
    host.exists(&control).then(|| format!("control pipe {control}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_of_every_spelling_meet() {
        assert_eq!(normalize_bus_id("00000000:17:00.0").as_deref(), Some("0000:17:00.0"));
        assert_eq!(normalize_bus_id("0000:3B:00.0").as_deref(), Some("0000:3b:00.0"));
        assert_eq!(normalize_bus_id("0001:c1:1f.7").as_deref(), Some("0001:c1:1f.7"));
        assert_eq!(normalize_bus_id("17:00.0"), None);
        assert_eq!(normalize_bus_id("0000:17:20.0"), None);
        assert_eq!(normalize_bus_id("zz:17:00.0"), None);
    }

    #[test]
    fn pci_ids_split_nvml_s_combined_id() {
        let d = NvmlDevice {
            pci_device_id: Some(0x2330_10de),
            ..NvmlDevice::default()
        };
        assert_eq!(d.pci_ids(), Some((0x10de, 0x2330)));
    }

    #[test]
    fn mig_beats_mps_beats_exclusive_beats_time_slicing() {
        let dev = |mig: bool, mode: &str| NvmlDevice {
            mig_enabled: Some(mig),
            compute_mode: Some(mode.into()),
            ..NvmlDevice::default()
        };
        let mps = Some("control pipe /tmp/nvidia-mps/control");
        assert_eq!(sharing_mode(Some(&dev(true, "default")), mps).0, SharingMode::Mig);
        assert_eq!(
            sharing_mode(Some(&dev(false, "exclusive_process")), mps).0,
            SharingMode::Mps
        );
        assert_eq!(
            sharing_mode(Some(&dev(false, "exclusive_process")), None).0,
            SharingMode::Exclusive
        );
        assert_eq!(
            sharing_mode(Some(&dev(false, "default")), None).0,
            SharingMode::TimeSliced
        );
        let (mode, why) = sharing_mode(None, None);
        assert_eq!(mode, SharingMode::TimeSliced);
        assert!(why.contains("without NVML"), "{why}");
    }
}
