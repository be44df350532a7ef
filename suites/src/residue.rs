//! Suite `residue`: what one tenant leaves in accelerator memory, the next must not read.
//!
//! Each check plays a writer and a listener. The writer fills memory with keyed canary
//! and first reads it back through the same detector the listener will use (the positive
//! control: a detector that cannot see its own canary makes the verdict `inconclusive`,
//! never `pass`). The listener then takes memory it never wrote and counts canary in it,
//! at any byte offset. Any canary found is a `fail`.

use hilt_harness::accel::Kernel;
use hilt_harness::canary::{BLOCK_BYTES, CanaryKey, ScanReport};
use hilt_harness::check::{CheckCtx, CheckDef, CheckParams, Finding, ParamsSpec, Scope};
use hilt_harness::tenant::TenantError;
use hilt_results::Better;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `residue.global.cross_process`.
pub static GLOBAL_CROSS_PROCESS: CheckDef = CheckDef {
    id: "residue.global.cross_process",
    title: "Device memory freed by one process holds nothing for the next",
    description: "Tenant A, a process, fills a share of device memory with keyed canary, \
        checks that it can see it, frees it and exits. Tenant B, another process, allocates \
        the same amount without initialising it and counts canary blocks anywhere in it.",
    remediation: "The driver or runtime hands freed device memory to the next process \
        unscrubbed. Enable the driver's memory scrubbing or clear-on-allocate setting, update \
        to a driver that scrubs between processes, or keep tenants on separate devices or \
        hardware partitions until it does.",
    requirements: &["DP-7", "AI-ISO-1"],
    faults: &["global-no-scrub"],
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
    description: "One tenant process fills a share of device memory with keyed canary in a \
        first context, checks that it can see it, frees it and destroys the context; a second \
        context of the same process allocates the same amount without initialising it and \
        counts canary blocks anywhere in it. Frameworks that serve several models or users \
        from one process rely on this boundary.",
    remediation: "The runtime reuses freed device memory inside a process without clearing \
        it. Serving frameworks that host several tenants in one process must clear buffers \
        on allocation themselves, or give each tenant its own process (and check \
        `residue.global.cross_process` there).",
    requirements: &["DP-7", "AI-ISO-1"],
    faults: &["global-no-scrub", "global-scrub-cross-process-only"],
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
        out the local memory it never wrote, and the host counts canary in the copy. Repeated \
        `attempts` times so that a leak that shows only on some schedules is still caught.",
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
        kernel runs in a new context of the same process; the host counts canary in the \
        local memory the listener never wrote. Serving frameworks that give each model or \
        user a context of its own rely on this boundary. Repeated `attempts` times.",
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
        the host counts A's canary in the local memory B never wrote. Repeated `attempts` \
        times.",
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
    /// the last and largest round, above 0 and at most 1.
    #[schemars(range(max = 1.0), extend("exclusiveMinimum" = 0.0))]
    pub share: f64,
    /// Smaller allocation sizes, KiB, each tried in a round of its own before the share:
    /// allocators serve sizes from different pools, so residue may show at some sizes
    /// only. Sizes above the share are skipped. At most 16, each 1 KiB to 64 GiB.
    pub sizes_kib: Vec<u64>,
    /// Before writing, the writer allocates and frees one allocation of the round's size,
    /// as a process that has been running a while has done.
    pub warmup: bool,
}

impl Default for GlobalParams {
    fn default() -> Self {
        GlobalParams {
            share: 0.5,
            sizes_kib: vec![64, 1024],
            warmup: true,
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
        Ok(())
    }
}

/// Parameters of the local-memory residue check.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalParams {
    /// How many writer/listener pairs to run, 1 to 1000.
    #[schemars(range(min = 1, max = 1000))]
    pub attempts: u32,
    /// Work-groups per compute unit in each kernel, 1 to 64.
    #[schemars(range(min = 1, max = 64))]
    pub groups_per_compute_unit: u32,
}

impl Default for LocalParams {
    fn default() -> Self {
        LocalParams {
            attempts: 4,
            groups_per_compute_unit: 2,
        }
    }
}

