//! The hilt check catalogue, one module per suite.
//!
//! Suites present today: [`residue`] (device checks on the sim and real backends),
//! [`isolation_host`], [`platform`], [`firmware`] and [`performance`] (host checks that
//! read the host's files). Every check names the requirement ids it gives evidence for
//! and the planted faults that must make it fail: sim faults for device checks, fixture
//! trees (`tests/fixtures/hosts/`) for host checks; the tests below and the workspace's
//! self-validation and host-check tests hold every check to both.

pub mod firmware;
pub mod hostread;
pub mod isolation;
pub mod isolation_host;
pub mod performance;
pub mod platform;
pub mod residue;

use hilt_harness::check::Catalogue;

/// Every check hilt knows, in catalogue order.
pub fn catalogue() -> Catalogue {
    Catalogue::new(vec![
        &residue::GLOBAL_CROSS_PROCESS,
        &residue::GLOBAL_CROSS_CONTEXT,
        &residue::LOCAL_CROSS_KERNEL,
        &residue::LOCAL_CROSS_CONTEXT,
        &residue::LOCAL_CROSS_PROCESS,
        &isolation::FAULT_CONTAINMENT,
        &isolation::FOREIGN_POINTER,
        &isolation_host::IOMMU_ENABLED,
        &isolation_host::IOMMU_GROUP,
        &isolation_host::DEVICE_NODES,
        &isolation_host::PROFILING_ADMIN_ONLY,
        &isolation_host::CLEANER_SHADER,
        &performance::PCIE_LINK,
        &performance::HOST_TO_DEVICE_BANDWIDTH,
        &performance::DEVICE_TO_HOST_BANDWIDTH,
        &performance::DEVICE_COPY_BANDWIDTH,
        &performance::LAUNCH_LATENCY,
        &performance::FMA_THROUGHPUT,
        &firmware::ROM_MEASUREMENT,
        &firmware::DRIVER_ADVISORIES,
        &firmware::INVENTORY,
        &platform::SECURE_BOOT,
        &platform::KERNEL_LOCKDOWN,
        &platform::MODULE_SIGNATURES,
        &platform::TPM,
        &platform::REMOTE_ROOT_LOGIN,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use hilt_harness::accel::sim::{self, FaultKind};
    use hilt_harness::check::Scope;

    #[test]
    fn every_check_names_known_requirements() {
        let known: Vec<String> = hilt_harness::requirements::ts_104_033()
            .into_iter()
            .map(|r| r.id)
            .collect();
        for check in catalogue().checks() {
            assert!(!check.requirements.is_empty(), "{} names no requirement", check.id);
            for req in check.requirements {
                assert!(
                    known.iter().any(|k| k == req),
                    "{} names unknown requirement {req}",
                    check.id
                );
            }
        }
    }

    #[test]
    fn every_check_has_a_platform_fault_that_exists() {
        let hosts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hosts");
        for check in catalogue().checks() {
            // Device checks are proven by sim faults, host checks by fixture trees.
            if check.scope == Scope::Device {
                assert!(check.host_faults.is_empty(), "{}", check.id);
            } else {
                assert!(
                    check.faults.is_empty(),
                    "{}: host checks do not touch the sim",
                    check.id
                );
                assert!(
                    !check.host_faults.is_empty(),
                    "{} has no fixture that makes it fail",
                    check.id
                );
                for name in check.host_faults {
                    assert!(hosts.join(name).is_dir(), "{} names missing fixture {name}", check.id);
                }
                continue;
            }
            assert!(
                !check.faults.is_empty(),
                "{} has no planted fault that makes it fail",
                check.id
            );
            for name in check.faults {
                let fault = sim::fault(name).unwrap_or_else(|| panic!("{} names unknown sim fault {name}", check.id));
                assert_eq!(
                    fault.kind,
                    FaultKind::Platform,
                    "{}: {name} is not a platform fault",
                    check.id
                );
            }
        }
    }

    #[test]
    fn ids_are_unique_dotted_and_start_with_a_known_suite() {
        let checks = catalogue();
        let mut ids: Vec<&str> = checks.checks().iter().map(|c| c.id).collect();
        for id in &ids {
            let suite = id.split('.').next().unwrap_or_default();
            assert!(
                ["residue", "isolation", "firmware", "performance", "platform"].contains(&suite),
                "{id}"
            );
            assert!(
                id.split('.').count() >= 2 && id.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
                "{id}"
            );
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), checks.checks().len());
    }
}
