//! The per-thread simulated world of one run: the crash-point counter, the crash
//! plan, the seeded randomness and time that SQLite sees, and the frozen crash image.
//!
//! The disk modules ([`crate::vfs`], [`crate::lmdb_io`]) call [`durability_point`]
//! at each of their durability points, with none of their own state borrowed:
//! when the point is the planned crash, the world captures both disks' crash images.
//!
//! A *capturing* world ([`World::capturing`]) crashes nowhere but keeps, for
//! every point, the state both disks are in there ([`DiskState`], copy-on-write
//! so each costs a few reference counts): any point's crash image can then be
//! made after the run, without running the workload up to the point again.
//! A *resumed* world ([`World::resumed`]) starts a run just after such a crash.

use crate::fault::{CrashAt, CrashSpec, Crashed, FaultAt, FaultKind, OpClass, PointKind};
use crate::lmdb_io::{self, LmdbImage, LmdbState};
use crate::vfs::{self, VfsImage, VfsState};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Where a run stands, for naming a crash point in a failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub height: u64,
    pub crank: u64,
}

/// A crash point that was hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointRecord {
    pub kind: PointKind,
    pub ordinal: u64,
    /// The point as the plan named it.
    pub named: CrashAt,
    pub database: &'static str,
    pub file: String,
    pub at: Position,
    /// A torn power loss that drew the fate of at least one unsynced sector.
    pub torn: bool,
}

impl std::fmt::Display for PointRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (ordinal {}, {} {}, last crank {})",
            self.named, self.ordinal, self.database, self.file, self.at.crank
        )
    }
}

/// An I/O fault that was injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    pub named: FaultAt,
    pub database: &'static str,
    /// The file name only.
    pub file: String,
    pub at: Position,
}

impl std::fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {}, last crank {})", self.named, self.database, self.file, self.at.crank)
    }
}

/// Where a crash point was hit: its kind and the block the host was running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Site {
    pub kind: PointKind,
    pub height: u64,
}

/// Both disks as they survive a crash.
#[derive(Clone, Debug, Default)]
pub struct CrashImages {
    pub sqlite: VfsImage,
    pub lmdb: LmdbImage,
}

/// Both disks at one crash point of a capturing run, for a crash image made later.
#[derive(Clone, Debug, Default)]
pub struct DiskState {
    pub sqlite: VfsState,
    pub lmdb: LmdbState,
}

impl DiskState {
    /// Both disks now.
    pub fn now() -> DiskState {
        DiskState { sqlite: vfs::state(), lmdb: lmdb_io::state() }
    }

    /// The crash images a crash here leaves, per `spec`: exactly what a run
    /// that crashed here would have captured, given the same `rng`.
    pub fn surviving(&self, spec: CrashSpec, rng: &mut ChaCha8Rng) -> CrashImages {
        CrashImages { sqlite: self.sqlite.surviving(spec, rng), lmdb: self.lmdb.surviving(spec, rng) }
    }
}

/// What a capturing run recorded at one crash point.
#[derive(Clone, Debug)]
pub struct Captured {
    pub database: &'static str,
    /// The file name only (see [`PointRecord::file`]).
    pub file: String,
    pub at: Position,
    /// Shared with the neighbouring points when no disk changed in between.
    pub disks: Arc<DiskState>,
}

