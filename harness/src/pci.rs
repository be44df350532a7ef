//! PCI functions as sysfs shows them (`/sys/bus/pci/devices/*`), read through a
//! [`HostFs`] root, and the names the pci.ids database gives them.
//!
//! Accelerators are the functions of class 0x03 (display: GPUs), 0x12 (processing
//! accelerators: NPUs, Gaudi, Instinct parts that report it) and 0x0b (co-processors).
//! Functions that no accelerator backend of this build drives still get host checks:
//! they become trial devices of backend [`BACKEND`].

use std::collections::BTreeMap;

use crate::accel::DeviceInfo;
use crate::hostfs::{HostError, HostErrorKind, HostFs};

/// The backend name of PCI functions that hilt sees in sysfs but no backend drives.
pub const BACKEND: &str = "pci";

/// Where sysfs lists PCI functions.
pub const DEVICES: &str = "/sys/bus/pci/devices";

/// The PCI base classes hilt treats as accelerators.
pub const ACCELERATOR_CLASSES: [u8; 3] = [0x03, 0x12, 0x0b];

/// One PCI function.
#[derive(Debug, Clone, PartialEq)]
pub struct PciFunction {
    /// The bus address, `0000:17:00.0`.
    pub address: String,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Subsystem vendor id, where sysfs has it.
    pub subsystem_vendor: Option<u16>,
    /// Subsystem device id, where sysfs has it.
    pub subsystem_device: Option<u16>,
    /// The 24-bit class code (`0x030200`).
    pub class: u32,
    /// The bound driver, if any.
    pub driver: Option<String>,
    /// The IOMMU group, if the function is in one.
    pub iommu_group: Option<String>,
}

impl PciFunction {
    /// The base class, the top byte of the class code.
    pub fn base_class(&self) -> u8 {
        (self.class >> 16) as u8
    }

    /// Whether hilt treats the function as an accelerator.
    pub fn is_accelerator(&self) -> bool {
        ACCELERATOR_CLASSES.contains(&self.base_class())
    }

    /// The sysfs directory of the function, as a host path.
    pub fn sysfs(&self) -> String {
        format!("{DEVICES}/{}", self.address)
    }

    /// The vendor's name in pci.ids.
    pub fn vendor_name(&self) -> Option<&'static str> {
        use pci_ids::FromId;
        pci_ids::Vendor::from_id(self.vendor).map(|v| v.name())
    }

    /// The device's name in pci.ids.
    pub fn device_name(&self) -> Option<&'static str> {
        pci_ids::Device::from_vid_pid(self.vendor, self.device).map(|d| d.name())
    }

    /// The class's name in pci.ids (`3D controller`).
    pub fn class_name(&self) -> Option<&'static str> {
        pci_ids::Subclass::from_cid_sid(self.base_class(), (self.class >> 8) as u8).map(|s| s.name())
    }

    /// The trial device id: `pci-` and the address with `:` as `-` (`pci-0000-17-00.0`),
    /// so that trial names keep `::` for their own separators.
    pub fn trial_id(&self) -> String {
        format!("pci-{}", self.address.replace(':', "-"))
    }

    /// The function as a trial device's identity, for host checks only.
    pub fn device_info(&self) -> DeviceInfo {
        let mut facts = BTreeMap::new();
        facts.insert("pci.class".into(), format!("0x{:06x}", self.class).into());
        if let Some(c) = self.class_name() {
            facts.insert("pci.class_name".into(), c.into());
        }
        if let Some(d) = &self.driver {
            facts.insert("pci.driver".into(), d.clone().into());
        }
        if let Some(g) = &self.iommu_group {
            facts.insert("pci.iommu_group".into(), g.clone().into());
        }
        if let (Some(v), Some(d)) = (self.subsystem_vendor, self.subsystem_device) {
            facts.insert("pci.subsystem".into(), format!("{v:04x}:{d:04x}").into());
        }
        DeviceInfo {
            id: self.trial_id(),
            backend: BACKEND.into(),
            name: self.device_name().map_or_else(
                || format!("PCI device {:04x}:{:04x}", self.vendor, self.device),
                str::to_string,
            ),
            vendor: self.vendor_name().map(str::to_string),
            pci_vendor: Some(self.vendor),
            pci_device: Some(self.device),
            pci_address: Some(self.address.clone()),
            simulated: false,
            global_mem_bytes: 0,
            local_mem_bytes: 0,
            compute_units: 0,
            facts,
        }
    }
}

/// Every PCI function under the root, in address order. A host without PCI (no
/// `/sys/bus/pci/devices`) has none.
pub fn scan(fs: &HostFs) -> Result<Vec<PciFunction>, HostError> {
    let mut found = Vec::new();
    for address in fs.list_or_empty(DEVICES)? {
        found.push(read_function(fs, &address)?);
    }
    Ok(found)
}

/// The accelerator functions under the root.
pub fn accelerators(fs: &HostFs) -> Result<Vec<PciFunction>, HostError> {
    Ok(scan(fs)?.into_iter().filter(PciFunction::is_accelerator).collect())
}

