//! Suite `performance`: whether the platform delivers what the accelerator is built
//! for. The PCIe link, read from sysfs (through `--sysfs-root`), and measurements on the
//! device itself, written once for every backend: host-to-device, device-to-host and
//! on-device copy bandwidth, kernel launch latency and FMA throughput.
//!
//! Every device measurement is timed inside a tenant process (no protocol overhead is
//! counted), after warm-up runs, over several repetitions; the median is judged against
//! the profile's threshold, and the minimum and maximum are recorded beside it. A
//! measurement with no threshold in the profile is `inconclusive`: measured, but with
//! nothing to hold it to.

use hilt_harness::accel::Kernel;
use hilt_harness::check::{CheckCtx, CheckDef, CheckParams, Finding, ParamsSpec, Scope};
use hilt_harness::pci;
use hilt_harness::tenant::{TenantError, TimedOp};
use hilt_results::Better;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hostread::{self, optional};

/// `performance.pcie_link`.
pub static PCIE_LINK: CheckDef = CheckDef {
    id: "performance.pcie_link",
    title: "The accelerator's PCIe link runs at its full width",
    description: "Reads the function's current and maximum PCIe link width and speed from \
        sysfs. A link narrower than the device supports (x8 instead of x16) is a fault of \
        the slot, riser, cable or seating, and fails. A slower speed fails only with \
        `allow_speed_downtraining = false`: GPUs drop their link speed when idle to save \
        power, so a lower speed at rest is normal. A current speed of `Unknown` while the \
        maximum is known means the link is down, and fails; a speed that cannot be read \
        is inconclusive when the profile requires full speed. Not applicable to functions \
        with no PCIe link attributes (virtual and integrated functions).",
    remediation: "Reseat the card or module, check the riser or cable and the slot's \
        electrical width, update the platform firmware, and compare with the board's \
        topology documentation; a link that trains narrow after that is a hardware fault.",
    requirements: &["RS-4", "IR-4"],
    faults: &[],
    concurrent: true,
    scope: Scope::Pci,
    host_faults: &["degraded-link", "link-down"],
    params: ParamsSpec::of::<LinkParams>(),
    run: |ctx| {
        hostread::run::<LinkParams>(ctx, |ctx, params| {
            let fs = ctx.host().clone();
            let address = hostread::pci_address(ctx)?;
            let dir = format!("{}/{address}", pci::DEVICES);
            let read = |name: &str| optional(fs.read_trimmed(&format!("{dir}/{name}")));
            let (Some(cur_w), Some(max_w)) = (read("current_link_width")?, read("max_link_width")?) else {
                return Ok(Finding::NotApplicable(format!(
                    "{address} has no PCIe link attributes in sysfs (a virtual or integrated function)"
                )));
            };
            let width = |t: &str| {
                t.trim_start_matches('x')
                    .parse::<u32>()
                    .map_err(|_| Finding::Error(format!("{dir}: link width `{t}` is not a number")))
            };
            let (cur_w, max_w) = (width(&cur_w)?, width(&max_w)?);
            let cur_text = read("current_link_speed")?;
            let max_text = read("max_link_speed")?;
            let cur_s = cur_text.as_deref().and_then(pci::parse_link_speed);
            let max_s = max_text.as_deref().and_then(pci::parse_link_speed);
            ctx.measure(
                "current_link_width",
                f64::from(cur_w),
                "lanes",
                Some(f64::from(max_w)),
                Better::Higher,
            );
            ctx.measure("max_link_width", f64::from(max_w), "lanes", None, Better::Neither);
            if let Some(s) = cur_s {
                ctx.measure("current_link_speed", s, "GT/s", max_s, Better::Higher);
            }
            if let Some(s) = max_s {
                ctx.measure("max_link_speed", s, "GT/s", None, Better::Neither);
                if let Some(g) = pci::pcie_generation(s) {
                    ctx.evidence("max_generation", format!("Gen{g}"));
                }
            }
            if let (Some(text), None, Some(m)) = (&cur_text, cur_s, max_s) {
                return Ok(Finding::Fail(format!(
                    "the link of {address} is down: its current speed is `{text}` while it supports {m} GT/s"
                )));
            }
            let mut problems = Vec::new();
            if cur_w < max_w {
                problems.push(format!("the link of {address} runs at x{cur_w} of x{max_w} lanes"));
            }
            if let (Some(c), Some(m)) = (cur_s, max_s)
                && c < m
            {
                if params.allow_speed_downtraining {
                    ctx.evidence(
                        "speed_note",
                        format!("running at {c} of {m} GT/s; allowed, as GPUs slow their link when idle"),
                    );
                } else {
                    problems.push(format!("the link of {address} runs at {c} of {m} GT/s"));
                }
            }
            if problems.is_empty() && !params.allow_speed_downtraining && (cur_s.is_none() || max_s.is_none()) {
                let shown = |t: &Option<String>| t.clone().unwrap_or_else(|| "absent".into());
                return Ok(Finding::Inconclusive(format!(
                    "the link speed of {address} cannot be established (current `{}`, maximum `{}`), and the \
                     profile requires full speed (`allow_speed_downtraining = false`)",
                    shown(&cur_text),
                    shown(&max_text)
                )));
            }
            Ok(if problems.is_empty() {
                Finding::Pass
            } else {
                Finding::Fail(problems.join("; "))
            })
        })
    },
};