thread_local! {
    /// Bumped at every change of either disk: a capture can reuse the previous
    /// point's state when nothing changed since.
    static DISK_GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// A disk of this thread changed (a write, a sync, a file created or deleted).
pub fn disk_changed() {
    DISK_GENERATION.with(|g| g.set(g.get() + 1));
}

fn disk_generation() -> u64 {
    DISK_GENERATION.with(Cell::get)
}

/// One run's world. Installed per thread with [`install`].
pub struct World {
    spec: CrashSpec,
    sqlite_rng: ChaCha8Rng,
    torn_rng: ChaCha8Rng,
    next_ordinal: u64,
    /// Where to crash, in order; consumed as they are hit.
    crash_plan: VecDeque<CrashAt>,
    /// Points hit per (kind, block) since the start or the last crash.
    counts: BTreeMap<(PointKind, u64), u64>,
    crashed: Option<PointRecord>,
    images: Option<CrashImages>,
    /// Every point hit, indexed by ordinal.
    sites: Vec<Site>,
    position: Position,
    time_ms: i64,
    /// I/O faults still to inject; each fires when its operation count is reached.
    fault_plan: Vec<FaultAt>,
    /// Operations per (class, block) since the start or the last crash.
    io_counts: BTreeMap<(OpClass, u64), u64>,
    /// The I/O fault injected since the host last looked ([`take_fault`]).
    fault_fired: Option<FaultRecord>,
    /// The host is stopping the process after an I/O fault: its I/O fails.
    stopped: bool,
    /// The fsync-retry mutation: a failed sync is retried (and then succeeds).
    retry_failed_sync: bool,
    /// Capturing runs: what each point would leave, by ordinal.
    capturing: bool,
    captured: Vec<Captured>,
    /// The generation and state of the last capture.
    last_capture: Option<(u64, Arc<DiskState>)>,
}

/// Simulated wall-clock time SQLite sees at the start of a run (2022-01-01).
const EPOCH_MS: i64 = 1_640_995_200_000;

impl World {
    pub fn new(seed: u64, spec: CrashSpec, crash_plan: Vec<CrashAt>) -> World {
        World {
            spec,
            sqlite_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5_1173),
            torn_rng: torn_rng(seed),
            next_ordinal: 0,
            crash_plan: crash_plan.into(),
            counts: BTreeMap::new(),
            crashed: None,
            images: None,
            sites: Vec::new(),
            position: Position::default(),
            time_ms: EPOCH_MS,
            fault_plan: Vec::new(),
            io_counts: BTreeMap::new(),
            fault_fired: None,
            stopped: false,
            retry_failed_sync: false,
            capturing: false,
            captured: Vec::new(),
            last_capture: None,
        }
    }

    /// A run that crashes nowhere and records every point's [`Captured`] state.
    pub fn capturing(seed: u64, spec: CrashSpec) -> World {
        World { capturing: true, ..World::new(seed, spec, Vec::new()) }
    }

    /// A run that starts just after the crash `crash` (which left `images`,
    /// drawn from `torn_rng`), with `crash_plan` still ahead: the state a run
    /// that had crashed there is in, without having run up to the point. Its
    /// next point takes the ordinal after the crash's.
    pub fn resumed(
        seed: u64,
        spec: CrashSpec,
        crash_plan: Vec<CrashAt>,
        crash: PointRecord,
        images: CrashImages,
        torn_rng: ChaCha8Rng,
    ) -> World {
        let next_ordinal = crash.ordinal + 1;
        World {
            torn_rng,
            next_ordinal,
            crashed: Some(crash),
            images: Some(images),
            ..World::new(seed, spec, crash_plan)
        }
    }

    /// Inject the I/O faults of `plan` (and, with `retry_failed_sync`, the
    /// fsync-retry mutation) in this run.
    pub fn with_faults(self, plan: Vec<FaultAt>, retry_failed_sync: bool) -> World {
        World { fault_plan: plan, retry_failed_sync, ..self }
    }

    /// Operations per (class, block) this run made since its start or last crash.
    pub fn io_counts(&self) -> &BTreeMap<(OpClass, u64), u64> {
        &self.io_counts
    }

    /// The states a capturing run recorded, by ordinal.
    pub fn take_captured(&mut self) -> Vec<Captured> {
        self.last_capture = None;
        std::mem::take(&mut self.captured)
    }
}

/// The rng of torn-write draws of a run of `seed`, as the run starts.
pub fn torn_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x7_0e2)
}

