//! The OpenCL backend: any OpenCL device (AMD, Intel, many edge accelerators, and PoCL on
//! the CPU in CI), through the `opencl3` crate.
//!
//! The OpenCL library (`libOpenCL.so.1`, the ICD loader) is loaded at run time, on first
//! use: a build of hilt runs where no OpenCL is installed and then finds no OpenCL device,
//! with a one-line note saying why. Discovery happens in the harness process, which only
//! lists devices; contexts, buffers and kernels exist only in tenant processes.
//!
//! The built-in kernels are OpenCL C ([`KERNELS`]), built for each context at run time; a
//! build failure is an error that carries the compiler's log. Canary is written and
//! counted on the device, at memory speed: `fill_canary` and `count_canary` for global
//! memory (only three counters cross the bus), `local_writer` for local memory, which the
//! host cannot reach at all.

use std::collections::BTreeMap;
use std::ptr;

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context as ClContext;
use opencl3::device::{CL_DEVICE_TYPE_ACCELERATOR, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU, Device};
use opencl3::kernel::Kernel as ClKernel;
use opencl3::memory::{Buffer, CL_MEM_ALLOC_HOST_PTR, CL_MEM_READ_WRITE, ClMem};
use opencl3::program::Program;
use opencl3::types::{CL_BLOCKING, cl_device_id, cl_mem_flags, cl_uint, cl_ulong};
use serde::{Deserialize, Serialize};

use super::{AccelError, Accelerator, BufferId, Context, DETECTOR_WINDOW, DeviceInfo, Kernel, KernelOutput};
use crate::canary::{self, BLOCK_BYTES, ScanReport};

/// The built-in kernels in OpenCL C 1.2.
pub const KERNELS: &str = r#"
// Work-item g handles items g * a + j * b, j < per_item: contiguous runs of items per
// work-item on a CPU (a = run, b = 1), a grid-stride loop on a GPU (a = 1, b = work-items),
// so that memory is read in the order each kind of device reads fastest.

// Global canary: block i of the buffer is [marker, i, t, ~t ^ marker], t = (i ^ x) * m.
kernel void fill_canary(global ulong* buf, ulong marker, ulong x, ulong m, ulong blocks,
                        ulong a, ulong b, ulong per_item) {
    ulong g = get_global_id(0);
    for (ulong j = 0; j < per_item; j++) {
        ulong i = g * a + j * b;
        if (i >= blocks) return;
        ulong t = (i ^ x) * m;
        vstore4((ulong4)(marker, i, t, ~t ^ marker), i, buf);
    }
}

// The detector: counts canary blocks that start at any 4-byte-aligned word p of the
// tiles origin / 8 .. origin / 8 + tiles (a tile is 8 words, one block's worth), reading
// no word at or past `limit`. A tile's aligned block is verified from the tile itself;
// other candidates (the marker's low word elsewhere in the tile) from global memory.
// counts[0] += blocks, counts[1] += blocks in place (index x 8 = p), counts[2] = min of
// p - origin (start at 0xffffffff).
kernel void count_canary(global const uint* w, ulong origin, ulong tiles, ulong limit,
                         ulong marker, ulong x, ulong m, ulong a, ulong b, ulong per_item,
                         volatile global uint* counts) {
    ulong g = get_global_id(0);
    ulong lo = marker & 0xffffffffUL;
    uint blocks = 0, in_place = 0, first = 0xffffffffu;
    global const ulong* q = (global const ulong*)w;
    for (ulong j = 0; j < per_item; j++) {
        ulong t = g * a + j * b;
        if (t >= tiles) break;
        ulong p0 = origin + 8 * t;
        ulong4 v = vload4(p0 / 8, q);
        if (v.s0 == marker) {
            ulong tag = (v.s1 ^ x) * m;
            if (v.s2 == tag && v.s3 == (~tag ^ marker)) {
                blocks++;
                in_place += (v.s1 >> 61) == 0 && v.s1 * 8 == p0;
                first = min(first, (uint)(p0 - origin));
            }
        }
        long4 odd = (v >> 32) == lo;
        long4 even = (v & 0xffffffffUL) == lo;
        even.s0 = 0;
        if (!any(odd | even)) continue;
        for (ulong p = p0 + 1; p < p0 + 8 && p + 8 <= limit; p++) {
            if (w[p] != (uint)lo) continue;
            ulong w0 = (ulong)w[p] | ((ulong)w[p + 1] << 32);
            ulong i = (ulong)w[p + 2] | ((ulong)w[p + 3] << 32);
            ulong tag = (i ^ x) * m;
            ulong w2 = (ulong)w[p + 4] | ((ulong)w[p + 5] << 32);
            ulong w3 = (ulong)w[p + 6] | ((ulong)w[p + 7] << 32);
            if (w0 != marker || w2 != tag || w3 != (~tag ^ marker)) continue;
            blocks++;
            in_place += (i >> 61) == 0 && i * 8 == p;
            first = min(first, (uint)(p - origin));
        }
    }
    if (blocks) {
        atomic_add(&counts[0], blocks);
        atomic_add(&counts[1], in_place);
        atomic_min(&counts[2], first);
    }
}

