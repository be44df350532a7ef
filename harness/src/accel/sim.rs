//! `sim`: a software accelerator for proving hilt's logic and planting faults.
//!
//! Its device memory is a file mapped shared into every process that opens it, with its
//! own page allocator whose state lives in the same file, so two tenant processes really
//! share one device: what tenant A leaves in a page, tenant B can find there when the
//! allocator hands B the same page. Allocator operations and kernels are serialised across
//! processes with an advisory lock on the file, as a GPU without partitions time-slices
//! its tenants.
//!
//! Knobs ([`SimKnobs`]) choose its behaviour. The default is the compliant device (memory
//! scrubbed on free, local memory cleared between kernels). Each named [`SimFault`] moves
//! knobs to a faulty setting; the self-validation test uses them to prove that every check
//! can fail. Results from the sim say something about hilt, never about a platform, and
//! are recorded as simulated.
//!
//! For a run, the file is an anonymous memory file that the tenants inherit
//! ([`create_anonymous`]), so nothing outlives the run; [`create`] makes one at a path.
//!
//! File layout (all offsets multiples of [`PAGE`]): a header page; the page table (one
//! `u32` allocation id and one `u32` owner pid per global page); the local memory of every
//! compute unit; the global memory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use memmap2::MmapMut;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AccelError, Accelerator, BufferId, Context, DeviceInfo, Kernel, KernelOutput};
use crate::canary::{self, CanaryKey, ScanReport};
use hilt_results::Tier;

/// The sim's page size: the granule of allocation and of scrubbing.
pub const PAGE: u64 = 4096;

const MAGIC: &[u8; 8] = b"HILTSIM1";
const OFF_PAGES: usize = 8;
const OFF_CUS: usize = 16;
const OFF_LOCAL: usize = 24;
const OFF_NEXT_ALLOC: usize = 32;
/// The pid of the process whose kernel last ran, for `LocalClear::CrossProcessOnly`.
const OFF_LAST_KERNEL_PID: usize = 40;
/// Where the sim's device addresses start ([`Context::device_address`]): global memory
/// byte `n` is at `ADDRESS_BASE + n`, the same in every tenant.
const ADDRESS_BASE: u64 = 0x7f00_0000_0000;

/// The sim's behaviour. Every field has a compliant default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SimKnobs {
    /// Global memory, MiB.
    pub memory_mib: u32,
    /// Compute units; each has its own local memory.
    pub compute_units: u32,
    /// Local memory per compute unit, KiB.
    pub local_kib: u32,
    /// When freed device memory is scrubbed.
    pub scrub: Scrub,
    /// Whether local memory is cleared between kernels.
    pub local_clear: LocalClear,
    /// Fault: the canary detector kernel sees nothing (positive controls must catch it).
    pub blind_detector: bool,
    /// Fault: the canary detector kernel reads only the first half of what it is given
    /// (positive controls must catch a partly blind detector too).
    pub half_blind_detector: bool,
    /// Fault: the canary detector kernel never returns (the tenant watchdog must catch it).
    pub hang_kernel: bool,
    /// Fault: the tenant process aborts inside the detector kernel.
    pub crash_kernel: bool,
    /// Fault: a kernel's out-of-bounds write is not stopped but lands in other tenants'
    /// memory.
    pub fault_spills: bool,
    /// Fault: every transfer and kernel takes this many extra milliseconds.
    pub slow_ms: u32,
    /// Fault: a kernel's out-of-bounds write is silently dropped: nothing is damaged, and
    /// nothing tells the tenant that caused it.
    pub fault_silent: bool,
    /// Fault: every tenant's kernels can reach every device address, other tenants'
    /// buffers included (one address space for all, as without per-process page tables).
    pub shared_address_space: bool,
    /// The share of global memory, from the lowest address, that scrubbing covers; freed
    /// pages above it keep their contents whatever `scrub` says. 1 (the compliant default)
    /// covers everything; the fault `global-residue-high-memory` sets 0.9, where only a
    /// check that fills and reads (nearly) the whole device can see it.
    pub scrubbed_share: f64,
    /// MiB of global memory the device counts as free but never allocates: an allocation
    /// that would leave fewer free pages than this is refused. What a driver's own
    /// reservations, or another process allocating between a free-memory report and an
    /// allocation, do to a sweep that takes what the device reported free. 0 by default.
    #[serde(skip_serializing_if = "is_zero")]
    pub unallocatable_mib: u32,
    /// A file the simulated device stands for as its device node: processes other than
    /// the run's own that hold it open are other users of the device, as holders of
    /// `/dev/nvidia0` are of a GPU (see [`crate::device_users`]). It changes nothing in
    /// how the device behaves; it lets a test make the device look busy. None by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_file: Option<String>,
}

