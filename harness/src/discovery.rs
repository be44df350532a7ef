//! Finding what a run is about: the devices the backends built in can drive, the
//! simulated device, the accelerator PCI functions no backend drives, and the profile
//! that fits them best. Under a replayed root (`--sysfs-root`) the run is about the
//! captured machine: its PCI functions are the subjects, and the live devices of the
//! machine that replays are left out unless `--device` names them.
//!
//! The command line asks this module; tests reach it directly. Nothing here opens a
//! device: backends only list devices and query their properties.

use std::path::PathBuf;
use std::sync::Arc;

use crate::accel::sim::{SimKnobs, SimSpec};
use crate::accel::{DeviceInfo, DeviceSpec, cuda, opencl, vulkan};
use crate::amdgpu;
use crate::check::{Catalogue, TrialDevice};
use crate::host::Date;
use crate::hostfs::HostFs;
use crate::pci;
use crate::profile::{self, Fit, Library, Profile};

/// The real backends this build has, in the order they are probed.
pub const BACKENDS: &[&str] = &["opencl", "cuda", "vulkan"];

/// Which backend drives a piece of hardware that several backends see, unless the run
/// chooses another: the vendor's own compute API first (CUDA), then OpenCL, then Vulkan,
/// which every GPU vendor ships and which is therefore the second opinion on most GPUs.
pub const PRECEDENCE: &[&str] = &["cuda", "opencl", "vulkan"];

/// What the backends built into this binary found.
pub struct Discovery {
    /// Real accelerators. The sim is not among them: it is added when asked for, or when
    /// nothing real is here.
    pub devices: Vec<TrialDevice>,
    /// One line per backend that found nothing, or was not probed, and per device left out
    /// as the same hardware as another, saying why.
    pub notes: Vec<String>,
}

impl Discovery {
    /// `Err` saying why when `backend` found no device here: a run told to drive the
    /// hardware through one backend must not quietly drive it through another.
    pub fn require(&self, backend: &str) -> Result<(), NoDevice> {
        if self.devices.iter().any(|d| d.info.backend == backend) {
            return Ok(());
        }
        let prefix = format!("{backend}: ");
        let why = self
            .notes
            .iter()
            .find_map(|n| n.strip_prefix(&prefix))
            .unwrap_or("it found no device")
            .to_string();
        Err(NoDevice {
            backend: backend.into(),
            why,
        })
    }
}

/// A backend that was asked for found no device.
#[derive(Debug, thiserror::Error)]
#[error("`--backend {backend}`, but {backend} drives no device here: {why}")]
pub struct NoDevice {
    /// The backend asked for.
    pub backend: String,
    /// Its note.
    pub why: String,
}

/// A backend name that this build does not have.
#[derive(Debug, thiserror::Error)]
#[error("no backend `{0}` in this build (it has: {backends})", backends = BACKENDS.join(", "))]
pub struct UnknownBackend(pub String);

/// Probes every backend `HILT_BACKENDS` allows (all of them when it is unset;
/// `HILT_BACKENDS=sim` or `none` probes none), and keeps one device per piece of hardware,
/// driven by the backend [`PRECEDENCE`] puts first; see [`discover_for`].
pub fn discover() -> Discovery {
    let mut found = probe();
    one_per_hardware(&mut found, None);
    found
}

/// As [`discover`], with hardware that several backends see driven through `backend`
/// where that backend sees it (`hilt run --backend vulkan`, or the one backend a
/// profile's match rules name).
pub fn discover_for(backend: Option<&str>) -> Result<Discovery, UnknownBackend> {
    if let Some(b) = backend
        && !BACKENDS.contains(&b)
    {
        return Err(UnknownBackend(b.to_string()));
    }
    let mut found = probe();
    one_per_hardware(&mut found, backend);
    Ok(found)
}

/// What `hilt run` is about: hardware that several backends see driven through `backend`
/// (`--backend`), which must then drive a device here; without it, through the one backend
/// that every match rule of `profile` (`--profile`, an id or a path) names, if any; else
/// by [`PRECEDENCE`].
pub fn discover_for_run(
    backend: Option<&str>,
    profile: Option<&str>,
    catalogue: &Catalogue,
) -> Result<Discovery, RunDiscoveryError> {
    let preferred = backend.map(String::from).or_else(|| {
        let spec = profile?;
        profile_backend(&Library::standard(), catalogue, spec, Date::today())
    });
    let found = discover_for(preferred.as_deref())?;
    if let Some(b) = backend {
        found.require(b)?;
    }
    Ok(found)
}

