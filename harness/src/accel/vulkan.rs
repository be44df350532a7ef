//! The Vulkan backend: any GPU with a Vulkan driver (AMD, Intel, NVIDIA, and the mobile and
//! edge GPUs where LeftoverLocals was found: Adreno, Mali, Apple through MoltenVK), and
//! Mesa's lavapipe on the CPU in CI, through the `ash` bindings.
//!
//! The Vulkan loader (`libvulkan.so.1`) is opened at run time, on first use: a build of hilt
//! runs where no Vulkan is installed and then finds no Vulkan device, with a one-line note
//! saying why ([`NO_LOADER`], or no driver). Discovery happens in the harness process, which
//! makes a `VkInstance` to list physical devices and query their properties and nothing
//! else; devices, buffers and dispatches exist only in tenant processes.
//!
//! A context is a `VkDevice` of its own with one compute queue. Buffers are device-local
//! memory, one `vkAllocateMemory` each (no sub-allocation: the residue checks are about the
//! driver's allocator, not ours), moved to and from the host through a host-visible staging
//! buffer. The built-in kernels are compute shaders written in GLSL (`harness/shaders/`),
//! compiled to SPIR-V ahead of time by Debian's `glslc` and checked in ([`SHADERS`]), so a
//! build needs neither a network nor a C++ toolchain; a test recompiles them and compares
//! where `glslc` is installed. Local memory is workgroup shared memory, declared by the
//! writer and the listener at the size of the device's `maxComputeSharedMemorySize`
//! (a specialisation constant set when the pipeline is made). On-device copies and the FMA
//! kernel are timed with timestamp queries; transfers and the empty dispatch, whose cost
//! is what the host sees, by the tenant's clock.
//!
//! The faulting tenant and the foreign reader need raw device addresses: they use
//! `bufferDeviceAddress` (Vulkan 1.2) where the device has it. Without it the out-of-bounds
//! write cannot be expressed (a descriptor's bounds may be enforced by the driver) and the
//! foreign read has no address to read, which the checks report as such.
//!
//! `HILT_VULKAN_VALIDATION=1` runs every tenant under the Khronos validation layer: any
//! message it reports fails the operation in progress (or, reported while the tenant shuts
//! down, makes the tenant exit with status [`VALIDATION_EXIT`]), so a test can hold hilt's
//! use of Vulkan to the specification even on drivers that accept invalid programs.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_void};
use std::sync::{Arc, Mutex};

use ash::vk;
use serde::{Deserialize, Serialize};

use super::{AccelError, Accelerator, BufferId, Context, DeviceInfo, Kernel, KernelOutput};
use crate::canary::{self, BLOCK_BYTES, ScanReport};

/// The line `hilt devices` prints where the loader cannot be opened.
pub const NO_LOADER: &str =
    "no Vulkan loader: libvulkan.so.1 could not be loaded (install the Vulkan loader: Debian libvulkan1)";

/// The line `hilt devices` prints where the loader finds no driver it can load: none is
/// installed, or the driver manifests it read name libraries that do not load.
pub const NO_DRIVER: &str = "the Vulkan loader found no driver it could load (install one: Debian \
                             mesa-vulkan-drivers for lavapipe, or the GPU vendor's Vulkan driver; `VK_LOADER_DEBUG=driver \
                             hilt devices` shows what the loader tried)";

/// The driver manifest variables of the Vulkan loader that are set, as `NAME=VALUE`
/// (`VK_DRIVER_FILES`, `VK_ICD_FILENAMES`, `VK_ADD_DRIVER_FILES`): they replace or add to
/// the installed drivers, so a note about drivers names them.
fn driver_overrides() -> String {
    let set: Vec<String> = ["VK_DRIVER_FILES", "VK_ICD_FILENAMES", "VK_ADD_DRIVER_FILES"]
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|v| format!("{name}={}", v.to_string_lossy())))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(
            "; the loader read only the driver manifests {} names",
            set.join(" and ")
        )
    }
}

/// The exit status of a tenant whose Vulkan objects drew validation messages while it shut
/// down, too late to fail an operation.
pub const VALIDATION_EXIT: i32 = 70;

/// The validation layer `HILT_VULKAN_VALIDATION=1` enables.
pub const VALIDATION_LAYER: &str = "VK_LAYER_KHRONOS_validation";

/// One built-in compute shader: its GLSL source and the SPIR-V `glslc` made of it.
pub struct Shader {
    /// The file name without extension (`fill_canary`).
    pub name: &'static str,
    /// The GLSL source, `harness/shaders/NAME.comp`.
    pub source: &'static str,
    /// The SPIR-V, `harness/shaders/NAME.spv`, as [`GLSLC_ARGS`] compile the source.
    pub spirv: &'static [u8],
}

/// The arguments, besides `-o OUT IN`, with which `glslc` compiles every shader in
/// `harness/shaders/` (no optimisation: the driver optimises, and an optimiser run ahead of
/// it could only remove the reads of memory never written that the listener is about).
pub const GLSLC_ARGS: &[&str] = &["--target-env=vulkan1.1", "-O0"];

macro_rules! shader {
    ($name:literal) => {
        Shader {
            name: $name,
            source: include_str!(concat!("../../shaders/", $name, ".comp")),
            spirv: include_bytes!(concat!("../../shaders/", $name, ".spv")),
        }
    };
}

/// Every built-in shader, in the order [`Pipe`] numbers them.
pub const SHADERS: &[Shader] = &[
    shader!("fill_canary"),
    shader!("local_writer"),
    shader!("local_listener"),
    shader!("noop"),
    shader!("fma"),
    shader!("oob_write"),
    shader!("read_foreign"),
];

/// The shader file every other one includes.
pub const SHADER_INCLUDE: (&str, &str) = ("canary.glsl", include_str!("../../shaders/canary.glsl"));

/// Invocations per workgroup of every sized shader, where the device allows as many.
const WORKGROUP: u32 = 256;

/// The staging buffer's size: transfers larger than this go in several copies.
const STAGING_BYTES: u64 = 16 << 20;

/// Bytes of push constants the shaders use at most (the smallest limit is 128).
const PUSH_BYTES: u32 = 64;

/// What a tenant process needs to find a Vulkan device again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulkanSpec {
    /// The device id in hilt (`vulkan0`).
    pub id: String,
    /// The device's index in `vkEnumeratePhysicalDevices`.
    pub index: usize,
    /// The device's `deviceUUID`, checked when the device is opened.
    pub device_uuid: String,
    /// The device's name.
    pub name: String,
    /// Run under the Khronos validation layer; from `HILT_VULKAN_VALIDATION=1`.
    #[serde(default)]
    pub validation: bool,
    /// Shared memory the local-memory kernels declare, bytes, instead of the device's
    /// `maxComputeSharedMemorySize`; from `HILT_VULKAN_SHARED_BYTES` (a diagnostic: more
    /// than the limit is an invalid program that only the validation layer reports).
    #[serde(default)]
    pub shared_bytes: Option<u64>,
}

/// The Vulkan devices here, or why there are none. Never panics: no loader or no driver is
/// a note.
pub fn discover() -> Result<Vec<(DeviceInfo, VulkanSpec)>, String> {
    let validation = std::env::var("HILT_VULKAN_VALIDATION").is_ok_and(|v| v == "1");
    let shared_bytes = match std::env::var("HILT_VULKAN_SHARED_BYTES") {
        Ok(text) => Some(
            text.trim()
                .parse::<u64>()
                .ok()
                .filter(|b| *b >= BLOCK_BYTES as u64)
                .ok_or_else(|| format!("HILT_VULKAN_SHARED_BYTES=`{text}` is not a number of bytes of at least 32"))?,
        ),
        Err(_) => None,
    };
    // The harness process lists devices only: never under the validation layer.
    let loaded = Loaded::new(false).map_err(|e| e.to_string())?;
    // SAFETY: the instance is alive for the call.
    let physical = unsafe { loaded.instance.enumerate_physical_devices() }
        .map_err(|e| format!("listing Vulkan devices failed: {e}"))?;
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for (index, pd) in physical.into_iter().enumerate() {
        let mut spec = VulkanSpec {
            id: format!("vulkan{index}"),
            index,
            device_uuid: String::new(),
            name: String::new(),
            validation,
            shared_bytes,
        };
        match describe(&loaded.instance, pd, &spec) {
            Ok((info, caps)) => {
                spec.device_uuid = caps.device_uuid.clone();
                spec.name = info.name.clone();
                found.push((info, spec));
            }
            Err(why) => skipped.push(why),
        }
    }
    if found.is_empty() {
        return Err(if skipped.is_empty() {
            "the Vulkan loader lists no device".to_string()
        } else {
            skipped.join("; ")
        });
    }
    Ok(found)
}

