//! Suite `isolation`, device checks: what one tenant's fault does to another tenant on the
//! same device. (The host's side of isolation, IOMMU and device files, is in
//! `isolation_host`.)

use hilt_harness::accel::{Kernel, is_memory_fault};
use hilt_harness::canary::BLOCK_BYTES;
use hilt_harness::check::{CheckCtx, CheckDef, CheckParams, Finding, ParamsSpec, Scope};
use hilt_harness::tenant::{Tenant, TenantError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `isolation.fault_containment`.
pub static FAULT_CONTAINMENT: CheckDef = CheckDef {
    id: "isolation.fault_containment",
    title: "A tenant's memory fault stays with that tenant",
    description: "Tenant B, a process, fills a buffer with keyed, self-checking canary and \
        checks it (the positive control). Tenant A, another process on the same device, then \
        runs a kernel that writes far outside its own buffer, while B keeps filling and \
        checking a second buffer. A's fault must be reported to A (an error from the runtime, \
        or A's process ended by the operating system); B's work during the fault must come \
        out right, B's first buffer must be intact afterwards, and B's context must still run \
        work correctly (B fills and checks it again).",
    remediation: "One tenant's faulting kernel damaged or stopped another tenant, or went \
        unreported. Do not share the device between mutually distrusting tenants in this \
        mode (MPS and similar shared-context modes let one client's fault take down the \
        others); use per-process contexts with hardware isolation (time-slicing with \
        separate address spaces, MIG or similar partitions) and a driver that reports \
        faults to the faulting context.",
    requirements: &["RS-4", "AI-ISO-1"],
    faults: &["fault-spills-to-neighbour", "fault-unreported"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<ContainmentParams>(),
    run: |ctx| ctx.with_params(fault_containment),
};

/// Parameters of `isolation.fault_containment`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ContainmentParams {
    /// The size of tenant B's buffer, KiB, 4 to 1048576.
    #[schemars(range(min = 4, max = 1_048_576))]
    pub victim_kib: u64,
    /// How far past the start of its 4 KiB buffer tenant A writes, GiB, 1 to 65536.
    #[schemars(range(min = 1, max = 65_536))]
    pub stray_offset_gib: u64,
}

impl Default for ContainmentParams {
    fn default() -> Self {
        ContainmentParams {
            victim_kib: 4096,
            stray_offset_gib: 1024,
        }
    }
}

impl CheckParams for ContainmentParams {
    fn validate(&self) -> Result<(), String> {
        if !(4..=1_048_576).contains(&self.victim_kib) {
            return Err(format!("`victim_kib` must be 4 to 1048576, not {}", self.victim_kib));
        }
        if !(1..=65_536).contains(&self.stray_offset_gib) {
            return Err(format!(
                "`stray_offset_gib` must be 1 to 65536, not {}",
                self.stray_offset_gib
            ));
        }
        Ok(())
    }
}

/// What tenant A's faulting kernel came to.
enum Stray {
    /// The runtime returned an error to A.
    Reported(String),
    /// A's process ended (the operating system stopped it).
    Ended(String),
    /// The kernel completed as if nothing happened.
    Silent,
    /// The kernel neither returned nor failed within the deadline.
    Hung(String),
    /// The kernel failed for another reason (a launch error, out of memory): no evidence
    /// either way.
    Other(String),
}

/// Whether a tenant process was ended by a memory-access signal (SIGSEGV, SIGBUS): how
/// the operating system reports a stray write on a runtime that runs kernels on the CPU.
fn ended_by_memory_fault(e: &TenantError) -> bool {
    matches!(e, TenantError::Crashed { status, .. }
        if status == &format!("killed by signal {}", libc_signal::SEGV) || status == &format!("killed by signal {}", libc_signal::BUS))
}

/// The signal numbers of Linux on every architecture hilt builds for.
mod libc_signal {
    pub const SEGV: i32 = 11;
    pub const BUS: i32 = 7;
}

/// `Some(reason)` when two tenants cannot share the device at all (exclusive-process
/// compute mode): the checks that need two tenants do not apply.
fn exclusive(ctx: &CheckCtx<'_>) -> Option<Finding> {
    let mode = ctx.device.info.facts.get("sharing_mode")?.as_str()?;
    (mode == "exclusive").then(|| {
        Finding::NotApplicable(
            "the device admits one process at a time (exclusive-process compute mode), so no second tenant can \
             share it"
                .into(),
        )
    })
}

fn fault_containment(ctx: &mut CheckCtx<'_>, params: &ContainmentParams) -> Result<Finding, TenantError> {
    if let Some(na) = exclusive(ctx) {
        return Ok(na);
    }
    let bytes =
        (params.victim_kib * 1024).min(ctx.device.info.global_mem_bytes / 4) / BLOCK_BYTES as u64 * BLOCK_BYTES as u64;
    if bytes == 0 {
        return Ok(Finding::NotApplicable(
            "the device has too little memory for the victim's buffer".into(),
        ));
    }
    let blocks = bytes / BLOCK_BYTES as u64;
    let key = ctx.key;
    ctx.evidence("victim_bytes", bytes);

    // B's working set, checked before anything happens (the positive control).
    let mut victim = ctx.spawn_tenant("B")?;
    let vc = victim.create_context()?;
    let buffer = victim.alloc(vc, bytes)?;
    victim.kernel(vc, Kernel::FillCanary { buffer, key })?;
    let before = victim.scan(vc, Kernel::CountCanary { buffer, key })?;
    if before.blocks != blocks || before.in_place != blocks {
        return Ok(Finding::Inconclusive(format!(
            "positive control failed: tenant B saw {} of the {blocks} blocks it had just written ({} in place)",
            before.blocks, before.in_place
        )));
    }

    // A faults while B works: B fills and checks a second buffer over and over, in its own
    // process, until A's kernel has come back (or A has died).
    let offset = stray_offset(ctx, params);
    ctx.evidence("stray_write_offset_bytes", offset);
    let mut faulty = ctx.spawn_tenant("A")?;
    let fc = faulty.create_context()?;
    let own = faulty.alloc(fc, 4096)?;
    let work = victim.alloc(vc, bytes)?;
    let done = std::sync::atomic::AtomicBool::new(false);
    let (stray, during) = std::thread::scope(|scope| {
        let busy = scope.spawn(|| busy_work(&mut victim, vc, work, key.derive(2), blocks, &done));
        let stray = faulty.kernel(fc, Kernel::OutOfBounds { buffer: own, offset });
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let during = busy
            .join()
            .unwrap_or_else(|_| Ok(Some("tenant B's worker thread panicked".into())));
        (stray, during)
    });
    let stray = match stray {
        Ok(_) => Stray::Silent,
        Err(TenantError::Device { message, .. }) if is_memory_fault(&message) => Stray::Reported(message),
        Err(TenantError::Device { message, .. }) => Stray::Other(message),
        Err(e @ TenantError::Crashed { .. }) => {
            if let Some(tail) = e.stderr_tail() {
                ctx.evidence("tenant_A_stderr_tail", tail);
            }
            if ended_by_memory_fault(&e) {
                Stray::Ended(e.to_string())
            } else {
                Stray::Other(e.to_string())
            }
        }
        Err(e @ TenantError::Hung { .. }) => Stray::Hung(e.to_string()),
        Err(other) => return Err(other),
    };
    if !matches!(stray, Stray::Ended(_) | Stray::Hung(_)) {
        // A's context may be unusable after its fault: how A ends is A's business.
        let _ = faulty.exit();
    }
    match during {
        Ok(None) => {}
        Ok(Some(damage)) => return Ok(Finding::Fail(format!("while tenant A faulted, {damage}"))),
        Err(e) => {
            return Ok(Finding::Fail(format!(
                "while tenant A faulted, tenant B's work failed: {e}"
            )));
        }
    }
    victim.free(vc, work)?;
    ctx.evidence(
        "tenant_A",
        match &stray {
            Stray::Reported(m) => format!("the runtime reported the fault: {m}"),
            Stray::Ended(m) => format!("the process was ended: {m}"),
            Stray::Silent => "the kernel completed without an error".to_string(),
            Stray::Hung(m) => m.clone(),
            Stray::Other(m) => format!("the kernel failed, but not with a memory fault: {m}"),
        },
    );

    // B must be intact and still able to work.
    let victim_state = check_victim(&mut victim, vc, buffer, key, blocks);
    match victim_state {
        Ok(None) => {
            victim.free(vc, buffer)?;
            victim.exit()?;
        }
        Ok(Some(damage)) => return Ok(Finding::Fail(damage)),
        Err(e) => {
            if let Some(tail) = e.stderr_tail() {
                ctx.evidence("tenant_B_stderr_tail", tail);
            }
            return Ok(Finding::Fail(format!(
                "after tenant A's fault, tenant B could no longer use the device: {e}"
            )));
        }
    }
    Ok(match stray {
        Stray::Reported(_) | Stray::Ended(_) => Finding::Pass,
        Stray::Silent => Finding::Fail(format!(
            "tenant A's write {offset} bytes past its buffer completed without any error: the fault was not \
             reported to the tenant that caused it"
        )),
        Stray::Hung(m) => Finding::Inconclusive(format!(
            "tenant A's faulting kernel neither failed nor returned ({m}); tenant B was unaffected"
        )),
        Stray::Other(m) => Finding::Inconclusive(format!(
            "tenant A's kernel failed in a way that is not a memory fault, so whether its stray write was caught \
             is unknown ({m}); tenant B was unaffected"
        )),
    })
}

/// How far past its buffer tenant A writes: the profile's offset, kept inside half of the
/// device's address space (a device with 32-bit addresses would wrap a larger offset back
/// into the buffer).
fn stray_offset(ctx: &CheckCtx<'_>, params: &ContainmentParams) -> u64 {
    let wanted = params.stray_offset_gib << 30;
    let bits = ["opencl.address_bits", "address_bits"]
        .iter()
        .find_map(|k| ctx.device.info.facts.get(*k).and_then(serde_json::Value::as_u64))
        .filter(|b| (16..64).contains(b));
    match bits {
        Some(b) => wanted.min(1 << (b - 2)),
        None => wanted,
    }
}

/// B's checksummed work while A faults: fill and check `buffer` until `done`, at least
/// once. `Ok(Some(what))` when a round came out wrong.
fn busy_work(
    victim: &mut Tenant,
    context: usize,
    buffer: hilt_harness::accel::BufferId,
    key: hilt_harness::canary::CanaryKey,
    blocks: u64,
    done: &std::sync::atomic::AtomicBool,
) -> Result<Option<String>, TenantError> {
    let mut round = 0u64;
    loop {
        let k = key.derive(round);
        victim.kernel(context, Kernel::FillCanary { buffer, key: k })?;
        let seen = victim.scan(context, Kernel::CountCanary { buffer, key: k })?;
        if seen.blocks != blocks || seen.in_place != blocks {
            return Ok(Some(format!(
                "tenant B's work came out wrong in round {round}: {} of {blocks} blocks",
                seen.blocks
            )));
        }
        round += 1;
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
    }
}

/// `Ok(None)` when B's buffer still holds every block in place and B can fill and check
/// it again; `Ok(Some(what))` when it does not.
fn check_victim(
    victim: &mut Tenant,
    context: usize,
    buffer: hilt_harness::accel::BufferId,
    key: hilt_harness::canary::CanaryKey,
    blocks: u64,
) -> Result<Option<String>, TenantError> {
    let after = victim.scan(context, Kernel::CountCanary { buffer, key })?;
    if after.blocks != blocks || after.in_place != blocks {
        return Ok(Some(format!(
            "tenant A's fault damaged tenant B's memory: {} of B's {blocks} blocks are intact ({} in place)",
            after.blocks, after.in_place
        )));
    }
    let again = key.derive(1);
    victim.kernel(context, Kernel::FillCanary { buffer, key: again })?;
    let redo = victim.scan(context, Kernel::CountCanary { buffer, key: again })?;
    if redo.blocks != blocks || redo.in_place != blocks {
        return Ok(Some(format!(
            "after tenant A's fault, tenant B's new work came out wrong: {} of {blocks} blocks",
            redo.blocks
        )));
    }
    Ok(None)
}

/// `isolation.foreign_pointer`.
pub static FOREIGN_POINTER: CheckDef = CheckDef {
    id: "isolation.foreign_pointer",
    title: "A tenant cannot read another tenant's memory by its device address",
    description: "Tenant A, a process, fills a buffer with keyed canary, checks it (the \
        positive control) and hands its raw device address to the harness. Tenant B, \
        another process on the same device, launches a kernel that reads that address into \
        a buffer of its own. B's read must fault or come back without any of A's canary, \
        and A's buffer must be intact afterwards (A counts it again). Backends whose buffers \
        have no raw device addresses (OpenCL 1.2) cannot perform it: the trial is recorded \
        as not examined by that backend, naming the backends that can (CUDA), and a \
        certification run is inconclusive for it.",
    remediation: "Tenants share one device address space: a kernel of one process can \
        read another's memory by its address. Do not share the device between mutually \
        distrusting tenants in this mode (MPS before Volta, or any mode without per-process \
        page tables on the device); give each tenant its own process with the driver's \
        per-process address spaces, or a MIG or similar partition.",
    requirements: &["AI-ISO-1", "DP-7"],
    faults: &["shared-address-space"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<ForeignParams>(),
    run: |ctx| ctx.with_params(foreign_pointer),
};

/// Parameters of `isolation.foreign_pointer`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ForeignParams {
    /// The size of tenant A's buffer, and of B's read, KiB, 4 to 1048576.
    #[schemars(range(min = 4, max = 1_048_576))]
    pub buffer_kib: u64,
}

impl Default for ForeignParams {
    fn default() -> Self {
        ForeignParams { buffer_kib: 1024 }
    }
}

impl CheckParams for ForeignParams {
    fn validate(&self) -> Result<(), String> {
        if !(4..=1_048_576).contains(&self.buffer_kib) {
            return Err(format!("`buffer_kib` must be 4 to 1048576, not {}", self.buffer_kib));
        }
        Ok(())
    }
}

fn foreign_pointer(ctx: &mut CheckCtx<'_>, params: &ForeignParams) -> Result<Finding, TenantError> {
    if let Some(na) = exclusive(ctx) {
        return Ok(na);
    }
    let bytes =
        (params.buffer_kib * 1024).min(ctx.device.info.global_mem_bytes / 4) / BLOCK_BYTES as u64 * BLOCK_BYTES as u64;
    if bytes == 0 {
        return Ok(Finding::NotApplicable(
            "the device has too little memory for the owner's buffer".into(),
        ));
    }
    let blocks = bytes / BLOCK_BYTES as u64;
    let key = ctx.key;
    ctx.evidence("buffer_bytes", bytes);

    // A's buffer, checked before anything happens (the positive control).
    let mut owner = ctx.spawn_tenant("A")?;
    let oc = owner.create_context()?;
    let buffer = owner.alloc(oc, bytes)?;
    owner.kernel(oc, Kernel::FillCanary { buffer, key })?;
    let before = owner.scan(oc, Kernel::CountCanary { buffer, key })?;
    if before.blocks != blocks || before.in_place != blocks {
        return Ok(Finding::Inconclusive(format!(
            "positive control failed: tenant A saw {} of the {blocks} blocks it had just written ({} in place)",
            before.blocks, before.in_place
        )));
    }
    let Some(address) = owner.device_address(oc, buffer)? else {
        owner.exit()?;
        // The platform may well let one tenant read another's memory by address; this
        // backend only cannot hand hilt an address to try. Not a finding about the platform.
        let backend = &ctx.device.info.backend;
        let examined_by: Vec<String> = hilt_harness::accel::RAW_ADDRESS_BACKENDS
            .iter()
            .filter(|b| *b != backend)
            .map(|b| (*b).to_string())
            .collect();
        return Ok(Finding::NotExamined {
            reason: format!(
                "not examined by the {backend} backend: its buffers have no raw device address to hand from one \
                 tenant to another, so hilt cannot attempt the read; the {} backend can examine it on a device it \
                 drives",
                examined_by.join(" or ")
            ),
            examined_by,
        });
    };
    ctx.evidence("foreign_address", format!("{address:#x}"));

    // B reads A's address.
    let mut reader = ctx.spawn_tenant("B")?;
    let rc = reader.create_context()?;
    let out = reader.alloc(rc, bytes)?;
    let read = reader.kernel(rc, Kernel::ReadForeign { address, bytes, out });
    let outcome = match read {
        Ok(_) => {
            let found = reader.scan(rc, Kernel::CountCanary { buffer: out, key })?;
            reader.exit()?;
            ForeignRead::Completed(found)
        }
        Err(TenantError::Device { message, .. }) => {
            // After a fault the context may be unusable; B's exit is not evidence.
            let _ = reader.exit();
            if is_memory_fault(&message) {
                ForeignRead::Faulted(message)
            } else {
                ForeignRead::Other(message)
            }
        }
        Err(e @ TenantError::Crashed { .. }) => {
            if let Some(tail) = e.stderr_tail() {
                ctx.evidence("tenant_B_stderr_tail", tail);
            }
            if ended_by_memory_fault(&e) {
                ForeignRead::Ended(e.to_string())
            } else {
                ForeignRead::Other(e.to_string())
            }
        }
        Err(e @ TenantError::Hung { .. }) => ForeignRead::Hung(e.to_string()),
        Err(other) => return Err(other),
    };
    ctx.evidence(
        "tenant_B",
        match &outcome {
            ForeignRead::Completed(found) => format!("the read completed; {} of A's blocks in it", found.blocks),
            ForeignRead::Faulted(m) => format!("the read faulted: {m}"),
            ForeignRead::Ended(m) => format!("the process was ended: {m}"),
            ForeignRead::Hung(m) => m.clone(),
            ForeignRead::Other(m) => format!("the read failed, but not with a memory fault: {m}"),
        },
    );

    // A's data must be intact.
    let after = owner.scan(oc, Kernel::CountCanary { buffer, key })?;
    owner.free(oc, buffer)?;
    owner.exit()?;
    ctx.evidence("owner_blocks_intact", after.in_place);
    if after.blocks != blocks || after.in_place != blocks {
        return Ok(Finding::Fail(format!(
            "after tenant B's read of its address, tenant A's buffer holds {} of its {blocks} blocks ({} in \
             place)",
            after.blocks, after.in_place
        )));
    }
    Ok(match outcome {
        ForeignRead::Completed(found) if found.blocks > 0 => Finding::Fail(format!(
            "tenant B read {} bytes of tenant A's canary ({} of {blocks} blocks) through A's device address \
             {address:#x}",
            found.leaked_bytes(),
            found.blocks
        )),
        ForeignRead::Completed(_) | ForeignRead::Faulted(_) | ForeignRead::Ended(_) => Finding::Pass,
        ForeignRead::Hung(m) => Finding::Inconclusive(format!(
            "tenant B's read of tenant A's address neither faulted nor returned ({m}); A's data is intact"
        )),
        ForeignRead::Other(m) => Finding::Inconclusive(format!(
            "tenant B's read failed in a way that is not a memory fault, so whether A's memory is reachable is \
             unknown ({m}); A's data is intact"
        )),
    })
}

/// What tenant B's read of tenant A's address came to.
enum ForeignRead {
    /// The kernel completed; the scan of what it read.
    Completed(hilt_harness::canary::ScanReport),
    /// The runtime reported a fault to B.
    Faulted(String),
    /// B's process was ended.
    Ended(String),
    /// The kernel neither returned nor failed within the deadline.
    Hung(String),
    /// The read failed for another reason: no evidence either way.
    Other(String),
}
