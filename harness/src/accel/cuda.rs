//! The CUDA backend: NVIDIA GPUs through the CUDA driver API (`cudarc`), with the
//! built-in kernels in CUDA C compiled at run time by NVRTC.
//!
//! The driver library (`libcuda.so.1`) and NVRTC are loaded at run time, never linked:
//! one build of hilt runs on every machine. cudarc panics when a library it needs cannot
//! be loaded, or when the installed driver lacks a symbol, so every path into the driver
//! first checks that the library is present ([`driver_present`], [`nvrtc_present`]) and
//! runs under `catch_unwind` as a second guard: a machine without a driver lists no CUDA
//! device and says so in one line, and a tenant on a driver that lacks a symbol reports
//! an error instead of dying.
//!
//! Discovery runs in the harness process and only asks the driver about devices (no
//! context is made there); it joins each device to NVML ([`crate::nvml`]) by PCI bus id
//! or UUID for its identity, firmware and mode facts, its PCI ids (so that profiles match
//! by PCI device id) and its sharing mode. Contexts, buffers and kernels exist only in
//! tenant processes. Every [`Accelerator::create_context`] makes a context of its own with
//! `cuCtxCreate` (not the primary context, of which a process has one per device), so the
//! cross-context residue checks cross a real context boundary. Buffers come from
//! `cuMemAlloc` (never the stream-ordered pool, which reuses memory inside a process by
//! design); transfers are synchronous `cuMemcpy` calls; canary in global memory is
//! written and counted on the device at memory speed (`fill_canary`, `count_canary`: only
//! three counters cross the bus); canary in shared memory is written and counted on the
//! device too.

use std::collections::BTreeMap;
use std::ffi::{CString, c_void};
use std::sync::OnceLock;

use cudarc::driver::result as cu;
use cudarc::driver::sys::{self, CUdevice_attribute as Attr};
use serde::{Deserialize, Serialize};

use super::{AccelError, Accelerator, BufferId, Context, DETECTOR_WINDOW, DeviceInfo, Kernel, KernelOutput};
use crate::canary::{self, BLOCK_BYTES, ScanReport};
use crate::hostfs::HostFs;
use crate::nvml::{self, NvmlSystem};

/// The built-in kernels in CUDA C, compiled by NVRTC for the device's architecture.
/// Their canary layout is the OpenCL backend's, block for block.
pub const KERNELS: &str = r#"
typedef unsigned long long u64;

// Global canary: block b of the buffer is [marker, b, t, ~t ^ marker], t = (b ^ x) * m,
// written as two 16-byte stores (buffers from cuMemAlloc are 256-byte aligned).
extern "C" __global__ void fill_canary(u64* buf, u64 marker, u64 x, u64 m, u64 blocks) {
    ulonglong2* q = (ulonglong2*)buf;
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 b = (u64)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += stride) {
        u64 t = (b ^ x) * m;
        q[2 * b] = make_ulonglong2(marker, b);
        q[2 * b + 1] = make_ulonglong2(t, ~t ^ marker);
    }
}

// The detector: counts canary blocks that start at any 4-byte-aligned word p of the
// tiles origin / 8 .. origin / 8 + tiles (a tile is 8 words, one block's worth), reading
// no word at or past `limit`, in a grid-stride loop (a warp reads 1 KiB in one go). A
// tile's aligned block is verified from the tile itself; other candidates (the marker's
// low word elsewhere in the tile) from global memory. counts[0] += blocks, counts[1] +=
// blocks in place (index x 8 = p), counts[2] = min of p - origin (start at 0xffffffff).
extern "C" __global__ void count_canary(const unsigned int* w, u64 origin, u64 tiles, u64 limit,
                                        u64 marker, u64 x, u64 m, unsigned int* counts) {
    const ulonglong2* q = (const ulonglong2*)w;
    u64 lo = marker & 0xffffffffULL;
    unsigned int blocks = 0, in_place = 0, first = 0xffffffffu;
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 t = (u64)blockIdx.x * blockDim.x + threadIdx.x; t < tiles; t += stride) {
        u64 p0 = origin + 8 * t;
        ulonglong2 a = q[p0 / 4], b = q[p0 / 4 + 1];
        if (a.x == marker) {
            u64 tag = (a.y ^ x) * m;
            if (b.x == tag && b.y == (~tag ^ marker)) {
                unsigned int at = (unsigned int)(p0 - origin);
                blocks++;
                in_place += (a.y >> 61) == 0 && a.y * 8 == p0;
                first = at < first ? at : first;
            }
        }
        bool other = (a.x >> 32) == lo || (a.y & 0xffffffffULL) == lo || (a.y >> 32) == lo
            || (b.x & 0xffffffffULL) == lo || (b.x >> 32) == lo || (b.y & 0xffffffffULL) == lo
            || (b.y >> 32) == lo;
        if (!other) continue;
        for (u64 p = p0 + 1; p < p0 + 8 && p + 8 <= limit; p++) {
            if (w[p] != (unsigned int)lo) continue;
            u64 w0 = (u64)w[p] | ((u64)w[p + 1] << 32);
            u64 i = (u64)w[p + 2] | ((u64)w[p + 3] << 32);
            u64 tag = (i ^ x) * m;
            u64 w2 = (u64)w[p + 4] | ((u64)w[p + 5] << 32);
            u64 w3 = (u64)w[p + 6] | ((u64)w[p + 7] << 32);
            if (w0 != marker || w2 != tag || w3 != (~tag ^ marker)) continue;
            unsigned int at = (unsigned int)(p - origin);
            blocks++;
            in_place += (i >> 61) == 0 && i * 8 == p;
            first = at < first ? at : first;
        }
    }
    if (blocks) {
        atomicAdd(&counts[0], blocks);
        atomicAdd(&counts[1], in_place);
        atomicMin(&counts[2], first);
    }
}