// LeftoverLocals writer: every work-group fills all of its local memory with canary
// numbered from group * blocks, then counts back the blocks it can see (the positive
// control). Volatile keeps the compiler from forwarding stores to loads.
kernel void local_writer(global uint* seen, local ulong* lm_arg, ulong marker, ulong x, ulong m, ulong blocks) {
    volatile local ulong* lm = lm_arg;
    ulong lid = get_local_id(0), ls = get_local_size(0), g = get_group_id(0);
    ulong base = g * blocks;
    for (ulong b = lid; b < blocks; b += ls) {
        ulong i = base + b, t = (i ^ x) * m;
        lm[4 * b] = marker;
        lm[4 * b + 1] = i;
        lm[4 * b + 2] = t;
        lm[4 * b + 3] = ~t ^ marker;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    uint ok = 0;
    for (ulong b = lid; b < blocks; b += ls) {
        ulong i = base + b, t = (i ^ x) * m;
        ok += (lm[4 * b] == marker && lm[4 * b + 1] == i && lm[4 * b + 2] == t && lm[4 * b + 3] == (~t ^ marker));
    }
    atomic_add(&seen[g], ok);
}

// LeftoverLocals listener: every work-group copies the local memory it never wrote to
// out[group * words ...].
kernel void local_listener(global ulong* out, local ulong* lm_arg, ulong words) {
    volatile local ulong* lm = lm_arg;
    ulong lid = get_local_id(0), ls = get_local_size(0), g = get_group_id(0);
    for (ulong w = lid; w < words; w += ls) out[g * words + w] = lm[w];
}

kernel void noop(void) {}

kernel void fma_loop(global float* out, uint iterations) {
    float4 a = (float4)(get_global_id(0) * 1e-7f), b = (float4)(0.9999f), c = (float4)(1e-4f);
    float4 d = a + 1.0f, e = a + 2.0f, f = a + 3.0f;
    for (uint i = 0; i < iterations; i++) {
        a = fma(a, b, c);
        d = fma(d, b, c);
        e = fma(e, b, c);
        f = fma(f, b, c);
    }
    float4 s = a + d + e + f;
    out[get_global_id(0)] = s.x + s.y + s.z + s.w;
}

kernel void oob_write(global ulong* buf, ulong index) {
    if (get_global_id(0) == 0) buf[index] = 0x6869746f6f626f6fUL;
}
"#;

/// What a tenant process needs to find an OpenCL device again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenClSpec {
    /// The device id in hilt (`opencl0`).
    pub id: String,
    /// The platform's index in the loader's list.
    pub platform: usize,
    /// The platform's name, checked when the device is opened.
    pub platform_name: String,
    /// The device's index in the platform's list.
    pub device: usize,
    /// The device's name, checked when the device is opened.
    pub device_name: String,
    /// Allocate buffers with `CL_MEM_ALLOC_HOST_PTR` (host-visible, often pinned memory:
    /// how many frameworks allocate staging buffers); from `HILT_OPENCL_ALLOC_HOST_PTR=1`.
    pub alloc_host_ptr: bool,
    /// Extra options for building hilt's kernels (`-cl-opt-disable`); from
    /// `HILT_OPENCL_BUILD_OPTIONS`.
    pub build_options: String,
}

