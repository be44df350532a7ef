//! Finding what a run is about: the devices the backends built in can drive, the
//! simulated device, the accelerator PCI functions no backend drives, and the profile
//! that fits them best.
//!
//! The command line asks this module; tests reach it directly. Nothing here opens a
//! device: backends only list devices and query their properties.

use std::path::PathBuf;
use std::sync::Arc;

use crate::accel::sim::{SimKnobs, SimSpec};
use crate::accel::{DeviceInfo, DeviceSpec, cuda, opencl};
use crate::check::{Catalogue, TrialDevice};
use crate::host::Date;
use crate::hostfs::HostFs;
use crate::pci;
use crate::profile::{self, Fit, Library, Profile};

/// The real backends this build has, in the order they are probed.
pub const BACKENDS: &[&str] = &["opencl", "cuda"];

/// What the backends built into this binary found.
pub struct Discovery {
    /// Real accelerators. The sim is not among them: it is added when asked for, or when
    /// nothing real is here.
    pub devices: Vec<TrialDevice>,
    /// One line per backend that found nothing, or was not probed, saying why.
    pub notes: Vec<String>,
}

/// Probes every backend `HILT_BACKENDS` allows (all of them when it is unset;
/// `HILT_BACKENDS=sim` or `none` probes none). A GPU that CUDA and the vendor's OpenCL
/// driver both list is kept once, as CUDA's, with a note.
pub fn discover() -> Discovery {
    let mut found = Discovery {
        devices: Vec::new(),
        notes: Vec::new(),
    };
    let wanted = std::env::var("HILT_BACKENDS").ok();
    let enabled = |backend: &str| {
        wanted
            .as_deref()
            .is_none_or(|list| list.split(',').any(|b| b.trim() == backend))
    };
    if let Some(list) = &wanted {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !BACKENDS.contains(&name) && !["sim", "none"].contains(&name) {
                found.notes.push(format!(
                    "HILT_BACKENDS names `{name}`, which this build does not have (it has: {}, sim)",
                    BACKENDS.join(", ")
                ));
            }
        }
    }
    for backend in BACKENDS {
        if !enabled(backend) {
            found.notes.push(format!(
                "{backend}: not probed (HILT_BACKENDS={})",
                wanted.as_deref().unwrap_or_default()
            ));
            continue;
        }
        let listed = match *backend {
            "opencl" => opencl::discover().map(|list| {
                list.into_iter()
                    .map(|(info, spec)| TrialDevice {
                        info,
                        spec: DeviceSpec::OpenCl(spec),
                    })
                    .collect::<Vec<_>>()
            }),
            "cuda" => cuda::discover().map(|list| {
                list.into_iter()
                    .map(|(info, spec)| TrialDevice {
                        info,
                        spec: DeviceSpec::Cuda(spec),
                    })
                    .collect()
            }),
            other => Err(format!("no such backend in this build: {other}")),
        };
        match listed {
            Ok(list) => found.devices.extend(list),
            Err(note) => found.notes.push(format!("{backend}: {note}")),
        }
    }
    // One GPU can show up twice: through CUDA and through the vendor's OpenCL driver. The
    // OpenCL view of a device CUDA already drives is dropped, with a note.
    let cuda_addresses: Vec<String> = found
        .devices
        .iter()
        .filter(|d| d.info.backend == "cuda")
        .filter_map(|d| d.info.pci_address.clone())
        .collect();
    let before = found.devices.len();
    found.devices.retain(|d| {
        d.info.backend != "opencl" || d.info.pci_address.as_ref().is_none_or(|a| !cuda_addresses.contains(a))
    });
    if found.devices.len() < before {
        found.notes.push(format!(
            "opencl: {} device(s) left out that CUDA already drives (same PCI address)",
            before - found.devices.len()
        ));
    }
    found
}

/// Whether `HILT_BACKENDS` asks for the simulated device: it names `sim` and no real
/// backend (`HILT_BACKENDS=sim`). Beside a real backend (`cuda,sim`) it asks for nothing:
/// the sim would only ever run where that backend found nothing, and must not make such a
/// node green.
pub fn sim_named_by_env() -> bool {
    std::env::var("HILT_BACKENDS").is_ok_and(|list| {
        let names: Vec<&str> = list.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
        names.contains(&"sim") && !names.iter().any(|n| BACKENDS.contains(n))
    })
}

/// Whether `selector` (`hilt run --device`) could name a device of a real backend of this
/// build: the backend itself (`cuda`) or one of its ids (`cuda0`).
pub fn names_real_device(selector: &str) -> bool {
    BACKENDS.iter().any(|b| {
        selector
            .strip_prefix(b)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
    })
}

/// The accelerators a run examines: the devices it has trials on that a backend opens
/// (real ones, and the simulated device when it was asked for), never the host or an
/// accelerator PCI function no backend drives.
pub fn examined<'d>(devices: &'d [Arc<TrialDevice>], profile: &Profile) -> Vec<&'d DeviceInfo> {
    devices
        .iter()
        .filter(|d| d.spec.openable() && profile.matches(&d.info))
        .map(|d| &d.info)
        .collect()
}