// LeftoverLocals writer: every block fills all of its dynamic shared memory with canary
// numbered from block * blocks, then counts back the canary blocks it can see (the
// positive control). Volatile keeps the compiler from forwarding stores to loads.
extern "C" __global__ void local_writer(unsigned int* seen, u64 marker, u64 x, u64 m, u64 blocks) {
    extern __shared__ u64 hilt_lm_w[];
    volatile u64* lm = hilt_lm_w;
    u64 base = (u64)blockIdx.x * blocks;
    for (u64 b = threadIdx.x; b < blocks; b += blockDim.x) {
        u64 i = base + b, t = (i ^ x) * m;
        lm[4 * b] = marker;
        lm[4 * b + 1] = i;
        lm[4 * b + 2] = t;
        lm[4 * b + 3] = ~t ^ marker;
    }
    __syncthreads();
    unsigned int ok = 0;
    for (u64 b = threadIdx.x; b < blocks; b += blockDim.x) {
        u64 i = base + b, t = (i ^ x) * m;
        ok += (lm[4 * b] == marker && lm[4 * b + 1] == i && lm[4 * b + 2] == t && lm[4 * b + 3] == (~t ^ marker));
    }
    atomicAdd(&seen[blockIdx.x], ok);
}

// LeftoverLocals listener: every block copies the shared memory it never wrote to
// out[block * words ...].
extern "C" __global__ void local_listener(u64* out, u64 words) {
    extern __shared__ u64 hilt_lm_l[];
    volatile u64* lm = hilt_lm_l;
    for (u64 w = threadIdx.x; w < words; w += blockDim.x) out[(u64)blockIdx.x * words + w] = lm[w];
}

extern "C" __global__ void noop() {}

// 16 independent fused multiply-adds per round (32 flops), as on every backend.
extern "C" __global__ void fma_loop(float* out, unsigned int iterations) {
    u64 id = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    float a[16];
#pragma unroll
    for (int j = 0; j < 16; j++) a[j] = id * 1e-7f + j;
    for (unsigned int i = 0; i < iterations; i++) {
#pragma unroll
        for (int j = 0; j < 16; j++) a[j] = fmaf(a[j], 0.9999f, 1e-4f);
    }
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < 16; j++) s += a[j];
    out[id] = s;
}

// The faulting tenant: one thread writes far beyond its buffer.
extern "C" __global__ void oob_write(u64* buf, u64 index) {
    if (blockIdx.x == 0 && threadIdx.x == 0) ((volatile u64*)buf)[index] = 0x6869746f6f626f6fULL;
}

// The foreign reader: copies `words` words from a raw device address that belongs to
// another tenant's process into this tenant's buffer.
extern "C" __global__ void read_foreign(const u64* src, u64* out, u64 words) {
    const volatile u64* s = src;
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 w = (u64)blockIdx.x * blockDim.x + threadIdx.x; w < words; w += stride) out[w] = s[w];
}
"#;

/// Every kernel of [`KERNELS`] that the backend launches, by name.
pub const KERNEL_NAMES: &[&str] = &[
    "fill_canary",
    "count_canary",
    "local_writer",
    "local_listener",
    "noop",
    "fma_loop",
    "oob_write",
    "read_foreign",
];

/// Threads per block of every kernel launch.
const THREADS: u32 = 256;

/// The line `hilt devices` prints where no driver can be loaded.
pub const NO_DRIVER: &str = "no CUDA driver: libcuda.so could not be loaded";

/// What a tenant process needs to find a CUDA device again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CudaSpec {
    /// The device id in hilt (`cuda0`).
    pub id: String,
    /// The CUDA ordinal (after `CUDA_VISIBLE_DEVICES`).
    pub ordinal: i32,
    /// The device's UUID (`GPU-...`), checked when the device is opened.
    pub uuid: String,
    /// The device's name.
    pub name: String,
    /// Extra NVRTC options for hilt's kernels (`-G`), from `HILT_CUDA_NVRTC_OPTIONS`,
    /// split at white space.
    #[serde(default)]
    pub nvrtc_options: Vec<String>,
}

/// Whether the CUDA driver library can be loaded. Every other call into the driver
/// comes after this says yes.
pub fn driver_present() -> bool {
    // SAFETY: tries to dlopen the driver library by its usual names; no driver call.
    unsafe { sys::is_culib_present() }
}

