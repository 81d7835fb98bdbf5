//! One seed: a no-fault reference run, then a faulty run that crashes at the
//! planned points, restarts the kernel from the crash images, and checks every
//! recovery and the end state against the reference and the oracle.

use crate::check::{diff_heaps, diff_kv, diff_spans, Failure, FailureKind};
use crate::fault::{CrashAt, PointKind};
use crate::node::{self, Inbox, KernelSetup, Request, Snapshot};
use crate::options::{Flags, Mutation, SeedOptions};
use crate::oracle::Oracle;
use crate::trace::Trace;
use crate::world::{self, PointRecord, Site, World};
use crate::{lmdb_io, vfs};
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

/// Everything one run is a function of.
#[derive(Clone, Debug)]
pub struct Case {
    /// Seeds madsim, SQLite's randomness and the torn-write draws.
    pub seed: u64,
    pub design: Design,
    pub options: SeedOptions,
    pub plan: CrashPlan,
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
    pub failure: Option<Failure>,
    pub crashes: Vec<PointRecord>,
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
}

/// Serializes runs within a process: SQLite's PRNG is process-global, so two
/// runs on two threads would interleave its stream and lose determinism.
/// Parallelism comes from worker processes instead.
static RUN_LOCK: Mutex<()> = Mutex::new(());

/// Run one seed in `root` (a per-process scratch directory).
pub fn run_seed(config: &SeedConfig, root: &Path) -> SeedReport {
    run_case(&Case::from_seed(config), root)
}

