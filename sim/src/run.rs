//! One seed: a no-fault reference run, then a faulty run that crashes at the
//! planned points, restarts the kernel from the crash images, and checks every
//! recovery and the end state against the reference and the oracle.
//!
//! The reference run keeps every crash point's disk state (see
//! [`World::capturing`]), so the faulty run starts from the first planned
//! crash instead of running the workload up to it again, and
//! [`run_exhaustive`] recovers every point of the seed from one pass.

use crate::check::{diff_heaps, diff_kv, diff_spans, Failure, FailureKind};
use crate::fault::{CrashAt, FaultAt, OpClass, PointKind};
use crate::node::{self, Inbox, KernelSetup, Request, Snapshot};
use crate::options::{Flags, Mutation, SeedOptions};
use crate::oracle::Oracle;
use crate::trace::Trace;
use crate::world::{self, Captured, FaultRecord, PointRecord, Site, World};
use crate::disk;
use futures::channel::{mpsc, oneshot};
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::kernel::{BlockReport, HostInput};
use store::Design;

/// What one seed is run with.
#[derive(Clone, Debug)]
pub struct SeedConfig {
    pub seed: u64,
    pub design: Design,
    pub flags: Flags,
    /// Keep a readable trace of every event (for `--seed`).
    pub verbose: bool,
}

/// Where the crashes of a run come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashPlan {
    /// Drawn from the seed over the reference run's crash points.
    Seeded,
    /// Named points, in order (scenarios, shrunk cases); empty: no crash.
    Explicit(Vec<CrashAt>),
}

/// Where the I/O faults of a run come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultPlan {
    /// Drawn from the seed over the reference run's I/O operations.
    Seeded,
    /// Named operations (scenarios, shrunk cases); empty: no I/O fault.
    Explicit(Vec<FaultAt>),
}

/// Everything one run is a function of.
#[derive(Clone, Debug)]
pub struct Case {
    /// Seeds madsim, SQLite's randomness and the torn-write draws.
    pub seed: u64,
    pub design: Design,
    pub options: SeedOptions,
    pub plan: CrashPlan,
    pub faults: FaultPlan,
    /// A deliberate defect to run with (`None` always, but for `mutants`).
    pub mutation: Option<Mutation>,
    pub verbose: bool,
}

impl Case {
    pub fn with_mutation(self, mutation: Option<Mutation>) -> Case {
        Case { mutation, ..self }
    }

    pub fn from_seed(config: &SeedConfig) -> Case {
        Case {
            seed: config.seed,
            design: config.design,
            options: SeedOptions::derive(config.seed, &config.flags),
            plan: CrashPlan::Seeded,
            faults: FaultPlan::Seeded,
            mutation: None,
            verbose: config.verbose,
        }
    }
}

/// What one seed did.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub design: Design,
    pub options: SeedOptions,
    /// The crash plan the faulty run followed.
    pub plan: Vec<CrashAt>,
    /// The I/O faults planned for the faulty run.
    pub fault_plan: Vec<FaultAt>,
    pub failure: Option<Failure>,
    pub crashes: Vec<PointRecord>,
    /// The I/O faults injected, in order.
    pub faults: Vec<FaultRecord>,
    pub recoveries_checked: u64,
    pub cranks: u64,
    pub evictions: u64,
    /// The faulty run's final state (every vat rebuilt by replay), when it got there.
    pub final_state: Option<Snapshot>,
    pub trace: Trace,
}

/// The reference run's record of every committed height.
struct Reference {
    reports: Vec<BlockReport>,
    /// Index h: the state after block h (index 0: before any block).
    snapshots: Vec<Snapshot>,
    /// Index h: the oracle's heap digests after block h.
    heaps: Vec<BTreeMap<String, String>>,
    final_snapshot: Snapshot,
    /// Every crash point of the run, by ordinal.
    sites: Vec<Site>,
    /// What each crash point would leave, by ordinal.
    captured: Vec<Captured>,
    /// I/O operations per (class, block).
    io_counts: BTreeMap<(OpClass, u64), u64>,
}

/// Serializes runs within a process: SQLite's PRNG is process-global, so two
/// runs on two threads would interleave its stream and lose determinism.
/// Parallelism comes from worker processes instead.
static RUN_LOCK: Mutex<()> = Mutex::new(());

/// Run one seed in `root` (a per-process scratch directory).
pub fn run_seed(config: &SeedConfig, root: &Path) -> SeedReport {
    run_case(&Case::from_seed(config), root)
}

thread_local! {
    /// Test hook: faulty runs execute the workload from the start, as before
    /// the reference captured crash states (see [`run_case_from_start`]).
    static FROM_START: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`run_case`] with a faulty run that executes the workload from the start up
/// to its first crash instead of starting from the reference's capture of it.
/// The two must agree exactly (same report, same trace); tests check that.
#[doc(hidden)]
pub fn run_case_from_start(case: &Case, root: &Path) -> SeedReport {
    FROM_START.with(|f| f.set(true));
    let report = run_case(case, root);
    FROM_START.with(|f| f.set(false));
    report
}

/// Run one case in `root` (a per-process scratch directory); its files are
/// removed afterwards, whatever the outcome.
pub fn run_case(case: &Case, root: &Path) -> SeedReport {
    tune_allocator();
    let _one_run_at_a_time = RUN_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let base = root.join(format!("{}-{}", case.seed, case.design));
    let _cleanup = RemoveOnDrop(vec![base.clone(), root.to_path_buf()]);
    run_case_in(case, &base)
}

