//! Suite `firmware`: is the accelerator's firmware the one expected, and is its driver
//! free of published vulnerabilities? Both read the host's files (through
//! `--sysfs-root`) for one accelerator PCI function at a time.

use std::cmp::Ordering;

use hilt_harness::check::{CheckDef, CheckParams, Finding, NoParams, ParamsSpec, Scope};
use hilt_harness::hostfs::HostErrorKind;
use hilt_harness::pci;
use hilt_results::Better;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::hostread::{self, optional};

/// `firmware.rom_measurement`.
pub static ROM_MEASUREMENT: CheckDef = CheckDef {
    id: "firmware.rom_measurement",
    title: "The accelerator's option ROM matches a reference measurement",
    description: "Reads the function's option ROM through sysfs, takes its sha256 and \
        compares it with the profile's reference measurements for that vendor, device and \
        (where given) subsystem. A mismatch fails; a device the profile has no reference \
        for is inconclusive, with the measured hash recorded so that a lab can adopt it. \
        A ROM the kernel already lets hilt read needs no write. Otherwise sysfs reads it \
        only after `1` is written to its `rom` file, which makes the kernel map the ROM \
        through the device's ROM BAR during each read: a brief change of device state, so \
        hilt makes that write only with `enable_rom_read = true` (off by default; live \
        host only), and writes `0` right after. Without it such a ROM is inconclusive, \
        naming the parameter. Not applicable to a function that exposes no ROM.",
    remediation: "A ROM that matches no reference is not the firmware the profile approved: \
        compare the vendor's release notes for the installed VBIOS, reflash an approved \
        image with the vendor's tool, or, if the new image is approved, add its hash (with \
        its source) to the profile.",
    requirements: &["IP-2"],
    faults: &[],
    concurrent: true,
    scope: Scope::Pci,
    host_faults: &["rom-mismatch"],
    params: ParamsSpec::of::<RomParams>(),
    run: |ctx| {
        hostread::run::<RomParams>(ctx, |ctx, params| {
            let (fs, address, function) = hostread::pci_function(ctx)?;
            let rom = match pci::read_rom(&fs, &address, params.enable_rom_read) {
                Ok(rom) => rom,
                Err(e) if e.kind == HostErrorKind::NotFound => {
                    return Ok(Finding::NotApplicable(format!(
                        "{address} exposes no option ROM in sysfs"
                    )));
                }
                Err(e) if e.kind == HostErrorKind::PermissionDenied => return Err(hostread::unreadable(e)),
                Err(e) => {
                    return Ok(Finding::Inconclusive(format!(
                        "failed to read the option ROM of {address}: {}",
                        e.message
                    )));
                }
            };
            let hash = hilt_harness::hex(&sha2::Sha256::digest(&rom));
            ctx.evidence("rom_sha256", hash.clone());
            ctx.measure("rom_bytes", rom.len() as f64, "B", None, Better::Neither);
            let ids = format!("{:04x}:{:04x}", function.vendor, function.device);
            let subsystem = function.subsystem_vendor.zip(function.subsystem_device);
            let of_device: Vec<&RomReference> = params
                .references
                .iter()
                .filter(|r| r.vendor == function.vendor && r.device == function.device)
                .collect();
            // The most specific references win: those naming this subsystem, else those
            // naming none.
            let exact: Vec<&RomReference> = of_device
                .iter()
                .copied()
                .filter(|r| r.subsystem().is_some() && r.subsystem() == subsystem)
                .collect();
            let refs = if exact.is_empty() {
                of_device.into_iter().filter(|r| r.subsystem().is_none()).collect()
            } else {
                exact
            };
            let sub = subsystem.map_or_else(String::new, |(v, d)| format!(" subsystem {v:04x}:{d:04x}"));
            if refs.is_empty() {
                return Ok(Finding::Inconclusive(format!(
                    "the profile has no reference measurement for {ids}{sub}; the option ROM of {address} measures \
                     sha256 {hash}"
                )));
            }
            if let Some(r) = refs.iter().find(|r| r.sha256.eq_ignore_ascii_case(&hash)) {
                ctx.evidence("reference_source", r.source.clone());
                return Ok(Finding::Pass);
            }
            Ok(Finding::Fail(format!(
                "the option ROM of {address} ({ids}{sub}) measures sha256 {hash}, which matches none of the {} \
                 reference(s) for it",
                refs.len()
            )))
        })
    },
};

