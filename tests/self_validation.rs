//! Self-validation: every check can fail, and we prove it.
//!
//! For every check of the catalogue, on the real `hilt` binary with real tenant
//! processes: on the compliant sim it must pass; under each sim fault mapped to it it must
//! fail, in the tier the fault is meant for; under each harness fault (blind detector,
//! hung or crashed tenant) it must end inconclusive or in error, never pass. A check that no planted fault makes fail fails
//! this test. Host checks, which never touch the sim, are held to their fixture trees in
//! `host_checks.rs` instead.

mod common;

use hilt_harness::accel::sim::{FAULTS, FaultKind};
use hilt_harness::check::{CheckDef, Scope};

/// The checks that run on the sim.
fn device_checks() -> Vec<&'static CheckDef> {
    hilt_suites::catalogue()
        .checks()
        .iter()
        .copied()
        .filter(|c| c.scope == Scope::Device)
        .collect()
}

#[test]
fn every_check_passes_on_the_compliant_sim_and_fails_under_its_faults() {
    let checks = device_checks();
    let clean = common::run(&["--tier", "certification"]);
    assert_eq!(clean.exit, 0, "compliant sim must be conformant:\n{}", clean.stderr);
    for check in &checks {
        assert_eq!(
            common::verdict(&clean.record, check.id),
            "pass",
            "{} on the compliant sim",
            check.id
        );
        assert!(
            !check.faults.is_empty(),
            "{} has no planted fault that makes it fail",
            check.id
        );
    }

    for fault in FAULTS {
        // Only the hang needs a short watchdog; the rest keep a long one, so that a slow
        // machine cannot turn a real verdict into a timeout.
        let timeout = if fault.name == "kernel-hang" { "1" } else { "60" };
        let run = common::run(&[
            "--tier",
            fault.tier.as_str(),
            "--tenant-timeout",
            timeout,
            "--sim-fault",
            fault.name,
        ]);
        assert_eq!(run.record.run.sim_faults, vec![fault.name.to_string()]);
        assert_eq!(
            run.record.conformance.status,
            hilt_results::ConformanceStatus::Partial,
            "a run with a planted fault is never evidence"
        );
        for check in &checks {
            let got = common::verdict(&run.record, check.id);
            let in_tier = run.record.outcomes.iter().any(|o| o.check == check.id);
            if fault.kind == FaultKind::Platform && check.faults.contains(&fault.name) {
                assert!(
                    in_tier,
                    "{} does not run in {}, the tier of its fault {}",
                    check.id,
                    fault.tier.as_str(),
                    fault.name
                );
            }
            match fault.kind {
                FaultKind::Platform if check.faults.contains(&fault.name) => {
                    assert_eq!(got, "fail", "{} under sim fault {}", check.id, fault.name);
                }
                // The harness faults break the canary detector; the performance checks time
                // transfers and kernels and never use it.
                FaultKind::Harness if check.suite() == "performance" => {}
                FaultKind::Harness => {
                    assert!(
                        got == "inconclusive" || got == "error",
                        "{} under harness fault {} must not pass, got {got}",
                        check.id,
                        fault.name
                    );
                }
                FaultKind::Platform => {}
            }
        }
    }
}

#[test]
fn the_two_global_checks_tell_process_and_context_boundaries_apart() {
    // Scrubbing only between processes protects processes but not contexts.
    let run = common::run(&["--sim-fault", "global-scrub-cross-process-only"]);
    assert_eq!(common::verdict(&run.record, "residue.global.cross_process"), "pass");
    assert_eq!(common::verdict(&run.record, "residue.global.cross_context"), "fail");
    assert_eq!(run.exit, 1, "a mandatory failure exits 1 even in a partial run");
}

#[test]
fn residue_in_high_memory_is_seen_by_the_sweep_and_the_standard_tier_says_what_it_covered() {
    let sweep = common::run(&[
        "--tier",
        "certification",
        "--sim-fault",
        "global-residue-high-memory",
        "residue::global",
    ]);
    let standard = common::run(&[
        "--tier",
        "standard",
        "--sim-fault",
        "global-residue-high-memory",
        "residue::global",
    ]);
    for check in ["residue.global.cross_process", "residue.global.cross_context"] {
        let o = outcome(&sweep.record, check);
        assert_eq!(o.verdict.as_str(), "fail", "{check}: {:?}", o.reason);
        assert!(
            o.reason.as_deref().unwrap_or_default().contains("sweep round"),
            "{:?}",
            o.reason
        );
        // The leak is in the top 10 % of the device, where the sweep's allocations reach.
        let first = o.evidence["first_leak_offset"].as_u64().expect("offset");
        assert!(first >= (64u64 << 20) / 10 * 9, "first leak at {first}");
        assert!(measurement(o, "scanned_share") >= 0.95);
        assert!(o.evidence["sweep_coverage_of_free"].as_f64().unwrap_or(0.0) >= 0.95);
        assert!(o.evidence["host_scanner_confirmed_blocks"].as_u64().unwrap_or(0) > 0);

        // The standard tier's rounds stop at half the device: a pass that says so.
        let o = outcome(&standard.record, check);
        assert_eq!(o.verdict.as_str(), "pass", "{check}: {:?}", o.reason);
        assert_eq!(measurement(o, "scanned_share"), 0.5);
        assert_eq!(measurement(o, "scanned_bytes"), f64::from(32u32 << 20));
        assert!(!o.evidence.contains_key("sweep_free_bytes_at_start"));
    }
}