/// Whether NVRTC can be loaded: a host may have the driver without the toolkit.
pub fn nvrtc_present() -> bool {
    // SAFETY: tries to dlopen NVRTC by its usual names; no NVRTC call.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// What the driver says about one device, before NVML is joined in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriverFacts {
    /// The CUDA ordinal.
    pub ordinal: i32,
    /// `cuDeviceGetName`.
    pub name: String,
    /// `cuDeviceGetUuid`, as `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: String,
    /// Global memory, bytes.
    pub total_mem: u64,
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// The most dynamic shared memory one block may opt in to, bytes.
    pub shared_per_block_optin: u64,
    /// Shared memory per multiprocessor, bytes.
    pub shared_per_sm: u64,
    /// Compute capability, major and minor.
    pub compute_capability: (u32, u32),
    /// The PCI address (`0000:17:00.0`).
    pub pci_address: Option<String>,
    /// `cuDriverGetVersion` (`12040` for 12.4).
    pub driver_version: i32,
}

/// The CUDA devices here, or why there are none. Never panics: no driver is a note.
pub fn discover() -> Result<Vec<(DeviceInfo, CudaSpec)>, String> {
    if !driver_present() {
        return Err(NO_DRIVER.into());
    }
    let raw = guarded("querying the CUDA driver", probe).map_err(|e| e.to_string())?;
    if raw.is_empty() {
        return Err("the CUDA driver reports no device".into());
    }
    let system = nvml::query();
    let host = HostFs::live();
    let mps = nvml::detect_mps(&host, std::env::var("CUDA_MPS_PIPE_DIRECTORY").ok().as_deref());
    let nvrtc_options: Vec<String> = std::env::var("HILT_CUDA_NVRTC_OPTIONS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    Ok(raw
        .iter()
        .map(|d| {
            let mut info = device_info(d, system.as_ref().map_err(String::as_str), mps.as_deref(), &host);
            if !nvrtc_options.is_empty() {
                info.facts
                    .insert("cuda.nvrtc_options".into(), nvrtc_options.join(" ").into());
            }
            let spec = CudaSpec {
                id: info.id.clone(),
                ordinal: d.ordinal,
                uuid: d.uuid.clone(),
                name: d.name.clone(),
                nvrtc_options: nvrtc_options.clone(),
            };
            (info, spec)
        })
        .collect())
}

/// A device's [`DeviceInfo`]: the driver's facts, NVML's facts where NVML has the device,
/// its PCI ids (from NVML, else from sysfs under `host`), and its sharing mode.
pub fn device_info(
    raw: &DriverFacts,
    system: Result<&NvmlSystem, &str>,
    mps: Option<&str>,
    host: &HostFs,
) -> DeviceInfo {
    let mut facts = BTreeMap::new();
    let mut fact = |k: &str, v: serde_json::Value| {
        facts.insert(k.to_string(), v);
    };
    fact("cuda.ordinal", raw.ordinal.into());
    fact("cuda.uuid", raw.uuid.clone().into());
    fact(
        "cuda.compute_capability",
        format!("{}.{}", raw.compute_capability.0, raw.compute_capability.1).into(),
    );
    fact(
        "cuda.driver_version",
        format!("{}.{}", raw.driver_version / 1000, (raw.driver_version % 1000) / 10).into(),
    );
    fact("cuda.sm_count", raw.sm_count.into());
    fact("cuda.shared_mem_per_block_optin", raw.shared_per_block_optin.into());
    fact("cuda.shared_mem_per_sm", raw.shared_per_sm.into());
    fact("cuda.nvrtc", if nvrtc_present() { "present" } else { "missing" }.into());
    let nvml_device = system
        .ok()
        .and_then(|s| nvml::find(s, raw.pci_address.as_deref(), Some(&raw.uuid)));
    match (system, nvml_device) {
        (Ok(s), Some(d)) => facts.extend(nvml::facts(s, d)),
        (Ok(_), None) => {
            facts.insert("nvml.unavailable".into(), "NVML does not list this device".into());
        }
        (Err(why), _) => {
            facts.insert("nvml.unavailable".into(), why.into());
        }
    }
    let (mode, why) = nvml::sharing_mode(nvml_device, mps);
    facts.insert("sharing_mode".into(), mode.as_str().into());
    facts.insert("sharing_mode_evidence".into(), why.into());
    let pci_device = nvml_device
        .and_then(|d| d.pci_ids())
        .map(|(_, d)| d)
        .or_else(|| sysfs_device_id(host, raw.pci_address.as_deref()?));
    DeviceInfo {
        id: format!("cuda{}", raw.ordinal),
        backend: "cuda".into(),
        name: raw.name.clone(),
        vendor: Some("NVIDIA".into()),
        pci_vendor: Some(0x10de),
        pci_device,
        pci_address: raw.pci_address.clone(),
        simulated: false,
        global_mem_bytes: raw.total_mem,
        local_mem_bytes: raw.shared_per_block_optin / BLOCK_BYTES as u64 * BLOCK_BYTES as u64,
        compute_units: raw.sm_count,
        facts,
    }
}