/// `firmware.driver_advisories`.
pub static DRIVER_ADVISORIES: CheckDef = CheckDef {
    id: "firmware.driver_advisories",
    title: "The accelerator's driver has every published security fix",
    description: "Reads the version of the driver bound to the function (for NVIDIA \
        /sys/module/nvidia/version, else /proc/driver/nvidia/version; for AMD the amdgpu \
        module's /sys/module/amdgpu/version) and compares it with the vendor advisories \
        built into hilt (profiles/advisories/*.toml). NVIDIA's are judged branch by branch: \
        a release older than an advisory's fix on its branch fails, naming the advisory. \
        AMD's name the first fixed ROCm release per product (found from the PCI device \
        id): the module version is mapped to the ROCm releases that ship it, and a version \
        no newer than one shipped before the fix fails. A branch or product that the latest \
        advisory does not list is inconclusive, since vendors do not declare unlisted ones \
        unaffected, and so is a driver hilt has no advisory data for, a version it cannot \
        compare, one shipped both before and with a fix (the version cannot tell them \
        apart), and the kernel's own amdgpu, which reports no version of its own. Not \
        applicable to a function with no driver, or bound to vfio-pci or pci-stub for \
        passthrough (the driver that matters runs in the guest).",
    remediation: "Update the driver to at least the fixed release of its branch named in \
        the failure (or move to a branch the latest advisory lists), then reload the module \
        or reboot. On AMD, install the amdgpu driver of at least the ROCm release the \
        failure names (`amdgpu-install`, or the amdgpu-dkms package of that release).",
    requirements: &["IP-5", "SC-8"],
    faults: &[],
    concurrent: true,
    scope: Scope::Pci,
    host_faults: &["vulnerable-driver"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let (fs, address, function) = hostread::pci_function(ctx)?;
            let Some(driver) = function.driver.clone() else {
                return Ok(Finding::NotApplicable(format!("no driver is bound to {address}")));
            };
            ctx.evidence("driver", driver.clone());
            if PASSTHROUGH_DRIVERS.contains(&driver.as_str()) {
                return Ok(Finding::NotApplicable(format!(
                    "{address} is bound to `{driver}` for passthrough: the driver that matters runs in the guest"
                )));
            }
            let sets = advisory_sets().map_err(Finding::Error)?;
            let Some(set) = sets.iter().find(|s| s.driver == driver) else {
                let known: Vec<&str> = sets.iter().map(|s| s.driver.as_str()).collect();
                return Ok(Finding::Inconclusive(format!(
                    "hilt has no advisory data for driver `{driver}` yet (it has data for: {}), so whether it has \
                     every published fix is unknown",
                    known.join(", ")
                )));
            };
            // NVML's view, where sysfs and procfs have none (the device came through CUDA).
            let nvml = ctx
                .device
                .info
                .facts
                .get("nvml.driver_version")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            if !set.release.is_empty() {
                return judge_stack_driver(ctx, &fs, set, &function);
            }
            let Some(version) = driver_version(&fs, &driver)?.or(nvml) else {
                return Ok(Finding::Inconclusive(format!(
                    "the version of driver `{driver}` cannot be read (no /sys/module/{driver}/version)"
                )));
            };
            ctx.evidence("driver_version", version.clone());
            Ok(judge_driver(ctx, set, &version))
        })
    },
};