/// The OpenCL devices here, or why there are none.
pub fn discover() -> Result<Vec<(DeviceInfo, OpenClSpec)>, String> {
    let platforms = opencl3::platform::get_platforms().map_err(|e| match e.0 {
        -2000 => "no OpenCL runtime: libOpenCL.so.1 could not be loaded".to_string(),
        -1001 => "the OpenCL loader found no platform (no ICD installed)".to_string(),
        _ => format!("listing OpenCL platforms failed: {e}"),
    })?;
    let alloc_host_ptr = std::env::var("HILT_OPENCL_ALLOC_HOST_PTR").is_ok_and(|v| v == "1");
    let build_options = std::env::var("HILT_OPENCL_BUILD_OPTIONS").unwrap_or_default();
    let mut found = Vec::new();
    for (p, platform) in platforms.iter().enumerate() {
        let Ok(ids) = platform.get_devices(CL_DEVICE_TYPE_ALL) else {
            continue;
        };
        for (d, id) in ids.into_iter().enumerate() {
            let spec = OpenClSpec {
                id: format!("opencl{}", found.len()),
                platform: p,
                platform_name: platform.name().unwrap_or_default(),
                device: d,
                device_name: Device::new(id).name().unwrap_or_default(),
                alloc_host_ptr,
                build_options: build_options.clone(),
            };
            let info = describe(&spec, platform, id);
            found.push((info, spec));
        }
    }
    if found.is_empty() {
        return Err(format!("{} OpenCL platform(s), none with a device", platforms.len()));
    }
    Ok(found)
}

fn describe(spec: &OpenClSpec, platform: &opencl3::platform::Platform, id: cl_device_id) -> DeviceInfo {
    let device = Device::new(id);
    let kind = device.dev_type().unwrap_or(0);
    let kind_name = if kind & CL_DEVICE_TYPE_GPU != 0 {
        "gpu"
    } else if kind & CL_DEVICE_TYPE_ACCELERATOR != 0 {
        "accelerator"
    } else if kind & CL_DEVICE_TYPE_CPU != 0 {
        "cpu"
    } else {
        "other"
    };
    let mut facts = BTreeMap::new();
    let mut fact = |k: &str, v: serde_json::Value| {
        facts.insert(format!("opencl.{k}"), v);
    };
    fact("platform", platform.name().unwrap_or_default().into());
    fact("platform_version", platform.version().unwrap_or_default().into());
    fact("device_type", kind_name.into());
    fact("device_version", device.version().unwrap_or_default().into());
    fact("driver_version", device.driver_version().unwrap_or_default().into());
    fact("opencl_c_version", device.opencl_c_version().unwrap_or_default().into());
    fact("max_alloc_bytes", device.max_mem_alloc_size().unwrap_or(0).into());
    fact(
        "max_work_group_size",
        (device.max_work_group_size().unwrap_or(1) as u64).into(),
    );
    fact(
        "local_mem_type",
        if device.local_mem_type().unwrap_or(0) == 1 {
            "local"
        } else {
            "global"
        }
        .into(),
    );
    fact("vendor_id", format!("{:#06x}", device.vendor_id().unwrap_or(0)).into());
    fact("address_bits", device.address_bits().unwrap_or(0).into());
    fact("alloc_host_ptr", spec.alloc_host_ptr.into());
    if !spec.build_options.is_empty() {
        fact("build_options", spec.build_options.clone().into());
    }
    let vendor_id = device.vendor_id().ok().and_then(|v| u16::try_from(v).ok());
    DeviceInfo {
        id: spec.id.clone(),
        backend: "opencl".into(),
        name: spec.device_name.clone(),
        vendor: device.vendor().ok(),
        // A CPU runtime reports some vendor id that says nothing about a PCI function.
        pci_vendor: if kind_name == "cpu" { None } else { vendor_id },
        pci_device: None,
        // cl3 asserts on the size of some vendor answers; a runtime that answers oddly
        // must cost the address, never the harness.
        pci_address: std::panic::catch_unwind(|| pci_address(&device)).ok().flatten(),
        simulated: false,
        global_mem_bytes: device.global_mem_size().unwrap_or(0),
        local_mem_bytes: device.local_mem_size().unwrap_or(0),
        compute_units: device.max_compute_units().unwrap_or(0),
        facts,
    }
}

