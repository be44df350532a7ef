//! The UEFI variables that say whether the firmware and shim enforce signatures at boot,
//! read through every interface the kernel offers.
//!
//! Linux shows UEFI variables in up to three places, and a host may offer any of them:
//!
//! - efivarfs, mounted at [`EFIVARFS`]: one file per variable, `Name-GUID`, holding the
//!   variable's attributes as four bytes (little-endian) and then its value;
//! - the older sysfs interface at [`SYSFS_VARS`] (`CONFIG_EFI_VARS`, removed in Linux 6.0
//!   but still on long-term distribution kernels): a directory `Name-GUID` per variable
//!   holding `data` (the value alone) and `attributes` (one `EFI_VARIABLE_*` name a line);
//! - shim's MOK variable configuration table (shim 15.2 and later), which the kernel shows
//!   at [`MOKVAR`] (Linux 5.12 and later, `drivers/firmware/efi/mokvar-table.c`): one file
//!   per variable, named without GUID, holding the value shim saw at boot. shim copies its
//!   own state there and, since shim 16.0, the firmware's `SecureBoot`, `SetupMode`,
//!   `AuditMode` and `DeployedMode` too (shim's `mok.c`, `mok_state_variable_data`).
//!
//! [`VARIABLES`] lists what is read; [`capture_paths`] lists every file that reading may
//! touch, so that `hilt capture` carries all of them. Reading never writes.

use crate::hostfs::{HostError, HostErrorKind, HostFs};

/// The EFI global variable GUID (`EFI_GLOBAL_VARIABLE`, UEFI specification 2.10, section
/// 3.3 "Globally Defined Variables"): `SecureBoot`, `SetupMode`, `AuditMode`, `DeployedMode`.
pub const EFI_GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// shim's vendor GUID (`SHIM_LOCK_GUID` in shim's `include/guid.h`, the Linux kernel's
/// `EFI_SHIM_LOCK_GUID`): `MokSBStateRT`, `MokIgnoreDB` and the other MOK variables.
pub const SHIM_LOCK: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";

/// Where efivarfs is mounted.
pub const EFIVARFS: &str = "/sys/firmware/efi/efivars";

/// The sysfs efivars interface of kernels before 6.0.
pub const SYSFS_VARS: &str = "/sys/firmware/efi/vars";

/// shim's MOK variable configuration table as the kernel shows it.
pub const MOKVAR: &str = "/sys/firmware/efi/mok-variables";

/// `EFI_VARIABLE_NON_VOLATILE`, bit 0 of a variable's attributes.
pub const NON_VOLATILE: u32 = 0x1;

/// One UEFI variable hilt reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// Its name (`SecureBoot`).
    pub name: &'static str,
    /// Its vendor GUID, lower-case.
    pub guid: &'static str,
}

/// `SecureBoot`: 1 when the firmware boots with secure boot enforcing (UEFI 2.10, 32.3).
pub const SECURE_BOOT: Variable = Variable {
    name: "SecureBoot",
    guid: EFI_GLOBAL,
};
/// `SetupMode`: 1 while no platform key is enrolled; then nothing is verified and
/// anyone may enrol keys (UEFI 2.10, 32.3).
pub const SETUP_MODE: Variable = Variable {
    name: "SetupMode",
    guid: EFI_GLOBAL,
};
/// `AuditMode`: 1 in audit mode, where image verification failures are only logged
/// (in the Image Execution Information Table) and the image runs anyway (UEFI 2.10, 32.3).
pub const AUDIT_MODE: Variable = Variable {
    name: "AuditMode",
    guid: EFI_GLOBAL,
};
/// `DeployedMode`: 1 in deployed mode, user mode that can no longer be left without
/// the platform key; 0 in user mode. Both enforce signatures (UEFI 2.10, 32.3).
pub const DEPLOYED_MODE: Variable = Variable {
    name: "DeployedMode",
    guid: EFI_GLOBAL,
};
/// `MokSBStateRT`: shim's runtime copy of `MokSBState`; non-zero when shim was told
/// (through MokManager, `mokutil --disable-validation`) to stop validating the images it
/// loads (shim's `MokVars.txt`; shim takes any non-zero value as insecure mode).
pub const MOK_SB_STATE: Variable = Variable {
    name: "MokSBStateRT",
    guid: SHIM_LOCK,
};
/// `MokIgnoreDB`: shim's runtime copy of `MokDBState`; 1 when shim does not trust the
/// firmware's `db` for validation (stricter, never a finding).
pub const MOK_IGNORE_DB: Variable = Variable {
    name: "MokIgnoreDB",
    guid: SHIM_LOCK,
};

/// Every variable `platform.secure_boot` reads.
pub const VARIABLES: [Variable; 6] = [
    SECURE_BOOT,
    SETUP_MODE,
    AUDIT_MODE,
    DEPLOYED_MODE,
    MOK_SB_STATE,
    MOK_IGNORE_DB,
];

/// The kernel interface a reading came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// efivarfs: attributes and value.
    Efivarfs,
    /// The sysfs efivars interface of kernels before 6.0: value, and attributes as text.
    SysfsVars,
    /// shim's MOK variable table: the value shim saw at boot, no attributes.
    MokVarTable,
}

