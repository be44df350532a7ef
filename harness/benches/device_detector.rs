//! The device detector against a device copy of the same size, on the first OpenCL device
//! (PoCL's CPU device in CI), through the OpenCL backend.
//!
//! `copy` is `clEnqueueCopyBuffer` of 256 MiB, the operation `performance.device_copy_bandwidth`
//! times (bytes copied per second). `count_canary_clean` is the detector over memory that
//! holds no canary (what a listener examines on a platform that does not leak);
//! `count_canary_all_canary` over a buffer full of canary (the positive control, every
//! tile verified); `fill_canary` the writer's kernel. The target is the detector at 80 % or
//! more of the copy's throughput; compare the `thrpt` lines of one run, on one machine.
//! Without an OpenCL device the bench says so and measures nothing.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hilt_harness::accel::{Accelerator, Kernel, opencl};
use hilt_harness::canary::CanaryKey;

const SIZE: u64 = 256 << 20;

fn bench(c: &mut Criterion) {
    let device = match opencl::discover() {
        Ok(found) => match found
            .into_iter()
            .next()
            .map(|(_, spec)| opencl::OpenClDevice::open(&spec))
        {
            Some(Ok(device)) => device,
            Some(Err(e)) => return eprintln!("device_detector: cannot open the OpenCL device: {e}"),
            None => return eprintln!("device_detector: no OpenCL device"),
        },
        Err(why) => return eprintln!("device_detector: no OpenCL device: {why}"),
    };
    let Ok(mut ctx) = device.create_context() else {
        return eprintln!("device_detector: cannot create an OpenCL context");
    };
    let key = CanaryKey(0x5eed);
    let other = CanaryKey(0xfeed);
    let (Ok(src), Ok(dst), Ok(canary)) = (ctx.alloc(SIZE), ctx.alloc(SIZE), ctx.alloc(SIZE)) else {
        return eprintln!("device_detector: cannot allocate 3 x 256 MiB");
    };
    // Memory with another key's canary: as busy as real data, and none of it ours.
    for (buffer, key) in [(src, other), (dst, other), (canary, key)] {
        if let Err(e) = ctx.run(&Kernel::FillCanary { buffer, key }) {
            return eprintln!("device_detector: fill failed: {e}");
        }
    }
    let mut run = |kernel: &Kernel| {
        ctx.run(black_box(kernel))
            .map(drop)
            .unwrap_or_else(|e| panic!("{kernel:?}: {e}"));
    };

    let mut group = c.benchmark_group("device_256MiB");
    group.throughput(Throughput::Bytes(SIZE));
    group.sample_size(20);
    group.bench_function("copy", |b| b.iter(|| run(&Kernel::Copy { src, dst, bytes: SIZE })));
    group.bench_function("count_canary_clean", |b| {
        b.iter(|| run(&Kernel::CountCanary { buffer: src, key }))
    });
    group.bench_function("count_canary_all_canary", |b| {
        b.iter(|| run(&Kernel::CountCanary { buffer: canary, key }))
    });
    group.bench_function("fill_canary", |b| {
        b.iter(|| {
            run(&Kernel::FillCanary {
                buffer: dst,
                key: other,
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
