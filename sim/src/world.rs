//! The world of one run: the crash-point counter, the crash plan, the I/O
//! fault plan, the seeded randomness and time that SQLite sees, and the
//! frozen crash image. It is the [`Injector`] of the run's simulated disk
//! ([`crate::disk`]): the disk asks it at every durability point and I/O
//! operation, handing it the file system model to capture when it crashes.
//! The host reaches it through the free functions below, which find it on
//! the thread's installed disk.
//!
//! A *capturing* world ([`World::capturing`]) crashes nowhere but keeps, for
//! every point, the state the disk is in there (copy-on-write, so each costs
//! a reference count per inode): any point's crash image can then be made
//! after the run, without running the workload up to the point again.
//! A *resumed* world ([`World::resumed`]) starts a run just after such a crash.

use crate::disk::fs::{DirOp, Fs, Image, NothingPending, Survival, Torn};
use crate::disk::{self, CrashDisk, Injector};
use crate::fault::{CrashAt, CrashSpec, Crashed, FaultAt, FaultKind, FaultMode, OpClass, PointKind, SectorFate};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::any::Any;
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
    /// In the window between the commit points: point A of the block in
    /// flight was reached (SQLite committed) and point B not yet.
    pub window: bool,
    /// What the crash left of the disk.
    pub disk: CrashDisk,
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
    /// Crash points the run had hit when the fault fired (the ordinal of the next).
    pub ordinal: u64,
    /// In the window between the commit points (see [`PointRecord::window`]).
    pub window: bool,
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

/// The disk as it survives a crash of `spec` now (torn draws from `rng`):
/// exactly what a run that crashed here would have, given the same `rng`.
pub fn crash_image(fs: &Fs, spec: CrashSpec, rng: &mut ChaCha8Rng) -> Image {
    match (spec.mode, spec.torn) {
        (FaultMode::ProcessCrash, _) => fs.live_image(),
        (FaultMode::PowerLoss, false) => fs.surviving(&mut NothingPending),
        (FaultMode::PowerLoss, true) => fs.surviving(&mut Torn(rng)),
    }
}

/// Directory operations pending at a point beyond which exhaustive mode
/// samples their subsets instead of trying them all.
const MAX_DIR_OPS_TRIED_ALL: usize = 6;
/// Subsets sampled when more directory operations are pending.
const DIR_OP_SAMPLES: u64 = 32;

/// One crash state exhaustive mode explores at a point.
pub struct CrashState {
    /// Which pending operations survived, as a person reads it.
    pub label: String,
    pub image: Image,
    /// Whether unsynced sectors were drawn (survive, vanish or tear).
    pub torn: bool,
}

/// The crash states exhaustive mode explores at one point of a power-loss
/// run: first the one a seeded crash there gets (`first`, from the run's
/// torn rng), then every subset of the pending directory operations (a
/// seeded sample of them past [`MAX_DIR_OPS_TRIED_ALL`]), each with every
/// unsynced sector lost and with a seeded draw of the sectors; equal images
/// are explored once. A process crash has one state.
pub fn exhaustive_states(fs: &Fs, spec: CrashSpec, first: CrashState, seed: u64) -> Vec<CrashState> {
    let mut states = vec![first];
    if spec.mode == FaultMode::ProcessCrash {
        return states;
    }
    let pending = fs.pending_dir_ops();
    let ops = pending.len();
    let masks: Vec<u64> = match ops <= MAX_DIR_OPS_TRIED_ALL {
        true => (0..1u64 << ops).collect(),
        false => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd1_0b5);
            let all = u64::MAX >> (64 - ops.min(64));
            let mut masks = vec![0, all];
            masks.extend((2..DIR_OP_SAMPLES).map(|_| rng.next_u64() & all));
            masks
        }
    };
    for mask in masks {
        for draw_sectors in [false, true] {
            let mut chosen = Chosen { mask, asked: 0, sectors: draw_sectors.then(|| sector_rng(seed, mask)) };
            let image = fs.surviving(&mut chosen);
            if states.iter().any(|s| s.image == image) {
                continue;
            }
            let sectors = if draw_sectors { "unsynced sectors drawn" } else { "unsynced sectors lost" };
            let label = format!("{}; {sectors}", describe_dir_ops(&pending, mask));
            states.push(CrashState { label, image, torn: draw_sectors });
        }
    }
    states
}