/// The PCI device id of the function at `address`, from sysfs.
fn sysfs_device_id(host: &HostFs, address: &str) -> Option<u16> {
    let text = host
        .read_trimmed(&format!("/sys/bus/pci/devices/{address}/device"))
        .ok()?;
    u16::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

/// Asks the driver about every device (no context is created).
fn probe() -> Result<Vec<DriverFacts>, AccelError> {
    cu::init().map_err(err("initialising the CUDA driver"))?;
    let count = cu::device::get_count().map_err(err("counting CUDA devices"))?;
    (0..count).map(driver_facts).collect()
}

fn driver_facts(ordinal: i32) -> Result<DriverFacts, AccelError> {
    let dev = cu::device::get(ordinal).map_err(err("getting a CUDA device"))?;
    // SAFETY: `dev` is a valid device handle from `cuDeviceGet`.
    let attr = |a: Attr| unsafe { cu::device::get_attribute(dev, a) }.map_err(err("querying a device attribute"));
    let nonneg = |v: i32| u64::try_from(v).unwrap_or(0);
    let mut version = 0;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(err("querying the CUDA driver version"))?;
    let uuid = cu::device::get_uuid(dev).map_err(err("querying a device's UUID"))?;
    Ok(DriverFacts {
        ordinal,
        name: cu::device::get_name(dev).map_err(err("querying a device's name"))?,
        uuid: uuid_text(&uuid.bytes.map(|b| b as u8)),
        // SAFETY: `dev` is a valid device handle.
        total_mem: unsafe { cu::device::total_mem(dev) }.map_err(err("querying device memory"))? as u64,
        sm_count: nonneg(attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?) as u32,
        shared_per_block_optin: nonneg(attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?),
        shared_per_sm: nonneg(attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR)?),
        compute_capability: (
            nonneg(attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?) as u32,
            nonneg(attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?) as u32,
        ),
        pci_address: Some(format!(
            "{:04x}:{:02x}:{:02x}.0",
            attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
            attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
            attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?
        )),
        driver_version: version,
    })
}

/// A UUID's 16 bytes as NVML and `nvidia-smi` print it.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("GPU-{}-{}-{}-{}-{}", h(0..4), h(4..6), h(6..8), h(8..10), h(10..16))
}

/// Runs driver calls with cudarc's panics (a library or symbol that cannot be loaded)
/// turned into errors.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, AccelError>) -> Result<T, AccelError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        Err(AccelError::Backend(format!("{what}: the CUDA library failed: {msg}")))
    })
}

/// Compiles [`KERNELS`] with NVRTC into a cubin for compute capability `cc`, with
/// `extra` options; a failure carries NVRTC's log. A cubin for the device's own
/// architecture, not PTX: a driver older than NVRTC cannot load newer PTX, but (within a
/// major version) can load a cubin.
pub fn compile(cc: (u32, u32), extra: &[String]) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::result as rtc;
    use cudarc::nvrtc::sys as rsys;
    if !nvrtc_present() {
        return Err(
            "NVRTC (libnvrtc.so) could not be loaded: hilt compiles its CUDA kernels at run time and needs the \
             CUDA toolkit's NVRTC library (package cuda-nvrtc-12-*), found through LD_LIBRARY_PATH"
                .into(),
        );
    }
    let source = CString::new(KERNELS).map_err(|e| e.to_string())?;
    let name = CString::new("hilt_kernels.cu").map_err(|e| e.to_string())?;
    let program = rtc::create_program(&source, Some(&name)).map_err(|e| format!("NVRTC: {e:?}"))?;
    let mut options = vec![format!("--gpu-architecture=sm_{}{}", cc.0, cc.1)];
    options.extend(extra.iter().cloned());
    // SAFETY: `program` is a live NVRTC program until it is destroyed below.
    let result = unsafe {
        match rtc::compile_program(program, &options) {
            Ok(()) => {
                let mut size = 0usize;
                rsys::nvrtcGetCUBINSize(program, &mut size)
                    .result()
                    .and_then(|()| {
                        let mut cubin = vec![0u8; size];
                        rsys::nvrtcGetCUBIN(program, cubin.as_mut_ptr().cast())
                            .result()
                            .map(|()| cubin)
                    })
                    .map_err(|e| format!("NVRTC produced no cubin: {e:?}"))
            }
            Err(e) => {
                let log = rtc::get_program_log(program)
                    .map(|l| {
                        let bytes: Vec<u8> = l.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
                        String::from_utf8_lossy(&bytes).trim().to_string()
                    })
                    .unwrap_or_default();
                Err(format!(
                    "building hilt's CUDA C kernels with NVRTC ({}) failed: {e:?}: {log}",
                    options.join(" ")
                ))
            }
        }
    };
    // SAFETY: destroyed once, after its last use.
    let _ = unsafe { rtc::destroy_program(program) };
    result
}

