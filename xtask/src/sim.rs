//! `cargo xtask sim`: run seeds through the simulator on every core, one worker
//! process per job, and summarise. `--seed S` runs one seed in this process
//! with its readable trace.

use crate::pool::{run_pool_with, PoolConfig, SeedSet};
use crate::report;
use crate::worker;
use clap::Args;
use sim::check::FailureKind;
use sim::fault::{FaultMode, FaultSet};
use sim::options::{Flags, Mutation};
use sim::run::{run_case, scratch_root, Case, SeedConfig};
use sim::summary::{ReproFlags, SeedResult, Summary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use store::Design;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// How many seeds to run (from --start).
    #[arg(long, value_parser = parse_number, default_value = "100")]
    pub seeds: u64,
    /// The first seed (decimal or 0x hex).
    #[arg(long, value_parser = parse_number, default_value = "0")]
    pub start: u64,
    /// Run one seed, in this process, with a readable trace.
    #[arg(long, value_parser = parse_number, conflicts_with_all = ["seeds", "start", "jobs"])]
    pub seed: Option<u64>,
    /// A design (erase, length-zero, ram-buffer, generation, start-position, unified) or `all`.
    #[arg(long, default_value = "start-position")]
    pub design: String,
    #[command(flatten)]
    pub fault: FaultArgs,
    /// Worker processes (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write JUnit XML (one test case per failing seed) to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Run every seed twice and compare the two runs.
    #[arg(long)]
    pub check_determinism: bool,
    /// A seed that has not finished after this many seconds is a hang: its worker
    /// is killed and the seed fails. (Wall-clock time only supervises; it never
    /// reaches a result.)
    #[arg(long, default_value = "300")]
    pub seed_timeout_secs: u64,
    /// Run shard K of N: every N-th seed from --start + K - 1 (N machines, no overlap).
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Build the store with one deliberate defect (see `cargo xtask mutants`).
    #[arg(long)]
    pub mutant: Option<String>,
    /// Test hook: `SEED:panic|abort|hang` makes that seed misbehave in its worker.
    #[arg(long, hide = true)]
    pub misbehave: Vec<String>,
    /// Crash at every crash point of each seed, one after the other, and check
    /// each recovery (the workload runs once per seed; see README, Performance).
    #[arg(long)]
    pub exhaustive: bool,
    /// With --exhaustive: after each recovery, `recover` (check only),
    /// `next-block` (run the block in flight again) or `to-end`.
    #[arg(long, value_parser = parse_depth, default_value = "next-block", requires = "exhaustive")]
    pub depth: sim::run::Depth,
}

/// An exhaustive depth: recover, next-block or to-end.
pub fn parse_depth(text: &str) -> Result<sim::run::Depth, String> {
    sim::run::Depth::parse(text)
        .ok_or_else(|| format!("unknown depth `{text}` (expected recover, next-block or to-end)"))
}

/// `--shard K/N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

pub fn parse_shard(text: &str) -> Result<Shard, String> {
    let parsed = text.split_once('/').and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
    match parsed {
        Some((index, count)) if index >= 1 && index <= count => Ok(Shard { index, count }),
        _ => Err(format!("`{text}` is not a shard K/N with 1 <= K <= N")),
    }
}

impl Shard {
    /// The seeds of this shard among `count` seeds from `start`.
    pub fn seeds(shard: Option<Shard>, start: u64, count: Option<u64>) -> SeedSet {
        let Shard { index, count: shards } = shard.unwrap_or(Shard { index: 1, count: 1 });
        let count = count.map(|c| (c + shards - index) / shards);
        SeedSet { start, count, stride: shards, offset: index - 1 }
    }
}

/// The flags that say which faults seeds get: `sim`, `shrink` and the worker
/// take them alike, and a repro line repeats them.
#[derive(Args, Clone, Debug)]
pub struct FaultArgs {
    /// power-loss or process-crash (default: the seed picks).
    #[arg(long)]
    pub mode: Option<String>,
    /// With power loss: unsynced sectors survive, vanish or tear (at every
    /// power loss; without it, the seed decides when `torn` is in --faults).
    #[arg(long)]
    pub torn: bool,
    /// Fault kinds the seeds may get: `all`, `none`, or a list of fsync-eio,
    /// enospc, write-eio, torn. Each seed picks which of them it gets, and when.
    #[arg(long, value_parser = parse_faults, default_value = "all")]
    pub faults: FaultSet,
    /// SQLite journal_mode: delete, truncate, persist, memory, wal, off (default: the store's).
    #[arg(long)]
    pub sqlite_journal: Option<store::JournalMode>,
    /// SQLite synchronous: off, normal, full, extra (default: the store's).
    #[arg(long)]
    pub sqlite_sync: Option<store::Synchronous>,
    /// LMDB flags: default, nometasync, nosync (writemap ones are refused).
    #[arg(long)]
    pub lmdb_flags: Option<store::LmdbFlags>,
}

