//! `cargo xtask bench`: how fast the simulator is, against what.
//!
//! On the same seeds of the default workload, measured in one run:
//!
//! * the simulator's throughput (power loss, all cores, worker processes, as
//!   `cargo xtask sim`), in seeds/s and cranks/s;
//! * a naive harness: the same seeds run by the same store on real files with
//!   real fsync in the system temp dir (SQLite's own VFS, LMDB's default
//!   flags), no simulator, no madsim: a reference run, then the workload again
//!   up to a crash (the kernel dropped at a seeded store point), a reopen from
//!   the files, the same checks against the reference and the oracle, and the
//!   rest of the workload; on as many threads as the simulator has processes;
//! * the bare workload: each seed run once on the simulator's in-memory disks,
//!   no faults, no checks, no madsim (the cost of the store's own work), and
//!   the ratio of a full simulated seed to it, both on one core;
//! * the share of each phase of a simulated seed;
//! * cost growth: seconds per seed against workload size, and exhaustive
//!   exploration time against crash points.
//!
//! Wall-clock time is measured here only; it never reaches a seed's result.

use crate::args::{usage_error, RunSpec};
use crate::pool::{jobs_or_cores, run_pool, PoolConfig, SeedSet};
use crate::signals;
use clap::Args;
use sim::check::{diff_heaps, diff_kv, diff_spans};
use sim::fault::{FaultMode, FaultSet};
use sim::node::{snapshot, Snapshot};
use sim::options::{Flags, SeedOptions};
use sim::oracle::Oracle;
use sim::run::{
    real_seconds, run_case, run_exhaustive, scratch_root, take_phases, time_phases, Case, CrashPlan, Depth, FaultPlan,
    Phases,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use store::{Chain, ChainConfig, Design, Observer, Point, Stop, StoreConfig};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Seeds for the simulator's throughput on all cores.
    #[arg(long, default_value = "2000")]
    pub seeds: u64,
    /// Seeds for the naive on-disk harness (real fsync: slow), the first of the same seeds.
    #[arg(long, default_value = "100")]
    pub naive_seeds: u64,
    /// Seeds run in this process on one core: full simulated seed, bare workload, phases.
    #[arg(long, default_value = "300")]
    pub local_seeds: u64,
    /// Workload sizes (blocks per seed, about 13 cranks each) of the growth table.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32")]
    pub sizes: Vec<u64>,
    /// Seeds per size in the growth table (a fifth of them for exhaustive exploration).
    #[arg(long, default_value = "50")]
    pub growth_seeds: u64,
    /// Worker processes, and naive-harness threads (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
}

const DESIGN: Design = Design::StartPosition;

pub fn run(args: BenchArgs) -> ExitCode {
    if args.seeds == 0 || args.local_seeds == 0 || args.jobs == Some(0) {
        return usage_error("--seeds, --local-seeds and --jobs must be at least 1");
    }
    let jobs = jobs_or_cores(args.jobs);
    let (root, warning) = scratch_root();
    if let Some(warning) = warning {
        eprintln!("{warning}");
    }
    println!("bench: design {DESIGN}, power loss, default workload, seeds from 0, {jobs} jobs");

    let sim = simulator_throughput(args.seeds, jobs);
    stop_on_signal(&root);
    println!(
        "simulator: {} seeds in {:.2} s = {:.1} seeds/s, {:.0} cranks/s ({} cranks, {:.0} per seed), {} failed",
        sim.seeds,
        sim.seconds,
        sim.seeds as f64 / sim.seconds,
        sim.cranks as f64 / sim.seconds,
        sim.cranks,
        sim.cranks as f64 / sim.seeds as f64,
        sim.failed
    );

    let naive = naive_throughput(args.naive_seeds, jobs);
    stop_on_signal(&root);
    if let Some(naive) = &naive {
        let rate = naive.seeds as f64 / naive.seconds;
        println!(
            "naive on-disk harness: {} seeds in {:.2} s on {jobs} threads = {rate:.2} seeds/s ({} failed); \
             simulator / naive = {:.1}x",
            naive.seeds,
            naive.seconds,
            naive.failed,
            (sim.seeds as f64 / sim.seconds) / rate
        );
    }

    print_local(&local_comparison(args.local_seeds, &root));
    growth(&args.sizes, args.growth_seeds, &root);
    exhaustive_100(&root);
    let _ = std::fs::remove_dir_all(&root);
    ExitCode::SUCCESS
}