/// A CUDA device opened in a tenant process.
pub struct CudaDevice {
    info: DeviceInfo,
    device: sys::CUdevice,
    compute_capability: (u32, u32),
    nvrtc_options: Vec<String>,
    image: OnceLock<Result<Vec<u8>, String>>,
}

impl CudaDevice {
    /// Finds the device of `spec` again, refusing another device at the same ordinal.
    pub fn open(spec: &CudaSpec) -> Result<CudaDevice, AccelError> {
        if !driver_present() {
            return Err(AccelError::Backend(NO_DRIVER.into()));
        }
        guarded("opening a CUDA device", || {
            cu::init().map_err(err("initialising the CUDA driver"))?;
            let raw = driver_facts(spec.ordinal)?;
            if !raw.uuid.eq_ignore_ascii_case(&spec.uuid) {
                return Err(AccelError::Backend(format!(
                    "CUDA device {} is now {} ({}), not {} ({})",
                    spec.ordinal, raw.uuid, raw.name, spec.uuid, spec.name
                )));
            }
            let device = cu::device::get(spec.ordinal).map_err(err("getting a CUDA device"))?;
            let info = device_info(&raw, Err("not read in tenants"), None, &HostFs::live());
            Ok(CudaDevice {
                info,
                device,
                compute_capability: raw.compute_capability,
                nvrtc_options: spec.nvrtc_options.clone(),
                image: OnceLock::new(),
            })
        })
    }
}

impl Accelerator for CudaDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn create_context(&self) -> Result<Box<dyn Context>, AccelError> {
        let image = self
            .image
            .get_or_init(|| {
                guarded("NVRTC", || {
                    compile(self.compute_capability, &self.nvrtc_options).map_err(AccelError::Backend)
                })
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| AccelError::Backend(e.clone()))?;
        guarded("creating a CUDA context", || {
            // SAFETY: `self.device` is a valid device; the new context becomes current.
            let ctx = unsafe { cu::ctx::create_v3(0, self.device) }.map_err(err("creating a CUDA context"))?;
            let mut context = CudaContext {
                ctx,
                module: std::ptr::null_mut(),
                functions: BTreeMap::new(),
                buffers: BTreeMap::new(),
                next: 1,
                local_bytes: self.info.local_mem_bytes,
                sm_count: self.info.compute_units.max(1),
                counts: BufferId(0),
            };
            // SAFETY: the image is a cubin NVRTC built for this device; it outlives the call.
            context.module =
                unsafe { cu::module::load_data(image.as_ptr().cast()) }.map_err(err("loading hilt's CUDA kernels"))?;
            for name in KERNEL_NAMES {
                let cname = CString::new(*name).map_err(|e| AccelError::Backend(e.to_string()))?;
                // SAFETY: the module is loaded in the current context.
                let f = unsafe { cu::module::get_function(context.module, cname) }
                    .map_err(err(&format!("finding kernel {name}")))?;
                context.functions.insert(name, f);
            }
            let shared = i32::try_from(context.local_bytes).unwrap_or(i32::MAX);
            for name in ["local_writer", "local_listener"] {
                // SAFETY: a function of the loaded module; the attribute takes an int.
                unsafe {
                    sys::cuFuncSetAttribute(
                        context.functions[name],
                        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        shared,
                    )
                }
                .result()
                .map_err(err(&format!("opting {name} in to {shared} bytes of shared memory")))?;
            }
            // The detector's counters exist before any canary is written or looked for: it
            // allocates nothing between a writer's free and a listener's allocation.
            context.counts = context.alloc(12)?;
            Ok(Box::new(context) as Box<dyn Context>)
        })
    }
}

/// A context of its own (`cuCtxCreate`), made current for every operation.
struct CudaContext {
    ctx: sys::CUcontext,
    module: sys::CUmodule,
    functions: BTreeMap<&'static str, sys::CUfunction>,
    buffers: BTreeMap<BufferId, (sys::CUdeviceptr, u64)>,
    next: u64,
    local_bytes: u64,
    sm_count: u32,
    /// The detector's three `u32` counters (blocks, in place, first word offset).
    counts: BufferId,
}

// SAFETY: CUDA contexts, modules and functions are handles the driver lets any thread
// use once the context is made current on it, which every operation does first; the
// context is used by one thread at a time (`&mut self`).
unsafe impl Send for CudaContext {}

impl CudaContext {
    fn enter(&self) -> Result<(), AccelError> {
        // SAFETY: `ctx` is a live context made by `cuCtxCreate` and destroyed only in drop.
        unsafe { cu::ctx::set_current(self.ctx) }.map_err(err("making the CUDA context current"))
    }

    fn buffer(&self, id: BufferId) -> Result<(sys::CUdeviceptr, u64), AccelError> {
        self.buffers.get(&id).copied().ok_or(AccelError::UnknownBuffer(id.0))
    }