impl FaultArgs {
    /// The seeds' flags; `Err` for an unknown mode or torn writes without power loss.
    pub fn flags(&self) -> Result<Flags, String> {
        let mode = parse_mode(self.mode.as_deref())?;
        if self.torn && mode == Some(FaultMode::ProcessCrash) {
            return Err("--torn needs power loss; it cannot go with --mode process-crash".into());
        }
        let mut settings = sim::options::Settings::default();
        settings.sqlite_journal = self.sqlite_journal.unwrap_or(settings.sqlite_journal);
        settings.sqlite_sync = self.sqlite_sync.unwrap_or(settings.sqlite_sync);
        settings.lmdb_flags = self.lmdb_flags.unwrap_or(settings.lmdb_flags);
        settings.check_observable()?;
        Ok(Flags { mode, torn: self.torn, faults: self.faults.clone(), settings })
    }

    /// What a repro line repeats, with `mutant`.
    pub fn repro(&self, mutant: Option<String>) -> ReproFlags {
        let settings = [
            self.sqlite_journal.map(|v| format!("--sqlite-journal {v}")),
            self.sqlite_sync.map(|v| format!("--sqlite-sync {v}")),
            self.lmdb_flags.map(|v| format!("--lmdb-flags {v}")),
        ];
        let settings = settings.into_iter().flatten().collect::<Vec<_>>().join(" ");
        let settings = (!settings.is_empty()).then_some(settings);
        ReproFlags { mode: self.mode.clone(), torn: self.torn, faults: faults_flag(&self.faults), mutant, settings }
    }
}

/// `--faults`: `all`, `none` or a comma-separated list of kinds.
pub fn parse_faults(text: &str) -> Result<FaultSet, String> {
    FaultSet::parse(text)
}

/// How a repro line repeats `--faults`: only when narrowed from the default.
pub fn faults_flag(faults: &FaultSet) -> Option<String> {
    (*faults != FaultSet::all()).then(|| faults.to_string())
}

/// A seed: decimal, or hexadecimal with `0x`.
pub fn parse_number(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("`{text}` is not a number (decimal, or hex with 0x)"))
}

/// Everything validated.
struct Plan {
    designs: Vec<Design>,
    flags: Flags,
    mutation: Option<Mutation>,
    repro: ReproFlags,
    jobs: usize,
}

/// Parse a design name or `all`.
pub fn parse_designs(text: &str) -> Result<Vec<Design>, String> {
    match text {
        "all" => Ok(Design::ALL.to_vec()),
        name => Ok(vec![name.parse::<Design>()?]),
    }
}

/// Parse a fault mode name.
pub fn parse_mode(text: Option<&str>) -> Result<Option<FaultMode>, String> {
    text.map(|m| FaultMode::parse(m).ok_or(format!("unknown mode `{m}` (expected power-loss or process-crash)")))
        .transpose()
}

