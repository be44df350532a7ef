//! PCI functions as sysfs shows them (`/sys/bus/pci/devices/*`), read through a
//! [`HostFs`] root, and the names the pci.ids database gives them.
//!
//! Accelerators are the functions of class 0x03 (display: GPUs), 0x12 (processing
//! accelerators: NPUs, Gaudi, Instinct parts that report it) and 0x0b (co-processors).
//! A BMC's VGA console (ASPEED) is class 0x03 too and is left out. Functions that no
//! accelerator backend of this build drives still get host checks: they become trial
//! devices of backend [`BACKEND`].

use std::collections::BTreeMap;

use crate::accel::DeviceInfo;
use crate::hostfs::{HostError, HostErrorKind, HostFs};

/// The backend name of PCI functions that hilt sees in sysfs but no backend drives.
pub const BACKEND: &str = "pci";

/// Where sysfs lists PCI functions.
pub const DEVICES: &str = "/sys/bus/pci/devices";

/// The PCI base classes hilt treats as accelerators.
pub const ACCELERATOR_CLASSES: [u8; 3] = [0x03, 0x12, 0x0b];

/// Vendors whose display functions are the console of a baseboard management
/// controller, never an accelerator: ASPEED (the AST2x00 VGA, `1a03:2000`).
pub const BMC_DISPLAY_VENDORS: [u16; 1] = [0x1a03];

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

    /// Whether hilt treats the function as an accelerator: its class is one of
    /// [`ACCELERATOR_CLASSES`] and it is not a baseboard management controller's display
    /// ([`BMC_DISPLAY_VENDORS`]).
    pub fn is_accelerator(&self) -> bool {
        ACCELERATOR_CLASSES.contains(&self.base_class())
            && !(self.base_class() == 0x03 && BMC_DISPLAY_VENDORS.contains(&self.vendor))
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

/// What a scan of sysfs found: the accelerator functions, and the functions whose
/// attributes could not be read or parsed (which may or may not be accelerators).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PciScan {
    /// Accelerator functions, in address order.
    pub functions: Vec<PciFunction>,
    /// Functions hilt could not read, in address order.
    pub broken: Vec<BrokenFunction>,
}

/// A PCI function whose attributes could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokenFunction {
    /// The bus address.
    pub address: String,
    /// Why.
    pub error: HostError,
}

impl std::fmt::Display for BrokenFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PCI function {}: {}", self.address, self.error)
    }
}

/// The accelerator functions under the root. A host without PCI (no
/// `/sys/bus/pci/devices`) has none. Each function's `class` is read first and the rest
/// only for accelerators, so that a malformed attribute of some other function cannot
/// hide them; a function that cannot be read is listed in [`PciScan::broken`], never an
/// error of the whole scan.
pub fn accelerators(fs: &HostFs) -> Result<PciScan, HostError> {
    let mut scan = PciScan::default();
    for address in fs.list_or_empty(DEVICES)? {
        let class = match read_hex(fs, &format!("{DEVICES}/{address}/class")) {
            Ok(Some(class)) => class,
            Ok(None) => continue,
            Err(error) => {
                scan.broken.push(BrokenFunction { address, error });
                continue;
            }
        };
        if !ACCELERATOR_CLASSES.contains(&((class >> 16) as u8)) {
            continue;
        }
        match read_function(fs, &address) {
            Ok(f) if f.is_accelerator() => scan.functions.push(f),
            Ok(_) => {}
            Err(error) => scan.broken.push(BrokenFunction { address, error }),
        }
    }
    Ok(scan)
}

/// Reads one function by bus address.
pub fn read_function(fs: &HostFs, address: &str) -> Result<PciFunction, HostError> {
    let dir = format!("{DEVICES}/{address}");
    let hex = |name: &str| read_hex(fs, &format!("{dir}/{name}"));
    let required = |name: &str, value: Option<u32>| {
        value.ok_or_else(|| {
            HostError::new(
                format!("{dir}/{name}"),
                HostErrorKind::NotFound,
                "no such file or directory",
            )
        })
    };
    let id16 = |name: &str, value: u32| {
        u16::try_from(value).map_err(|_| {
            HostError::new(
                format!("{dir}/{name}"),
                HostErrorKind::Other,
                format!("0x{value:x} is not a 16-bit PCI id"),
            )
        })
    };
    let optional_link = |name: &str| match fs.link_name(&format!("{dir}/{name}")) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind == HostErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let class = required("class", hex("class")?)?;
    let vendor = id16("vendor", required("vendor", hex("vendor")?)?)?;
    let device = id16("device", required("device", hex("device")?)?)?;
    let subsystem_vendor = hex("subsystem_vendor")?
        .map(|v| id16("subsystem_vendor", v))
        .transpose()?;
    let subsystem_device = hex("subsystem_device")?
        .map(|v| id16("subsystem_device", v))
        .transpose()?;
    Ok(PciFunction {
        address: address.to_string(),
        vendor,
        device,
        subsystem_vendor,
        subsystem_device,
        class,
        driver: optional_link("driver")?,
        iommu_group: optional_link("iommu_group")?,
    })
}