    fn check_range(&self, id: BufferId, offset: u64, len: u64) -> Result<sys::CUdeviceptr, AccelError> {
        let (ptr, size) = self.buffer(id)?;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(AccelError::OutOfBounds {
                buffer: id.0,
                offset,
                len,
                size,
            });
        }
        Ok(ptr + offset)
    }

    /// Launches kernel `name` on `grid` blocks of [`THREADS`] with `shared` bytes of
    /// dynamic shared memory, and waits for it; a fault in the kernel is the error.
    ///
    /// # Safety
    /// `params` must point at values whose types match the kernel's parameters, live
    /// until the call returns.
    unsafe fn launch(&self, name: &str, grid: u32, shared: u32, params: &mut [*mut c_void]) -> Result<(), AccelError> {
        let f = *self
            .functions
            .get(name)
            .ok_or_else(|| AccelError::Backend(format!("no kernel {name}")))?;
        let what = format!("running {name}");
        // SAFETY: the caller vouches for `params`; the legacy default stream of the
        // current context runs the kernel, and the synchronisation below waits for it.
        unsafe {
            cu::launch_kernel(
                f,
                (grid.max(1), 1, 1),
                (THREADS, 1, 1),
                shared,
                std::ptr::null_mut(),
                params,
            )
            .map_err(err(&what))?;
        }
        cu::ctx::synchronize().map_err(err(&what))
    }

    /// Blocks for a grid-stride kernel over `items` items: enough to fill every SM.
    fn grid_for(&self, items: u64) -> u32 {
        let wanted = items.div_ceil(u64::from(THREADS)).max(1);
        wanted.min(u64::from(self.sm_count) * 32) as u32
    }

    /// The device detector: `count_canary` over the buffer in windows of at most
    /// [`DETECTOR_WINDOW`] bytes; the counters are the only thing read back.
    fn count(&mut self, id: BufferId, key: canary::CanaryKey) -> Result<ScanReport, AccelError> {
        let (mut ptr, size) = self.buffer(id)?;
        let (mut counts, _) = self.buffer(self.counts)?;
        let mut limit: u64 = size / 4;
        let (mut marker, mut x, mut m) = key.parts();
        let mut report = ScanReport {
            scanned: size,
            ..ScanReport::default()
        };
        let mut origin: u64 = 0;
        while origin + 8 <= limit {
            let mut tiles: u64 = (limit - origin).min(DETECTOR_WINDOW / 4) / 8;
            let init = [0u32, 0, u32::MAX];
            // SAFETY: the counter buffer holds three u32s; the copy is synchronous.
            unsafe { cu::memcpy_htod_sync(counts, &init) }.map_err(err("clearing the detector's counters"))?;
            let mut params: [*mut c_void; 8] = [
                (&raw mut ptr).cast(),
                (&raw mut origin).cast(),
                (&raw mut tiles).cast(),
                (&raw mut limit).cast(),
                (&raw mut marker).cast(),
                (&raw mut x).cast(),
                (&raw mut m).cast(),
                (&raw mut counts).cast(),
            ];
            // SAFETY: the values match count_canary's parameters and outlive the call; the
            // kernel reads no word at or past `limit`, the buffer's size in words.
            unsafe { self.launch("count_canary", self.grid_for(tiles), 0, &mut params)? };
            let mut out = [0u8; 12];
            self.read(self.counts, 0, &mut out)?;
            super::add_window_counts(&mut report, &out, origin * 4);
            origin += tiles * 8;
        }
        Ok(report)
    }

    fn run_kernel(&mut self, kernel: &Kernel) -> Result<KernelOutput, AccelError> {
        match *kernel {
            Kernel::FillCanary { buffer, key } => {
                let (mut ptr, size) = self.buffer(buffer)?;
                let mut blocks: u64 = size / BLOCK_BYTES as u64;
                let (mut marker, mut x, mut m) = key.parts();
                if blocks > 0 {
                    let mut params: [*mut c_void; 5] = [
                        (&raw mut ptr).cast(),
                        (&raw mut marker).cast(),
                        (&raw mut x).cast(),
                        (&raw mut m).cast(),
                        (&raw mut blocks).cast(),
                    ];
                    // SAFETY: the values match fill_canary's parameters and outlive the call.
                    unsafe { self.launch("fill_canary", self.grid_for(blocks), 0, &mut params)? };
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
                let mut blocks: u64 = self.local_bytes / BLOCK_BYTES as u64;
                let seen = self.alloc(u64::from(groups) * 4)?;
                let result = (|| {
                    let (mut seen_ptr, _) = self.buffer(seen)?;
                    // SAFETY: zeroes the whole counter buffer just allocated.
                    unsafe { cu::memset_d8_sync(seen_ptr, 0, groups as usize * 4) }
                        .map_err(err("clearing counters"))?;
                    let (mut marker, mut x, mut m) = key.parts();
                    let mut params: [*mut c_void; 5] = [
                        (&raw mut seen_ptr).cast(),
                        (&raw mut marker).cast(),
                        (&raw mut x).cast(),
                        (&raw mut m).cast(),
                        (&raw mut blocks).cast(),
                    ];
                    let shared = (blocks * BLOCK_BYTES as u64) as u32;
                    // SAFETY: the values match local_writer's parameters; the shared size
                    // was opted in to when the context was made.
                    unsafe { self.launch("local_writer", groups, shared, &mut params)? };
                    let mut counts = vec![0u8; groups as usize * 4];
                    self.read(seen, 0, &mut counts)?;
                    Ok(super::local_control(&counts, groups, blocks))
                })();
                self.free(seen)?;
                result.map(KernelOutput::Scan)
            }
            Kernel::LocalListener { groups, out } => {
                let mut words: u64 = self.local_bytes / 8;
                let mut ptr = self.check_range(out, 0, u64::from(groups) * words * 8)?;
                let mut params: [*mut c_void; 2] = [(&raw mut ptr).cast(), (&raw mut words).cast()];
                // SAFETY: the values match local_listener's parameters; `out` holds
                // `groups` shared memories, checked above.
                unsafe { self.launch("local_listener", groups, (words * 8) as u32, &mut params)? };
                Ok(KernelOutput::Done)
            }
            Kernel::Copy { src, dst, bytes } => {
                let s = self.check_range(src, 0, bytes)?;
                let d = self.check_range(dst, 0, bytes)?;
                // SAFETY: both ranges lie in live buffers of this context.
                unsafe { cu::memcpy_dtod_sync(d, s, bytes as usize) }.map_err(err("copying a buffer"))?;
                cu::ctx::synchronize().map_err(err("copying a buffer"))?;
                Ok(KernelOutput::Done)
            }
            Kernel::Noop => {
                // SAFETY: noop takes no parameters.
                unsafe { self.launch("noop", 1, 0, &mut [])? };
                Ok(KernelOutput::Done)
            }
            Kernel::Fma { work_items, iterations } => {
                let grid = work_items
                    .div_ceil(u64::from(THREADS))
                    .clamp(1, u64::from(i32::MAX as u32)) as u32;
                let out = self.alloc(u64::from(grid) * u64::from(THREADS) * 4)?;
                let result = (|| {
                    let (mut ptr, _) = self.buffer(out)?;
                    let mut iterations: u32 = iterations;
                    let mut params: [*mut c_void; 2] = [(&raw mut ptr).cast(), (&raw mut iterations).cast()];
                    // SAFETY: the values match fma_loop's parameters; `out` has one float
                    // per thread.
                    unsafe { self.launch("fma_loop", grid, 0, &mut params) }
                })();
                self.free(out)?;
                result.map(|()| KernelOutput::Done)
            }
            Kernel::OutOfBounds { buffer, offset } => {
                let (mut ptr, size) = self.buffer(buffer)?;
                if offset < size {
                    return Err(AccelError::Backend(
                        "out_of_bounds needs an offset beyond the buffer".into(),
                    ));
                }
                let mut index: u64 = offset / 8;
                let mut params: [*mut c_void; 2] = [(&raw mut ptr).cast(), (&raw mut index).cast()];
                // SAFETY: the values match oob_write's parameters. The write itself is out
                // of bounds on purpose: what the driver does about it (an illegal-address
                // error that leaves this context unusable) is what
                // `isolation.fault_containment` measures.
                unsafe { self.launch("oob_write", 1, 0, &mut params) }.map_err(memory_fault)?;
                Ok(KernelOutput::Done)
            }
            Kernel::ReadForeign { address, bytes, out } => {
                if !bytes.is_multiple_of(8) {
                    return Err(AccelError::Backend(format!(
                        "read_foreign reads whole words, not {bytes} bytes"
                    )));
                }
                let mut dst = self.check_range(out, 0, bytes)?;
                let mut src: u64 = address;
                let mut words: u64 = bytes / 8;
                let mut params: [*mut c_void; 3] =
                    [(&raw mut src).cast(), (&raw mut dst).cast(), (&raw mut words).cast()];
                // SAFETY: the values match read_foreign's parameters. The source address
                // belongs to another process on purpose; the device's memory protection
                // decides what the read does.
                unsafe { self.launch("read_foreign", self.grid_for(words), 0, &mut params) }.map_err(memory_fault)?;
                Ok(KernelOutput::Done)
            }
        }
    }
}