fn usage_error(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn validate(args: &SimArgs) -> Result<Plan, String> {
    let designs = parse_designs(&args.design)?;
    let flags = args.fault.flags()?;
    let mutation = args.mutant.as_deref().map(Mutation::parse).transpose()?;
    if args.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if args.jobs == Some(0) {
        return Err("--jobs must be at least 1".into());
    }
    if args.start.checked_add(args.seeds).is_none() {
        return Err("--start plus --seeds overflows".into());
    }
    let jobs = crate::pool::jobs_or_cores(args.jobs);
    let repro = args.fault.repro(args.mutant.clone());
    Ok(Plan { designs, flags, mutation, repro, jobs })
}

pub fn run(args: SimArgs) -> ExitCode {
    let plan = match validate(&args) {
        Ok(plan) => plan,
        Err(message) => return usage_error(message),
    };
    let started = Instant::now();
    let mut summary = Summary::new(plan.designs.iter().map(|d| d.name().to_string()).collect());
    let ran = match args.seed {
        Some(seed) => {
            run_single(seed, &plan, &args, &mut summary);
            Ok(())
        }
        None => run_many(&plan, &args, &mut summary),
    };
    if let Err(message) = ran {
        eprintln!("error: the run is incomplete: {message}");
        return ExitCode::from(2);
    }
    summary.finish(started.elapsed().as_secs_f64());
    if args.exhaustive {
        let points = summary.crashes;
        let rate = points as f64 / summary.elapsed_seconds.max(1e-9);
        println!("exhaustive: {points} crash points explored in {:.2} s ({rate:.0} points/s)", summary.elapsed_seconds);
    }
    report(&summary, &args)
}

fn report(summary: &Summary, args: &SimArgs) -> ExitCode {
    print_summary(summary);
    if let Err(message) = write_reports(summary, args.json.as_deref(), args.junit.as_deref()) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The closing lines of a run: crashes by point, each failure with its repro line,
/// the trace digest, and last the one-line summary.
pub fn print_summary(summary: &Summary) {
    for (kind, count) in &summary.crashes_by_point {
        println!("  crashes at {kind}: {count}");
    }
    for (kind, count) in &summary.faults_by_kind {
        let seeds = summary.seeds_by_fault.get(kind).copied().unwrap_or(0);
        println!("  faults {kind}: {count} (in {seeds} seeds)");
    }
    for failure in &summary.failures {
        println!(
            "FAILED seed {} design {}: {} at block {}: {}",
            failure.seed, failure.design, failure.kind, failure.height, failure.message
        );
        if let Some(point) = &failure.point {
            println!("  after crash at {point}");
        }
        if let Some(fault) = &failure.fault {
            println!("  after I/O fault {fault}");
        }
        println!("repro: {}", failure.repro);
    }
    println!("trace digest {}", summary.trace_digest);
    println!("{}", summary.line());
}

/// `--json` and `--junit`.
pub fn write_reports(summary: &Summary, json: Option<&Path>, junit: Option<&Path>) -> Result<(), String> {
    if let Some(path) = json {
        report::write_json(path, summary)?;
    }
    if let Some(path) = junit {
        report::write_junit(path, "sim", report::seed_cases(summary))?;
    }
    Ok(())
}

/// One seed in this process, its trace printed.
fn run_single(seed: u64, plan: &Plan, args: &SimArgs, summary: &mut Summary) {
    let (root, warning) = scratch_root();
    if let Some(warning) = warning {
        eprintln!("{warning}");
    }
    worker::install_cleanup(root.clone());
    for design in &plan.designs {
        let flags = plan.flags.clone();
        let case =
            Case::from_seed(&SeedConfig { seed, design: *design, flags, verbose: true }).with_mutation(plan.mutation);
        let run = |case: &Case| match args.exhaustive {
            true => sim::run::run_exhaustive(case, &root, args.depth),
            false => run_case(case, &root),
        };
        let report = run(&case);
        for line in report.trace.lines() {
            println!("{line}");
        }
        let mut result = SeedResult::from_report(&report, &plan.repro);
        if let (true, Some(failure)) = (args.exhaustive, result.failure.as_mut()) {
            failure.repro += " --exhaustive";
            if args.depth != sim::run::Depth::default() {
                failure.repro += &format!(" --depth {}", args.depth.name());
            }
        }
        if args.check_determinism {
            let again = run(&Case { verbose: false, ..case });
            if again.trace.hash() != report.trace.hash() {
                let message = format!("two runs differ: trace {} vs {}", report.trace.hash(), again.trace.hash());
                result = worker::with_failure(result, FailureKind::Nondeterministic, &message, &plan.repro);
            }
        }
        println!("trace hash {}", result.trace_hash);
        summary.add(&result);
    }
}

/// Many seeds through the worker pool.
fn run_many(plan: &Plan, args: &SimArgs, summary: &mut Summary) -> Result<(), String> {
    let seeds = Shard::seeds(args.shard, args.start, Some(args.seeds));
    let designs: Vec<&str> = plan.designs.iter().map(|d| d.name()).collect();
    let shard = args.shard.map_or(String::new(), |s| format!(" shard {}/{}", s.index, s.count));
    println!(
        "sim: seeds {}..{}{shard} designs {} mode {} torn {} faults {} jobs {}",
        args.start,
        args.start + args.seeds,
        designs.join(","),
        args.fault.mode.as_deref().unwrap_or("per-seed"),
        args.fault.torn,
        args.fault.faults,
        plan.jobs,
    );
    let config = PoolConfig {
        seeds,
        designs: plan.designs.clone(),
        mode: args.fault.mode.clone(),
        torn: args.fault.torn,
        faults: args.fault.faults.clone(),
        settings: plan.repro.settings.clone(),
        check_determinism: args.check_determinism,
        mutant: args.mutant.clone(),
        misbehave: args.misbehave.clone(),
        jobs: plan.jobs,
        seed_timeout: Duration::from_secs(args.seed_timeout_secs.max(1)),
        deadline: None,
    };
    let mut worker_args = Vec::new();
    if args.exhaustive {
        worker_args = vec!["--exhaustive".to_string(), "--depth".to_string(), args.depth.name().to_string()];
    }
    run_pool_with(&config, &worker_args, |result| {
        if let Some(failure) = &result.failure {
            println!(
                "FAILED seed {} design {}: {}; repro: {}",
                failure.seed, failure.design, failure.kind, failure.repro
            );
        }
        summary.add(result);
        true
    })
}
