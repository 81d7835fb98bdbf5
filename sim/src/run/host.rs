//! The host of a faulty run: it feeds the kernel node its blocks, restarts it
//! after every crash and I/O fault, has each recovery and the end checked
//! (the checks are in [`crate::check`]), and, once no crash or fault is
//! planned any more, requires every remaining block to complete (liveness).

use super::kernel::{in_world, setup, KernelHandle};
use super::phases::{add_phase, phase_clock};
use super::reference::Reference;
use super::Case;
use crate::check::{self, Failure, FailureKind};
use crate::disk::{self, fs::Image, fs::NothingPending};
use crate::event::{Event, FaultEffect, Restart as RestartSeen};
use crate::fault::{CrashAt, FaultAt, FaultKind};
use crate::node::Snapshot;
use crate::options::Mutation;
use crate::trace::Trace;
use crate::world::{self, Captured, FaultRecord, PointRecord, World};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::kernel::HostInput;
use store::Reconciled;

/// How a host's run begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// Open the store from nothing.
    Fresh,
    /// Just after a crash (the world holds it), with `acked` blocks
    /// acknowledged: restore its images and recover.
    AfterCrash { acked: u64 },
}

/// Where a host's run begins and how far it goes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Course {
    pub(super) start: Start,
    /// Crashes and I/O faults planned: they bound the restarts.
    pub(super) events: usize,
    /// Blocks to run after the start (or the first recovery), without the
    /// final check; `None`: to the end, and the final check.
    pub(super) limit: Option<u64>,
}

/// What the faulty run found.
pub(super) struct FaultyOutcome {
    pub(super) failure: Option<Failure>,
    pub(super) crashes: Vec<PointRecord>,
    pub(super) faults: Vec<FaultRecord>,
    /// I/O faults after which the kernel still acknowledged its block, and a
    /// power cut right then showed the block durable.
    pub(super) faults_absorbed: u64,
    pub(super) recoveries: u64,
    /// Planned crashes the run never reached.
    pub(super) unreached: Vec<CrashAt>,
    /// Planned I/O faults the run never injected.
    pub(super) faults_unreached: Vec<FaultAt>,
    pub(super) final_state: Option<Snapshot>,
    pub(super) trace: Trace,
    /// What the host saw, in order.
    pub(super) events: Vec<Event>,
    /// A recording world's state at every point it hit (else empty).
    pub(super) captured: Vec<Captured>,
}

/// Run the host of `case` in `world`, along `course`, the reference at hand.
pub(super) fn run_host(
    case: &Case,
    dir: &Path,
    reference: Arc<Reference>,
    world: World,
    course: Course,
    trace: Trace,
) -> FaultyOutcome {
    let mut host = Host::new(case, dir, reference, course, trace);
    let body = async move {
        let failure = host.drive(course).await.err();
        host.outcome(failure)
    };
    let (mut outcome, mut world) = in_world(case, dir, world, body);
    outcome.captured = world.take_captured();
    outcome
}

/// Why the host restarts the kernel.
enum Restart {
    /// The run crashed: the world holds the crash and the images it left.
    Crash,
    /// An I/O fault was injected: the process stops and a new one starts on
    /// the disk as it is (every file's live image).
    Fault(FaultRecord),
    /// The kernel acknowledged a block that an I/O fault hit: the power
    /// fails now (nothing pending survives), to check the block is durable.
    PowerCut(FaultRecord),
    /// Liveness phase: a block failed; a new process tries it again.
    Retry,
}

/// In the liveness phase, how many times the host restarts the kernel for one
/// block before the seed is stuck.
const LIVENESS_RESTARTS: usize = 1;

/// The host's side of the faulty run, and everything it has seen.
struct Host {
    reference: Arc<Reference>,
    kernel: KernelHandle,
    /// The host's inputs per block, from height 1.
    workload: Vec<Vec<HostInput>>,
    /// Crashes and I/O faults planned: they bound the restarts.
    events: usize,
    /// The host-repeats-committed-block mutation: resume after `acked`, ignoring
    /// a block the kernel committed before the crash.
    repeats_committed_block: bool,
    crashes: Vec<PointRecord>,
    faults: Vec<FaultRecord>,
    /// I/O faults the databases absorbed: the block still committed, durably.
    absorbed: u64,
    recoveries: u64,
    /// The last block whose commit the host saw acknowledged.
    acked: u64,
    /// The liveness phase has begun: no crash or fault is planned any more.
    liveness: bool,
    /// Liveness restarts for the block the host is at.
    retries: usize,
    /// The kernel's state at the end, when the run got there.
    final_state: Option<Snapshot>,
    trace: Trace,
    /// What the host saw, in order (the events of the report).
    seen: Vec<Event>,
}

