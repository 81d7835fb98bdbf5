//! The worker process: runs a stripe of seeds one after the other (SQLite's
//! PRNG is process-global, so parallelism is one process per job) and prints
//! `begin <unit>` before each and one JSON [`SeedResult`] line after.
//! A panic is that seed's failure; the worker goes on with the next seed.

use clap::Args;
use sim::check::{Failure, FailureKind};
use sim::fault::FaultMode;
use sim::options::Flags;
use sim::run::{run_seed, scratch_root, SeedConfig};
use sim::summary::{ReproFlags, SeedResult};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use store::Design;

#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// The run's first seed. Unit `u` is seed `start + u / designs`, design `u % designs`.
    #[arg(long)]
    pub start: u64,
    /// First unit of the stripe.
    #[arg(long)]
    pub first_unit: u64,
    /// One past the last unit of the whole run.
    #[arg(long)]
    pub end_unit: u64,
    /// Distance between the stripe's units (the number of jobs).
    #[arg(long)]
    pub step: u64,
    #[arg(long, value_delimiter = ',', required = true)]
    pub designs: Vec<String>,
    #[arg(long)]
    pub mode: Option<String>,
    #[arg(long)]
    pub torn: bool,
    #[arg(long)]
    pub check_determinism: bool,
    /// Test hook: `SEED:panic|abort|hang` makes that seed misbehave.
    #[arg(long)]
    pub misbehave: Vec<String>,
}

pub fn run(args: WorkerArgs) -> ExitCode {
    let designs: Vec<Design> = match args.designs.iter().map(|d| d.parse()).collect() {
        Ok(designs) => designs,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let mode = args.mode.as_deref().map(|m| FaultMode::parse(m).ok_or(m));
    let mode = match mode.transpose() {
        Ok(mode) => mode,
        Err(m) => {
            eprintln!("error: unknown mode {m}");
            return ExitCode::from(2);
        }
    };
    let (root, _) = scratch_root();
    install_cleanup(root.clone());
    quiet_panics();
    let flags = Flags { mode, torn: args.torn };
    let repro = ReproFlags { mode: args.mode.clone(), torn: args.torn };
    let mut out = std::io::stdout().lock();
    let mut unit = args.first_unit;
    while unit < args.end_unit {
        let (seed, design) = unit_of(args.start, &designs, unit);
        let _ = writeln!(out, "begin {unit}");
        let _ = out.flush();
        misbehave(&args.misbehave, seed);
        let config = SeedConfig { seed, design, flags: flags.clone(), verbose: false };
        let result = run_one(&config, &root, &repro, args.check_determinism);
        let _ = writeln!(out, "{}", serde_json::to_string(&result).expect("results encode"));
        let _ = out.flush();
        unit += args.step.max(1);
    }
    let _ = std::fs::remove_dir_all(&root);
    ExitCode::SUCCESS
}

thread_local! {
    static PANIC_SEED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
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

/// The seed and design of a unit of work.
pub fn unit_of(start: u64, designs: &[Design], unit: u64) -> (u64, Design) {
    let count = designs.len() as u64;
    (start + unit / count, designs[(unit % count) as usize])
}

/// Run a seed (twice with `check_determinism`), turning a panic into a failure.
pub fn run_one(config: &SeedConfig, root: &std::path::Path, repro: &ReproFlags, check_determinism: bool) -> SeedResult {
    let first = run_caught(config, root, repro);
    if !check_determinism {
        return first;
    }
    let second = run_caught(config, root, repro);
    if first == second {
        return first;
    }
    let message = format!("two runs differ: trace {} vs {}", first.trace_hash, second.trace_hash);
    nondeterministic(first, message, repro)
}

fn nondeterministic(mut result: SeedResult, message: String, repro: &ReproFlags) -> SeedResult {
    let failure = Failure { kind: FailureKind::Nondeterministic, message, point: None, height: 0 };
    result.failure = Some(failure_record(&result, &failure, repro));
    result
}

fn failure_record(result: &SeedResult, failure: &Failure, repro: &ReproFlags) -> sim::summary::FailureRecord {
    sim::summary::FailureRecord {
        seed: result.seed,
        design: result.design.clone(),
        kind: failure.kind.name(),
        point: failure.point.as_ref().map(|p| p.to_string()),
        height: failure.height,
        message: failure.message.clone(),
        repro: sim::summary::repro_line(result.seed, &result.design, repro),
    }
}

fn run_caught(config: &SeedConfig, root: &std::path::Path, repro: &ReproFlags) -> SeedResult {
    let panic_here = PANIC_SEED.with(|p| p.get()) == Some(config.seed);
    let run = || {
        assert!(!panic_here, "injected panic (--misbehave)");
        run_seed(config, root)
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(report) => SeedResult::from_report(&report, repro),
        Err(panic) => {
            let _ = sim::world::uninstall();
            let _ = std::fs::remove_dir_all(root.join(format!("{}-{}", config.seed, config.design)));
            panicked(config, &panic_message(panic.as_ref()), repro)
        }
    }
}

/// The result of a seed whose run panicked or whose worker died.
pub fn panicked(config: &SeedConfig, message: &str, repro: &ReproFlags) -> SeedResult {
    let result = SeedResult {
        seed: config.seed,
        design: config.design.name().to_string(),
        options: String::new(),
        crashes: Vec::new(),
        recoveries_checked: 0,
        cranks: 0,
        evictions: 0,
        trace_hash: String::new(),
        failure: None,
    };
    let failure = Failure { kind: FailureKind::Panic, message: message.to_string(), point: None, height: 0 };
    let record = failure_record(&result, &failure, repro);
    SeedResult { failure: Some(record), ..result }
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
