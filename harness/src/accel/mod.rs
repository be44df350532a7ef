//! The accelerator abstraction: the only way checks reach a device.
//!
//! A backend ([`sim`], [`opencl`], [`cuda`], [`vulkan`]) implements [`Accelerator`] for a device
//! opened in one process and [`Context`] for a tenant's context on it. Device memory is
//! handled through opaque [`BufferId`]s; work runs as one of a small, fixed set of built-in
//! [`Kernel`]s that every backend implements its own way. Checks never call a backend
//! directly: they drive tenant processes (see [`crate::tenant`]), and the tenant process
//! calls these traits.

pub mod cuda;
pub mod opencl;
pub mod sim;
pub mod vulkan;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::canary::{CanaryKey, ScanReport};

/// Something a device could not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccelError {
    /// The device has too little free memory for the request.
    #[error("out of device memory: asked for {requested} bytes, {free} bytes free")]
    OutOfMemory {
        /// Bytes asked for.
        requested: u64,
        /// Bytes free at the time.
        free: u64,
    },
    /// A buffer id that this context does not own.
    #[error("unknown buffer {0} in this context")]
    UnknownBuffer(u64),
    /// An access outside a buffer's bounds.
    #[error("access of {len} bytes at offset {offset} is outside buffer {buffer} of {size} bytes")]
    OutOfBounds {
        /// The buffer.
        buffer: u64,
        /// The offset of the access.
        offset: u64,
        /// The length of the access.
        len: u64,
        /// The buffer's size.
        size: u64,
    },
    /// The device or its backing store failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A kernel's memory access was refused by the device's protection (an illegal
    /// address, a page fault): the one error the isolation checks count as a fault
    /// reported to the tenant. Its text starts with [`MEMORY_FAULT`].
    #[error("memory fault: {0}")]
    MemoryFault(String),
    /// Anything else the backend reports.
    #[error("{0}")]
    Backend(String),
}

/// A device's identity and capabilities, as discovery reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The id used in trial names and `--device` (`sim0`).
    pub id: String,
    /// The backend (`sim`).
    pub backend: String,
    /// The device's name as the backend reports it.
    pub name: String,
    /// The vendor's name, where known.
    pub vendor: Option<String>,
    /// The PCI vendor id, where the device is a PCI function.
    pub pci_vendor: Option<u16>,
    /// The PCI device id, where the device is a PCI function.
    pub pci_device: Option<u16>,
    /// The PCI bus address, where known.
    pub pci_address: Option<String>,
    /// True for the software accelerator.
    pub simulated: bool,
    /// Global memory, bytes.
    pub global_mem_bytes: u64,
    /// Local (work-group shared) memory per compute unit, bytes.
    pub local_mem_bytes: u64,
    /// Compute units.
    pub compute_units: u32,
    /// Further backend facts, recorded as they are.
    pub facts: BTreeMap<String, serde_json::Value>,
}

/// Everything a tenant process needs to open a device: sent over the tenant protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeviceSpec {
    /// The simulated accelerator backed by a shared file.
    Sim(sim::SimSpec),
    /// Nothing a tenant can open: the host itself, or a PCI function that no backend of
    /// this build drives. Only host and PCI checks run on it.
    NotOpenable,
    /// An OpenCL device, found again by platform and device index.
    #[serde(rename = "opencl")]
    OpenCl(opencl::OpenClSpec),
    /// A CUDA device, found again by ordinal and UUID.
    Cuda(cuda::CudaSpec),
    /// A Vulkan device, found again by index and device UUID.
    Vulkan(vulkan::VulkanSpec),
}

impl DeviceSpec {
    /// Opens the device in this process.
    pub fn open(&self) -> Result<Box<dyn Accelerator>, AccelError> {
        match self {
            DeviceSpec::Sim(spec) => Ok(Box::new(sim::SimDevice::open(spec)?)),
            DeviceSpec::NotOpenable => Err(AccelError::Backend(
                "this device has no accelerator backend in this build; only host checks run on it".into(),
            )),
            DeviceSpec::OpenCl(spec) => Ok(Box::new(opencl::OpenClDevice::open(spec)?)),
            DeviceSpec::Cuda(spec) => Ok(Box::new(cuda::CudaDevice::open(spec)?)),
            DeviceSpec::Vulkan(spec) => Ok(Box::new(vulkan::VulkanDevice::open(spec)?)),
        }
    }

    /// Whether a tenant can open the device.
    pub fn openable(&self) -> bool {
        !matches!(self, DeviceSpec::NotOpenable)
    }
}

/// A device buffer, owned by one context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BufferId(pub u64);

