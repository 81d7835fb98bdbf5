//! One seed: a no-fault reference run, then a faulty run that crashes at the
//! planned points, restarts the kernel from the crash images, and checks every
//! recovery and the end state against the reference and the oracle.

use crate::check::{diff_heaps, diff_kv, diff_spans, Failure, FailureKind};
use crate::fault::PointKind;
use crate::node::{self, Inbox, KernelSetup, Request, Snapshot};
use crate::options::{Flags, SeedOptions};
use crate::oracle::Oracle;
use crate::trace::Trace;
use crate::world::{self, PointRecord, World};
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

/// What one seed did.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub design: Design,
    pub options: SeedOptions,
    pub failure: Option<Failure>,
    pub crashes: Vec<PointRecord>,
    pub recoveries_checked: u64,
    pub cranks: u64,
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
    points: BTreeMap<PointKind, Vec<u64>>,
}

/// Serializes runs within a process: SQLite's PRNG is process-global, so two
/// runs on two threads would interleave its stream and lose determinism.
/// Parallelism comes from worker processes instead.
static RUN_LOCK: Mutex<()> = Mutex::new(());

/// Run one seed in `root` (a per-process scratch directory).
pub fn run_seed(config: &SeedConfig, root: &Path) -> SeedReport {
    let _one_run_at_a_time = RUN_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let options = SeedOptions::derive(config.seed, &config.flags);
    let mut trace = Trace::new(config.verbose);
    trace.line(format!("SEED={} design={} {options}", config.seed, config.design));
    let mut report = SeedReport {
        seed: config.seed,
        design: config.design,
        options: options.clone(),
        failure: None,
        crashes: Vec::new(),
        recoveries_checked: 0,
        cranks: 0,
        trace: Trace::new(false),
    };
    let base = root.join(format!("{}-{}", config.seed, config.design));
    let reference = match reference_run(&options, config.design, &base.join("reference"), &mut trace) {
        Ok(reference) => reference,
        Err(failure) => return finish(report, trace, Some(failure)),
    };
    report.cranks = reference.reports.iter().map(|r| r.cranks).sum();
    let plan = crash_plan(&options, &reference.points);
    trace.line(format!("crash plan: ordinals {plan:?} of {} points", total_points(&reference.points)));
    let reference = Arc::new(reference);
    let faulty = faulty_run(&options, config.design, &base.join("faulty"), plan, reference, trace);
    report.crashes = faulty.crashes;
    report.recoveries_checked = faulty.recoveries;
    let _ = std::fs::remove_dir_all(&base);
    finish(report, faulty.trace, faulty.failure)
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

fn total_points(points: &BTreeMap<PointKind, Vec<u64>>) -> u64 {
    points.values().map(|v| v.len() as u64).sum()
}

/// Where to crash: the first crash at a point of a kind drawn by the seed's
/// weights; each further crash a seeded distance after the previous one.
fn crash_plan(options: &SeedOptions, points: &BTreeMap<PointKind, Vec<u64>>) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x00c0_a511);
    let weighted: Vec<(PointKind, u32)> = points
        .iter()
        .filter(|(_, ordinals)| !ordinals.is_empty())
        .map(|(kind, _)| (*kind, options.point_weights[kind]))
        .collect();
    let total_weight: u32 = weighted.iter().map(|(_, w)| w).sum();
    if total_weight == 0 {
        return Vec::new();
    }
    let mut ticket = (rng.next_u32() % total_weight) as i64;
    let kind = weighted.iter().find(|(_, w)| {
        ticket -= i64::from(*w);
        ticket < 0
    });
    let ordinals = &points[&kind.expect("a weighted kind").0];
    let first = ordinals[(rng.next_u64() % ordinals.len() as u64) as usize];
    let spread = (total_points(points) / 2).max(1);
    let mut plan = vec![first];
    for _ in 1..options.crashes {
        let previous = *plan.last().expect("plan has a first crash");
        plan.push(previous + 1 + rng.next_u64() % spread);
    }
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

fn setup(options: &SeedOptions, design: Design, dir: &Path) -> KernelSetup {
    KernelSetup { dir: dir.to_path_buf(), design, kernel: options.kernel }
}

/// Install a fresh world for a run in `dir`, run `body` in a madsim runtime.
fn in_world<T>(
    options: &SeedOptions,
    dir: &Path,
    plan: Vec<u64>,
    body: impl std::future::Future<Output = T>,
) -> (T, World) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
    vfs::register();
    // SQLite's PRNG (journal nonces, WAL salts) is process-global: seed it per run.
    vfs::seed_sqlite_prng((options.seed ^ (options.seed >> 32)) as u32);
    world::install(World::new(options.seed, options.crash, plan));
    lmdb_io::track_dir(&dir.join("kv"));
    let result = runtime(options.seed).block_on(body);
    let world = world::uninstall().expect("world installed");
    let _ = std::fs::remove_dir_all(dir);
    (result, world)
}

fn reference_run(options: &SeedOptions, design: Design, dir: &Path, trace: &mut Trace) -> Result<Reference, Failure> {
    let kernel_setup = setup(options, design, dir);
    let workload = options.workload.clone();
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
            points: BTreeMap::new(),
        };
        for (index, inputs) in workload.into_iter().enumerate() {
            let height = index as u64 + 1;
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
    let (result, world) = in_world(options, dir, Vec::new(), body);
    let mut reference = result?;
    reference.points = world.points_by_kind().clone();
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
    trace: Trace,
}

/// The host's side of the faulty run.
struct Host {
    reference: Arc<Reference>,
    crashes: Vec<PointRecord>,
    recoveries: u64,
    /// The last block whose commit the host saw acknowledged.
    acked: u64,
    trace: Trace,
}

fn faulty_run(
    options: &SeedOptions,
    design: Design,
    dir: &Path,
    plan: Vec<u64>,
    reference: Arc<Reference>,
    trace: Trace,
) -> FaultyOutcome {
    let kernel_setup = setup(options, design, dir);
    let workload = options.workload.clone();
    let crashes_planned = plan.len();
    let body = async move {
        let mut host = Host { reference, crashes: Vec::new(), recoveries: 0, acked: 0, trace };
        let mut kernel = KernelHandle::start(kernel_setup);
        let failure = host.drive(&mut kernel, &workload, crashes_planned).await.err();
        (host, failure)
    };
    let ((host, failure), _world) = in_world(options, dir, plan, body);
    FaultyOutcome { failure, crashes: host.crashes, recoveries: host.recoveries, trace: host.trace }
}

impl Host {
    fn failure(&self, kind: FailureKind, height: u64, message: String) -> Failure {
        Failure { kind, message, point: self.crashes.last().cloned(), height }
    }

    async fn drive(
        &mut self,
        kernel: &mut KernelHandle,
        workload: &[Vec<HostInput>],
        crashes: usize,
    ) -> Result<(), Failure> {
        let mut height = 1;
        // Each block runs once, plus once more per crash; the bound guards the loop.
        let max_attempts = workload.len() * (crashes + 1) + crashes + 1;
        for _ in 0..max_attempts {
            if height > workload.len() as u64 {
                return self.check_final(kernel).await;
            }
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
        Err(self.failure(FailureKind::KernelError, height, format!("no progress after {max_attempts} block attempts")))
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