/// Every kernel open makes LMDB calloc its 2 MiB dirty-page list and free it at
/// close. glibc's adaptive mmap threshold then serves such blocks from the heap,
/// where calloc must zero all 2 MiB each time; a fixed threshold below that keeps
/// them mmapped (zero pages from the kernel, touched only as used).
/// Speed only: nothing here reaches a result.
fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    ONCE.call_once(|| {
        // SAFETY: mallopt only sets a tunable of the allocator.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1536 * 1024) };
    });
}

/// Removes directories when dropped (also when a panic unwinds): the run's
/// directory, then the per-process root if it is empty.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some((first, rest)) = self.0.split_first() {
            let _ = std::fs::remove_dir_all(first);
            for dir in rest {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

impl SeedReport {
    /// The report of a case before anything ran.
    fn empty(case: &Case) -> SeedReport {
        SeedReport {
            seed: case.seed,
            design: case.design,
            options: case.options.clone(),
            plan: Vec::new(),
            fault_plan: Vec::new(),
            failure: None,
            crashes: Vec::new(),
            faults: Vec::new(),
            recoveries_checked: 0,
            cranks: 0,
            evictions: 0,
            final_state: None,
            trace: Trace::new(false),
        }
    }
}

/// The first line of a seed's trace, its empty report, and its reference run in
/// `dir`; `Err` is the finished report of a reference run that failed.
fn start(case: &Case, dir: &Path, header_suffix: &str) -> Result<(SeedReport, Trace, Reference), Box<SeedReport>> {
    let mut trace = Trace::new(case.verbose);
    trace.line(format!("SEED={} design={} {}{header_suffix}", case.seed, case.design, case.options));
    let mut report = SeedReport::empty(case);
    let reference = match reference_run(case, dir, &mut trace) {
        Ok(reference) => reference,
        Err(failure) => return Err(Box::new(finish(report, trace, Some(failure)))),
    };
    report.cranks = reference.reports.iter().map(|r| r.cranks).sum();
    report.evictions = reference.final_snapshot.evictions;
    Ok((report, trace, reference))
}

fn run_case_in(case: &Case, base: &Path) -> SeedReport {
    // One directory for both runs: the crash images the reference captures name
    // their files by path, and the faulty run starts from one of them.
    let dir = base.join("run");
    let (mut report, mut trace, reference) = match start(case, &dir, "") {
        Ok(started) => started,
        Err(report) => return *report,
    };
    report.plan = match &case.plan {
        CrashPlan::Seeded => seeded_plan(case, &reference.sites),
        CrashPlan::Explicit(plan) => plan.clone(),
    };
    let named: Vec<String> = report.plan.iter().map(|c| c.to_string()).collect();
    let named = if named.is_empty() { "none".to_string() } else { named.join(", ") };
    trace.line(format!("crash plan: {named} (of {} crash points)", reference.sites.len()));
    report.fault_plan = match &case.faults {
        FaultPlan::Seeded => seeded_faults(case, &reference.io_counts),
        FaultPlan::Explicit(faults) => faults.clone(),
    };
    if !report.fault_plan.is_empty() {
        let named: Vec<String> = report.fault_plan.iter().map(|f| f.to_string()).collect();
        trace.line(format!("I/O fault plan: {}", named.join(", ")));
    }
    let reference = Arc::new(reference);
    let faulty = faulty_run(case, &dir, report.plan.clone(), report.fault_plan.clone(), reference, trace);
    report.crashes = faulty.crashes;
    report.faults = faulty.faults;
    report.recoveries_checked = faulty.recoveries;
    report.final_state = faulty.final_state;
    let mut trace = faulty.trace;
    // A seeded fault may name an operation that an event before it made the run
    // skip (a block committed before it, a block re-run with fewer operations,
    // the store created again at height 1): it is not injected, and not
    // counted. So may a seeded crash, once an I/O fault changed the run's
    // course. Named ones must be reached, and so must seeded crashes in a run
    // without I/O faults (the run then follows the reference exactly).
    let faults_unreached = match case.faults {
        FaultPlan::Seeded => not_reached(&mut trace, &faulty.faults_unreached),
        FaultPlan::Explicit(_) => &faulty.faults_unreached[..],
    };
    let crashes_unreached = match case.plan {
        CrashPlan::Seeded if !report.faults.is_empty() => not_reached(&mut trace, &faulty.unreached),
        _ => &faulty.unreached[..],
    };
    let failure = faulty.failure.or_else(|| unreached(crashes_unreached, faults_unreached));
    finish(report, trace, failure)
}

/// Say in the trace that the seeded `events` were not reached; none is a failure.
fn not_reached<'a, T: std::fmt::Display>(trace: &mut Trace, events: &[T]) -> &'a [T] {
    for event in events {
        trace.line(format!("not injected: {event} (the run did not reach it)"));
    }
    &[]
}

/// How far exhaustive exploration runs the workload after each recovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Depth {
    /// Recover and check the recovered state only.
    Recover,
    /// Also run the block that was in flight again and check it (the default).
    #[default]
    NextBlock,
    /// Run every remaining block and check the final state (cost grows with the
    /// square of the workload: each point runs the rest of it).
    ToEnd,
}

impl Depth {
    pub const ALL: [Depth; 3] = [Depth::Recover, Depth::NextBlock, Depth::ToEnd];

    pub fn name(self) -> &'static str {
        match self {
            Depth::Recover => "recover",
            Depth::NextBlock => "next-block",
            Depth::ToEnd => "to-end",
        }
    }

    pub fn parse(text: &str) -> Option<Depth> {
        Depth::ALL.into_iter().find(|d| d.name() == text)
    }

    /// Blocks to run after the recovery (`None`: to the end).
    fn limit(self) -> Option<u64> {
        match self {
            Depth::Recover => Some(0),
            Depth::NextBlock => Some(1),
            Depth::ToEnd => None,
        }
    }
}

