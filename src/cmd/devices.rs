//! `hilt devices`: the devices hilt can drive here, and the accelerator PCI functions it
//! sees in sysfs (or under a replayed root).

use std::io::Write;

use anyhow::Context as _;
use hilt_harness::accel::DeviceInfo;
use hilt_harness::discovery;
use hilt_harness::hostfs::HostFs;
use hilt_harness::pci::{self, PciFunction};
use hilt_harness::runner;

use crate::cmd::host_fs;

/// `hilt devices [--json] [--backend B]`. The JSON form holds what the text does:
/// `devices`, `notes` (the backends' notes, one string each), `pci_accelerators` and
/// `pci_unreadable`.
pub fn print_devices(json: bool, root: Option<&std::path::Path>, backend: Option<&str>) -> anyhow::Result<()> {
    let (list, notes) = devices_and_notes(backend)?;
    let host = host_fs(root)?;
    let scan = pci::accelerators(&host).context("failed to list the PCI functions")?;
    let functions = scan.functions;
    let mut out = std::io::stdout().lock();
    if json {
        let records: Vec<_> = list.iter().map(runner::device_record).collect();
        let pci: Vec<_> = functions
            .iter()
            .map(|f| {
                let mut record = runner::device_record(&f.device_info());
                record.id = list
                    .iter()
                    .find(|d| d.pci_address.as_deref() == Some(f.address.as_str()))
                    .map_or(record.id, |d| d.id.clone());
                record
            })
            .collect();
        let broken: Vec<_> = scan
            .broken
            .iter()
            .map(|b| serde_json::json!({ "pci_address": b.address, "error": b.error.to_string() }))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                // The backends' notes too: why a backend found nothing, or which view of a
                // piece of hardware was left out, as the text says them.
                &serde_json::json!({
                    "devices": records,
                    "notes": notes,
                    "pci_accelerators": pci,
                    "pci_unreadable": broken
                })
            )?
        )?;
        return Ok(());
    }
    for d in &list {
        let note = if d.simulated {
            "  (simulated: tests hilt itself, certifies nothing)"
        } else {
            ""
        };
        writeln!(
            out,
            "{:<8} {:<8} {}: {} MiB global memory, {} compute units x {} KiB local memory{note}",
            d.id,
            d.backend,
            d.name,
            d.global_mem_bytes >> 20,
            d.compute_units,
            d.local_mem_bytes >> 10
        )?;
        if !d.simulated {
            let fact = |k: &str| d.facts.get(k).and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
            writeln!(
                out,
                "{:<8} {:<8} platform {}, vendor {}, driver {}, PCI {}",
                "",
                "",
                fact(&format!("{}.platform", d.backend)),
                d.vendor.as_deref().unwrap_or("unknown"),
                fact(&format!("{}.driver_version", d.backend)),
                d.pci_address.as_deref().unwrap_or("not reported")
            )?;
        }
    }
    if list.iter().all(|d| d.simulated) {
        writeln!(
            out,
            "no accelerator found by the backends built in ({}); only the simulated device",
            discovery::BACKENDS.join(", ")
        )?;
    }
    for note in &notes {
        writeln!(out, "{note}")?;
    }
    writeln!(out)?;
    print_pci(&mut out, &host, &functions, &list)?;
    for broken in &scan.broken {
        writeln!(out, "unreadable: {broken}")?;
    }
    Ok(())
}

/// The PCI view: accelerator functions in sysfs, and the backend device each is, if any.
fn print_pci(
    out: &mut impl Write,
    host: &HostFs,
    functions: &[PciFunction],
    devices: &[DeviceInfo],
) -> anyhow::Result<()> {
    let root = if host.is_live() {
        String::new()
    } else {
        format!(" under {}", host.root().display())
    };
    if functions.is_empty() {
        writeln!(out, "no accelerator PCI function (class 03, 12 or 0b) in sysfs{root}")?;
        return Ok(());
    }
    writeln!(out, "accelerator PCI functions in sysfs{root}:")?;
    for f in functions {
        let driven = devices
            .iter()
            .find(|d| d.pci_address.as_deref() == Some(f.address.as_str()))
            .map_or_else(
                || format!("host checks as {}", f.trial_id()),
                |d| format!("device {}", d.id),
            );
        writeln!(
            out,
            "{}  {:04x}:{:04x}  {} {}  [{}]  driver {}  iommu group {}  ({driven})",
            f.address,
            f.vendor,
            f.device,
            f.vendor_name().unwrap_or("unknown vendor"),
            f.device_name().unwrap_or("unknown device"),
            f.class_name().unwrap_or("unknown class"),
            f.driver.as_deref().unwrap_or("none"),
            f.iommu_group.as_deref().unwrap_or("none"),
        )?;
    }
    Ok(())
}

/// The devices here (the sim included) and the backends' notes, from one discovery, with
/// hardware that several backends see shown as `backend`'s device where given.
pub fn devices_and_notes(backend: Option<&str>) -> anyhow::Result<(Vec<DeviceInfo>, Vec<String>)> {
    let found = discovery::discover_for(backend)?;
    let mut list: Vec<DeviceInfo> = found.devices.into_iter().map(|d| d.info).collect();
    list.push(discovery::sim_info());
    Ok((list, found.notes))
}
