//! Helpers shared by the integration tests: run the real `hilt` binary, read what it
//! recorded, and redact what changes from run to run (times, ids, host names, paths).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hilt_results::ResultRecord;

/// The `hilt` binary built for these tests.
pub fn hilt_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hilt"))
}

/// `hilt` set up so that no test depends on the machine it runs on: profiles from the
/// test fixtures too (`HILT_PROFILE_PATH`), the host's files from the compliant fixture
/// host (`HILT_SYSFS_ROOT`; `--sysfs-root` overrides it), and no real backend probed
/// (`HILT_BACKENDS=sim`), so the simulated device runs even where PoCL is installed.
/// The OpenCL tests (`tests/opencl.rs`) choose their backends themselves. Each command
/// gets a device lock directory of its own (`HILT_LOCK_DIR`), so that tests running at
/// once never wait for each other's `sim0`; tests of the locks set a shared one.
pub fn command() -> Command {
    command_for(hilt_bin())
}

/// Another program with the same environment as [`command`] (one that runs `hilt`).
pub fn command_for(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("HILT_PROFILE_PATH", fixtures().join("profiles"))
        .env("HILT_SYSFS_ROOT", host_fixture("h100-good"))
        .env("HILT_BACKENDS", "sim")
        .env("HILT_LOCK_DIR", lock_dir())
        .env_remove("HILT_SIGN_KEY")
        .env_remove("HILT_NODE")
        .env_remove("HILT_LOCK_TIMEOUT");
    cmd
}

/// A fresh directory for device locks, under the test target's temporary directory.
pub fn lock_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("locks").join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Every result file below `dir` (`result.json`, or `result.dsse.json` with `signed`),
/// wherever the run put it, `latest` links not followed.
pub fn results_below(dir: &Path, signed: bool) -> Vec<PathBuf> {
    let name = if signed { "result.dsse.json" } else { "result.json" };
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && entry.file_name() == name {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Runs `hilt ARGS` (see [`command`]).
pub fn hilt(args: &[&str]) -> Output {
    command().args(args).output().expect("hilt runs")
}

/// A host fixture tree, `tests/fixtures/hosts/NAME`.
pub fn host_fixture(name: &str) -> PathBuf {
    fixtures().join("hosts").join(name)
}

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// What one `hilt run` left behind.
pub struct Run {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
    pub record: ResultRecord,
    /// The output directory (`--out`).
    pub out: tempfile::TempDir,
    /// The run's own folder in it, holding result.json, result.dsse.json, events.jsonl.
    pub dir: PathBuf,
}

/// The folder of the newest run in output directory `out`: where `out/latest` points.
/// Tests find a run's files through this, never at a fixed path.
pub fn run_dir(out: &Path) -> PathBuf {
    let link = out.join("latest");
    let target = std::fs::read_link(&link).unwrap_or_else(|e| panic!("no {} ({e})", link.display()));
    assert!(target.is_relative(), "latest is a relative link: {}", target.display());
    out.join(target)
}

/// Every run folder in output directory `out`, oldest first: by the start time their
/// records give to the millisecond (their names carry it to the second only, so two runs
/// started in one second sort by name alone in no particular order).
pub fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<(String, PathBuf)> = std::fs::read_dir(out)
        .expect("output directory")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let started = std::fs::read(e.path().join("result.json"))
                .ok()
                .and_then(|b| hilt_results::ResultRecord::from_json(&b).ok())
                .map(|r| r.run.started_at)
                .unwrap_or_default();
            (started, e.path())
        })
        .collect();
    dirs.sort();
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// Runs `hilt run --out TMP ARGS` and reads the result it recorded.
pub fn run(args: &[&str]) -> Run {
    run_with(&[], args)
}