/// Parameters of `performance.pcie_link`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LinkParams {
    /// Accept a current link speed below the maximum (GPUs slow their link when idle).
    pub allow_speed_downtraining: bool,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            allow_speed_downtraining: true,
        }
    }
}

impl CheckParams for LinkParams {}

/// What to do about slow transfers between host and device.
const TRANSFER_REMEDIATION: &str = "Check the PCIe link (`performance.pcie_link`), the NUMA placement of the \
    process relative to the device, IOMMU settings that force bounce buffers, and whether another tenant \
    saturates the link.";

/// `performance.host_to_device_bandwidth`.
pub static HOST_TO_DEVICE_BANDWIDTH: CheckDef = CheckDef {
    id: "performance.host_to_device_bandwidth",
    title: "Host-to-device copies reach the expected bandwidth",
    description: "Times blocking writes of `mib` MiB of host memory into a device buffer, \
        inside a tenant process, after `warmup` untimed writes; the median bandwidth over \
        `repetitions` writes is compared with `min_gib_s`. Host memory is ordinary pageable \
        memory, as most applications use.",
    remediation: TRANSFER_REMEDIATION,
    requirements: &["RS-4"],
    faults: &["slow-device"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<BandwidthParams>(),
    run: |ctx| ctx.with_params(|ctx, p| bandwidth(ctx, p, Direction::HostToDevice)),
};

/// `performance.device_to_host_bandwidth`.
pub static DEVICE_TO_HOST_BANDWIDTH: CheckDef = CheckDef {
    id: "performance.device_to_host_bandwidth",
    title: "Device-to-host copies reach the expected bandwidth",
    description: "Times blocking reads of `mib` MiB from a device buffer into host memory, \
        inside a tenant process, after `warmup` untimed reads; the median bandwidth over \
        `repetitions` reads is compared with `min_gib_s`.",
    remediation: TRANSFER_REMEDIATION,
    requirements: &["RS-4"],
    faults: &["slow-device"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<BandwidthParams>(),
    run: |ctx| ctx.with_params(|ctx, p| bandwidth(ctx, p, Direction::DeviceToHost)),
};

/// `performance.device_copy_bandwidth`.
pub static DEVICE_COPY_BANDWIDTH: CheckDef = CheckDef {
    id: "performance.device_copy_bandwidth",
    title: "On-device copies reach the expected bandwidth",
    description: "Times copies of `mib` MiB from one device buffer to another, after \
        `warmup` untimed copies; the median over `repetitions` copies, as bytes copied per \
        second (each byte is read once and written once), is compared with `min_gib_s`.",
    remediation: "A device whose memory copies run far below its class suggests memory \
        clocks held low (power or thermal capping), ECC or row-remapping trouble, or \
        another tenant's load; check the vendor's health tools and clock settings.",
    requirements: &["RS-4"],
    faults: &["slow-device"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<BandwidthParams>(),
    run: |ctx| ctx.with_params(|ctx, p| bandwidth(ctx, p, Direction::OnDevice)),
};

/// `performance.launch_latency`.
pub static LAUNCH_LATENCY: CheckDef = CheckDef {
    id: "performance.launch_latency",
    title: "An empty kernel launches and completes quickly",
    description: "Times the launch and completion of an empty one-work-item kernel, \
        inside a tenant process, after `warmup` untimed launches; the median over \
        `repetitions` launches is compared with `max_us`.",
    remediation: "High launch latency points at a runtime or driver in a slow path \
        (debug or profiling layers, power states that take long to wake, a device shared \
        with a busy tenant); check the driver's settings and persistence mode.",
    requirements: &["RS-4"],
    faults: &["slow-device"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<LatencyParams>(),
    run: |ctx| ctx.with_params(launch_latency),
};

/// `performance.fma_throughput`.
pub static FMA_THROUGHPUT: CheckDef = CheckDef {
    id: "performance.fma_throughput",
    title: "Single-precision FMA throughput reaches the expected rate",
    description: "Runs `work_items_per_compute_unit` work-items per compute unit, each \
        doing `iterations` rounds of 16 independent single-precision fused multiply-adds, \
        after `warmup` untimed runs; the median rate over `repetitions` runs, in GFLOP/s \
        (2 flops per FMA), is compared with `min_gflops`. A plain kernel, not a tuned one: \
        the threshold is a health floor, not the device's peak.",
    remediation: "Compute far below the device class suggests clocks held low (power or \
        thermal capping, a power cap set by an administrator), a partitioned or shared \
        device, or a runtime that does not vectorise; check the vendor's health tools.",
    requirements: &["RS-4"],
    faults: &["slow-device"],
    concurrent: false,
    scope: Scope::Device,
    host_faults: &[],
    params: ParamsSpec::of::<FmaParams>(),
    run: |ctx| ctx.with_params(fma_throughput),
};

/// Parameters of the bandwidth checks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BandwidthParams {
    /// MiB moved per run, 1 to 16384.
    #[schemars(range(min = 1, max = 16384))]
    pub mib: u64,
    /// Untimed runs first, 0 to 100.
    #[schemars(range(max = 100))]
    pub warmup: u32,
    /// Timed runs, 1 to 1000.
    #[schemars(range(min = 1, max = 1000))]
    pub repetitions: u32,
    /// The least median bandwidth, GiB/s; none: measured and reported inconclusive.
    pub min_gib_s: Option<f64>,
}

impl Default for BandwidthParams {
    fn default() -> Self {
        BandwidthParams {
            mib: 64,
            warmup: 2,
            repetitions: 10,
            min_gib_s: None,
        }
    }
}

impl CheckParams for BandwidthParams {
    fn validate(&self) -> Result<(), String> {
        check_runs(self.warmup, self.repetitions)?;
        if !(1..=16384).contains(&self.mib) {
            return Err(format!("`mib` must be 1 to 16384, not {}", self.mib));
        }
        check_threshold("min_gib_s", self.min_gib_s)
    }
}

/// Parameters of `performance.launch_latency`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyParams {
    /// Untimed launches first, 0 to 100.
    #[schemars(range(max = 100))]
    pub warmup: u32,
    /// Timed launches, 1 to 1000.
    #[schemars(range(min = 1, max = 1000))]
    pub repetitions: u32,
    /// The most median latency, microseconds; none: measured and reported inconclusive.
    pub max_us: Option<f64>,
}

impl Default for LatencyParams {
    fn default() -> Self {
        LatencyParams {
            warmup: 10,
            repetitions: 100,
            max_us: None,
        }
    }
}

impl CheckParams for LatencyParams {
    fn validate(&self) -> Result<(), String> {
        check_runs(self.warmup, self.repetitions)?;
        check_threshold("max_us", self.max_us)
    }
}

/// Parameters of `performance.fma_throughput`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FmaParams {
    /// Work-items per compute unit, 1 to 1048576.
    #[schemars(range(min = 1, max = 1_048_576))]
    pub work_items_per_compute_unit: u64,
    /// Rounds of 16 FMAs per work-item, 1 to 1048576.
    #[schemars(range(min = 1, max = 1_048_576))]
    pub iterations: u32,
    /// Untimed runs first, 0 to 100.
    #[schemars(range(max = 100))]
    pub warmup: u32,
    /// Timed runs, 1 to 1000.
    #[schemars(range(min = 1, max = 1000))]
    pub repetitions: u32,
    /// The least median rate, GFLOP/s; none: measured and reported inconclusive.
    pub min_gflops: Option<f64>,
}

impl Default for FmaParams {
    fn default() -> Self {
        FmaParams {
            work_items_per_compute_unit: 2048,
            iterations: 256,
            warmup: 2,
            repetitions: 10,
            min_gflops: None,
        }
    }
}

impl CheckParams for FmaParams {
    fn validate(&self) -> Result<(), String> {
        check_runs(self.warmup, self.repetitions)?;
        if !(1..=1_048_576).contains(&self.work_items_per_compute_unit) {
            return Err(format!(
                "`work_items_per_compute_unit` must be 1 to 1048576, not {}",
                self.work_items_per_compute_unit
            ));
        }
        if !(1..=1_048_576).contains(&self.iterations) {
            return Err(format!("`iterations` must be 1 to 1048576, not {}", self.iterations));
        }
        check_threshold("min_gflops", self.min_gflops)
    }
}

fn check_runs(warmup: u32, repetitions: u32) -> Result<(), String> {
    if warmup > 100 {
        return Err(format!("`warmup` must be at most 100, not {warmup}"));
    }
    if !(1..=1000).contains(&repetitions) {
        return Err(format!("`repetitions` must be 1 to 1000, not {repetitions}"));
    }
    Ok(())
}

fn check_threshold(name: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(format!("`{name}` must be a positive number, not {v}")),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy)]
enum Direction {
    HostToDevice,
    DeviceToHost,
    OnDevice,
}

