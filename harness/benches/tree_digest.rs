//! The digest a replayed run records of its tree (`hostfs::tree_sha256`) against the
//! least any reader of the whole tree must do: walk it and read every file.
//!
//! Both run over the fixture tree `tests/fixtures/hosts/mi300x-good` (an 8-GPU MI300X
//! host: about 550 entries, most of them small sysfs files), which the digest reads once
//! per run. The target is a digest within 1.5 times the plain walk; compare the lines of
//! one run, on one machine.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use hilt_harness::hostfs::tree_sha256;

/// Walks `root` without following links and reads every regular file: the baseline.
fn walk_and_read(root: &Path) -> usize {
    let mut total = 0;
    let mut stack = vec![PathBuf::from(root)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                total += std::fs::read(&path).map_or(0, |b| b.len());
            } else if meta.file_type().is_symlink() {
                total += std::fs::read_link(&path).map_or(0, |t| t.as_os_str().len());
            }
        }
    }
    total
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hosts/mi300x-good");
    assert!(tree_sha256(&root).is_some(), "the fixture tree digests");
    let mut group = c.benchmark_group("mi300x_tree");
    group.sample_size(30);
    group.bench_function("walk_and_read", |b| b.iter(|| walk_and_read(black_box(&root))));
    group.bench_function("tree_sha256", |b| b.iter(|| tree_sha256(black_box(&root))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
