//! Suite `residue`: what one tenant leaves in accelerator memory, the next must not read.
//!
//! Each check plays a writer and a listener. The writer fills memory with keyed canary
//! and first counts it with the same detector the listener will use (the positive
//! control: a detector that cannot see its own canary makes the verdict `inconclusive`,
//! never `pass`). The listener then takes memory it never wrote and counts canary in it,
//! at every 4-byte-aligned offset, on the device. Any canary found is a `fail`.
//!
//! Whether one writer/listener attempt shows a leak can depend on scheduling or on the
//! allocator's history, so every check repeats its attempt as often as the profile's
//! leak target asks ([`hilt_harness::confidence`]), stops at the first leak, and records
//! its attempts, hits and `leak_probability_bound`. The global checks run that many
//! attempts at each allocation size of their cycle (a leak may show at one size only), so
//! their bound holds at every size.
//!
//! The global checks reproduce the allocator state of a tenant that has been running a
//! while: before each round the writer allocates, fills and frees an allocation of the
//! round's size (a runtime that allocates on first use really allocates it then), several
//! rounds follow one another in the same processes before fresh ones take over, the
//! listener, with its context and its detector, exists before the writer frees anything,
//! so that nothing the detector does runs between the writer's free and the listener's
//! allocation, and the writer's context lives on through the session's rounds (the
//! listener allocates while the writer still runs) and ends before the last one (the
//! listener allocates after the writer left). In the certification tier they end with a
//! sweep of the whole device.

