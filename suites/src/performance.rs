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
    title: "The accelerator's PCIe path runs at its full width, hop by hop",
    description: "Judges every link that carries the accelerator's traffic, from the root \
        port down through each switch (HGX baseboard switches, a card's own switch, risers \
        with switches) to the accelerator, as the function's sysfs device path gives them; \
        each hop's capability is the lesser of its two ends, and the weakest hop decides. A \
        hop narrower than it can run (x8 instead of x16) fails. A slower speed fails only \
        with `allow_speed_downtraining = false`: GPUs drop their link speed when idle. A \
        current speed of `Unknown` or a width of 0 while the capability is known means the \
        link is down, and fails. What the kernel writes for \"unknown\" (`Unknown`, `Unknown \
        speed`, width 255, any width the PCIe specification does not define) is read as \
        unknown, never as a number. A function on the path that is runtime-suspended or in \
        D3cold cannot report its link, so the verdict is inconclusive; hilt reads \
        `power/runtime_status` and `power_state` and never wakes it. Not applicable to a \
        function with no PCIe link (an integrated device: no link capability at all); \
        inconclusive when the path from the root port cannot be read.",
    remediation: "Reseat the card or module, check the riser or cable and the slot's \
        electrical width, update the platform and switch firmware, and compare with the \
        board's topology documentation; a hop that trains narrow after that is a hardware \
        fault. For a suspended device, judge the link while it is in use (or with its runtime \
        power management set to `on` by its administrator).",
    requirements: &["RS-4", "IR-4"],
    faults: &[],
    concurrent: true,
    scope: Scope::Pci,
    host_faults: &["degraded-link", "link-down", "switch-degraded"],
    params: ParamsSpec::of::<LinkParams>(),
    run: |ctx| {
        hostread::run::<LinkParams>(ctx, |ctx, params| {
            let fs = ctx.host().clone();
            let function = hostread::pci_address(ctx)?;
            // An SR-IOV virtual function has no link of its own (the PCIe specification
            // reserves a VF's link fields, so the kernel reads them as unknown): its traffic
            // runs over its physical function's link, and that path is the one judged.
            let address = match physical_function(&fs, &function)? {
                Some(pf) => {
                    ctx.evidence("physical_function", pf.clone());
                    pf
                }
                None => function.clone(),
            };
            let path = pci::path_from_root(&fs, &address).map_err(hostread::unreadable)?;
            let functions = path.clone().unwrap_or_else(|| vec![address.clone()]);
            let mut ends = Vec::new();
            for f in &functions {
                ends.push(LinkEnd::read(&fs, f)?);
            }
            let hops = hops(&ends);
            let judged: Vec<HopJudgement> = hops.iter().map(|h| judge_hop(h, params)).collect();
            ctx.evidence(
                "path",
                judged.iter().map(|j| j.summary.clone()).collect::<Vec<String>>(),
            );
            // The hop that decides: the first failing one, else the first downtrained one,
            // else the accelerator's own.
            let deciding = judged
                .iter()
                .position(|j| !j.failures.is_empty())
                .or_else(|| judged.iter().position(|j| j.note.is_some()))
                .unwrap_or(judged.len() - 1);
            measure(ctx, &hops[deciding]);
            let notes: Vec<String> = judged.iter().filter_map(|j| j.note.clone()).collect();
            if !notes.is_empty() {
                ctx.evidence("speed_note", notes.join("; "));
            }
            let failures: Vec<String> = judged.iter().flat_map(|j| j.failures.clone()).collect();
            if !failures.is_empty() {
                return Ok(Finding::Fail(failures.join("; ")));
            }
            let unsure: Vec<String> = judged.iter().flat_map(|j| j.unsure.clone()).collect();
            if !unsure.is_empty() {
                return Ok(Finding::Inconclusive(unsure.join("; ")));
            }
            if judged.iter().all(|j| j.no_link) {
                return Ok(Finding::NotApplicable(format!(
                    "{address} has no PCIe link to judge: the kernel reports no link capability for it (maximum \
                     speed `{}`, maximum width `{}`; an integrated device, or a virtual function)",
                    ends[ends.len() - 1].max_speed.as_deref().unwrap_or("absent"),
                    ends[ends.len() - 1].max_width.as_deref().unwrap_or("absent"),
                )));
            }
            if path.is_none() {
                return Ok(Finding::Inconclusive(format!(
                    "the path from the root port to {address} cannot be read ({}/{address} is not a link into \
                     /sys/devices/, as in a capture taken without the links), so only the accelerator's own link \
                     could be judged, and it is fine",
                    pci::DEVICES
                )));
            }
            Ok(Finding::Pass)
        })
    },
};