/// `firmware.inventory`.
pub static INVENTORY: CheckDef = CheckDef {
    id: "firmware.inventory",
    title: "The accelerator's firmware and driver are on record",
    description: "Records, as evidence, what a lab needs to know about the firmware an \
        accelerator runs: whether it exposes an option ROM and its size (from the sysfs \
        `rom` file's size, without enabling or reading it), the bound driver and its \
        version (/sys/module/DRIVER/version), the IOMMU group, the PCIe link, and the \
        firmware facts its backend reports (keys containing `driver_version`, `vbios`, \
        `firmware` or `inforom`). Fails when no driver is bound to the function: an \
        accelerator the profile covers with no driver serves no tenant and receives no \
        driver fixes, and its driver inventory cannot be taken. Inconclusive when a driver \
        is bound but its version cannot be read.",
    remediation: "Bind the vendor's driver to the function (install and load it, or remove a \
        blacklist or `driver_override`), or, for a device meant for passthrough, bind it to \
        vfio-pci; for an unreadable version, load the module with a version (DKMS builds \
        keep it) or run hilt where /sys/module is visible.",
    requirements: &["IP-2", "IP-5"],
    faults: &[],
    concurrent: true,
    scope: Scope::Pci,
    host_faults: &["no-driver"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let (fs, address, function) = hostread::pci_function(ctx)?;
            let dir = format!("{}/{address}", pci::DEVICES);
            ctx.evidence("pci_id", format!("{:04x}:{:04x}", function.vendor, function.device));
            if let (Some(v), Some(d)) = (function.subsystem_vendor, function.subsystem_device) {
                ctx.evidence("pci_subsystem", format!("{v:04x}:{d:04x}"));
            }
            match optional(fs.size(&format!("{dir}/rom")))? {
                Some(size) => {
                    ctx.evidence("option_rom", true);
                    ctx.evidence("option_rom_bytes", size);
                }
                None => ctx.evidence("option_rom", false),
            }
            if let Some(g) = &function.iommu_group {
                ctx.evidence("iommu_group", g.clone());
            }
            for name in [
                "current_link_speed",
                "current_link_width",
                "max_link_speed",
                "max_link_width",
            ] {
                if let Some(v) = optional(fs.read_trimmed(&format!("{dir}/{name}")))? {
                    ctx.evidence(name, v);
                }
            }
            let facts: Vec<(String, serde_json::Value)> = ctx
                .device
                .info
                .facts
                .iter()
                .filter(|(k, _)| {
                    ["driver_version", "vbios", "firmware", "inforom"]
                        .iter()
                        .any(|w| k.to_ascii_lowercase().contains(w))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in facts {
                ctx.evidence(&format!("device.{k}"), v);
            }
            let Some(driver) = function.driver else {
                return Ok(Finding::Fail(format!(
                    "no driver is bound to {address}: the accelerator serves no tenant, receives no driver fixes, and \
                     its driver cannot be inventoried"
                )));
            };
            ctx.evidence("driver", driver.clone());
            match driver_version(&fs, &driver)? {
                Some(v) => {
                    ctx.evidence("driver_version", v);
                    Ok(Finding::Pass)
                }
                None => Ok(Finding::Inconclusive(format!(
                    "driver `{driver}` is bound to {address}, but its version cannot be read (no \
                     /sys/module/{driver}/version)"
                ))),
            }
        })
    },
};

/// Parameters of `firmware.rom_measurement`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RomParams {
    /// Approved option ROM measurements.
    pub references: Vec<RomReference>,
    /// Allow writing `1` to the sysfs `rom` file (and `0` right after) when the kernel
    /// refuses a plain read: a brief change of device state (the kernel maps the ROM
    /// during the read), so off by default; without it such a ROM is inconclusive.
    pub enable_rom_read: bool,
}

impl CheckParams for RomParams {
    fn validate(&self) -> Result<(), String> {
        for r in &self.references {
            if r.sha256.len() != 64 || !r.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("reference sha256 `{}` is not 64 hex digits", r.sha256));
            }
            if r.source.trim().is_empty() {
                return Err(format!("reference {} has no `source`", r.sha256));
            }
            if r.subsystem_vendor.is_some() != r.subsystem_device.is_some() {
                return Err(format!(
                    "reference {} gives only one of `subsystem_vendor` and `subsystem_device`",
                    r.sha256
                ));
            }
        }
        Ok(())
    }
}