/// Crash at every crash point of the seed, one after the other, and check each
/// recovery. The workload runs once: the reference run keeps every point's
/// disk state (copy-on-write), and each point's run starts from its crash
/// image, recovers, is checked against the reference at the recovered height,
/// and runs on as far as `depth` says. The report names every point explored
/// (`plan`, `crashes`); its failure is the first point's that failed.
pub fn run_exhaustive(case: &Case, root: &Path, depth: Depth) -> SeedReport {
    tune_allocator();
    let _one_run_at_a_time = RUN_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let base = root.join(format!("{}-{}", case.seed, case.design));
    let _cleanup = RemoveOnDrop(vec![base.clone(), root.to_path_buf()]);
    let dir = base.join("run");
    let (mut report, mut trace, reference) = match start(case, &dir, &format!(" exhaustive={}", depth.name())) {
        Ok(started) => started,
        Err(report) => return *report,
    };
    trace.line(format!("exhaustive: {} crash points", reference.sites.len()));
    let reference = Arc::new(reference);
    let mut failed = 0u64;
    let mut first_failure = None;
    let mut counts: BTreeMap<Site, u64> = BTreeMap::new();
    for ordinal in 0..reference.sites.len() {
        // `name_site`, in one pass: the point's count among its kind and block.
        let site = reference.sites[ordinal];
        let nth = counts.entry(site).or_default();
        *nth += 1;
        let named = CrashAt { at: site.kind, block: site.height, nth: *nth };
        report.plan.push(named);
        let Some((world, acked)) = resumed_world(case, &reference, ordinal, named, Vec::new()) else {
            // Every point must be explored: a missing image is the harness's own failure.
            failed += 1;
            let message = format!("no crash image was captured at point {ordinal} ({named})");
            trace.line(format!("FAILED at point {ordinal} ({named}): {message}"));
            let failure = Failure::new(FailureKind::InvalidPlan, named.block, message);
            first_failure.get_or_insert(failure);
            continue;
        };
        let point_trace = Trace::new(case.verbose);
        let outcome = host_run(case, &dir, reference.clone(), world, Some(acked), 1, depth.limit(), point_trace);
        debug_assert!(outcome.faults.is_empty(), "exhaustive runs plan no I/O faults");
        report.crashes.extend(outcome.crashes.iter().cloned());
        report.recoveries_checked += outcome.recoveries;
        for line in outcome.trace.lines() {
            trace.note(format!("  {line}"));
        }
        trace.line(format!("point {ordinal} ({named}): trace {}", outcome.trace.hash()));
        if let Some(failure) = outcome.failure {
            failed += 1;
            trace.line(format!("FAILED at point {ordinal} ({named}): {failure}"));
            first_failure.get_or_insert(failure);
        }
    }
    trace.line(format!(
        "exhaustive: {} points explored, {} recoveries checked, {failed} failed",
        reference.sites.len(),
        report.recoveries_checked
    ));
    finish(report, trace, first_failure)
}

/// A plan that names a point or an operation the run never reached is not a passing run.
fn unreached(crashes_left: &[CrashAt], faults_left: &[FaultAt]) -> Option<Failure> {
    if let Some(first) = crashes_left.first() {
        let message = format!("the crash plan names {first}, which the run never reached");
        return Some(Failure::new(FailureKind::InvalidPlan, first.block, message));
    }
    let first = faults_left.first()?;
    let message = format!("the I/O fault plan names {first}, which the run never reached");
    Some(Failure::new(FailureKind::InvalidPlan, first.block, message))
}

fn finish(mut report: SeedReport, mut trace: Trace, failure: Option<Failure>) -> SeedReport {
    match &failure {
        Some(failure) => trace.line(format!("FAILED: {failure}")),
        None => trace.line("passed".to_string()),
    }
    report.failure = failure;
    report.trace = trace;
    report
}

/// Where a seed crashes: the first crash at a point of a kind drawn by the
/// seed's weights; each further crash at a point of a later block.
fn seeded_plan(case: &Case, sites: &[Site]) -> Vec<CrashAt> {
    let options = &case.options;
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ 0x00c0_a511);
    let mut kinds: Vec<PointKind> = sites.iter().map(|s| s.kind).collect();
    kinds.sort();
    kinds.dedup();
    let total_weight: u32 = kinds.iter().map(|k| options.point_weights[k]).sum();
    if total_weight == 0 {
        return Vec::new();
    }
    let mut ticket = i64::from(rng.next_u32() % total_weight);
    let kind = *kinds
        .iter()
        .find(|k| {
            ticket -= i64::from(options.point_weights[*k]);
            ticket < 0
        })
        .expect("a weighted kind");
    let of_kind: Vec<usize> = (0..sites.len()).filter(|i| sites[*i].kind == kind).collect();
    let mut ordinal = of_kind[(rng.next_u64() % of_kind.len() as u64) as usize];
    let mut plan = vec![name_site(sites, ordinal)];
    while plan.len() < options.crashes {
        let block = plan.last().expect("a first crash").block;
        let later: Vec<usize> = (ordinal..sites.len()).filter(|i| sites[*i].height > block).collect();
        if later.is_empty() {
            break;
        }
        ordinal = later[(rng.next_u64() % later.len() as u64) as usize];
        plan.push(name_site(sites, ordinal));
    }
    plan
}