impl Context for CudaContext {
    fn alloc(&mut self, bytes: u64) -> Result<BufferId, AccelError> {
        if bytes == 0 {
            return Err(AccelError::Backend("zero-byte allocation".into()));
        }
        let count = usize::try_from(bytes).map_err(|_| AccelError::Backend(format!("{bytes} bytes is too large")))?;
        guarded("allocating device memory", || {
            self.enter()?;
            // SAFETY: plain `cuMemAlloc`; the memory is uninitialised, which is the point.
            let ptr = unsafe { cu::malloc_sync(count) }.map_err(err(&format!("allocating {bytes} bytes")))?;
            let id = BufferId(self.next);
            self.next += 1;
            self.buffers.insert(id, (ptr, bytes));
            Ok(id)
        })
    }

    fn write(&mut self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), AccelError> {
        let ptr = self.check_range(buffer, offset, data.len() as u64)?;
        guarded("writing a buffer", || {
            self.enter()?;
            // SAFETY: the range was checked above; the copy is synchronous.
            unsafe { cu::memcpy_htod_sync(ptr, data) }.map_err(err("writing a buffer"))?;
            // A copy from pageable memory may return before the DMA lands.
            cu::ctx::synchronize().map_err(err("writing a buffer"))
        })
    }

    fn read(&mut self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), AccelError> {
        let ptr = self.check_range(buffer, offset, out.len() as u64)?;
        guarded("reading a buffer", || {
            self.enter()?;
            // SAFETY: the range was checked above; the copy is synchronous.
            unsafe { cu::memcpy_dtoh_sync(out, ptr) }.map_err(err("reading a buffer"))
        })
    }