/// One approved option ROM image.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RomReference {
    /// PCI vendor id (`0x10de`).
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// PCI subsystem vendor id, for a reference that holds for one board only.
    pub subsystem_vendor: Option<u16>,
    /// PCI subsystem device id, with `subsystem_vendor`.
    pub subsystem_device: Option<u16>,
    /// The sha256 of the ROM as sysfs reads it, hex.
    pub sha256: String,
    /// Where the measurement comes from (a golden host, a vendor release).
    pub source: String,
}

impl RomReference {
    fn subsystem(&self) -> Option<(u16, u16)> {
        self.subsystem_vendor.zip(self.subsystem_device)
    }
}

/// The advisories of one driver, as in `profiles/advisories/*.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorySet {
    /// The kernel driver's name (`nvidia`).
    pub driver: String,
    /// How the driver reports its version, in words.
    #[serde(default)]
    pub version_form: Option<String>,
    /// For a driver whose vendor states fixes as releases of a software stack (AMD: ROCm)
    /// rather than driver versions: the driver version each release ships.
    #[serde(default)]
    pub release: Vec<StackRelease>,
    /// For advisories whose fixes differ by product: each product's PCI device ids.
    #[serde(default)]
    pub products: std::collections::BTreeMap<String, Vec<u16>>,
    /// Its advisories.
    pub advisory: Vec<Advisory>,
}

/// A release of a vendor's software stack and the driver version it ships.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackRelease {
    /// The stack's release (`6.4.0` for ROCm 6.4.0).
    pub stack: String,
    /// The driver version it ships, as the driver reports it (`6.12.12`).
    pub driver: String,
    /// Where the pairing comes from.
    pub source: String,
    /// How it was taken.
    pub confidence: String,
}

/// One vendor advisory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advisory {
    /// The vendor's id (`NVIDIA-5551`).
    pub id: String,
    /// Its title.
    pub title: String,
    /// When it was published.
    pub published: toml::value::Datetime,
    /// Its public source.
    pub source: String,
    /// How the figures were taken.
    pub confidence: String,
    /// The CVEs it covers, in words.
    pub cves: String,
    /// The first fixed release, by branch.
    #[serde(default)]
    pub fixed: std::collections::BTreeMap<String, String>,
    /// The first fixed release of the vendor's stack, by product (AMD: ROCm releases),
    /// mapped to driver versions through [`AdvisorySet::release`].
    #[serde(default)]
    pub fixed_release: std::collections::BTreeMap<String, String>,
    /// Where the vendor's records for the advisory are, besides `source`.
    #[serde(default)]
    pub source_cves: Option<String>,
    /// The check that judges an advisory whose mitigation is a setting, not a release
    /// (`isolation.cleaner_shader` for LeftoverLocals on AMD).
    #[serde(default)]
    pub judged_by: Option<String>,
}

/// The advisory data built into hilt.
pub const ADVISORY_FILES: &[(&str, &str)] = &[
    (
        "profiles/advisories/nvidia.toml",
        include_str!("../../profiles/advisories/nvidia.toml"),
    ),
    (
        "profiles/advisories/amd.toml",
        include_str!("../../profiles/advisories/amd.toml"),
    ),
];

/// The built-in advisory sets, parsed.
pub fn advisory_sets() -> Result<Vec<AdvisorySet>, String> {
    ADVISORY_FILES
        .iter()
        .map(|(name, text)| toml::from_str(text).map_err(|e| format!("{name}: {e}")))
        .collect()
}