/// The physical function of SR-IOV virtual function `address`, from its sysfs `physfn`
/// link; `None` for a function that has none (a physical function, or a VF inside a
/// guest, where the PF is not visible).
fn physical_function(fs: &hilt_harness::hostfs::HostFs, address: &str) -> Result<Option<String>, Finding> {
    let link = format!("{}/{address}/physfn", pci::DEVICES);
    if !fs.exists(&link) {
        return Ok(None);
    }
    let target = fs.canonical_host_path(&link).map_err(hostread::unreadable)?;
    match target.rsplit('/').next() {
        Some(pf) if pf != address && pci::is_address(pf) => Ok(Some(pf.to_string())),
        _ => Err(Finding::Inconclusive(format!(
            "{address} is a virtual function whose {link} leads to {target}, which is no other PCI function, so the \
             link its traffic runs over cannot be found"
        ))),
    }
}

/// One end of a PCIe link: a function's link attributes and power state, as sysfs text.
struct LinkEnd {
    address: String,
    current_speed: Option<String>,
    max_speed: Option<String>,
    current_width: Option<String>,
    max_width: Option<String>,
    power: pci::PowerState,
}

impl LinkEnd {
    fn read(fs: &hilt_harness::hostfs::HostFs, address: &str) -> Result<LinkEnd, Finding> {
        let dir = format!("{}/{address}", pci::DEVICES);
        let read = |name: &str| optional(fs.read_trimmed(&format!("{dir}/{name}")));
        Ok(LinkEnd {
            address: address.to_string(),
            current_speed: read("current_link_speed")?,
            max_speed: read("max_link_speed")?,
            current_width: read("current_link_width")?,
            max_width: read("max_link_width")?,
            power: pci::PowerState::read(fs, address).map_err(hostread::unreadable)?,
        })
    }
}

/// A link between two functions: a root or downstream port above (absent when the
/// function sits on a root bus, or the path is unknown) and the function below.
struct Hop<'e> {
    upper: Option<&'e LinkEnd>,
    lower: &'e LinkEnd,
}

impl Hop<'_> {
    fn name(&self) -> String {
        match self.upper {
            Some(u) => format!("{}–{}", u.address, self.lower.address),
            None => self.lower.address.clone(),
        }
    }

    fn ends(&self) -> impl Iterator<Item = &LinkEnd> {
        self.upper.into_iter().chain(std::iter::once(self.lower))
    }

    /// The hop's speed capability: the lesser of the two ends' maximum speeds.
    fn capable_speed(&self) -> Cap<f64> {
        Cap::of(self.ends().map(|e| e.max_speed.as_deref()), pci::parse_link_speed)
    }

    /// The hop's width capability: the lesser of the two ends' maximum widths.
    fn capable_width(&self) -> Cap<u32> {
        Cap::of(self.ends().map(|e| e.max_width.as_deref()), pci::parse_link_width)
    }

    /// The current speed as sysfs writes it, from the lower end if it has it.
    fn current_speed_text(&self) -> Option<&str> {
        self.lower
            .current_speed
            .as_deref()
            .or_else(|| self.upper.and_then(|u| u.current_speed.as_deref()))
    }

    /// The current width as sysfs writes it, from the lower end if it has it.
    fn current_width_text(&self) -> Option<&str> {
        self.lower
            .current_width
            .as_deref()
            .or_else(|| self.upper.and_then(|u| u.current_width.as_deref()))
    }
}

