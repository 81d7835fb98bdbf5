//! The worker process: runs a stripe of units one after the other (SQLite's
//! PRNG is process-global, so parallelism is one process per job) and prints
//! `begin <unit>` before each and one JSON [`SeedResult`] line after.
//! A panic is that seed's failure; the worker goes on with the next unit.

use crate::pool::SeedSet;
use crate::sim::parse_designs;
use clap::Args;
use sim::check::{Failure, FailureKind};
use sim::options::Mutation;
use sim::run::{run_case, scratch_root, Case, SeedConfig};
use sim::summary::{FailureRecord, ReproFlags, SeedResult};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::ExitCode;

#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    pub start: u64,
    #[arg(long, default_value = "1")]
    pub stride: u64,
    #[arg(long, default_value = "0")]
    pub offset: u64,
    /// First unit of this worker's stripe.
    #[arg(long)]
    pub first_unit: u64,
    /// One past the last unit of the whole run.
    #[arg(long)]
    pub end_unit: u64,
    /// Distance between the stripe's units (the number of jobs).
    #[arg(long)]
    pub step: u64,
    #[arg(long)]
    pub designs: String,
    #[command(flatten)]
    pub fault: crate::sim::FaultArgs,
    #[arg(long)]
    pub mutant: Option<String>,
    #[arg(long)]
    pub check_determinism: bool,
    /// Test hook: `SEED:panic|abort|hang` makes that seed misbehave.
    #[arg(long)]
    pub misbehave: Vec<String>,
    /// Crash at every crash point of each seed (see `cargo xtask sim --exhaustive`).
    #[arg(long)]
    pub exhaustive: bool,
    /// How far each exhaustive point runs after its recovery.
    #[arg(long, value_parser = crate::sim::parse_depth, default_value = "next-block")]
    pub depth: sim::run::Depth,
}

pub fn run(args: WorkerArgs) -> ExitCode {
    let parsed = (|| {
        let designs: Vec<_> = args.designs.split(',').map(parse_designs).collect::<Result<Vec<_>, _>>()?;
        let designs: Vec<_> = designs.into_iter().flatten().collect();
        let flags = args.fault.flags()?;
        let mutation = args.mutant.as_deref().map(Mutation::parse).transpose()?;
        Ok::<_, String>((designs, flags, mutation))
    })();
    let (designs, flags, mutation) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let (root, _) = scratch_root();
    install_cleanup(root.clone());
    quiet_panics();
    if args.exhaustive {
        EXHAUSTIVE.with(|e| e.set(Some(args.depth)));
    }
    let seeds = SeedSet { start: args.start, count: None, stride: args.stride, offset: args.offset };
    let repro = args.fault.repro(args.mutant.clone());
    let mut out = std::io::stdout().lock();
    let mut unit = args.first_unit;
    while unit < args.end_unit {
        let count = designs.len() as u64;
        let (seed, design) = (seeds.seed(unit / count), designs[(unit % count) as usize]);
        let _ = writeln!(out, "begin {unit}");
        let _ = out.flush();
        misbehave(&args.misbehave, seed);
        let config = SeedConfig { seed, design, flags: flags.clone(), verbose: false };
        let case = Case::from_seed(&config).with_mutation(mutation);
        let result = run_one(&case, &root, &repro, args.check_determinism);
        let _ = writeln!(out, "{}", serde_json::to_string(&result).expect("results encode"));
        let _ = out.flush();
        unit = unit.saturating_add(args.step.max(1));
    }
    let _ = std::fs::remove_dir_all(&root);
    ExitCode::SUCCESS
}

thread_local! {
    static PANIC_SEED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    /// `Some` when this worker explores every crash point of its seeds.
    static EXHAUSTIVE: std::cell::Cell<Option<sim::run::Depth>> = const { std::cell::Cell::new(None) };
}