/// The point at `ordinal`, named by kind, block and its count within that block.
fn name_site(sites: &[Site], ordinal: usize) -> CrashAt {
    let site = sites[ordinal];
    let nth = sites[..=ordinal].iter().filter(|s| **s == site).count() as u64;
    CrashAt { at: site.kind, block: site.height, nth }
}

/// Where a seed's I/O faults go: each of a kind the seed gets, at an operation
/// of the fault's class drawn uniformly from all the reference run made.
fn seeded_faults(case: &Case, io_counts: &BTreeMap<(OpClass, u64), u64>) -> Vec<FaultAt> {
    let options = &case.options;
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ 0x10_fa17);
    let mut plan = Vec::new();
    for _ in 0..options.io_faults {
        let fault = options.io_kinds[(rng.next_u64() % options.io_kinds.len() as u64) as usize];
        let class = fault.class().expect("an I/O fault kind");
        let counts: Vec<(u64, u64)> =
            io_counts.iter().filter(|((c, _), _)| *c == class).map(|((_, block), n)| (*block, *n)).collect();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        if total == 0 {
            continue;
        }
        let mut ticket = rng.next_u64() % total;
        for (block, n) in counts {
            if ticket < n {
                plan.push(FaultAt { fault, block, nth: ticket + 1 });
                break;
            }
            ticket -= n;
        }
    }
    plan.sort();
    plan.dedup();
    plan
}

/// A fresh madsim runtime for one run of the seed.
fn runtime(seed: u64) -> Runtime {
    let mut runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(Duration::from_secs(7 * 24 * 3600));
    runtime
}

/// The kernel node and the host's end of its request channel.
struct KernelHandle {
    setup: KernelSetup,
    /// `None` until the node is first started.
    id: Option<NodeId>,
    inbox: Inbox,
    requests: mpsc::UnboundedSender<Request>,
}

impl KernelHandle {
    /// A kernel node not started yet: a run that begins with a crash image
    /// restores it first (see [`KernelHandle::crash_and_restart`]).
    fn stopped(setup: KernelSetup) -> KernelHandle {
        let (requests, _) = mpsc::unbounded();
        KernelHandle { setup, id: None, inbox: Arc::new(Mutex::new(None)), requests }
    }

    fn start(setup: KernelSetup) -> KernelHandle {
        let mut kernel = KernelHandle::stopped(setup);
        kernel.start_node();
        kernel
    }

    /// Start (or restart) the node on a new request channel.
    fn start_node(&mut self) {
        let (requests, receiver) = mpsc::unbounded();
        *self.inbox.lock().expect("inbox lock") = Some(receiver);
        self.requests = requests;
        match self.id {
            Some(id) => Handle::current().restart(id),
            None => {
                let (setup, inbox) = (self.setup.clone(), self.inbox.clone());
                let node = Handle::current()
                    .create_node()
                    .name("kernel")
                    .init(move || node::serve(setup.clone(), inbox.clone()))
                    .build();
                self.id = Some(node.id());
            }
        }
    }

    /// Kill the node, let the simulated time pass so that its tasks (and the
    /// databases they own) are dropped, then start it again from `images`.
    async fn crash_and_restart(&mut self, image: &disk::fs::Image) {
        self.kill().await;
        disk::restore(image);
        world::restarted();
        self.start_node();
    }

    /// Stop the process (its I/O fails from now on), kill the node, and start
    /// it again on the disks as they are: a process restart, no crash image.
    async fn stop_and_restart(&mut self) {
        world::stop_process();
        self.kill().await;
        world::restarted();
        self.start_node();
    }