/// A hop's capability from its two ends' maximum values.
enum Cap<T> {
    /// Every end that has the attribute gives a value: the least of them.
    Known(T),
    /// An end writes what the kernel writes for "unknown" (or anything unreadable): the
    /// capability cannot be told.
    Unknown(String),
    /// No end has the attribute.
    Absent,
}

impl<T: PartialOrd + Copy> Cap<T> {
    fn of<'t>(texts: impl Iterator<Item = Option<&'t str>>, parse: impl Fn(&str) -> Option<T>) -> Cap<T> {
        let mut cap = Cap::Absent;
        for text in texts.flatten() {
            cap = match (cap, parse(text)) {
                (Cap::Unknown(t), _) => Cap::Unknown(t),
                (_, None) => Cap::Unknown(text.to_string()),
                (Cap::Absent, Some(v)) => Cap::Known(v),
                (Cap::Known(a), Some(v)) => Cap::Known(if v < a { v } else { a }),
            };
        }
        cap
    }

    fn known(&self) -> Option<T> {
        match self {
            Cap::Known(v) => Some(*v),
            _ => None,
        }
    }
}

/// The links of a path from the root port down: the root port and what is below it,
/// then each downstream port and what is below it (a switch's upstream port and its
/// downstream ports are joined inside the switch, not by a link). A function alone on a
/// root bus (an integrated device) is its own single hop.
fn hops(ends: &[LinkEnd]) -> Vec<Hop<'_>> {
    if ends.len() == 1 {
        return vec![Hop {
            upper: None,
            lower: &ends[0],
        }];
    }
    let mut hops: Vec<Hop<'_>> = ends
        .chunks_exact(2)
        .map(|pair| Hop {
            upper: Some(&pair[0]),
            lower: &pair[1],
        })
        .collect();
    // An odd path (a bridge that is not a switch port on the way): the accelerator's own
    // link, judged from its end alone.
    if ends.len() % 2 == 1 {
        hops.push(Hop {
            upper: None,
            lower: &ends[ends.len() - 1],
        });
    }
    hops
}

/// What one hop showed.
struct HopJudgement {
    /// `0000:00:01.1–0000:01:00.0: 8 GT/s x8 of 16 GT/s x8`.
    summary: String,
    failures: Vec<String>,
    unsure: Vec<String>,
    /// A speed below capability that the profile allows.
    note: Option<String>,
    /// Neither end reports any link capability.
    no_link: bool,
}

