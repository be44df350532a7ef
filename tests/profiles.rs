//! Profiles: inheritance, waivers, the checked-in schema, and the error messages that a
//! malformed profile gets (file, line, column, what was expected).

mod common;

use std::path::Path;

use hilt_harness::host::Date;
use hilt_harness::profile::{Library, profile_schema};
use hilt_results::{Level, Tier};

fn library() -> Library {
    Library::with_dirs(vec![common::fixtures().join("profiles")], true)
}

fn today() -> Date {
    Date {
        year: 2026,
        month: 11,
        day: 26,
    }
}

#[test]
fn children_override_what_they_inherit_key_by_key() {
    let p = library()
        .load("tuned", &hilt_suites::catalogue(), today())
        .expect("tuned loads");
    assert_eq!(p.chain, ["tuned", "sim-reference", "base"]);
    assert_eq!(p.default_tier, Tier::Smoke);
    assert_eq!(p.tenant_timeout_s, 5);
    assert_eq!(p.sim.memory_mib, 16, "[sim] from the child");
    assert_eq!(p.sim.compute_units, 4, "[sim] from the parent");
    assert!(
        !p.checks.contains_key("residue.global.cross_context"),
        "enabled = false removes a check"
    );
    let local = &p.checks["residue.local.cross_kernel"];
    assert_eq!(local.level, Level::Recommended);
    assert_eq!(local.tiers.iter().copied().collect::<Vec<_>>(), [Tier::Certification]);
    assert_eq!(local.params["groups_per_compute_unit"], 1, "param from the child");
    assert_eq!(p.leak_target.max_leak_probability, 0.3, "leak target from the child");
    assert_eq!(p.leak_target.confidence, 0.9, "confidence from the parent");
    let global = &p.checks["residue.global.cross_process"];
    assert_eq!(global.params["min_coverage"], 0.95, "param default");
    let residue_in_smoke = p
        .checks_in(Tier::Smoke)
        .filter(|(id, _)| id.starts_with("residue"))
        .count();
    assert_eq!(residue_in_smoke, 1);
}

#[test]
fn the_digest_changes_with_any_setting_and_only_then() {
    let cat = hilt_suites::catalogue();
    let a = library().load("sim-reference", &cat, today()).expect("loads");
    let b = library().load("sim-reference", &cat, today()).expect("loads");
    let c = library().load("tuned", &cat, today()).expect("loads");
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
    assert!(a.digest().starts_with("sha256:") && a.digest().len() == 7 + 64);
}

/// A waiver expires after its last day; the profile still loads (a fleet does not stop on
/// the day a waiver expires), and its digest does not change with the date.
#[test]
fn a_waiver_expires_and_the_profile_still_loads() {
    let cat = hilt_suites::catalogue();
    let before = library().load("waived", &cat, today()).expect("valid until 2099");
    let waiver = before.checks["residue.global.cross_context"]
        .waiver
        .as_ref()
        .expect("waiver");
    assert!(!waiver.expired);
    let on_the_last_day = Date {
        year: 2099,
        month: 12,
        day: 31,
    };
    let last = library().load("waived", &cat, on_the_last_day).expect("loads");
    assert_eq!(last.expired_waivers().count(), 0, "the last day is still covered");
    let after = library()
        .load(
            "waived",
            &cat,
            Date {
                year: 2100,
                month: 1,
                day: 1,
            },
        )
        .expect("an expired waiver is no reason to refuse the profile");
    let expired: Vec<(&str, String)> = after
        .expired_waivers()
        .map(|(check, w)| (check, w.expires.to_string()))
        .collect();
    assert_eq!(expired, [("residue.global.cross_context", "2099-12-31".to_string())]);
    assert_eq!(
        before.digest(),
        after.digest(),
        "the digest is about settings, not dates"
    );
}