/// Reads one function by bus address.
pub fn read_function(fs: &HostFs, address: &str) -> Result<PciFunction, HostError> {
    let dir = format!("{DEVICES}/{address}");
    let hex = |name: &str| -> Result<Option<u32>, HostError> {
        let path = format!("{dir}/{name}");
        match fs.read_trimmed(&path) {
            Ok(text) => parse_hex(&text).map(Some).ok_or_else(|| HostError {
                path,
                kind: HostErrorKind::Other,
                message: format!("`{text}` is not a hexadecimal number"),
            }),
            Err(e) if e.kind == HostErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    let required = |name: &str, value: Option<u32>| {
        value.ok_or_else(|| HostError {
            path: format!("{dir}/{name}"),
            kind: HostErrorKind::NotFound,
            message: "no such file or directory".into(),
        })
    };
    let optional_link = |name: &str| match fs.link_name(&format!("{dir}/{name}")) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind == HostErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    Ok(PciFunction {
        address: address.to_string(),
        vendor: required("vendor", hex("vendor")?)? as u16,
        device: required("device", hex("device")?)? as u16,
        subsystem_vendor: hex("subsystem_vendor")?.map(|v| v as u16),
        subsystem_device: hex("subsystem_device")?.map(|v| v as u16),
        class: required("class", hex("class")?)?,
        driver: optional_link("driver")?,
        iommu_group: optional_link("iommu_group")?,
    })
}

/// The option ROM of function `address`.
///
/// sysfs refuses to read a ROM until `1` is written to its `rom` file; that sets a kernel
/// flag allowing reads (the kernel maps the ROM only for the length of each read), and
/// changes nothing on the device. With `enable`, hilt writes `1` when a plain read is
/// refused and writes `0` afterwards, whatever the read gave, restoring the state it
/// found. Without `enable` a refused read is an error. Fixture trees and captures hold
/// the ROM as a plain file, which reads without enabling.
pub fn read_rom(fs: &HostFs, address: &str, enable: bool) -> Result<Vec<u8>, HostError> {
    let path = format!("{DEVICES}/{address}/rom");
    let refused = |e: Option<HostError>| HostError {
        path: path.clone(),
        kind: HostErrorKind::Other,
        message: match e {
            Some(e) => format!(
                "the kernel refused the read ({}) and enabling it is not allowed",
                e.message
            ),
            None => "the kernel gave no bytes and enabling the read is not allowed".into(),
        },
    };
    match fs.read(&path) {
        Ok(bytes) if !bytes.is_empty() => return Ok(bytes),
        Err(e) if matches!(e.kind, HostErrorKind::NotFound | HostErrorKind::PermissionDenied) => return Err(e),
        Ok(_) if !enable => return Err(refused(None)),
        Err(e) if !enable => return Err(refused(Some(e))),
        _ => {}
    }
    fs.write_attribute(&path, "1")?;
    let read = fs.read(&path);
    let restored = fs.write_attribute(&path, "0");
    let bytes = read?;
    restored?;
    if bytes.is_empty() {
        return Err(HostError {
            path,
            kind: HostErrorKind::Other,
            message: "the option ROM is empty even with reading enabled".into(),
        });
    }
    Ok(bytes)
}

/// `0x10de` or `10de` as a number.
pub fn parse_hex(text: &str) -> Option<u32> {
    let t = text.trim();
    u32::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok()
}

/// A PCIe link's speed in GT/s from sysfs text (`16.0 GT/s PCIe`, `2.5 GT/s`); `None`
/// for `Unknown` and anything unreadable.
pub fn parse_link_speed(text: &str) -> Option<f64> {
    let number = text.split_whitespace().next()?;
    number.parse::<f64>().ok().filter(|s| *s > 0.0)
}

/// The PCIe generation that runs at `gts` GT/s.
pub fn pcie_generation(gts: f64) -> Option<u8> {
    [(2.5, 1), (5.0, 2), (8.0, 3), (16.0, 4), (32.0, 5), (64.0, 6)]
        .iter()
        .find(|(s, _)| (gts - s).abs() < 0.01)
        .map(|(_, g)| *g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_pci_ids_database_knows_the_accelerators() {
        // A damaged or replaced database (see docs/host-checks.md on pci-ids' build
        // script) shows up here first.
        let f = |vendor, device| PciFunction {
            address: "0000:17:00.0".into(),
            vendor,
            device,
            subsystem_vendor: None,
            subsystem_device: None,
            class: 0x030200,
            driver: None,
            iommu_group: None,
        };
        assert_eq!(f(0x10de, 0x2330).device_name(), Some("GH100 [H100 SXM5 80GB]"));
        assert_eq!(f(0x10de, 0x2330).vendor_name(), Some("NVIDIA Corporation"));
        assert_eq!(f(0x1002, 0x74a1).device_name(), Some("Aqua Vanjaram [Instinct MI300X]"));
        assert_eq!(f(0x10de, 0x2330).class_name(), Some("3D controller"));
        assert!(f(0x10de, 0x2330).is_accelerator());
        assert_eq!(f(0x10de, 0x2330).trial_id(), "pci-0000-17-00.0");
    }

    #[test]
    fn link_speeds_parse_as_sysfs_writes_them() {
        assert_eq!(parse_link_speed("32.0 GT/s PCIe"), Some(32.0));
        assert_eq!(parse_link_speed("2.5 GT/s"), Some(2.5));
        assert_eq!(parse_link_speed("Unknown"), None);
        assert_eq!(pcie_generation(32.0), Some(5));
        assert_eq!(parse_hex("0x030200"), Some(0x030200));
        assert_eq!(parse_hex("zz"), None);
    }
}