/// [`run`] with environment variables set (or, with an empty value, removed) on top of
/// [`command`]'s: `HILT_BACKENDS=none` for a replay that examines only its tree.
pub fn run_with(env: &[(&str, &str)], args: &[&str]) -> Run {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().to_str().expect("utf-8 temp path");
    let mut full = vec!["run", "--out", dir];
    full.extend_from_slice(args);
    let mut cmd = command();
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let output = cmd.args(&full).output().expect("hilt runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let bytes = std::fs::read(out.path().join("latest/result.json"))
        .unwrap_or_else(|e| panic!("no result.json ({e}); stderr:\n{stderr}\nstdout:\n{stdout}"));
    let record = ResultRecord::from_json(&bytes).expect("result.json is a valid record");
    Run {
        exit: output.status.code().unwrap_or(-1),
        stdout,
        stderr,
        record,
        dir: run_dir(out.path()),
        out,
    }
}

/// The verdict of `check` in a record, as its string name.
pub fn verdict(record: &ResultRecord, check: &str) -> String {
    record
        .outcomes
        .iter()
        .find(|o| o.check == check)
        .map(|o| o.verdict.as_str().to_string())
        .unwrap_or_else(|| format!("<{check} did not run>"))
}

/// Replaces what varies between runs with stable placeholders.
pub fn redact(text: &str) -> String {
    let mut out = text.replace(env!("CARGO_MANIFEST_DIR"), "[repo]");
    for (pattern, replacement) in [
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "[time]"),
        (r"finished in \d+\.\d+s", "finished in [duration]"),
        (r#""duration_ms": \d+"#, r#""duration_ms": "[ms]""#),
        (r#""id": "[0-9a-f]{32}""#, r#""id": "[run-id]""#),
        (r#""tenant_([A-Z])_pid": \d+"#, r#""tenant_${1}_pid": "[pid]""#),
        (r#""hostname": "[^"]*""#, r#""hostname": "[hostname]""#),
        (r#""machine": "[0-9a-f]{32}""#, r#""machine": "[machine]""#),
        (r#""kernel": "[^"]*""#, r#""kernel": "[kernel]""#),
        (r#""arch": "[^"]*""#, r#""arch": "[arch]""#),
        (r#""cpus": \d+"#, r#""cpus": "[cpus]""#),
        (
            r#""executable_sha256": "[0-9a-f]{64}""#,
            r#""executable_sha256": "[sha256]""#,
        ),
        (r#""keyid": "[0-9a-f]{64}""#, r#""keyid": "[keyid]""#),
        (
            r#""(manifest|tree)_sha256": "[0-9a-f]{64}""#,
            r#""${1}_sha256": "[sha256]""#,
        ),
        (
            r#""public_key": "-----BEGIN PUBLIC KEY-----[^"]*""#,
            r#""public_key": "[public key]""#,
        ),
        (r"\d{8}T\d{6}Z-[0-9a-f]{8}", "[run-dir]"),
        // A replay's tree digest, and the node named after it, change with the fixture.
        (r"tree sha256 [0-9a-f]{64}", "tree sha256 [sha256]"),
        (r"replay-[0-9a-f]{12}", "replay-[tree]"),
    ] {
        out = regex_lite::Regex::new(pattern)
            .expect("pattern")
            .replace_all(&out, replacement)
            .into_owned();
    }
    // A run's node defaults to the host name; node names a test chose stay.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    out.replace(&format!("\"node\": \"{}\"", host.trim()), "\"node\": \"[hostname]\"")
}

/// Whether `hilt devices` (run by `devices`) lists `BACKEND0`; `Err` with the backend's own
/// note when not. With `require_var` set to `1` a missing device is a failure instead: CI
/// and GPU runners set it, so that a runtime test never passes by not running.
pub fn backend_device(backend: &str, require_var: &str, devices: Output) -> Result<(), String> {
    let text = String::from_utf8_lossy(&devices.stdout).into_owned();
    if text.lines().any(|l| l.starts_with(&format!("{backend}0 "))) {
        return Ok(());
    }
    let why = text
        .lines()
        .find(|l| l.starts_with(&format!("{backend}:")))
        .unwrap_or("no device")
        .to_string();
    if std::env::var(require_var).as_deref() == Ok("1") {
        panic!("{require_var}=1 but there is no {backend} device: {why}");
    }
    Err(format!("no {backend} device here ({why})"))
}

/// `hilt run -q --device DEVICE --out TMP ARGS` through `hilt` (a test file's own
/// runner, with its backend's environment); the exit code, the record and stderr.
pub fn run_device(hilt: impl Fn(&[&str]) -> Output, device: &str, args: &[&str]) -> (i32, ResultRecord, String) {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().to_str().expect("utf-8 path");
    let mut full = vec!["run", "-q", "--device", device, "--out", dir];
    full.extend_from_slice(args);
    let output = hilt(&full);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let bytes = std::fs::read(out.path().join("latest/result.json"))
        .unwrap_or_else(|e| panic!("no result.json ({e}); stderr:\n{stderr}"));
    let record = ResultRecord::from_json(&bytes).expect("a valid record");
    (output.status.code().unwrap_or(-1), record, stderr)
}

/// Chromium, or none when the browser tests are to be skipped (`HILT_SKIP_CHROMIUM=1`);
/// without it and without that variable, a panic that says how to install it.
pub fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(PathBuf::from);
    if found.is_none() && std::env::var("HILT_SKIP_CHROMIUM").as_deref() != Ok("1") {
        panic!("this test needs Chromium (Debian: apt-get install chromium); set HILT_SKIP_CHROMIUM=1 to skip it");
    }
    found
}

/// What headless Chromium made of a page.
pub struct Rendered {
    /// The DOM after parsing, as `--dump-dom` prints it.
    pub dom: String,
    /// The console messages the page caused (under the pages' content security policy,
    /// any attempt to load something is one).
    pub console: Vec<String>,
}

/// Renders `page` in headless Chromium (`browser`): a screenshot `shot` in the test
/// target's `report-artefacts/` (asserted to be more than blank), the DOM and the console.
pub fn render_in_chromium(browser: &Path, page: &Path, shot: &str) -> Rendered {
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-artefacts");
    std::fs::create_dir_all(&artefacts).expect("artefact dir");
    let shot = artefacts.join(shot);
    let _ = std::fs::remove_file(&shot);
    let url = format!("file://{}", page.display());
    let profile_dir = tempfile::tempdir().expect("tempdir");
    // A profile of its own: the test needs no writable home directory.
    let profile = format!("--user-data-dir={}", profile_dir.path().join("chromium").display());
    let base = [
        "60",
        browser.to_str().expect("utf-8"),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,2400",
        profile.as_str(),
    ];
    // `timeout`: a browser that hangs fails the test instead of the whole test run.
    let out = Command::new("timeout")
        .args(base)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(shot.metadata().is_ok_and(|m| m.len() > 10_000), "no screenshot:\n{log}");
    let console = log
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_owned)
        .collect();
    let dom = Command::new("timeout")
        .args(base)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    eprintln!("screenshot: {}", shot.display());
    Rendered {
        dom: String::from_utf8_lossy(&dom.stdout).into_owned(),
        console,
    }
}
