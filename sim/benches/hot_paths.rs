//! Criterion benchmarks of the simulator's hot paths: `cargo bench -p sim`.
//! `cargo xtask bench` measures the whole (throughput, ratios, growth).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sim::cow::CowBytes;
use sim::fault::FaultMode;
use sim::options::{Flags, SeedOptions};
use sim::run::{run_case, run_exhaustive, scratch_root, Case, CrashPlan, Depth, FaultPlan};
use std::hint::black_box;
use store::vat::TranscriptEntry;
use store::Design;

fn case(seed: u64) -> Case {
    let flags = Flags::crashes_only(Some(FaultMode::PowerLoss), false);
    Case {
        seed,
        design: Design::StartPosition,
        options: SeedOptions::derive(seed, &flags),
        plan: CrashPlan::Seeded,
        faults: FaultPlan::Seeded,
        mutation: None,
        verbose: false,
    }
}

/// A whole simulated seed, and a whole exhaustive exploration of one.
fn seeds(c: &mut Criterion) {
    let root = scratch_root().0;
    let mut group = c.benchmark_group("seed");
    group.sample_size(20);
    group.bench_function("full simulated seed (seed 3)", |b| b.iter(|| black_box(run_case(&case(3), &root))));
    group.bench_function("exhaustive, recover only (seed 3)", |b| {
        b.iter(|| black_box(run_exhaustive(&case(3), &root, Depth::Recover)))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&root);
}

/// Copy-on-write file images: what a crash-state capture and the next page
/// write cost, on a 256 KiB file.
fn cow(c: &mut Criterion) {
    let file = CowBytes::from_slice(&vec![7u8; 256 << 10]);
    c.bench_function("cow: capture (clone) of a 256 KiB file", |b| b.iter(|| black_box(file.clone())));
    c.bench_function("cow: page write after a capture", |b| {
        b.iter_batched(
            || {
                let live = file.clone();
                let captured = live.clone();
                (live, captured)
            },
            |(mut live, captured)| {
                live.write(8192, &[1u8; 4096]);
                black_box((live, captured))
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("cow: materialise a 256 KiB image", |b| b.iter(|| black_box(file.to_vec())));
}

/// Decoding one transcript item (what replay did before decoded items were remembered).
fn transcript(c: &mut Criterion) {
    let item = r#"{"d":{"type":"message","method":"forward","args":["4","v2","v3"],"result":"kp17"},"sc":[{"s":{"type":"vatstore-get","key":"count"},"r":{"type":"value","value":"41"}},{"s":{"type":"vatstore-set","key":"count","value":"45"},"r":{"type":"done"}},{"s":{"type":"send","target":"v2","method":"forward","args":["5","v3"]},"r":{"type":"promise","promise":"kp18"}},{"s":{"type":"subscribe","promise":"kp18"},"r":{"type":"done"}},{"s":{"type":"resolve","promise":"kp17","resolution":{"rejected":false,"value":"45"}},"r":{"type":"done"}}],"r":null}"#;
    assert!(TranscriptEntry::decode(item).is_ok());
    c.bench_function("transcript: decode one item", |b| b.iter(|| black_box(TranscriptEntry::decode(black_box(item)))));
}

criterion_group!(benches, seeds, cow, transcript);
criterion_main!(benches);