    /// Kill the node and let the simulated time pass so that its tasks (and
    /// the databases they own) are dropped.
    async fn kill(&self) {
        if let Some(id) = self.id {
            Handle::current().kill(id);
            // madsim drops a killed node's task only when it is next woken:
            // closing its request channel wakes it now, so the dead process's
            // store is closed (and its I/O refused) before anything restarts,
            // not later inside the new process's run.
            self.requests.close_channel();
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn run_block(&self, height: u64, inputs: Vec<HostInput>) -> store::Result<BlockReport> {
        let (reply, answer) = oneshot::channel();
        self.call(Request::RunBlock { height, inputs, reply }, answer).await
    }

    async fn snapshot(&self, full: bool) -> store::Result<Snapshot> {
        let (reply, answer) = oneshot::channel();
        self.call(Request::Snapshot { full, reply }, answer).await
    }

    async fn call<T>(&self, request: Request, answer: oneshot::Receiver<store::Result<T>>) -> store::Result<T> {
        let gone = || store::Error::Invariant("kernel node stopped without answering".into());
        self.requests.unbounded_send(request).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn setup(case: &Case, dir: &Path) -> KernelSetup {
    let mutant = Mutation::store_mutant(case.mutation);
    KernelSetup { dir: dir.to_path_buf(), design: case.design, kernel: case.options.kernel, mutant }
}

/// Install `world` for a run in `dir`, run `body` in a fresh madsim runtime.
fn in_world<T>(case: &Case, dir: &Path, world: World, body: impl std::future::Future<Output = T>) -> (T, World) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
    disk::sqlite::register();
    // SQLite's PRNG (journal nonces, WAL salts) is process-global: seed it per run.
    disk::sqlite::seed_prng((case.seed ^ (case.seed >> 32)) as u32);
    let installed = disk::install(dir, Box::new(world));
    let result = runtime(case.seed).block_on(body);
    let world = installed.finish::<World>().expect("the disk's injector is the run's world");
    let _ = std::fs::remove_dir_all(dir);
    (result, world)
}

fn reference_run(case: &Case, dir: &Path, trace: &mut Trace) -> Result<Reference, Failure> {
    let kernel_setup = setup(case, dir);
    let workload = case.options.workload.clone();
    let body = async move {
        let kernel = KernelHandle::start(kernel_setup);
        let mut oracle = Oracle::default();
        let fail = |height: u64, message: String| Failure::new(FailureKind::ReferenceFailed, height, message);
        let mut reference = Reference {
            reports: Vec::new(),
            snapshots: vec![kernel.snapshot(false).await.map_err(|e| fail(0, e.to_string()))?],
            heaps: vec![BTreeMap::new()],
            final_snapshot: Snapshot::default(),
            sites: Vec::new(),
            captured: Vec::new(),
            io_counts: BTreeMap::new(),
        };
        for (index, inputs) in workload.into_iter().enumerate() {
            let height = index as u64 + 1;
            world::set_height(height);
            let report = kernel.run_block(height, inputs).await.map_err(|e| fail(height, e.to_string()))?;
            oracle.apply(&report).map_err(|e| fail(height, format!("oracle: {e}")))?;
            reference.snapshots.push(kernel.snapshot(false).await.map_err(|e| fail(height, e.to_string()))?);
            reference.heaps.push(oracle.heap_digests());
            reference.reports.push(report);
            madsim::time::sleep(Duration::from_secs(5)).await;
        }
        let height = reference.reports.len() as u64;
        let last = kernel.snapshot(true).await.map_err(|e| fail(height, e.to_string()))?;
        if let Some(diff) = diff_heaps(&reference.heaps[height as usize], &last) {
            return Err(fail(height, format!("oracle: {diff}")));
        }
        reference.final_snapshot = last;
        Ok(reference)
    };
    let started = phase_clock();
    let (result, mut world) = in_world(case, dir, World::capturing(case.seed, case.options.crash), body);
    add_phase(|p| &mut p.reference, started);
    let mut reference = result?;
    reference.sites = world.sites().to_vec();
    reference.io_counts = world.io_counts().clone();
    reference.captured = world.take_captured();
    for report in &reference.reports {
        trace.line(describe_block(report));
    }
    Ok(reference)
}

fn describe_block(report: &BlockReport) -> String {
    let outcomes: Vec<String> = report
        .outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(incarnation) => format!("{} {} {} -> incarnation {incarnation}", o.action, o.vat, o.bundle),
            Err(reason) => format!("{} {} {} failed: {reason}", o.action, o.vat, o.bundle),
        })
        .collect();
    format!(
        "block {}: {} cranks ({} aborted), {} left queued{}{}",
        report.height,
        report.cranks,
        report.aborted_cranks,
        report.run_queue_left,
        if outcomes.is_empty() { "" } else { "; " },
        outcomes.join("; ")
    )
}

/// What the faulty run found.
struct FaultyOutcome {
    failure: Option<Failure>,
    crashes: Vec<PointRecord>,
    faults: Vec<FaultRecord>,
    recoveries: u64,
    /// Planned crashes the run never reached.
    unreached: Vec<CrashAt>,
    /// Planned I/O faults the run never injected.
    faults_unreached: Vec<FaultAt>,
    final_state: Option<Snapshot>,
    trace: Trace,
}

/// The host's side of the faulty run.
struct Host {
    reference: Arc<Reference>,
    /// The host-repeats-committed-block mutation: resume after `acked`, ignoring
    /// a block the kernel committed before the crash.
    repeats_committed_block: bool,
    crashes: Vec<PointRecord>,
    faults: Vec<FaultRecord>,
    recoveries: u64,
    /// The last block whose commit the host saw acknowledged.
    acked: u64,
    /// The liveness phase has begun: no crash or fault is planned any more.
    liveness: bool,
    /// The kernel's state at the end, when the run got there.
    final_state: Option<Snapshot>,
    trace: Trace,
}

/// Why the host restarts the kernel.
enum Restart {
    /// The run crashed: the world holds the crash and the images it left.
    Crash,
    /// An I/O fault was injected: the process stops and a new one starts on
    /// the disk as it is (every file's live image).
    Fault(FaultRecord),
    /// Liveness phase: a block failed; a new process tries it again.
    Retry,
}

/// In the liveness phase, how many times the host restarts the kernel for one
/// block before the seed is stuck.
const LIVENESS_RESTARTS: usize = 1;

/// The faulty run. It does not run the workload up to its first crash again:
/// the reference run is that run (same seed, same points), so the run starts
/// from the crash image the reference captured at the first planned point, as
/// a run that crashed there would (ordinals, torn draws and trace alike), and
/// recovers. With no crash planned, a first crash the reference never
/// reached, or an I/O fault planned in its block or before, it runs from the
/// start (an I/O fault needs the live process).
fn faulty_run(
    case: &Case,
    dir: &Path,
    plan: Vec<CrashAt>,
    faults: Vec<FaultAt>,
    reference: Arc<Reference>,
    trace: Trace,
) -> FaultyOutcome {
    let events = plan.len() + faults.len();
    let resumable = plan.first().is_some_and(|first| faults.iter().all(|f| f.block > first.block));
    let resume = match FROM_START.with(std::cell::Cell::get) || !resumable {
        true => None,
        false => resume_at(case, &reference, plan[0], plan[1..].to_vec()),
    };
    let (world, acked) = match resume {
        Some((world, acked)) => (world, Some(acked)),
        None => (World::new(case.seed, case.options.crash, plan), None),
    };
    let world = world.with_faults(faults, case.mutation == Some(Mutation::FsyncRetry));
    host_run(case, dir, reference, world, acked, events, None, trace)
}

/// Run the host in `world`: from a crash with `acked` blocks acknowledged, or
/// from the start (`None`), with `events` crashes and faults planned; with
/// `limit`, only that many blocks after the start (or the first recovery),
/// without the final check.
#[allow(clippy::too_many_arguments)]
fn host_run(
    case: &Case,
    dir: &Path,
    reference: Arc<Reference>,
    world: World,
    acked: Option<u64>,
    events: usize,
    limit: Option<u64>,
    trace: Trace,
) -> FaultyOutcome {
    let kernel_setup = setup(case, dir);
    let workload = case.options.workload.clone();
    let repeats_committed_block = case.mutation == Some(Mutation::HostRepeatsCommittedBlock);
    let body = async move {
        let mut host = Host {
            reference,
            repeats_committed_block,
            crashes: Vec::new(),
            faults: Vec::new(),
            recoveries: 0,
            acked: acked.unwrap_or(0),
            liveness: false,
            final_state: None,
            trace,
        };
        let mut kernel = match acked {
            Some(_) => KernelHandle::stopped(kernel_setup),
            None => KernelHandle::start(kernel_setup),
        };
        let start = if acked.is_some() { Start::Crashed } else { Start::Fresh };
        let failure = host.drive(&mut kernel, &workload, events, start, limit).await.err();
        (host, failure, world::crashes_left(), world::faults_left())
    };
    let ((host, failure, unreached, faults_unreached), _world) = in_world(case, dir, world, body);
    FaultyOutcome {
        failure,
        crashes: host.crashes,
        faults: host.faults,
        recoveries: host.recoveries,
        unreached,
        faults_unreached,
        final_state: host.final_state,
        trace: host.trace,
    }
}

/// The world of a run that crashed first at `first`, as the reference
/// captured it, with `rest` of the plan ahead; and the block the host had seen
/// committed then. `None` if the reference never reached `first`.
fn resume_at(case: &Case, reference: &Reference, first: CrashAt, rest: Vec<CrashAt>) -> Option<(World, u64)> {
    let ordinal = ordinal_of(&reference.sites, first)?;
    let (world, acked) = resumed_world(case, reference, ordinal, first, rest)?;
    Some((world, acked))
}

/// The world of a run that crashed first at point `ordinal` (named `named`),
/// with `rest` of the plan ahead, and the block the host had seen committed.
fn resumed_world(
    case: &Case,
    reference: &Reference,
    ordinal: usize,
    named: CrashAt,
    rest: Vec<CrashAt>,
) -> Option<(World, u64)> {
    let captured = reference.captured.get(ordinal)?;
    let mut record = PointRecord {
        kind: named.at,
        ordinal: ordinal as u64,
        named,
        database: captured.database,
        file: captured.file.clone(),
        at: captured.at,
        torn: false,
    };
    let mut rng = world::torn_rng(case.seed);
    let images = world::crash_image(&captured.disk, case.options.crash, &mut rng);
    record.torn = rng.get_word_pos() != world::torn_rng(case.seed).get_word_pos();
    let world = World::resumed(case.seed, case.options.crash, rest, record, images, rng);
    // The host sees block h committed when run_block(h) returns: a crash while
    // it runs block h (or opens the store, h = 0) leaves h - 1 acknowledged.
    Some((world, reference.sites[ordinal].height.saturating_sub(1)))
}

/// The ordinal of the point `at` names, counted from the start of the run.
fn ordinal_of(sites: &[Site], at: CrashAt) -> Option<usize> {
    let mut nth = 0;
    for (ordinal, site) in sites.iter().enumerate() {
        if site.kind == at.at && site.height == at.block {
            nth += 1;
            if nth == at.nth {
                return Some(ordinal);
            }
        }
    }
    None
}

/// How a host's run begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Open the store from nothing.
    Fresh,
    /// Just after a crash (the world holds it): restore its images and recover.
    Crashed,
}