/// Compares dotted versions numerically, field by field; a missing field counts as 0.
/// A suffix after `-` (`550.54.14-custom`) is ignored; `None` when a field is not a
/// number, since guessing would make a vulnerable driver look fixed.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    let fields = |v: &str| -> Option<Vec<u64>> {
        let numeric = v.split_once('-').map_or(v, |(n, _)| n);
        let field = |f: &str| f.bytes().all(|b| b.is_ascii_digit()).then(|| f.parse().ok()).flatten();
        numeric.split('.').map(field).collect()
    };
    let (a, b) = (fields(a)?, fields(b)?);
    for i in 0..a.len().max(b.len()) {
        match a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)) {
            Ordering::Equal => continue,
            other => return Some(other),
        }
    }
    Some(Ordering::Equal)
}

/// Drivers that hold a function for passthrough to a virtual machine.
const PASSTHROUGH_DRIVERS: [&str; 2] = ["vfio-pci", "pci-stub"];

/// The version of kernel driver `driver`: `/sys/module/DRIVER/version`, else the banner
/// of `/proc/driver/DRIVER/version`; `None` when neither exists.
fn driver_version(fs: &hilt_harness::hostfs::HostFs, driver: &str) -> Result<Option<String>, Finding> {
    if let Some(v) = optional(fs.read_trimmed(&format!("/sys/module/{driver}/version")))? {
        return Ok(Some(v));
    }
    Ok(optional(fs.read_text(&format!("/proc/driver/{driver}/version")))?.and_then(|t| version_in_banner(&t)))
}

fn judge_driver(ctx: &mut hilt_harness::check::CheckCtx<'_>, set: &AdvisorySet, version: &str) -> Finding {
    let branch = version.split('.').next().unwrap_or_default().to_string();
    let listed: Vec<(&Advisory, &String)> = set
        .advisory
        .iter()
        .filter_map(|a| a.fixed.get(&branch).map(|f| (a, f)))
        .collect();
    if let Some((_, fixed)) = listed.iter().find(|(_, f)| compare_versions(version, f).is_none()) {
        return Finding::Inconclusive(format!(
            "driver {} version `{version}` cannot be compared with the fixed release {fixed}: it has a part that \
             is not a number",
            set.driver
        ));
    }
    let affected: Vec<(&Advisory, &String)> = listed
        .into_iter()
        .filter(|(_, fixed)| compare_versions(version, fixed) == Some(Ordering::Less))
        .collect();
    ctx.evidence("advisories_checked", set.advisory.len());
    ctx.measure(
        "affecting_advisories",
        affected.len() as f64,
        "count",
        Some(0.0),
        Better::Lower,
    );
    if !affected.is_empty() {
        let ids: Vec<String> = affected
            .iter()
            .map(|(a, fixed)| format!("{} ({}, fixed in {fixed})", a.id, a.published))
            .collect();
        let newest = affected
            .iter()
            .map(|(_, f)| f.as_str())
            .max_by(|a, b| compare_versions(a, b).unwrap_or(Ordering::Equal))
            .unwrap_or_default();
        ctx.evidence(
            "affecting",
            affected.iter().map(|(a, _)| a.source.clone()).collect::<Vec<_>>(),
        );
        return Finding::Fail(format!(
            "driver {} {version} is affected by {}: update to at least {newest} on branch R{branch}",
            set.driver,
            ids.join(", ")
        ));
    }
    let Some(latest) = set.advisory.iter().max_by_key(|a| a.published.to_string()) else {
        return Finding::NotApplicable(format!("hilt has no advisories for driver `{}`", set.driver));
    };
    ctx.evidence("latest_advisory", latest.id.clone());
    if latest.fixed.contains_key(&branch) {
        return Finding::Pass;
    }
    let last_listed = set
        .advisory
        .iter()
        .filter(|a| a.fixed.contains_key(&branch))
        .max_by_key(|a| a.published.to_string());
    Finding::Inconclusive(match last_listed {
        Some(a) => format!(
            "driver {} {version} has every fix published for branch R{branch} up to {} ({}), but the latest \
             advisory, {} ({}), lists no R{branch} release, and unlisted branches are not declared unaffected",
            set.driver, a.id, a.published, latest.id, latest.published
        ),
        None => format!(
            "branch R{branch} of driver {} ({version}) appears in none of hilt's {} advisories, and unlisted \
             branches are not declared unaffected",
            set.driver,
            set.advisory.len()
        ),
    })
}