/// The built-in kernels every backend implements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kernel", rename_all = "snake_case")]
pub enum Kernel {
    /// Fill a whole buffer with canary blocks numbered from 0.
    FillCanary {
        /// The buffer.
        buffer: BufferId,
        /// The canary key.
        key: CanaryKey,
    },
    /// Count canary blocks anywhere in a buffer (the detector): at every 4-byte-aligned
    /// offset where a device kernel counts (OpenCL, CUDA, the sim's reference of it,
    /// [`crate::canary::count_aligned`]), at every byte offset where the host scans a
    /// copy ([`scan_in_chunks`]).
    CountCanary {
        /// The buffer.
        buffer: BufferId,
        /// The canary key.
        key: CanaryKey,
    },
    /// Local-memory writer: `groups` work-groups, spread over every compute unit, each
    /// fill all of their local memory with canary, then count it back (the positive control).
    LocalWriter {
        /// Work-groups to launch.
        groups: u32,
        /// The canary key.
        key: CanaryKey,
    },
    /// Local-memory listener: `groups` work-groups, spread over every compute unit, each
    /// copy the local memory they never wrote into `out` (group `g` at `g × local size`).
    LocalListener {
        /// Work-groups to launch.
        groups: u32,
        /// Where the dumps go; at least `groups × local_mem_bytes` long.
        out: BufferId,
    },
    /// Copy `bytes` from the start of `src` to the start of `dst`.
    Copy {
        /// Source.
        src: BufferId,
        /// Destination.
        dst: BufferId,
        /// Bytes to copy.
        bytes: u64,
    },
    /// An empty kernel of one work-item (launch latency).
    Noop,
    /// `work_items` work-items each run `iterations` rounds of 16 independent
    /// single-precision fused multiply-adds (32 flops a round).
    Fma {
        /// Work-items to launch.
        work_items: u64,
        /// Rounds per work-item.
        iterations: u32,
    },
    /// One work-item writes a word `offset` bytes past the start of `buffer`, far beyond
    /// its end: the faulting tenant of `isolation.fault_containment`.
    OutOfBounds {
        /// The buffer the write starts from.
        buffer: BufferId,
        /// The byte offset written, beyond the buffer's size.
        offset: u64,
    },
    /// Reads `bytes` from the raw device address `address`, which belongs to another
    /// tenant, into the start of `out`: the reader of `isolation.foreign_pointer`. A
    /// compliant device faults (the address is not mapped for this tenant) or reads
    /// memory of this tenant's own.
    ReadForeign {
        /// The raw device address, as [`Context::device_address`] gave it to the other
        /// tenant.
        address: u64,
        /// Bytes to read.
        bytes: u64,
        /// Where the bytes go; at least `bytes` long.
        out: BufferId,
    },
}

impl Kernel {
    /// Floating-point operations the kernel performs, where it is a compute kernel.
    pub fn flops(&self) -> Option<f64> {
        match *self {
            Kernel::Fma { work_items, iterations } => Some(work_items as f64 * f64::from(iterations) * 32.0),
            _ => None,
        }
    }
}

/// What a kernel returns to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum KernelOutput {
    /// Nothing.
    Done,
    /// A canary scan (from `count_canary`, or the writer's positive control).
    Scan(ScanReport),
}

/// The real backends whose buffers have raw device addresses that kernels use
/// ([`Context::device_address`] gives `Some`): the only ones that can perform a check that
/// hands one tenant's address to another. The sim has such addresses too, but examines no
/// platform.
pub const RAW_ADDRESS_BACKENDS: &[&str] = &["cuda"];

/// A device opened in this process.
pub trait Accelerator: Send {
    /// The device's identity and capabilities.
    fn info(&self) -> &DeviceInfo;
    /// A new context, as a new tenant or a second context of the same tenant gets one.
    fn create_context(&self) -> Result<Box<dyn Context>, AccelError>;
}

/// A context on a device: the unit of isolation inside one process.
pub trait Context: Send {
    /// Allocates `bytes` of device memory without initialising it.
    fn alloc(&mut self, bytes: u64) -> Result<BufferId, AccelError>;
    /// Writes host bytes into a buffer.
    fn write(&mut self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), AccelError>;
    /// Reads a buffer into host bytes.
    fn read(&mut self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), AccelError>;
    /// Frees a buffer.
    fn free(&mut self, buffer: BufferId) -> Result<(), AccelError>;
    /// Runs a built-in kernel to completion.
    fn run(&mut self, kernel: &Kernel) -> Result<KernelOutput, AccelError>;
    /// The raw device address of a buffer, where the backend has one that kernels use
    /// (CUDA's device pointers, the sim's addresses); `None` where it has none (OpenCL
    /// 1.2 buffers are opaque handles).
    fn device_address(&mut self, buffer: BufferId) -> Result<Option<u64>, AccelError> {
        let _ = buffer;
        Ok(None)
    }
    /// Bytes of device memory this context could allocate now, as the device reports them
    /// (CUDA's `cuMemGetInfo`, the sim's page table, host memory for a runtime whose device
    /// memory is host memory); `None` where the device cannot say. The default says
    /// nothing, and callers then take the device's total memory as the most there can be.
    fn free_memory(&mut self) -> Result<Option<u64>, AccelError> {
        Ok(None)
    }