impl Default for SimKnobs {
    fn default() -> Self {
        SimKnobs {
            memory_mib: 64,
            compute_units: 4,
            local_kib: 32,
            scrub: Scrub::OnFree,
            local_clear: LocalClear::BetweenKernels,
            blind_detector: false,
            half_blind_detector: false,
            hang_kernel: false,
            crash_kernel: false,
            fault_spills: false,
            slow_ms: 0,
            fault_silent: false,
            shared_address_space: false,
            scrubbed_share: 1.0,
            unallocatable_mib: 0,
            device_file: None,
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// When the sim scrubs device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scrub {
    /// Zero pages when they are freed (compliant).
    OnFree,
    /// Zero pages when they are allocated (compliant).
    OnAlloc,
    /// Zero pages only when they pass to another process: contexts of one process see
    /// each other's leftovers (faulty; what many CPU runtimes do).
    CrossProcessOnly,
    /// Never zero (faulty).
    Never,
}

/// Whether the sim clears local memory between kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocalClear {
    /// Clear every compute unit's local memory when a kernel starts (compliant).
    BetweenKernels,
    /// Clear it only when the previous kernel ran in another process: kernels of one
    /// process see each other's leftovers (faulty; what CPU runtimes such as PoCL do).
    CrossProcessOnly,
    /// Never clear it (faulty: LeftoverLocals).
    Never,
}

/// What kind of thing a planted fault breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The simulated platform breaks a requirement: the checks mapped to it must `fail`.
    Platform,
    /// The measurement itself breaks (blind detector, hung or crashed tenant): every check
    /// that touches the device must end `inconclusive` or `error`, never `pass`.
    Harness,
}

/// A named fault that can be planted in the sim with `--sim-fault NAME`.
#[derive(Debug, Clone, Copy)]
pub struct SimFault {
    /// The name used on the command line and in check definitions.
    pub name: &'static str,
    /// What it does, in one sentence.
    pub summary: &'static str,
    /// Whether it breaks the platform or the measurement.
    pub kind: FaultKind,
    /// The tier whose checks are meant to catch it: most faults show in every tier's
    /// rounds, a fault in high memory only in the certification tier's full sweep. The
    /// self-validation test runs each fault in its tier.
    pub tier: Tier,
    /// How it changes the knobs.
    pub apply: fn(&mut SimKnobs),
}

/// Every fault the sim can plant.
pub const FAULTS: &[SimFault] = &[
    SimFault {
        name: "global-no-scrub",
        summary: "freed device memory is never scrubbed",
        kind: FaultKind::Platform,
        tier: Tier::Standard,
        apply: |k| k.scrub = Scrub::Never,
    },
    SimFault {
        name: "global-scrub-cross-process-only",
        summary: "device memory is scrubbed only when it passes to another process",
        kind: FaultKind::Platform,
        tier: Tier::Standard,
        apply: |k| k.scrub = Scrub::CrossProcessOnly,
    },
    SimFault {
        name: "global-residue-high-memory",
        summary: "freed device memory keeps its contents only above 90 % of the device's memory, which only a full sweep reaches",
        kind: FaultKind::Platform,
        tier: Tier::Certification,
        apply: |k| k.scrubbed_share = 0.9,
    },
    SimFault {
        name: "local-no-clear",
        summary: "local memory keeps its contents from one kernel to the next",
        kind: FaultKind::Platform,
        tier: Tier::Standard,
        apply: |k| k.local_clear = LocalClear::Never,
    },
    SimFault {
        name: "local-clear-cross-process-only",
        summary: "local memory is cleared only when the next kernel comes from another process",
        kind: FaultKind::Platform,
        tier: Tier::Standard,
        apply: |k| k.local_clear = LocalClear::CrossProcessOnly,
    },
    SimFault {
        name: "fault-spills-to-neighbour",
        summary: "a kernel's out-of-bounds write is not stopped and corrupts other tenants' memory",
        kind: FaultKind::Platform,
        tier: Tier::Standard,
        apply: |k| k.fault_spills = true,
    },
    SimFault {
        name: "fault-unreported",
        summary: "a kernel's out-of-bounds write is dropped without telling the tenant that made it",
        kind: FaultKind::Platform,
        tier: Tier::Standard,
        apply: |k| k.fault_silent = true,
    },
    SimFault {
        name: "shared-address-space",
        summary: "tenants share one device address space: a kernel reads another tenant's buffer by its address",
        kind: FaultKind::Platform,
        tier: Tier::Standard,
        apply: |k| k.shared_address_space = true,
    },
    SimFault {
        name: "slow-device",
        summary: "every transfer and kernel takes 100 ms longer",
        kind: FaultKind::Platform,
        tier: Tier::Standard,
        apply: |k| k.slow_ms = 100,
    },
    SimFault {
        name: "blind-detector",
        summary: "the canary detector kernel reports nothing, even its own canary",
        kind: FaultKind::Harness,
        tier: Tier::Certification,
        apply: |k| k.blind_detector = true,
    },
    SimFault {
        name: "half-blind-detector",
        summary: "the canary detector kernel reads only the first half of its input",
        kind: FaultKind::Harness,
        tier: Tier::Certification,
        apply: |k| k.half_blind_detector = true,
    },
    SimFault {
        name: "kernel-hang",
        summary: "the canary detector kernel never returns",
        kind: FaultKind::Harness,
        tier: Tier::Certification,
        apply: |k| k.hang_kernel = true,
    },
    SimFault {
        name: "tenant-crash",
        summary: "the tenant process aborts inside the canary detector kernel",
        kind: FaultKind::Harness,
        tier: Tier::Certification,
        apply: |k| k.crash_kernel = true,
    },
];

/// Looks a fault up by name.
pub fn fault(name: &str) -> Option<&'static SimFault> {
    FAULTS.iter().find(|f| f.name == name)
}