/// The most bytes hilt reads from an option ROM (they are at most a few MiB).
pub const ROM_READ_LIMIT: u64 = 64 << 20;

/// The option ROM of function `address`.
///
/// A ROM the kernel already lets hilt read (and any ROM in a fixture tree or capture,
/// where it is a plain file) is read as it is. Otherwise sysfs refuses with `EINVAL` until
/// reading is enabled by writing to the `rom` file; that sets a kernel flag and, during
/// each read, maps the ROM through the device's ROM BAR, so it changes device state
/// briefly. hilt does that only with `enable` (an opt-in: `enable_rom_read` in a profile,
/// `hilt capture --enable-rom-read`) and only on the live host's sysfs
/// ([`HostFs::write_attribute`]): it writes `1\n`, reads, and writes `0\n` (the kernel
/// disables reading only for exactly the two bytes `0\n`). A read that fails otherwise
/// (`EIO`: reading was enabled already and mapping failed) is an error and writes nothing.
pub fn read_rom(fs: &HostFs, address: &str, enable: bool) -> Result<Vec<u8>, HostError> {
    let path = format!("{DEVICES}/{address}/rom");
    let mut rom = SysfsRom { fs, path: &path };
    read_rom_from(&mut rom, &path, enable)
}

/// The message of a ROM that needs the opt-in write.
pub const ROM_NEEDS_ENABLE: &str = "the kernel reads this option ROM only after reading is enabled by a write to its \
     `rom` file, which changes device state briefly and is opt-in (`enable_rom_read = true` in the profile, \
     `hilt capture --enable-rom-read`)";

/// A function's `rom` attribute: sysfs, or a fake in tests.
trait RomFile {
    fn read(&mut self) -> Result<Vec<u8>, HostError>;
    fn write(&mut self, value: &[u8]) -> Result<(), HostError>;
}

struct SysfsRom<'a> {
    fs: &'a HostFs,
    path: &'a str,
}

impl RomFile for SysfsRom<'_> {
    fn read(&mut self) -> Result<Vec<u8>, HostError> {
        self.fs.read_limited(self.path, ROM_READ_LIMIT)
    }

    fn write(&mut self, value: &[u8]) -> Result<(), HostError> {
        self.fs.write_attribute(self.path, value)
    }
}

fn read_rom_from(rom: &mut impl RomFile, path: &str, enable: bool) -> Result<Vec<u8>, HostError> {
    let empty = || HostError::new(path, HostErrorKind::Other, "the option ROM reads as empty");
    match rom.read() {
        Ok(bytes) if bytes.is_empty() => return Err(empty()),
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.os_error != Some(libc::EINVAL) => return Err(e),
        Err(_) if !enable => return Err(HostError::new(path, HostErrorKind::Other, ROM_NEEDS_ENABLE)),
        Err(_) => {}
    }
    rom.write(b"1\n")?;
    let read = rom.read();
    let restored = rom.write(b"0\n");
    let bytes = read?;
    restored.map_err(|e| {
        HostError::new(
            path,
            HostErrorKind::Other,
            format!(
                "read the option ROM, but failed to disable reading it again: {}",
                e.message
            ),
        )
    })?;
    if bytes.is_empty() {
        return Err(empty());
    }
    Ok(bytes)
}