impl Host {
    /// The host of `case`'s kernel in `dir`, along `course`; the kernel is
    /// not started yet (see [`Host::begin`]).
    fn new(case: &Case, dir: &Path, reference: Arc<Reference>, course: Course, trace: Trace) -> Host {
        let acked = match course.start {
            Start::AfterCrash { acked } => acked,
            Start::Fresh => 0,
        };
        Host {
            reference,
            kernel: KernelHandle::stopped(setup(case, dir)),
            workload: case.options.workload.clone(),
            events: course.events,
            repeats_committed_block: case.mutation == Some(Mutation::HostRepeatsCommittedBlock),
            crashes: Vec::new(),
            faults: Vec::new(),
            absorbed: 0,
            recoveries: 0,
            acked,
            liveness: false,
            retries: 0,
            final_state: None,
            trace,
            seen: Vec::new(),
        }
    }

    /// What the run found, ending with `failure`. The kernel handle goes with
    /// the host, inside the run: the node's tasks (and the databases they
    /// hold open) must be dropped before the runtime is.
    fn outcome(self, failure: Option<Failure>) -> FaultyOutcome {
        FaultyOutcome {
            failure,
            crashes: self.crashes,
            faults: self.faults,
            faults_absorbed: self.absorbed,
            recoveries: self.recoveries,
            unreached: world::crashes_left(),
            faults_unreached: world::faults_left(),
            final_state: self.final_state,
            trace: self.trace,
            events: self.seen,
            captured: Vec::new(),
        }
    }

    /// `failure`, placed after the last crash and I/O fault the host saw.
    fn located(&self, failure: Failure) -> Failure {
        let point = self.crashes.last().cloned().map(Box::new);
        let fault = self.faults.last().cloned().map(Box::new);
        Failure { point, fault, ..failure }
    }

    fn failure(&self, kind: FailureKind, height: u64, message: String) -> Failure {
        self.located(Failure::new(kind, height, message))
    }

    /// Run the workload along `course`, recovering from every crash and I/O
    /// fault, up to the final check (or `course.limit` blocks, without it).
    async fn drive(&mut self, course: Course) -> Result<(), Failure> {
        let mut height = self.begin(course.start).await?;
        let stop_after = course.limit.map(|blocks| height - 1 + blocks);
        let blocks = self.workload.len();
        // Each block runs once, plus once more per planned event and liveness
        // restart; the bound guards the loop.
        let max_attempts = blocks * (self.events + 1 + LIVENESS_RESTARTS) + self.events + 1;
        for _ in 0..max_attempts {
            if stop_after.is_some_and(|last| height > last) {
                return Ok(());
            }
            if height > blocks as u64 {
                return self.check_final().await;
            }
            height = self.run_block(height).await?;
        }
        Err(self.failure(FailureKind::Stuck, height, format!("no progress after {max_attempts} block attempts")))
    }

    /// Start the kernel; the first block to run: after recovering from the
    /// crash the run starts with (its images are restored first), or after
    /// opening the store (at height 0, as the reference run does, so that
    /// crash points of the first open are named alike in both runs).
    async fn begin(&mut self, start: Start) -> Result<u64, Failure> {
        if let Start::AfterCrash { .. } = start {
            return Ok(self.recover(Restart::Crash).await? + 1);
        }
        self.kernel.start_node();
        world::set_height(0);
        match self.kernel.snapshot(false).await {
            Ok(_) => match world::take_fault() {
                Some(fault) => Ok(self.fault_absorbed(0, fault).await? + 1),
                None => Ok(1),
            },
            Err(error) => Ok(self.restart_after(0, error).await? + 1),
        }
    }

    /// Run block `height` and check it; the block to run next.
    async fn run_block(&mut self, height: u64) -> Result<u64, Failure> {
        self.enter_liveness(height);
        world::set_height(height);
        let started = phase_clock();
        let ran = self.kernel.run_block(height, self.workload[height as usize - 1].clone()).await;
        add_phase(|p| &mut p.faulty, started);
        let report = match ran {
            Ok(report) => report,
            Err(error) => return Ok(self.restart_after(height, error).await? + 1),
        };
        let started = phase_clock();
        let checked = check::block_repeats(&self.reference, &report).map_err(|f| self.located(f));
        add_phase(|p| &mut p.checks, started);
        checked?;
        if let Some(fault) = world::take_fault() {
            return Ok(self.fault_absorbed(height, fault).await? + 1);
        }
        self.acked = height;
        self.seen.push(Event::Acked { at: world::points_hit(), height });
        self.retries = 0;
        madsim::time::sleep(Duration::from_secs(5)).await;
        Ok(height + 1)
    }