/// The PCI address from whichever extension the platform offers: `cl_khr_pci_bus_info`,
/// AMD's topology query, or NVIDIA's bus and slot ids.
fn pci_address(device: &Device) -> Option<String> {
    let extensions = device.extensions().unwrap_or_default();
    if extensions.contains("cl_khr_pci_bus_info")
        && let Ok(info) = device.pcibusinfokhr_intel()
    {
        return Some(format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            info.pci_domain, info.pci_bus, info.pci_device, info.pci_function
        ));
    }
    if extensions.contains("cl_amd_device_attribute_query")
        && let Ok(t) = device.topology_amd()
    {
        return Some(format!("0000:{:02x}:{:02x}.{:x}", t.bus, t.device, t.function));
    }
    if extensions.contains("cl_nv_device_attribute_query")
        && let (Ok(bus), Ok(slot)) = (device.pci_bus_id_nv(), device.pci_slot_id_nv())
    {
        // CL_DEVICE_PCI_DOMAIN_ID_NV (0x400A), where the driver has it.
        let domain = device
            .get_data(0x400A)
            .ok()
            .and_then(|b| b.get(..4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .unwrap_or(0);
        return Some(format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            domain & 0xffff,
            bus & 0xff,
            (slot >> 3) & 0x1f,
            slot & 7
        ));
    }
    None
}

/// An OpenCL device opened in a tenant process.
pub struct OpenClDevice {
    info: DeviceInfo,
    spec: OpenClSpec,
    device: cl_device_id,
}

// SAFETY: an OpenCL device id is a handle that the OpenCL API allows any thread to use.
unsafe impl Send for OpenClDevice {}

impl OpenClDevice {
    /// Finds the device of `spec` again, refusing another device at the same indexes.
    pub fn open(spec: &OpenClSpec) -> Result<OpenClDevice, AccelError> {
        let platforms = opencl3::platform::get_platforms().map_err(cl("listing OpenCL platforms"))?;
        let platform = platforms
            .get(spec.platform)
            .filter(|p| p.name().unwrap_or_default() == spec.platform_name)
            .ok_or_else(|| AccelError::Backend(format!("OpenCL platform `{}` is gone", spec.platform_name)))?;
        let ids = platform
            .get_devices(CL_DEVICE_TYPE_ALL)
            .map_err(cl("listing OpenCL devices"))?;
        let device = ids
            .get(spec.device)
            .copied()
            .filter(|id| Device::new(*id).name().unwrap_or_default() == spec.device_name)
            .ok_or_else(|| AccelError::Backend(format!("OpenCL device `{}` is gone", spec.device_name)))?;
        Ok(OpenClDevice {
            info: describe(spec, platform, device),
            spec: spec.clone(),
            device,
        })
    }
}

impl Accelerator for OpenClDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn create_context(&self) -> Result<Box<dyn Context>, AccelError> {
        let device = Device::new(self.device);
        let context = ClContext::from_device(&device).map_err(cl("creating an OpenCL context"))?;
        #[allow(deprecated)] // clCreateCommandQueue: OpenCL 1.2 devices have nothing newer.
        let queue = CommandQueue::create_default(&context, 0).map_err(cl("creating an OpenCL command queue"))?;
        let program = Program::create_and_build_from_source(&context, KERNELS, &self.spec.build_options)
            .map_err(|log| AccelError::Backend(format!("building hilt's OpenCL C kernels failed: {log}")))?;
        let kernel = |name: &str| ClKernel::create(&program, name).map_err(cl(&format!("creating kernel {name}")));
        let kernels = Kernels {
            fill_canary: kernel("fill_canary")?,
            count_canary: kernel("count_canary")?,
            local_writer: kernel("local_writer")?,
            local_listener: kernel("local_listener")?,
            noop: kernel("noop")?,
            fma_loop: kernel("fma_loop")?,
            oob_write: kernel("oob_write")?,
        };
        // Each kernel may allow smaller work-groups than the device does (registers), and
        // its own local memory use comes off what the local buffer can have.
        let max_wg = [
            &kernels.fill_canary,
            &kernels.count_canary,
            &kernels.local_writer,
            &kernels.local_listener,
            &kernels.fma_loop,
        ]
        .iter()
        .map(|k| k.get_work_group_size(self.device).unwrap_or(1))
        .chain([device.max_work_group_size().unwrap_or(1)])
        .min()
        .unwrap_or(1)
        .max(1);
        let static_local = [&kernels.local_writer, &kernels.local_listener]
            .iter()
            .map(|k| k.get_local_mem_size(self.device).unwrap_or(0))
            .max()
            .unwrap_or(0);
        let local_bytes =
            self.info.local_mem_bytes.saturating_sub(static_local) / BLOCK_BYTES as u64 * BLOCK_BYTES as u64;
        let facts = &self.info.facts;
        let cpu = facts.get("opencl.device_type").and_then(|v| v.as_str()) == Some("cpu");
        let amd_free = device
            .extensions()
            .unwrap_or_default()
            .contains("cl_amd_device_attribute_query");
        let mut ctx = OpenClContext {
            kernels,
            _program: program,
            queue,
            context,
            buffers: BTreeMap::new(),
            next: 1,
            flags: CL_MEM_READ_WRITE
                | if self.spec.alloc_host_ptr {
                    CL_MEM_ALLOC_HOST_PTR
                } else {
                    0
                },
            local_bytes,
            group_size: max_wg.min(256),
            fma_out: None,
            counts: BufferId(0),
            cpu,
            compute_units: u64::from(self.info.compute_units.max(1)),
            device: self.device,
            free_query: if cpu {
                FreeQuery::HostMemory(self.info.global_mem_bytes)
            } else if amd_free {
                FreeQuery::Amd
            } else {
                FreeQuery::None
            },
        };
        // The detector's counters exist, and are written once (a runtime that allocates on
        // first use allocates them now), before any canary is written or looked for: the
        // detector allocates nothing between a writer's free and a listener's allocation.
        ctx.counts = ctx.alloc(12)?;
        ctx.write(ctx.counts, 0, &[0u8; 12])?;
        Ok(Box::new(ctx))
    }
}