/// A full simulated seed against the bare workload, and the phases of a seed.
fn print_local(local: &Local) {
    let full = local.full_seconds / local.seeds as f64;
    let bare = local.bare_seconds / local.seeds as f64;
    println!(
        "one core, {} seeds: full simulated seed {:.2} ms, bare workload {:.2} ms ({:.0} cranks/s); full / bare = {:.2}x",
        local.seeds,
        full * 1e3,
        bare * 1e3,
        local.cranks as f64 / local.bare_seconds,
        full / bare
    );
    let p = local.phases;
    let other = (local.full_seconds - p.reference - p.recovery - p.faulty - p.checks).max(0.0);
    let share = |x: f64| 100.0 * x / local.full_seconds;
    println!("phases of a simulated seed (share of its time):");
    println!("| phase | ms per seed | share |");
    println!("|---|---|---|");
    for (name, seconds) in [
        ("reference run (with per-block snapshots, oracle, crash-state capture)", p.reference),
        ("recovery and replay (restore images, reopen, rebuild every vat)", p.recovery),
        ("faulty run (blocks after the crash)", p.faulty),
        ("checks (comparisons, final replay check)", p.checks),
        ("other (runtimes, directories, plan)", other),
    ] {
        println!("| {name} | {:.3} | {:.1} % |", seconds * 1e3 / local.seeds as f64, share(seconds));
    }
}

/// Between two runs: on a signal, remove the scratch root and end the bench
/// (its figures would be partial).
fn stop_on_signal(root: &Path) {
    if let Some(signal) = signals::interrupted() {
        let _ = std::fs::remove_dir_all(root);
        println!("bench: interrupted by {}", signal.name());
        std::process::exit(signal.status());
    }
}

struct Throughput {
    seeds: u64,
    seconds: f64,
    cranks: u64,
    failed: u64,
}

/// `cargo xtask sim --seeds N --mode power-loss --faults none` through the
/// worker pool: crashes only, as the naive harness does.
fn simulator_throughput(seeds: u64, jobs: usize) -> Throughput {
    let spec = RunSpec { mode: Some(FaultMode::PowerLoss), faults: FaultSet::none(), ..RunSpec::default() };
    let config = PoolConfig::new(SeedSet::range(0, seeds), spec, Some(jobs));
    let started = Instant::now();
    let (mut cranks, mut failed, mut done) = (0, 0, 0);
    let ran = run_pool(&config, |result| {
        cranks += result.cranks;
        failed += u64::from(result.failure.is_some());
        done += 1;
        true
    });
    if let Err(message) = ran {
        eprintln!("warning: simulator run incomplete: {message}");
    }
    Throughput { seeds: done, seconds: started.elapsed().as_secs_f64(), cranks, failed }
}

fn case(seed: u64, blocks: Option<u64>) -> Case {
    let flags = Flags::crashes_only(Some(FaultMode::PowerLoss), false);
    Case {
        seed,
        design: DESIGN,
        options: SeedOptions::derive_sized(seed, &flags, blocks),
        plan: CrashPlan::Seeded,
        faults: FaultPlan::Seeded,
        mutation: None,
        verbose: false,
    }
}

struct Local {
    seeds: u64,
    full_seconds: f64,
    bare_seconds: f64,
    cranks: u64,
    phases: Phases,
}

/// Full simulated seeds and the bare workload, on the same seeds, on this thread.
fn local_comparison(seeds: u64, root: &Path) -> Local {
    let mut local = Local { seeds, full_seconds: 0.0, bare_seconds: 0.0, cranks: 0, phases: Phases::default() };
    take_phases();
    time_phases(true);
    for seed in 0..seeds {
        let case = case(seed, None);
        let started = real_seconds();
        let report = run_case(&case, root);
        local.full_seconds += real_seconds() - started;
        assert!(report.failure.is_none(), "bench seed {seed} failed: {:?}", report.failure);
        stop_on_signal(root);
    }
    time_phases(false);
    local.phases = take_phases();
    for seed in 0..seeds {
        let case = case(seed, None);
        let started = real_seconds();
        local.cranks += bare_workload(&case, &root.join("bare"));
        local.bare_seconds += real_seconds() - started;
        stop_on_signal(root);
    }
    local
}