/// A Vulkan device opened in a tenant process.
pub struct VulkanDevice {
    info: DeviceInfo,
    caps: Caps,
    physical: vk::PhysicalDevice,
    loaded: Arc<Loaded>,
}

impl VulkanDevice {
    /// Finds the device of `spec` again, refusing another device at the same index.
    pub fn open(spec: &VulkanSpec) -> Result<VulkanDevice, AccelError> {
        let loaded = Arc::new(Loaded::new(spec.validation)?);
        // SAFETY: the instance is alive for the call.
        let physical =
            unsafe { loaded.instance.enumerate_physical_devices() }.map_err(vkerr("listing Vulkan devices"))?;
        let pd = physical
            .get(spec.index)
            .copied()
            .ok_or_else(|| AccelError::Backend(format!("Vulkan device `{}` is gone", spec.name)))?;
        let (info, caps) = describe(&loaded.instance, pd, spec).map_err(AccelError::Backend)?;
        if caps.device_uuid != spec.device_uuid {
            return Err(AccelError::Backend(format!(
                "Vulkan device {} is now `{}` ({}), not `{}` ({})",
                spec.index, info.name, caps.device_uuid, spec.name, spec.device_uuid
            )));
        }
        loaded.check()?;
        Ok(VulkanDevice {
            info,
            caps,
            physical: pd,
            loaded,
        })
    }
}

impl Accelerator for VulkanDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn create_context(&self) -> Result<Box<dyn Context>, AccelError> {
        let context = VulkanContext::new(Arc::clone(&self.loaded), self.physical, self.caps.clone())?;
        self.loaded.check()?;
        Ok(Box::new(context))
    }
}

/// The loader, an instance, and (under validation) the messenger that collects what the
/// layer reports. Contexts hold it too, so the instance outlives every device made from it.
struct Loaded {
    // `Drop` destroys the messenger and then the instance; the entry (the loader library)
    // is dropped after that, with the other fields.
    messenger: Option<(ash::ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT)>,
    instance: ash::Instance,
    _entry: ash::Entry,
    /// What the validation layer reported and no operation has returned yet. Boxed: the
    /// messenger holds its address.
    messages: Box<Mutex<Vec<String>>>,
    validation: bool,
}

impl Loaded {
    /// Opens the loader and makes an instance, with the validation layer when asked.
    fn new(validation: bool) -> Result<Loaded, AccelError> {
        // SAFETY: loads the Vulkan loader library by its usual name; its initialisation
        // runs no code of ours.
        let entry = unsafe { ash::Entry::load() }.map_err(|_| AccelError::Backend(NO_LOADER.into()))?;
        // SAFETY: a loaded entry answers this (None on a Vulkan 1.0 loader).
        let loader_version = unsafe { entry.try_enumerate_instance_version() }
            .ok()
            .flatten()
            .unwrap_or(vk::API_VERSION_1_0);
        if loader_version < vk::API_VERSION_1_1 {
            return Err(AccelError::Backend(format!(
                "the Vulkan loader supports Vulkan {} only; hilt needs 1.1",
                version_text(loader_version)
            )));
        }
        let app = vk::ApplicationInfo::default()
            .application_name(c"hilt")
            .engine_name(c"hilt")
            .api_version(loader_version.min(vk::API_VERSION_1_3));
        let layer = CString::new(VALIDATION_LAYER).unwrap_or_default();
        let layers = [layer.as_ptr()];
        let extensions = [ash::ext::debug_utils::NAME.as_ptr()];
        let messages: Box<Mutex<Vec<String>>> = Box::default();
        let user: *mut c_void = std::ptr::from_ref::<Mutex<Vec<String>>>(&messages).cast_mut().cast();
        let mut messenger_info = messenger(user);
        let mut info = vk::InstanceCreateInfo::default().application_info(&app);
        if validation {
            // SAFETY: a loaded entry answers this.
            let present = unsafe { entry.enumerate_instance_layer_properties() }
                .unwrap_or_default()
                .iter()
                .any(|l| l.layer_name_as_c_str().ok() == Some(layer.as_c_str()));
            if !present {
                return Err(AccelError::Backend(format!(
                    "HILT_VULKAN_VALIDATION=1 but the layer {VALIDATION_LAYER} is not installed (Debian: \
                     vulkan-validationlayers)"
                )));
            }
            // The messenger in the chain also hears what instance creation and destruction
            // draw.
            info = info
                .enabled_layer_names(&layers)
                .enabled_extension_names(&extensions)
                .push_next(&mut messenger_info);
        }
        // SAFETY: every pointer in `info` outlives the call.
        let instance = unsafe { entry.create_instance(&info, None) }.map_err(|e| {
            AccelError::Backend(if e == vk::Result::ERROR_INCOMPATIBLE_DRIVER {
                format!("{NO_DRIVER}{}", driver_overrides())
            } else {
                format!(
                    "creating a Vulkan instance failed: {e} (the loader answers so to a driver manifest it cannot \
                     parse, among other causes; `VK_LOADER_DEBUG=all hilt devices` shows what it read){}",
                    driver_overrides()
                )
            })
        })?;
        let mut loaded = Loaded {
            messenger: None,
            instance,
            _entry: entry,
            messages,
            validation,
        };
        if validation {
            let utils = ash::ext::debug_utils::Instance::new(&loaded._entry, &loaded.instance);
            // SAFETY: the callback's user data is the boxed message list, which outlives
            // the messenger (destroyed first in `Drop`).
            let messenger = unsafe { utils.create_debug_utils_messenger(&messenger(user), None) }
                .map_err(vkerr("creating the validation messenger"))?;
            loaded.messenger = Some((utils, messenger));
        }
        Ok(loaded)
    }

    /// An error carrying what the validation layer reported since the last check, if
    /// anything.
    fn check(&self) -> Result<(), AccelError> {
        let mut messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        if messages.is_empty() {
            return Ok(());
        }
        let text = messages.drain(..).collect::<Vec<_>>().join(" | ");
        Err(AccelError::Backend(format!(
            "the Vulkan validation layer reported: {text}"
        )))
    }
}

/// The settings of the validation messenger: warnings and errors of every kind, to
/// [`on_message`] with `user` (the message list).
fn messenger<'a>(user: *mut c_void) -> vk::DebugUtilsMessengerCreateInfoEXT<'a> {
    vk::DebugUtilsMessengerCreateInfoEXT::default()
        .message_severity(vk::DebugUtilsMessageSeverityFlagsEXT::WARNING | vk::DebugUtilsMessageSeverityFlagsEXT::ERROR)
        .message_type(
            vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
        )
        .pfn_user_callback(Some(on_message))
        .user_data(user)
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Some((utils, messenger)) = self.messenger.take() {
            // SAFETY: the messenger was made from this instance and is destroyed once.
            unsafe { utils.destroy_debug_utils_messenger(messenger, None) };
        }
        // SAFETY: every device made from the instance is gone (contexts hold this value).
        unsafe { self.instance.destroy_instance(None) };
        if self.validation
            && let Err(e) = self.check()
        {
            eprintln!("hilt: {e}");
            // Too late to fail an operation: the tenant's exit status carries it.
            std::process::exit(VALIDATION_EXIT);
        }
    }
}