fn judge_hop(hop: &Hop<'_>, params: &LinkParams) -> HopJudgement {
    let name = hop.name();
    let of = if hop.upper.is_some() {
        name.clone()
    } else {
        format!("of {name}")
    };
    let shown = |t: Option<&str>| t.unwrap_or("absent").to_string();
    let (cap_speed, cap_width) = (hop.capable_speed(), hop.capable_width());
    let (cap_s, cap_w) = (cap_speed.known(), cap_width.known());
    let (cur_s_text, cur_w_text) = (hop.current_speed_text(), hop.current_width_text());
    let (cur_s, cur_w) = (
        cur_s_text.and_then(pci::parse_link_speed),
        cur_w_text.and_then(pci::parse_link_width),
    );
    let gts =
        |s: Option<f64>, text: Option<&str>| s.map_or_else(|| format!("`{}`", shown(text)), |s| format!("{s} GT/s"));
    let lanes =
        |w: Option<u32>, text: Option<&str>| w.map_or_else(|| format!("x`{}`", shown(text)), |w| format!("x{w}"));
    let mut j = HopJudgement {
        summary: format!(
            "{name}: {} {} of {} {}",
            gts(cur_s, cur_s_text),
            lanes(cur_w, cur_w_text),
            cap_s.map_or("unknown speed".to_string(), |s| format!("{s} GT/s")),
            cap_w.map_or("unknown width".to_string(), |w| format!("x{w}")),
        ),
        failures: Vec::new(),
        unsure: Vec::new(),
        note: None,
        no_link: false,
    };
    let asleep: Vec<String> = hop
        .ends()
        .filter(|e| e.power.asleep())
        .map(|e| format!("{} is powered down ({})", e.address, e.power.describe()))
        .collect();
    if !asleep.is_empty() {
        j.summary = format!("{name}: not read, {}", asleep.join(", "));
        j.unsure.push(format!(
            "the link {name} cannot be judged: {}, and its link cannot be read without waking it, which hilt never \
             does",
            asleep.join("; ")
        ));
        return j;
    }
    if cap_s.is_none() && cap_w.is_none() {
        if hop.upper.is_none() {
            j.no_link = true;
        } else {
            j.unsure.push(format!(
                "the link {name} reports no capability at either end (maximum speed and width unknown)"
            ));
        }
        return j;
    }
    let down_width = cur_w_text.is_some_and(|t| t.trim().trim_start_matches('x') == "0");
    if let (Some(text), None, Some(m)) = (cur_s_text, cur_s, cap_s) {
        j.failures.push(format!(
            "the link {of} is down: its current speed is `{text}` while it supports {m} GT/s"
        ));
        return j;
    }
    if let (true, Some(m)) = (down_width, cap_w) {
        j.failures.push(format!(
            "the link {of} is down: its current width is 0 while it supports x{m}"
        ));
        return j;
    }
    match (cur_w, &cap_width) {
        (Some(c), Cap::Known(m)) if c < *m => j.failures.push(format!("the link {of} runs at x{c} of x{m} lanes")),
        (None, Cap::Known(_)) => j.unsure.push(format!(
            "the current width of the link {name} reads `{}`, which is no PCIe link width",
            shown(cur_w_text)
        )),
        (_, Cap::Unknown(text)) => j.unsure.push(format!(
            "the maximum width of the link {name} reads `{text}`, which is the kernel's \"unknown\" or no PCIe width, \
             so its width cannot be judged"
        )),
        _ => {}
    }
    if let (Some(c), Some(m)) = (cur_s, cap_s)
        && c < m
    {
        if params.allow_speed_downtraining {
            j.note = Some(format!(
                "{name} running at {c} of {m} GT/s; allowed, as GPUs slow their link when idle"
            ));
        } else {
            j.failures.push(format!("the link {of} runs at {c} of {m} GT/s"));
        }
    }
    if !params.allow_speed_downtraining && (cur_s.is_none() || cap_s.is_none()) && j.failures.is_empty() {
        j.unsure.push(format!(
            "the link speed of {name} cannot be established (current `{}`, maximum {}), and the profile requires \
             full speed (`allow_speed_downtraining = false`)",
            shown(cur_s_text),
            hop.ends()
                .map(|e| format!("`{}`", shown(e.max_speed.as_deref())))
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    j
}

/// Records the deciding hop's numbers as measurements, as before hops existed: current
/// width and speed against the hop's capability.
fn measure(ctx: &mut CheckCtx<'_>, hop: &Hop<'_>) {
    let (cap_s, cap_w) = (hop.capable_speed().known(), hop.capable_width().known());
    if let Some(c) = hop.current_width_text().and_then(pci::parse_link_width) {
        ctx.measure(
            "current_link_width",
            f64::from(c),
            "lanes",
            cap_w.map(f64::from),
            Better::Higher,
        );
    }
    if let Some(m) = cap_w {
        ctx.measure("max_link_width", f64::from(m), "lanes", None, Better::Neither);
    }
    if let Some(c) = hop.current_speed_text().and_then(pci::parse_link_speed) {
        ctx.measure("current_link_speed", c, "GT/s", cap_s, Better::Higher);
    }
    if let Some(m) = cap_s {
        ctx.measure("max_link_speed", m, "GT/s", None, Better::Neither);
        if let Some(g) = pci::pcie_generation(m) {
            ctx.evidence("max_generation", format!("Gen{g}"));
        }
    }
    ctx.evidence("deciding_hop", hop.name());
}

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