fn bandwidth(ctx: &mut CheckCtx<'_>, p: &BandwidthParams, direction: Direction) -> Result<Finding, TenantError> {
    let bytes = (p.mib << 20).min(ctx.device.info.global_mem_bytes / 4);
    if bytes == 0 {
        return Ok(Finding::NotApplicable(
            "the device has too little memory to measure".into(),
        ));
    }
    let mut tenant = ctx.spawn_tenant("A")?;
    let c = tenant.create_context()?;
    let src = tenant.alloc(c, bytes)?;
    let (op, dst) = match direction {
        Direction::HostToDevice => (TimedOp::HostToDevice { buffer: src, bytes }, None),
        Direction::DeviceToHost => (TimedOp::DeviceToHost { buffer: src, bytes }, None),
        Direction::OnDevice => {
            let dst = tenant.alloc(c, bytes)?;
            let kernel = Kernel::Copy { src, dst, bytes };
            (TimedOp::Kernel { kernel }, Some(dst))
        }
    };
    let seconds = tenant.time(c, op, p.warmup, p.repetitions)?;
    tenant.free(c, src)?;
    if let Some(dst) = dst {
        tenant.free(c, dst)?;
    }
    tenant.exit()?;
    ctx.evidence("bytes_per_run", bytes);
    let rates: Vec<f64> = seconds
        .iter()
        .map(|s| bytes as f64 / s.max(1e-9) / f64::from(1u32 << 30))
        .collect();
    Ok(judge(
        ctx,
        "bandwidth",
        &rates,
        "GiB/s",
        p.min_gib_s,
        Better::Higher,
        p.repetitions,
    ))
}