/// Run one case in `root` (a per-process scratch directory); its files are
/// removed afterwards, whatever the outcome.
pub fn run_case(case: &Case, root: &Path) -> SeedReport {
    let _one_run_at_a_time = RUN_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let base = root.join(format!("{}-{}", case.seed, case.design));
    let _cleanup = RemoveOnDrop(vec![base.clone(), root.to_path_buf()]);
    run_case_in(case, &base)
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

fn run_case_in(case: &Case, base: &Path) -> SeedReport {
    let options = &case.options;
    let mut trace = Trace::new(case.verbose);
    trace.line(format!("SEED={} design={} {options}", case.seed, case.design));
    let mut report = SeedReport {
        seed: case.seed,
        design: case.design,
        options: options.clone(),
        plan: Vec::new(),
        failure: None,
        crashes: Vec::new(),
        recoveries_checked: 0,
        cranks: 0,
        evictions: 0,
        final_state: None,
        trace: Trace::new(false),
    };
    let reference = match reference_run(case, &base.join("reference"), &mut trace) {
        Ok(reference) => reference,
        Err(failure) => return finish(report, trace, Some(failure)),
    };
    report.cranks = reference.reports.iter().map(|r| r.cranks).sum();
    report.evictions = reference.final_snapshot.evictions;
    report.plan = match &case.plan {
        CrashPlan::Seeded => seeded_plan(case, &reference.sites),
        CrashPlan::Explicit(plan) => plan.clone(),
    };
    let named: Vec<String> = report.plan.iter().map(|c| c.to_string()).collect();
    trace.line(format!("crash plan: {} (of {} crash points)", named.join(", "), reference.sites.len()));
    let reference = Arc::new(reference);
    let faulty = faulty_run(case, &base.join("faulty"), report.plan.clone(), reference, trace);
    report.crashes = faulty.crashes;
    report.recoveries_checked = faulty.recoveries;
    report.final_state = faulty.final_state;
    let failure = faulty.failure.or_else(|| unreached(&faulty.unreached));
    finish(report, faulty.trace, failure)
}

/// A plan that names a point the run never reached is not a passing run.
fn unreached(left: &[CrashAt]) -> Option<Failure> {
    let first = left.first()?;
    let message = format!("the crash plan names {first}, which the run never reached");
    Some(Failure { kind: FailureKind::InvalidPlan, message, point: None, height: first.block })
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

/// A fresh madsim runtime for one run of the seed.
fn runtime(seed: u64) -> Runtime {
    let mut runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(Duration::from_secs(7 * 24 * 3600));
    runtime
}

/// The kernel node and the host's end of its request channel.
struct KernelHandle {
    id: NodeId,
    inbox: Inbox,
    requests: mpsc::UnboundedSender<Request>,
}

impl KernelHandle {
    fn start(setup: KernelSetup) -> KernelHandle {
        let (requests, receiver) = mpsc::unbounded();
        let inbox: Inbox = Arc::new(Mutex::new(Some(receiver)));
        let node_inbox = inbox.clone();
        let node = Handle::current()
            .create_node()
            .name("kernel")
            .init(move || node::serve(setup.clone(), node_inbox.clone()))
            .build();
        KernelHandle { id: node.id(), inbox, requests }
    }

    /// Kill the node, let the simulated time pass so that its tasks (and the
    /// databases they own) are dropped, then start it again on a new channel.
    async fn crash_and_restart(&mut self, images: &world::CrashImages) {
        Handle::current().kill(self.id);
        madsim::time::sleep(Duration::from_secs(1)).await;
        vfs::restore(&images.sqlite);
        lmdb_io::restore(&images.lmdb);
        let (requests, receiver) = mpsc::unbounded();
        *self.inbox.lock().expect("inbox lock") = Some(receiver);
        self.requests = requests;
        Handle::current().restart(self.id);
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

/// Install a fresh world for a run in `dir`, run `body` in a madsim runtime.
fn in_world<T>(case: &Case, dir: &Path, plan: Vec<CrashAt>, body: impl std::future::Future<Output = T>) -> (T, World) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
    vfs::register();
    // SQLite's PRNG (journal nonces, WAL salts) is process-global: seed it per run.
    vfs::seed_sqlite_prng((case.seed ^ (case.seed >> 32)) as u32);
    world::install(World::new(case.seed, case.options.crash, plan));
    lmdb_io::track_dir(&dir.join("kv"));
    let result = runtime(case.seed).block_on(body);
    let world = world::uninstall().expect("world installed");
    let _ = std::fs::remove_dir_all(dir);
    (result, world)
}

fn reference_run(case: &Case, dir: &Path, trace: &mut Trace) -> Result<Reference, Failure> {
    let kernel_setup = setup(case, dir);
    let workload = case.options.workload.clone();
    let body = async move {
        let kernel = KernelHandle::start(kernel_setup);
        let mut oracle = Oracle::default();
        let fail =
            |height: u64, message: String| Failure { kind: FailureKind::ReferenceFailed, message, point: None, height };
        let mut reference = Reference {
            reports: Vec::new(),
            snapshots: vec![kernel.snapshot(false).await.map_err(|e| fail(0, e.to_string()))?],
            heaps: vec![BTreeMap::new()],
            final_snapshot: Snapshot::default(),
            sites: Vec::new(),
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
    let (result, world) = in_world(case, dir, Vec::new(), body);
    let mut reference = result?;
    reference.sites = world.sites().to_vec();
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
    recoveries: u64,
    /// Planned crashes the run never reached.
    unreached: Vec<CrashAt>,
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
    recoveries: u64,
    /// The last block whose commit the host saw acknowledged.
    acked: u64,
    /// The kernel's state at the end, when the run got there.
    final_state: Option<Snapshot>,
    trace: Trace,
}

fn faulty_run(case: &Case, dir: &Path, plan: Vec<CrashAt>, reference: Arc<Reference>, trace: Trace) -> FaultyOutcome {
    let kernel_setup = setup(case, dir);
    let workload = case.options.workload.clone();
    let crashes_planned = plan.len();
    let repeats_committed_block = case.mutation == Some(Mutation::HostRepeatsCommittedBlock);
    let body = async move {
        let mut host = Host {
            reference,
            repeats_committed_block,
            crashes: Vec::new(),
            recoveries: 0,
            acked: 0,
            final_state: None,
            trace,
        };
        let mut kernel = KernelHandle::start(kernel_setup);
        let failure = host.drive(&mut kernel, &workload, crashes_planned).await.err();
        let unreached = world::crashes_left();
        (host, failure, unreached)
    };
    let ((host, failure, unreached), _world) = in_world(case, dir, plan, body);
    FaultyOutcome {
        failure,
        crashes: host.crashes,
        recoveries: host.recoveries,
        unreached,
        final_state: host.final_state,
        trace: host.trace,
    }
}

impl Host {
    fn failure(&self, kind: FailureKind, height: u64, message: String) -> Failure {
        Failure { kind, message, point: self.crashes.last().cloned().map(Box::new), height }
    }

    async fn drive(
        &mut self,
        kernel: &mut KernelHandle,
        workload: &[Vec<HostInput>],
        crashes: usize,
    ) -> Result<(), Failure> {
        // Open the store at height 0, as the reference run does, so that crash
        // points of the first open are named alike in both runs.
        world::set_height(0);
        let mut height = match kernel.snapshot(false).await {
            Ok(_) => 1,
            Err(_) if world::is_crashed() => self.recover(kernel, crashes).await? + 1,
            Err(error) => return Err(self.failure(FailureKind::of_error(&error), 0, error.to_string())),
        };
        // Each block runs once, plus once more per crash; the bound guards the loop.
        let max_attempts = workload.len() * (crashes + 1) + crashes + 1;
        for _ in 0..max_attempts {
            if height > workload.len() as u64 {
                return self.check_final(kernel).await;
            }
            world::set_height(height);
            match kernel.run_block(height, workload[height as usize - 1].clone()).await {
                Ok(report) => {
                    self.check_block(&report)?;
                    self.acked = height;
                    height += 1;
                    madsim::time::sleep(Duration::from_secs(5)).await;
                }
                Err(_) if world::is_crashed() => height = self.recover(kernel, crashes).await? + 1,
                Err(error) => return Err(self.failure(FailureKind::of_error(&error), height, error.to_string())),
            }
        }
        Err(self.failure(FailureKind::Stuck, height, format!("no progress after {max_attempts} block attempts")))
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

    /// Restart the kernel from the crash images (again, if recovery itself
    /// crashes), check the recovered state, and return the recovered height.
    async fn recover(&mut self, kernel: &mut KernelHandle, crashes: usize) -> Result<u64, Failure> {
        for _ in 0..=crashes {
            let Some((point, images)) = world::take_crash() else {
                return Err(self.failure(FailureKind::KernelError, self.acked, "crash without images".into()));
            };
            self.trace.line(format!("crash at {point}"));
            world::set_height(self.acked + 1);
            self.crashes.push(point);
            kernel.crash_and_restart(&images).await;
            match kernel.snapshot(true).await {
                Ok(snapshot) => return self.check_recovery(&snapshot),
                Err(_) if world::is_crashed() => continue,
                Err(error) => {
                    return Err(self.failure(FailureKind::of_error(&error), self.acked + 1, error.to_string()))
                }
            }
        }
        Err(self.failure(FailureKind::KernelError, self.acked, "more crashes than planned".into()))
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
