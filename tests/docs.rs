//! Generated documentation stays current: `docs/checks.md` is `hilt checks --markdown`,
//! `docs/requirements.md` is `hilt requirements --markdown`.

mod common;

/// `hilt ARGS` must print exactly the checked-in `file` (`HILT_BLESS=1` rewrites it).
fn current(args: &[&str], file: &str) {
    let out = common::hilt(args);
    assert!(out.status.success());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    if std::env::var_os("HILT_BLESS").is_some() {
        std::fs::write(&path, &out.stdout).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == out.stdout,
        "{file} is stale: run `HILT_BLESS=1 cargo test --test docs`"
    );
}

#[test]
fn checks_md_is_current() {
    current(&["checks", "--markdown"], "docs/checks.md");
}

#[test]
fn requirements_md_is_current() {
    current(&["requirements", "--markdown"], "docs/requirements.md");
}