/// A device that reports memory free and then refuses to allocate it (a driver's own
/// reservations, or another process taking it between the report and the allocation):
/// the sweep falls short of the profile's minimum coverage, and the check says so rather
/// than pass on the rounds alone.
#[test]
fn a_sweep_below_the_minimum_coverage_is_inconclusive_with_the_reason() {
    let run = common::run(&[
        "--tier",
        "certification",
        "--sim-knob",
        "unallocatable_mib=16",
        "residue::global",
    ]);
    for check in ["residue.global.cross_process", "residue.global.cross_context"] {
        let o = outcome(&run.record, check);
        let reason = o.reason.as_deref().unwrap_or_default();
        assert_eq!(o.verdict.as_str(), "inconclusive", "{check}: {reason}");
        assert!(
            reason.contains("below the profile's minimum of 95.0 %") && reason.contains("allocation of"),
            "{check}: {reason}"
        );
        assert!(o.evidence["sweep_coverage_of_free"].as_f64().unwrap_or(1.0) < 0.95);
        assert!(
            o.evidence["sweep_stopped"]
                .as_str()
                .unwrap_or_default()
                .contains("refused")
        );
        assert_eq!(o.evidence["sweep_free_bytes_at_start"], 64u64 << 20);
    }
    assert_eq!(run.exit, 3, "{}", run.stderr);
}

#[test]
fn every_residue_outcome_states_its_confidence() {
    let run = common::run(&["--tier", "certification", "residue"]);
    for o in &run.record.outcomes {
        // sim-reference: below 0.5 at 90 % confidence, 4 attempts; the global checks run
        // 4 at each size of their cycle (64 KiB, 1 MiB, the share) and then the sweep.
        let global = o.check.starts_with("residue.global");
        let (attempts, statement) = if global {
            (
                13,
                "leak probability per attempt below 0.438 at 90 % confidence at each of the 3 sizes",
            )
        } else {
            (4, "leak probability per attempt below 0.438 at 90 % confidence")
        };
        assert_eq!(o.evidence["attempts"], attempts, "{}", o.trial);
        assert_eq!(o.evidence["hits"], 0, "{}", o.trial);
        let bound = measurement(o, "leak_probability_bound");
        assert!((bound - (1.0 - 0.1f64.powf(0.25))).abs() < 1e-9, "{}: {bound}", o.trial);
        assert_eq!(o.evidence["confidence_statement"], statement, "{}", o.trial);
        if global {
            let rounds = o.evidence["rounds"].as_array().expect("rounds");
            assert!(
                rounds.iter().all(|r| r["round"] == "sweep" || r["attempts"] == 4),
                "{}: {rounds:?}",
                o.trial
            );
            for name in ["detector_throughput", "listener_throughput", "fill_throughput"] {
                assert!(measurement(o, name) > 0.0, "{}: {name}", o.trial);
            }
            // The detector's throughput is the positive control's (the writer's memory,
            // every tile canary); the listener's counts are a figure of their own.
            let gib = f64::from(1u32 << 30);
            let seconds = &o.evidence["device_seconds"];
            let control_bytes = o.evidence["control_blocks_written"].as_f64().unwrap_or(0.0) * 32.0;
            let control = control_bytes / seconds["control"].as_f64().unwrap_or(f64::NAN) / gib;
            let listened = o.evidence["examined_bytes_all_rounds"].as_f64().unwrap_or(0.0);
            let listener = listened / seconds["listener"].as_f64().unwrap_or(f64::NAN) / gib;
            assert!(
                (measurement(o, "detector_throughput") / control - 1.0).abs() < 1e-9,
                "{}",
                o.trial
            );
            assert!(
                (measurement(o, "listener_throughput") / listener - 1.0).abs() < 1e-9,
                "{}",
                o.trial
            );
        }
    }
    assert_eq!(run.record.outcomes.len(), 5);
}