/// How an OpenCL device says how much memory is free.
#[derive(Clone, Copy)]
enum FreeQuery {
    /// A CPU device: its memory is the host's, so the host's available memory, at most
    /// the device's global memory (the argument).
    HostMemory(u64),
    /// AMD's `CL_DEVICE_GLOBAL_FREE_MEMORY_AMD` (`cl_amd_device_attribute_query`).
    Amd,
    /// No way to know.
    None,
}

/// `CL_DEVICE_GLOBAL_FREE_MEMORY_AMD`: free memory in KiB (total, largest block).
const CL_DEVICE_GLOBAL_FREE_MEMORY_AMD: u32 = 0x4039;

/// Items (blocks or tiles) each work-item of a CPU device handles in one run: 128 KiB of
/// memory read or written in order.
const CPU_RUN: u64 = 4096;

struct Kernels {
    fill_canary: ClKernel,
    count_canary: ClKernel,
    local_writer: ClKernel,
    local_listener: ClKernel,
    noop: ClKernel,
    fma_loop: ClKernel,
    oob_write: ClKernel,
}

struct OpenClContext {
    // Field order is drop order: kernels and buffers before the program, queue and context.
    kernels: Kernels,
    buffers: BTreeMap<BufferId, (Buffer<u8>, u64)>,
    _program: Program,
    queue: CommandQueue,
    context: ClContext,
    next: u64,
    flags: cl_mem_flags,
    local_bytes: u64,
    group_size: usize,
    /// The FMA kernel's output buffer, kept between runs so that timing counts the kernel
    /// only.
    fma_out: Option<(BufferId, usize)>,
    /// The detector's three `uint` counters (blocks, in place, first word offset).
    counts: BufferId,
    /// Whether the device is a CPU (work-items run contiguous stretches of memory).
    cpu: bool,
    compute_units: u64,
    device: cl_device_id,
    free_query: FreeQuery,
}

// SAFETY: OpenCL objects are reference-counted handles that the OpenCL API allows any
// thread to use; this context is used by one thread at a time (`&mut self`).
unsafe impl Send for OpenClContext {}

impl OpenClContext {
    fn buffer(&self, id: BufferId) -> Result<&(Buffer<u8>, u64), AccelError> {
        self.buffers.get(&id).ok_or(AccelError::UnknownBuffer(id.0))
    }

    fn check_range(&self, id: BufferId, offset: u64, len: u64) -> Result<(), AccelError> {
        let (_, size) = self.buffer(id)?;
        if offset.checked_add(len).is_none_or(|end| end > *size) {
            return Err(AccelError::OutOfBounds {
                buffer: id.0,
                offset,
                len,
                size: *size,
            });
        }
        Ok(())
    }

