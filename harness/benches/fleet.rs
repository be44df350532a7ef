//! `hilt fleet` at scale: 1,000 nodes of 8 accelerators each, every result signed and
//! verified, measured against a plain read of the same files in the same run.
//!
//! The results are made from the real PoCL fixture record (`tests/fixtures/results/
//! pocl.json`): its device and the device's outcomes copied to 8 accelerators per node,
//! each measurement moved by a few per cent per node and device, a few nodes failing and
//! a few outliers, then signed with a fresh key into `NODE/<run-dir>/result.dsse.json`
//! with a `latest` link beside it, as `hilt run --out` lays them out. A baseline night
//! (an older driver on every node, a few regressions) is made the same way.
//!
//! Measured, in one process, on every core (`available_parallelism`):
//!
//! - `plain read`: reading every envelope and parsing it as JSON, the least any reader
//!   of the files must do;
//! - `fleet`: finding, reading, verifying every signature, reducing, building the report
//!   and rendering all five formats;
//! - `fleet + baseline`: the same with the baseline night read and compared.
//!
//! Each is run three times; the best and the median wall times are printed, with the
//! fleet's ratio to the plain read and the peak resident memory of each phase (the
//! process's high-water mark, reset before the phase through `/proc/self/clear_refs`,
//! which the allocator's retained memory can only raise). `HILT_BENCH_NODES` sets the
//! number of nodes (default 1,000).
//!
//! Run with `cargo bench -p hilt-harness --bench fleet`; docs/benchmarks.md holds the
//! figures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hilt_harness::report::fleet::{self, FleetInput};
use hilt_results::signed::{PublicKey, SigningKey, TrustedKey};
use hilt_results::{ConformanceStatus, ResultRecord, Verdict};

const GPUS: usize = 8;

fn main() {
    let nodes: usize = std::env::var("HILT_BENCH_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // `HILT_BENCH_DIR` keeps the generated results between runs (made when missing).
    let kept = std::env::var_os("HILT_BENCH_DIR").map(PathBuf::from);
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = kept.as_deref().unwrap_or(temp.path());
    let key_file = dir.join("lab.key");
    let key = match std::fs::read_to_string(&key_file) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem).expect("kept key"),
        Err(_) => {
            let key = SigningKey::generate().expect("key");
            std::fs::create_dir_all(dir).expect("mkdir");
            std::fs::write(&key_file, key.to_pkcs8_pem().expect("pem")).expect("write key");
            key
        }
    };
    let trusted = vec![TrustedKey {
        label: "lab.pub".into(),
        key: PublicKey::from_pem(&key.public().to_pem()).expect("public key"),
    }];
    let template = template();
    let started = Instant::now();
    let mut bytes = 0u64;
    let made = dir.join("tonight").exists();
    if made {
        println!("reusing the results in {}", dir.display());
    }
    for (night, driver) in [("baseline", "3.0+debian"), ("tonight", "3.1+debian")] {
        if made {
            break;
        }
        for n in 0..nodes {
            let record = node_record(&template, n, night == "tonight", driver);
            let envelope = key.sign(&record).expect("sign");
            bytes += envelope.len() as u64;
            let run_dir = dir
                .join(night)
                .join(record.host.node_name())
                .join(format!("20261130T020000Z-{n:08x}"));
            std::fs::create_dir_all(&run_dir).expect("mkdir");
            std::fs::write(run_dir.join("result.dsse.json"), envelope).expect("write");
            std::os::unix::fs::symlink(
                run_dir.file_name().expect("name"),
                run_dir.parent().expect("node dir").join("latest"),
            )
            .expect("link");
        }
    }
    drop(template);
    if !made {
        println!(
            "{nodes} nodes x {GPUS} accelerators, two nights: {:.0} MiB of signed results made in {:.1} s",
            bytes as f64 / f64::from(1 << 20),
            started.elapsed().as_secs_f64()
        );
    }
    println!("{threads} threads");

    let tonight = dir.join("tonight");
    let baseline = dir.join("baseline");
    let plain = measure("plain read", || plain_read(&tonight));
    let alone = measure("fleet", || report(&tonight, None, &trusted, threads));
    let both = measure("fleet + baseline", || {
        report(&tonight, Some(&baseline), &trusted, threads)
    });
    println!(
        "CPU time, fleet / plain read: {:.2}; fleet + baseline / plain read: {:.2}",
        alone.as_secs_f64() / plain.as_secs_f64(),
        both.as_secs_f64() / plain.as_secs_f64()
    );
}

/// Runs `f` three times; prints the best and median wall time, the median CPU time of
/// the process (every thread, user and system: what a busy machine does not inflate)
/// and the peak memory; returns the median CPU time.
fn measure(name: &str, mut f: impl FnMut() -> String) -> Duration {
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    let mut peak = 0;
    let mut summary = String::new();
    for _ in 0..3 {
        reset_peak_memory();
        let (start, start_cpu) = (Instant::now(), cpu_time());
        summary = f();
        times.push(start.elapsed());
        cpu.push(cpu_time() - start_cpu);
        peak = peak.max(peak_memory_kib());
    }
    times.sort();
    cpu.sort();
    println!(
        "{name:18} wall best {:6.2} s, median {:6.2} s; CPU median {:6.2} s; peak RSS {:5.0} MiB; {summary}",
        times[0].as_secs_f64(),
        times[1].as_secs_f64(),
        cpu[1].as_secs_f64(),
        peak as f64 / 1024.0
    );
    cpu[1]
}

