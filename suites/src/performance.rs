//! Suite `performance`: whether the platform delivers what the accelerator is built
//! for. Today: the PCIe link, read from sysfs (through `--sysfs-root`).

use hilt_harness::check::{CheckDef, CheckParams, Finding, ParamsSpec, Scope};
use hilt_harness::pci;
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
        power, so a lower speed at rest is normal. Not applicable to functions with no \
        PCIe link attributes (virtual and integrated functions).",
    remediation: "Reseat the card or module, check the riser or cable and the slot's \
        electrical width, update the platform firmware, and compare with the board's \
        topology documentation; a link that trains narrow after that is a hardware fault.",
    requirements: &["RS-4", "IR-4"],
    faults: &[],
    concurrent: true,
    scope: Scope::Pci,
    host_faults: &["degraded-link"],
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
            let cur_s = read("current_link_speed")?.as_deref().and_then(pci::parse_link_speed);
            let max_s = read("max_link_speed")?.as_deref().and_then(pci::parse_link_speed);
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