/// Where a driver version stands against one advisory's fix for one product.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    /// The version is no newer than one shipped before the fix.
    Affected,
    /// The version is newer than everything shipped before the fix.
    Fixed,
    /// hilt cannot tell, and why.
    Unknown(String),
}

/// Where driver `version` stands against a fix in stack release `fixed`, from the
/// releases `set` knows: affected when no newer than a driver shipped before `fixed`;
/// fixed when newer than all of those and no older than one shipped with `fixed` or
/// after; else unknown (the same driver shipped both before and with the fix, or no
/// release at or after the fix is known).
fn standing(set: &AdvisorySet, version: &str, fixed: &str) -> Standing {
    let before_fix = |r: &&StackRelease| compare_versions(&r.stack, fixed) == Some(Ordering::Less);
    let max_before = set
        .release
        .iter()
        .filter(before_fix)
        .map(|r| r.driver.as_str())
        .max_by(|a, b| compare_versions(a, b).unwrap_or(Ordering::Equal));
    let min_after = set
        .release
        .iter()
        .filter(|r| !before_fix(r))
        .map(|r| r.driver.as_str())
        .min_by(|a, b| compare_versions(a, b).unwrap_or(Ordering::Equal));
    let cmp = |other: &str| compare_versions(version, other);
    match (max_before, min_after) {
        (Some(b), Some(a)) if cmp(b) == Some(Ordering::Equal) && cmp(a) == Some(Ordering::Equal) => {
            Standing::Unknown(format!(
                "driver {version} shipped both before ROCm {fixed} and with it or after, so its version cannot say \
                 whether it has the fix"
            ))
        }
        (Some(b), _) if matches!(cmp(b), Some(Ordering::Less | Ordering::Equal)) => Standing::Affected,
        (_, Some(a)) if matches!(cmp(a), Some(Ordering::Greater | Ordering::Equal)) => Standing::Fixed,
        _ => Standing::Unknown(format!(
            "hilt knows no driver version shipped with ROCm {fixed} or later that {version} could be compared with"
        )),
    }
}