/// The CPU time this process has used so far, every thread, user and system.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Every envelope read and parsed as JSON.
fn plain_read(dir: &Path) -> String {
    let (paths, _) = fleet::find_results(&[dir.to_path_buf()]).expect("find");
    let mut objects = 0;
    for p in &paths {
        let bytes = std::fs::read(p).expect("read");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        objects += usize::from(v.is_object());
    }
    format!("{objects} files")
}

/// The whole report, every format rendered.
fn report(dir: &Path, baseline: Option<&Path>, keys: &[TrustedKey], threads: usize) -> String {
    let start = Instant::now();
    let (paths, unlisted) = fleet::find_results(&[dir.to_path_buf()]).expect("find");
    let current = fleet::read_results(&paths, keys, threads);
    let baseline = baseline.map(|b| {
        let (paths, _) = fleet::find_results(&[b.to_path_buf()]).expect("find");
        fleet::read_results(&paths, keys, threads)
    });
    let read = start.elapsed();
    let f = fleet::build(FleetInput {
        current,
        unlisted,
        baseline,
        expected: Vec::new(),
        keys_given: true,
        outlier_mad: None,
        profile_outlier_mad: Default::default(),
    });
    let built = start.elapsed();
    let rendered: usize = [
        fleet::text(&f),
        fleet::markdown(&f),
        fleet::html(&f),
        fleet::junit(&f),
        fleet::json(&f),
    ]
    .iter()
    .map(String::len)
    .sum();
    let outliers: usize = f.measurements.iter().map(|m| m.outliers.len()).sum();
    format!(
        "{} nodes, {} regressions, {outliers} outliers, {:.1} MiB rendered (read and verified {:.2} s, built {:.2} s, rendered {:.2} s)",
        f.nodes.len(),
        f.nodes.iter().map(|n| n.regressions.len()).sum::<usize>(),
        rendered as f64 / f64::from(1 << 20),
        read.as_secs_f64(),
        (built - read).as_secs_f64(),
        (start.elapsed() - built).as_secs_f64(),
    )
}

/// The PoCL fixture record, complete and conformant.
fn template() -> ResultRecord {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/results/pocl.json");
    let mut r = ResultRecord::from_json(&std::fs::read(path).expect("fixture")).expect("record");
    for o in &mut r.outcomes {
        if o.verdict == Verdict::Fail {
            o.verdict = Verdict::Pass;
            o.reason = None;
        }
    }
    r.signing = None;
    r
}

/// Node `n`'s record: the template's accelerator copied to 8, measurements moved a few
/// per cent; tonight, every 97th node leaks and node 17's accelerator 3 is slow.
fn node_record(template: &ResultRecord, n: usize, tonight: bool, driver: &str) -> ResultRecord {
    let mut r = template.clone();
    let node = format!("gpu{n:04}");
    r.host.node = Some(node.clone());
    r.host.hostname = node;
    r.run.id = format!("{n:032x}");
    let accel = r.devices.iter().find(|d| d.backend != "host").cloned().expect("device");
    let host_outcomes: Vec<_> = r.outcomes.iter().filter(|o| o.device == "host").cloned().collect();
    let device_outcomes: Vec<_> = r.outcomes.iter().filter(|o| o.device == accel.id).cloned().collect();
    r.devices.retain(|d| d.backend == "host");
    r.outcomes = host_outcomes;
    for g in 0..GPUS {
        let id = format!("opencl{g}");
        let mut d = accel.clone();
        d.id = id.clone();
        d.pci_address = Some(format!("0000:{:02x}:00.0", 0x17 + g * 0x10));
        d.facts.insert("opencl.driver_version".into(), driver.into());
        r.devices.push(d);
        for o in &device_outcomes {
            let mut o = o.clone();
            o.trial = o.trial.replace(&accel.id, &id);
            o.device = id.clone();
            // A fixed spread per node and device, -3 % to +3 %.
            let jitter = 1.0 + (((n * 31 + g * 7) % 61) as f64 - 30.0) / 1000.0;
            for m in &mut o.measurements {
                m.value *= jitter;
                if tonight && n == 17 && g == 3 {
                    m.value *= 0.4;
                }
            }
            if tonight && n % 97 == 5 && o.check == "residue.local.cross_kernel" {
                o.verdict = Verdict::Fail;
                o.reason = Some("the listener kernel read the writer's canary".into());
            }
            r.outcomes.push(o);
        }
    }
    r.run.planned = r.outcomes.iter().map(|o| o.trial.clone()).collect();
    r.summary = hilt_results::Summary::tally(r.outcomes.len() as u32, &r.outcomes);
    let failed = r.outcomes.iter().any(|o| o.verdict == Verdict::Fail);
    r.conformance.status = if failed {
        ConformanceStatus::NotConformant
    } else {
        ConformanceStatus::Conformant
    };
    r.conformance.conformant = !failed;
    r.conformance.reasons = if failed {
        vec!["residue::local::cross_kernel failed".into()]
    } else {
        Vec::new()
    };
    r
}

/// Resets the process's peak resident memory (`VmHWM`) to its current size.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last reset, KiB.
fn peak_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