/// What a tenant process needs to open a sim device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimSpec {
    /// The device id (`sim0`).
    pub id: String,
    /// The backing file.
    pub path: PathBuf,
    /// The knobs in force.
    pub knobs: SimKnobs,
}

impl SimSpec {
    /// The device's identity and capabilities.
    pub fn info(&self) -> DeviceInfo {
        let k = &self.knobs;
        let mut facts = BTreeMap::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(k) {
            for (name, value) in map {
                facts.insert(format!("sim.{name}"), value);
            }
        }
        DeviceInfo {
            id: self.id.clone(),
            backend: "sim".into(),
            name: "hilt simulated accelerator".into(),
            vendor: Some("hilt".into()),
            pci_vendor: None,
            pci_device: None,
            pci_address: None,
            simulated: true,
            global_mem_bytes: u64::from(k.memory_mib) << 20,
            local_mem_bytes: u64::from(k.local_kib) << 10,
            compute_units: k.compute_units,
            facts,
        }
    }
}

/// Creates (or truncates) the backing file of a fresh sim device at `spec.path`.
pub fn create(spec: &SimSpec) -> Result<(), AccelError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&spec.path)
        .map_err(|source| AccelError::Io {
            what: format!("failed to create sim device file {}", spec.path.display()),
            source,
        })?;
    format(&file, spec)
}

/// Creates a fresh sim device in an anonymous memory file that tenant processes inherit,
/// so that nothing is left behind however the run ends. The returned file must stay open
/// for as long as tenants may open the device; `spec.path` names it through
/// `/proc/self/fd`, which resolves in every child that inherits it.
pub fn create_anonymous(id: &str, knobs: SimKnobs) -> Result<(File, SimSpec), AccelError> {
    let name = std::ffi::CString::new(format!("hilt-{id}")).map_err(|e| AccelError::Backend(e.to_string()))?;
    // SAFETY: memfd_create takes a valid NUL-terminated name and returns a new descriptor
    // or -1. Without MFD_CLOEXEC the descriptor is inherited by the tenants we spawn.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        return Err(AccelError::Io {
            what: "failed to create the sim device's memory file".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let spec = SimSpec {
        id: id.into(),
        path: PathBuf::from(format!("/proc/self/fd/{fd}")),
        knobs,
    };
    let needed = Layout::of(&spec.knobs)?.total;
    if let Some(available) = super::host_memory_available()
        && needed > available / 2
    {
        return Err(AccelError::Backend(format!(
            "the sim device needs {} MiB of memory, more than half of the {} MiB available; lower `memory_mib` or `local_kib`",
            needed >> 20,
            available >> 20
        )));
    }
    format(&file, &spec)?;
    Ok((file, spec))
}

/// Sizes a new backing file, reserving its space, and writes the header.
fn format(file: &File, spec: &SimSpec) -> Result<(), AccelError> {
    let layout = Layout::of(&spec.knobs)?;
    let io = |what: &str| {
        let what = format!("{what} {}", spec.path.display());
        move |source| AccelError::Io { what, source }
    };
    // Reserve the space now: on a full tmpfs a sparse file would turn the first write
    // into SIGBUS in a tenant instead of this clear error.
    let len = libc::off_t::try_from(layout.total).map_err(|e| AccelError::Backend(e.to_string()))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    // SAFETY: posix_fallocate on a descriptor we own; it returns an errno value.
    let rc = unsafe { libc::posix_fallocate(fd, 0, len) };
    if rc != 0 {
        return Err(io("failed to reserve space for the sim device")(
            std::io::Error::from_raw_os_error(rc),
        ));
    }
    // SAFETY: the file was just created by us at its full size; nothing else maps it yet.
    let mut map = unsafe { MmapMut::map_mut(file) }.map_err(io("failed to map sim device file"))?;
    map[..8].copy_from_slice(MAGIC);
    put(&mut map, OFF_PAGES, layout.pages);
    put(&mut map, OFF_CUS, u64::from(spec.knobs.compute_units));
    put(&mut map, OFF_LOCAL, layout.local_per_cu);
    put(&mut map, OFF_NEXT_ALLOC, 1);
    map.flush().map_err(io("failed to write sim device header"))?;
    Ok(())
}

impl SimKnobs {
    /// Rejects sizes the sim cannot be built with.
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, value: u32, max: u32| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("sim `{name}` must be 1 to {max}, not {value}"))
            }
        };
        check("memory_mib", self.memory_mib, 16 * 1024)?;
        check("compute_units", self.compute_units, 1024)?;
        check("local_kib", self.local_kib, 1024)?;
        if self.unallocatable_mib > self.memory_mib {
            return Err(format!(
                "sim `unallocatable_mib` must be at most `memory_mib` ({}), not {}",
                self.memory_mib, self.unallocatable_mib
            ));
        }
        if !(0.0..=1.0).contains(&self.scrubbed_share) {
            return Err(format!(
                "sim `scrubbed_share` must be 0 to 1, not {}",
                self.scrubbed_share
            ));
        }
        Ok(())
    }
}

/// Where everything lives in the backing file.
#[derive(Debug, Clone, Copy)]
struct Layout {
    pages: u64,
    local_per_cu: u64,
    cus: u64,
    table: u64,
    local: u64,
    global: u64,
    total: u64,
}