    /// Once no crash or fault is planned any more, the faults have stopped:
    /// every remaining block must now complete (say so once, in the trace).
    fn enter_liveness(&mut self, height: u64) {
        if self.liveness || !world::crashes_left().is_empty() || !world::faults_left().is_empty() {
            return;
        }
        self.liveness = true;
        self.seen.push(Event::Liveness { at: world::points_hit(), from: height });
        let blocks = self.workload.len();
        self.trace.line(format!("liveness: nothing more planned; blocks {height}..={blocks} must complete"));
    }

    /// The kernel failed at `height` with `error`: recover from the crash or
    /// the I/O fault behind it; in the liveness phase, restart it (at most
    /// [`LIVENESS_RESTARTS`] times per block) and then the seed is stuck; any
    /// other error is the seed's failure. Returns the recovered height.
    async fn restart_after(&mut self, height: u64, error: store::Error) -> Result<u64, Failure> {
        if world::is_crashed() {
            return self.recover(Restart::Crash).await;
        }
        if let Some(fault) = world::take_fault() {
            match fault.named.fault {
                FaultKind::Stop => self
                    .trace
                    .line(format!("graceful {fault}: the host closed the node in the middle of the block ({error})")),
                _ => self.trace.line(format!("I/O fault {fault}: the kernel stopped: {error}")),
            }
            return self.recover(Restart::Fault(fault)).await;
        }
        let kind = FailureKind::of_error(&error);
        if !self.liveness {
            return Err(self.failure(kind, height, error.to_string()));
        }
        if self.retries >= LIVENESS_RESTARTS {
            let retries = self.retries;
            let message = format!("block {height} cannot complete after {retries} restart(s): {kind}: {error}");
            return Err(self.failure(FailureKind::Stuck, height, message));
        }
        self.retries += 1;
        self.trace.line(format!("liveness: block {height} failed ({error}); restarting the kernel"));
        self.seen.push(Event::Retry { at: world::points_hit(), height });
        match self.recover(Restart::Retry).await {
            // The new process cannot even open: the host can go no further.
            Err(failure) if failure.kind.is_kernel_error() => {
                let message =
                    format!("block {height} cannot complete: after a restart, {}: {}", failure.kind, failure.message);
                Err(Failure { kind: FailureKind::Stuck, message, ..failure })
            }
            recovered => recovered,
        }
    }

    /// The kernel acknowledged block `height` although I/O fault `fault` hit
    /// it: a database absorbed the fault (SQLite ignores errors it can afford
    /// to), or the store ignored an error. What it acknowledged must be
    /// durable all the same: the power fails now, the kernel recovers, and
    /// the recovery is checked with the block acknowledged (a lost commit
    /// fails there). Returns the recovered height.
    async fn fault_absorbed(&mut self, height: u64, fault: FaultRecord) -> Result<u64, Failure> {
        self.trace.line(format!(
            "I/O fault {fault} did not stop block {height}: the kernel acknowledged it; the power fails now"
        ));
        self.acked = height;
        self.seen.push(Event::Acked { at: world::points_hit(), height });
        let recovered = self.recover(Restart::PowerCut(fault)).await?;
        self.absorbed += 1;
        self.trace.line(format!("absorbed: block {height} survived the power cut after I/O fault"));
        Ok(recovered)
    }

    /// Restart the kernel for `first` (again, if recovery itself crashes or
    /// faults), check the recovered state, and return the recovered height.
    async fn recover(&mut self, first: Restart) -> Result<u64, Failure> {
        let mut restart = first;
        for _ in 0..=self.events + LIVENESS_RESTARTS {
            let images = self.restart_from(restart)?;
            world::set_height(self.acked + 1);
            let started = phase_clock();
            match &images {
                Some(images) => self.kernel.crash_and_restart(images).await,
                None => self.kernel.stop_and_restart().await,
            }
            let recovered = self.kernel.snapshot(true).await;
            add_phase(|p| &mut p.recovery, started);
            restart = match recovered {
                Ok(snapshot) => return self.recovered(&snapshot),
                Err(_) if world::is_crashed() => Restart::Crash,
                Err(error) => match world::take_fault() {
                    Some(fault) => {
                        self.trace.line(format!("I/O fault {fault} during recovery: {error}"));
                        Restart::Fault(fault)
                    }
                    None => return Err(self.failure(FailureKind::of_error(&error), self.acked + 1, error.to_string())),
                },
            };
        }
        Err(self.failure(FailureKind::KernelError, self.acked, "more restarts than planned events".into()))
    }

