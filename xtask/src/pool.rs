//! The worker pool: runs (seed, design) units in `sim-worker` processes, one per
//! job, restarts a worker that dies (its unit fails: a panic, an abort inside C,
//! or a hang caught by the watchdog), and hands every result to the caller.
//!
//! Unit `u` is seed `start + offset + (u / designs) * stride` with design
//! `designs[u % designs]`; worker `k` of `J` runs units `k, k + J, k + 2J, ...`.
//! `stride`/`offset` split the seed space into shards with no overlap.

use crate::worker;
use indicatif::{ProgressBar, ProgressStyle};
use sim::fault::FaultSet;
use sim::run::scratch_root;
use sim::summary::{ReproFlags, SeedResult};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use store::Design;

/// Which seeds a pool runs.
#[derive(Clone, Copy, Debug)]
pub struct SeedSet {
    pub start: u64,
    /// `None`: as many as fit before the deadline.
    pub count: Option<u64>,
    /// Shards: this machine runs every `stride`-th seed from `start + offset`.
    pub stride: u64,
    pub offset: u64,
}

impl SeedSet {
    /// `count` consecutive seeds from `start`.
    pub fn range(start: u64, count: u64) -> SeedSet {
        SeedSet { start, count: Some(count), stride: 1, offset: 0 }
    }

    pub fn seed(&self, index: u64) -> u64 {
        self.start + self.offset + index * self.stride
    }
}

/// Everything a pool run needs.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub seeds: SeedSet,
    pub designs: Vec<Design>,
    pub mode: Option<String>,
    pub torn: bool,
    pub faults: FaultSet,
    /// The settings flags (`--sqlite-journal ...`), as a repro line repeats them.
    pub settings: Option<String>,
    pub check_determinism: bool,
    pub mutant: Option<String>,
    pub misbehave: Vec<String>,
    pub jobs: usize,
    /// A unit with no result after this long is a hang.
    pub seed_timeout: Duration,
    /// Stop (dropping the units in flight) at this moment.
    pub deadline: Option<Instant>,
}

/// `jobs`, or one per core.
pub fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl PoolConfig {
    /// A plain run: the seed picks the mode, no mutant, no deadline, a 300 s hang limit.
    pub fn new(seeds: SeedSet, designs: Vec<Design>, jobs: Option<usize>) -> PoolConfig {
        PoolConfig {
            seeds,
            designs,
            mode: None,
            torn: false,
            faults: FaultSet::all(),
            settings: None,
            check_determinism: false,
            mutant: None,
            misbehave: Vec::new(),
            jobs: jobs_or_cores(jobs),
            seed_timeout: Duration::from_secs(300),
            deadline: None,
        }
    }

    fn units(&self) -> Option<u64> {
        self.seeds.count.map(|count| count * self.designs.len() as u64)
    }

    /// The seed and design of a unit.
    pub fn unit(&self, unit: u64) -> (u64, Design) {
        let count = self.designs.len() as u64;
        (self.seeds.seed(unit / count), self.designs[(unit % count) as usize])
    }

    pub fn repro(&self) -> ReproFlags {
        ReproFlags {
            mode: self.mode.clone(),
            torn: self.torn,
            faults: crate::sim::faults_flag(&self.faults),
            settings: self.settings.clone(),
            mutant: self.mutant.clone(),
        }
    }
}

/// What a worker's reader thread tells the main loop.
enum Event {
    Started(usize, u32),
    Line(usize, String),
    Exited(usize, String),
}

/// One worker process and the unit it is on.
struct Worker {
    current: Option<u64>,
    pid: Option<u32>,
    /// When the worker last reported anything.
    heard_from: Instant,
    /// Killed by the watchdog, or at the deadline.
    killed: bool,
}

impl Worker {
    fn new() -> Worker {
        Worker { current: None, pid: None, heard_from: Instant::now(), killed: false }
    }

    fn kill(&mut self) {
        if let Some(pid) = self.pid {
            // SAFETY: kill(2) on our own child's pid; the worst case is ESRCH.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            self.killed = true;
        }
    }
}

/// Run every unit; `on_result` sees each result as it arrives and returns
/// whether to go on (`false` stops the pool, dropping the units in flight).
/// `Err` when a worker ended in error outside any unit (e.g. it could not start
/// or rejected its arguments): the run is incomplete and must not pass.
pub fn run_pool(config: &PoolConfig, on_result: impl FnMut(&SeedResult) -> bool) -> Result<(), String> {
    run_pool_with(config, &[], on_result)
}