/// The validation messenger: keeps the message for the next check and shows it on stderr.
unsafe extern "system" fn on_message(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    kind: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: the layer passes valid callback data for the duration of the call.
    let text = unsafe { data.as_ref() }
        .and_then(|d| unsafe { d.message_as_c_str() })
        .map_or_else(String::new, |m| m.to_string_lossy().into_owned());
    let line = format!("{severity:?} {kind:?}: {text}");
    eprintln!("hilt: vulkan: {line}");
    // SAFETY: `user` is the boxed message list of the `Loaded` that owns the messenger.
    if let Some(messages) = unsafe { user.cast::<Mutex<Vec<String>>>().as_ref() } {
        messages.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    vk::FALSE
}

/// What a context needs to know about its physical device.
#[derive(Debug, Clone)]
struct Caps {
    device_uuid: String,
    api_version: u32,
    queue_family: u32,
    timestamp_bits: u32,
    timestamp_period_ns: f64,
    /// Shared memory the local kernels declare, bytes, a multiple of a canary block.
    shared_bytes: u64,
    workgroup: u32,
    max_groups_x: u32,
    max_storage_range: u64,
    storage_align: u64,
    max_alloc: u64,
    bda: bool,
    memory: vk::PhysicalDeviceMemoryProperties,
}

/// The device's [`DeviceInfo`] and [`Caps`]; `Err` says why hilt cannot drive it.
fn describe(instance: &ash::Instance, pd: vk::PhysicalDevice, spec: &VulkanSpec) -> Result<(DeviceInfo, Caps), String> {
    // SAFETY: `pd` came from this instance; every query writes into structures we own.
    let base = unsafe { instance.get_physical_device_properties(pd) };
    let name = base
        .device_name_as_c_str()
        .map_or_else(|_| "?".into(), |n| n.to_string_lossy().into_owned());
    if base.api_version < vk::API_VERSION_1_1 {
        return Err(format!(
            "{name} supports Vulkan {} only; hilt needs 1.1",
            version_text(base.api_version)
        ));
    }
    // SAFETY: as above.
    let extensions: Vec<String> = unsafe { instance.enumerate_device_extension_properties(pd) }
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            e.extension_name_as_c_str()
                .ok()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .collect();
    let has = |ext: &CStr| extensions.iter().any(|e| e.as_bytes() == ext.to_bytes());
    let v12 = base.api_version >= vk::API_VERSION_1_2;

    let mut id = vk::PhysicalDeviceIDProperties::default();
    let mut driver = vk::PhysicalDeviceDriverProperties::default();
    let mut pci = vk::PhysicalDevicePCIBusInfoPropertiesEXT::default();
    let mut nv = vk::PhysicalDeviceShaderSMBuiltinsPropertiesNV::default();
    let mut amd = vk::PhysicalDeviceShaderCoreProperties2AMD::default();
    let mut amd1 = vk::PhysicalDeviceShaderCorePropertiesAMD::default();
    let mut arm = vk::PhysicalDeviceShaderCoreBuiltinsPropertiesARM::default();
    let mut m3 = vk::PhysicalDeviceMaintenance3Properties::default();
    let mut m4 = vk::PhysicalDeviceMaintenance4Properties::default();
    let has_driver = v12 || has(ash::khr::driver_properties::NAME);
    let has_pci = has(ash::ext::pci_bus_info::NAME);
    let has_nv = has(ash::nv::shader_sm_builtins::NAME);
    let has_amd2 = has(ash::amd::shader_core_properties2::NAME);
    let has_amd = has(ash::amd::shader_core_properties::NAME);
    let has_arm = has(ash::arm::shader_core_builtins::NAME);
    let has_m4 = base.api_version >= vk::API_VERSION_1_3 || has(ash::khr::maintenance4::NAME);
    let mut props = vk::PhysicalDeviceProperties2::default()
        .push_next(&mut id)
        .push_next(&mut m3);
    // Only structures of extensions the device has may be chained.
    if has_driver {
        props = props.push_next(&mut driver);
    }
    if has_pci {
        props = props.push_next(&mut pci);
    }
    if has_nv {
        props = props.push_next(&mut nv);
    }
    if has_amd2 {
        props = props.push_next(&mut amd);
    }
    if has_amd {
        props = props.push_next(&mut amd1);
    }
    if has_arm {
        props = props.push_next(&mut arm);
    }
    if has_m4 {
        props = props.push_next(&mut m4);
    }
    // SAFETY: every chained structure is owned here and belongs to a supported extension.
    unsafe { instance.get_physical_device_properties2(pd, &mut props) };
    let limits = props.properties.limits;
    let _ = props;

    let mut bda_features = vk::PhysicalDeviceBufferDeviceAddressFeatures::default();
    if v12 {
        let mut features = vk::PhysicalDeviceFeatures2::default().push_next(&mut bda_features);
        // SAFETY: as above; the structure is core in Vulkan 1.2.
        unsafe { instance.get_physical_device_features2(pd, &mut features) };
    }
    let bda = v12 && bda_features.buffer_device_address == vk::TRUE;
    // SAFETY: as above.
    let memory = unsafe { instance.get_physical_device_memory_properties(pd) };
    // SAFETY: as above.
    let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
    // A queue family for compute only is the device's compute engine where it has one.
    let family = families
        .iter()
        .position(|f| {
            f.queue_flags.contains(vk::QueueFlags::COMPUTE) && !f.queue_flags.contains(vk::QueueFlags::GRAPHICS)
        })
        .or_else(|| {
            families
                .iter()
                .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
        })
        .ok_or_else(|| format!("{name} has no compute queue"))?;
    let timestamp_bits = families[family].timestamp_valid_bits;

    let device_uuid = uuid_text(&id.device_uuid);
    let kind = match base.device_type {
        vk::PhysicalDeviceType::DISCRETE_GPU => "discrete_gpu",
        vk::PhysicalDeviceType::INTEGRATED_GPU => "integrated_gpu",
        vk::PhysicalDeviceType::VIRTUAL_GPU => "virtual_gpu",
        vk::PhysicalDeviceType::CPU => "cpu",
        _ => "other",
    };
    let max_alloc = if has_m4 {
        m3.max_memory_allocation_size.min(m4.max_buffer_size)
    } else {
        m3.max_memory_allocation_size
    };
    let limit_shared = u64::from(limits.max_compute_shared_memory_size);
    let shared_bytes = spec.shared_bytes.unwrap_or(limit_shared) / BLOCK_BYTES as u64 * BLOCK_BYTES as u64;
    let workgroup = WORKGROUP
        .min(limits.max_compute_work_group_invocations)
        .min(limits.max_compute_work_group_size[0])
        .max(1);
    let (compute_units, cu_source) = compute_units(
        base.device_type,
        driver.driver_id,
        has_nv.then_some(nv.shader_sm_count),
        has_amd2.then_some(amd.active_compute_unit_count).or_else(|| {
            has_amd.then_some(
                amd1.shader_engine_count * amd1.shader_arrays_per_engine_count * amd1.compute_units_per_shader_array,
            )
        }),
        has_arm.then_some(arm.shader_core_count),
    );
    let heaps: Vec<serde_json::Value> = memory.memory_heaps[..memory.memory_heap_count as usize]
        .iter()
        .map(|h| {
            serde_json::json!({
                "bytes": h.size,
                "device_local": h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL),
            })
        })
        .collect();
    let global = memory.memory_heaps[..memory.memory_heap_count as usize]
        .iter()
        .filter(|h| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
        .map(|h| h.size)
        .max()
        .unwrap_or(0);
    let c_text = |s: Result<&CStr, _>| s.map_or_else(|_| String::new(), |c: &CStr| c.to_string_lossy().into_owned());
    let driver_name = if has_driver {
        c_text(driver.driver_name_as_c_str())
    } else {
        String::new()
    };
    let driver_info = if has_driver {
        c_text(driver.driver_info_as_c_str())
    } else {
        String::new()
    };

    let mut facts = BTreeMap::new();
    let mut fact = |k: &str, v: serde_json::Value| {
        facts.insert(format!("vulkan.{k}"), v);
    };
    fact("api_version", version_text(base.api_version).into());
    fact("device_type", kind.into());
    fact("vendor_id", format!("{:#06x}", base.vendor_id).into());
    fact("device_id", format!("{:#06x}", base.device_id).into());
    fact("device_uuid", device_uuid.clone().into());
    fact("driver_uuid", uuid_text(&id.driver_uuid).into());
    // The driver's own version text where it gives one (Mesa's release, NVIDIA's driver
    // branch), else the number decoded as its vendor packs it.
    let number = driver_version_text(base.vendor_id, base.driver_version);
    fact(
        "driver_version",
        if driver_info.is_empty() {
            number.clone()
        } else {
            driver_info.clone()
        }
        .into(),
    );
    fact("driver_version_number", number.into());
    fact(
        "platform",
        if driver_name.is_empty() {
            "Vulkan".to_string()
        } else {
            driver_name.clone()
        }
        .into(),
    );
    if has_driver {
        fact("driver_id", format!("{:?}", driver.driver_id).into());
        fact("driver_name", driver_name.into());
        fact("driver_info", driver_info.into());
        let c = driver.conformance_version;
        fact(
            "conformance_version",
            format!("{}.{}.{}.{}", c.major, c.minor, c.subminor, c.patch).into(),
        );
    }
    fact("memory_heaps", serde_json::Value::Array(heaps));
    fact("max_alloc_bytes", max_alloc.into());
    fact("max_storage_buffer_range", limits.max_storage_buffer_range.into());
    fact(
        "max_compute_shared_memory_bytes",
        limits.max_compute_shared_memory_size.into(),
    );
    fact(
        "max_workgroup_invocations",
        limits.max_compute_work_group_invocations.into(),
    );
    fact("workgroup_size", workgroup.into());
    fact("compute_units_source", cu_source.into());
    fact("buffer_device_address", bda.into());
    fact("timestamp_valid_bits", timestamp_bits.into());
    fact("timestamp_period_ns", f64::from(limits.timestamp_period).into());
    fact(
        "timing",
        if timestamp_bits > 0 {
            "on-device copies and FMA by timestamp queries; transfers and launch latency by the tenant's clock"
        } else {
            "the tenant's clock (the compute queue has no timestamps)"
        }
        .into(),
    );
    if spec.validation {
        fact("validation", VALIDATION_LAYER.into());
    }
    if let Some(bytes) = spec.shared_bytes {
        fact("shared_bytes", bytes.into());
    }
    let pci_device = base.device_type != vk::PhysicalDeviceType::CPU && base.vendor_id <= 0xffff;
    let info = DeviceInfo {
        id: spec.id.clone(),
        backend: "vulkan".into(),
        name,
        vendor: Some(vendor_name(base.vendor_id)),
        pci_vendor: pci_device.then_some(base.vendor_id as u16),
        pci_device: pci_device.then_some(base.device_id as u16),
        pci_address: has_pci.then(|| {
            format!(
                "{:04x}:{:02x}:{:02x}.{:x}",
                pci.pci_domain, pci.pci_bus, pci.pci_device, pci.pci_function
            )
        }),
        simulated: false,
        global_mem_bytes: global,
        local_mem_bytes: shared_bytes,
        compute_units,
        facts,
    };
    let caps = Caps {
        device_uuid,
        api_version: base.api_version,
        queue_family: family as u32,
        timestamp_bits,
        timestamp_period_ns: f64::from(limits.timestamp_period),
        shared_bytes,
        workgroup,
        max_groups_x: limits.max_compute_work_group_count[0].max(1),
        max_storage_range: u64::from(limits.max_storage_buffer_range),
        storage_align: limits.min_storage_buffer_offset_alignment.max(1),
        max_alloc,
        bda,
        memory,
    };
    Ok((info, caps))
}

/// Compute units, and where the count comes from: the vendor's extension where the device
/// has one, the CPU's worker threads for a CPU device, else an assumption large enough
/// that the local-memory checks cover any current GPU.
fn compute_units(
    kind: vk::PhysicalDeviceType,
    driver: vk::DriverId,
    nv_sms: Option<u32>,
    amd_cus: Option<u32>,
    arm_cores: Option<u32>,
) -> (u32, String) {
    if let Some(n) = nv_sms.filter(|n| *n > 0) {
        return (n, "VK_NV_shader_sm_builtins (shaderSMCount)".into());
    }
    if let Some(n) = amd_cus.filter(|n| *n > 0) {
        return (n, "VK_AMD_shader_core_properties (compute units)".into());
    }
    if let Some(n) = arm_cores.filter(|n| *n > 0) {
        return (n, "VK_ARM_shader_core_builtins (shaderCoreCount)".into());
    }
    if kind == vk::PhysicalDeviceType::CPU {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        // llvmpipe runs compute on LP_NUM_THREADS worker threads, by default one per CPU.
        if driver == vk::DriverId::MESA_LLVMPIPE
            && let Some(n) = std::env::var("LP_NUM_THREADS")
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
        {
            return (n.max(1), format!("LP_NUM_THREADS={n} (llvmpipe's worker threads)"));
        }
        return (cpus, "the CPUs this process may use (a CPU device's workers)".into());
    }
    (
        ASSUMED_COMPUTE_UNITS,
        format!("assumed: the driver reports no count, so {ASSUMED_COMPUTE_UNITS} (more than any current GPU has)"),
    )
}

/// The compute units assumed for a GPU whose driver does not say how many it has.
const ASSUMED_COMPUTE_UNITS: u32 = 256;

/// `major.minor.patch` of a Vulkan version number.
fn version_text(v: u32) -> String {
    format!(
        "{}.{}.{}",
        vk::api_version_major(v),
        vk::api_version_minor(v),
        vk::api_version_patch(v)
    )
}

/// A driver version as its vendor numbers it (NVIDIA packs 10.8.8.6 bits; the others use
/// Vulkan's own packing).
pub fn driver_version_text(vendor: u32, v: u32) -> String {
    if vendor == 0x10de {
        format!("{}.{:02}.{:02}", v >> 22, (v >> 14) & 0xff, (v >> 6) & 0xff)
    } else {
        version_text(v)
    }
}

/// A vendor's name from its PCI vendor id or Khronos vendor id.
pub fn vendor_name(id: u32) -> String {
    match id {
        0x1002 => "AMD",
        0x10de => "NVIDIA",
        0x8086 => "Intel",
        0x13b5 => "Arm",
        0x5143 => "Qualcomm",
        0x106b => "Apple",
        0x1010 => "Imagination Technologies",
        0x14e4 => "Broadcom",
        0x1ae0 => "Google",
        0x10001 => "Vivante",
        0x10002 => "VeriSilicon",
        0x10003 => "Kazan",
        0x10004 => "Codeplay",
        0x10005 => "Mesa",
        0x10006 => "PoCL",
        0x10007 => "Mobileye",
        _ => return format!("vendor {id:#06x}"),
    }
    .into()
}

/// A 16-byte UUID in its usual text form.
fn uuid_text(b: &[u8; 16]) -> String {
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("{}-{}-{}-{}-{}", h(0..4), h(4..6), h(6..8), h(8..10), h(10..16))
}

/// The pipelines, in the order of [`SHADERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pipe {
    Fill = 0,
    Writer = 1,
    Listener = 2,
    Noop = 3,
    Fma = 4,
    Oob = 5,
    Foreign = 6,
}