    fn free(&mut self, buffer: BufferId) -> Result<(), AccelError> {
        let (ptr, _) = self.buffer(buffer)?;
        guarded("freeing a buffer", || {
            self.enter()?;
            self.buffers.remove(&buffer);
            // SAFETY: `ptr` came from `cuMemAlloc` in this context and is freed once.
            unsafe { cu::free_sync(ptr) }.map_err(err("freeing a buffer"))
        })
    }

    fn run(&mut self, kernel: &Kernel) -> Result<KernelOutput, AccelError> {
        guarded("running a kernel", || {
            self.enter()?;
            self.run_kernel(kernel)
        })
    }

    fn device_address(&mut self, buffer: BufferId) -> Result<Option<u64>, AccelError> {
        Ok(Some(self.buffer(buffer)?.0))
    }

    fn free_memory(&mut self) -> Result<Option<u64>, AccelError> {
        guarded("querying free device memory", || {
            self.enter()?;
            let (free, _) = cu::mem_get_info().map_err(err("querying free device memory"))?;
            Ok(Some(free as u64))
        })
    }
}

impl Drop for CudaContext {
    fn drop(&mut self) {
        // Destroying a context frees what it holds; after a kernel fault every call
        // fails, which changes nothing here.
        let _ = guarded("destroying a CUDA context", || {
            self.enter()?;
            for (ptr, _) in std::mem::take(&mut self.buffers).into_values() {
                // SAFETY: each pointer came from `cuMemAlloc` here and is freed once.
                let _ = unsafe { cu::free_sync(ptr) };
            }
            if !self.module.is_null() {
                // SAFETY: the module was loaded in this context and is unloaded once.
                let _ = unsafe { cu::module::unload(self.module) };
            }
            // SAFETY: the context is destroyed once, after its last use.
            let _ = unsafe { sys::cuCtxDestroy_v2(self.ctx) };
            Ok(())
        });
    }
}

/// A launch error that is the device refusing a memory access (an illegal address, a
/// failed launch after one) becomes a [`AccelError::MemoryFault`]; others stay as they are.
fn memory_fault(e: AccelError) -> AccelError {
    let text = e.to_string();
    let markers = [
        "ILLEGAL_ADDRESS",
        "LAUNCH_FAILED",
        "MISALIGNED_ADDRESS",
        "ILLEGAL_INSTRUCTION",
    ];
    if markers.iter().any(|m| text.contains(m)) {
        AccelError::MemoryFault(text)
    } else {
        e
    }
}

fn err(what: &str) -> impl Fn(cu::DriverError) -> AccelError + '_ {
    move |e| {
        let name = e
            .error_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("CUresult {}", e.0 as i32));
        let text = e
            .error_string()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        AccelError::Backend(format!("{what}: CUDA error {name}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_launched_kernel_is_defined_in_the_source_with_c_linkage() {
        for name in KERNEL_NAMES {
            assert!(
                KERNELS.contains(&format!("extern \"C\" __global__ void {name}(")),
                "kernel {name} is launched but not defined with extern \"C\""
            );
        }
        let defined = KERNELS.matches("__global__ void ").count();
        assert_eq!(defined, KERNEL_NAMES.len(), "a kernel is defined but never launched");
    }

    #[test]
    fn the_source_is_balanced_and_has_no_nul() {
        assert!(!KERNELS.contains('\0'));
        for (open, close) in [('{', '}'), ('(', ')'), ('[', ']')] {
            assert_eq!(
                KERNELS.matches(open).count(),
                KERNELS.matches(close).count(),
                "unbalanced {open}{close}"
            );
        }
    }

    #[test]
    fn uuids_print_as_nvml_prints_them() {
        let bytes: [u8; 16] = std::array::from_fn(|i| i as u8 * 17);
        assert_eq!(uuid_text(&bytes), "GPU-00112233-4455-6677-8899-aabbccddeeff");
    }

    #[test]
    fn without_a_driver_discovery_is_a_note_and_nothing_panics() {
        if driver_present() {
            return; // A machine with a driver: the integration tests cover it.
        }
        assert_eq!(discover().err().as_deref(), Some(NO_DRIVER));
        let spec = CudaSpec {
            id: "cuda0".into(),
            ordinal: 0,
            uuid: "GPU-0".into(),
            name: "none".into(),
            nvrtc_options: Vec::new(),
        };
        let err = CudaDevice::open(&spec).err().expect("no device without a driver");
        assert_eq!(err.to_string(), NO_DRIVER);
    }
}