impl Layout {
    fn of(k: &SimKnobs) -> Result<Layout, AccelError> {
        k.validate().map_err(AccelError::Backend)?;
        let pages = (u64::from(k.memory_mib) << 20) / PAGE;
        let local_per_cu = u64::from(k.local_kib) << 10;
        let cus = u64::from(k.compute_units);
        let round = |x: u64| x.div_ceil(PAGE) * PAGE;
        let table = PAGE;
        let local = table + round(pages * 8);
        let global = local + round(cus * local_per_cu);
        let total = global + pages * PAGE;
        Ok(Layout {
            pages,
            local_per_cu,
            cus,
            table,
            local,
            global,
            total,
        })
    }
}

/// A sim device opened in this process.
pub struct SimDevice {
    info: DeviceInfo,
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    file: File,
    map: Mutex<MmapMut>,
    layout: Layout,
    knobs: SimKnobs,
    pid: u32,
}

impl SimDevice {
    /// Opens the device whose backing file `spec.path` was made by [`create`].
    pub fn open(spec: &SimSpec) -> Result<SimDevice, AccelError> {
        let layout = Layout::of(&spec.knobs)?;
        let io = |what: &str| {
            let what = format!("{what} {}", spec.path.display());
            move |source| AccelError::Io { what, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&spec.path)
            .map_err(io("failed to open sim device file"))?;
        let len = file.metadata().map_err(io("failed to stat sim device file"))?.len();
        if len != layout.total {
            return Err(AccelError::Backend(format!(
                "sim device file {} is {len} bytes, its knobs need {}",
                spec.path.display(),
                layout.total
            )));
        }
        // SAFETY: the file is only ever resized by `create`, before any tenant opens it,
        // and we checked its size above; concurrent writers are other sim tenants, which
        // run allocator operations and kernels only under the file lock and otherwise
        // touch only their own pages.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(io("failed to map sim device file"))?;
        if &map[..8] != MAGIC || get(&map, OFF_PAGES) != layout.pages {
            return Err(AccelError::Backend(format!(
                "{} is not a sim device made with these knobs",
                spec.path.display()
            )));
        }
        Ok(SimDevice {
            info: spec.info(),
            shared: Arc::new(Shared {
                path: spec.path.clone(),
                file,
                map: Mutex::new(map),
                layout,
                knobs: spec.knobs.clone(),
                pid: std::process::id(),
            }),
        })
    }

    /// Bytes of global memory not allocated right now.
    pub fn free_bytes(&self) -> Result<u64, AccelError> {
        let map = self.shared.lock_map();
        Ok(self.shared.free_pages(&map) * PAGE)
    }
}

impl Accelerator for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn create_context(&self) -> Result<Box<dyn Context>, AccelError> {
        Ok(Box::new(SimContext {
            shared: Arc::clone(&self.shared),
            buffers: BTreeMap::new(),
        }))
    }
}

impl Shared {
    fn lock_map(&self) -> MutexGuard<'_, MmapMut> {
        // A poisoned lock means another thread panicked mid-operation; the mapping itself
        // is still memory we may read and write.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` holding both the in-process lock and the cross-process file lock: the
    /// allocator and every kernel run under it, so the device is time-sliced between
    /// tenants as a GPU without partitioning is. A tenant killed while holding it releases
    /// it with its descriptor.
    fn exclusive<T>(&self, f: impl FnOnce(&mut MmapMut) -> T) -> Result<T, AccelError> {
        let mut map = self.lock_map();
        self.file.lock().map_err(|source| AccelError::Io {
            what: format!("failed to lock sim device {}", self.path.display()),
            source,
        })?;
        let out = f(&mut map);
        self.file.unlock().map_err(|source| AccelError::Io {
            what: format!("failed to unlock sim device {}", self.path.display()),
            source,
        })?;
        Ok(out)
    }

    /// The `fault_spills` fault: a stray write from `from` overwrites every page that
    /// belongs to another allocation.
    fn spill(&self, map: &mut MmapMut, from: BufferId) {
        for page in 0..self.layout.pages {
            let (id, _) = page_entry(map, &self.layout, page);
            if id != 0 && u64::from(id) != from.0 {
                let start = (self.layout.global + page * PAGE) as usize;
                map[start..start + PAGE as usize].fill(0xa5);
            }
        }
    }

    /// The `slow_ms` fault.
    fn slow_down(&self) {
        if self.knobs.slow_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(u64::from(self.knobs.slow_ms)));
        }
    }

    /// Scrubs pages `first..first + count`, except those above the scrubbed share of
    /// global memory (the `global-residue-high-memory` fault).
    fn zero_pages(&self, map: &mut MmapMut, first: u64, count: u64) {
        let limit = (self.layout.pages as f64 * self.knobs.scrubbed_share).ceil() as u64;
        let end = (first + count).min(limit);
        if end > first {
            let start = (self.layout.global + first * PAGE) as usize;
            map[start..start + ((end - first) * PAGE) as usize].fill(0);
        }
    }

    /// Pages no allocation holds.
    fn free_pages(&self, map: &[u8]) -> u64 {
        (0..self.layout.pages)
            .filter(|&p| page_entry(map, &self.layout, p).0 == 0)
            .count() as u64
    }

    /// Returns the pages of processes that no longer exist to the free pool, as a driver
    /// does when a process dies holding device memory. A recycled pid keeps its pages
    /// until that process ends too: harmless, since the sim lives for one run.
    fn reclaim_dead(&self, map: &mut MmapMut) {
        let mut alive: BTreeMap<u32, bool> = BTreeMap::new();
        for page in 0..self.layout.pages {
            let (id, owner) = page_entry(map, &self.layout, page);
            if id == 0 || owner == self.pid {
                continue;
            }
            let is_alive = *alive
                .entry(owner)
                .or_insert_with(|| Path::new(&format!("/proc/{owner}")).exists());
            if !is_alive {
                if self.knobs.scrub == Scrub::OnFree {
                    self.zero_pages(map, page, 1);
                }
                set_page_entry(map, &self.layout, page, 0, owner);
            }
        }
    }
}