struct Buffer {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    size: u64,
}

struct Staging {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    ptr: *mut u8,
    size: u64,
}

/// A `VkDevice` in a tenant process, with what hilt's kernels need on it.
struct VulkanContext {
    loaded: Arc<Loaded>,
    device: ash::Device,
    caps: Caps,
    queue: vk::Queue,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    set_layout: vk::DescriptorSetLayout,
    layout: vk::PipelineLayout,
    descriptors: vk::DescriptorPool,
    set: vk::DescriptorSet,
    queries: Option<vk::QueryPool>,
    /// Pipelines made on first use: making all of them for every context would cost more
    /// than many checks' work on a CPU device.
    pipelines: BTreeMap<Pipe, (vk::ShaderModule, vk::Pipeline)>,
    buffers: BTreeMap<BufferId, Buffer>,
    next: u64,
    /// Made on the first transfer, after the buffers a listener allocates first.
    staging: Option<Staging>,
    /// The device's own timing of the last timed kernel.
    device_seconds: Option<f64>,
    /// The FMA kernel's output, kept between runs so that timing counts the kernel only.
    fma_out: Option<(BufferId, u64)>,
}

// SAFETY: Vulkan handles may be used from any thread as long as access to each is
// externally synchronised; a context is used by one thread at a time (`&mut self`), and the
// staging pointer is a mapping owned by this context alone.
unsafe impl Send for VulkanContext {}