impl Host {
    fn failure(&self, kind: FailureKind, height: u64, message: String) -> Failure {
        let point = self.crashes.last().cloned().map(Box::new);
        let fault = self.faults.last().cloned().map(Box::new);
        Failure { kind, message, point, fault, height }
    }

    /// Run the workload from `start`, recovering from every crash and I/O
    /// fault (`events` are planned), up to the final check; with `limit`, stop
    /// without it after that many blocks.
    async fn drive(
        &mut self,
        kernel: &mut KernelHandle,
        workload: &[Vec<HostInput>],
        events: usize,
        start: Start,
        limit: Option<u64>,
    ) -> Result<(), Failure> {
        let mut retries = 0;
        let mut height = match start {
            Start::Crashed => self.recover(kernel, events, Restart::Crash).await? + 1,
            Start::Fresh => {
                // Open the store at height 0, as the reference run does, so that crash
                // points of the first open are named alike in both runs.
                world::set_height(0);
                match kernel.snapshot(false).await {
                    Ok(_) => match world::take_fault() {
                        Some(fault) => return Err(self.fault_ignored(kernel, events, 0, fault).await),
                        None => 1,
                    },
                    Err(error) => self.restart_after(kernel, events, 0, error, &mut retries).await? + 1,
                }
            }
        };
        let stop_after = limit.map(|blocks| height - 1 + blocks);
        // Each block runs once, plus once more per planned event and liveness
        // restart; the bound guards the loop.
        let max_attempts = workload.len() * (events + 1 + LIVENESS_RESTARTS) + events + 1;
        for _ in 0..max_attempts {
            if stop_after.is_some_and(|last| height > last) {
                return Ok(());
            }
            if height > workload.len() as u64 {
                return self.check_final(kernel).await;
            }
            self.enter_liveness(height, workload.len());
            world::set_height(height);
            let started = phase_clock();
            let ran = kernel.run_block(height, workload[height as usize - 1].clone()).await;
            add_phase(|p| &mut p.faulty, started);
            match ran {
                Ok(report) => {
                    if let Some(fault) = world::take_fault() {
                        return Err(self.fault_ignored(kernel, events, height, fault).await);
                    }
                    let started = phase_clock();
                    let checked = self.check_block(&report);
                    add_phase(|p| &mut p.checks, started);
                    checked?;
                    self.acked = height;
                    height += 1;
                    retries = 0;
                    madsim::time::sleep(Duration::from_secs(5)).await;
                }
                Err(error) => height = self.restart_after(kernel, events, height, error, &mut retries).await? + 1,
            }
        }
        Err(self.failure(FailureKind::Stuck, height, format!("no progress after {max_attempts} block attempts")))
    }