impl World {
    /// Every point hit in this run, indexed by ordinal.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// Ordinals hit in this run, by kind.
    pub fn points_by_kind(&self) -> BTreeMap<PointKind, Vec<u64>> {
        let mut by_kind: BTreeMap<PointKind, Vec<u64>> = BTreeMap::new();
        for (ordinal, site) in self.sites.iter().enumerate() {
            by_kind.entry(site.kind).or_default().push(ordinal as u64);
        }
        by_kind
    }
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// Install `world` on this thread, resetting both simulated disks.
pub fn install(world: World) {
    vfs::reset();
    lmdb_io::reset();
    WORLD.with(|w| *w.borrow_mut() = Some(world));
}

/// Remove this thread's world (end of a run), resetting both disks.
pub fn uninstall() -> Option<World> {
    vfs::reset();
    lmdb_io::reset();
    WORLD.with(|w| w.borrow_mut().take())
}

fn with<R>(f: impl FnOnce(&mut World) -> R) -> Option<R> {
    WORLD.with(|w| w.borrow_mut().as_mut().map(f))
}

/// A durability point of kind `kind` in `database` (`"sqlite"` or `"lmdb"` or
/// `"swing-store"`) on `file`. `Ok` lets the caller proceed; `Err(Crashed)` means
/// the run has crashed here or earlier: fail the operation, change nothing.
/// Outside a world (a plain test) every point passes.
pub fn durability_point(kind: PointKind, database: &'static str, file: &str) -> Result<(), Crashed> {
    let crash_now = with(|w| {
        if w.crashed.is_some() || w.stopped {
            return Err(Crashed);
        }
        let ordinal = w.next_ordinal;
        w.next_ordinal += 1;
        let height = w.position.height;
        w.sites.push(Site { kind, height });
        let count = w.counts.entry((kind, height)).or_default();
        *count += 1;
        let here = CrashAt { at: kind, block: height, nth: *count };
        if w.capturing {
            return Ok(Some(None));
        }
        if w.crash_plan.front() != Some(&here) {
            return Ok(None);
        }
        w.crash_plan.pop_front();
        w.counts.clear();
        w.io_counts.clear();
        let record =
            PointRecord { kind, ordinal, named: here, database, file: file_name(file), at: w.position, torn: false };
        w.crashed = Some(record);
        Ok(Some(Some(w.spec)))
    });
    match crash_now {
        None | Some(Ok(None)) => Ok(()),
        Some(Err(crashed)) => Err(crashed),
        Some(Ok(Some(None))) => {
            capture_point(database, file);
            Ok(())
        }
        Some(Ok(Some(Some(spec)))) => {
            freeze(spec);
            Err(Crashed)
        }
    }
}

/// Record the disks' state at this point of a capturing run. Called with no
/// borrow of the world held (the disks borrow their own state).
fn capture_point(database: &'static str, file: &str) {
    let generation = disk_generation();
    let reuse = with(|w| match &w.last_capture {
        Some((g, disks)) if *g == generation => Some(disks.clone()),
        _ => None,
    })
    .flatten();
    let disks = reuse.unwrap_or_else(|| Arc::new(DiskState::now()));
    with(|w| {
        w.last_capture = Some((generation, disks.clone()));
        w.captured.push(Captured { database, file: file_name(file), at: w.position, disks });
    });
}

/// The file name only: the directory holds the process ID, which must not reach a trace.
fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// Capture both disks' crash images. Called with no borrow of the world held,
/// since the disks borrow their own state; the torn rng is moved out meanwhile.
fn freeze(spec: CrashSpec) {
    let mut rng = with(|w| w.torn_rng.clone()).expect("world installed");
    let drawn_before = rng.get_word_pos();
    let images = DiskState::now().surviving(spec, &mut rng);
    let torn = rng.get_word_pos() != drawn_before;
    with(|w| {
        w.torn_rng = rng;
        w.images = Some(images);
        if let Some(record) = &mut w.crashed {
            record.torn = torn;
        }
    });
}

/// Whether the run has crashed, or its process is being stopped after an I/O
/// fault (its writes no longer matter).
pub fn is_crashed() -> bool {
    with(|w| w.crashed.is_some() || w.stopped).unwrap_or(false)
}

/// An I/O operation of `class` (a write also passes `extends`: whether it ends
/// past the file's end) on `file` of `database`. Returns the fault to inject
/// now, if the plan names this operation; counts it either way. Outside a
/// world, and once crashed, nothing is injected.
pub fn io_operation(class: OpClass, extends: bool, database: &'static str, file: &str) -> Option<FaultKind> {
    with(|w| {
        if w.crashed.is_some() || w.stopped {
            return None;
        }
        let height = w.position.height;
        let extend = extends.then_some(OpClass::Extend);
        // This operation's count in each class it belongs to (no allocation: every write passes here).
        let mut counted = [None; 2];
        for (slot, class) in counted.iter_mut().zip([Some(class), extend]) {
            let Some(class) = class else { continue };
            let count = w.io_counts.entry((class, height)).or_default();
            *count += 1;
            *slot = Some((class, *count));
        }
        if w.fault_fired.is_some() {
            // One fault at a time: the host has not seen the last one yet.
            return None;
        }
        let hit = w.fault_plan.iter().position(|f| {
            f.block == height
                && counted.iter().flatten().any(|(class, n)| f.fault.class() == Some(*class) && f.nth == *n)
        })?;
        let named = w.fault_plan.remove(hit);
        let record = FaultRecord { named, database, file: file_name(file), at: w.position };
        w.fault_fired = Some(record);
        Some(named.fault)
    })
    .flatten()
}

/// The fsync-retry mutation is on: a disk retries a failed sync once.
pub fn retries_failed_sync() -> bool {
    with(|w| w.retry_failed_sync).unwrap_or(false)
}

/// The I/O fault injected since the last call, if any.
pub fn take_fault() -> Option<FaultRecord> {
    with(|w| w.fault_fired.take()).flatten()
}

/// Planned I/O faults not injected (yet).
pub fn faults_left() -> Vec<FaultAt> {
    with(|w| w.fault_plan.clone()).unwrap_or_default()
}

/// The host stops the process after an I/O fault (or to retry a block): the
/// disks stay as they are (each file's live and durable images; a process
/// restart makes nothing durable), and from now until [`restarted`] the dying
/// process's I/O fails.
pub fn stop_process() {
    with(|w| w.stopped = true);
}

/// The process stopped by [`stop_process`] is gone; the next one may do I/O.
pub fn restarted() {
    with(|w| w.stopped = false);
}

/// The crash that happened, if any, and the images it left; clears the crash so
/// the restarted run can go on (and crash again at a later planned ordinal).
pub fn take_crash() -> Option<(PointRecord, CrashImages)> {
    with(|w| {
        let record = w.crashed.take()?;
        let images = w.images.take().expect("a crash captures images");
        Some((record, images))
    })
    .flatten()
}

/// Seeded randomness for SQLite's xRandomness.
pub fn fill_random(buf: &mut [u8]) {
    if with(|w| w.sqlite_rng.fill_bytes(buf)).is_none() {
        buf.fill(0);
    }
}

/// Simulated milliseconds since the Unix epoch for SQLite's xCurrentTime; it
/// advances one millisecond per call so that time never stands still.
pub fn now_ms() -> i64 {
    with(|w| {
        w.time_ms += 1;
        w.time_ms
    })
    .unwrap_or(EPOCH_MS)
}

/// Record where the run is (for naming crash points).
pub fn set_position(position: Position) {
    with(|w| w.position = position);
}

/// The host is about to run (or recover) block `height`.
pub fn set_height(height: u64) {
    with(|w| w.position.height = height);
}

/// Ordinals hit so far, by kind.
pub fn points_by_kind() -> BTreeMap<PointKind, Vec<u64>> {
    with(|w| w.points_by_kind()).unwrap_or_default()
}

/// Planned crashes not reached (yet).
pub fn crashes_left() -> Vec<CrashAt> {
    with(|w| w.crash_plan.iter().copied().collect()).unwrap_or_default()
}

/// How many crash points have been hit.
pub fn points_hit() -> u64 {
    with(|w| w.next_ordinal).unwrap_or(0)
}