/// Judges an AMD GPU's amdgpu against advisories stated as ROCm releases per product.
fn judge_stack_driver(
    ctx: &mut hilt_harness::check::CheckCtx<'_>,
    fs: &hilt_harness::hostfs::HostFs,
    set: &AdvisorySet,
    function: &pci::PciFunction,
) -> Result<Finding, Finding> {
    let driver = &set.driver;
    let kernel = optional(fs.read_trimmed("/proc/sys/kernel/osrelease"))?;
    let Some(version) = optional(fs.read_trimmed(&format!("/sys/module/{driver}/version")))? else {
        let kernel = kernel.map_or_else(String::new, |k| format!(" {k}"));
        return Ok(Finding::Inconclusive(format!(
            "{driver} reports no version of its own (no /sys/module/{driver}/version): it is the kernel's own \
             driver, of release{kernel}, and AMD's bulletins name ROCm releases, which hilt cannot map to kernel \
             releases; install ROCm's amdgpu module to have it judged"
        )));
    };
    ctx.evidence("driver_version", version.clone());
    if let Some(form) = &set.version_form {
        ctx.evidence("version_form", form.clone());
    }
    if kernel.as_deref() == Some(version.as_str())
        || !version
            .split('.')
            .all(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Ok(Finding::Inconclusive(format!(
            "{driver} reports version `{version}`, which is not the form of ROCm's amdgpu module (numbers such as \
             6.12.12){}: hilt cannot map it to the ROCm releases AMD's bulletins name",
            if kernel.as_deref() == Some(version.as_str()) {
                " but the kernel's release"
            } else {
                ""
            }
        )));
    }
    let shipped: Vec<&str> = set
        .release
        .iter()
        .filter(|r| compare_versions(&r.driver, &version) == Some(Ordering::Equal))
        .map(|r| r.stack.as_str())
        .collect();
    if !shipped.is_empty() {
        ctx.evidence("shipped_with_rocm", shipped.clone());
    }
    let Some(product) = set
        .products
        .iter()
        .find(|(_, ids)| ids.contains(&function.device))
        .map(|(name, _)| name.clone())
    else {
        return Ok(Finding::Inconclusive(format!(
            "hilt's {driver} advisory data names no product for PCI device {:04x}:{:04x}, so which fixes it needs is \
             unknown",
            function.vendor, function.device
        )));
    };
    ctx.evidence("product", product.clone());
    let judged: Vec<&Advisory> = set.advisory.iter().filter(|a| !a.fixed_release.is_empty()).collect();
    let by_setting: Vec<String> = set
        .advisory
        .iter()
        .filter_map(|a| a.judged_by.as_ref().map(|c| format!("{} by {c}", a.id)))
        .collect();
    if !by_setting.is_empty() {
        ctx.evidence("judged_by_other_checks", by_setting);
    }
    ctx.evidence("advisories_checked", judged.len());
    let mut affected = Vec::new();
    let mut unknown = Vec::new();
    for a in &judged {
        let Some(fixed) = a.fixed_release.get(&product) else {
            continue;
        };
        match standing(set, &version, fixed) {
            Standing::Affected => affected.push((*a, fixed.clone())),
            Standing::Fixed => {}
            Standing::Unknown(why) => unknown.push(format!("{} ({}): {why}", a.id, a.published)),
        }
    }
    ctx.measure(
        "affecting_advisories",
        affected.len() as f64,
        "count",
        Some(0.0),
        Better::Lower,
    );
    let rocm = if shipped.is_empty() {
        String::new()
    } else {
        format!(" (the module of ROCm {})", shipped.join(", "))
    };
    if !affected.is_empty() {
        let ids: Vec<String> = affected
            .iter()
            .map(|(a, fixed)| format!("{} ({}, fixed in ROCm {fixed} for the {product})", a.id, a.published))
            .collect();
        let newest = affected
            .iter()
            .map(|(_, f)| f.as_str())
            .max_by(|a, b| compare_versions(a, b).unwrap_or(Ordering::Equal))
            .unwrap_or_default();
        ctx.evidence(
            "affecting",
            affected.iter().map(|(a, _)| a.source.clone()).collect::<Vec<_>>(),
        );
        return Ok(Finding::Fail(format!(
            "driver {driver} {version}{rocm} on the {product} is affected by {}: update to the amdgpu driver of at \
             least ROCm {newest}",
            ids.join(", ")
        )));
    }
    if !unknown.is_empty() {
        return Ok(Finding::Inconclusive(format!(
            "driver {driver} {version}{rocm} on the {product}: {}",
            unknown.join("; ")
        )));
    }
    let Some(latest) = judged.iter().max_by_key(|a| a.published.to_string()) else {
        return Ok(Finding::NotApplicable(format!(
            "hilt has no advisories for driver `{driver}`"
        )));
    };
    ctx.evidence("latest_advisory", latest.id.clone());
    if latest.fixed_release.contains_key(&product) {
        return Ok(Finding::Pass);
    }
    Ok(Finding::Inconclusive(format!(
        "driver {driver} {version}{rocm} has every fix published for the {product} in hilt's data, but the latest \
         advisory, {} ({}), does not list the {product}, and unlisted products are not declared unaffected",
        latest.id, latest.published
    )))
}