    /// Record what `restart` is for; the crash images to restart from (none:
    /// the disks as they are).
    fn restart_from(&mut self, restart: Restart) -> Result<Option<Image>, Failure> {
        match restart {
            Restart::Crash => {
                let Some((point, images)) = world::take_crash() else {
                    return Err(self.failure(FailureKind::KernelError, self.acked, "crash without images".into()));
                };
                // An I/O fault the crash cut short (the kernel had not stopped yet).
                if let Some(fault) = world::take_fault() {
                    self.trace.line(format!("I/O fault {fault}, then a crash before the kernel stopped"));
                    self.fault_seen(fault, FaultEffect::CutShort);
                }
                self.trace.line(format!("crash at {point}"));
                self.trace.line(format!("  disk after the crash: {}", point.disk));
                self.seen.push(Event::Crash(point.clone()));
                self.crashes.push(point);
                Ok(Some(images))
            }
            Restart::Fault(fault) => {
                self.fault_seen(fault, FaultEffect::Stopped);
                Ok(None)
            }
            Restart::PowerCut(fault) => {
                let height = self.acked;
                self.fault_seen(fault, FaultEffect::Absorbed);
                self.seen.push(Event::PowerCut { at: world::points_hit(), height });
                // The process dies with the power: its I/O fails from now on.
                world::stop_process();
                let now = disk::state().expect("a disk is installed");
                Ok(Some(now.surviving(&mut NothingPending)))
            }
            Restart::Retry => Ok(None),
        }
    }

    /// Record an I/O fault the host saw, and what came of it.
    fn fault_seen(&mut self, fault: FaultRecord, effect: FaultEffect) {
        self.seen.push(Event::Fault { record: fault.clone(), effect });
        self.faults.push(fault);
    }

    /// The kernel recovered to `found`: check it; the height the host goes on from.
    fn recovered(&mut self, found: &Snapshot) -> Result<u64, Failure> {
        let started = phase_clock();
        let checked = check::recovery(&self.reference, self.acked, found).map_err(|f| self.located(f));
        add_phase(|p| &mut p.checks, started);
        let height = checked?;
        self.recoveries += 1;
        let upgraded = found.vats.values().filter(|vat| vat.incarnation > 0).count();
        let (at, acked, sqlite_height) = (world::points_hit(), self.acked, found.sqlite_height);
        let restart = restart_of(found);
        self.seen.push(Event::Recovered { at, acked, height, sqlite_height, upgraded, restart });
        // The kernel committed the block in flight (a crash after its commit point):
        // the host now knows it is committed and must not run it again.
        if self.repeats_committed_block {
            return Ok(self.acked);
        }
        self.acked = height;
        let replayed = found.replayed;
        let sqlite = match found.sqlite_height {
            Some(sqlite) if Some(sqlite) != found.height => format!(" (SQLite holds block {sqlite})"),
            _ => String::new(),
        };
        if let Some(Reconciled::Hangover { height, sends }) = &found.reconciled {
            self.trace.line(format!(
                "restart: the kernel had committed block {height}, the host had not: \
                 the host applied its {sends} recorded chain send(s) (the hangover)"
            ));
        }
        if !found.orphans_removed.is_empty() {
            let files = found.orphans_removed.join(", ");
            self.trace.line(format!("restart: the kernel removed snapshot files no vat uses: {files}"));
        }
        self.trace.line(format!(
            "recovered at height {height}{sqlite}: state equals the reference; replayed {replayed} deliveries"
        ));
        Ok(height)
    }

    /// The end of the workload: the final state must be the reference's.
    async fn check_final(&mut self) -> Result<(), Failure> {
        let height = self.reference.reports.len() as u64;
        let started = phase_clock();
        let found = self.kernel.snapshot(true).await;
        let checked = found
            .map_err(|e| Failure::new(FailureKind::of_error(&e), height, e.to_string()))
            .and_then(|found| check::final_state(&self.reference, &found).map(|()| found));
        add_phase(|p| &mut p.checks, started);
        let found = checked.map_err(|f| self.located(f))?;
        self.trace.line(format!(
            "final state at height {height} equals the reference (activity hash {})",
            found.activity_hash
        ));
        self.final_state = Some(found);
        Ok(())
    }
}

/// What the node's open did, as the events record it.
fn restart_of(found: &Snapshot) -> RestartSeen {
    let hangover = match &found.reconciled {
        Some(Reconciled::Hangover { sends, .. }) => Some(*sends),
        _ => None,
    };
    RestartSeen { hangover, orphans_removed: found.orphans_removed.len(), from_snapshot: found.snapshot_heaps.len() }
}