    /// Enqueues `kernel` over `global` work-items in groups of `local` (or the runtime's
    /// choice) and waits for it.
    fn launch(&self, kernel: &ClKernel, global: usize, local: Option<usize>, what: &str) -> Result<(), AccelError> {
        let global = [global];
        let local = local.map(|l| [l]);
        // SAFETY: the sizes outlive the call, and every argument of `kernel` was set by the
        // caller from live buffers of this context.
        unsafe {
            self.queue
                .enqueue_nd_range_kernel(
                    kernel.get(),
                    1,
                    ptr::null(),
                    global.as_ptr(),
                    local.as_ref().map_or(ptr::null(), |l| l.as_ptr()),
                    &[],
                )
                .map_err(cl(what))?;
        }
        self.queue.finish().map_err(cl(what))
    }

    /// How `items` items spread over work-items: (global size, a, b, items per
    /// work-item), for kernels that handle items `g * a + j * b`.
    fn spread(&self, items: u64) -> (usize, cl_ulong, cl_ulong, cl_ulong) {
        let wg = self.group_size as u64;
        if self.cpu {
            let workers = items.div_ceil(CPU_RUN).max(1);
            ((workers.div_ceil(wg) * wg) as usize, CPU_RUN, 1, CPU_RUN)
        } else {
            // Enough work-items to fill the device many times over, each striding by all.
            let workers = items.min(self.compute_units * wg * 64).max(1).div_ceil(wg) * wg;
            (workers as usize, 1, workers, items.div_ceil(workers))
        }
    }

    /// The device detector: `count_canary` over the buffer in windows of at most
    /// [`DETECTOR_WINDOW`] bytes; the counters are the only thing read back.
    fn count(&mut self, id: BufferId, key: canary::CanaryKey) -> Result<ScanReport, AccelError> {
        let size = self.buffer(id)?.1;
        let limit: cl_ulong = size / 4;
        let (marker, x, m) = key.parts();
        let mut report = ScanReport {
            scanned: size,
            ..ScanReport::default()
        };
        let window_words = DETECTOR_WINDOW / 4;
        let mut origin: cl_ulong = 0;
        while origin + 8 <= limit {
            let tiles: cl_ulong = (limit - origin).min(window_words) / 8;
            let mut init = [0u8; 12];
            init[8..].copy_from_slice(&u32::MAX.to_le_bytes());
            self.write(self.counts, 0, &init)?;
            let (global, a, b, per_item) = self.spread(tiles);
            let k = &self.kernels.count_canary;
            let (buf, _) = self.buffer(id)?;
            let counts = &self.buffer(self.counts)?.0;
            // SAFETY: argument types match the kernel's signature; every word read is below
            // `limit`, the buffer's size in words.
            unsafe {
                k.set_arg(0, &buf.get()).map_err(cl("count_canary"))?;
                k.set_arg(1, &origin).map_err(cl("count_canary"))?;
                k.set_arg(2, &tiles).map_err(cl("count_canary"))?;
                k.set_arg(3, &limit).map_err(cl("count_canary"))?;
                k.set_arg(4, &marker).map_err(cl("count_canary"))?;
                k.set_arg(5, &x).map_err(cl("count_canary"))?;
                k.set_arg(6, &m).map_err(cl("count_canary"))?;
                k.set_arg(7, &a).map_err(cl("count_canary"))?;
                k.set_arg(8, &b).map_err(cl("count_canary"))?;
                k.set_arg(9, &per_item).map_err(cl("count_canary"))?;
                k.set_arg(10, &counts.get()).map_err(cl("count_canary"))?;
            }
            self.launch(k, global, Some(self.group_size), "running count_canary")?;
            let mut out = [0u8; 12];
            self.read(self.counts, 0, &mut out)?;
            super::add_window_counts(&mut report, &out, origin * 4);
            origin += tiles * 8;
        }
        Ok(report)
    }
}

impl Context for OpenClContext {
    fn alloc(&mut self, bytes: u64) -> Result<BufferId, AccelError> {
        if bytes == 0 {
            return Err(AccelError::Backend("zero-byte allocation".into()));
        }
        let count = usize::try_from(bytes).map_err(|_| AccelError::Backend(format!("{bytes} bytes is too large")))?;
        // SAFETY: no host pointer is passed; the runtime owns the memory.
        let buffer = unsafe { Buffer::<u8>::create(&self.context, self.flags, count, ptr::null_mut()) }
            .map_err(cl(&format!("allocating {bytes} bytes")))?;
        let id = BufferId(self.next);
        self.next += 1;
        self.buffers.insert(id, (buffer, bytes));
        Ok(id)
    }