impl VulkanContext {
    fn new(loaded: Arc<Loaded>, pd: vk::PhysicalDevice, caps: Caps) -> Result<VulkanContext, AccelError> {
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(caps.queue_family)
            .queue_priorities(&priorities)];
        let mut bda = vk::PhysicalDeviceBufferDeviceAddressFeatures::default().buffer_device_address(true);
        let mut info = vk::DeviceCreateInfo::default().queue_create_infos(&queues);
        if caps.bda {
            info = info.push_next(&mut bda);
        }
        // robustBufferAccess stays off, as in most applications: what a device does with an
        // access outside a buffer is what the isolation checks observe.
        // SAFETY: `pd` belongs to this instance; `info` outlives the call.
        let device =
            unsafe { loaded.instance.create_device(pd, &info, None) }.map_err(vkerr("creating a Vulkan device"))?;
        // From here on `Drop` destroys whatever has been made, so every early return is
        // clean.
        let mut ctx = VulkanContext {
            loaded,
            device,
            caps,
            queue: vk::Queue::null(),
            pool: vk::CommandPool::null(),
            cmd: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
            set_layout: vk::DescriptorSetLayout::null(),
            layout: vk::PipelineLayout::null(),
            descriptors: vk::DescriptorPool::null(),
            set: vk::DescriptorSet::null(),
            queries: None,
            pipelines: BTreeMap::new(),
            buffers: BTreeMap::new(),
            next: 1,
            staging: None,
            device_seconds: None,
            fma_out: None,
        };
        ctx.init()?;
        Ok(ctx)
    }

    fn init(&mut self) -> Result<(), AccelError> {
        let d = &self.device;
        // SAFETY: every create call gets a valid info that outlives it; handles are stored
        // at once so that `Drop` destroys them.
        unsafe {
            self.queue = d.get_device_queue(self.caps.queue_family, 0);
            self.pool = d
                .create_command_pool(
                    &vk::CommandPoolCreateInfo::default()
                        .queue_family_index(self.caps.queue_family)
                        .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                    None,
                )
                .map_err(vkerr("creating a command pool"))?;
            self.cmd = d
                .allocate_command_buffers(
                    &vk::CommandBufferAllocateInfo::default()
                        .command_pool(self.pool)
                        .level(vk::CommandBufferLevel::PRIMARY)
                        .command_buffer_count(1),
                )
                .map_err(vkerr("allocating a command buffer"))?[0];
            self.fence = d
                .create_fence(&vk::FenceCreateInfo::default(), None)
                .map_err(vkerr("creating a fence"))?;
            let bindings = [vk::DescriptorSetLayoutBinding::default()
                .binding(0)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)];
            self.set_layout = d
                .create_descriptor_set_layout(&vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings), None)
                .map_err(vkerr("creating a descriptor set layout"))?;
            let set_layouts = [self.set_layout];
            let push = [vk::PushConstantRange::default()
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
                .offset(0)
                .size(PUSH_BYTES)];
            self.layout = d
                .create_pipeline_layout(
                    &vk::PipelineLayoutCreateInfo::default()
                        .set_layouts(&set_layouts)
                        .push_constant_ranges(&push),
                    None,
                )
                .map_err(vkerr("creating a pipeline layout"))?;
            let sizes = [vk::DescriptorPoolSize::default()
                .ty(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)];
            self.descriptors = d
                .create_descriptor_pool(
                    &vk::DescriptorPoolCreateInfo::default().max_sets(1).pool_sizes(&sizes),
                    None,
                )
                .map_err(vkerr("creating a descriptor pool"))?;
            self.set = d
                .allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default()
                        .descriptor_pool(self.descriptors)
                        .set_layouts(&set_layouts),
                )
                .map_err(vkerr("allocating a descriptor set"))?[0];
            if self.caps.timestamp_bits > 0 {
                self.queries = Some(
                    d.create_query_pool(
                        &vk::QueryPoolCreateInfo::default()
                            .query_type(vk::QueryType::TIMESTAMP)
                            .query_count(2),
                        None,
                    )
                    .map_err(vkerr("creating a timestamp query pool"))?,
                );
            }
        }
        Ok(())
    }

    /// The pipeline of `pipe`, made on first use with the device's workgroup and shared
    /// memory sizes as specialisation constants.
    fn pipeline(&mut self, pipe: Pipe) -> Result<vk::Pipeline, AccelError> {
        if let Some((_, p)) = self.pipelines.get(&pipe) {
            return Ok(*p);
        }
        let shader = &SHADERS[pipe as usize];
        let code = ash::util::read_spv(&mut std::io::Cursor::new(shader.spirv))
            .map_err(|e| AccelError::Backend(format!("the SPIR-V of {} is malformed: {e}", shader.name)))?;
        let d = &self.device;
        // SAFETY: the code is SPIR-V words that outlive the call.
        let module = unsafe { d.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&code), None) }
            .map_err(vkerr(&format!("loading shader {}", shader.name)))?;
        let words = u32::try_from(self.caps.shared_bytes / 4).unwrap_or(u32::MAX);
        let values = [self.caps.workgroup, words];
        let entries = [
            vk::SpecializationMapEntry::default().constant_id(0).offset(0).size(4),
            vk::SpecializationMapEntry::default().constant_id(1).offset(4).size(4),
        ];
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let special = vk::SpecializationInfo::default().map_entries(&entries).data(&data);
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(module)
            .name(c"main")
            .specialization_info(&special);
        let info = [vk::ComputePipelineCreateInfo::default()
            .stage(stage)
            .layout(self.layout)];
        // SAFETY: every pointer in `info` outlives the call.
        let made = unsafe { d.create_compute_pipelines(vk::PipelineCache::null(), &info, None) };
        match made {
            Ok(p) => {
                self.pipelines.insert(pipe, (module, p[0]));
                self.loaded.check()?;
                Ok(p[0])
            }
            Err((_, e)) => {
                // SAFETY: the module was made above and is used by nothing.
                unsafe { d.destroy_shader_module(module, None) };
                Err(vkerr(&format!("making the pipeline of {}", shader.name))(e))
            }
        }
    }

    fn buffer(&self, id: BufferId) -> Result<&Buffer, AccelError> {
        self.buffers.get(&id).ok_or(AccelError::UnknownBuffer(id.0))
    }

    fn check_range(&self, id: BufferId, offset: u64, len: u64) -> Result<&Buffer, AccelError> {
        let b = self.buffer(id)?;
        if offset.checked_add(len).is_none_or(|end| end > b.size) {
            return Err(AccelError::OutOfBounds {
                buffer: id.0,
                offset,
                len,
                size: b.size,
            });
        }
        Ok(b)
    }

    /// The first memory type allowed by `bits` that has `want`, preferring one that has
    /// `prefer` too.
    fn memory_type(&self, bits: u32, want: vk::MemoryPropertyFlags, prefer: vk::MemoryPropertyFlags) -> Option<u32> {
        let m = &self.caps.memory;
        let types = &m.memory_types[..m.memory_type_count as usize];
        let fits =
            |i: usize, flags: vk::MemoryPropertyFlags| bits & (1 << i) != 0 && types[i].property_flags.contains(flags);
        (0..types.len())
            .find(|&i| fits(i, want | prefer))
            .or_else(|| (0..types.len()).find(|&i| fits(i, want)))
            .map(|i| i as u32)
    }

    /// A buffer of `size` bytes with its own memory allocation.
    fn make_buffer(
        &self,
        size: u64,
        usage: vk::BufferUsageFlags,
        want: vk::MemoryPropertyFlags,
        prefer: vk::MemoryPropertyFlags,
        addressable: bool,
    ) -> Result<(vk::Buffer, vk::DeviceMemory), AccelError> {
        let d = &self.device;
        // SAFETY: valid infos that outlive the calls; on failure what was made is destroyed.
        unsafe {
            let buffer = d
                .create_buffer(
                    &vk::BufferCreateInfo::default()
                        .size(size)
                        .usage(usage)
                        .sharing_mode(vk::SharingMode::EXCLUSIVE),
                    None,
                )
                .map_err(vkerr(&format!("creating a buffer of {size} bytes")))?;
            let needs = d.get_buffer_memory_requirements(buffer);
            let Some(kind) = self.memory_type(needs.memory_type_bits, want, prefer) else {
                d.destroy_buffer(buffer, None);
                return Err(AccelError::Backend(format!(
                    "no memory type with {want:?} for a buffer"
                )));
            };
            let mut flags = vk::MemoryAllocateFlagsInfo::default().flags(vk::MemoryAllocateFlags::DEVICE_ADDRESS);
            let mut info = vk::MemoryAllocateInfo::default()
                .allocation_size(needs.size)
                .memory_type_index(kind);
            if addressable {
                info = info.push_next(&mut flags);
            }
            let memory = match d.allocate_memory(&info, None) {
                Ok(m) => m,
                Err(e) => {
                    d.destroy_buffer(buffer, None);
                    return Err(vkerr(&format!("allocating {size} bytes"))(e));
                }
            };
            if let Err(e) = d.bind_buffer_memory(buffer, memory, 0) {
                d.destroy_buffer(buffer, None);
                d.free_memory(memory, None);
                return Err(vkerr("binding buffer memory")(e));
            }
            Ok((buffer, memory))
        }
    }

    /// The staging buffer, made on first use, host-visible and mapped for good.
    fn staging(&mut self) -> Result<(vk::Buffer, *mut u8, u64), AccelError> {
        if let Some(s) = &self.staging {
            return Ok((s.buffer, s.ptr, s.size));
        }
        let size = STAGING_BYTES.min(self.caps.max_alloc);
        let (buffer, memory) = self.make_buffer(
            size,
            vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
            vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT,
            vk::MemoryPropertyFlags::HOST_CACHED,
            false,
        )?;
        // SAFETY: the memory is host-visible and not mapped yet.
        let ptr = match unsafe { self.device.map_memory(memory, 0, size, vk::MemoryMapFlags::empty()) } {
            Ok(p) => p.cast::<u8>(),
            Err(e) => {
                // SAFETY: made above, used by nothing.
                unsafe {
                    self.device.destroy_buffer(buffer, None);
                    self.device.free_memory(memory, None);
                }
                return Err(vkerr("mapping the staging buffer")(e));
            }
        };
        self.staging = Some(Staging {
            buffer,
            memory,
            ptr,
            size,
        });
        Ok((buffer, ptr, size))
    }

    /// Records commands with `record` into the context's command buffer (after a barrier
    /// that orders them behind everything submitted before), submits it and waits for it.
    /// With `timed`, timestamps around the commands give the device's own duration.
    fn submit(
        &mut self,
        what: &str,
        timed: bool,
        record: impl FnOnce(&ash::Device, vk::CommandBuffer),
    ) -> Result<Option<f64>, AccelError> {
        let d = &self.device;
        let cmd = self.cmd;
        let queries = self.queries.filter(|_| timed);
        let err = |e: vk::Result| vkerr(what)(e);
        // SAFETY: the command buffer is idle (every submission is waited for), and the
        // recorded commands use live objects of this device.
        unsafe {
            d.reset_command_buffer(cmd, vk::CommandBufferResetFlags::empty())
                .map_err(err)?;
            d.begin_command_buffer(
                cmd,
                &vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )
            .map_err(err)?;
            let all = vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
                .dst_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::MEMORY_WRITE);
            d.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::ALL_COMMANDS,
                vk::PipelineStageFlags::ALL_COMMANDS,
                vk::DependencyFlags::empty(),
                &[all],
                &[],
                &[],
            );
            if let Some(q) = queries {
                d.cmd_reset_query_pool(cmd, q, 0, 2);
                d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::TOP_OF_PIPE, q, 0);
            }
            record(d, cmd);
            if let Some(q) = queries {
                d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::BOTTOM_OF_PIPE, q, 1);
            }
            // Whatever the commands wrote is made visible to the host's reads of mapped
            // memory.
            let host = vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
                .dst_access_mask(vk::AccessFlags::HOST_READ);
            d.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::ALL_COMMANDS,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &[host],
                &[],
                &[],
            );
            d.end_command_buffer(cmd).map_err(err)?;
            let cmds = [cmd];
            let submits = [vk::SubmitInfo::default().command_buffers(&cmds)];
            d.queue_submit(self.queue, &submits, self.fence).map_err(err)?;
            let waited = d.wait_for_fences(&[self.fence], true, u64::MAX);
            d.reset_fences(&[self.fence]).map_err(err)?;
            waited.map_err(err)?;
            let mut seconds = None;
            if let Some(q) = queries {
                let mut stamps = [0u64; 2];
                d.get_query_pool_results(
                    q,
                    0,
                    &mut stamps,
                    vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
                )
                .map_err(err)?;
                let mask = if self.caps.timestamp_bits >= 64 {
                    u64::MAX
                } else {
                    (1u64 << self.caps.timestamp_bits) - 1
                };
                let ticks = stamps[1].wrapping_sub(stamps[0]) & mask;
                seconds = Some(ticks as f64 * self.caps.timestamp_period_ns * 1e-9);
            }
            self.loaded.check()?;
            Ok(seconds)
        }
    }

    /// Points the descriptor set's one binding at `len` bytes of `buffer` from `offset`.
    fn bind(&self, buffer: vk::Buffer, offset: u64, len: u64) {
        let info = [vk::DescriptorBufferInfo::default()
            .buffer(buffer)
            .offset(offset)
            .range(len)];
        let write = [vk::WriteDescriptorSet::default()
            .dst_set(self.set)
            .dst_binding(0)
            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
            .buffer_info(&info)];
        // SAFETY: the set is not in use by any pending command buffer (every submission is
        // waited for) and `buffer` is live.
        unsafe { self.device.update_descriptor_sets(&write, &[]) };
    }

    /// Dispatches `pipe` over `groups` (x, y) workgroups with `push` as push constants and
    /// the descriptor bound to `binding`, and waits for it.
    fn dispatch(
        &mut self,
        pipe: Pipe,
        groups: (u32, u32),
        push: &[u8],
        binding: Option<(vk::Buffer, u64, u64)>,
        timed: bool,
    ) -> Result<Option<f64>, AccelError> {
        let pipeline = self.pipeline(pipe)?;
        if let Some((b, offset, len)) = binding {
            self.bind(b, offset, len);
        }
        let (layout, set) = (self.layout, self.set);
        let bound = binding.is_some();
        self.submit(&format!("running {}", SHADERS[pipe as usize].name), timed, |d, cmd| {
            // SAFETY: recording into a command buffer in the recording state.
            unsafe {
                d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipeline);
                if bound {
                    d.cmd_bind_descriptor_sets(cmd, vk::PipelineBindPoint::COMPUTE, layout, 0, &[set], &[]);
                }
                if !push.is_empty() {
                    d.cmd_push_constants(cmd, layout, vk::ShaderStageFlags::COMPUTE, 0, push);
                }
                d.cmd_dispatch(cmd, groups.0, groups.1, 1);
            }
        })
    }

    /// Bytes of a window of a buffer that one descriptor may cover: the largest multiple of
    /// a canary block and of the offset alignment within `maxStorageBufferRange`.
    fn window(&self) -> u64 {
        let unit = lcm(BLOCK_BYTES as u64, self.caps.storage_align);
        (self.caps.max_storage_range / unit * unit).max(unit)
    }

    fn count(&mut self, id: BufferId, key: canary::CanaryKey) -> Result<ScanReport, AccelError> {
        let size = self.buffer(id)?.size;
        super::scan_in_chunks(size, key, |offset, into| self.read(id, offset, into))
    }

    fn device_address_of(&self, id: BufferId) -> Result<u64, AccelError> {
        let b = self.buffer(id)?;
        // SAFETY: the buffer was made with SHADER_DEVICE_ADDRESS usage on a device with the
        // feature enabled (callers check `caps.bda`).
        Ok(unsafe {
            self.device
                .get_buffer_device_address(&vk::BufferDeviceAddressInfo::default().buffer(b.buffer))
        })
    }

    fn no_address(&self, what: &str) -> AccelError {
        AccelError::Backend(format!(
            "{what} needs raw device addresses, and this device has no bufferDeviceAddress (Vulkan {} without the \
             feature)",
            version_text(self.caps.api_version)
        ))
    }

    fn run_kernel(&mut self, kernel: &Kernel) -> Result<KernelOutput, AccelError> {
        let wg = u64::from(self.caps.workgroup);
        match *kernel {
            Kernel::FillCanary { buffer, key } => {
                let (b, size) = {
                    let b = self.buffer(buffer)?;
                    (b.buffer, b.size)
                };
                let blocks = size / BLOCK_BYTES as u64;
                let (marker, x, m) = key.parts();
                let window = self.window();
                let mut offset = 0;
                while offset < blocks * BLOCK_BYTES as u64 {
                    let len = window.min(blocks * BLOCK_BYTES as u64 - offset);
                    let n = len / BLOCK_BYTES as u64;
                    let push = words(&[marker, x, m, offset / BLOCK_BYTES as u64], &[n as u32]);
                    let groups = n.div_ceil(wg).min(u64::from(self.caps.max_groups_x)) as u32;
                    self.dispatch(Pipe::Fill, (groups, 1), &push, Some((b, offset, len)), false)?;
                    offset += len;
                }
                // A tail shorter than a block gets the next block's first bytes, as on
                // every backend.
                let tail = size % BLOCK_BYTES as u64;
                if tail > 0 {
                    let mut block = [0u8; BLOCK_BYTES];
                    canary::fill(&mut block, key, blocks);
                    self.write(buffer, size - tail, &block[..tail as usize])?;
                }
                Ok(KernelOutput::Done)
            }
            Kernel::CountCanary { buffer, key } => Ok(KernelOutput::Scan(self.count(buffer, key)?)),
            Kernel::LocalWriter { groups, key } => {
                self.check_groups(groups)?;
                let blocks = self.caps.shared_bytes / BLOCK_BYTES as u64;
                let seen = self.alloc(u64::from(groups) * 4)?;
                let result = (|| {
                    let sb = self.buffer(seen)?.buffer;
                    let bytes = u64::from(groups) * 4;
                    self.submit("clearing counters", false, |d, cmd| {
                        // SAFETY: recording into a command buffer in the recording state.
                        unsafe { d.cmd_fill_buffer(cmd, sb, 0, bytes, 0) };
                    })?;
                    let (marker, x, m) = key.parts();
                    let push = words(&[marker, x, m], &[]);
                    self.dispatch(Pipe::Writer, (groups, 1), &push, Some((sb, 0, bytes)), false)?;
                    let mut counts = vec![0u8; groups as usize * 4];
                    self.read(seen, 0, &mut counts)?;
                    Ok(super::local_control(&counts, groups, blocks))
                })();
                self.free(seen)?;
                result.map(KernelOutput::Scan)
            }
            Kernel::LocalListener { groups, out } => {
                self.check_groups(groups)?;
                let bytes = u64::from(groups) * self.caps.shared_bytes;
                let b = self.check_range(out, 0, bytes)?.buffer;
                if bytes > self.caps.max_storage_range {
                    return Err(AccelError::Backend(format!(
                        "the listener's dump of {bytes} bytes exceeds maxStorageBufferRange ({} bytes)",
                        self.caps.max_storage_range
                    )));
                }
                let push = words(&[], &[0]);
                self.dispatch(Pipe::Listener, (groups, 1), &push, Some((b, 0, bytes)), false)?;
                Ok(KernelOutput::Done)
            }
            Kernel::Copy { src, dst, .. } if src == dst => {
                Err(AccelError::Backend("copy needs two different buffers".into()))
            }
            Kernel::Copy { src, dst, bytes } => {
                let s = self.check_range(src, 0, bytes)?.buffer;
                let t = self.check_range(dst, 0, bytes)?.buffer;
                self.device_seconds = self.submit("copying a buffer", true, |d, cmd| {
                    let region = [vk::BufferCopy::default().size(bytes)];
                    // SAFETY: recording into a command buffer in the recording state; both
                    // ranges were checked above.
                    unsafe { d.cmd_copy_buffer(cmd, s, t, &region) };
                })?;
                Ok(KernelOutput::Done)
            }
            Kernel::Noop => {
                self.dispatch(Pipe::Noop, (1, 1), &[], None, false)?;
                Ok(KernelOutput::Done)
            }
            Kernel::Fma { work_items, iterations } => {
                let items = u32::try_from(work_items).map_err(|_| {
                    AccelError::Backend(format!("{work_items} work-items is too many for one dispatch"))
                })?;
                let out = match self.fma_out {
                    Some((id, n)) if n >= u64::from(items) => id,
                    previous => {
                        if let Some((id, _)) = previous {
                            self.free(id)?;
                        }
                        let id = self.alloc(u64::from(items.max(1)) * 4)?;
                        self.fma_out = Some((id, u64::from(items)));
                        id
                    }
                };
                let (b, size) = {
                    let b = self.buffer(out)?;
                    (b.buffer, b.size)
                };
                let groups = u64::from(items).div_ceil(wg).max(1);
                let gx = groups.min(u64::from(self.caps.max_groups_x));
                let gy = groups.div_ceil(gx);
                let push = words(&[], &[iterations, items]);
                self.device_seconds =
                    self.dispatch(Pipe::Fma, (gx as u32, gy as u32), &push, Some((b, 0, size)), true)?;
                Ok(KernelOutput::Done)
            }
            Kernel::OutOfBounds { buffer, offset } => {
                let size = self.buffer(buffer)?.size;
                if offset < size {
                    return Err(AccelError::Backend(
                        "out_of_bounds needs an offset beyond the buffer".into(),
                    ));
                }
                if !self.caps.bda {
                    return Err(self.no_address("a write outside a buffer"));
                }
                let address = self.device_address_of(buffer)?.wrapping_add(offset) & !3;
                let push = words(&[address], &[]);
                // The write lands outside the buffer on purpose: what the device does about
                // it (a lost device, the process ended) is what `isolation.fault_containment`
                // measures.
                self.dispatch(Pipe::Oob, (1, 1), &push, None, false)
                    .map_err(memory_fault)?;
                Ok(KernelOutput::Done)
            }
            Kernel::ReadForeign { address, bytes, out } => {
                if !self.caps.bda {
                    return Err(self.no_address("a read of another tenant's address"));
                }
                if !bytes.is_multiple_of(4) {
                    return Err(AccelError::Backend(format!(
                        "read_foreign reads whole words, not {bytes} bytes"
                    )));
                }
                let count = u32::try_from(bytes / 4)
                    .map_err(|_| AccelError::Backend(format!("read_foreign of {bytes} bytes is too large")))?;
                let b = self.check_range(out, 0, bytes)?.buffer;
                if bytes > self.caps.max_storage_range {
                    return Err(AccelError::Backend(format!(
                        "read_foreign of {bytes} bytes exceeds maxStorageBufferRange ({} bytes)",
                        self.caps.max_storage_range
                    )));
                }
                let push = words(&[address], &[count]);
                let groups = u64::from(count)
                    .div_ceil(wg)
                    .clamp(1, u64::from(self.caps.max_groups_x)) as u32;
                // The address belongs to another process on purpose; the device's memory
                // protection decides what the read does.
                self.dispatch(Pipe::Foreign, (groups, 1), &push, Some((b, 0, bytes)), false)
                    .map_err(memory_fault)?;
                Ok(KernelOutput::Done)
            }
        }
    }

    fn check_groups(&self, groups: u32) -> Result<(), AccelError> {
        if groups == 0 || groups > self.caps.max_groups_x {
            return Err(AccelError::Backend(format!(
                "{groups} workgroups is outside 1 to maxComputeWorkGroupCount ({})",
                self.caps.max_groups_x
            )));
        }
        Ok(())
    }

    /// Moves `len` bytes between a buffer and the staging buffer, chunk by chunk:
    /// `host(staging, chunk_offset, chunk_len)` runs before an upload's copy (to fill the
    /// staging buffer) or after a download's copy (to empty it).
    fn transfer(
        &mut self,
        id: BufferId,
        offset: u64,
        len: u64,
        upload: bool,
        mut host: impl FnMut(*mut u8, usize, usize),
    ) -> Result<(), AccelError> {
        let b = self.check_range(id, offset, len)?.buffer;
        let (staging, ptr, size) = self.staging()?;
        let mut done = 0;
        while done < len {
            let n = size.min(len - done);
            if upload {
                host(ptr, done as usize, n as usize);
            }
            let (src, dst, src_off, dst_off) = if upload {
                (staging, b, 0, offset + done)
            } else {
                (b, staging, offset + done, 0)
            };
            self.submit(
                if upload { "writing a buffer" } else { "reading a buffer" },
                false,
                |d, cmd| {
                    let region = [vk::BufferCopy::default()
                        .src_offset(src_off)
                        .dst_offset(dst_off)
                        .size(n)];
                    // SAFETY: recording into a command buffer in the recording state; both
                    // ranges lie in their buffers.
                    unsafe { d.cmd_copy_buffer(cmd, src, dst, &region) };
                },
            )?;
            if !upload {
                host(ptr, done as usize, n as usize);
            }
            done += n;
        }
        Ok(())
    }
}