/// [`run_pool`], with `worker_args` added to every worker's command line
/// (e.g. `--exhaustive`).
pub fn run_pool_with(
    config: &PoolConfig,
    worker_args: &[String],
    mut on_result: impl FnMut(&SeedResult) -> bool,
) -> Result<(), String> {
    let units = config.units().unwrap_or(u64::MAX);
    let jobs = (config.jobs as u64).min(units).max(1) as usize;
    if let (_, Some(warning)) = scratch_root() {
        eprintln!("{warning}");
    }
    let progress = progress_bar(config.units());
    let (events, inbox) = mpsc::channel();
    let mut workers: Vec<Worker> = (0..jobs).map(|_| Worker::new()).collect();
    for index in 0..jobs {
        spawn_worker(config, worker_args, index, index as u64, units, jobs, &events);
    }
    let mut alive = jobs;
    let mut stopping = false;
    let mut broken: Option<String> = None;
    let go_on = std::cell::Cell::new(true);
    let mut report = |result: &SeedResult, progress: &ProgressBar| {
        if !progress.suspend(|| on_result(result)) {
            go_on.set(false);
        }
        progress.inc(1);
    };
    while alive > 0 {
        if !stopping && (!go_on.get() || config.deadline.is_some_and(|d| Instant::now() >= d)) {
            stopping = true;
            workers.iter_mut().for_each(Worker::kill);
        }
        let event = match inbox.recv_timeout(Duration::from_millis(200)) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                watchdog(&mut workers, config.seed_timeout);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match event {
            Event::Started(index, pid) => {
                workers[index].pid = Some(pid);
                if stopping {
                    workers[index].kill();
                }
            }
            Event::Line(index, line) => {
                let worker = &mut workers[index];
                worker.heard_from = Instant::now();
                if let Some(result) = on_line(worker, &line) {
                    report(&result, &progress);
                }
            }
            Event::Exited(index, status) => {
                let worker = &mut workers[index];
                let killed = std::mem::take(&mut worker.killed);
                let Some(unit) = worker.current.take() else {
                    alive -= 1;
                    if !stopping && status != "exit status: 0" {
                        broken.get_or_insert(format!("worker {index} ended: {status}"));
                    }
                    continue;
                };
                if stopping {
                    alive -= 1;
                    continue;
                }
                // The worker died in the middle of a unit: that unit failed; go on after it.
                let why = match killed {
                    true => format!("hang: no result after {} s; worker killed", config.seed_timeout.as_secs()),
                    false => format!("worker process died: {status}"),
                };
                report(&died(config, unit, &why), &progress);
                worker.heard_from = Instant::now();
                let next = unit.saturating_add(jobs as u64);
                if next < units {
                    spawn_worker(config, worker_args, index, next, units, jobs, &events);
                } else {
                    alive -= 1;
                }
            }
        }
    }
    progress.finish_and_clear();
    match broken {
        Some(message) => Err(message),
        None => Ok(()),
    }
}

fn progress_bar(units: Option<u64>) -> ProgressBar {
    let (bar, template) = match units {
        Some(units) => (ProgressBar::new(units), "{bar:40} {pos}/{len} seeds [{elapsed}<{eta}]"),
        None => (ProgressBar::new_spinner(), "{spinner} {pos} seeds [{elapsed}]"),
    };
    bar.set_style(ProgressStyle::with_template(template).expect("template"));
    bar
}

/// Kill workers that are stuck on one unit for longer than the timeout.
fn watchdog(workers: &mut [Worker], timeout: Duration) {
    for worker in workers.iter_mut() {
        if worker.current.is_some() && !worker.killed && worker.heard_from.elapsed() >= timeout {
            worker.kill();
        }
    }
}

fn died(config: &PoolConfig, unit: u64, why: &str) -> SeedResult {
    let (seed, design) = config.unit(unit);
    worker::panicked(seed, design, why, &config.repro())
}

fn on_line(worker: &mut Worker, line: &str) -> Option<SeedResult> {
    if let Some(unit) = line.strip_prefix("begin ") {
        worker.current = unit.trim().parse().ok();
        return None;
    }
    match serde_json::from_str::<SeedResult>(line) {
        Ok(result) => {
            worker.current = None;
            Some(result)
        }
        Err(_) => {
            eprintln!("worker: {line}");
            None
        }
    }
}

fn spawn_worker(
    config: &PoolConfig,
    worker_args: &[String],
    index: usize,
    first_unit: u64,
    end_unit: u64,
    jobs: usize,
    events: &mpsc::Sender<Event>,
) {
    let exe = std::env::current_exe().expect("own executable");
    let designs: Vec<&str> = config.designs.iter().map(|d| d.name()).collect();
    let seeds = config.seeds;
    let mut command = Command::new(exe);
    command.arg("sim-worker");
    for (flag, value) in [
        ("--start", seeds.start),
        ("--stride", seeds.stride),
        ("--offset", seeds.offset),
        ("--first-unit", first_unit),
        ("--end-unit", end_unit),
        ("--step", jobs as u64),
    ] {
        command.args([flag, &value.to_string()]);
    }
    command.args(["--designs", &designs.join(",")]);
    if let Some(mode) = &config.mode {
        command.args(["--mode", mode]);
    }
    if let Some(mutant) = &config.mutant {
        command.args(["--mutant", mutant]);
    }
    if config.torn {
        command.arg("--torn");
    }
    command.args(["--faults", &config.faults.to_string()]);
    if let Some(settings) = &config.settings {
        command.args(settings.split(' '));
    }
    if config.check_determinism {
        command.arg("--check-determinism");
    }
    for plan in &config.misbehave {
        command.args(["--misbehave", plan]);
    }
    command.args(worker_args);
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