    fn write(&mut self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), AccelError> {
        self.check_range(buffer, offset, data.len() as u64)?;
        let (b, _) = self
            .buffers
            .get_mut(&buffer)
            .ok_or(AccelError::UnknownBuffer(buffer.0))?;
        // SAFETY: a blocking write from a live slice into a range checked above.
        unsafe {
            self.queue
                .enqueue_write_buffer(b, CL_BLOCKING, offset as usize, data, &[])
        }
        .map_err(cl("writing a buffer"))?;
        Ok(())
    }

    fn read(&mut self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), AccelError> {
        self.check_range(buffer, offset, out.len() as u64)?;
        let (b, _) = self.buffer(buffer)?;
        // SAFETY: a blocking read into a live slice from a range checked above.
        unsafe {
            self.queue
                .enqueue_read_buffer(b, CL_BLOCKING, offset as usize, out, &[])
        }
        .map_err(cl("reading a buffer"))?;
        Ok(())
    }

    fn free(&mut self, buffer: BufferId) -> Result<(), AccelError> {
        self.buffers
            .remove(&buffer)
            .map(drop)
            .ok_or(AccelError::UnknownBuffer(buffer.0))
    }

    fn free_memory(&mut self) -> Result<Option<u64>, AccelError> {
        Ok(match self.free_query {
            FreeQuery::HostMemory(total) => super::host_memory_available().map(|host| host.min(total)),
            FreeQuery::Amd => Device::new(self.device)
                .get_data(CL_DEVICE_GLOBAL_FREE_MEMORY_AMD)
                .ok()
                .and_then(|b| {
                    b.get(..8)
                        .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
                })
                .map(|kib| kib.saturating_mul(1024)),
            FreeQuery::None => None,
        })
    }

