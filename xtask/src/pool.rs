//! The worker pool: runs (seed, design) units in `sim-worker` processes, one per
//! job, restarts a worker that dies (its unit fails: a panic, an abort inside C,
//! or a hang caught by the watchdog), and hands every result to the caller.
//! It stops early when the caller says so, at a deadline, or on a signal
//! (see `signals.rs`): then it kills its workers, and no unit they were on is
//! reported.
//!
//! Unit `u` is seed `start + offset + (u / designs) * stride` with design
//! `designs[u % designs]`; worker `k` of `J` runs units `k, k + J, k + 2J, ...`.
//! `stride`/`offset` split the seed space into shards with no overlap.

use crate::args::RunSpec;
use crate::signals::{self, Interrupted};
use crate::unit;
use indicatif::{ProgressBar, ProgressStyle};
use sim::run::scratch_root;
use sim::summary::SeedResult;
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

    /// The seed and design of `unit`, with `designs` per seed.
    pub fn unit(&self, designs: &[Design], unit: u64) -> (u64, Design) {
        let count = designs.len() as u64;
        (self.seed(unit / count), designs[(unit % count) as usize])
    }
}

/// Everything a pool run needs.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub seeds: SeedSet,
    /// What every unit runs with (its designs among them).
    pub spec: RunSpec,
    /// Test hook: `SEED:panic|abort|hang` makes that seed misbehave in its worker.
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
    /// A run of `spec`: no deadline, a 300 s hang limit.
    pub fn new(seeds: SeedSet, spec: RunSpec, jobs: Option<usize>) -> PoolConfig {
        PoolConfig {
            seeds,
            spec,
            misbehave: Vec::new(),
            jobs: jobs_or_cores(jobs),
            seed_timeout: Duration::from_secs(300),
            deadline: None,
        }
    }

    fn units(&self) -> Option<u64> {
        self.seeds.count.map(|count| count * self.spec.design.0.len() as u64)
    }
}