struct Buffer {
    first_page: u64,
    pages: u64,
    bytes: u64,
}

/// A context on a sim device.
struct SimContext {
    shared: Arc<Shared>,
    buffers: BTreeMap<BufferId, Buffer>,
}

impl SimContext {
    fn buffer(&self, id: BufferId) -> Result<&Buffer, AccelError> {
        self.buffers.get(&id).ok_or(AccelError::UnknownBuffer(id.0))
    }

    /// The byte range of `len` bytes at `offset` in buffer `id`, within the mapping.
    fn range(&self, id: BufferId, offset: u64, len: u64) -> Result<std::ops::Range<usize>, AccelError> {
        let b = self.buffer(id)?;
        if offset.checked_add(len).is_none_or(|end| end > b.bytes) {
            return Err(AccelError::OutOfBounds {
                buffer: id.0,
                offset,
                len,
                size: b.bytes,
            });
        }
        let start = self.shared.layout.global + b.first_page * PAGE + offset;
        Ok(start as usize..(start + len) as usize)
    }

    fn local_range(&self, cu: u64) -> std::ops::Range<usize> {
        let l = &self.shared.layout;
        let start = l.local + cu * l.local_per_cu;
        start as usize..(start + l.local_per_cu) as usize
    }

    /// The mapping range behind `bytes` at device address `address`, as a kernel of this
    /// context may reach it: only its own buffers on the compliant sim, anything in
    /// device memory under `shared_address_space`. Anything else is a kernel fault.
    fn foreign_range(&self, address: u64, bytes: u64) -> Result<std::ops::Range<usize>, AccelError> {
        let l = &self.shared.layout;
        let fault = || {
            AccelError::MemoryFault(format!(
                "a read of {bytes} bytes at device address {address:#x} is outside this context's \
                 address space; the context is unaffected"
            ))
        };
        let start = address.checked_sub(ADDRESS_BASE).ok_or_else(fault)?;
        let end = start
            .checked_add(bytes)
            .filter(|e| *e <= l.pages * PAGE)
            .ok_or_else(fault)?;
        let own = self.buffers.values().any(|b| {
            let first = b.first_page * PAGE;
            start >= first && end <= first + b.bytes
        });
        if !own && !self.shared.knobs.shared_address_space {
            return Err(fault());
        }
        Ok((l.global + start) as usize..(l.global + end) as usize)
    }

    /// What the device does to local memory as a kernel starts.
    fn start_kernel(&self, map: &mut MmapMut) {
        let shared = &self.shared;
        let last = get(map, OFF_LAST_KERNEL_PID);
        let clear = match shared.knobs.local_clear {
            LocalClear::BetweenKernels => true,
            LocalClear::CrossProcessOnly => last != u64::from(shared.pid),
            LocalClear::Never => false,
        };
        if clear {
            let l = &shared.layout;
            let start = l.local as usize;
            map[start..start + (l.cus * l.local_per_cu) as usize].fill(0);
        }
        put(map, OFF_LAST_KERNEL_PID, u64::from(shared.pid));
    }

    /// The detector (the reference implementation of the device kernels,
    /// [`canary::count_aligned`]), with the planted detector faults applied.
    fn detect(&self, key: CanaryKey, hay: &[u8]) -> ScanReport {
        let knobs = &self.shared.knobs;
        if knobs.crash_kernel {
            eprintln!("sim: planted fault `tenant-crash`: aborting inside the detector kernel");
            std::process::abort();
        }
        if knobs.hang_kernel {
            eprintln!("sim: planted fault `kernel-hang`: the detector kernel never returns");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        if knobs.blind_detector {
            return ScanReport {
                scanned: hay.len() as u64,
                ..ScanReport::default()
            };
        }
        if knobs.half_blind_detector {
            let mut report = canary::count_aligned(&hay[..hay.len() / 2], key, 0);
            report.scanned = hay.len() as u64;
            return report;
        }
        canary::count_aligned(hay, key, 0)
    }
}

impl Context for SimContext {
    fn alloc(&mut self, bytes: u64) -> Result<BufferId, AccelError> {
        if bytes == 0 {
            return Err(AccelError::Backend("zero-byte allocation".into()));
        }
        let shared = Arc::clone(&self.shared);
        let layout = shared.layout;
        let want = bytes.div_ceil(PAGE);
        let (id, first) = shared.exclusive(|map| {
            shared.reclaim_dead(map);
            // First fit from the lowest address: a new allocation lands where the last
            // tenant's did, as real allocators tend to do.
            let mut run = 0;
            let mut found = None;
            let mut free = 0;
            for page in 0..layout.pages {
                if page_entry(map, &layout, page).0 == 0 {
                    free += 1;
                    run += 1;
                    if run == want && found.is_none() {
                        found = Some(page + 1 - want);
                    }
                } else {
                    run = 0;
                }
            }
            // Pages the device counts as free but keeps back (`unallocatable_mib`).
            let kept = (u64::from(shared.knobs.unallocatable_mib) << 20) / PAGE;
            let first = found.filter(|_| free >= want + kept).ok_or(AccelError::OutOfMemory {
                requested: bytes,
                free: free * PAGE,
            })?;
            let next = get(map, OFF_NEXT_ALLOC);
            let id = (next % u64::from(u32::MAX)).max(1) as u32;
            put(map, OFF_NEXT_ALLOC, u64::from(id) + 1);
            for page in first..first + want {
                let (_, owner) = page_entry(map, &layout, page);
                let scrub = match shared.knobs.scrub {
                    Scrub::OnAlloc => true,
                    Scrub::CrossProcessOnly => owner != shared.pid,
                    Scrub::OnFree | Scrub::Never => false,
                };
                if scrub {
                    shared.zero_pages(map, page, 1);
                }
                set_page_entry(map, &layout, page, id, shared.pid);
            }
            Ok((id, first))
        })??;
        let buffer = BufferId(u64::from(id));
        self.buffers.insert(
            buffer,
            Buffer {
                first_page: first,
                pages: want,
                bytes,
            },
        );
        Ok(buffer)
    }

