//! hilt on the schedulers sites have: a real two-node Slurm cluster on this machine
//! (`ci/slurm-cluster.sh`) runs `deploy/slurm/hilt.sbatch` and the job array of
//! `deploy/slurm/submit-array.sh` with the sim backend, and `hilt fleet` reports what
//! came back; every Kubernetes manifest in `deploy/kubernetes/` validates strictly for
//! every Kubernetes version docs/fleet.md claims, and hilt with exactly a pod's
//! capabilities sees another user's process on a device; the CI examples are well-formed
//! YAML.
//!
//! The cluster needs root and Debian's slurmctld, slurmd, slurm-client and munge; the
//! manifests need `kubernetes-validate` (PyPI, pinned in `ci/kubernetes-validate.txt`;
//! `ci/test.sh` installs it and sets `HILT_KUBERNETES_VALIDATE`). Where either is missing
//! its test is reported as ignored, with the reason (the capability test needs root and
//! util-linux's `setpriv`, as the cluster does); `HILT_REQUIRE_SLURM=1` and
//! `HILT_REQUIRE_KUBERNETES_VALIDATE=1` (set by `ci/test.sh`) make that a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use serde_json::Value;

/// The Kubernetes versions docs/fleet.md claims the manifests for.
const KUBERNETES_VERSIONS: &[&str] = &[
    "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0",
];