fn launch_latency(ctx: &mut CheckCtx<'_>, p: &LatencyParams) -> Result<Finding, TenantError> {
    let mut tenant = ctx.spawn_tenant("A")?;
    let c = tenant.create_context()?;
    let seconds = tenant.time(c, TimedOp::Kernel { kernel: Kernel::Noop }, p.warmup, p.repetitions)?;
    tenant.exit()?;
    let micros: Vec<f64> = seconds.iter().map(|s| s * 1e6).collect();
    Ok(judge(
        ctx,
        "latency",
        &micros,
        "us",
        p.max_us,
        Better::Lower,
        p.repetitions,
    ))
}

fn fma_throughput(ctx: &mut CheckCtx<'_>, p: &FmaParams) -> Result<Finding, TenantError> {
    let units = u64::from(ctx.device.info.compute_units.max(1));
    let kernel = Kernel::Fma {
        work_items: units.saturating_mul(p.work_items_per_compute_unit),
        iterations: p.iterations,
    };
    let flops = kernel.flops().unwrap_or(0.0);
    let mut tenant = ctx.spawn_tenant("A")?;
    let c = tenant.create_context()?;
    let seconds = tenant.time(c, TimedOp::Kernel { kernel }, p.warmup, p.repetitions)?;
    tenant.exit()?;
    ctx.evidence("flops_per_run", flops);
    let rates: Vec<f64> = seconds.iter().map(|s| flops / s.max(1e-9) / 1e9).collect();
    Ok(judge(
        ctx,
        "rate",
        &rates,
        "GFLOP/s",
        p.min_gflops,
        Better::Higher,
        p.repetitions,
    ))
}

/// Records median, minimum and maximum of `values` and judges the median against
/// `threshold` in the direction of `better`.
fn judge(
    ctx: &mut CheckCtx<'_>,
    what: &str,
    values: &[f64],
    unit: &str,
    threshold: Option<f64>,
    better: Better,
    repetitions: u32,
) -> Finding {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return Finding::Error("no timed runs came back".into());
    }
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    ctx.measure(&format!("{what}_median"), median, unit, threshold, better);
    ctx.measure(&format!("{what}_min"), sorted[0], unit, None, Better::Neither);
    ctx.measure(&format!("{what}_max"), sorted[n - 1], unit, None, Better::Neither);
    ctx.evidence("repetitions", repetitions);
    let Some(limit) = threshold else {
        return Finding::Inconclusive(format!(
            "measured a median {what} of {median:.3} {unit}, but the profile sets no threshold for this device"
        ));
    };
    let meets = match better {
        Better::Lower => median <= limit,
        _ => median >= limit,
    };
    if meets {
        Finding::Pass
    } else {
        let relation = if matches!(better, Better::Lower) {
            "above the most"
        } else {
            "below the least"
        };
        Finding::Fail(format!(
            "the median {what} of {median:.3} {unit} over {n} runs is {relation} allowed {limit} {unit} \
             (min {:.3}, max {:.3})",
            sorted[0],
            sorted[n - 1]
        ))
    }
}
