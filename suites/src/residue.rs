//! Suite `residue`: what one tenant leaves in accelerator memory, the next must not read.
//!
//! Each check plays a writer and a listener. The writer fills memory with keyed canary
//! and first reads it back through the same detector the listener will use (the positive
//! control: a detector that cannot see its own canary makes the verdict `inconclusive`,
//! never `pass`). The listener then takes memory it never wrote and counts canary in it,
//! at any byte offset. Any canary found is a `fail`.

use hilt_harness::accel::Kernel;
use hilt_harness::canary::{BLOCK_BYTES, ScanReport};
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
    /// The share of the device's global memory the writer fills and the listener reads,
    /// above 0 and at most 1.
    #[schemars(range(max = 1.0), extend("exclusiveMinimum" = 0.0))]
    pub share: f64,
}

impl Default for GlobalParams {
    fn default() -> Self {
        GlobalParams { share: 0.5 }
    }
}

impl CheckParams for GlobalParams {
    fn validate(&self) -> Result<(), String> {
        if self.share > 0.0 && self.share <= 1.0 {
            Ok(())
        } else {
            Err(format!("`share` must be above 0 and at most 1, not {}", self.share))
        }
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
    Process,
    Context,
}

fn global_residue(ctx: &mut CheckCtx<'_>, params: &GlobalParams, boundary: Boundary) -> Result<Finding, TenantError> {
    let total = ctx.device.info.global_mem_bytes;
    let block = BLOCK_BYTES as u64;
    let bytes = ((total as f64 * params.share) as u64) / block * block;
    if bytes == 0 {
        return Ok(Finding::NotApplicable(format!(
            "a share of {} of {total} bytes of device memory is less than one canary block",
            params.share
        )));
    }
    let key = ctx.key;
    ctx.evidence("allocation_bytes", bytes);
    ctx.evidence(
        "boundary",
        if boundary == Boundary::Process {
            "process"
        } else {
            "context"
        },
    );

    let mut writer = ctx.spawn_tenant("A")?;
    let first = writer.create_context()?;
    let buffer = writer.alloc(first, bytes)?;
    writer.kernel(first, Kernel::FillCanary { buffer, key })?;
    let control = writer.scan(first, Kernel::CountCanary { buffer, key })?;
    ctx.evidence("control_blocks_seen", control.blocks);
    ctx.evidence("control_blocks_written", bytes / block);
    if control.blocks != bytes / block {
        return Ok(Finding::Inconclusive(format!(
            "positive control failed: the writer's detector saw {} of the {} canary blocks it had just written, \
             so a clean reading would prove nothing",
            control.blocks,
            bytes / block
        )));
    }
    writer.free(first, buffer)?;
    writer.destroy_context(first)?;

    let found = match boundary {
        Boundary::Process => {
            writer.exit()?;
            let mut listener = ctx.spawn_tenant("B")?;
            let found = listen_global(&mut listener, bytes, key)?;
            listener.exit()?;
            found
        }
        Boundary::Context => {
            let found = listen_global(&mut writer, bytes, key)?;
            writer.exit()?;
            found
        }
    };
    // `bytes` is at least one block, so `total` is not zero here.
    let share = found.scanned as f64 / total.max(1) as f64;
    Ok(judge_leak(ctx, &found, share, "the listener", ""))
}

fn listen_global(
    tenant: &mut hilt_harness::tenant::Tenant,
    bytes: u64,
    key: hilt_harness::canary::CanaryKey,
) -> Result<ScanReport, TenantError> {
    let context = tenant.create_context()?;
    let buffer = tenant.alloc(context, bytes)?;
    let found = tenant.scan(context, Kernel::CountCanary { buffer, key })?;
    tenant.free(context, buffer)?;
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
    let key = ctx.key;
    ctx.evidence("work_groups", groups);
    ctx.evidence("local_mem_bytes", info.local_mem_bytes);
    ctx.evidence("attempts", params.attempts);
    ctx.evidence(
        "boundary",
        if boundary == Boundary::Process {
            "process"
        } else {
            "context"
        },
    );
    ctx.evidence("control_blocks_expected", expected_control);

    // Within one context the same tenant writes and listens; across processes every
    // attempt gets a fresh writer A and a fresh listener B.
    let mut same = match boundary {
        Boundary::Context => {
            let mut t = ctx.spawn_tenant("A")?;
            let c = t.create_context()?;
            let out = t.alloc(c, dump_bytes)?;
            Some((t, c, out))
        }
        Boundary::Process => None,
    };
    let mut total = ScanReport::default();
    let mut worst = ScanReport::default();
    let mut leaking_attempts = 0u32;
    for _ in 0..params.attempts {
        let control = match &mut same {
            Some((t, c, _)) => t.scan(*c, Kernel::LocalWriter { groups, key })?,
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
            return Ok(Finding::Inconclusive(format!(
                "positive control failed: the writer kernel's work-groups saw {} of the {expected_control} canary \
                 blocks they had just written to local memory, so a clean reading would prove nothing",
                control.blocks
            )));
        }
        let found = match &mut same {
            Some((t, c, out)) => {
                t.kernel(*c, Kernel::LocalListener { groups, out: *out })?;
                t.scan(*c, Kernel::CountCanary { buffer: *out, key })?
            }
            None => {
                let mut listener = ctx.spawn_tenant("B")?;
                let c = listener.create_context()?;
                let out = listener.alloc(c, dump_bytes)?;
                listener.kernel(c, Kernel::LocalListener { groups, out })?;
                let found = listener.scan(c, Kernel::CountCanary { buffer: out, key })?;
                listener.free(c, out)?;
                listener.exit()?;
                found
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
    if let Some((mut t, c, out)) = same {
        t.free(c, out)?;
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
    let context = format!(
        " (the worst of {} attempts; {leaking_attempts} of them leaked; several work-groups may read the same \
         compute unit's local memory)",
        params.attempts
    );
    Ok(judge_leak(ctx, &worst, share, "the listener kernel", &context))
}