    fn run(&mut self, kernel: &Kernel) -> Result<KernelOutput, AccelError> {
        let wg = self.group_size;
        match *kernel {
            Kernel::FillCanary { buffer, key } => {
                let (b, size) = self.buffer(buffer)?;
                let blocks: cl_ulong = size / BLOCK_BYTES as u64;
                let (marker, x, m) = key.parts();
                let (global, a, stride, per_item) = self.spread(blocks);
                let k = &self.kernels.fill_canary;
                // SAFETY: argument types match the kernel's signature; the kernel writes
                // blocks below `blocks` only.
                unsafe {
                    k.set_arg(0, &b.get()).map_err(cl("fill_canary"))?;
                    k.set_arg(1, &marker).map_err(cl("fill_canary"))?;
                    k.set_arg(2, &x).map_err(cl("fill_canary"))?;
                    k.set_arg(3, &m).map_err(cl("fill_canary"))?;
                    k.set_arg(4, &blocks).map_err(cl("fill_canary"))?;
                    k.set_arg(5, &a).map_err(cl("fill_canary"))?;
                    k.set_arg(6, &stride).map_err(cl("fill_canary"))?;
                    k.set_arg(7, &per_item).map_err(cl("fill_canary"))?;
                }
                if blocks > 0 {
                    self.launch(k, global, Some(wg), "running fill_canary")?;
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
                let blocks: cl_ulong = self.local_bytes / BLOCK_BYTES as u64;
                let seen = self.alloc(u64::from(groups) * 4)?;
                self.write(seen, 0, &vec![0u8; groups as usize * 4])?;
                let (marker, x, m) = key.parts();
                let result = (|| {
                    let k = &self.kernels.local_writer;
                    // SAFETY: argument types match the kernel's signature; the local buffer
                    // is the device's whole local memory.
                    unsafe {
                        k.set_arg(0, &self.buffer(seen)?.0.get()).map_err(cl("local_writer"))?;
                        k.set_arg_local_buffer(1, (blocks * BLOCK_BYTES as u64) as usize)
                            .map_err(cl("local_writer"))?;
                        k.set_arg(2, &marker).map_err(cl("local_writer"))?;
                        k.set_arg(3, &x).map_err(cl("local_writer"))?;
                        k.set_arg(4, &m).map_err(cl("local_writer"))?;
                        k.set_arg(5, &blocks).map_err(cl("local_writer"))?;
                    }
                    self.launch(k, groups as usize * wg, Some(wg), "running local_writer")?;
                    let mut counts = vec![0u8; groups as usize * 4];
                    self.read(seen, 0, &mut counts)?;
                    Ok(super::local_control(&counts, groups, blocks))
                })();
                self.free(seen)?;
                result.map(KernelOutput::Scan)
            }
            Kernel::LocalListener { groups, out } => {
                let words: cl_ulong = self.local_bytes / 8;
                self.check_range(out, 0, u64::from(groups) * words * 8)?;
                let k = &self.kernels.local_listener;
                // SAFETY: argument types match the kernel's signature; `out` holds
                // `groups` local memories, checked above.
                unsafe {
                    k.set_arg(0, &self.buffer(out)?.0.get()).map_err(cl("local_listener"))?;
                    k.set_arg_local_buffer(1, (words * 8) as usize)
                        .map_err(cl("local_listener"))?;
                    k.set_arg(2, &words).map_err(cl("local_listener"))?;
                }
                self.launch(k, groups as usize * wg, Some(wg), "running local_listener")?;
                Ok(KernelOutput::Done)
            }
            Kernel::Copy { src, dst, .. } if src == dst => {
                Err(AccelError::Backend("copy needs two different buffers".into()))
            }
            Kernel::Copy { src, dst, bytes } => {
                self.check_range(src, 0, bytes)?;
                self.check_range(dst, 0, bytes)?;
                let mut d = self.buffers.remove(&dst).ok_or(AccelError::UnknownBuffer(dst.0))?;
                let result = (|| {
                    let (s, _) = self.buffer(src)?;
                    // SAFETY: both ranges were checked above.
                    unsafe { self.queue.enqueue_copy_buffer(s, &mut d.0, 0, 0, bytes as usize, &[]) }
                        .map_err(cl("copying a buffer"))?;
                    self.queue.finish().map_err(cl("copying a buffer"))
                })();
                self.buffers.insert(dst, d);
                result.map(|()| KernelOutput::Done)
            }
            Kernel::Noop => {
                self.launch(&self.kernels.noop, 1, None, "running noop")?;
                Ok(KernelOutput::Done)
            }
            Kernel::Fma { work_items, iterations } => {
                let items = usize::try_from(work_items).unwrap_or(usize::MAX).div_ceil(wg) * wg;
                let out = match self.fma_out {
                    Some((id, n)) if n >= items => id,
                    previous => {
                        if let Some((id, _)) = previous {
                            self.free(id)?;
                        }
                        let id = self.alloc(items as u64 * 4)?;
                        self.fma_out = Some((id, items));
                        id
                    }
                };
                let k = &self.kernels.fma_loop;
                let iterations: cl_uint = iterations;
                // SAFETY: argument types match the kernel's signature; `out` has at least
                // one float per work-item.
                unsafe {
                    k.set_arg(0, &self.buffer(out)?.0.get()).map_err(cl("fma_loop"))?;
                    k.set_arg(1, &iterations).map_err(cl("fma_loop"))?;
                }
                self.launch(k, items, Some(wg), "running fma_loop")?;
                Ok(KernelOutput::Done)
            }
            Kernel::OutOfBounds { buffer, offset } => {
                let (b, _) = self.buffer(buffer)?;
                let index: cl_ulong = offset / 8;
                let k = &self.kernels.oob_write;
                // SAFETY: the arguments match the kernel's signature. The write itself is
                // out of bounds on purpose; what the runtime does about it is what
                // `isolation.fault_containment` measures.
                unsafe {
                    k.set_arg(0, &b.get()).map_err(cl("oob_write"))?;
                    k.set_arg(1, &index).map_err(cl("oob_write"))?;
                }
                // An error from the write's own launch or completion is the runtime refusing
                // it (GPU runtimes report CL_OUT_OF_RESOURCES or a lost queue); CPU runtimes
                // end the process instead.
                self.launch(k, 1, None, "running oob_write")
                    .map_err(|e| AccelError::MemoryFault(e.to_string()))?;
                Ok(KernelOutput::Done)
            }
            Kernel::ReadForeign { .. } => Err(AccelError::Backend(
                "OpenCL 1.2 buffers have no raw device addresses to read from".into(),
            )),
        }
    }
}

fn cl(what: &str) -> impl Fn(opencl3::error_codes::ClError) -> AccelError + '_ {
    move |e| AccelError::Backend(format!("{what}: OpenCL error {e} ({})", e.0))
}