/// The version in a driver banner such as `/proc/driver/nvidia/version`'s first line
/// (`NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build ...`).
fn version_in_banner(text: &str) -> Option<String> {
    text.lines()
        .next()?
        .split_whitespace()
        .find(|w| w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_field_by_field() {
        assert_eq!(compare_versions("535.309.01", "535.288.01"), Some(Ordering::Greater));
        assert_eq!(compare_versions("535.54.03", "535.129.03"), Some(Ordering::Less));
        assert_eq!(compare_versions("580.95.05", "580.95.5"), Some(Ordering::Equal));
        assert_eq!(compare_versions("580.95", "580.95.01"), Some(Ordering::Less));
        assert_eq!(compare_versions("550.54.14-custom", "550.54.15"), Some(Ordering::Less));
        assert_eq!(compare_versions("550.54.x", "550.54.15"), None);
        assert_eq!(compare_versions("550.abc", "550.0"), None, "never read as 550.0");
        for odd in ["+550.54.15", "550..54", "550.54.", " 550.54.15", "550.+54"] {
            assert_eq!(compare_versions(odd, "550.54.15"), None, "{odd}");
        }
    }

    #[test]
    fn the_built_in_advisories_parse_and_name_their_sources() {
        let sets = advisory_sets().expect("advisory data parses");
        let nvidia = sets.iter().find(|s| s.driver == "nvidia").expect("nvidia data");
        assert!(nvidia.advisory.len() >= 13);
        for a in &nvidia.advisory {
            assert!(a.source.starts_with("https://"), "{}", a.id);
            for (branch, fixed) in &a.fixed {
                assert!(fixed.starts_with(&format!("{branch}.")), "{}: {branch} {fixed}", a.id);
            }
        }
        let june_2024 = nvidia.advisory.iter().find(|a| a.id == "NVIDIA-5551").expect("5551");
        assert_eq!(june_2024.fixed["535"], "535.183.01");
    }

    #[test]
    fn amd_advisories_map_module_versions_to_rocm_releases() {
        let sets = advisory_sets().expect("advisory data parses");
        let amd = sets.iter().find(|s| s.driver == "amdgpu").expect("amdgpu data");
        for a in &amd.advisory {
            assert!(a.source.starts_with("https://"), "{}", a.id);
            assert!(a.fixed.is_empty(), "{}: AMD states fixes as ROCm releases", a.id);
            assert!(
                a.judged_by.is_some() == a.fixed_release.is_empty(),
                "{}: judged by version or by another check",
                a.id
            );
            for product in a.fixed_release.keys() {
                assert!(amd.products.contains_key(product), "{}: {product}", a.id);
            }
        }
        // Module versions rise with ROCm releases, or the mapping is meaningless.
        for pair in amd.release.windows(2) {
            assert_eq!(compare_versions(&pair[0].stack, &pair[1].stack), Some(Ordering::Less));
            assert_ne!(
                compare_versions(&pair[0].driver, &pair[1].driver),
                Some(Ordering::Greater)
            );
        }
        // SB-6024, fixed in ROCm 6.4 (6.12.12; 6.3.x shipped 6.10.5).
        assert_eq!(standing(amd, "6.10.5", "6.4"), Standing::Affected);
        assert_eq!(standing(amd, "6.8.5", "6.4"), Standing::Affected);
        assert_eq!(standing(amd, "6.12.12", "6.4"), Standing::Fixed);
        assert_eq!(standing(amd, "30.10.1", "6.4"), Standing::Fixed);
        // SB-6027 on the MI300X, fixed in ROCm 6.3.1: 6.3.0 and 6.3.2 both ship 6.10.5.
        assert!(matches!(standing(amd, "6.10.5", "6.3.1"), Standing::Unknown(_)));
        assert_eq!(standing(amd, "6.8.5", "6.3.1"), Standing::Affected);
        assert_eq!(standing(amd, "6.12.12", "6.3.1"), Standing::Fixed);
        // On the MI210, fixed in ROCm 7.0, whose module version hilt does not know.
        assert_eq!(standing(amd, "6.12.12", "7.0"), Standing::Affected);
        assert!(matches!(standing(amd, "30.10.1", "7.0"), Standing::Unknown(_)));
    }

    #[test]
    fn banners_give_their_version() {
        assert_eq!(
            version_in_banner(
                "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Sep 11 2025\nGCC version: gcc 12"
            ),
            Some("580.95.05".into())
        );
    }
}
