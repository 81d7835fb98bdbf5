//! `cargo xtask sim`: run seeds through the simulator on every core, one worker
//! process per job, and summarise. `--seed S` runs one seed in this process
//! with its readable trace.

use crate::worker::{self, unit_of};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sim::fault::FaultMode;
use sim::options::Flags;
use sim::run::{run_seed, scratch_root, SeedConfig};
use sim::summary::{ReproFlags, SeedResult, Summary};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
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
    /// power-loss or process-crash (default: the seed picks).
    #[arg(long)]
    pub mode: Option<String>,
    /// With power loss: unsynced sectors survive, vanish or tear.
    #[arg(long)]
    pub torn: bool,
    /// Worker processes (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run every seed twice and compare the two runs.
    #[arg(long)]
    pub check_determinism: bool,
    /// A seed that has not finished after this many seconds is a hang: its worker
    /// is killed and the seed fails. (Wall-clock time only supervises; it never
    /// reaches a result.)
    #[arg(long, default_value = "300")]
    pub seed_timeout_secs: u64,
    /// Test hook: `SEED:panic|abort|hang` makes that seed misbehave in its worker.
    #[arg(long, hide = true)]
    pub misbehave: Vec<String>,
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
    mode: Option<FaultMode>,
    repro: ReproFlags,
    jobs: usize,
}