impl Context for VulkanContext {
    fn alloc(&mut self, bytes: u64) -> Result<BufferId, AccelError> {
        if bytes == 0 {
            return Err(AccelError::Backend("zero-byte allocation".into()));
        }
        if bytes > self.caps.max_alloc {
            return Err(AccelError::Backend(format!(
                "{bytes} bytes is more than one allocation may have on this device ({} bytes)",
                self.caps.max_alloc
            )));
        }
        let mut usage = vk::BufferUsageFlags::STORAGE_BUFFER
            | vk::BufferUsageFlags::TRANSFER_SRC
            | vk::BufferUsageFlags::TRANSFER_DST;
        if self.caps.bda {
            usage |= vk::BufferUsageFlags::SHADER_DEVICE_ADDRESS;
        }
        let (buffer, memory) = self.make_buffer(
            bytes,
            usage,
            vk::MemoryPropertyFlags::DEVICE_LOCAL,
            vk::MemoryPropertyFlags::empty(),
            self.caps.bda,
        )?;
        let id = BufferId(self.next);
        self.next += 1;
        self.buffers.insert(
            id,
            Buffer {
                buffer,
                memory,
                size: bytes,
            },
        );
        self.loaded.check()?;
        Ok(id)
    }

    fn write(&mut self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), AccelError> {
        self.device_seconds = None;
        self.transfer(buffer, offset, data.len() as u64, true, |ptr, at, n| {
            // SAFETY: `ptr` maps at least `n` bytes of staging memory, and `at + n` lies in
            // `data`.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr().add(at), ptr, n) };
        })
    }