/// The test hook behind `--misbehave`: exercises the parent's handling of a
/// seed that panics, aborts the process, or hangs.
fn misbehave(plans: &[String], seed: u64) {
    let wanted = plans.iter().filter_map(|p| p.split_once(':')).find(|(s, _)| s.parse() == Ok(seed));
    match wanted.map(|(_, how)| how) {
        Some("abort") => std::process::abort(),
        Some("panic") => PANIC_SEED.with(|p| p.set(Some(seed))),
        Some("hang") => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        _ => {}
    }
}

/// Run a case (twice with `check_determinism`), turning a panic into a failure.
pub fn run_one(case: &Case, root: &Path, repro: &ReproFlags, check_determinism: bool) -> SeedResult {
    let first = run_caught(case, root, repro);
    if !check_determinism {
        return first;
    }
    let second = run_caught(case, root, repro);
    if first == second {
        return first;
    }
    let message = format!("two runs differ: trace {} vs {}", first.trace_hash, second.trace_hash);
    with_failure(first, FailureKind::Nondeterministic, &message, repro)
}

/// `result` with `kind` as its failure (replacing any other).
pub fn with_failure(mut result: SeedResult, kind: FailureKind, message: &str, repro: &ReproFlags) -> SeedResult {
    let failure = Failure::new(kind, 0, message.to_string());
    result.failure = Some(failure_record(&result, &failure, repro));
    result
}

fn failure_record(result: &SeedResult, failure: &Failure, repro: &ReproFlags) -> FailureRecord {
    FailureRecord {
        seed: result.seed,
        design: result.design.clone(),
        kind: failure.kind.name(),
        point: failure.point.as_ref().map(|p| p.to_string()),
        fault: failure.fault.as_ref().map(|p| p.to_string()),
        height: failure.height,
        message: failure.message.clone(),
        repro: sim::summary::repro_line(result.seed, &result.design, repro),
    }
}

fn run_caught(case: &Case, root: &Path, repro: &ReproFlags) -> SeedResult {
    let panic_here = PANIC_SEED.with(|p| p.get()) == Some(case.seed);
    let run = || {
        assert!(!panic_here, "injected panic (--misbehave)");
        match EXHAUSTIVE.with(|e| e.get()) {
            Some(depth) => sim::run::run_exhaustive(case, root, depth),
            None => run_case(case, root),
        }
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(report) => exhaustive_repro(SeedResult::from_report(&report, repro)),
        Err(panic) => {
            // The run's disk guard was dropped by the unwinding.
            panicked(case.seed, case.design, &panic_message(panic.as_ref()), repro)
        }
    }
}

/// An exhaustive run's failure is reproduced by an exhaustive run.
pub fn exhaustive_repro(mut result: SeedResult) -> SeedResult {
    if let (Some(depth), Some(failure)) = (EXHAUSTIVE.with(|e| e.get()), result.failure.as_mut()) {
        failure.repro += " --exhaustive";
        if depth != sim::run::Depth::default() {
            failure.repro += &format!(" --depth {}", depth.name());
        }
    }
    result
}

/// The result of a seed whose run panicked or whose worker died.
pub fn panicked(seed: u64, design: store::Design, message: &str, repro: &ReproFlags) -> SeedResult {
    let result = SeedResult {
        seed,
        design: design.name().to_string(),
        options: String::new(),
        crashes: Vec::new(),
        faults: Vec::new(),
        skips: Default::default(),
        recoveries_checked: 0,
        cranks: 0,
        evictions: 0,
        trace_hash: String::new(),
        failure: None,
    };
    with_failure(result, FailureKind::Panic, message, repro)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into());
    format!("panicked: {text}")
}

/// Panics are reported as failures; the default hook's backtrace would only clutter.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// Ctrl-C: remove this process's scratch directory before dying.
pub fn install_cleanup(root: std::path::PathBuf) {
    let _ = ctrlc::set_handler(move || {
        let _ = std::fs::remove_dir_all(&root);
        std::process::exit(130);
    });
}