impl Interface {
    /// Whether the interface shows every variable the firmware holds, so that a variable
    /// absent from it is absent from the firmware. efivarfs and the sysfs efivars
    /// directory do; shim's MOK table holds only what shim chose to copy (the firmware's
    /// `SecureBoot` only since shim 16.0), so its silence says nothing about the firmware.
    pub fn shows_every_variable(self) -> bool {
        !matches!(self, Interface::MokVarTable)
    }

    /// A short name for evidence and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Efivarfs => "efivarfs",
            Interface::SysfsVars => "sysfs efivars",
            Interface::MokVarTable => "shim's MOK variable table",
        }
    }
}

/// A variable as one interface showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The variable.
    pub variable: Variable,
    /// The interface.
    pub interface: Interface,
    /// The file read, as a host path.
    pub path: String,
    /// The variable's attributes, where the interface gives them.
    pub attributes: Option<u32>,
    /// The value, without attributes.
    pub value: Vec<u8>,
    /// Why the file cannot be taken as the variable's value, when it cannot: an efivarfs
    /// file shorter than its attribute word, or a value that is not the one byte the UEFI
    /// specification and shim define for every variable hilt reads (UEFI 2.10 section 3.3;
    /// shim's `MokVars.txt`). A malformed reading is evidence, never a verdict.
    pub malformed: Option<String>,
}

impl Reading {
    /// A reading of `value`, marked malformed unless it is one byte.
    fn new(variable: Variable, interface: Interface, path: String, attributes: Option<u32>, value: Vec<u8>) -> Self {
        let malformed = (value.len() != 1).then(|| {
            format!(
                "{} in {path} holds {} bytes, but the UEFI specification and shim define it as one byte",
                variable.name,
                value.len()
            )
        });
        Reading {
            variable,
            interface,
            path,
            attributes,
            value,
            malformed,
        }
    }

    /// The one-byte value, unless the reading is malformed.
    pub fn byte(&self) -> Option<u8> {
        match (self.malformed.is_none(), self.value.as_slice()) {
            (true, [byte]) => Some(*byte),
            _ => None,
        }
    }

    /// Whether the variable is non-volatile (kept across boots). shim makes its runtime
    /// copies volatile, so a non-volatile `MokSBStateRT` was not set by shim at this boot;
    /// the kernel's EFI stub ignores it for the same reason.
    pub fn non_volatile(&self) -> bool {
        self.attributes.is_some_and(|a| a & NON_VOLATILE != 0)
    }
}

impl Variable {
    /// Its efivarfs file.
    pub fn efivarfs_path(&self) -> String {
        format!("{EFIVARFS}/{}-{}", self.name, self.guid)
    }

    /// Its directory in the sysfs efivars interface.
    pub fn sysfs_dir(&self) -> String {
        format!("{SYSFS_VARS}/{}-{}", self.name, self.guid)
    }

    /// Its file in shim's MOK variable table. shim puts its own runtime variables there
    /// and copies of the firmware's secure boot mode variables; the table has no GUIDs.
    pub fn mokvar_path(&self) -> String {
        format!("{MOKVAR}/{}", self.name)
    }

    /// The variable as every interface of `fs` shows it, in the order efivarfs, sysfs
    /// efivars, MOK table; empty when no interface has it. A file that exists but cannot
    /// be read is an error: hilt could not look.
    pub fn read(&self, fs: &HostFs) -> Result<Vec<Reading>, HostError> {
        let mut readings = Vec::new();
        let path = self.efivarfs_path();
        if let Some(bytes) = optional(fs.read(&path))? {
            let reading = match bytes.get(..4) {
                None => Reading {
                    variable: *self,
                    interface: Interface::Efivarfs,
                    malformed: Some(format!(
                        "{} in {path} holds {} bytes, fewer than the four attribute bytes efivarfs puts before a value",
                        self.name,
                        bytes.len()
                    )),
                    path,
                    attributes: None,
                    value: Vec::new(),
                },
                Some(word) => Reading::new(
                    *self,
                    Interface::Efivarfs,
                    path,
                    Some(u32::from_le_bytes([word[0], word[1], word[2], word[3]])),
                    bytes[4..].to_vec(),
                ),
            };
            readings.push(reading);
        }
        let dir = self.sysfs_dir();
        let data = format!("{dir}/data");
        if let Some(value) = optional(fs.read(&data))? {
            let attributes = optional(fs.read_text(&format!("{dir}/attributes")))?.map(|text| parse_attributes(&text));
            readings.push(Reading::new(*self, Interface::SysfsVars, data, attributes, value));
        }
        let path = self.mokvar_path();
        if let Some(value) = optional(fs.read(&path))? {
            readings.push(Reading::new(*self, Interface::MokVarTable, path, None, value));
        }
        Ok(readings)
    }
}