    fn read(&mut self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), AccelError> {
        self.device_seconds = None;
        let len = out.len() as u64;
        self.transfer(buffer, offset, len, false, |ptr, at, n| {
            // SAFETY: as in `write`, the other way.
            unsafe { std::ptr::copy_nonoverlapping(ptr, out.as_mut_ptr().add(at), n) };
        })
    }

    fn free(&mut self, buffer: BufferId) -> Result<(), AccelError> {
        let b = self
            .buffers
            .remove(&buffer)
            .ok_or(AccelError::UnknownBuffer(buffer.0))?;
        if self.fma_out.is_some_and(|(id, _)| id == buffer) {
            self.fma_out = None;
        }
        // SAFETY: no submission is pending (every one is waited for); made here, freed once.
        unsafe {
            self.device.destroy_buffer(b.buffer, None);
            self.device.free_memory(b.memory, None);
        }
        self.loaded.check()
    }

    fn run(&mut self, kernel: &Kernel) -> Result<KernelOutput, AccelError> {
        self.device_seconds = None;
        self.run_kernel(kernel)
    }

    fn device_address(&mut self, buffer: BufferId) -> Result<Option<u64>, AccelError> {
        if !self.caps.bda {
            self.buffer(buffer)?;
            return Ok(None);
        }
        self.device_address_of(buffer).map(Some)
    }