/// The seed's workload once, on the simulator's disk (tmpfs, every call
/// modelled), with no world, no faults, no snapshots and no checks; its cranks.
fn bare_workload(case: &Case, dir: &Path) -> u64 {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("bare workload: directory");
    sim::disk::sqlite::register();
    let installed = sim::disk::install(dir, Box::new(sim::disk::Passive::default()));
    let mut config = StoreConfig::new(case.design);
    case.options.settings.configure(&mut config);
    config.sqlite_vfs = Some(sim::disk::sqlite::VFS_NAME.to_string());
    config.lmdb_map_bytes = 4 << 20;
    let chain = ChainConfig {
        engine: case.options.settings.host_db,
        sqlite_vfs: config.sqlite_vfs.clone(),
        observer: Box::new(store::NoObserver),
        mutant: None,
    };
    let mut kernel = Chain::open(dir, config, case.options.kernel, chain).expect("bare workload: open");
    let mut cranks = 0;
    for (index, inputs) in case.options.workload.iter().enumerate() {
        cranks += kernel.run_block(index as u64 + 1, inputs).expect("bare workload: block").cranks;
    }
    kernel.close();
    drop(installed);
    let _ = std::fs::remove_dir_all(dir);
    cranks
}

/// Stops the store at its `stop_at`-th point (a crank start, point A or point
/// B), counting every point it passes.
struct CrashAtPoint {
    seen: Arc<AtomicU64>,
    stop_at: u64,
}

impl Observer for CrashAtPoint {
    fn reached(&self, _point: Point) -> Result<(), Stop> {
        match self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.stop_at {
            true => Err(Stop),
            false => Ok(()),
        }
    }
}

fn naive_kernel(dir: &Path, case: &Case, seen: &Arc<AtomicU64>, stop_at: u64) -> store::Result<Chain> {
    let mut config = StoreConfig::new(case.design);
    config.observer = Box::new(CrashAtPoint { seen: seen.clone(), stop_at });
    let chain = ChainConfig {
        engine: case.options.settings.host_db,
        sqlite_vfs: None,
        observer: Box::new(CrashAtPoint { seen: seen.clone(), stop_at }),
        mutant: None,
    };
    Chain::open(dir, config, case.options.kernel, chain)
}

/// One seed in the naive harness; `Err` describes a failed check.
fn naive_seed(case: &Case, dir: &Path) -> Result<(), String> {
    let workload = &case.options.workload;
    // Reference run.
    let reference_dir = dir.join("reference");
    let _ = std::fs::remove_dir_all(&reference_dir);
    let seen = Arc::new(AtomicU64::new(0));
    let mut kernel = naive_kernel(&reference_dir, case, &seen, 0).map_err(|e| e.to_string())?;
    let mut oracle = Oracle::default();
    let mut snapshots = vec![snapshot(&mut kernel, false).map_err(|e| e.to_string())?];
    let mut heaps = vec![BTreeMap::new()];
    let mut reports = Vec::new();
    for (index, inputs) in workload.iter().enumerate() {
        let report = kernel.run_block(index as u64 + 1, inputs).map_err(|e| e.to_string())?;
        oracle.apply(&report)?;
        snapshots.push(snapshot(&mut kernel, false).map_err(|e| e.to_string())?);
        heaps.push(oracle.heap_digests());
        reports.push(report);
    }
    let last = snapshot(&mut kernel, true).map_err(|e| e.to_string())?;
    if let Some(diff) = diff_heaps(&heaps[workload.len()], &last, &|_| None) {
        return Err(diff.message);
    }
    kernel.close();
    let points = seen.load(Ordering::Relaxed);
    // Faulty run: the workload again from nothing, the kernel dropped at a seeded point.
    let faulty_dir = dir.join("faulty");
    let _ = std::fs::remove_dir_all(&faulty_dir);
    let stop_at = 1 + case.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) % points.max(1);
    let seen = Arc::new(AtomicU64::new(0));
    let mut kernel = naive_kernel(&faulty_dir, case, &seen, stop_at).map_err(|e| e.to_string())?;
    let mut acked = 0;
    for (index, inputs) in workload.iter().enumerate() {
        match kernel.run_block(index as u64 + 1, inputs) {
            Ok(_) => acked = index as u64 + 1,
            Err(_) => break,
        }
    }
    drop(kernel);
    // Reopen from the files, check the recovery, run the rest, check the end.
    let mut kernel = naive_kernel(&faulty_dir, case, &seen, 0).map_err(|e| e.to_string())?;
    let found = snapshot(&mut kernel, true).map_err(|e| e.to_string())?;
    let height = found.height.unwrap_or(0);
    if height < acked || height > acked + 1 {
        return Err(format!("acked {acked}, recovered {height}"));
    }
    compare(&snapshots[height as usize], &heaps[height as usize], &found)?;
    for (index, inputs) in workload.iter().enumerate().skip(height as usize) {
        let report = kernel.run_block(index as u64 + 1, inputs).map_err(|e| e.to_string())?;
        if report != reports[index] {
            return Err(format!("block {} diverged", index + 1));
        }
    }
    let found = snapshot(&mut kernel, true).map_err(|e| e.to_string())?;
    compare(&last, &heaps[workload.len()], &found)?;
    if found.activity_hash != last.activity_hash {
        return Err("final activity hash differs".into());
    }
    kernel.close();
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn compare(expected: &Snapshot, heaps: &BTreeMap<String, String>, found: &Snapshot) -> Result<(), String> {
    diff_kv(&expected.kv, &found.kv)
        .or_else(|| diff_spans(expected, found, &|_| None))
        .or_else(|| diff_heaps(heaps, found, &|_| None))
        .map_or(Ok(()), |diff| Err(diff.message))
}

