//! Generated documentation stays current: `docs/checks.md` is `hilt checks --markdown`.

mod common;

#[test]
fn checks_md_is_current() {
    let out = common::hilt(&["checks", "--markdown"]);
    assert!(out.status.success());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/checks.md");
    if std::env::var_os("HILT_BLESS").is_some() {
        std::fs::write(&path, &out.stdout).expect("write docs/checks.md");
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == out.stdout,
        "docs/checks.md is stale: run `HILT_BLESS=1 cargo test --test docs`"
    );
}