    /// Once no crash or fault is planned any more, the faults have stopped:
    /// every remaining block must now complete (say so once, in the trace).
    fn enter_liveness(&mut self, height: u64, blocks: usize) {
        if self.liveness || !world::crashes_left().is_empty() || !world::faults_left().is_empty() {
            return;
        }
        self.liveness = true;
        self.trace.line(format!("liveness: nothing more planned; blocks {height}..={blocks} must complete"));
    }

    /// The kernel failed at `height` with `error`: recover from the crash or
    /// the I/O fault behind it; in the liveness phase, restart it (at most
    /// [`LIVENESS_RESTARTS`] times per block, counted in `retries`) and then
    /// the seed is stuck; any other error is the seed's failure. Returns the
    /// recovered height.
    async fn restart_after(
        &mut self,
        kernel: &mut KernelHandle,
        events: usize,
        height: u64,
        error: store::Error,
        retries: &mut usize,
    ) -> Result<u64, Failure> {
        if world::is_crashed() {
            return self.recover(kernel, events, Restart::Crash).await;
        }
        if let Some(fault) = world::take_fault() {
            self.trace.line(format!("I/O fault {fault}: the kernel stopped: {error}"));
            return self.recover(kernel, events, Restart::Fault(fault)).await;
        }
        let kind = FailureKind::of_error(&error);
        if !self.liveness {
            return Err(self.failure(kind, height, error.to_string()));
        }
        if *retries >= LIVENESS_RESTARTS {
            let message = format!("block {height} cannot complete after {retries} restart(s): {kind}: {error}");
            return Err(self.failure(FailureKind::Stuck, height, message));
        }
        *retries += 1;
        self.trace.line(format!("liveness: block {height} failed ({error}); restarting the kernel"));
        match self.recover(kernel, events, Restart::Retry).await {
            // The new process cannot even open: the host can go no further.
            Err(failure) if failure.kind.is_kernel_error() => {
                let message =
                    format!("block {height} cannot complete: after a restart, {}: {}", failure.kind, failure.message);
                Err(Failure { kind: FailureKind::Stuck, message, ..failure })
            }
            recovered => recovered,
        }
    }

    /// The kernel reported block `height` committed although I/O fault
    /// `fault` hit it. Restart on the disk as it is and check what it
    /// reported (a lost commit fails there); if nothing was lost, the store
    /// still carried on past a storage error.
    async fn fault_ignored(
        &mut self,
        kernel: &mut KernelHandle,
        events: usize,
        height: u64,
        fault: FaultRecord,
    ) -> Failure {
        self.trace.line(format!("I/O fault {fault} did not stop block {height}: the kernel reported it committed"));
        self.acked = height;
        let message = format!("the kernel reported block {height} committed after I/O fault {fault}");
        match self.recover(kernel, events, Restart::Fault(fault)).await {
            Err(failure) => failure,
            Ok(_) => self.failure(FailureKind::FaultIgnored, height, message),
        }
    }

    /// A block run again after a recovery must do exactly what it did in the reference.
    fn check_block(&self, report: &BlockReport) -> Result<(), Failure> {
        let expected = &self.reference.reports[report.height as usize - 1];
        if report != expected {
            let message = format!("expected `{}`, found `{}`", describe_block(expected), describe_block(report));
            return Err(self.failure(FailureKind::DivergentBlock, report.height, message));
        }
        Ok(())
    }

    /// Restart the kernel for `restart` (again, if recovery itself crashes or
    /// faults), check the recovered state, and return the recovered height.
    async fn recover(&mut self, kernel: &mut KernelHandle, events: usize, first: Restart) -> Result<u64, Failure> {
        let mut restart = first;
        for _ in 0..=events + LIVENESS_RESTARTS {
            let images = match restart {
                Restart::Crash => {
                    let Some((point, images)) = world::take_crash() else {
                        return Err(self.failure(FailureKind::KernelError, self.acked, "crash without images".into()));
                    };
                    // An I/O fault the crash cut short (the kernel had not stopped yet).
                    if let Some(fault) = world::take_fault() {
                        self.trace.line(format!("I/O fault {fault}, then a crash before the kernel stopped"));
                        self.faults.push(fault);
                    }
                    self.trace.line(format!("crash at {point}"));
                    self.crashes.push(point);
                    Some(images)
                }
                Restart::Fault(fault) => {
                    self.faults.push(fault);
                    None
                }
                Restart::Retry => None,
            };
            world::set_height(self.acked + 1);
            let started = phase_clock();
            match &images {
                Some(images) => kernel.crash_and_restart(images).await,
                None => kernel.stop_and_restart().await,
            }
            let recovered = kernel.snapshot(true).await;
            add_phase(|p| &mut p.recovery, started);
            match recovered {
                Ok(snapshot) => {
                    let started = phase_clock();
                    let checked = self.check_recovery(&snapshot);
                    add_phase(|p| &mut p.checks, started);
                    return checked;
                }
                Err(_) if world::is_crashed() => restart = Restart::Crash,
                Err(error) => match world::take_fault() {
                    Some(fault) => {
                        self.trace.line(format!("I/O fault {fault} during recovery: {error}"));
                        restart = Restart::Fault(fault);
                    }
                    None => return Err(self.failure(FailureKind::of_error(&error), self.acked + 1, error.to_string())),
                },
            }
        }
        Err(self.failure(FailureKind::KernelError, self.acked, "more restarts than planned events".into()))
    }