    fn write(&mut self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), AccelError> {
        let range = self.range(buffer, offset, data.len() as u64)?;
        self.shared.slow_down();
        self.shared.lock_map()[range].copy_from_slice(data);
        Ok(())
    }

    fn read(&mut self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), AccelError> {
        let range = self.range(buffer, offset, out.len() as u64)?;
        self.shared.slow_down();
        out.copy_from_slice(&self.shared.lock_map()[range]);
        Ok(())
    }

    fn device_address(&mut self, buffer: BufferId) -> Result<Option<u64>, AccelError> {
        Ok(Some(ADDRESS_BASE + self.buffer(buffer)?.first_page * PAGE))
    }

    fn free_memory(&mut self) -> Result<Option<u64>, AccelError> {
        let shared = Arc::clone(&self.shared);
        // Pages of tenants that have died come back first, as an allocation would see them.
        shared.exclusive(|map| {
            shared.reclaim_dead(map);
            Some(shared.free_pages(map) * PAGE)
        })
    }

    fn free(&mut self, buffer: BufferId) -> Result<(), AccelError> {
        let b = self
            .buffers
            .remove(&buffer)
            .ok_or(AccelError::UnknownBuffer(buffer.0))?;
        let shared = Arc::clone(&self.shared);
        shared.exclusive(|map| {
            if shared.knobs.scrub == Scrub::OnFree {
                shared.zero_pages(map, b.first_page, b.pages);
            }
            for page in b.first_page..b.first_page + b.pages {
                set_page_entry(map, &shared.layout, page, 0, shared.pid);
            }
        })
    }

    fn run(&mut self, kernel: &Kernel) -> Result<KernelOutput, AccelError> {
        // Resolve buffers before taking the device.
        let ranges = match *kernel {
            Kernel::FillCanary { buffer, .. } | Kernel::CountCanary { buffer, .. } => {
                vec![self.range(buffer, 0, self.buffer(buffer)?.bytes)?]
            }
            Kernel::LocalWriter { .. } => vec![],
            Kernel::LocalListener { groups, out } => {
                vec![self.range(out, 0, u64::from(groups) * self.shared.layout.local_per_cu)?]
            }
            Kernel::Copy { src, dst, bytes } => vec![self.range(src, 0, bytes)?, self.range(dst, 0, bytes)?],
            Kernel::Noop | Kernel::Fma { .. } => vec![],
            Kernel::OutOfBounds { buffer, offset } => {
                let b = self.buffer(buffer)?;
                if offset < b.bytes {
                    return Err(AccelError::Backend(
                        "out_of_bounds needs an offset beyond the buffer".into(),
                    ));
                }
                vec![]
            }
            Kernel::ReadForeign { bytes, out, .. } => vec![self.range(out, 0, bytes)?],
        };
        let shared = Arc::clone(&self.shared);
        shared.slow_down();
        shared.exclusive(|map| {
            self.start_kernel(map);
            let l = shared.layout;
            Ok(match *kernel {
                Kernel::FillCanary { key, .. } => {
                    canary::fill(&mut map[ranges[0].clone()], key, 0);
                    KernelOutput::Done
                }
                Kernel::CountCanary { key, .. } => {
                    KernelOutput::Scan(self.detect(key, &map[ranges[0].clone()]))
                }
                Kernel::LocalWriter { groups, key } => {
                    // Each work-group fills the local memory of its compute unit and reads
                    // it back through the detector before it ends: the positive control
                    // should see groups x local memory / block size blocks.
                    let blocks_per_cu = l.local_per_cu / canary::BLOCK_BYTES as u64;
                    let mut control = ScanReport::default();
                    for g in 0..u64::from(groups) {
                        let range = self.local_range(g % l.cus);
                        canary::fill(&mut map[range.clone()], key, g * blocks_per_cu);
                        control.merge(self.detect(key, &map[range]));
                    }
                    KernelOutput::Scan(control)
                }
                Kernel::LocalListener { groups, .. } => {
                    for g in 0..u64::from(groups) {
                        let src = self.local_range(g % l.cus);
                        map.copy_within(src, ranges[0].start + (g * l.local_per_cu) as usize);
                    }
                    KernelOutput::Done
                }
                Kernel::Copy { .. } => {
                    map.copy_within(ranges[0].clone(), ranges[1].start);
                    KernelOutput::Done
                }
                Kernel::Noop => KernelOutput::Done,
                Kernel::Fma { work_items, iterations } => {
                    black_box(fma_work(work_items, iterations));
                    KernelOutput::Done
                }
                Kernel::OutOfBounds { .. } if shared.knobs.fault_silent && !shared.knobs.fault_spills => {
                    KernelOutput::Done
                }
                Kernel::OutOfBounds { buffer, offset } => {
                    if !shared.knobs.fault_spills {
                        return Err(AccelError::MemoryFault(format!(
                            "a write {offset} bytes past the start of buffer {} is outside it; the context is unaffected",
                            buffer.0
                        )));
                    }
                    // Faulty: the write lands in whatever the page table maps there,
                    // another tenant's memory included.
                    shared.spill(map, buffer);
                    KernelOutput::Done
                }
                Kernel::ReadForeign { address, bytes, .. } => {
                    let src = self.foreign_range(address, bytes)?;
                    map.copy_within(src, ranges[0].start);
                    KernelOutput::Done
                }
            })
        })?
    }
}

impl Drop for SimContext {
    fn drop(&mut self) {
        // Destroying a context frees what it still holds, as drivers do.
        let ids: Vec<BufferId> = self.buffers.keys().copied().collect();
        for id in ids {
            let _ = self.free(id);
        }
    }
}

fn get(map: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&map[off..off + 8]);
    u64::from_le_bytes(w)
}

