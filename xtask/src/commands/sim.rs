//! `cargo xtask sim`: run seeds through the simulator on every core, one worker
//! process per job, and summarise. `--seed S` runs one seed in this process
//! with its readable trace.

use crate::args::{parse_number, usage_error, RunSpec, Shard};
use crate::bug_report::{self, Failed};
use crate::pool::{jobs_or_cores, run_pool, PoolConfig};
use crate::report::{coverage_complete, print_failure, print_summary, write_reports};
use crate::signals::{self, Interrupted};
use crate::unit;
use clap::Args;
use sim::run::scratch_root;
use sim::shrink::shrink;
use sim::summary::{FailureRecord, Summary};
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
    #[command(flatten)]
    pub spec: RunSpec,
    /// Worker processes (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write JUnit XML (one test case per failing seed) to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// A seed that has not finished after this many seconds is a hang: its worker
    /// is killed and the seed fails. (Wall-clock time only supervises; it never
    /// reaches a result.)
    #[arg(long, default_value = "300")]
    pub seed_timeout_secs: u64,
    /// Run shard K of N: every N-th seed from --start + K - 1 (N machines, no overlap).
    #[arg(long, value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// With --seed and one design: draw the run's timeline into this SVG file.
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// Fail (exit 1) when the run never reached a state of the coverage list
    /// (sim::coverage), naming each: for runs of enough seeds (the default
    /// 10,000-seed run reaches every state).
    #[arg(long)]
    pub require_coverage: bool,
    /// Write a bug report (Markdown, with the timelines as SVG) per failure
    /// into this directory: each failure is run again and shrunk.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// With --report: report at most this many failures (the first by seed).
    #[arg(long, default_value = "5")]
    pub max_reports: usize,
    /// Test hook: `SEED:panic|abort|hang` makes that seed misbehave in its worker.
    #[arg(long, hide = true)]
    pub misbehave: Vec<String>,
}

fn validate(args: &SimArgs) -> Result<(), String> {
    args.spec.validate()?;
    if args.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if args.jobs == Some(0) {
        return Err("--jobs must be at least 1".into());
    }
    if args.start.checked_add(args.seeds).is_none() {
        return Err("--start plus --seeds overflows".into());
    }
    let one_run = args.seed.is_some() && args.spec.design.0.len() == 1 && !args.spec.exhaustive;
    if args.timeline.is_some() && !one_run {
        return Err("--timeline draws one run: --seed, one --design, not --exhaustive".into());
    }
    Ok(())
}