/// Which of the `pending` directory operations `mask` keeps, e.g.
/// `directory: kept -swingstore.sqlite-journal, lost +kv`.
fn describe_dir_ops(pending: &[(crate::disk::fs::Ino, DirOp)], mask: u64) -> String {
    if pending.is_empty() {
        return "no directory operation pending".into();
    }
    let name = |op: &DirOp| match op {
        DirOp::Link(name, _) => format!("+{name}"),
        DirOp::Unlink(name, _) => format!("-{name}"),
    };
    let (mut kept, mut lost) = (Vec::new(), Vec::new());
    for (index, (_, op)) in pending.iter().enumerate() {
        match index < 64 && mask >> index & 1 == 1 {
            true => kept.push(name(op)),
            false => lost.push(name(op)),
        }
    }
    let list = |ops: Vec<String>| if ops.is_empty() { "none".to_string() } else { ops.join(" ") };
    format!("directory: kept {}, lost {}", list(kept), list(lost))
}

fn sector_rng(seed: u64, mask: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x5ec_7025 ^ mask.rotate_left(17))
}

/// A chosen crash state: pending directory operations survive by the bits of
/// `mask` (in the order the model asks), sectors by `sectors` (all lost without).
struct Chosen {
    mask: u64,
    asked: u32,
    sectors: Option<ChaCha8Rng>,
}

impl Survival for Chosen {
    fn dir_op(&mut self, _op: &DirOp) -> bool {
        let keep = self.asked < 64 && self.mask >> self.asked & 1 == 1;
        self.asked += 1;
        keep
    }
    fn shrink(&mut self) -> bool {
        self.sectors.as_mut().is_some_and(|rng| rng.next_u32() & 1 == 0)
    }
    fn sector(&mut self) -> SectorFate {
        match &mut self.sectors {
            Some(rng) => crate::fault::draw_sector_fate(rng),
            None => SectorFate::Vanishes,
        }
    }
    fn garbage(&mut self, buf: &mut [u8]) {
        if let Some(rng) = &mut self.sectors {
            rng.fill_bytes(buf);
        }
    }
}

/// What a capturing (or recording) run kept of one crash point.
#[derive(Clone, Debug)]
pub struct Captured {
    pub ordinal: u64,
    pub kind: PointKind,
    /// In the window between the commit points (see [`PointRecord::window`]).
    pub window: bool,
    pub database: &'static str,
    /// Relative to the store's directory (see [`PointRecord::file`]).
    pub file: String,
    pub at: Position,
    /// Shared with the neighbouring points when the disk did not change in between.
    pub disk: Arc<Fs>,
}