/// The naive harness on `seeds` seeds, on `jobs` threads, in the system temp dir.
fn naive_throughput(seeds: u64, jobs: usize) -> Option<Throughput> {
    if seeds == 0 {
        return None;
    }
    let base: PathBuf = std::env::temp_dir().join(format!("swingsim-naive-{}", std::process::id()));
    let next = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..jobs {
            let (base, next, failed) = (&base, &next, &failed);
            scope.spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds || signals::interrupted().is_some() {
                    break;
                }
                let dir = base.join(format!("{thread}-{seed}"));
                if let Err(message) = naive_seed(&case(seed, None), &dir) {
                    eprintln!("naive harness: seed {seed}: {message}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                let _ = std::fs::remove_dir_all(&dir);
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&base);
    Some(Throughput { seeds, seconds, cranks: 0, failed: failed.into_inner() })
}

/// Seconds per seed against workload size, and exhaustive time against crash points.
fn growth(sizes: &[u64], seeds: u64, root: &Path) {
    println!("cost growth (one core, seeds 0..{seeds} per size; exhaustive on the first {}):", seeds.div_ceil(5));
    println!(
        "| blocks | cranks per seed | ms per seed | us per crank | crash points per seed | exhaustive s per seed | us per point |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &blocks in sizes {
        let (mut cranks, mut seconds) = (0u64, 0.0);
        for seed in 0..seeds {
            let started = real_seconds();
            let report = run_case(&case(seed, Some(blocks)), root);
            seconds += real_seconds() - started;
            cranks += report.cranks;
            stop_on_signal(root);
        }
        let exhaustive_seeds = seeds.div_ceil(5);
        let (mut points, mut exhaustive_seconds) = (0u64, 0.0);
        for seed in 0..exhaustive_seeds {
            let started = real_seconds();
            let report = run_exhaustive(&case(seed, Some(blocks)), root, Depth::default());
            exhaustive_seconds += real_seconds() - started;
            points += report.plan.len() as u64;
            stop_on_signal(root);
        }
        println!(
            "| {blocks} | {:.0} | {:.2} | {:.1} | {:.0} | {:.3} | {:.0} |",
            cranks as f64 / seeds as f64,
            seconds * 1e3 / seeds as f64,
            seconds * 1e6 / cranks.max(1) as f64,
            points as f64 / exhaustive_seeds as f64,
            exhaustive_seconds / exhaustive_seeds as f64,
            exhaustive_seconds * 1e6 / points.max(1) as f64,
        );
    }
}

/// Exhaustive exploration of the default-workload seed closest to 100 cranks.
fn exhaustive_100(root: &Path) {
    let bare_dir = root.join("bare");
    let seed = (0..200u64).min_by_key(|seed| bare_workload(&case(*seed, None), &bare_dir).abs_diff(100)).unwrap_or(0);
    for depth in Depth::ALL {
        let started = real_seconds();
        let report = run_exhaustive(&case(seed, None), root, depth);
        let seconds = real_seconds() - started;
        stop_on_signal(root);
        let points = report.plan.len();
        println!(
            "exhaustive seed {seed} ({} cranks, depth {}): {points} crash points in {seconds:.3} s = {:.0} points/s, \
             {} recoveries checked, {}",
            report.cranks,
            depth.name(),
            points as f64 / seconds,
            report.recoveries_checked,
            if report.failure.is_none() { "passed" } else { "FAILED" }
        );
    }
}