impl CheckParams for LocalParams {
    fn validate(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.attempts) {
            return Err(format!("`attempts` must be 1 to 1000, not {}", self.attempts));
        }
        if !(1..=64).contains(&self.groups_per_compute_unit) {
            return Err(format!(
                "`groups_per_compute_unit` must be 1 to 64, not {}",
                self.groups_per_compute_unit
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
    // A device may cap single allocations (OpenCL's CL_DEVICE_MAX_MEM_ALLOC_SIZE): larger
    // rounds are made of several allocations.
    let max_alloc = ["opencl.max_alloc_bytes", "vulkan.max_alloc_bytes", "max_alloc_bytes"]
        .iter()
        .find_map(|k| ctx.device.info.facts.get(*k).and_then(serde_json::Value::as_u64))
        .filter(|m| *m >= block)
        .map_or(share_bytes, |m| m / block * block);
    let mut sizes: Vec<u64> = params
        .sizes_kib
        .iter()
        .map(|k| k * 1024 / block * block)
        .filter(|b| *b > 0 && *b < share_bytes)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes.push(share_bytes);
    ctx.evidence("boundary", boundary.name());
    ctx.evidence("allocation_bytes", share_bytes);
    ctx.evidence("round_bytes", sizes.clone());
    ctx.evidence("max_single_allocation_bytes", max_alloc);
    ctx.evidence("warmup", params.warmup);

    let mut total_found = ScanReport::default();
    let mut rounds = Vec::new();
    let mut leaking = Vec::new();
    let mut cut_short = None;
    for (round, &bytes) in sizes.iter().enumerate() {
        let key = ctx.key.derive(round as u64);
        let pieces = split(bytes, max_alloc);
        // A leak seen in an earlier round stands even if a later round cannot finish.
        let found = match global_round(ctx, &pieces, key, params.warmup, boundary) {
            Ok(Ok(found)) => found,
            Ok(Err(unfinished)) if total_found.blocks == 0 => return Ok(unfinished),
            Err(e) if total_found.blocks == 0 => return Err(e),
            Ok(Err(unfinished)) => {
                cut_short = Some(format!("{unfinished:?}"));
                break;
            }
            Err(e) => {
                cut_short = Some(e.to_string());
                break;
            }
        };
        rounds.push(serde_json::json!({
            "bytes": bytes,
            "leaked_blocks": found.blocks,
            "leaked_blocks_in_place": found.in_place,
        }));
        if found.blocks > 0 {
            leaking.push(format!("{} KiB", bytes / 1024));
        }
        total_found.merge(found);
    }
    ctx.evidence("rounds", serde_json::Value::Array(rounds));
    // `share_bytes` is at least one block, so `total` is not zero here.
    let share = share_bytes as f64 / total.max(1) as f64;
    let mut context = if leaking.is_empty() {
        String::new()
    } else {
        format!(
            " (in {} of {} rounds: at {})",
            leaking.len(),
            sizes.len(),
            leaking.join(", ")
        )
    };
    if let Some(why) = cut_short {
        ctx.evidence("rounds_not_finished", why.clone());
        context.push_str(&format!("; the later rounds did not finish: {why}"));
    }
    Ok(judge_leak(ctx, &total_found, share, "the listener", &context))
}

/// One writer/listener round over allocations of `pieces` bytes; `Err` carries an
/// inconclusive finding when the writer's positive control fails.
fn global_round(
    ctx: &mut CheckCtx<'_>,
    pieces: &[u64],
    key: CanaryKey,
    warmup: bool,
    boundary: Boundary,
) -> Result<Result<ScanReport, Finding>, TenantError> {
    let block = BLOCK_BYTES as u64;
    let mut writer = ctx.spawn_tenant("A")?;
    let first = writer.create_context()?;
    if warmup {
        let held = pieces
            .iter()
            .map(|&b| writer.alloc(first, b))
            .collect::<Result<Vec<_>, _>>()?;
        for b in held {
            writer.free(first, b)?;
        }
    }
    let mut buffers = Vec::new();
    let mut seen = 0;
    for &bytes in pieces {
        let buffer = writer.alloc(first, bytes)?;
        writer.kernel(first, Kernel::FillCanary { buffer, key })?;
        seen += writer.scan(first, Kernel::CountCanary { buffer, key })?.blocks;
        buffers.push(buffer);
    }
    let written: u64 = pieces.iter().map(|b| b / block).sum();
    ctx.evidence("control_blocks_seen", seen);
    ctx.evidence("control_blocks_written", written);
    if seen != written {
        return Ok(Err(Finding::Inconclusive(format!(
            "positive control failed: the writer's detector saw {seen} of the {written} canary blocks it had \
             just written, so a clean reading would prove nothing"
        ))));
    }
    for buffer in buffers {
        writer.free(first, buffer)?;
    }
    writer.destroy_context(first)?;

    let found = match boundary {
        Boundary::Process => {
            writer.exit()?;
            let mut listener = ctx.spawn_tenant("B")?;
            let found = listen_global(&mut listener, pieces, key)?;
            listener.exit()?;
            found
        }
        Boundary::Context | Boundary::Kernel => {
            let found = listen_global(&mut writer, pieces, key)?;
            writer.exit()?;
            found
        }
    };
    Ok(Ok(found))
}

/// `bytes` as allocations of at most `max` bytes each.
fn split(bytes: u64, max: u64) -> Vec<u64> {
    let mut pieces = vec![max; (bytes / max) as usize];
    if !bytes.is_multiple_of(max) {
        pieces.push(bytes % max);
    }
    pieces
}

fn listen_global(
    tenant: &mut hilt_harness::tenant::Tenant,
    pieces: &[u64],
    key: CanaryKey,
) -> Result<ScanReport, TenantError> {
    let context = tenant.create_context()?;
    let mut found = ScanReport::default();
    let buffers = pieces
        .iter()
        .map(|&b| tenant.alloc(context, b))
        .collect::<Result<Vec<_>, _>>()?;
    for &buffer in &buffers {
        found.merge(tenant.scan(context, Kernel::CountCanary { buffer, key })?);
    }
    for buffer in buffers {
        tenant.free(context, buffer)?;
    }
    tenant.destroy_context(context)?;
    Ok(found)
}

/// Records the measurements of a listener's scan and turns it into a verdict.
/// `scanned_share` is the share of the device's memory of that kind the listener read.
fn judge_leak(ctx: &mut CheckCtx<'_>, found: &ScanReport, scanned_share: f64, who: &str, context: &str) -> Finding {
    ctx.measure(
        "leaked_bytes",
        found.leaked_bytes() as f64,
        "B",
        Some(0.0),
        Better::Lower,
    );
    ctx.measure("scanned_share", scanned_share, "ratio", None, Better::Neither);
    ctx.evidence("scanned_bytes", found.scanned);
    ctx.evidence("leaked_blocks", found.blocks);
    ctx.evidence("leaked_blocks_in_place", found.in_place);
    if let Some(offset) = found.first_offset {
        ctx.evidence("first_leak_offset", offset);
    }
    if found.blocks == 0 {
        Finding::Pass
    } else {
        Finding::Fail(format!(
            "{who} read {} bytes of the writer's canary ({} blocks, {} of them in place) from memory it never wrote{context}",
            found.leaked_bytes(),
            found.blocks,
            found.in_place
        ))
    }
}

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
    ctx.evidence("work_groups", groups);
    ctx.evidence("local_mem_bytes", info.local_mem_bytes);
    ctx.evidence("attempts", params.attempts);
    ctx.evidence("boundary", boundary.name());
    ctx.evidence("control_blocks_expected", expected_control);

    // Across kernels one tenant and context write and listen; across contexts one tenant
    // makes a new context for each; across processes every attempt gets a fresh writer A
    // and a fresh listener B. Every attempt has a key of its own, so a dump left in
    // global memory by an earlier attempt is never counted as local residue.
    let mut same = match boundary {
        Boundary::Kernel => {
            let mut t = ctx.spawn_tenant("A")?;
            let c = t.create_context()?;
            let out = t.alloc(c, dump_bytes)?;
            Some((t, Some((c, out))))
        }
        Boundary::Context => Some((ctx.spawn_tenant("A")?, None)),
        Boundary::Process => None,
    };
    let mut total = ScanReport::default();
    let mut worst = ScanReport::default();
    let mut leaking_attempts = 0u32;
    let mut cut_short = None;
    for attempt in 0..params.attempts {
        let key = ctx.key.derive(u64::from(attempt));
        // A leak seen in an earlier attempt stands even if a later attempt cannot finish.
        let found = match local_attempt(ctx, &mut same, groups, dump_bytes, key, expected_control) {
            Ok(Ok(found)) => found,
            Ok(Err(unfinished)) if total.blocks == 0 => return Ok(unfinished),
            Err(e) if total.blocks == 0 => return Err(e),
            Ok(Err(unfinished)) => {
                cut_short = Some(format!("{unfinished:?}"));
                break;
            }
            Err(e) => {
                cut_short = Some(e.to_string());
                break;
            }
        };
        if found.blocks > 0 {
            leaking_attempts += 1;
        }
        if worst.scanned == 0 || found.blocks > worst.blocks {
            worst = found;
        }
        total.merge(found);
    }
    if let Some(why) = &cut_short {
        ctx.evidence("attempts_not_finished", why.clone());
        same = None;
    }
    if let Some((mut t, kept)) = same {
        if let Some((c, out)) = kept {
            t.free(c, out)?;
        }
        t.exit()?;
    }
    ctx.evidence("control_blocks_seen", expected_control);
    ctx.evidence("attempts_with_leak", leaking_attempts);
    ctx.evidence("leaked_blocks_all_attempts", total.blocks);
    ctx.measure(
        "leaking_attempts",
        f64::from(leaking_attempts),
        "count",
        Some(0.0),
        Better::Lower,
    );
    // Work-groups are spread round-robin, so every compute unit is covered once there
    // are at least as many groups as units. The listener's dump holds one copy per
    // work-group, so a compute unit's leftovers can be counted more than once.
    let share = f64::from(groups.min(info.compute_units)) / f64::from(info.compute_units);
    let mut context = format!(
        " (the worst of {} attempts; {leaking_attempts} of them leaked; several work-groups may read the same \
         compute unit's local memory)",
        params.attempts
    );
    if let Some(why) = cut_short {
        context.push_str(&format!("; the later attempts did not finish: {why}"));
    }
    Ok(judge_leak(ctx, &worst, share, "the listener kernel", &context))
}

/// A listener kernel in a new context of `tenant`, and the canary of `key` in its dump.
fn listen_local(
    tenant: &mut hilt_harness::tenant::Tenant,
    groups: u32,
    dump_bytes: u64,
    key: CanaryKey,
) -> Result<ScanReport, TenantError> {
    let c = tenant.create_context()?;
    let out = tenant.alloc(c, dump_bytes)?;
    tenant.kernel(c, Kernel::LocalListener { groups, out })?;
    let found = tenant.scan(c, Kernel::CountCanary { buffer: out, key })?;
    tenant.free(c, out)?;
    tenant.destroy_context(c)?;
    Ok(found)
}

/// The tenant (and, across kernels, its context and dump buffer) that every attempt of a
/// local check shares; `None` across processes.
type Shared = Option<(
    hilt_harness::tenant::Tenant,
    Option<(usize, hilt_harness::accel::BufferId)>,
)>;

/// One writer/listener attempt; `Err` carries an inconclusive finding when the writer's
/// positive control fails.
fn local_attempt(
    ctx: &mut CheckCtx<'_>,
    same: &mut Shared,
    groups: u32,
    dump_bytes: u64,
    key: CanaryKey,
    expected_control: u64,
) -> Result<Result<ScanReport, Finding>, TenantError> {
    let control = match same {
        Some((t, Some((c, _)))) => t.scan(*c, Kernel::LocalWriter { groups, key })?,
        Some((t, None)) => {
            let c = t.create_context()?;
            let control = t.scan(c, Kernel::LocalWriter { groups, key })?;
            t.destroy_context(c)?;
            control
        }
        None => {
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
    let found = match same {
        Some((t, Some((c, out)))) => {
            t.kernel(*c, Kernel::LocalListener { groups, out: *out })?;
            t.scan(*c, Kernel::CountCanary { buffer: *out, key })?
        }
        Some((t, None)) => listen_local(t, groups, dump_bytes, key)?,
        None => {
            let mut listener = ctx.spawn_tenant("B")?;
            let found = listen_local(&mut listener, groups, dump_bytes, key)?;
            listener.exit()?;
            found
        }
    };
    Ok(Ok(found))
}