fn usage_error(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn validate(args: &SimArgs) -> Result<Plan, String> {
    let designs = match args.design.as_str() {
        "all" => Design::ALL.to_vec(),
        name => vec![name.parse::<Design>()?],
    };
    let mode = match &args.mode {
        None => None,
        Some(m) => {
            Some(FaultMode::parse(m).ok_or(format!("unknown mode `{m}` (expected power-loss or process-crash)"))?)
        }
    };
    if args.torn && mode == Some(FaultMode::ProcessCrash) {
        return Err("--torn needs power loss; it cannot go with --mode process-crash".into());
    }
    if args.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if args.jobs == Some(0) {
        return Err("--jobs must be at least 1".into());
    }
    if args.start.checked_add(args.seeds).is_none() {
        return Err("--start plus --seeds overflows".into());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.unwrap_or(cores);
    let repro = ReproFlags { mode: args.mode.clone(), torn: args.torn };
    Ok(Plan { designs, mode, repro, jobs })
}

pub fn run(args: SimArgs) -> ExitCode {
    let plan = match validate(&args) {
        Ok(plan) => plan,
        Err(message) => return usage_error(message),
    };
    let started = Instant::now();
    let mut summary = Summary::new(plan.designs.iter().map(|d| d.name().to_string()).collect());
    match args.seed {
        Some(seed) => run_single(seed, &plan, &args, &mut summary),
        None => run_many(&plan, &args, &mut summary),
    }
    summary.finish(started.elapsed().as_secs_f64());
    report(&summary, &args)
}

fn report(summary: &Summary, args: &SimArgs) -> ExitCode {
    for (kind, count) in &summary.crashes_by_point {
        println!("  crashes at {kind}: {count}");
    }
    for failure in &summary.failures {
        println!(
            "FAILED seed {} design {}: {} at block {}: {}",
            failure.seed, failure.design, failure.kind, failure.height, failure.message
        );
        if let Some(point) = &failure.point {
            println!("  after crash at {point}");
        }
        println!("repro: {}", failure.repro);
    }
    println!("trace digest {}", summary.trace_digest);
    println!("{}", summary.line());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(summary).expect("summary encodes");
        if let Err(error) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One seed in this process, its trace printed.
fn run_single(seed: u64, plan: &Plan, args: &SimArgs, summary: &mut Summary) {
    let (root, warning) = scratch_root();
    if let Some(warning) = warning {
        eprintln!("{warning}");
    }
    worker::install_cleanup(root.clone());
    for design in &plan.designs {
        let flags = Flags { mode: plan.mode, torn: args.torn };
        let config = SeedConfig { seed, design: *design, flags, verbose: true };
        let report = run_seed(&config, &root);
        for line in report.trace.lines() {
            println!("{line}");
        }
        let mut result = SeedResult::from_report(&report, &plan.repro);
        if args.check_determinism {
            let again = worker::run_one(&SeedConfig { verbose: false, ..config }, &root, &plan.repro, false);
            if again.trace_hash != result.trace_hash {
                let message = format!("two runs differ: trace {} vs {}", result.trace_hash, again.trace_hash);
                result = worker::panicked(
                    &SeedConfig {
                        verbose: false,
                        ..SeedConfig {
                            seed,
                            design: *design,
                            flags: Flags { mode: plan.mode, torn: args.torn },
                            verbose: false,
                        }
                    },
                    &message,
                    &plan.repro,
                );
            }
        }
        println!("trace hash {}", result.trace_hash);
        summary.add(&result);
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// What a worker's reader thread tells the main loop.
enum Event {
    Started(usize, u32),
    Line(usize, String),
    Exited(usize, String),
}

/// One worker process and the unit it is on.
struct Worker {
    next_unit: u64,
    current: Option<u64>,
    pid: Option<u32>,
    /// When the worker last reported anything.
    heard_from: Instant,
    /// Killed by the watchdog.
    hung: bool,
}

impl Worker {
    fn new(next_unit: u64) -> Worker {
        Worker { next_unit, current: None, pid: None, heard_from: Instant::now(), hung: false }
    }
}

/// Kill workers that are stuck on one unit for longer than the timeout.
fn watchdog(workers: &mut [Worker], timeout: Duration) {
    for worker in workers.iter_mut() {
        if worker.current.is_none() || worker.hung || worker.heard_from.elapsed() < timeout {
            continue;
        }
        if let Some(pid) = worker.pid {
            // SAFETY: kill(2) on our own child's pid; the worst case is ESRCH.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            worker.hung = true;
        }
    }
}

fn run_many(plan: &Plan, args: &SimArgs, summary: &mut Summary) {
    let units = args.seeds * plan.designs.len() as u64;
    let jobs = (plan.jobs as u64).min(units) as usize;
    let designs: Vec<&str> = plan.designs.iter().map(|d| d.name()).collect();
    println!(
        "sim: seeds {}..{} designs {} mode {} torn {} jobs {jobs}",
        args.start,
        args.start + args.seeds,
        designs.join(","),
        args.mode.as_deref().unwrap_or("per-seed"),
        args.torn
    );
    if let (_, Some(warning)) = scratch_root() {
        eprintln!("{warning}");
    }
    let progress = ProgressBar::new(units);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {msg} [{elapsed}<{eta}]").expect("template"),
    );
    let (events, inbox) = mpsc::channel();
    let mut workers: Vec<Worker> = (0..jobs).map(|k| Worker::new(k as u64)).collect();
    let timeout = Duration::from_secs(args.seed_timeout_secs.max(1));
    for (index, worker) in workers.iter().enumerate() {
        spawn_worker(index, worker.next_unit, units, plan, args, &events);
    }
    let mut alive = jobs;
    while alive > 0 {
        let event = match inbox.recv_timeout(Duration::from_secs(1)) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                watchdog(&mut workers, timeout);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match event {
            Event::Started(index, pid) => workers[index].pid = Some(pid),
            Event::Line(index, line) => {
                workers[index].heard_from = Instant::now();
                on_line(&mut workers[index], &line, summary, &progress, jobs);
            }
            Event::Exited(index, status) => {
                let worker = &mut workers[index];
                let Some(unit) = worker.current.take() else {
                    alive -= 1;
                    continue;
                };
                // The worker died in the middle of a seed: that seed failed; go on after it.
                let (seed, design) = unit_of(args.start, &plan.designs, unit);
                let flags = Flags { mode: plan.mode, torn: args.torn };
                let config = SeedConfig { seed, design, flags, verbose: false };
                let why = match std::mem::take(&mut worker.hung) {
                    true => format!("hang: no result after {} s; worker killed", timeout.as_secs()),
                    false => format!("worker process died: {status}"),
                };
                let result = worker::panicked(&config, &why, &plan.repro);
                record(summary, &result, &progress);
                worker.next_unit = unit + jobs as u64;
                worker.heard_from = Instant::now();
                if worker.next_unit < units {
                    spawn_worker(index, worker.next_unit, units, plan, args, &events);
                } else {
                    alive -= 1;
                }
            }
        }
    }
    progress.finish_and_clear();
}

fn on_line(worker: &mut Worker, line: &str, summary: &mut Summary, progress: &ProgressBar, jobs: usize) {
    if let Some(unit) = line.strip_prefix("begin ") {
        worker.current = unit.trim().parse().ok();
        return;
    }
    match serde_json::from_str::<SeedResult>(line) {
        Ok(result) => {
            record(summary, &result, progress);
            if let Some(unit) = worker.current.take() {
                worker.next_unit = unit + jobs as u64;
            }
        }
        Err(_) => progress.suspend(|| eprintln!("worker: {line}")),
    }
}

fn record(summary: &mut Summary, result: &SeedResult, progress: &ProgressBar) {
    if let Some(failure) = &result.failure {
        progress.suspend(|| {
            println!(
                "FAILED seed {} design {}: {}; repro: {}",
                failure.seed, failure.design, failure.kind, failure.repro
            )
        });
    }
    summary.add(result);
    progress.inc(1);
    progress.set_message(format!("{} failed, {} crashes", summary.failed, summary.crashes));
}

fn spawn_worker(
    index: usize,
    first_unit: u64,
    end_unit: u64,
    plan: &Plan,
    args: &SimArgs,
    events: &mpsc::Sender<Event>,
) {
    let exe = std::env::current_exe().expect("own executable");
    let designs: Vec<&str> = plan.designs.iter().map(|d| d.name()).collect();
    let mut command = Command::new(exe);
    command.arg("sim-worker").args(["--start", &args.start.to_string()]);
    command.args(["--first-unit", &first_unit.to_string(), "--end-unit", &end_unit.to_string()]);
    command.args(["--step", &plan.jobs.to_string(), "--designs", &designs.join(",")]);
    if let Some(mode) = &args.mode {
        command.args(["--mode", mode]);
    }
    if args.torn {
        command.arg("--torn");
    }
    if args.check_determinism {
        command.arg("--check-determinism");
    }
    for plan in &args.misbehave {
        command.args(["--misbehave", plan]);
    }
    let child = command.stdout(Stdio::piped()).stdin(Stdio::null()).spawn();
    let events = events.clone();
    match child {
        Ok(child) => {
            std::thread::spawn(move || read_worker(index, child, events));
        }
        Err(error) => {
            let _ = events.send(Event::Exited(index, format!("could not start: {error}")));
        }
    }
}

fn read_worker(index: usize, mut child: Child, events: mpsc::Sender<Event>) {
    let _ = events.send(Event::Started(index, child.id()));
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if events.send(Event::Line(index, line)).is_err() {
            break;
        }
    }
    let status = child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
    // A worker that died leaves its scratch directory behind: remove it.
    let _ = std::fs::remove_dir_all(scratch_root().0.with_file_name(format!("swingsim-{}", child.id())));
    let _ = events.send(Event::Exited(index, status));
}