/// Why `hilt run`'s choice of backend cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum RunDiscoveryError {
    /// `--backend` names no backend of this build.
    #[error(transparent)]
    Unknown(#[from] UnknownBackend),
    /// `--backend` names a backend that drives no device here.
    #[error(transparent)]
    NoDevice(#[from] NoDevice),
}

/// Every device of every backend `HILT_BACKENDS` allows, as each backend lists them: a GPU
/// that two backends see is here twice. [`one_per_hardware`] makes one of them.
pub fn discover_all() -> Discovery {
    probe()
}

/// Every device of every backend `HILT_BACKENDS` allows, as each backend lists them.
fn probe() -> Discovery {
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
            "vulkan" => vulkan::discover().map(|list| {
                list.into_iter()
                    .map(|(info, spec)| TrialDevice {
                        info,
                        spec: DeviceSpec::Vulkan(spec),
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
    join_driver_facts(&mut found.devices, &HostFs::live());
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

/// Adds to each backend device what sysfs says of its PCI function under `host`
/// (joined by bus address): the PCI vendor and device ids where the backend reports
/// none (OpenCL reports only a bus address), so that profiles match it by PCI id, and
/// the `amdgpu.*` facts and sharing mode of an AMD GPU that OpenCL (ROCm) drives. A
/// device without a PCI address, or whose function cannot be read, keeps what it has; a
/// backend's own facts are never replaced.
pub fn join_driver_facts(devices: &mut [TrialDevice], host: &HostFs) {
    for device in devices.iter_mut() {
        let Some(address) = device.info.pci_address.as_deref() else {
            continue;
        };
        let Ok(function) = pci::read_function(host, address) else {
            continue;
        };
        if device.info.pci_vendor.is_none_or(|v| v == function.vendor) {
            device.info.pci_vendor = Some(function.vendor);
            device.info.pci_device.get_or_insert(function.device);
        }
        for (key, value) in amdgpu::function_facts(host, &function) {
            device.info.facts.entry(key).or_insert(value);
        }
    }
}

/// Whether `HILT_BACKENDS` asks for the simulated device alone (`HILT_BACKENDS=sim`):
/// then the run examines the sim, even under a replayed root whose tree holds
/// accelerators (`HILT_BACKENDS=none` asks for no device at all).
pub fn sim_requested() -> bool {
    std::env::var("HILT_BACKENDS").is_ok_and(|list| {
        let names: Vec<&str> = list.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
        names.contains(&"sim") && names.iter().all(|n| *n == "sim")
    })
}

/// The live devices a run examines. On the live host, all of them. Under a replayed
/// root the run is about the captured machine, not the one replaying it: its live
/// devices are left out unless `selected` (`--device`) names them, by id or backend,
/// and a note says how many were left out.
pub fn live_subjects(
    real: Vec<TrialDevice>,
    host: &HostFs,
    selected: Option<&str>,
) -> (Vec<TrialDevice>, Option<String>) {
    if host.is_live() {
        return (real, None);
    }
    let total = real.len();
    let kept: Vec<TrialDevice> = real
        .into_iter()
        .filter(|d| selected.is_some_and(|s| d.info.id == s || d.info.backend == s))
        .collect();
    let note = (kept.len() < total).then(|| {
        format!(
            "{} live device(s) of this machine left out: the run replays {} (`--device` names a live device to \
             examine it too)",
            total - kept.len(),
            host.root().display()
        )
    });
    (kept, note)
}

/// Whether a run has nothing to examine but the simulated device: no live device and,
/// under a replayed root, no accelerator PCI function in the tree. Such a run falls back
/// to the sim, which then stands in for nothing (status `no_accelerator`) unless the sim
/// was asked for.
pub fn nothing_to_examine(real: &[TrialDevice], host: &HostFs) -> bool {
    real.is_empty()
        && (host.is_live()
            || pci::accelerators(host)
                .map(|scan| scan.functions.is_empty())
                .unwrap_or(true))
}

/// The devices the default profile is chosen for: the live devices and, under a
/// replayed root, the accelerator functions of the tree (the captured machine's
/// hardware).
pub fn profile_subjects(real: &[TrialDevice], host: &HostFs) -> Vec<TrialDevice> {
    let mut subjects = real.to_vec();
    if !host.is_live() {
        let live: Vec<Arc<TrialDevice>> = Vec::new();
        subjects.extend(pci_only_devices(host, &live).devices);
    }
    subjects
}

/// What identifies the hardware behind a device, across backends: its PCI function, the
/// UUID that CUDA and Vulkan share on NVIDIA GPUs (`cuda.uuid` is `GPU-` and Vulkan's
/// `deviceUUID`), or the host's CPU for CPU devices (PoCL, lavapipe). A device with none
/// of these is its own hardware.
pub fn hardware_keys(info: &DeviceInfo) -> Vec<String> {
    let fact = |k: &str| info.facts.get(k).and_then(|v| v.as_str());
    let mut keys = Vec::new();
    if let Some(a) = &info.pci_address {
        keys.push(format!("PCI {a}"));
    }
    if let Some(uuid) = fact("cuda.uuid").or_else(|| fact("vulkan.device_uuid")) {
        keys.push(format!("UUID {}", uuid.trim_start_matches("GPU-").to_ascii_lowercase()));
    }
    if fact(&format!("{}.device_type", info.backend)) == Some("cpu") {
        keys.push("the host CPU".into());
    }
    keys
}

/// Keeps one device per piece of hardware ([`hardware_keys`]): the view of `preferred`
/// where it has one, else of the backend [`PRECEDENCE`] puts first. Every view left out
/// gets a note that names the device kept and how to choose the other backend.
pub fn one_per_hardware(found: &mut Discovery, preferred: Option<&str>) {
    let rank = |backend: &str| {
        let position = PRECEDENCE
            .iter()
            .position(|b| *b == backend)
            .unwrap_or(PRECEDENCE.len());
        (Some(backend) != preferred, position)
    };
    let mut order: Vec<usize> = (0..found.devices.len()).collect();
    order.sort_by_key(|&i| rank(&found.devices[i].info.backend));
    // (key, id, backend) of every device kept so far. Views of one backend are never
    // merged: two platforms of one backend listing a GPU are that backend's business.
    let mut claimed: Vec<(String, String, String)> = Vec::new();
    let mut keep = vec![true; found.devices.len()];
    for i in order {
        let info = &found.devices[i].info;
        let keys = hardware_keys(info);
        if let Some((key, owner, owner_backend)) = claimed
            .iter()
            .find(|(k, _, backend)| *backend != info.backend && keys.contains(k))
            .cloned()
        {
            keep[i] = false;
            found.notes.push(format!(
                "{backend}: {id} left out: the same hardware as {owner} ({key}); `--backend {backend}` drives it \
                 through {backend}",
                backend = info.backend,
                id = info.id,
            ));
            // What else identifies this view identifies the device kept, so that a third
            // view that shares only those keys is joined too.
            let extra: Vec<String> = keys
                .into_iter()
                .filter(|k| !claimed.iter().any(|(c, ..)| c == k))
                .collect();
            claimed.extend(extra.into_iter().map(|k| (k, owner.clone(), owner_backend.clone())));
            continue;
        }
        claimed.extend(keys.into_iter().map(|k| (k, info.id.clone(), info.backend.clone())));
    }
    let mut index = 0;
    found.devices.retain(|_| {
        index += 1;
        keep[index - 1]
    });
}

/// The one backend that every match rule of the profile `spec` (an id or a path) names,
/// if the profile loads and its rules agree: `hilt run --profile lavapipe-cpu` then drives
/// the CPU through Vulkan, and `--profile vulkan-generic` a GPU that CUDA also sees.
pub fn profile_backend(library: &Library, catalogue: &Catalogue, spec: &str, today: Date) -> Option<String> {
    preferred_backend(&library.load(spec, catalogue, today).ok()?)
}

/// The one real backend that every match rule of `profile` names, if its rules agree.
pub fn preferred_backend(profile: &Profile) -> Option<String> {
    let first = profile.matches.first()?.backend.clone()?;
    // The sim is no view of any hardware: a profile for it prefers nothing.
    (BACKENDS.contains(&first.as_str())
        && profile
            .matches
            .iter()
            .all(|r| r.backend.as_deref() == Some(first.as_str())))
    .then_some(first)
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
        .map(|f| {
            let mut info = f.device_info();
            info.facts.extend(amdgpu::function_facts(host, f));
            TrialDevice {
                info,
                spec: DeviceSpec::NotOpenable,
            }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn device(id: &str, backend: &str, pci: Option<&str>, facts: &[(&str, &str)]) -> TrialDevice {
        TrialDevice {
            info: DeviceInfo {
                id: id.into(),
                backend: backend.into(),
                name: id.into(),
                vendor: None,
                pci_vendor: None,
                pci_device: None,
                pci_address: pci.map(String::from),
                simulated: false,
                global_mem_bytes: 1 << 30,
                local_mem_bytes: 1 << 15,
                compute_units: 1,
                facts: facts
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
                    .collect::<BTreeMap<_, _>>(),
            },
            spec: DeviceSpec::NotOpenable,
        }
    }

    fn kept(devices: Vec<TrialDevice>, preferred: Option<&str>) -> (Vec<String>, Vec<String>) {
        let mut found = Discovery {
            devices,
            notes: Vec::new(),
        };
        one_per_hardware(&mut found, preferred);
        (found.devices.iter().map(|d| d.info.id.clone()).collect(), found.notes)
    }

    fn machine() -> Vec<TrialDevice> {
        vec![
            // Listed in probe order: OpenCL, CUDA, Vulkan.
            device("opencl0", "opencl", None, &[("opencl.device_type", "cpu")]),
            device(
                "opencl1",
                "opencl",
                Some("0000:17:00.0"),
                &[("opencl.device_type", "gpu")],
            ),
            device(
                "cuda0",
                "cuda",
                Some("0000:17:00.0"),
                &[("cuda.uuid", "GPU-AABB0011-2233-4455-6677-8899aabbccdd")],
            ),
            device(
                "cuda1",
                "cuda",
                Some("0000:65:00.0"),
                &[("cuda.uuid", "GPU-00000000-0000-0000-0000-000000000001")],
            ),
            // NVIDIA's Vulkan driver without VK_EXT_pci_bus_info: joined by UUID.
            device(
                "vulkan0",
                "vulkan",
                None,
                &[
                    ("vulkan.device_uuid", "aabb0011-2233-4455-6677-8899aabbccdd"),
                    ("vulkan.device_type", "discrete_gpu"),
                ],
            ),
            device(
                "vulkan1",
                "vulkan",
                Some("0000:65:00.0"),
                &[("vulkan.device_type", "discrete_gpu")],
            ),
            device("vulkan2", "vulkan", None, &[("vulkan.device_type", "cpu")]),
            // A GPU only Vulkan sees.
            device(
                "vulkan3",
                "vulkan",
                Some("0000:b3:00.0"),
                &[("vulkan.device_type", "integrated_gpu")],
            ),
        ]
    }

    #[test]
    fn a_gpu_seen_by_several_backends_is_one_device_driven_by_cuda_by_default() {
        let (ids, notes) = kept(machine(), None);
        assert_eq!(ids, ["opencl0", "cuda0", "cuda1", "vulkan3"]);
        assert!(
            notes.contains(
                &"vulkan: vulkan0 left out: the same hardware as cuda0 (UUID aabb0011-2233-4455-6677-8899aabbccdd); \
                  `--backend vulkan` drives it through vulkan"
                    .to_string()
            ),
            "{notes:#?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("opencl: opencl1 left out: the same hardware as cuda0 (PCI 0000:17:00.0)"))
        );
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("vulkan: vulkan2 left out: the same hardware as opencl0 (the host CPU)"))
        );
    }

    #[test]
    fn a_chosen_backend_drives_every_device_it_sees() {
        let (ids, _) = kept(machine(), Some("vulkan"));
        assert_eq!(ids, ["vulkan0", "vulkan1", "vulkan2", "vulkan3"]);
        let (ids, _) = kept(machine(), Some("opencl"));
        assert_eq!(ids, ["opencl0", "opencl1", "cuda1", "vulkan3"]);
    }

    #[test]
    fn views_of_one_backend_are_never_merged() {
        let two = vec![
            device("opencl0", "opencl", Some("0000:17:00.0"), &[]),
            device("opencl1", "opencl", Some("0000:17:00.0"), &[]),
        ];
        assert_eq!(kept(two, None).0, ["opencl0", "opencl1"]);
    }

    #[test]
    fn an_unknown_backend_is_refused() {
        let e = discover_for(Some("metal")).err().expect("refused");
        assert_eq!(
            e.to_string(),
            "no backend `metal` in this build (it has: opencl, cuda, vulkan)"
        );
    }
}