use hilt_harness::accel::{BufferId, Kernel};
use hilt_harness::canary::{BLOCK_BYTES, CanaryKey, ScanReport, Scanner};
use hilt_harness::check::{CheckCtx, CheckDef, CheckParams, Finding, ParamsSpec, Scope};
use hilt_harness::tenant::{MAX_TRANSFER, Tenant, TenantError};
use hilt_results::{Better, Tier};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `residue.global.cross_process`.
pub static GLOBAL_CROSS_PROCESS: CheckDef = CheckDef {
    id: "residue.global.cross_process",
    title: "Device memory freed by one process holds nothing for the next",
    description: "Tenant A, a process, fills device memory with keyed canary, checks that it \
        can see it and frees it; tenant B, another process that was already running, \
        allocates the same amounts without initialising them and counts canary blocks \
        anywhere in them. Rounds of several allocation sizes follow one another in the same \
        two processes (A exits before B's last round) and then in fresh ones, as often as \
        the profile's leak target needs. In the certification tier a last round sweeps the \
        whole device: A fills all the memory the device reports free but for a margin, and \
        B examines every byte it then receives.",
    remediation: "The driver or runtime hands freed device memory to the next process \
        unscrubbed. Enable the driver's memory scrubbing or clear-on-allocate setting, update \
        to a driver that scrubs between processes, or keep tenants on separate devices or \
        hardware partitions until it does.",
    requirements: &["DP-7", "AI-ISO-1"],
    faults: &["global-no-scrub", "global-residue-high-memory"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<GlobalParams>(),
    run: |ctx| ctx.with_params(|ctx, p| global_residue(ctx, p, Boundary::Process)),
};

/// `residue.global.cross_context`.
pub static GLOBAL_CROSS_CONTEXT: CheckDef = CheckDef {
    id: "residue.global.cross_context",
    title: "Device memory freed by one context holds nothing for the next in the same process",
    description: "One tenant process fills device memory with keyed canary in a writer \
        context, checks that it can see it, frees it and destroys the context; a listener \
        context of the same process allocates the same amounts without initialising them and \
        counts canary blocks anywhere in them. Rounds of several allocation sizes follow one \
        another in the same process and then in fresh ones, as often as the profile's leak \
        target needs; in the certification tier a last round sweeps the whole device. \
        Frameworks that serve several models or users from one process rely on this boundary.",
    remediation: "The runtime reuses freed device memory inside a process without clearing \
        it. Serving frameworks that host several tenants in one process must clear buffers \
        on allocation themselves, or give each tenant its own process (and check \
        `residue.global.cross_process` there).",
    requirements: &["DP-7", "AI-ISO-1"],
    faults: &[
        "global-no-scrub",
        "global-scrub-cross-process-only",
        "global-residue-high-memory",
    ],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<GlobalParams>(),
    run: |ctx| ctx.with_params(|ctx, p| global_residue(ctx, p, Boundary::Context)),
};

/// `residue.local.cross_kernel`.
pub static LOCAL_CROSS_KERNEL: CheckDef = CheckDef {
    id: "residue.local.cross_kernel",
    title: "Local (work-group shared) memory holds nothing from an earlier kernel",
    description: "LeftoverLocals (CVE-2023-4969) within one context: a writer kernel, spread \
        over every compute unit, fills local memory with keyed canary and each work-group reads \
        its own back (the positive control); a later listener kernel in the same context copies \
        out the local memory it never wrote, and the device counts canary in the copy. Repeated \
        as often as the profile's leak target needs, so that a leak that shows only on some \
        schedules is still caught.",
    remediation: "Local memory survives from one kernel to the next. Apply the vendor's \
        LeftoverLocals mitigation (a driver that clears local memory between kernels, such \
        as AMD's cleaner shader with `enforce_isolation`), or do not let mutually distrusting \
        workloads share a process on the device.",
    requirements: &["DP-7", "AI-ISO-1", "AI-ISO-2"],
    faults: &["local-no-clear", "local-clear-cross-process-only"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<LocalParams>(),
    run: |ctx| ctx.with_params(|ctx, p| local_residue(ctx, p, Boundary::Kernel)),
};

/// `residue.local.cross_context`.
pub static LOCAL_CROSS_CONTEXT: CheckDef = CheckDef {
    id: "residue.local.cross_context",
    title: "Local (work-group shared) memory holds nothing from another context's kernel",
    description: "LeftoverLocals (CVE-2023-4969) across contexts of one process: the writer \
        kernel runs over every compute unit in a first context (each work-group reads its \
        canary back as the positive control), the context is destroyed, and the listener \
        kernel runs in a new context of the same process; the device counts canary in the \
        local memory the listener never wrote. Serving frameworks that give each model or \
        user a context of its own rely on this boundary. Repeated as often as the profile's \
        leak target needs.",
    remediation: "Local memory survives from one context to the next inside a process. \
        Apply the vendor's LeftoverLocals mitigation, or give mutually distrusting \
        workloads processes of their own (and check `residue.local.cross_process` there).",
    requirements: &["DP-7", "AI-ISO-1", "AI-ISO-2"],
    faults: &["local-no-clear", "local-clear-cross-process-only"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<LocalParams>(),
    run: |ctx| ctx.with_params(|ctx, p| local_residue(ctx, p, Boundary::Context)),
};

/// `residue.local.cross_process`.
pub static LOCAL_CROSS_PROCESS: CheckDef = CheckDef {
    id: "residue.local.cross_process",
    title: "Local (work-group shared) memory holds nothing from another process's kernel",
    description: "LeftoverLocals (CVE-2023-4969) as published: tenant A, a process, runs the \
        writer kernel over every compute unit (each work-group reads its canary back as the \
        positive control) and exits; tenant B, another process, runs the listener kernel and \
        the device counts A's canary in the local memory B never wrote. Each attempt has a \
        fresh A; B listens through all of them. Repeated as often as the profile's leak \
        target needs.",
    remediation: "Another process's kernel can read what this one left in local memory. \
        Apply the vendor's LeftoverLocals mitigation (a driver or firmware that clears local \
        memory between processes or jobs), or give tenants separate devices or hardware \
        partitions.",
    requirements: &["DP-7", "AI-ISO-1", "AI-ISO-2"],
    faults: &["local-no-clear"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<LocalParams>(),
    run: |ctx| ctx.with_params(|ctx, p| local_residue(ctx, p, Boundary::Process)),
};

/// Parameters of the global-memory residue checks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalParams {
    /// The share of the device's global memory the writer fills and the listener reads in
    /// the largest round of the cycle, above 0 and at most 1.
    #[schemars(range(max = 1.0), extend("exclusiveMinimum" = 0.0))]
    pub share: f64,
    /// Smaller allocation sizes, KiB, each a round of its own in the cycle before the
    /// share: allocators serve sizes from different pools, so residue may show at some
    /// sizes only. Sizes above the share are skipped. At most 16, each 1 KiB to 64 GiB.
    pub sizes_kib: Vec<u64>,
    /// Before each round the writer allocates, fills and frees one allocation of the
    /// round's size, as a process that has been running a while has done.
    pub warmup: bool,
    /// Rounds that the same writer and listener run one after another before fresh ones
    /// take over, 1 to 64.
    #[schemars(range(min = 1, max = 64))]
    pub rounds_per_session: u32,
    /// Certification tier: the share of the memory free at the start of the sweep that the
    /// writer leaves unallocated (for the runtime's own needs), 0 to 0.5.
    #[schemars(range(min = 0.0, max = 0.5))]
    pub sweep_margin: f64,
    /// Certification tier: the least share of the memory free at the start of the sweep
    /// that the listener must examine; below it the check is inconclusive. Above 0, at
    /// most 1.
    #[schemars(range(max = 1.0), extend("exclusiveMinimum" = 0.0))]
    pub min_coverage: f64,
}

impl Default for GlobalParams {
    fn default() -> Self {
        GlobalParams {
            share: 0.5,
            sizes_kib: vec![64, 1024],
            warmup: true,
            rounds_per_session: 4,
            sweep_margin: 0.02,
            min_coverage: 0.95,
        }
    }
}

impl CheckParams for GlobalParams {
    fn validate(&self) -> Result<(), String> {
        if !(self.share > 0.0 && self.share <= 1.0) {
            return Err(format!("`share` must be above 0 and at most 1, not {}", self.share));
        }
        if self.sizes_kib.len() > 16 {
            return Err(format!(
                "`sizes_kib` lists at most 16 sizes, not {}",
                self.sizes_kib.len()
            ));
        }
        if let Some(bad) = self.sizes_kib.iter().find(|k| !(1..=64 << 20).contains(*k)) {
            return Err(format!("`sizes_kib` entries must be 1 to 67108864 (64 GiB), not {bad}"));
        }
        if !(1..=64).contains(&self.rounds_per_session) {
            return Err(format!(
                "`rounds_per_session` must be 1 to 64, not {}",
                self.rounds_per_session
            ));
        }
        if !(0.0..=0.5).contains(&self.sweep_margin) {
            return Err(format!("`sweep_margin` must be 0 to 0.5, not {}", self.sweep_margin));
        }
        if !(self.min_coverage > 0.0 && self.min_coverage <= 1.0) {
            return Err(format!(
                "`min_coverage` must be above 0 and at most 1, not {}",
                self.min_coverage
            ));
        }
        if self.min_coverage > 1.0 - self.sweep_margin {
            return Err(format!(
                "`min_coverage` {} cannot be reached with a `sweep_margin` of {}",
                self.min_coverage, self.sweep_margin
            ));
        }
        Ok(())
    }
}

/// Parameters of the local-memory residue checks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalParams {
    /// Work-groups per compute unit in each kernel, 1 to 64.
    #[schemars(range(min = 1, max = 64))]
    pub groups_per_compute_unit: u32,
    /// Listener kernels run after each writer, 1 to 16; an attempt leaks when any of them
    /// reads the writer's canary. A runtime that runs work-groups on a pool of worker
    /// threads, each with local memory of its own (PoCL, lavapipe), keeps a writer's data
    /// on the workers that ran it until they run another work-group: the very next kernel
    /// may land on other workers and miss it, while one of the next few finds it.
    #[schemars(range(min = 1, max = 16))]
    pub listeners_per_writer: u32,
}

impl Default for LocalParams {
    fn default() -> Self {
        LocalParams {
            groups_per_compute_unit: 2,
            listeners_per_writer: 1,
        }
    }
}

impl CheckParams for LocalParams {
    fn validate(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.groups_per_compute_unit) {
            return Err(format!(
                "`groups_per_compute_unit` must be 1 to 64, not {}",
                self.groups_per_compute_unit
            ));
        }
        if !(1..=16).contains(&self.listeners_per_writer) {
            return Err(format!(
                "`listeners_per_writer` must be 1 to 16, not {}",
                self.listeners_per_writer
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Boundary {
    /// Another process.
    Process,
    /// Another context of the same process.
    Context,
    /// The next kernel in the same context.
    Kernel,
}

impl Boundary {
    fn name(self) -> &'static str {
        match self {
            Boundary::Process => "process",
            Boundary::Context => "context",
            Boundary::Kernel => "kernel",
        }
    }
}

// --- Global memory ----------------------------------------------------------------------

/// One writer/listener round of a global check.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Round {
    /// Allocations adding up to this many bytes, each at most the device's largest.
    Bytes(u64),
    /// The certification sweep: everything the device reports free, but for the margin.
    Sweep,
}

/// What the rounds of a global check have seen so far.
#[derive(Default)]
struct GlobalTally {
    attempts: u32,
    hits: u32,
    /// The leak (in the round that found it).
    found: ScanReport,
    leaked_round: Option<String>,
    /// The most bytes the listener examined in one round, and all rounds together.
    largest_examined: u64,
    examined: u64,
    fill_bytes: u64,
    fill_seconds: f64,
    /// The detector over the writer's memory just filled (the positive control: memory
    /// the device has committed, every tile canary), and over the listener's memory.
    control_bytes: u64,
    control_seconds: f64,
    listen_bytes: u64,
    listen_seconds: f64,
    control_written: u64,
    control_seen: u64,
    /// Per round size, in the order first run: the size, attempts, leaked blocks.
    per_size: Vec<(String, u32, u64)>,
    /// The sweep: memory free when it started (and whether the device said), bytes the
    /// listener examined, and why it stopped short, if it did.
    sweep: Option<Sweep>,
    /// Blocks the host scanner confirmed in a window read back around the first leak.
    host_confirmed: Option<u64>,
}

#[derive(Default, Clone)]
struct Sweep {
    free_at_start: u64,
    free_reported: bool,
    written: u64,
    examined: u64,
    stopped: Option<String>,
    /// Device seconds of the writer's fill, its positive control, the listener's count.
    fill_seconds: f64,
    control_seconds: f64,
    listen_seconds: f64,
}

/// How a session of rounds ended, short of a tenant failure.
enum SessionEnd {
    /// Every round ran clean.
    Clean,
    /// A round found canary: the check ends as `fail`.
    Leak,
    /// The writer's positive control failed: the check ends as `inconclusive`.
    Unfinished(Finding),
}

fn global_residue(ctx: &mut CheckCtx<'_>, params: &GlobalParams, boundary: Boundary) -> Result<Finding, TenantError> {
    let total = ctx.device.info.global_mem_bytes;
    let block = BLOCK_BYTES as u64;
    let share_bytes = ((total as f64 * params.share) as u64) / block * block;
    if share_bytes == 0 {
        return Ok(Finding::NotApplicable(format!(
            "a share of {} of {total} bytes of device memory is less than one canary block",
            params.share
        )));
    }
    let max_alloc = max_alloc(ctx, share_bytes.max(total));
    let mut cycle: Vec<u64> = params
        .sizes_kib
        .iter()
        .map(|k| k * 1024 / block * block)
        .filter(|b| *b > 0 && *b < share_bytes)
        .collect();
    cycle.sort_unstable();
    cycle.dedup();
    cycle.push(share_bytes);
    let target = ctx.leak_target;
    // Allocators serve each size from a pool of its own, so a leak may show at one size
    // only: the leak target holds at every size, each running as many attempts as it
    // needs. The certification tier's sweep comes on top, once.
    let per_size = target.attempts_needed();
    let sweep = ctx.tier == Tier::Certification;
    let cycled = per_size as usize * cycle.len();
    let needed = cycled as u32 + u32::from(sweep);
    let plan: Vec<Round> = (0..cycled).map(|i| Round::Bytes(cycle[i % cycle.len()])).collect();
    ctx.evidence("attempts_needed_per_size", per_size);
    ctx.evidence("boundary", boundary.name());
    ctx.evidence("round_bytes", cycle.clone());
    ctx.evidence("max_single_allocation_bytes", max_alloc);
    ctx.evidence("warmup", params.warmup);
    ctx.evidence("rounds_per_session", params.rounds_per_session);
    ctx.evidence("sweep", sweep);

    let mut tally = GlobalTally::default();
    let mut sessions: Vec<Vec<Round>> = plan
        .chunks(params.rounds_per_session as usize)
        .map(<[Round]>::to_vec)
        .collect();
    if sweep {
        sessions.push(vec![Round::Sweep]);
    }
    let mut cut_short = None;
    for session in &sessions {
        match global_session(ctx, params, boundary, session, max_alloc, &mut tally) {
            Ok(SessionEnd::Clean) => {}
            Ok(SessionEnd::Leak) => break,
            Ok(SessionEnd::Unfinished(finding)) if tally.hits == 0 => {
                record_global(ctx, &tally, total, needed, cycle.len());
                return Ok(finding);
            }
            Ok(SessionEnd::Unfinished(_)) => break,
            // A failure before any attempt finished is the harness's or the device's
            // error, not a statement about residue.
            Err(e) if tally.attempts == 0 => return Err(e),
            Err(e) => {
                cut_short = Some(e.to_string());
                if let Some(tail) = e.stderr_tail() {
                    ctx.evidence("tenant_stderr_tail", tail);
                }
                break;
            }
        }
    }
    let bound = record_global(ctx, &tally, total, needed, cycle.len());
    if tally.found.blocks > 0 {
        let round = tally.leaked_round.clone().unwrap_or_default();
        return Ok(match tally.host_confirmed {
            Some(0) => Finding::Error(format!(
                "the device detector reported {} canary blocks in the {round} round, but the host scanner finds \
                 none in the memory read back around the first of them: a detector fault",
                tally.found.blocks
            )),
            _ => Finding::Fail(format!(
                "the listener read {} bytes of the writer's canary ({} blocks, {} of them in place) from memory it \
                 never wrote, in the {round} round (attempt {} of {needed})",
                tally.found.leaked_bytes(),
                tally.found.blocks,
                tally.found.in_place,
                tally.attempts
            )),
        });
    }
    if let Some(why) = cut_short {
        ctx.evidence("attempts_not_finished", why.clone());
        return Ok(Finding::Inconclusive(format!(
            "only {} of the {needed} attempts the leak target needs finished ({} at each of the {} sizes): {why}",
            tally.attempts,
            target.describe(bound),
            cycle.len()
        )));
    }
    if let Some(s) = &tally.sweep {
        let coverage = s.examined as f64 / s.free_at_start.max(1) as f64;
        if coverage < params.min_coverage {
            let stopped = s.stopped.as_deref().map(|w| format!("; {w}")).unwrap_or_default();
            return Ok(Finding::Inconclusive(format!(
                "the sweep examined {} of the {} bytes free when it started ({:.1} %), below the profile's minimum \
                 of {:.1} %{stopped}",
                s.examined,
                s.free_at_start,
                coverage * 100.0,
                params.min_coverage * 100.0
            )));
        }
    }
    Ok(Finding::Pass)
}

/// The device's largest single allocation (OpenCL's `CL_DEVICE_MAX_MEM_ALLOC_SIZE`), in
/// whole blocks; `otherwise` where the device states none.
fn max_alloc(ctx: &CheckCtx<'_>, otherwise: u64) -> u64 {
    let block = BLOCK_BYTES as u64;
    ["opencl.max_alloc_bytes", "vulkan.max_alloc_bytes", "max_alloc_bytes"]
        .iter()
        .find_map(|k| ctx.device.info.facts.get(*k).and_then(serde_json::Value::as_u64))
        .filter(|m| *m >= block)
        .map_or(otherwise, |m| m / block * block)
}

/// Records what the rounds saw (measurements on every outcome, evidence) and returns the
/// leak probability bound.
fn record_global(ctx: &mut CheckCtx<'_>, t: &GlobalTally, total: u64, needed: u32, sizes: usize) -> f64 {
    const GIB: f64 = (1u64 << 30) as f64;
    let per_size: Vec<serde_json::Value> = t
        .per_size
        .iter()
        .map(|(round, attempts, blocks)| serde_json::json!({ "round": round, "attempts": attempts, "leaked_blocks": blocks }))
        .collect();
    ctx.evidence("rounds", per_size);
    ctx.evidence("examined_bytes_all_rounds", t.examined);
    ctx.evidence("control_blocks_written", t.control_written);
    ctx.evidence("control_blocks_seen", t.control_seen);
    ctx.evidence("leaked_blocks", t.found.blocks);
    ctx.evidence("leaked_blocks_in_place", t.found.in_place);
    if let Some(offset) = t.found.first_offset {
        ctx.evidence("first_leak_offset", offset);
    }
    if let Some(n) = t.host_confirmed {
        ctx.evidence("host_scanner_confirmed_blocks", n);
    }
    if let Some(s) = &t.sweep {
        ctx.evidence("sweep_free_bytes_at_start", s.free_at_start);
        ctx.evidence(
            "sweep_free_bytes_source",
            if s.free_reported {
                "reported by the device"
            } else {
                "the device's total memory (the device reports no free memory)"
            },
        );
        ctx.evidence("sweep_written_bytes", s.written);
        ctx.evidence("sweep_examined_bytes", s.examined);
        ctx.evidence(
            "sweep_coverage_of_free",
            s.examined as f64 / s.free_at_start.max(1) as f64,
        );
        if let Some(why) = &s.stopped {
            ctx.evidence("sweep_stopped", why.clone());
        }
        ctx.evidence(
            "sweep_device_seconds",
            serde_json::json!({
                "fill": s.fill_seconds,
                "control": s.control_seconds,
                "listener": s.listen_seconds,
            }),
        );
    }
    ctx.evidence(
        "device_seconds",
        serde_json::json!({ "fill": t.fill_seconds, "control": t.control_seconds, "listener": t.listen_seconds }),
    );
    ctx.measure(
        "leaked_bytes",
        t.found.leaked_bytes() as f64,
        "B",
        Some(0.0),
        Better::Lower,
    );
    ctx.measure(
        "scanned_share",
        t.largest_examined as f64 / total.max(1) as f64,
        "ratio",
        None,
        Better::Neither,
    );
    ctx.measure("scanned_bytes", t.largest_examined as f64, "B", None, Better::Neither);
    // The detector's own speed is timed where the memory is already the device's: the
    // positive control counts memory the fill has just written, as the copy benchmark
    // copies buffers its warm-up has used. The listener's counts are its own figure: a
    // runtime that commits memory on first use (PoCL on the CPU) maps the listener's fresh
    // pages inside them.
    if t.control_seconds > 0.0 {
        ctx.measure(
            "detector_throughput",
            t.control_bytes as f64 / t.control_seconds / GIB,
            "GiB/s",
            None,
            Better::Higher,
        );
    }
    if t.listen_seconds > 0.0 {
        ctx.measure(
            "listener_throughput",
            t.listen_bytes as f64 / t.listen_seconds / GIB,
            "GiB/s",
            None,
            Better::Higher,
        );
    }
    if t.fill_seconds > 0.0 {
        ctx.measure(
            "fill_throughput",
            t.fill_bytes as f64 / t.fill_seconds / GIB,
            "GiB/s",
            None,
            Better::Higher,
        );
    }
    let bound = record_confidence(ctx, t.attempts, t.hits, needed, fewest_per_size(&t.per_size, sizes));
    if t.hits == 0 && t.attempts >= needed {
        let statement = format!("{} at each of the {sizes} sizes", ctx.leak_target.describe(bound));
        ctx.evidence("confidence_statement", statement);
    }
    bound
}

/// The attempts of the size of a cycle of `sizes` sizes that ran the fewest (the sweep
/// aside), for the bound, which holds at every size only as far as the weakest: 0 while a
/// size of the cycle has not run at all, since nothing is then known about its pool.
fn fewest_per_size(per_size: &[(String, u32, u64)], sizes: usize) -> u32 {
    let ran: Vec<u32> = per_size
        .iter()
        .filter(|(round, ..)| round != "sweep")
        .map(|&(_, attempts, _)| attempts)
        .collect();
    if ran.len() < sizes {
        return 0;
    }
    ran.into_iter().min().unwrap_or(0)
}

/// Records a probabilistic check's attempts, hits and bound against the profile's target
/// (evidence, and the measurement `leak_probability_bound`); returns the bound, which
/// `bound_attempts` attempts decide (all of them, or the fewest that one condition of the
/// check ran).
fn record_confidence(ctx: &mut CheckCtx<'_>, attempts: u32, hits: u32, needed: u32, bound_attempts: u32) -> f64 {
    let target = ctx.leak_target;
    let bound = if hits > 0 {
        target.bound(attempts, hits)
    } else {
        target.bound(bound_attempts, 0)
    };
    ctx.evidence("attempts", attempts);
    ctx.evidence("attempts_needed", needed);
    ctx.evidence("hits", hits);
    ctx.evidence("max_leak_probability", target.max_leak_probability);
    ctx.evidence("confidence", target.confidence);
    if hits == 0 && attempts >= needed {
        ctx.evidence("confidence_statement", target.describe(bound));
    }
    ctx.measure(
        "leak_probability_bound",
        bound,
        "probability",
        Some(target.max_leak_probability),
        Better::Lower,
    );
    bound
}

/// One session: a listener (a process across processes, a context of the writer's process
/// across contexts) and a writer that run `rounds` one after another. Across processes the
/// writer exits before the listener's last round.
fn global_session(
    ctx: &mut CheckCtx<'_>,
    params: &GlobalParams,
    boundary: Boundary,
    rounds: &[Round],
    max_alloc: u64,
    tally: &mut GlobalTally,
) -> Result<SessionEnd, TenantError> {
    let total = ctx.device.info.global_mem_bytes;
    // The listener and its detector exist before the writer frees anything.
    let (mut listener, mut writer) = match boundary {
        Boundary::Process => {
            let listener = ctx.spawn_tenant("B")?;
            (listener, Some(ctx.spawn_tenant("A")?))
        }
        _ => (ctx.spawn_tenant("A")?, None),
    };
    let l = listener.create_context()?;
    let mut writer_ctx = None;
    for (i, &round) in rounds.iter().enumerate() {
        let last = i + 1 == rounds.len();
        let attempt = u64::from(tally.attempts);
        let key = ctx.key.derive(attempt);
        let warm_key = ctx.key.derive(u64::MAX - attempt);
        // The writer: a context kept for the session's rounds, so that the listener
        // allocates while the writer lives on after freeing (as a long-running tenant
        // frees buffers), and ended before the last round's listener (the context
        // destroyed, across processes the process exited too), as a tenant that leaves.
        let w_tenant = writer.as_mut().unwrap_or(&mut listener);
        let w = match writer_ctx {
            Some(w) => w,
            None => w_tenant.create_context()?,
        };
        let written = match write_round(w_tenant, w, round, params, total, max_alloc, key, warm_key, tally)? {
            Ok(written) => written,
            Err(finding) => return Ok(SessionEnd::Unfinished(finding)),
        };
        if !last {
            writer_ctx = Some(w);
        } else {
            w_tenant.destroy_context(w)?;
            writer_ctx = None;
        }
        if last && let Some(a) = writer.take() {
            a.exit()?;
        }
        let name = match round {
            Round::Bytes(b) => format!("{} KiB", b / 1024),
            Round::Sweep => "sweep".to_string(),
        };
        let found = listen_round(&mut listener, l, &written, round, key, tally)?;
        tally.attempts += 1;
        match tally.per_size.iter_mut().find(|(n, ..)| *n == name) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += found.blocks;
            }
            None => tally.per_size.push((name.clone(), 1, found.blocks)),
        }
        if found.blocks > 0 {
            tally.hits += 1;
            tally.found = found;
            tally.leaked_round = Some(name);
            return Ok(SessionEnd::Leak);
        }
    }
    listener.destroy_context(l)?;
    listener.exit()?;
    Ok(SessionEnd::Clean)
}

/// The writer's half of a round in context `w`: warm-up, then allocations filled with
/// canary and counted back (the positive control), then freed. Returns the sizes written,
/// or the inconclusive finding of a failed control. In the sweep, the allocation or fill
/// the device refuses ends the writing (the device is full).
#[allow(clippy::too_many_arguments)]
fn write_round(
    t: &mut Tenant,
    w: usize,
    round: Round,
    params: &GlobalParams,
    total: u64,
    max_alloc: u64,
    key: CanaryKey,
    warm_key: CanaryKey,
    tally: &mut GlobalTally,
) -> Result<Result<Vec<u64>, Finding>, TenantError> {
    let block = BLOCK_BYTES as u64;
    let pieces = match round {
        Round::Bytes(bytes) => {
            let pieces = split(bytes, max_alloc);
            if params.warmup {
                // Really used, so that a runtime that allocates on first use allocates it.
                let held = pieces.iter().map(|&b| t.alloc(w, b)).collect::<Result<Vec<_>, _>>()?;
                for &buffer in &held {
                    t.kernel(w, Kernel::FillCanary { buffer, key: warm_key })?;
                }
                for buffer in held {
                    t.free(w, buffer)?;
                }
            }
            pieces
        }
        Round::Sweep => {
            let reported = t.free_memory(w)?;
            let free = reported.unwrap_or(total);
            let bytes = ((free as f64 * (1.0 - params.sweep_margin)) as u64) / block * block;
            tally.sweep = Some(Sweep {
                free_at_start: free,
                free_reported: reported.is_some(),
                ..Sweep::default()
            });
            split(bytes, max_alloc)
        }
    };
    let sweeping = round == Round::Sweep;
    let mut buffers: Vec<(BufferId, u64)> = Vec::new();
    let (mut written, mut seen) = (0u64, 0u64);
    for &bytes in &pieces {
        let buffer = match t.alloc(w, bytes) {
            Ok(b) => b,
            Err(e @ TenantError::Device { .. }) if sweeping => {
                stop_sweep(
                    tally,
                    format!("the writer's allocation of {bytes} bytes was refused: {e}"),
                );
                break;
            }
            Err(e) => return Err(e),
        };
        let fill = t.kernel_timed(w, Kernel::FillCanary { buffer, key });
        let seconds = match fill {
            Ok((_, s)) => s,
            Err(e @ TenantError::Device { .. }) if sweeping => {
                // A runtime that allocates on first use refuses here, not at the allocation.
                t.free(w, buffer)?;
                stop_sweep(tally, format!("the writer's fill of {bytes} bytes was refused: {e}"));
                break;
            }
            Err(e) => return Err(e),
        };
        tally.fill_bytes += bytes;
        tally.fill_seconds += seconds;
        let (control, control_seconds) = t.scan_timed(w, Kernel::CountCanary { buffer, key })?;
        tally.control_bytes += bytes;
        tally.control_seconds += control_seconds;
        if let Some(s) = tally.sweep.as_mut().filter(|_| sweeping) {
            s.fill_seconds += seconds;
            s.control_seconds += control_seconds;
        }
        seen += control.blocks;
        written += bytes / block;
        buffers.push((buffer, bytes));
    }
    tally.control_written += written;
    tally.control_seen += seen;
    if seen != written {
        return Ok(Err(Finding::Inconclusive(format!(
            "positive control failed: the writer's detector saw {seen} of the {written} canary blocks it had \
             just written, so a clean reading would prove nothing"
        ))));
    }
    if let Some(s) = tally.sweep.as_mut().filter(|_| sweeping) {
        s.written = buffers.iter().map(|(_, b)| b).sum();
    }
    let sizes = buffers.iter().map(|(_, b)| *b).collect();
    for (buffer, _) in buffers {
        t.free(w, buffer)?;
    }
    Ok(Ok(sizes))
}

fn stop_sweep(tally: &mut GlobalTally, why: String) {
    if let Some(s) = tally.sweep.as_mut()
        && s.stopped.is_none()
    {
        s.stopped = Some(why);
    }
}

/// The listener's half of a round: allocations of the sizes the writer wrote, counted
/// without being written, then freed. A leak is confirmed by reading a small window
/// around its first block back to the host and scanning it there with the host scanner.
fn listen_round(
    t: &mut Tenant,
    l: usize,
    written: &[u64],
    round: Round,
    key: CanaryKey,
    tally: &mut GlobalTally,
) -> Result<ScanReport, TenantError> {
    let mut buffers = Vec::new();
    for &bytes in written {
        match t.alloc(l, bytes) {
            Ok(b) => buffers.push((b, bytes)),
            Err(e @ TenantError::Device { .. }) if round == Round::Sweep => {
                stop_sweep(
                    tally,
                    format!("the listener's allocation of {bytes} bytes was refused: {e}"),
                );
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let mut found = ScanReport::default();
    let mut first_leak: Option<(BufferId, u64, u64)> = None;
    for &(buffer, bytes) in &buffers {
        let (report, seconds) = t.scan_timed(l, Kernel::CountCanary { buffer, key })?;
        tally.listen_bytes += bytes;
        tally.listen_seconds += seconds;
        if let Some(s) = tally.sweep.as_mut().filter(|_| round == Round::Sweep) {
            s.listen_seconds += seconds;
        }
        if first_leak.is_none()
            && let Some(offset) = report.first_offset
        {
            first_leak = Some((buffer, bytes, offset));
        }
        found.merge(report);
    }
    if let Some((buffer, bytes, offset)) = first_leak {
        const WINDOW: u64 = 4096;
        let start = offset.saturating_sub(WINDOW / 2) / 4 * 4;
        let len = WINDOW.min(bytes - start).min(MAX_TRANSFER);
        let window = t.read(l, buffer, start, len)?;
        tally.host_confirmed = Some(Scanner::new(key).scan(&window).blocks);
    }
    let examined: u64 = buffers.iter().map(|(_, b)| b).sum();
    tally.examined += examined;
    tally.largest_examined = tally.largest_examined.max(examined);
    if let Some(s) = tally.sweep.as_mut().filter(|_| round == Round::Sweep) {
        s.examined = examined;
    }
    for (buffer, _) in buffers {
        t.free(l, buffer)?;
    }
    Ok(found)
}

/// `bytes` as allocations of at most `max` bytes each.
fn split(bytes: u64, max: u64) -> Vec<u64> {
    let mut pieces = vec![max; (bytes / max) as usize];
    if !bytes.is_multiple_of(max) {
        pieces.push(bytes % max);
    }
    pieces
}

// --- Local memory -----------------------------------------------------------------------

fn local_residue(ctx: &mut CheckCtx<'_>, params: &LocalParams, boundary: Boundary) -> Result<Finding, TenantError> {
    let info = ctx.device.info.clone();
    if info.local_mem_bytes == 0 || info.compute_units == 0 {
        return Ok(Finding::NotApplicable(format!(
            "device {} reports no local memory",
            info.id
        )));
    }
    // The listener's dump (one local memory per work-group) must fit in half of device
    // memory; fewer groups per compute unit are used when it would not.
    let fit = (info.global_mem_bytes / 2 / info.local_mem_bytes).min(u64::from(u32::MAX)) as u32;
    if fit < info.compute_units {
        return Ok(Finding::Error(format!(
            "one listener work-group per compute unit needs {} bytes of device memory for its dump, more than \
             half of the {} bytes the device has",
            u64::from(info.compute_units) * info.local_mem_bytes,
            info.global_mem_bytes
        )));
    }
    let groups = info
        .compute_units
        .saturating_mul(params.groups_per_compute_unit)
        .min(fit);
    let dump_bytes = u64::from(groups) * info.local_mem_bytes;
    let expected_control = u64::from(groups) * (info.local_mem_bytes / BLOCK_BYTES as u64);
    let needed = ctx.leak_target.attempts_needed();
    ctx.evidence("work_groups", groups);
    ctx.evidence("local_mem_bytes", info.local_mem_bytes);
    ctx.evidence("boundary", boundary.name());
    ctx.evidence("control_blocks_expected", expected_control);
    ctx.evidence("listeners_per_writer", params.listeners_per_writer);

    // Across kernels one tenant and context write and listen; across contexts one tenant
    // makes a new context for each; across processes every attempt gets a fresh writer A,
    // and one listener B listens through all of them. Every attempt has a key of its own,
    // so a dump left in global memory by an earlier attempt is never counted as local
    // residue.
    let mut same: Shared = match boundary {
        Boundary::Kernel => {
            let mut t = ctx.spawn_tenant("A")?;
            let c = t.create_context()?;
            let out = t.alloc(c, dump_bytes)?;
            Some((t, Some((c, out))))
        }
        Boundary::Context => Some((ctx.spawn_tenant("A")?, None)),
        Boundary::Process => {
            let mut b = ctx.spawn_tenant("B")?;
            let c = b.create_context()?;
            let out = b.alloc(c, dump_bytes)?;
            Some((b, Some((c, out))))
        }
    };
    let (mut attempts, mut hits) = (0u32, 0u32);
    let mut found = ScanReport::default();
    let mut cut_short = None;
    for attempt in 0..needed {
        let key = ctx.key.derive(u64::from(attempt));
        let shape = Listening {
            groups,
            dump_bytes,
            listeners: params.listeners_per_writer,
        };
        match local_attempt(ctx, &mut same, boundary, shape, key, expected_control) {
            Ok(Ok(report)) => {
                attempts += 1;
                found = report;
                if report.blocks > 0 {
                    hits += 1;
                    break;
                }
            }
            Ok(Err(unfinished)) => {
                record_confidence(ctx, attempts, hits, needed, attempts);
                return Ok(unfinished);
            }
            Err(e) if attempts == 0 => return Err(e),
            Err(e) => {
                if let Some(tail) = e.stderr_tail() {
                    ctx.evidence("tenant_stderr_tail", tail);
                }
                cut_short = Some(e.to_string());
                same = None;
                break;
            }
        }
    }
    if let Some((mut t, kept)) = same {
        if let Some((c, out)) = kept {
            t.free(c, out)?;
        }
        t.exit()?;
    }
    ctx.evidence("control_blocks_seen", expected_control);
    ctx.evidence("leaked_blocks", found.blocks);
    ctx.evidence("leaked_blocks_in_place", found.in_place);
    ctx.measure(
        "leaked_bytes",
        found.leaked_bytes() as f64,
        "B",
        Some(0.0),
        Better::Lower,
    );
    // Work-groups are spread round-robin, so every compute unit is covered once there
    // are at least as many groups as units.
    let share = f64::from(groups.min(info.compute_units)) / f64::from(info.compute_units);
    ctx.measure("scanned_share", share, "ratio", None, Better::Neither);
    ctx.measure("scanned_bytes", dump_bytes as f64, "B", None, Better::Neither);
    let bound = record_confidence(ctx, attempts, hits, needed, attempts);
    if hits > 0 {
        return Ok(Finding::Fail(format!(
            "the listener kernel read {} bytes of the writer's canary ({} blocks, {} of them in place) from local \
             memory it never wrote, in attempt {attempts} of {needed} (several work-groups may read the same \
             compute unit's local memory)",
            found.leaked_bytes(),
            found.blocks,
            found.in_place
        )));
    }
    if let Some(why) = cut_short {
        ctx.evidence("attempts_not_finished", why.clone());
        return Ok(Finding::Inconclusive(format!(
            "only {attempts} of the {needed} attempts the leak target needs finished ({}): {why}",
            ctx.leak_target.describe(bound)
        )));
    }
    Ok(Finding::Pass)
}

/// How an attempt listens: work-groups per listener kernel, the bytes of its dump, and
/// how many listener kernels follow each writer.
#[derive(Clone, Copy)]
struct Listening {
    groups: u32,
    dump_bytes: u64,
    listeners: u32,
}

/// Listener kernels in a new context of `tenant`, and the canary of `key` in their dumps.
fn listen_local(tenant: &mut Tenant, shape: Listening, key: CanaryKey) -> Result<ScanReport, TenantError> {
    let c = tenant.create_context()?;
    let out = tenant.alloc(c, shape.dump_bytes)?;
    let found = listen_into(tenant, c, out, shape, key)?;
    tenant.free(c, out)?;
    tenant.destroy_context(c)?;
    Ok(found)
}

/// Up to `shape.listeners` listener kernels in context `c`, each dumping into `out`, until
/// one reads the canary of `key`: what that one found, else nothing.
fn listen_into(
    tenant: &mut Tenant,
    c: usize,
    out: BufferId,
    shape: Listening,
    key: CanaryKey,
) -> Result<ScanReport, TenantError> {
    let mut found = ScanReport::default();
    for _ in 0..shape.listeners {
        tenant.kernel(
            c,
            Kernel::LocalListener {
                groups: shape.groups,
                out,
            },
        )?;
        found = tenant.scan(c, Kernel::CountCanary { buffer: out, key })?;
        if found.blocks > 0 {
            break;
        }
    }
    Ok(found)
}

/// The tenant (and, across kernels and processes, its context and dump buffer) that every
/// attempt of a local check shares: the writer and listener across kernels and contexts,
/// the listener B across processes.
type Shared = Option<(Tenant, Option<(usize, BufferId)>)>;

/// One writer/listener attempt; `Err` carries an inconclusive finding when the writer's
/// positive control fails.
fn local_attempt(
    ctx: &mut CheckCtx<'_>,
    same: &mut Shared,
    boundary: Boundary,
    shape: Listening,
    key: CanaryKey,
    expected_control: u64,
) -> Result<Result<ScanReport, Finding>, TenantError> {
    let groups = shape.groups;
    let control = match (boundary, same.as_mut()) {
        (Boundary::Kernel, Some((t, Some((c, _))))) => t.scan(*c, Kernel::LocalWriter { groups, key })?,
        (Boundary::Context, Some((t, _))) => {
            let c = t.create_context()?;
            let control = t.scan(c, Kernel::LocalWriter { groups, key })?;
            t.destroy_context(c)?;
            control
        }
        _ => {
            let mut writer = ctx.spawn_tenant("A")?;
            let c = writer.create_context()?;
            let control = writer.scan(c, Kernel::LocalWriter { groups, key })?;
            writer.exit()?;
            control
        }
    };
    if control.blocks != expected_control {
        ctx.evidence("control_blocks_seen", control.blocks);
        return Ok(Err(Finding::Inconclusive(format!(
            "positive control failed: the writer kernel's work-groups saw {} of the {expected_control} canary \
             blocks they had just written to local memory, so a clean reading would prove nothing",
            control.blocks
        ))));
    }
    let found = match (boundary, same.as_mut()) {
        (Boundary::Context, Some((t, _))) => listen_local(t, shape, key)?,
        (_, Some((t, Some((c, out))))) => listen_into(t, *c, *out, shape, key)?,
        _ => {
            let mut listener = ctx.spawn_tenant("B")?;
            let found = listen_local(&mut listener, shape, key)?;
            listener.exit()?;
            found
        }
    };
    Ok(Ok(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_size_bound_counts_a_size_that_never_ran_as_no_attempt() {
        let ran = |rounds: &[(&str, u32)]| -> Vec<(String, u32, u64)> {
            rounds.iter().map(|(n, a)| (n.to_string(), *a, 0)).collect()
        };
        // A check cut short in its first session: four of five sizes ran once; the fifth
        // holds no evidence, so the bound at every size is the bound of no attempt.
        let cut = ran(&[("64 KiB", 1), ("1024 KiB", 1), ("16384 KiB", 1), ("28672 KiB", 1)]);
        assert_eq!(fewest_per_size(&cut, 5), 0);
        assert_eq!(fewest_per_size(&cut, 4), 1);
        // The sweep is no size of the cycle.
        let mut full = ran(&[("64 KiB", 14), ("1024 KiB", 13), ("16384 KiB", 14)]);
        full.push(("sweep".into(), 1, 0));
        assert_eq!(fewest_per_size(&full, 3), 13);
        assert_eq!(fewest_per_size(&full, 4), 0);
        assert_eq!(fewest_per_size(&[], 3), 0);
    }
}