    fn check_recovery(&mut self, found: &Snapshot) -> Result<u64, Failure> {
        let height = found.height.unwrap_or(0);
        if height < self.acked || height > self.acked + 1 {
            let message = format!("host saw block {} committed, kernel recovered at height {height}", self.acked);
            return Err(self.failure(FailureKind::LostCommit, height, message));
        }
        let reference = self.reference.clone();
        self.compare(&reference.snapshots[height as usize], &reference.heaps[height as usize], found, height)?;
        self.recoveries += 1;
        // The kernel committed the block in flight (a crash after its commit point):
        // the host now knows it is committed and must not run it again.
        if self.repeats_committed_block {
            return Ok(self.acked);
        }
        self.acked = height;
        let replayed = found.replayed;
        self.trace
            .line(format!("recovered at height {height}: state equals the reference; replayed {replayed} deliveries"));
        Ok(height)
    }

    fn compare(
        &self,
        expected: &Snapshot,
        heaps: &BTreeMap<String, String>,
        found: &Snapshot,
        height: u64,
    ) -> Result<(), Failure> {
        if let Some(diff) = diff_kv(&expected.kv, &found.kv) {
            return Err(self.failure(FailureKind::StateMismatch, height, diff));
        }
        if let Some(diff) = diff_spans(expected, found) {
            return Err(self.failure(FailureKind::TranscriptMismatch, height, diff));
        }
        if let Some(diff) = diff_heaps(heaps, found) {
            return Err(self.failure(FailureKind::HeapMismatch, height, diff));
        }
        Ok(())
    }

    async fn check_final(&mut self, kernel: &KernelHandle) -> Result<(), Failure> {
        let started = phase_clock();
        let checked = self.check_final_inner(kernel).await;
        add_phase(|p| &mut p.checks, started);
        checked
    }

    async fn check_final_inner(&mut self, kernel: &KernelHandle) -> Result<(), Failure> {
        let height = self.reference.reports.len() as u64;
        let found =
            kernel.snapshot(true).await.map_err(|e| self.failure(FailureKind::of_error(&e), height, e.to_string()))?;
        let reference = self.reference.clone();
        self.compare(&reference.final_snapshot, &reference.heaps[height as usize], &found, height)
            .map_err(|f| Failure { kind: FailureKind::FinalMismatch, ..f })?;
        if found.activity_hash != reference.final_snapshot.activity_hash {
            let message =
                format!("activity hash {} expected {}", found.activity_hash, reference.final_snapshot.activity_hash);
            return Err(self.failure(FailureKind::FinalMismatch, height, message));
        }
        self.trace.line(format!(
            "final state at height {height} equals the reference (activity hash {})",
            found.activity_hash
        ));
        self.final_state = Some(found);
        Ok(())
    }
}

/// A per-process scratch root on tmpfs when there is one.
pub fn scratch_root() -> (PathBuf, Option<String>) {
    let shm = Path::new("/dev/shm");
    let pid = std::process::id();
    if shm.is_dir() {
        return (shm.join(format!("swingsim-{pid}")), None);
    }
    let warning = "warning: /dev/shm not found; LMDB files go to the system temp dir (slower)".to_string();
    (std::env::temp_dir().join(format!("swingsim-{pid}")), Some(warning))
}

/// Wall-clock time spent in each phase of the seeds run on this thread, for
/// `cargo xtask bench`. Measured with the real monotonic clock (madsim
/// replaces `clock_gettime` inside a run); it never reaches a result.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phases {
    /// The reference run (its per-block snapshots, oracle and captures included).
    pub reference: f64,
    /// Restarting from crash images and rebuilding every vat by replay.
    pub recovery: f64,
    /// Blocks the faulty run executes after a recovery.
    pub faulty: f64,
    /// Comparisons with the reference and the oracle, and the final replay check.
    pub checks: f64,
}

thread_local! {
    static PHASES: std::cell::Cell<Phases> = const {
        std::cell::Cell::new(Phases { reference: 0.0, recovery: 0.0, faulty: 0.0, checks: 0.0 })
    };
    /// Whether phases are timed on this thread (off: no clock reads at all).
    static TIMING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Time the phases of the seeds run on this thread from now on (or stop).
pub fn time_phases(on: bool) {
    TIMING.with(|t| t.set(on));
}

/// The phase times accumulated on this thread since the last call.
pub fn take_phases() -> Phases {
    PHASES.with(|p| p.take())
}

/// Seconds on the real monotonic clock (a raw syscall: madsim's `clock_gettime` is simulated).
pub fn real_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts as *mut libc::timespec) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn phase_clock() -> f64 {
    match TIMING.with(std::cell::Cell::get) {
        true => real_seconds(),
        false => 0.0,
    }
}

fn add_phase(field: impl FnOnce(&mut Phases) -> &mut f64, started: f64) {
    if !TIMING.with(std::cell::Cell::get) {
        return;
    }
    let elapsed = real_seconds() - started;
    PHASES.with(|p| {
        let mut phases = p.get();
        *field(&mut phases) += elapsed;
        p.set(phases);
    });
}