#[test]
fn a_leak_ends_a_check_at_the_first_attempt_that_shows_it() {
    let run = common::run(&["--sim-fault", "local-no-clear", "residue::local::cross_kernel"]);
    let o = outcome(&run.record, "residue.local.cross_kernel");
    assert_eq!(o.verdict.as_str(), "fail");
    assert_eq!(o.evidence["attempts"], 1);
    assert_eq!(o.evidence["hits"], 1);
    assert_eq!(measurement(o, "leak_probability_bound"), 1.0);
}

fn outcome<'r>(record: &'r hilt_results::ResultRecord, check: &str) -> &'r hilt_results::Outcome {
    record
        .outcomes
        .iter()
        .find(|o| o.check == check)
        .unwrap_or_else(|| panic!("{check} did not run"))
}

fn measurement(o: &hilt_results::Outcome, name: &str) -> f64 {
    o.measurements
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{}: no measurement {name}", o.trial))
        .value
}

#[test]
fn the_two_local_checks_tell_process_and_context_boundaries_apart() {
    // Clearing local memory only when another process's kernel comes next protects
    // processes but not kernels of one process.
    let run = common::run(&["--sim-fault", "local-clear-cross-process-only", "residue::local"]);
    assert_eq!(common::verdict(&run.record, "residue.local.cross_process"), "pass");
    assert_eq!(common::verdict(&run.record, "residue.local.cross_kernel"), "fail");
}

#[test]
fn a_partly_blind_detector_is_caught_by_every_positive_control() {
    let run = common::run(&["--sim-fault", "half-blind-detector", "residue"]);
    for o in &run.record.outcomes {
        assert_eq!(o.verdict, hilt_results::Verdict::Inconclusive, "{}", o.trial);
        assert!(
            o.reason
                .as_deref()
                .unwrap_or_default()
                .starts_with("positive control failed"),
            "{:?}",
            o.reason
        );
    }
    assert_eq!(run.record.outcomes.len(), 5);
}

#[test]
fn a_leak_is_measured_and_located() {
    let run = common::run(&[
        "--sim-fault",
        "global-no-scrub",
        "--exact",
        "residue::global::cross_process::sim0",
    ]);
    let o = &run.record.outcomes[0];
    let leaked = o
        .measurements
        .iter()
        .find(|m| m.name == "leaked_bytes")
        .expect("leaked_bytes");
    // The cycle: 64 KiB, 1 MiB and the 32 MiB share of the 64 MiB sim; the first round
    // leaks whole, in place, and ends the check.
    assert_eq!(o.evidence["round_bytes"], serde_json::json!([65536, 1048576, 33554432]));
    assert_eq!(leaked.value, 64.0 * 1024.0);
    assert_eq!(leaked.threshold, Some(0.0));
    assert_eq!(o.evidence["leaked_blocks_in_place"], 2048);
    assert_eq!(o.evidence["first_leak_offset"], 0);
    assert_eq!(
        o.evidence["host_scanner_confirmed_blocks"], 128,
        "a 4 KiB window read back"
    );
    assert_eq!(o.evidence["control_blocks_seen"], o.evidence["control_blocks_written"]);
    assert_ne!(
        o.evidence["tenant_A_pid"], o.evidence["tenant_B_pid"],
        "two real processes"
    );
}

#[test]
fn a_hung_tenant_is_killed_by_its_watchdog_and_recorded() {
    let run = common::run(&[
        "--tenant-timeout",
        "1",
        "--sim-fault",
        "kernel-hang",
        "--exact",
        "residue::global::cross_process::sim0",
    ]);
    let o = &run.record.outcomes[0];
    assert_eq!(o.verdict, hilt_results::Verdict::Error);
    let reason = o.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("killed by its watchdog"), "{reason}");
    let tail = o.evidence["tenant_stderr_tail"].as_str().unwrap_or_default();
    assert!(tail.contains("kernel-hang"), "stderr tail is evidence: {tail}");
    assert_eq!(run.exit, 3, "an error in a mandatory check is inconclusive");
}

#[test]
fn a_crashed_tenant_is_recorded_with_its_stderr() {
    let run = common::run(&[
        "--sim-fault",
        "tenant-crash",
        "--exact",
        "residue::local::cross_kernel::sim0",
    ]);
    let o = &run.record.outcomes[0];
    assert_eq!(o.verdict, hilt_results::Verdict::Error);
    assert!(
        o.reason.as_deref().unwrap_or_default().contains("signal 6"),
        "{:?}",
        o.reason
    );
    assert!(
        o.evidence["tenant_stderr_tail"]
            .as_str()
            .unwrap_or_default()
            .contains("tenant-crash")
    );
}