/// A hexadecimal attribute; `None` when the file does not exist.
fn read_hex(fs: &HostFs, path: &str) -> Result<Option<u32>, HostError> {
    match fs.read_trimmed(path) {
        Ok(text) => parse_hex(&text).map(Some).ok_or_else(|| {
            HostError::new(
                path,
                HostErrorKind::Other,
                format!("`{text}` is not a hexadecimal number"),
            )
        }),
        Err(e) if e.kind == HostErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `0x10de` or `10de` as a number.
pub fn parse_hex(text: &str) -> Option<u32> {
    let t = text.trim();
    u32::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok()
}

/// A PCIe link's speed in GT/s from sysfs text, as every kernel writes it: `16.0 GT/s
/// PCIe` (Linux 5.3 and later, `pci_speed_string`), `16 GT/s` and `2.5 GT/s` (before).
/// `None` for what the kernel writes when it does not know the speed (`Unknown`, and
/// `Unknown speed` before 5.3), for conventional PCI bus speeds (`33 MHz PCI`), and for
/// anything else it cannot have written.
pub fn parse_link_speed(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    // The kernel prints a decimal number: digits, and a fraction after a point.
    let word = words.next()?;
    let (whole, fraction) = word.split_once('.').unwrap_or((word, "0"));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    let number = word.parse::<f64>().ok()?;
    (words.next() == Some("GT/s") && number > 0.0 && number.is_finite()).then_some(number)
}

/// The link widths the PCIe specification defines (the Negotiated and Maximum Link
/// Width fields: x1, x2, x4, x8, x12, x16, x32).
pub const LINK_WIDTHS: [u32; 7] = [1, 2, 4, 8, 12, 16, 32];

/// A PCIe link width from sysfs text (`16`, or `x16`). `None` for every value that is no
/// width: 255, the kernel's `PCIE_LNK_WIDTH_UNKNOWN` (a function without link
/// capabilities, such as an integrated device, reads so); 0, the reserved value a link
/// that did not train reports; 63, the all-ones field a function that does not answer
/// (powered down, gone) reads as; and any other reserved value.
pub fn parse_link_width(text: &str) -> Option<u32> {
    let text = text.trim();
    let digits = text.strip_prefix('x').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let width = digits.parse::<u32>().ok()?;
    LINK_WIDTHS.contains(&width).then_some(width)
}

/// The PCI functions from the root of the hierarchy down to `address`: the root port
/// first, then each switch port on the way, and `address` itself last, read from the
/// sysfs device path its `/sys/bus/pci/devices` entry links to
/// (`/sys/devices/pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0`).
/// `None` when the entry is not a link into `/sys/devices/` (a hand-made tree, or a
/// capture that did not keep the links), so the path is unknown.
pub fn path_from_root(fs: &HostFs, address: &str) -> Result<Option<Vec<String>>, HostError> {
    let canonical = fs.canonical_host_path(&format!("{DEVICES}/{address}"))?;
    let Some(below) = canonical.strip_prefix("/sys/devices/") else {
        return Ok(None);
    };
    let mut parts = below.split('/').skip_while(|c| !is_root_bus(c));
    if parts.next().is_none() {
        return Ok(None);
    }
    let path: Vec<String> = parts.map(str::to_string).collect();
    let well_formed =
        !path.is_empty() && path.iter().all(|c| is_address(c)) && path.last().is_some_and(|a| a == address);
    Ok(well_formed.then_some(path))
}

/// `pci0000:00`: a PCI root bus (host bridge) in a sysfs device path (domains may have
/// more than four digits, as Intel VMD's `pci10000:e0`).
fn is_root_bus(component: &str) -> bool {
    component.strip_prefix("pci").is_some_and(|rest| {
        rest.split_once(':')
            .is_some_and(|(domain, bus)| hex_of(domain, 4..=8) && hex_of(bus, 2..=2))
    })
}

/// Whether `component` is a PCI function address, `0000:17:00.0`
/// (domain:bus:device.function, hex digits).
pub fn is_address(component: &str) -> bool {
    let mut parts = component.split(':');
    let (Some(domain), Some(bus), Some(devfn), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Some((device, function)) = devfn.split_once('.') else {
        return false;
    };
    hex_of(domain, 4..=8) && hex_of(bus, 2..=2) && hex_of(device, 2..=2) && hex_of(function, 1..=1)
}

fn hex_of(text: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&text.len()) && text.bytes().all(|c| c.is_ascii_hexdigit())
}

/// What a function's power management says, read without waking it: sysfs
/// `power/runtime_status` (`active`, `suspended`, ...) and `power_state` (`D0` ...
/// `D3cold`, Linux 5.17 and later). Reading them changes nothing; hilt never writes
/// `power/control`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerState {
    /// `power/runtime_status`, where sysfs has it.
    pub runtime_status: Option<String>,
    /// `power_state`, where sysfs has it.
    pub power_state: Option<String>,
}

impl PowerState {
    /// Reads the power state of function `address`.
    pub fn read(fs: &HostFs, address: &str) -> Result<PowerState, HostError> {
        let read = |name: &str| match fs.read_trimmed(&format!("{DEVICES}/{address}/{name}")) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind == HostErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        Ok(PowerState {
            runtime_status: read("power/runtime_status")?,
            power_state: read("power_state")?,
        })
    }

    /// Whether the function is powered down, so that its link registers cannot be read
    /// without waking it: runtime-suspended (or suspending), or in D3cold.
    pub fn asleep(&self) -> bool {
        matches!(self.runtime_status.as_deref(), Some("suspended" | "suspending"))
            || self.power_state.as_deref() == Some("D3cold")
    }

    /// `runtime_status suspended, power_state D3cold`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.runtime_status {
            parts.push(format!("runtime_status {s}"));
        }
        if let Some(s) = &self.power_state {
            parts.push(format!("power_state {s}"));
        }
        parts.join(", ")
    }
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

    /// A `rom` attribute that behaves as the kernel's `pci_read_rom` and `pci_write_rom`:
    /// reads fail with `EINVAL` until enabled (`EIO` when mapping fails), and a write
    /// disables only when it is exactly `0\n`.
    struct FakeRom {
        enabled: bool,
        map_fails: bool,
        writes: Vec<Vec<u8>>,
    }

    impl RomFile for FakeRom {
        fn read(&mut self) -> Result<Vec<u8>, HostError> {
            let errno = if !self.enabled {
                libc::EINVAL
            } else if self.map_fails {
                libc::EIO
            } else {
                return Ok(b"\x55\xaaROM".to_vec());
            };
            Err(crate::hostfs::error("rom", &std::io::Error::from_raw_os_error(errno)))
        }

        fn write(&mut self, value: &[u8]) -> Result<(), HostError> {
            self.writes.push(value.to_vec());
            self.enabled = !(value.len() == 2 && value[0] == b'0');
            Ok(())
        }
    }

    fn fake(enabled: bool, map_fails: bool) -> FakeRom {
        FakeRom {
            enabled,
            map_fails,
            writes: Vec::new(),
        }
    }

    #[test]
    fn an_enabled_rom_read_writes_one_and_zero_with_newlines_and_leaves_it_disabled() {
        let mut rom = fake(false, false);
        assert_eq!(read_rom_from(&mut rom, "rom", true).expect("read"), b"\x55\xaaROM");
        assert_eq!(rom.writes, [b"1\n".to_vec(), b"0\n".to_vec()]);
        assert!(!rom.enabled, "reading must be disabled again, as it was found");
    }

    #[test]
    fn without_the_opt_in_a_refused_rom_writes_nothing_and_names_the_parameter() {
        let mut rom = fake(false, false);
        let e = read_rom_from(&mut rom, "rom", false).expect_err("refused");
        assert!(e.message.contains("enable_rom_read = true"), "{e}");
        assert!(rom.writes.is_empty());
    }

    #[test]
    fn a_readable_rom_or_one_that_fails_to_map_is_never_written() {
        let mut rom = fake(true, false);
        read_rom_from(&mut rom, "rom", true).expect("read");
        assert!(rom.writes.is_empty());
        let mut rom = fake(true, true);
        let e = read_rom_from(&mut rom, "rom", true).expect_err("EIO");
        assert_eq!(e.os_error, Some(libc::EIO));
        assert!(rom.writes.is_empty(), "an enabled flag found on stays on");
        assert!(rom.enabled);
    }

    #[test]
    fn rom_reads_never_write_under_a_replayed_root_or_follow_links_out_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().join("file");
        std::fs::write(&target, "outside").expect("write");
        let d = dir.path().join("sys/bus/pci/devices");
        for address in ["0000:01:00.0", "0000:02:00.0"] {
            std::fs::create_dir_all(d.join(address)).expect("mkdir");
        }
        std::fs::write(d.join("0000:01:00.0/rom"), "").expect("write");
        std::os::unix::fs::symlink(&target, d.join("0000:02:00.0/rom")).expect("link");
        let fs = HostFs::at(dir.path()).expect("root");
        let e = read_rom(&fs, "0000:01:00.0", true).expect_err("empty");
        assert_eq!(e.message, "the option ROM reads as empty");
        let e = read_rom(&fs, "0000:02:00.0", true).expect_err("outside");
        assert_eq!(e.kind, HostErrorKind::Refused, "{e}");
        assert_eq!(std::fs::read(d.join("0000:01:00.0/rom")).expect("read"), b"");
        assert_eq!(std::fs::read(&target).expect("read"), b"outside");
        let e = fs
            .write_attribute("/sys/bus/pci/devices/0000:01:00.0/rom", b"1\n")
            .expect_err("not live");
        assert_eq!(e.kind, HostErrorKind::Refused);
    }

    #[test]
    fn one_malformed_function_does_not_hide_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("sys/bus/pci/devices");
        let put = |address: &str, name: &str, body: &[u8]| {
            std::fs::create_dir_all(d.join(address)).expect("mkdir");
            std::fs::write(d.join(address).join(name), body).expect("write");
        };
        for (name, body) in [("vendor", "0x10de"), ("device", "0x2330"), ("class", "0x030200")] {
            put("0000:17:00.0", name, body.as_bytes());
        }
        put("0000:18:00.0", "vendor", b"zz");
        put("0000:18:00.0", "device", b"0x2330");
        put("0000:18:00.0", "class", b"0x030200");
        put("0000:19:00.0", "vendor", b"0x8086");
        put("0000:19:00.0", "device", b"\xff\xfe");
        put("0000:19:00.0", "class", b"0x060000");
        put("0000:1a:00.0", "vendor", b"0x1a03");
        put("0000:1a:00.0", "device", b"0x2000");
        put("0000:1a:00.0", "class", b"0x030000");
        std::fs::create_dir_all(d.join("0000:1b:00.0")).expect("mkdir");
        std::os::unix::fs::symlink("class", d.join("0000:1b:00.0/class")).expect("loop");
        let fs = HostFs::at(dir.path()).expect("root");
        let scan = accelerators(&fs).expect("scan");
        let found: Vec<&str> = scan.functions.iter().map(|f| f.address.as_str()).collect();
        assert_eq!(
            found,
            ["0000:17:00.0"],
            "the BMC VGA and the bridge are no accelerators"
        );
        let broken: Vec<&str> = scan.broken.iter().map(|b| b.address.as_str()).collect();
        assert_eq!(broken, ["0000:18:00.0", "0000:1b:00.0"]);
        assert!(
            scan.broken[0]
                .error
                .message
                .contains("`zz` is not a hexadecimal number")
        );
    }

    #[test]
    fn link_speeds_parse_as_sysfs_writes_them() {
        assert_eq!(parse_link_speed("32.0 GT/s PCIe"), Some(32.0));
        assert_eq!(parse_link_speed("2.5 GT/s"), Some(2.5));
        assert_eq!(parse_link_speed("16 GT/s"), Some(16.0), "before Linux 5.3");
        for unknown in [
            "Unknown",
            "Unknown speed",
            "33 MHz PCI",
            "133 MHz PCI-X",
            "0 GT/s",
            "",
            "NaN GT/s",
            "inf GT/s",
            "+16 GT/s",
            "1e1 GT/s",
            "16. GT/s",
            ".5 GT/s",
            "16.0GT/s",
        ] {
            assert_eq!(parse_link_speed(unknown), None, "{unknown}");
        }
        assert_eq!(parse_link_width("16"), Some(16));
        assert_eq!(parse_link_width("x8"), Some(8));
        assert_eq!(parse_link_width(" 4\n"), Some(4));
        for unknown in [
            "255", "0", "63", "3", "-1", "wide", "+16", "xx16", "x", "", "16x", "1 6", "016a",
        ] {
            assert_eq!(parse_link_width(unknown), None, "{unknown}");
        }
        assert!(is_address("0000:17:00.0") && !is_address("0000:17:00") && !is_address("pci0000:17"));
        assert!(is_root_bus("pci0000:00") && is_root_bus("pci10000:e0") && !is_root_bus("pcie"));
        assert!(is_address("10000:e1:00.0"));
        assert_eq!(pcie_generation(32.0), Some(5));
        assert_eq!(parse_hex("0x030200"), Some(0x030200));
        assert_eq!(parse_hex("zz"), None);
    }
}
