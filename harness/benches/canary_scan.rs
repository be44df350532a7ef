//! The canary scanner's throughput against a plain read of the same buffer.
//!
//! `plain_read` sums the buffer as `u64` words: the least any detector must do. The
//! scanner is measured on random data (the common case: no residue, only candidate
//! filtering) and on a buffer full of canary (the worst case: every block verified). The
//! target is a scanner at 70 % or more of the plain read's throughput; compare the
//! `thrpt` lines of one run, on one machine.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hilt_harness::canary::{self, CanaryKey, Scanner};

const SIZE: usize = 64 << 20;

fn random_bytes(len: usize) -> Vec<u8> {
    // A fixed xorshift stream: reproducible and incompressible enough for a scan.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let key = CanaryKey(0x5eed);
    let scanner = Scanner::new(key);
    let random = random_bytes(SIZE);
    let mut full = vec![0u8; SIZE];
    canary::fill(&mut full, key, 0);

    let mut group = c.benchmark_group("scan_64MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(20);
    group.bench_function("plain_read", |b| b.iter(|| canary::plain_read(black_box(&random))));
    group.bench_function("scanner_random", |b| b.iter(|| scanner.scan(black_box(&random))));
    group.bench_function("scanner_all_canary", |b| b.iter(|| scanner.scan(black_box(&full))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