fn put(map: &mut [u8], off: usize, v: u64) {
    map[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn page_entry(map: &[u8], layout: &Layout, page: u64) -> (u32, u32) {
    let v = get(map, (layout.table + page * 8) as usize);
    (v as u32, (v >> 32) as u32)
}

fn set_page_entry(map: &mut [u8], layout: &Layout, page: u64, id: u32, owner: u32) {
    put(
        map,
        (layout.table + page * 8) as usize,
        u64::from(id) | (u64::from(owner) << 32),
    );
}

/// The sim's compute kernel: `work_items` x `iterations` rounds of 16 single-precision
/// fused multiply-adds, as the OpenCL and CUDA kernels do.
fn fma_work(work_items: u64, iterations: u32) -> f32 {
    let mut total = 0.0f32;
    for item in 0..work_items {
        let mut acc = [item as f32 * 1e-7; 16];
        for _ in 0..iterations {
            for a in &mut acc {
                *a = a.mul_add(0.9999, 1e-4);
            }
        }
        total += acc.iter().sum::<f32>();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::CanaryKey;

    fn spec_in(dir: &tempfile::TempDir, knobs: SimKnobs) -> SimSpec {
        SimSpec {
            id: "sim0".into(),
            path: dir.path().join("dev"),
            knobs,
        }
    }

    fn device(knobs: SimKnobs) -> (tempfile::TempDir, SimDevice) {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_in(&dir, knobs);
        create(&spec).expect("create");
        let dev = SimDevice::open(&spec).expect("open");
        (dir, dev)
    }

    fn small(f: impl FnOnce(&mut SimKnobs)) -> SimKnobs {
        let mut k = SimKnobs {
            memory_mib: 1,
            ..SimKnobs::default()
        };
        f(&mut k);
        k
    }

    /// Fills a buffer in one context, frees it, and counts canary in a new context's
    /// fresh allocation of the same size.
    fn leftover(knobs: SimKnobs) -> u64 {
        let (_dir, dev) = device(knobs);
        let key = CanaryKey(9);
        let mut a = dev.create_context().expect("ctx a");
        let buf = a.alloc(256 * 1024).expect("alloc");
        a.run(&Kernel::FillCanary { buffer: buf, key }).expect("fill");
        a.free(buf).expect("free");
        drop(a);
        let mut b = dev.create_context().expect("ctx b");
        let buf = b.alloc(256 * 1024).expect("alloc");
        match b.run(&Kernel::CountCanary { buffer: buf, key }).expect("count") {
            KernelOutput::Scan(r) => r.blocks,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn compliant_scrubbing_leaves_nothing_and_faults_leave_everything() {
        assert_eq!(leftover(small(|_| {})), 0);
        assert_eq!(leftover(small(|k| k.scrub = Scrub::OnAlloc)), 0);
        assert_eq!(leftover(small(|k| k.scrub = Scrub::Never)), 8192);
        // Same process: cross-process-only scrubbing does not protect contexts.
        assert_eq!(leftover(small(|k| k.scrub = Scrub::CrossProcessOnly)), 8192);
    }

    #[test]
    fn high_memory_residue_shows_only_to_a_sweep() {
        let knobs = small(|k| k.scrubbed_share = 0.9);
        // A quarter of the device, from the bottom: scrubbed.
        assert_eq!(leftover(knobs.clone()), 0);
        let (_dir, dev) = device(knobs);
        let key = CanaryKey(11);
        let mut a = dev.create_context().expect("ctx a");
        assert_eq!(a.free_memory().expect("free"), Some(1 << 20));
        let buf = a.alloc(1 << 20).expect("alloc all");
        a.run(&Kernel::FillCanary { buffer: buf, key }).expect("fill");
        assert_eq!(a.free_memory().expect("free"), Some(0));
        a.free(buf).expect("free");
        drop(a);
        let mut b = dev.create_context().expect("ctx b");
        let buf = b.alloc(1 << 20).expect("alloc all");
        let KernelOutput::Scan(r) = b.run(&Kernel::CountCanary { buffer: buf, key }).expect("count") else {
            panic!("no scan");
        };
        // 256 pages; the top 25 (above 231 = ceil(0.9 x 256)) keep their canary, in place.
        assert_eq!(r.blocks, 25 * PAGE / 32);
        assert_eq!(r.in_place, r.blocks);
        assert_eq!(r.first_offset, Some(231 * PAGE));
    }

    #[test]
    fn allocation_beyond_capacity_is_an_error_not_a_panic() {
        let (_dir, dev) = device(small(|_| {}));
        let mut c = dev.create_context().expect("ctx");
        let err = c.alloc(2 << 20).expect_err("too big");
        assert!(matches!(err, AccelError::OutOfMemory { free: 1048576, .. }), "{err}");
        let buf = c.alloc(100).expect("alloc");
        let err = c.write(buf, 90, &[0; 20]).expect_err("out of bounds");
        assert!(matches!(err, AccelError::OutOfBounds { .. }), "{err}");
    }

    #[test]
    fn dropping_a_context_frees_its_memory() {
        let (_dir, dev) = device(small(|_| {}));
        let mut c = dev.create_context().expect("ctx");
        c.alloc(512 * 1024).expect("alloc");
        assert_eq!(dev.free_bytes().expect("free"), 512 * 1024);
        drop(c);
        assert_eq!(dev.free_bytes().expect("free"), 1 << 20);
    }

    #[test]
    fn a_file_made_with_other_knobs_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_in(&dir, small(|_| {}));
        create(&spec).expect("create");
        let other = SimSpec {
            knobs: SimKnobs {
                memory_mib: 2,
                ..spec.knobs.clone()
            },
            ..spec
        };
        assert!(SimDevice::open(&other).is_err());
    }

    #[test]
    fn write_read_and_copy_round_trip() {
        let (_dir, dev) = device(small(|_| {}));
        let mut c = dev.create_context().expect("ctx");
        let a = c.alloc(10_000).expect("alloc a");
        let b = c.alloc(10_000).expect("alloc b");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        c.write(a, 0, &data).expect("write");
        c.run(&Kernel::Copy {
            src: a,
            dst: b,
            bytes: 10_000,
        })
        .expect("copy");
        let mut back = vec![0u8; 10_000];
        c.read(b, 0, &mut back).expect("read");
        assert_eq!(back, data);
        let err = c
            .run(&Kernel::Copy {
                src: a,
                dst: b,
                bytes: 10_001,
            })
            .expect_err("too long");
        assert!(matches!(err, AccelError::OutOfBounds { .. }), "{err}");
        c.free(a).expect("free");
        assert!(
            matches!(c.free(a), Err(AccelError::UnknownBuffer(_))),
            "double free is an error"
        );
    }

    #[test]
    fn the_device_lock_excludes_other_openers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_in(&dir, small(|_| {}));
        create(&spec).expect("create");
        // Two opens are two open file descriptions, as two tenant processes have.
        let a = SimDevice::open(&spec).expect("open a");
        let b = SimDevice::open(&spec).expect("open b");
        let held = a
            .shared
            .exclusive(|_| b.shared.file.try_lock().is_err())
            .expect("lock a");
        assert!(held, "b took the device while a held it");
        assert!(b.shared.file.try_lock().is_ok(), "a released the device");
    }

    #[test]
    fn foreign_addresses_fault_unless_the_address_space_is_shared() {
        for shared in [false, true] {
            let (_dir, dev) = device(small(|k| k.shared_address_space = shared));
            let key = CanaryKey(5);
            let mut a = dev.create_context().expect("ctx a");
            let secret = a.alloc(8192).expect("alloc a");
            a.run(&Kernel::FillCanary { buffer: secret, key }).expect("fill");
            let address = a
                .device_address(secret)
                .expect("address")
                .expect("the sim has addresses");
            let mut b = dev.create_context().expect("ctx b");
            let out = b.alloc(8192).expect("alloc b");
            let read = b.run(&Kernel::ReadForeign {
                address,
                bytes: 8192,
                out,
            });
            if shared {
                read.expect("a shared address space lets b read");
                match b.run(&Kernel::CountCanary { buffer: out, key }).expect("count") {
                    KernelOutput::Scan(r) => assert_eq!(r.blocks, 256),
                    other => panic!("unexpected {other:?}"),
                }
            } else {
                let err = read.expect_err("a's address is not b's");
                assert!(err.to_string().contains("memory fault"), "{err}");
                // Its own address is fine.
                let own = b.device_address(out).expect("address").expect("some");
                b.run(&Kernel::ReadForeign {
                    address: own,
                    bytes: 8192,
                    out,
                })
                .expect("own memory");
            }
        }
    }

    #[test]
    fn every_fault_changes_the_knobs() {
        for f in FAULTS {
            let mut k = SimKnobs::default();
            (f.apply)(&mut k);
            assert_ne!(k, SimKnobs::default(), "fault {} changes nothing", f.name);
        }
    }
}