/// One run's world: the injector of the run's disk.
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
    image: Option<Image>,
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
    /// The process is dead (it crashed, or the host stopped it after an I/O
    /// fault) and not restarted yet: its I/O fails, also while it is being
    /// torn down (closing SQLite in WAL mode checkpoints).
    stopped: bool,
    /// The fsync-retry mutation: a failed sync is retried (and then succeeds).
    retry_failed_sync: bool,
    /// Capturing runs: what each point would leave, by ordinal; such a run never crashes.
    capturing: bool,
    /// Recording runs crash as planned and keep every point's state too (a timeline).
    recording: bool,
    captured: Vec<Captured>,
    /// The disk generation and state of the last capture.
    last_capture: Option<(u64, Arc<Fs>)>,
    /// The block whose point A the live process reached, until its point B.
    commit_window: Option<u64>,
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
            image: None,
            sites: Vec::new(),
            position: Position::default(),
            time_ms: EPOCH_MS,
            fault_plan: Vec::new(),
            io_counts: BTreeMap::new(),
            fault_fired: None,
            stopped: false,
            retry_failed_sync: false,
            capturing: false,
            recording: false,
            captured: Vec::new(),
            last_capture: None,
            commit_window: None,
        }
    }

    /// A run that crashes nowhere and records every point's [`Captured`] state.
    pub fn capturing(seed: u64, spec: CrashSpec) -> World {
        World { capturing: true, ..World::new(seed, spec, Vec::new()) }
    }

    /// A run that starts just after the crash `crash` (which left `image`,
    /// drawn from `torn_rng`), with `crash_plan` still ahead: the state a run
    /// that had crashed there is in, without having run up to the point. Its
    /// next point takes the ordinal after the crash's.
    pub fn resumed(
        seed: u64,
        spec: CrashSpec,
        crash_plan: Vec<CrashAt>,
        crash: PointRecord,
        image: Image,
        torn_rng: ChaCha8Rng,
    ) -> World {
        let next_ordinal = crash.ordinal + 1;
        World {
            torn_rng,
            next_ordinal,
            crashed: Some(crash),
            image: Some(image),
            stopped: true,
            ..World::new(seed, spec, crash_plan)
        }
    }

    /// This run crashes as planned and, when `recording`, keeps every point's
    /// state as a capturing run does (what a timeline of the run reads).
    pub fn recording(self, recording: bool) -> World {
        World { recording, ..self }
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

    /// The states a capturing run recorded, by ordinal (a recording run: in order).
    pub fn take_captured(&mut self) -> Vec<Captured> {
        self.last_capture = None;
        std::mem::take(&mut self.captured)
    }

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

    /// Count the point hit now; `Some(named)` if the plan crashes here.
    fn hit(&mut self, kind: PointKind) -> Option<CrashAt> {
        let height = self.position.height;
        self.next_ordinal += 1;
        self.sites.push(Site { kind, height });
        match kind {
            PointKind::PointA => self.commit_window = Some(height),
            PointKind::PointB => self.commit_window = None,
            _ => {}
        }
        let count = self.counts.entry((kind, height)).or_default();
        *count += 1;
        let here = CrashAt { at: kind, block: height, nth: *count };
        (self.crash_plan.front() == Some(&here)).then_some(here)
    }

    /// Whether the live process is between point A and point B of the block it runs.
    fn in_window(&self) -> bool {
        self.commit_window == Some(self.position.height)
    }

    /// Keep the disk's state at the point just hit.
    fn capture(&mut self, kind: PointKind, database: &'static str, file: &str, fs: &Fs) {
        let disk = match &self.last_capture {
            Some((generation, disk)) if *generation == fs.generation() => disk.clone(),
            _ => Arc::new(fs.state()),
        };
        self.last_capture = Some((fs.generation(), disk.clone()));
        let (ordinal, window, at, file) = (self.next_ordinal - 1, self.in_window(), self.position, file.to_string());
        self.captured.push(Captured { ordinal, kind, window, database, file, at, disk });
    }

    /// Crash here: freeze the crash image.
    fn crash(&mut self, named: CrashAt, database: &'static str, file: &str, fs: &Fs) {
        self.crash_plan.pop_front();
        self.counts.clear();
        self.io_counts.clear();
        let drawn_before = self.torn_rng.get_word_pos();
        let image = crash_image(fs, self.spec, &mut self.torn_rng);
        let torn = self.torn_rng.get_word_pos() != drawn_before;
        let disk = CrashDisk::of(fs, &image);
        self.image = Some(image);
        let (ordinal, at, window) = (self.next_ordinal - 1, self.position, self.in_window());
        self.stopped = true;
        self.commit_window = None;
        let file = file.to_string();
        self.crashed = Some(PointRecord { kind: named.at, ordinal, named, database, file, at, torn, window, disk });
    }
}

/// The rng of torn-write draws of a run of `seed`, as the run starts.
pub fn torn_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x7_0e2)
}

impl Injector for World {
    fn durability_point(
        &mut self,
        kind: PointKind,
        database: &'static str,
        file: &str,
        fs: &Fs,
    ) -> Result<(), Crashed> {
        if self.crashed.is_some() || self.stopped {
            return Err(Crashed);
        }
        let planned = self.hit(kind);
        if self.capturing || self.recording {
            self.capture(kind, database, file, fs);
        }
        if let Some(named) = planned.filter(|_| !self.capturing) {
            self.crash(named, database, file, fs);
            return Err(Crashed);
        }
        // A crank's start is also where a graceful stop may come: counted
        // (for the plans to draw from) and injected like an I/O fault.
        let stop = kind == PointKind::Crank && self.io_operation(OpClass::Crank, false, database, file).is_some();
        match stop {
            true => Err(Crashed),
            false => Ok(()),
        }
    }

