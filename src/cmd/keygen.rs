//! `hilt keygen`: an Ed25519 key pair for signing results.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use hilt_results::signed::SigningKey;

use crate::cmd::files::with_suffix;

/// Writes a new key pair: `NAME.key` (PKCS#8 PEM, mode 0600) and `NAME.pub` (SPKI PEM).
/// A NAME that already ends in `.key` or `.pub` names the pair itself (`--out lab.key`
/// writes `lab.key` and `lab.pub`, never `lab.key.key`).
pub fn keygen(name: &Path) -> anyhow::Result<u8> {
    let base = base_name(name);
    let private = with_suffix(&base, ".key");
    let public = with_suffix(&base, ".pub");
    for path in [&private, &public] {
        if path.exists() {
            bail!("{} already exists; hilt keygen never overwrites a key", path.display());
        }
    }
    let key = SigningKey::generate()?;
    let pem = key.to_pkcs8_pem()?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", private.display()))?;
    let pub_key = key.public();
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    let written = options
        .open(&public)
        .and_then(|mut f| f.write_all(pub_key.to_pem().as_bytes()).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        // A private key without its public half is of no use to anyone.
        let _ = std::fs::remove_file(&private);
        bail!("cannot create {}: {e}", public.display());
    }
    println!(
        "wrote {} (private, mode 0600) and {}; keyid {}",
        private.display(),
        public.display(),
        pub_key.keyid()
    );
    Ok(0)
}

/// `name` without a final `.key` or `.pub`.
fn base_name(name: &Path) -> std::path::PathBuf {
    let text = name.as_os_str().to_string_lossy();
    match text.strip_suffix(".key").or_else(|| text.strip_suffix(".pub")) {
        Some(stem) if !stem.is_empty() && !stem.ends_with('/') => std::path::PathBuf::from(stem),
        _ => name.to_path_buf(),
    }
}
