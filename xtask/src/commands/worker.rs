//! The worker process (`sim-worker`, spawned by the pool): runs a stripe of
//! units one after the other (SQLite's PRNG is process-global, so parallelism
//! is one process per job) and prints `begin <unit>` before each and one JSON
//! [`SeedResult`](sim::summary::SeedResult) line after. A panic is that seed's
//! failure; the worker goes on with the next unit. It parses the run
//! specification the pool derived its arguments from.

use crate::args::{usage_error, RunSpec};
use crate::pool::SeedSet;
use crate::unit;
use clap::Args;
use sim::run::scratch_root;
use std::io::Write;
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
    #[command(flatten)]
    pub spec: RunSpec,
    /// Test hook: `SEED:panic|abort|hang` makes that seed misbehave.
    #[arg(long)]
    pub misbehave: Vec<String>,
}

pub fn run(args: WorkerArgs) -> ExitCode {
    if let Err(message) = args.spec.validate() {
        return usage_error(message);
    }
    let (root, _) = scratch_root();
    // Panics are reported as failures; the default hook's backtrace would only clutter.
    std::panic::set_hook(Box::new(|_| {}));
    let seeds = SeedSet { start: args.start, count: None, stride: args.stride, offset: args.offset };
    let mut out = std::io::stdout().lock();
    let mut unit = args.first_unit;
    while unit < args.end_unit {
        let (seed, design) = seeds.unit(&args.spec.design.0, unit);
        let _ = writeln!(out, "begin {unit}");
        let _ = out.flush();
        let result = match misbehave(&args.misbehave, seed) {
            Some(Injected::Panic) => {
                let panicked = unit::catching::<()>(|| panic!("injected panic (--misbehave)"));
                unit::panicked(&args.spec, seed, design, &panicked.expect_err("a panic"))
            }
            None => unit::run(&args.spec, seed, design, &root, false).result,
        };
        let _ = writeln!(out, "{}", serde_json::to_string(&result).expect("results encode"));
        let _ = out.flush();
        unit = unit.saturating_add(args.step.max(1));
    }
    let _ = std::fs::remove_dir_all(&root);
    ExitCode::SUCCESS
}

/// What `--misbehave` asks of a seed that the worker survives.
enum Injected {
    Panic,
}

/// The test hook behind `--misbehave`: exercises the parent's handling of a
/// seed that panics, aborts the process, or hangs.
fn misbehave(plans: &[String], seed: u64) -> Option<Injected> {
    let wanted = plans.iter().filter_map(|p| p.split_once(':')).find(|(s, _)| s.parse() == Ok(seed));
    match wanted.map(|(_, how)| how) {
        Some("abort") => std::process::abort(),
        Some("panic") => Some(Injected::Panic),
        Some("hang") => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        _ => None,
    }
}