/// When `expected` accelerators were asked for and fewer are `examined`: one sentence
/// naming what is there and what is missing, from the accelerator PCI functions no
/// backend drives (`pci_only`) and the backends' notes.
pub fn missing_devices(
    expected: u32,
    examined: &[&DeviceInfo],
    pci_only: &[&DeviceInfo],
    notes: &[String],
) -> Option<String> {
    let found = examined.len();
    if found >= expected as usize {
        return None;
    }
    let ids: Vec<&str> = examined.iter().map(|d| d.id.as_str()).collect();
    let mut sentence = format!(
        "expected {expected} accelerator(s), examined {found}{}",
        if ids.is_empty() {
            String::new()
        } else {
            format!(" ({})", ids.join(", "))
        }
    );
    if !pci_only.is_empty() {
        let functions: Vec<String> = pci_only.iter().map(|d| describe_function(d)).collect();
        sentence.push_str(&format!(
            "; accelerator PCI functions that no backend drives: {}",
            functions.join("; ")
        ));
    }
    if !notes.is_empty() {
        sentence.push_str(&format!("; the backends said: {}", notes.join("; ")));
    }
    if pci_only.is_empty() && notes.is_empty() {
        sentence.push_str("; no other accelerator was found");
    }
    Some(sentence)
}

/// An accelerator PCI function as people name it: address, name, bound driver.
pub fn describe_function(d: &DeviceInfo) -> String {
    let driver = d
        .facts
        .get("pci.driver")
        .and_then(|v| v.as_str())
        .map_or_else(|| "no driver bound".to_string(), |v| format!("driver {v}"));
    format!("{} {} ({driver})", d.pci_address.as_deref().unwrap_or(&d.id), d.name)
}

/// The simulated device `sim0` with its default knobs, as listings show it.
pub fn sim_info() -> DeviceInfo {
    SimSpec {
        id: "sim0".into(),
        path: PathBuf::new(),
        knobs: SimKnobs::default(),
    }
    .info()
}

/// A live backend device as a replayed run sees it: its bus address names a function of
/// this machine, not of the tree under `--sysfs-root`, so it moves to the fact
/// `pci.live_address` and PCI checks leave the device alone.
pub fn unjoined(mut device: TrialDevice, host: &HostFs) -> TrialDevice {
    if !host.is_live()
        && let Some(address) = device.info.pci_address.take()
    {
        device.info.facts.insert("pci.live_address".into(), address.into());
    }
    device
}

/// Trial devices for accelerator PCI functions, and what could not be read.
pub struct PciOnly {
    /// One not-openable trial device per function no backend device covers.
    pub devices: Vec<TrialDevice>,
    /// Functions (or the whole listing) that could not be read, one sentence each.
    pub warnings: Vec<String>,
}

/// Trial devices for the accelerator PCI functions that no backend device covers (joined
/// by bus address), so that host checks run on them. Under a replayed root the live
/// backend devices' addresses name functions of this machine, not of the tree, so none
/// is joined: every function of the tree gets its own trial device. A function whose
/// attributes cannot be read is a warning, never the end of the run.
pub fn pci_only_devices(host: &HostFs, devices: &[Arc<TrialDevice>]) -> PciOnly {
    let scan = match pci::accelerators(host) {
        Ok(scan) => scan,
        Err(e) => {
            return PciOnly {
                devices: Vec::new(),
                warnings: vec![format!(
                    "failed to list the PCI functions, so no PCI check runs on them: {e}"
                )],
            };
        }
    };
    let warnings = scan.broken.iter().map(|b| format!("left out {b}")).collect();
    let devices = scan
        .functions
        .iter()
        .filter(|f| {
            !host.is_live()
                || !devices
                    .iter()
                    .any(|d| d.info.pci_address.as_deref() == Some(f.address.as_str()))
        })
        .map(|f| TrialDevice {
            info: f.device_info(),
            spec: DeviceSpec::NotOpenable,
        })
        .collect();
    PciOnly { devices, warnings }
}

/// Why no profile could be chosen for the devices here.
#[derive(Debug, thiserror::Error)]
pub enum ProfileChoiceError {
    /// No profile of the library matches every device.
    #[error(
        "no profile matches all the accelerators here ({}); give one with `--profile` or choose a device with \
         `--device`, see `hilt profiles`",
        here.join(", ")
    )]
    NoneFits {
        /// The ids of the devices.
        here: Vec<String>,
    },
    /// Two profiles fit equally well.
    #[error("profiles `{a}` and `{b}` both fit the accelerators here ({}); choose one with `--profile`", here.join(", "))]
    Tie {
        /// One of the two.
        a: String,
        /// The other.
        b: String,
        /// The ids of the devices.
        here: Vec<String>,
    },
}

/// The id of the profile of `library` for `devices` (those `selected` names, by id or
/// backend, when given): see [`profile::best_fit`]. Profiles that cannot be loaded are
/// left out of the choice.
pub fn default_profile(
    library: &Library,
    catalogue: &Catalogue,
    devices: &[TrialDevice],
    selected: Option<&str>,
    today: Date,
) -> Result<String, ProfileChoiceError> {
    let devices: Vec<&DeviceInfo> = devices
        .iter()
        .filter(|d| selected.is_none_or(|s| d.info.id == s || d.info.backend == s))
        .map(|d| &d.info)
        .collect();
    let profiles: Vec<Profile> = library
        .list()
        .into_iter()
        .filter_map(|(id, _)| library.load(&id, catalogue, today).ok())
        .collect();
    let here = || devices.iter().map(|d| d.id.clone()).collect();
    match profile::best_fit(&profiles, &devices) {
        Fit::One(p) => Ok(p.id.clone()),
        Fit::None => Err(ProfileChoiceError::NoneFits { here: here() }),
        Fit::Tie(a, b) => Err(ProfileChoiceError::Tie {
            a: a.id.clone(),
            b: b.id.clone(),
            here: here(),
        }),
    }
}