pub fn run(args: SimArgs) -> ExitCode {
    if let Err(message) = validate(&args) {
        return usage_error(message);
    }
    let started = Instant::now();
    let mut summary = Summary::new(args.spec.design.0.iter().map(|d| d.name().to_string()).collect());
    let ran = match args.seed {
        Some(seed) => run_single(seed, &args.spec, args.timeline.as_deref(), &mut summary),
        None => run_many(&args, &mut summary),
    };
    let interrupted = match ran {
        Ok(interrupted) => interrupted,
        Err(message) => {
            eprintln!("error: the run is incomplete: {message}");
            return ExitCode::from(2);
        }
    };
    summary.interrupted = interrupted.map(Interrupted::name);
    summary.finish(started.elapsed().as_secs_f64());
    if args.spec.exhaustive {
        let points = summary.crashes;
        let rate = points as f64 / summary.elapsed_seconds.max(1e-9);
        let seconds = summary.elapsed_seconds;
        println!("exhaustive: {points} crash states explored in {seconds:.2} s ({rate:.0} states/s)");
    }
    print_summary(&summary);
    let written = write_reports(&summary, args.json.as_deref(), args.junit.as_deref(), "sim")
        .and_then(|()| args.report.as_deref().map_or(Ok(()), |dir| report_failures(&args, &summary, dir)));
    if let Err(message) = written {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let covered = interrupted.is_some() || !args.require_coverage || coverage_complete(&summary);
    match (signals::interrupted().or(interrupted), summary.failed) {
        (Some(signal), _) => signal.exit_code(),
        (None, 0) if covered => ExitCode::SUCCESS,
        (None, _) => ExitCode::from(1),
    }
}

/// `--report`: a bug report for each of the first `--max-reports` failures,
/// each shrunk first (a signal stops the reporting).
fn report_failures(args: &SimArgs, summary: &Summary, dir: &Path) -> Result<(), String> {
    let commit = bug_report::commit();
    for failure in summary.failures.iter().take(args.max_reports) {
        if signals::interrupted().is_some() {
            break;
        }
        let design: Design = failure.design.parse()?;
        let shrunk = shrunk(failure, &args.spec, design);
        let failed = Failed { failure, spec: &args.spec, design, shrunk: shrunk.as_ref().map_err(Clone::clone) };
        println!("report: {}", bug_report::write(dir, &failed, &commit)?.display());
    }
    if summary.failures.len() > args.max_reports {
        let left = summary.failures.len() - args.max_reports;
        println!(
            "report: {left} more failures not reported (--max-reports {}); their repro lines are above",
            args.max_reports
        );
    }
    Ok(())
}

/// `failure` shrunk to a scenario, or why not.
fn shrunk(failure: &FailureRecord, spec: &RunSpec, design: Design) -> Result<sim::shrink::Shrunk, String> {
    if !bug_report::rerunnable(failure) {
        return Err("the seed's run panicked, hung or killed its worker".into());
    }
    let stop = || signals::interrupted().is_some();
    let mut shrunk = shrink(&spec.case(failure.seed, design, false), &scratch_root().0, 2000, &stop)?;
    shrunk.scenario.description = format!(
        "Shrunk from `{}` ({} events to {}): {}",
        failure.repro, shrunk.events_before, shrunk.events_after, shrunk.message
    );
    Ok(shrunk)
}

/// One seed in this process, each design's trace printed, its timeline
/// drawn into `timeline` if asked; `Some` when a signal stopped it before
/// every design ran.
fn run_single(
    seed: u64,
    spec: &RunSpec,
    timeline: Option<&Path>,
    summary: &mut Summary,
) -> Result<Option<Interrupted>, String> {
    let (root, warning) = scratch_root();
    if let Some(warning) = warning {
        eprintln!("{warning}");
    }
    for design in &spec.design.0 {
        if let Some(signal) = signals::interrupted() {
            return Ok(Some(signal));
        }
        let unit = match timeline {
            Some(_) => unit::run_pictured(spec, seed, *design, &root),
            None => unit::run(spec, seed, *design, &root, true),
        };
        for line in &unit.lines {
            println!("{line}");
        }
        println!("trace hash {}", unit.result.trace_hash);
        if let (Some(path), Some(picture)) = (timeline, &unit.timeline) {
            std::fs::write(path, picture.svg()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("timeline: {}", path.display());
        }
        summary.add(&unit.result);
    }
    Ok(None)
}

/// Many seeds through the worker pool.
fn run_many(args: &SimArgs, summary: &mut Summary) -> Result<Option<Interrupted>, String> {
    let shard = args.shard.unwrap_or(Shard::ALL);
    let config = PoolConfig {
        misbehave: args.misbehave.clone(),
        seed_timeout: Duration::from_secs(args.seed_timeout_secs.max(1)),
        ..PoolConfig::new(shard.seeds(args.start, Some(args.seeds)), args.spec.clone(), args.jobs)
    };
    let spec = &args.spec;
    let designs: Vec<&str> = spec.design.0.iter().map(|d| d.name()).collect();
    let shown = args.shard.map_or(String::new(), |s| format!(" shard {}/{}", s.index, s.count));
    println!(
        "sim: seeds {}..{}{shown} designs {} mode {} torn {} faults {} jobs {}",
        args.start,
        args.start + args.seeds,
        designs.join(","),
        spec.mode.map_or("per-seed", |m| m.name()),
        spec.torn,
        spec.faults,
        jobs_or_cores(args.jobs),
    );
    run_pool(&config, |result| {
        if let Some(failure) = &result.failure {
            print_failure(failure);
        }
        summary.add(result);
        true
    })
}