    fn device_seconds(&mut self) -> Option<f64> {
        self.device_seconds
    }
}

impl Drop for VulkanContext {
    fn drop(&mut self) {
        let d = &self.device;
        // SAFETY: after the device is idle nothing is in use; each handle was made here and
        // is destroyed once (null handles are ignored by Vulkan's destroy calls).
        unsafe {
            // After a lost device this fails, which changes nothing here.
            let _ = d.device_wait_idle();
            if let Some(s) = self.staging.take() {
                // The detector's copies passed through here: they must not become residue
                // that the next allocation (another context's buffer) finds.
                std::ptr::write_bytes(s.ptr, 0, s.size as usize);
                d.unmap_memory(s.memory);
                d.destroy_buffer(s.buffer, None);
                d.free_memory(s.memory, None);
            }
            for (_, b) in std::mem::take(&mut self.buffers) {
                d.destroy_buffer(b.buffer, None);
                d.free_memory(b.memory, None);
            }
            for (_, (module, pipeline)) in std::mem::take(&mut self.pipelines) {
                d.destroy_pipeline(pipeline, None);
                d.destroy_shader_module(module, None);
            }
            if let Some(q) = self.queries.take() {
                d.destroy_query_pool(q, None);
            }
            d.destroy_descriptor_pool(self.descriptors, None);
            d.destroy_pipeline_layout(self.layout, None);
            d.destroy_descriptor_set_layout(self.set_layout, None);
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.pool, None);
            d.destroy_device(None);
        }
    }
}

/// Push constants: `pairs` as (low, high) word pairs, then `singles`, little-endian as
/// the shaders' std430 blocks lay them out.
fn words(pairs: &[u64], singles: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.len() * 8 + singles.len() * 4);
    for p in pairs {
        out.extend_from_slice(&p.to_le_bytes());
    }
    for s in singles {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn lcm(a: u64, b: u64) -> u64 {
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    a / gcd(a, b) * b
}

/// A lost device after a stray access is the device refusing it: a
/// [`AccelError::MemoryFault`]; other errors stay as they are.
fn memory_fault(e: AccelError) -> AccelError {
    let text = e.to_string();
    if text.contains("ERROR_DEVICE_LOST") {
        AccelError::MemoryFault(text)
    } else {
        e
    }
}

fn vkerr(what: &str) -> impl Fn(vk::Result) -> AccelError + '_ {
    move |e| AccelError::Backend(format!("{what}: Vulkan error {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shader_is_spirv_with_a_main_entry_point() {
        for shader in SHADERS {
            let code = ash::util::read_spv(&mut std::io::Cursor::new(shader.spirv)).expect("SPIR-V words");
            assert_eq!(code[0], 0x0723_0203, "{} is not SPIR-V", shader.name);
            assert!(
                shader.spirv.windows(5).any(|w| w == b"main\0"),
                "{} has no entry point `main`",
                shader.name
            );
            assert!(shader.source.starts_with("#version 450"), "{}", shader.name);
        }
        assert_eq!(SHADERS[Pipe::Foreign as usize].name, "read_foreign");
        assert_eq!(SHADERS[Pipe::Fill as usize].name, "fill_canary");
    }

    #[test]
    fn push_constants_lay_out_as_std430() {
        let bytes = words(&[0x1122_3344_5566_7788], &[9]);
        assert_eq!(bytes, [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 9, 0, 0, 0]);
    }

    #[test]
    fn driver_versions_read_as_their_vendors_print_them() {
        // NVIDIA 550.54.14: 10 bits, 8 bits, 8 bits, 6 bits.
        assert_eq!(
            driver_version_text(0x10de, (550 << 22) | (54 << 14) | (14 << 6)),
            "550.54.14"
        );
        assert_eq!(
            driver_version_text(0x10005, vk::make_api_version(0, 22, 3, 6)),
            "22.3.6"
        );
    }

    #[test]
    fn windows_are_whole_blocks_at_aligned_offsets() {
        assert_eq!(lcm(32, 256), 256);
        assert_eq!(lcm(32, 48), 96);
        assert_eq!(lcm(32, 1), 32);
    }

    #[test]
    fn compute_units_come_from_the_vendor_or_are_assumed() {
        let gpu = vk::PhysicalDeviceType::DISCRETE_GPU;
        let any = vk::DriverId::default();
        assert_eq!(compute_units(gpu, any, Some(132), None, None).0, 132);
        assert_eq!(compute_units(gpu, any, None, Some(104), None).0, 104);
        assert_eq!(compute_units(gpu, any, None, None, Some(16)).0, 16);
        let (n, why) = compute_units(gpu, any, None, None, None);
        assert_eq!(n, ASSUMED_COMPUTE_UNITS);
        assert!(why.starts_with("assumed"));
    }
}