fn main() {
    let args = Arguments::from_args();
    let needs = |name: &str, here: fn() -> Result<(), String>, test: fn() -> Result<(), Failed>| {
        Trial::ignorable_test(name, move || match here() {
            Ok(()) => test().map(|()| Completion::Completed),
            Err(why) => Ok(Completion::ignored_with(why)),
        })
    };
    let trials = vec![
        needs(
            "slurm::two_nodes_run_hilt_and_the_fleet_report_names_both",
            slurm_here,
            two_nodes_run_hilt_and_the_fleet_report_names_both,
        ),
        needs(
            "kubernetes::every_manifest_validates_strictly_for_every_claimed_version",
            kubernetes_validate_here,
            every_manifest_validates_strictly_for_every_claimed_version,
        ),
        needs(
            "kubernetes::the_pods_capabilities_see_another_users_process_on_a_device",
            setpriv_here,
            the_pods_capabilities_see_another_users_process_on_a_device,
        ),
        Trial::test(
            "slurm::the_epilog_signs_with_the_lab_key_its_defaults_file_names",
            the_epilog_signs_with_the_lab_key_its_defaults_file_names,
        ),
        needs(
            "ci::the_pipeline_examples_are_well_formed",
            kubernetes_validate_here,
            the_pipeline_examples_are_well_formed,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `Err(why)` when `var` is not `1`; a failure when it is.
fn missing(var: &str, why: String) -> Result<(), String> {
    if std::env::var(var).as_deref() == Ok("1") {
        panic!("{var}=1 but {why}");
    }
    Err(why)
}

/// Whether `program` is an executable in a directory of `PATH` (or the `sbin` ones).
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .any(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn slurm_here() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return missing(
            "HILT_REQUIRE_SLURM",
            "the Slurm cluster needs root (slurmd starts the jobs, mknod makes the GRES devices)".into(),
        );
    }
    for (program, package) in [
        ("munged", "munge"),
        ("slurmctld", "slurmctld"),
        ("slurmd", "slurmd"),
        ("sbatch", "slurm-client"),
    ] {
        if !on_path(program) {
            return missing(
                "HILT_REQUIRE_SLURM",
                format!("{program} is missing (Debian: apt-get install {package})"),
            );
        }
    }
    Ok(())
}

/// Root and `setpriv` (util-linux), to run hilt with exactly a pod's capabilities.
fn setpriv_here() -> Result<(), String> {
    if !root() {
        return missing(
            "HILT_REQUIRE_SLURM",
            "running hilt with a pod's capabilities needs root (a pod's user is root with a few capabilities)".into(),
        );
    }
    if !on_path("setpriv") {
        return missing(
            "HILT_REQUIRE_SLURM",
            "setpriv is missing (Debian: apt-get install util-linux)".into(),
        );
    }
    Ok(())
}

fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The `kubernetes-validate` executable `ci/test.sh` installed.
fn kubernetes_validate() -> Option<PathBuf> {
    std::env::var_os("HILT_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .filter(|p| p.exists())
}

fn kubernetes_validate_here() -> Result<(), String> {
    match kubernetes_validate() {
        Some(_) => Ok(()),
        None => missing(
            "HILT_REQUIRE_KUBERNETES_VALIDATE",
            "kubernetes-validate is not installed (ci/test.sh installs it from ci/kubernetes-validate.txt and sets \
             HILT_KUBERNETES_VALIDATE)"
                .into(),
        ),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Three consecutive free TCP ports on the loopback, the first returned: slurmctld's and
/// the two slurmd's, so that clusters of several checkouts never meet.
fn free_ports() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(std::process::id()) ^ u64::from(nanos);
    for i in 0..200u64 {
        let base = 20_000 + ((seed.wrapping_mul(2_654_435_761).wrapping_add(i * 7919)) % 40_000) as u16;
        let listeners: Vec<_> = (0..3)
            .map_while(|k| std::net::TcpListener::bind(("127.0.0.1", base + k)).ok())
            .collect();
        if listeners.len() == 3 {
            return base;
        }
    }
    panic!("no three consecutive free ports");
}

/// A running cluster, stopped when dropped.
struct Cluster {
    state: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn up(state: PathBuf) -> Result<Cluster, Failed> {
        let out = Command::new("timeout")
            .args(["180", "ci/slurm-cluster.sh", "up"])
            .current_dir(repo())
            .env("HILT_SLURM_DIR", &state)
            .env("HILT_SLURM_PORT", free_ports().to_string())
            .output()
            .map_err(|e| format!("ci/slurm-cluster.sh: {e}"))?;
        let cluster = Cluster {
            conf: state.join("etc/slurm.conf"),
            state,
        };
        if !out.status.success() {
            return Err(format!("the cluster did not come up:\n{}", text(&out)).into());
        }
        Ok(cluster)
    }

    /// A Slurm client command for this cluster, with hilt's test environment.
    fn command(&self, program: &str) -> Command {
        let mut cmd = common::command_for("timeout");
        cmd.arg("300")
            .arg(program)
            .env("SLURM_CONF", &self.conf)
            .current_dir(repo());
        cmd
    }

    /// Waits until the jobs `ids` have left the queue.
    fn wait(&self, ids: &[&str]) -> Result<(), Failed> {
        let start = Instant::now();
        loop {
            let out = self
                .command("squeue")
                .args(["-h", "-o", "%i %T", "-j", &ids.join(",")])
                .output()
                .map_err(|e| format!("squeue: {e}"))?;
            let queued = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if queued.is_empty() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(300) {
                return Err(format!("jobs still queued after 300 s: {queued}").into());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("timeout")
            .args(["120", "ci/slurm-cluster.sh", "down"])
            .current_dir(repo())
            .env("HILT_SLURM_DIR", &self.state)
            .output();
    }
}

/// `hilt fleet DIR` as JSON with the lab key and the run's node list; its exit code and
/// each node's status.
fn fleet(dir: &Path, key: &Path) -> Result<(i32, Vec<(String, String)>), Failed> {
    let out = common::command()
        .arg("fleet")
        .arg(dir)
        .arg("--trusted-key")
        .arg(key)
        .arg("--expect-nodes")
        .arg(dir.join("nodes.txt"))
        .args(["--format", "json"])
        .output()
        .map_err(|e| format!("hilt fleet: {e}"))?;
    let json: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("fleet JSON: {e}\n{}", text(&out)))?;
    let nodes = json["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or_default().to_string(),
                n["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    Ok((out.status.code().unwrap_or(-1), nodes))
}

fn two_nodes_run_hilt_and_the_fleet_report_names_both() -> Result<(), Failed> {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("slurm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let cluster = Cluster::up(work.join("cluster"))?;
    let keygen = common::command()
        .args(["keygen", "--out"])
        .arg(work.join("lab"))
        .output()
        .map_err(|e| e.to_string())?;
    assert!(keygen.status.success(), "{}", text(&keygen));
    let results = work.join("results");
    let key = work.join("lab.pub");
    let setup = |cmd: &mut Command| {
        cmd.env("HILT", common::hilt_bin())
            .env("HILT_RESULTS", &results)
            .env("HILT_SIGN_KEY", work.join("lab.key"))
            .env("HILT_TRUSTED_KEY", &key)
            .env("HILT_ARGS", "--tier smoke")
            // Both nodes are this machine: they share its device locks, as two jobs on
            // one node would.
            .env("HILT_LOCK_DIR", work.join("locks"));
    };

    // One job over both nodes, the GPUs asked for through GRES.
    let mut sbatch = cluster.command("sbatch");
    setup(&mut sbatch);
    let out = sbatch
        .arg("--wait")
        .args(["--nodes=2", "--gres=gpu:2"])
        .arg(format!("--output={}", work.join("job-%j.out").display()))
        .env("HILT_RUN_ID", "nightly")
        .arg("deploy/slurm/hilt.sbatch")
        .output()
        .map_err(|e| e.to_string())?;
    let logs: String = std::fs::read_dir(&work)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("job-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert_eq!(out.status.code(), Some(0), "{}\njob output:\n{logs}", text(&out));
    let run = results.join("nightly");
    for node in ["n1", "n2"] {
        let signed = common::results_below(&run.join(node), true);
        assert_eq!(signed.len(), 1, "{node}: {signed:?}\n{logs}");
        assert!(run.join(node).join("junit.xml").exists(), "{node} wrote its JUnit");
    }
    let summary = std::fs::read_to_string(run.join("fleet.md")).map_err(|e| format!("fleet.md: {e}\n{logs}"))?;
    assert!(
        summary.starts_with("## hilt fleet: CONFORMANT: 2 of 2 nodes conformant"),
        "{summary}"
    );
    // The fleet report on what came back: both nodes, by Slurm's names, verified.
    let (code, nodes) = fleet(&run, &key)?;
    assert_eq!(code, 0, "{nodes:?}");
    assert_eq!(
        nodes,
        [
            ("n1".to_string(), "conformant".to_string()),
            ("n2".to_string(), "conformant".to_string())
        ]
    );

    // The same as a job array over two node lists, reported by a job that waits for it.
    std::fs::write(work.join("lists.txt"), "# one list per line\nn2\nn1\n").map_err(|e| e.to_string())?;
    let mut submit = cluster.command("deploy/slurm/submit-array.sh");
    setup(&mut submit);
    let out = submit
        .arg(work.join("lists.txt"))
        .arg("--gres=gpu:2")
        .arg(format!("--output={}", work.join("array-%A_%a.out").display()))
        .output()
        .map_err(|e| e.to_string())?;
    assert!(out.status.success(), "{}", text(&out));
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 2, "the array and its report: {ids:?}");
    cluster.wait(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
    let run = results.join(format!("slurm-{}", ids[0]));
    let summary = std::fs::read_to_string(run.join("fleet.md")).map_err(|e| format!("fleet.md: {e}"))?;
    assert!(
        summary.starts_with("## hilt fleet: CONFORMANT: 2 of 2 nodes conformant"),
        "{summary}"
    );
    let (code, nodes) = fleet(&run, &key)?;
    assert_eq!(code, 0, "{nodes:?}");
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn every_manifest_validates_strictly_for_every_claimed_version() -> Result<(), Failed> {
    let validate = kubernetes_validate().ok_or("no kubernetes-validate")?;
    let dir = repo().join("deploy/kubernetes");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 4, "{manifests:?}");
    let docs = std::fs::read_to_string(repo().join("docs/fleet.md")).map_err(|e| e.to_string())?;
    let claimed = format!(
        "Kubernetes {} to {}",
        KUBERNETES_VERSIONS[0].trim_end_matches(".0"),
        KUBERNETES_VERSIONS[KUBERNETES_VERSIONS.len() - 1].trim_end_matches(".0")
    );
    assert!(docs.contains(&claimed), "docs/fleet.md claims `{claimed}`");
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&validate)
            .args(["--strict", "--quiet", "-k", version])
            .args(&manifests)
            .output()
            .map_err(|e| e.to_string())?;
        assert!(out.status.success(), "Kubernetes {version}:\n{}", text(&out));
    }
    // The validator does catch a field Kubernetes does not know.
    let bad = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-manifest-{}.yaml", std::process::id()));
    let text_of = std::fs::read_to_string(dir.join("cronjob-nvidia.yaml")).map_err(|e| e.to_string())?;
    std::fs::write(
        &bad,
        text_of.replace("hostPID: true", "hostPID: true\n          hostPIDs: true"),
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new(&validate)
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSIONS[0]])
        .arg(&bad)
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success(), "a misspelt field must fail strict validation");
    assert!(text(&out).contains("hostPIDs"), "{}", text(&out));
    Ok(())
}

/// `deploy/slurm/epilog.sh` takes its settings from a defaults file of plain `VAR=value`
/// lines, as /etc/default files are written: hilt must get them (the lab key above all),
/// not only the script.
fn the_epilog_signs_with_the_lab_key_its_defaults_file_names() -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let lab = dir.path().join("lab");
    let out = common::command()
        .args(["keygen", "--out"])
        .arg(&lab)
        .output()
        .map_err(|e| e.to_string())?;
    assert!(out.status.success(), "{}", text(&out));
    let results = dir.path().join("epilog");
    let locks = dir.path().join("locks");
    std::fs::create_dir(&locks).map_err(|e| e.to_string())?;
    let defaults = dir.path().join("hilt.defaults");
    std::fs::write(
        &defaults,
        format!(
            "HILT={}\nHILT_EPILOG_RESULTS={}\nHILT_SIGN_KEY={}\nHILT_LOCK_DIR={}\n",
            common::hilt_bin().display(),
            results.display(),
            lab.with_extension("key").display(),
            locks.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    // Earlier jobs' run folders, and a folder that is not a run's: the epilog keeps the
    // newest HILT_EPILOG_KEEP runs (its own among them) and nothing else is touched.
    let earlier = [
        "20261101T010000Z-0000000a",
        "20261102T010000Z-0000000b",
        "20261103T010000Z-0000000c",
    ];
    for name in earlier.iter().chain(&["notes"]) {
        std::fs::create_dir_all(results.join(name)).map_err(|e| e.to_string())?;
        std::fs::write(results.join(name).join("kept.txt"), "x").map_err(|e| e.to_string())?;
    }
    // A file and a link that bear a run folder's name are not run folders: kept.
    let (file, link) = ("20261001T010000Z-0000000d", "20261002T010000Z-0000000e");
    std::fs::write(results.join(file), "x").map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink("notes", results.join(link)).map_err(|e| e.to_string())?;
    let out = common::command_for("bash")
        .arg(repo().join("deploy/slurm/epilog.sh"))
        .env("HILT_DEFAULTS", &defaults)
        .env("SLURMD_NODENAME", "n9")
        .env("SLURM_JOB_ID", "7")
        .env("HILT_EPILOG_KEEP", "2")
        .env_remove("HILT_LOCK_DIR")
        .output()
        .map_err(|e| e.to_string())?;
    let log = std::fs::read_to_string(results.join("epilog.log")).unwrap_or_default();
    assert!(out.status.success(), "{}\n{log}", text(&out));
    let left: std::collections::BTreeSet<String> = std::fs::read_dir(&results)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let latest = std::fs::read_link(results.join("latest")).map_err(|e| e.to_string())?;
    let latest = latest.to_string_lossy().into_owned();
    let expected: std::collections::BTreeSet<String> =
        [earlier[2], &latest, "latest", "notes", "epilog.log", file, link]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert_eq!(left, expected, "{log}");
    let signed = common::results_below(&results, true);
    assert_eq!(signed.len(), 1, "one signed result: {signed:?}\n{log}");
    let verify = common::command()
        .arg("verify")
        .arg(&signed[0])
        .arg("--trusted-key")
        .arg(lab.with_extension("pub"))
        .output()
        .map_err(|e| e.to_string())?;
    assert!(
        verify.status.success(),
        "the epilog's result is signed with the lab key of its defaults file:\n{}\n{log}",
        text(&verify)
    );
    let record = hilt_results::ResultRecord::from_json(
        &std::fs::read(common::results_below(&results, false)[0].clone()).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    assert_eq!(record.host.node.as_deref(), Some("n9"));
    // The lock directory the file names is the one the run locked in.
    let locked: Vec<_> = std::fs::read_dir(&locks)
        .map_err(|e| e.to_string())?
        .flatten()
        .collect();
    assert!(
        !locked.is_empty(),
        "the run locked its device in HILT_LOCK_DIR of the defaults file"
    );
    Ok(())
}

/// The capabilities a manifest's containers add (`add: [A, B]`), each manifest's list.
fn added_capabilities(manifest: &str) -> Vec<Vec<String>> {
    manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("add: ["))
        .map(|l| {
            l.trim_end_matches(']')
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect()
}

/// Each manifest's pod runs as root with every capability dropped but those it adds, in
/// the host's process namespace, to see other processes holding a GPU's device files.
/// The processes of a node's tenants are other users'; hilt, given exactly the pod's
/// capabilities, must see one of them holding the (sim) device's file and call the
/// performance figures inconclusive, as it does with every capability.
fn the_pods_capabilities_see_another_users_process_on_a_device() -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("accel0");
    std::fs::write(&file, "").map_err(|e| e.to_string())?;
    // A tenant: another user's process with the device file open.
    let mut tenant = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "300"])
        .stdin(std::fs::File::open(&file).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| e.to_string())?;
    // Until setpriv has become `sleep`, the name the results will give it.
    let comm = format!("/proc/{}/comm", tenant.id());
    let start = Instant::now();
    while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the tenant never became sleep"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let knob = format!("device_file=\"{}\"", file.display());
    let manifests = ["cronjob-nvidia.yaml", "cronjob-amd.yaml", "daemonset-nvidia.yaml"];
    let mut failures = Vec::new();
    for name in manifests {
        let manifest =
            std::fs::read_to_string(repo().join("deploy/kubernetes").join(name)).map_err(|e| e.to_string())?;
        assert!(
            manifest.contains("hostPID: true"),
            "{name} shares the host's process namespace"
        );
        assert!(manifest.contains("drop: [ALL]"), "{name} drops every other capability");
        let lists = added_capabilities(&manifest);
        assert_eq!(lists.len(), 1, "{name}: one container adds capabilities: {lists:?}");
        let caps: Vec<String> = lists[0].iter().map(|c| format!("+{}", c.to_lowercase())).collect();
        let caps = format!("-all,{}", caps.join(","));
        let out = dir.path().join(name);
        let run = common::command_for("setpriv")
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(format!("--bounding-set={caps}"))
            .arg("--")
            .arg(common::hilt_bin())
            .args(["run", "-q", "--device", "sim0", "--sim-knob", &knob, "--out"])
            .arg(&out)
            .arg("performance::launch_latency")
            .output()
            .map_err(|e| e.to_string())?;
        let result = out.join("latest/result.json");
        let Ok(bytes) = std::fs::read(&result) else {
            failures.push(format!("{name}: no result ({})", text(&run)));
            continue;
        };
        let record = hilt_results::ResultRecord::from_json(&bytes).map_err(|e| e.to_string())?;
        let o = record
            .outcomes
            .iter()
            .find(|o| o.check == "performance.launch_latency" && o.device == "sim0")
            .ok_or("no launch latency outcome")?;
        let seen = format!("pid {} (sleep) holds {}", tenant.id(), file.display());
        if o.evidence.get("device_users") != Some(&serde_json::json!([seen])) || o.verdict.as_str() != "inconclusive" {
            failures.push(format!(
                "{name} (capabilities {caps}): the tenant's process was not seen: {} {:?}; evidence {:?}",
                o.verdict.as_str(),
                o.reason,
                o.evidence
            ));
        }
    }
    let _ = tenant.kill();
    let _ = tenant.wait();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

fn the_pipeline_examples_are_well_formed() -> Result<(), Failed> {
    // The validator's Python has PyYAML (kubernetes-validate depends on it).
    let validate = kubernetes_validate().ok_or("no kubernetes-validate")?;
    let python = validate.with_file_name("python3");
    let script = r#"
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict), path
    print(path, list(doc)[:6])
"#;
    let files = ["deploy/ci/github-actions.yml", "deploy/ci/gitlab-ci.yml"];
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(files)
        .current_dir(repo())
        .output()
        .map_err(|e| e.to_string())?;
    assert!(out.status.success(), "{}", text(&out));
    // What each pipeline must do: run hilt with JUnit and a Markdown summary, keep the
    // signed result, publish the JUnit.
    for (file, needles) in [
        (
            files[0],
            &[
                "hilt run",
                "--junit",
                "--markdown \"$GITHUB_STEP_SUMMARY\"",
                "result.dsse.json",
                "actions/upload-artifact",
                "junit",
            ][..],
        ),
        (
            files[1],
            &[
                "hilt run",
                "--junit",
                "--markdown",
                "result.dsse.json",
                "reports:",
                "junit:",
            ][..],
        ),
    ] {
        let text = std::fs::read_to_string(repo().join(file)).map_err(|e| e.to_string())?;
        for n in needles {
            assert!(text.contains(n), "{file} lacks `{n}`");
        }
    }
    Ok(())
}