    /// Returns the fault to inject now, if the plan names this operation;
    /// counts it either way. Once crashed, nothing is injected.
    fn io_operation(&mut self, class: OpClass, extends: bool, database: &'static str, file: &str) -> Option<FaultKind> {
        if self.crashed.is_some() || self.stopped {
            return None;
        }
        let height = self.position.height;
        let extend = extends.then_some(OpClass::Extend);
        // This operation's count in each class it belongs to (no allocation: every write passes here).
        let mut counted = [None; 2];
        for (slot, class) in counted.iter_mut().zip([Some(class), extend]) {
            let Some(class) = class else { continue };
            let count = self.io_counts.entry((class, height)).or_default();
            *count += 1;
            *slot = Some((class, *count));
        }
        if self.fault_fired.is_some() {
            // One fault at a time: the host has not seen the last one yet.
            return None;
        }
        let hit = self.fault_plan.iter().position(|f| {
            f.block == height
                && counted.iter().flatten().any(|(class, n)| f.fault.class() == Some(*class) && f.nth == *n)
        })?;
        let named = self.fault_plan.remove(hit);
        let (at, ordinal, window) = (self.position, self.next_ordinal, self.in_window());
        let record = FaultRecord { named, database, file: file.to_string(), at, ordinal, window };
        self.fault_fired = Some(record);
        Some(named.fault)
    }

    fn is_stopped(&self) -> bool {
        self.crashed.is_some() || self.stopped
    }

    fn retries_failed_sync(&self) -> bool {
        self.retry_failed_sync
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        self.sqlite_rng.fill_bytes(buf);
    }

    /// Advances one millisecond per call so that time never stands still.
    fn now_ms(&mut self) -> i64 {
        self.time_ms += 1;
        self.time_ms
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Run `f` on the world of this thread's disk.
fn with<R>(f: impl FnOnce(&mut World) -> R) -> Option<R> {
    disk::with_injector::<World, R>(f)
}

/// A durability point of the store (crank start, point A, point B) on `file`.
/// `Ok` lets the caller proceed; `Err(Crashed)` means the run has crashed
/// here or earlier. Outside a run (a plain test) every point passes.
pub fn durability_point(kind: PointKind, database: &'static str, file: &str) -> Result<(), Crashed> {
    disk::point(kind, database, file)
}

/// Whether the run has crashed and the host has not taken the crash yet.
pub fn is_crashed() -> bool {
    with(|w| w.crashed.is_some()).unwrap_or(false)
}

/// Whether the fault injected (and not yet taken by the host) is a
/// graceful stop: the kernel must close its store, not just die.
pub fn stop_requested() -> bool {
    with(|w| w.fault_fired.as_ref().is_some_and(|f| f.named.fault == FaultKind::Stop)).unwrap_or(false)
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
/// disk stays as it is (a process restart makes nothing durable), and from
/// now until [`restarted`] the dying process's I/O fails.
pub fn stop_process() {
    with(|w| w.stopped = true);
}

/// The dead process (crashed, or stopped by [`stop_process`]) is gone and
/// the disk is what the next one starts on: it may do I/O.
pub fn restarted() {
    with(|w| {
        w.stopped = false;
        w.commit_window = None;
        // The disk may be a restored image now: a capture must not be shared across it.
        w.last_capture = None;
    });
}

/// The crash that happened, if any, and the image it left; clears the crash
/// so the restarted run can go on (and crash again at a later planned point).
/// The process stays dead until [`restarted`].
pub fn take_crash() -> Option<(PointRecord, Image)> {
    with(|w| {
        let record = w.crashed.take()?;
        let image = w.image.take().expect("a crash freezes an image");
        Some((record, image))
    })
    .flatten()
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