    /// How long the last operation took on the device itself, seconds, where the backend
    /// measures it there (Vulkan's timestamp queries around an on-device copy or a compute
    /// kernel); `None` (the default) where the time the call took on the host is the
    /// measure. Timed operations (`performance.*`) take this when it is there.
    fn device_seconds(&mut self) -> Option<f64> {
        None
    }
}

/// The local writer's positive control from the per-work-group counts a device kernel
/// left in `counts` (one little-endian `u32` per group): the blocks the groups saw of the
/// `blocks_per_group` each wrote.
pub fn local_control(counts: &[u8], groups: u32, blocks_per_group: u64) -> ScanReport {
    let seen: u64 = counts
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .sum();
    ScanReport {
        blocks: seen,
        in_place: seen,
        scanned: u64::from(groups) * blocks_per_group * crate::canary::BLOCK_BYTES as u64,
        first_offset: (seen > 0).then_some(0),
    }
}

/// How a [`AccelError::MemoryFault`] reads once it has crossed the tenant protocol.
pub const MEMORY_FAULT: &str = "memory fault: ";

/// Whether a tenant's error message (as the protocol carries it) reports a memory fault.
pub fn is_memory_fault(message: &str) -> bool {
    message.contains(MEMORY_FAULT)
}

/// The device detector kernels count one buffer in windows of at most this many bytes
/// (16 GiB), so that their 32-bit counters and word offsets never overflow; the backend
/// adds the windows' counts up in 64 bits.
pub const DETECTOR_WINDOW: u64 = 16 << 30;

/// Adds one window's counters of a device detector kernel (`count_canary`) to `report`:
/// `counters` holds three little-endian `u32`s, the blocks found, those in place, and the
/// first block's offset in 4-byte words from the window's start (`u32::MAX` for none);
/// the window starts at byte `window_start` of the buffer. Shorter input adds nothing.
pub fn add_window_counts(report: &mut ScanReport, counters: &[u8], window_start: u64) {
    let word = |i: usize| {
        counters
            .get(i * 4..i * 4 + 4)
            .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    };
    if counters.len() < 12 {
        return;
    }
    report.blocks += u64::from(word(0));
    report.in_place += u64::from(word(1));
    if report.first_offset.is_none() && word(0) > 0 && word(2) != u32::MAX {
        report.first_offset = Some(window_start + u64::from(word(2)) * 4);
    }
}

/// Memory this process may still take from the host: `MemAvailable` from /proc/meminfo,
/// lowered to what the cgroup (v2) memory limit leaves when one is set. It is the free
/// memory of devices whose memory is host memory (a CPU runtime, the sim). `None` where
/// /proc/meminfo cannot be read.
pub fn host_memory_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let host = line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024;
    Some(cgroup_headroom().map_or(host, |c| c.min(host)))
}

fn cgroup_headroom() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let max = read("memory.max")?.trim().parse::<u64>().ok()?;
    let current = read("memory.current")?.trim().parse::<u64>().ok()?;
    Some(max.saturating_sub(current))
}

/// Host reads of a buffer for the detector go in chunks of this size, so that scanning a
/// buffer of many GiB needs little host memory.
pub const SCAN_CHUNK: u64 = 64 << 20;

/// The detector for backends without a device detector kernel: reads a buffer of
/// `size` bytes through `read(offset, into)` in chunks and counts `key`'s canary at any
/// byte offset. Each chunk is read with a block's worth of overlap, so a block across a
/// chunk boundary is found, and counted in the chunk where it starts.
///
/// The copy lives in an anonymous mapping of its own, never in the C heap: a heap buffer,
/// freed with the canary still in it, would be handed to this process's next allocation
/// (a runtime's device buffer, on a CPU runtime), and the listener would find the
/// harness's own copy and call it residue.
pub fn scan_in_chunks(
    size: u64,
    key: crate::canary::CanaryKey,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), AccelError>,
) -> Result<ScanReport, AccelError> {
    let block = crate::canary::BLOCK_BYTES as u64;
    let scanner = crate::canary::Scanner::new(key);
    let mut report = ScanReport::default();
    let len = usize::try_from(SCAN_CHUNK.min(size) + block)
        .map_err(|_| AccelError::Backend("a detector chunk does not fit in host memory".into()))?;
    let mut host = memmap2::MmapMut::map_anon(len).map_err(|source| AccelError::Io {
        what: "mapping host memory for the detector".into(),
        source,
    })?;
    let mut start = 0;
    while start < size {
        let len = SCAN_CHUNK.min(size - start);
        let with_overlap = (len + block - 1).min(size - start);
        let buf = &mut host[..with_overlap as usize];
        read(start, buf)?;
        let found = scanner.scan_from(buf, start, len);
        report.blocks += found.blocks;
        report.in_place += found.in_place;
        if report.first_offset.is_none() {
            report.first_offset = found.first_offset;
        }
        start += len;
    }
    report.scanned = size;
    Ok(report)
}