/// Run every unit; `on_result` sees each result as it arrives and returns
/// whether to go on (`false` stops the pool, dropping the units in flight).
/// `Ok(Some)`: a signal stopped the run. `Err` when a worker ended in error
/// outside any unit (e.g. it could not start or rejected its arguments): the
/// run is incomplete and must not pass.
pub fn run_pool(
    config: &PoolConfig,
    mut on_result: impl FnMut(&SeedResult) -> bool,
) -> Result<Option<Interrupted>, String> {
    if let (_, Some(warning)) = scratch_root() {
        eprintln!("{warning}");
    }
    let progress = progress_bar(config.units());
    let (events, inbox) = mpsc::channel();
    let mut pool = Pool::start(config, events);
    let mut go_on = true;
    while pool.alive > 0 {
        pool.stop_if(!go_on);
        let event = match inbox.recv_timeout(Duration::from_millis(200)) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                pool.watchdog();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(result) = pool.handle(event) {
            go_on &= progress.suspend(|| on_result(&result));
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    match (pool.interrupted, pool.broken) {
        (Some(signal), _) => Ok(Some(signal)),
        (None, Some(message)) => Err(message),
        (None, None) => Ok(None),
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

/// What a worker's reader thread tells the main loop.
enum Event {
    Started(usize, u32),
    Line(usize, String),
    Exited(usize, String),
}

/// One worker process and the unit it is on.
struct Worker {
    current: Option<u64>,
    /// While the process runs.
    pid: Option<u32>,
    /// When the worker last reported anything.
    heard_from: Instant,
    /// Killed by the watchdog, or when the pool stopped.
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

/// The pool's state while it runs.
struct Pool<'a> {
    config: &'a PoolConfig,
    /// One past the last unit.
    units: u64,
    jobs: usize,
    workers: Vec<Worker>,
    events: mpsc::Sender<Event>,
    /// Workers whose process has not ended for good.
    alive: usize,
    /// Workers are being killed; no unit they were on is reported.
    stopping: bool,
    interrupted: Option<Interrupted>,
    /// A worker ended in error outside any unit.
    broken: Option<String>,
}

impl Pool<'_> {
    fn start(config: &PoolConfig, events: mpsc::Sender<Event>) -> Pool<'_> {
        let units = config.units().unwrap_or(u64::MAX);
        let jobs = (config.jobs as u64).min(units).max(1) as usize;
        let workers = (0..jobs).map(|_| Worker::new()).collect();
        let pool = Pool {
            config,
            units,
            jobs,
            workers,
            events,
            alive: jobs,
            stopping: false,
            interrupted: None,
            broken: None,
        };
        for index in 0..jobs {
            pool.spawn(index, index as u64);
        }
        pool
    }

    /// Stop, killing every worker, once `asked` (by the caller), at the
    /// deadline, or on a signal.
    fn stop_if(&mut self, asked: bool) {
        if self.stopping {
            return;
        }
        self.interrupted = signals::interrupted();
        let late = self.config.deadline.is_some_and(|d| Instant::now() >= d);
        if asked || late || self.interrupted.is_some() {
            self.stopping = true;
            self.workers.iter_mut().for_each(Worker::kill);
        }
    }

    /// Kill workers that are stuck on one unit for longer than the timeout.
    fn watchdog(&mut self) {
        let timeout = self.config.seed_timeout;
        for worker in self.workers.iter_mut() {
            if worker.current.is_some() && !worker.killed && worker.heard_from.elapsed() >= timeout {
                worker.kill();
            }
        }
    }

    /// Take in `event`; the result it brings, if any.
    fn handle(&mut self, event: Event) -> Option<SeedResult> {
        match event {
            Event::Started(index, pid) => {
                self.workers[index].pid = Some(pid);
                if self.stopping {
                    self.workers[index].kill();
                }
                None
            }
            Event::Line(index, line) => {
                let worker = &mut self.workers[index];
                worker.heard_from = Instant::now();
                on_line(worker, &line)
            }
            Event::Exited(index, status) => self.exited(index, &status),
        }
    }

    /// Worker `index` ended with `status`. In the middle of a unit (and the
    /// pool not stopping), that unit failed: its result, and a new worker
    /// goes on after it.
    fn exited(&mut self, index: usize, status: &str) -> Option<SeedResult> {
        let worker = &mut self.workers[index];
        worker.pid = None;
        let killed = std::mem::take(&mut worker.killed);
        let Some(unit) = worker.current.take() else {
            self.alive -= 1;
            if !self.stopping && status != "exit status: 0" {
                self.broken.get_or_insert(format!("worker {index} ended: {status}"));
            }
            return None;
        };
        if self.stopping {
            self.alive -= 1;
            return None;
        }
        worker.heard_from = Instant::now();
        let why = match killed {
            true => format!("hang: no result after {} s; worker killed", self.config.seed_timeout.as_secs()),
            false => format!("worker process died: {status}"),
        };
        let next = unit.saturating_add(self.jobs as u64);
        if next < self.units {
            self.spawn(index, next);
        } else {
            self.alive -= 1;
        }
        let (seed, design) = self.config.seeds.unit(&self.config.spec.design.0, unit);
        Some(unit::panicked(&self.config.spec, seed, design, &why))
    }

    /// Start worker `index` on its stripe from `first_unit`.
    fn spawn(&self, index: usize, first_unit: u64) {
        let exe = std::env::current_exe().expect("own executable");
        let seeds = self.config.seeds;
        let mut command = Command::new(exe);
        command.arg("sim-worker");
        for (flag, value) in [
            ("--start", seeds.start),
            ("--stride", seeds.stride),
            ("--offset", seeds.offset),
            ("--first-unit", first_unit),
            ("--end-unit", self.units),
            ("--step", self.jobs as u64),
        ] {
            command.args([flag, &value.to_string()]);
        }
        command.args(self.config.spec.to_args());
        for plan in &self.config.misbehave {
            command.args(["--misbehave", plan]);
        }
        signals::ignored_by(&mut command);
        let child = command.stdout(Stdio::piped()).stdin(Stdio::null()).spawn();
        let events = self.events.clone();
        match child {
            Ok(child) => {
                std::thread::spawn(move || read_worker(index, child, events));
            }
            Err(error) => {
                let _ = events.send(Event::Exited(index, format!("could not start: {error}")));
            }
        }
    }
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
    // A worker that died (or was killed) leaves its scratch directory behind: remove it.
    let _ = std::fs::remove_dir_all(scratch_root().0.with_file_name(format!("swingsim-{}", child.id())));
    let _ = events.send(Event::Exited(index, status));
}
