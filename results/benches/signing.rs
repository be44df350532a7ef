//! Signing and verifying a result of about 1 MiB, against reading the same record.
//!
//! `parse_record` (reading the record's JSON into the typed record) is the baseline: any
//! consumer of a result does at least that. `sign` serialises the statement and signs it;
//! `verify` checks the envelope, the signature over the payload bytes, parses the record
//! and checks the subjects. Compare the times of one run, on one machine.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hilt_results::ResultRecord;
use hilt_results::signed::{self, Policy, SigningKey, TrustedKey};

/// The fixture record, its outcomes repeated until its JSON is about 1 MiB.
fn big_record() -> ResultRecord {
    let mut record = ResultRecord::from_json(include_bytes!("../tests/data/record.json")).expect("fixture");
    let outcomes = record.outcomes.clone();
    while serde_json::to_vec(&record).map_or(0, |v| v.len()) < 1 << 20 {
        record.outcomes.extend(outcomes.iter().cloned());
    }
    record
}

fn bench(c: &mut Criterion) {
    let record = big_record();
    let json = serde_json::to_vec(&record).expect("json");
    let key = SigningKey::generate().expect("random source");
    let envelope = key.sign(&record).expect("signable");
    let policy = Policy {
        trusted: vec![TrustedKey {
            label: "bench".into(),
            key: key.public(),
        }],
        ..Policy::default()
    };
    assert!(signed::verify(&envelope, &policy).expect("readable").verified());

    let mut group = c.benchmark_group("result_1MiB");
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.sample_size(30);
    group.bench_function("parse_record", |b| b.iter(|| ResultRecord::from_json(black_box(&json))));
    group.bench_function("sign", |b| b.iter(|| key.sign(black_box(&record))));
    group.bench_function("verify", |b| b.iter(|| signed::verify(black_box(&envelope), &policy)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