/// A read whose file may be absent: `None` then.
fn optional<T>(read: Result<T, HostError>) -> Result<Option<T>, HostError> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind == HostErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Which interfaces `fs` offers: efivarfs mounted, the sysfs efivars directory present
/// (the kernel makes it only with `CONFIG_EFI_VARS`, and fills it), the MOK table
/// directory present. Presence, not a listing, decides the sysfs interface: a capture
/// keeps the directory and the variables hilt reads, not the rest of the listing.
pub fn interfaces(fs: &HostFs) -> Result<Vec<Interface>, HostError> {
    let mut found = Vec::new();
    if fs.mounted(EFIVARFS)? {
        found.push(Interface::Efivarfs);
    }
    if fs.exists(SYSFS_VARS) {
        found.push(Interface::SysfsVars);
    }
    if fs.exists(MOKVAR) {
        found.push(Interface::MokVarTable);
    }
    Ok(found)
}

/// Every file [`Variable::read`] may read, for `hilt capture`.
pub fn capture_paths() -> Vec<String> {
    VARIABLES
        .iter()
        .flat_map(|v| {
            [
                v.efivarfs_path(),
                format!("{}/data", v.sysfs_dir()),
                format!("{}/attributes", v.sysfs_dir()),
                v.mokvar_path(),
            ]
        })
        .collect()
}

/// The attribute bits named in a sysfs efivars `attributes` file.
fn parse_attributes(text: &str) -> u32 {
    const NAMES: [(&str, u32); 7] = [
        ("EFI_VARIABLE_NON_VOLATILE", 0x1),
        ("EFI_VARIABLE_BOOTSERVICE_ACCESS", 0x2),
        ("EFI_VARIABLE_RUNTIME_ACCESS", 0x4),
        ("EFI_VARIABLE_HARDWARE_ERROR_RECORD", 0x8),
        ("EFI_VARIABLE_AUTHENTICATED_WRITE_ACCESS", 0x10),
        ("EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS", 0x20),
        ("EFI_VARIABLE_APPEND_WRITE", 0x40),
    ];
    text.lines()
        .filter_map(|line| NAMES.iter().find(|(n, _)| *n == line.trim()).map(|(_, bit)| *bit))
        .fold(0, |a, b| a | b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_is_read_and_attributes_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let put = |path: &str, bytes: &[u8]| {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, bytes).expect("write");
        };
        put(&MOK_SB_STATE.efivarfs_path(), b"\x07\x00\x00\x00\x01");
        put(&format!("{}/data", MOK_SB_STATE.sysfs_dir()), b"\x01");
        put(
            &format!("{}/attributes", MOK_SB_STATE.sysfs_dir()),
            b"EFI_VARIABLE_BOOTSERVICE_ACCESS\nEFI_VARIABLE_RUNTIME_ACCESS\n",
        );
        put(&MOK_SB_STATE.mokvar_path(), b"\x01");
        let fs = HostFs::at(dir.path()).expect("root");
        let readings = MOK_SB_STATE.read(&fs).expect("read");
        let got: Vec<(Interface, Option<u32>, bool)> = readings
            .iter()
            .map(|r| (r.interface, r.attributes, r.non_volatile()))
            .collect();
        assert_eq!(
            got,
            [
                (Interface::Efivarfs, Some(7), true),
                (Interface::SysfsVars, Some(6), false),
                (Interface::MokVarTable, None, false),
            ]
        );
        assert!(readings.iter().all(|r| r.value == [1]));
        assert!(SECURE_BOOT.read(&fs).expect("read").is_empty());

        put(&SECURE_BOOT.efivarfs_path(), b"\x06\x00");
        let short = SECURE_BOOT
            .read(&fs)
            .expect("a short file is a malformed reading, not an error");
        assert_eq!(short.len(), 1);
        assert_eq!(short[0].byte(), None);
        let why = short[0].malformed.as_deref().unwrap_or_default();
        assert!(why.contains("fewer than the four attribute bytes"), "{why}");
        put(&SECURE_BOOT.efivarfs_path(), b"\x06\x00\x00\x00\x01\x00");
        let long = SECURE_BOOT.read(&fs).expect("read");
        assert_eq!(long[0].byte(), None);
        assert!(
            long[0]
                .malformed
                .as_deref()
                .unwrap_or_default()
                .contains("holds 2 bytes")
        );
    }

    #[test]
    fn the_guids_are_the_specified_ones() {
        // UEFI 2.10 section 3.3: EFI_GLOBAL_VARIABLE {0x8BE4DF61,0x93CA,0x11d2,{0xAA,0x0D,0x00,0xE0,0x98,0x03,0x2B,0x8C}};
        // shim include/guid.h: SHIM_LOCK_GUID {0x605dab50,0xe046,0x4300,{0xab,0xb6,0x3d,0xd8,0x10,0xdd,0x8b,0x23}}.
        assert_eq!(EFI_GLOBAL, "8be4df61-93ca-11d2-aa0d-00e098032b8c");
        assert_eq!(SHIM_LOCK, "605dab50-e046-4300-abb6-3dd810dd8b23");
        assert_eq!(
            capture_paths().len(),
            VARIABLES.len() * 4,
            "each variable through each interface"
        );
    }
}