/// On the day a waiver expires the run goes on: the failure it used to waive counts, and
/// the record and a warning name the waiver.
#[test]
fn an_expired_waiver_no_longer_waives_and_the_run_says_so() {
    let run = common::run(&[
        "--profile",
        "expired-waiver",
        "--sim-fault",
        "global-no-scrub",
        "residue::global::cross_process",
    ]);
    assert_eq!(run.exit, 1, "the failure counts: {}", run.stderr);
    let o = &run.record.outcomes[0];
    assert_eq!(o.verdict, hilt_results::Verdict::Fail);
    assert!(o.waiver.is_none(), "an expired waiver waives nothing");
    let expired = o.expired_waiver.as_ref().expect("the outcome names the expired waiver");
    assert_eq!(
        (expired.expires.as_str(), expired.reason.as_str()),
        ("2020-01-31", "old exception")
    );
    assert_eq!(run.record.profile.expired_waivers.len(), 1);
    assert_eq!(
        run.record.profile.expired_waivers[0].check,
        "residue.global.cross_process"
    );
    assert_eq!(run.record.summary.waived, 0);
    assert!(
        run.stderr.contains(
            "hilt: warning: the waiver of `residue.global.cross_process` in profile expired-waiver expired on \
             2020-01-31 (old exception); it no longer waives"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.record
            .conformance
            .reasons
            .iter()
            .any(|r| r.contains("its waiver expired on 2020-01-31")),
        "{:?}",
        run.record.conformance.reasons
    );
    assert!(run.stdout.contains("FAIL:"), "{}", run.stdout);
    // Without the fault the same profile runs green: an expired waiver is no error.
    let clean = common::run(&["--profile", "expired-waiver", "residue::global::cross_process"]);
    assert_eq!(clean.exit, 0, "{}", clean.stderr);
}

/// An unknown profile id gets the nearest id hilt knows and a pointer to `hilt profiles`.
#[test]
fn an_unknown_profile_gets_a_suggestion() {
    let out = common::hilt(&["run", "--list", "--profile", "nvidia-hoper"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("did you mean `nvidia-hopper`?"), "{stderr}");
    assert!(
        stderr.contains("`hilt profiles` lists the profiles hilt can find"),
        "{stderr}"
    );
    let out = common::hilt(&["run", "--list", "--profile", "zzzzzzzzzzzz"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("did you mean"), "nothing close: {stderr}");
    // Part of an id means the ids that hold it, before any id that is merely close.
    for (given, meant) in [
        ("nvidia-h100", "did you mean `nvidia-h100-nvl` or `nvidia-h100-sxm`?"),
        ("H100", "`nvidia-h100-nvl` or `nvidia-h100-sxm`?"),
        ("pocl", "did you mean `pocl-cpu`?"),
        ("h200-sxm", "did you mean `nvidia-h200-sxm`?"),
    ] {
        let out = common::hilt(&["run", "--list", "--profile", given]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(meant) && !stderr.contains("gh200"), "{given}: {stderr}");
    }
    // So does a parent named by `extends`.
    let dir = tempfile::tempdir().expect("tempdir");
    let child = dir.path().join("child.toml");
    std::fs::write(
        &child,
        "id = \"child\"\ntitle = \"t\"\nversion = \"1\"\nextends = \"pocl\"\n",
    )
    .expect("written");
    let out = common::hilt(&["run", "--list", "--profile", child.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("; did you mean `pocl-cpu`?"), "{stderr}");
}

#[test]
fn a_waived_failure_is_recorded_as_waived_never_as_pass() {
    let run = common::run(&[
        "--profile",
        "waived",
        "--sim-fault",
        "global-no-scrub",
        "--skip",
        "residue::global::cross_process",
        "residue",
    ]);
    let o = run
        .record
        .outcomes
        .iter()
        .find(|o| o.check == "residue.global.cross_context")
        .expect("ran");
    assert_eq!(o.verdict, hilt_results::Verdict::Fail);
    let waiver = o.waiver.as_ref().expect("waiver recorded");
    assert_eq!(waiver.expires, "2099-12-31");
    assert_eq!(run.record.summary.waived, 1);
    assert_eq!(run.record.summary.pass, 3, "the three local checks");
    assert!(
        run.stdout.contains("ignored (waived until 2099-12-31"),
        "{}",
        run.stdout
    );
    assert_eq!(run.exit, 0, "a waived failure does not block");
    assert_eq!(run.record.conformance.status, hilt_results::ConformanceStatus::Partial);
}

#[test]
fn every_shipped_profile_loads() {
    let cat = hilt_suites::catalogue();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    for entry in std::fs::read_dir(&dir).expect("profiles/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let spec = path.to_str().expect("utf-8");
            Library::with_dirs(vec![], true)
                .load(spec, &cat, Date::today())
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn checked_in_profile_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/profile.schema.json");
    let fresh = serde_json::to_string_pretty(&profile_schema(&hilt_suites::catalogue())).expect("json") + "\n";
    if std::env::var_os("HILT_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write schema");
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "profiles/profile.schema.json is stale: run `HILT_BLESS=1 cargo test --test profiles`"
    );
}

/// Every malformed profile gets exit code 2 and a message that names file, line and column.
#[test]
fn malformed_profiles_get_located_errors() {
    let dir = "tests/fixtures/bad-profiles";
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("bad-profiles/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut report = String::new();
    for name in names {
        let path = format!("{dir}/{name}");
        let out = common::hilt(&["run", "--profile", &path, "--list"]);
        assert_eq!(out.status.code(), Some(2), "{path} must be a profile error");
        let stderr = String::from_utf8_lossy(&out.stderr).replace(env!("CARGO_MANIFEST_DIR"), "[repo]");
        assert!(!stderr.contains("panicked"), "{path}: {stderr}");
        report.push_str(&format!("=== {name}\n{stderr}\n"));
    }
    insta::assert_snapshot!(report);
}

#[test]
fn a_sku_profile_is_chosen_over_its_class_and_equals_tie() {
    use hilt_harness::accel::DeviceInfo;
    use hilt_harness::profile::{Fit, best_fit};
    let catalogue = hilt_suites::catalogue();
    let standard = Library::standard();
    let mut profiles: Vec<_> = standard
        .list()
        .into_iter()
        .map(|(id, _)| standard.load(&id, &catalogue, today()).expect("built-in loads"))
        .collect();
    let gpu = |id: &str, device: u16| DeviceInfo {
        id: id.into(),
        backend: "cuda".into(),
        name: "NVIDIA".into(),
        vendor: None,
        pci_vendor: Some(0x10de),
        pci_device: Some(device),
        pci_address: None,
        simulated: false,
        global_mem_bytes: 0,
        local_mem_bytes: 0,
        compute_units: 0,
        facts: Default::default(),
    };
    let chosen =
        |profiles: &[hilt_harness::profile::Profile], devices: &[&DeviceInfo]| match best_fit(profiles, devices) {
            Fit::One(p) => p.id.clone(),
            Fit::None => "none".into(),
            Fit::Tie(a, b) => format!("tie {} {}", a.id, b.id),
        };
    let (sxm, pcie) = (gpu("cuda0", 0x2330), gpu("cuda1", 0x2331));
    assert_eq!(chosen(&profiles, &[&sxm]), "nvidia-h100-sxm");
    let sku = profiles.iter().find(|p| p.id == "nvidia-h100-sxm").expect("sku");
    assert_eq!(sku.checks["performance.fma_throughput"].params["min_gflops"], 29250.0);
    assert_eq!(
        sku.checks["performance.fma_throughput"].params["iterations"], 16384,
        "the rest is the class's"
    );
    assert_eq!(chosen(&profiles, &[&pcie]), "nvidia-hopper");
    // A node that mixes SKUs gets the class both belong to.
    assert_eq!(chosen(&profiles, &[&sxm, &pcie]), "nvidia-hopper");
    assert_eq!(chosen(&profiles, &[]), "none");
    assert_eq!(chosen(&profiles, &[&gpu("cuda0", 0x1234)]), "none");
    // A variant that only inherits its class's match rules refines nothing: a tie, so a
    // relaxed lab profile on the path never becomes the default by being there.
    let mut variant = profiles
        .iter()
        .find(|p| p.id == "nvidia-hopper")
        .expect("class")
        .clone();
    variant.id = "lab-quick".into();
    variant.chain.insert(0, "lab-quick".into());
    let with_variant: Vec<_> = profiles.iter().cloned().chain([variant]).collect();
    assert_eq!(chosen(&with_variant, &[&pcie]), "tie lab-quick nvidia-hopper");
    // Two unrelated profiles that match alike are a tie, never a silent pick.
    let mut twin = sku.clone();
    twin.id = "lab-h100".into();
    twin.chain = vec!["lab-h100".into(), "base".into()];
    profiles.push(twin);
    assert_eq!(chosen(&profiles, &[&sxm]), "tie lab-h100 nvidia-h100-sxm");
}
