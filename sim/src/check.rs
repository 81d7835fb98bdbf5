//! Everything a run checks, and the failures the checks find. The reference
//! run is checked against the oracle (`oracle_agrees`, `oracle_heaps`);
//! the faulty run's host has checked a block it runs again
//! (`block_repeats`), each recovered state (`recovery`), the end
//! (`final_state`), and that the run reached every point its plan names
//! (`plan_reached`). The comparisons are the diffs at the end of this file.

use crate::fault::{CrashAt, FaultAt};
use crate::node::Snapshot;
use crate::oracle::Oracle;
use crate::run::Reference;
use crate::trace::describe_block;
use crate::world::{FaultRecord, PointRecord};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use store::kernel::BlockReport;

/// What kind of failure a seed found; stable names for JSON and scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The no-fault reference run itself broke (a kernel error): the design
    /// fails without a crash.
    ReferenceFailed,
    /// Replay of a transcript made other syscalls than recorded.
    ReplayDiverged,
    /// A transcript item the kvStore points at is gone.
    TranscriptMissing,
    /// Another kernel or store error after a restart.
    KernelError,
    /// The kernel's committed height is behind a block the host saw committed.
    LostCommit,
    /// kvStore differs from the reference at the recovered height.
    StateMismatch,
    /// A transcript item of a current span differs from the reference.
    TranscriptMismatch,
    /// A vat rebuilt by replay has another heap than the oracle's.
    HeapMismatch,
    /// A block executed again after recovery did something else than in the reference.
    DivergentBlock,
    /// In the reference run, the kernel disagrees with the oracle (vat code
    /// run without the store): a delivery's syscalls, or a rebuilt heap. A
    /// bug both runs share (they use the same store) shows up here.
    OracleMismatch,
    /// The final state differs from the reference's final state.
    FinalMismatch,
    /// The seed's run panicked (or its worker process died).
    Panic,
    /// Two runs of the seed differed (`--check-determinism`).
    Nondeterministic,
    /// A crash plan names a point the run never reached (a stale scenario).
    InvalidPlan,
    /// Liveness phase: the host could not finish its blocks (a block kept
    /// failing after a restart, or no progress within the bound).
    Stuck,
    /// A heap snapshot kvStore refers to is missing or does not match its hash.
    SnapshotBroken,
    /// A snapshot file no vat refers to survived the kernel's open.
    SnapshotOrphan,
    /// The host's height and the kernel's are neither equal nor one apart
    /// (the host stops: "Unimplemented reset state"), or a restart left them apart.
    HeightMismatch,
    /// The host's database differs from the reference at its height.
    HostStateMismatch,
}

impl FailureKind {
    pub const ALL: [FailureKind; 19] = [
        FailureKind::ReferenceFailed,
        FailureKind::ReplayDiverged,
        FailureKind::TranscriptMissing,
        FailureKind::KernelError,
        FailureKind::LostCommit,
        FailureKind::StateMismatch,
        FailureKind::TranscriptMismatch,
        FailureKind::HeapMismatch,
        FailureKind::DivergentBlock,
        FailureKind::OracleMismatch,
        FailureKind::FinalMismatch,
        FailureKind::Panic,
        FailureKind::Nondeterministic,
        FailureKind::InvalidPlan,
        FailureKind::Stuck,
        FailureKind::SnapshotBroken,
        FailureKind::SnapshotOrphan,
        FailureKind::HeightMismatch,
        FailureKind::HostStateMismatch,
    ];

    pub fn parse(text: &str) -> Option<FailureKind> {
        Self::ALL.into_iter().find(|k| k.name() == text)
    }

    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// Whether this is the kind of a kernel error (see [`FailureKind::of_error`]),
    /// as opposed to a check that found a wrong state.
    pub fn is_kernel_error(self) -> bool {
        matches!(
            self,
            FailureKind::ReplayDiverged
                | FailureKind::TranscriptMissing
                | FailureKind::KernelError
                | FailureKind::SnapshotBroken
                | FailureKind::HeightMismatch
        )
    }

    /// The failure kind of a kernel error after a restart.
    pub fn of_error(error: &store::Error) -> FailureKind {
        match error {
            store::Error::ReplayDiverged { .. } => FailureKind::ReplayDiverged,
            store::Error::TranscriptMissing { .. } => FailureKind::TranscriptMissing,
            store::Error::SnapshotUnusable { .. } => FailureKind::SnapshotBroken,
            store::Error::HeightMismatch { .. } => FailureKind::HeightMismatch,
            _ => FailureKind::KernelError,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One failure, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// The last crash before the failure, if any.
    pub point: Option<Box<PointRecord>>,
    /// The last I/O fault before the failure, if any.
    pub fault: Option<Box<FaultRecord>>,
    /// The block the host was at.
    pub height: u64,
}

impl Failure {
    /// A failure with no crash or fault before it.
    pub fn new(kind: FailureKind, height: u64, message: String) -> Failure {
        Failure { kind, message, point: None, fault: None, height }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at block {}: {}", self.kind, self.height, self.message)?;
        if let Some(point) = &self.point {
            write!(f, " (after crash at {point})")?;
        }
        if let Some(fault) = &self.fault {
            write!(f, " (after I/O fault {fault})")?;
        }
        Ok(())
    }
}

/// The oracle (the vat code run without the store) must agree with every
/// block the reference run commits: each delivery makes the syscalls the
/// kernel recorded, with the results it recorded, and the block's chain
/// sends are those of its committed deliveries.
pub(crate) fn oracle_agrees(oracle: &mut Oracle, report: &BlockReport) -> Result<(), Failure> {
    let disagree = |e| Failure::new(FailureKind::OracleMismatch, report.height, format!("oracle: {e}"));
    let sends = oracle.apply(report).map_err(disagree)?;
    if sends != report.chain_sends {
        let (expected, found) = (store::vat::describe(&sends), store::vat::describe(&report.chain_sends));
        return Err(disagree(format!("chain sends: expected {expected}, kernel reported {found}")));
    }
    Ok(())
}

/// At the end of the reference run, every vat the kernel rebuilds by replay
/// (`last`) must have the heap the oracle computed.
pub(crate) fn oracle_heaps(heaps: &BTreeMap<String, String>, last: &Snapshot, height: u64) -> Result<(), Failure> {
    match diff_heaps(heaps, last) {
        Some(diff) => Err(Failure::new(FailureKind::OracleMismatch, height, format!("oracle: {diff}"))),
        None => Ok(()),
    }
}

/// A block the host ran again after a recovery must do exactly what it did
/// in the reference.
pub(crate) fn block_repeats(reference: &Reference, found: &BlockReport) -> Result<(), Failure> {
    let expected = &reference.reports[found.height as usize - 1];
    if found != expected {
        let message = format!("expected `{}`, found `{}`", describe_block(expected), describe_block(found));
        return Err(Failure::new(FailureKind::DivergentBlock, found.height, message));
    }
    Ok(())
}

/// A recovery: the kernel is at the height the host saw committed (`acked`)
/// or one past it (the block in flight committed before the crash), and its
/// state there is the reference's. Returns the recovered height.
pub(crate) fn recovery(reference: &Reference, acked: u64, found: &Snapshot) -> Result<u64, Failure> {
    let height = found.height.unwrap_or(0);
    if height < acked || height > acked + 1 {
        let message = format!("host saw block {acked} committed, kernel recovered at height {height}");
        return Err(Failure::new(FailureKind::LostCommit, height, message));
    }
    if found.host_height != height {
        let message = format!("after the restart the host is at height {}, the kernel at {height}", found.host_height);
        return Err(Failure::new(FailureKind::HeightMismatch, height, message));
    }
    same_state(&reference.snapshots[height as usize], &reference.heaps[height as usize], found, height)?;
    Ok(height)
}

/// The end of the faulty run: the state, every heap and the activity hash
/// are the reference's.
pub(crate) fn final_state(reference: &Reference, found: &Snapshot) -> Result<(), Failure> {
    let height = reference.reports.len() as u64;
    same_state(&reference.final_snapshot, &reference.heaps[height as usize], found, height)
        .map_err(|f| Failure { kind: FailureKind::FinalMismatch, ..f })?;
    if found.activity_hash != reference.final_snapshot.activity_hash {
        let message =
            format!("activity hash {} expected {}", found.activity_hash, reference.final_snapshot.activity_hash);
        return Err(Failure::new(FailureKind::FinalMismatch, height, message));
    }
    Ok(())
}

/// `found` at `height` against the reference's state there and the oracle's heaps.
fn same_state(
    expected: &Snapshot,
    heaps: &BTreeMap<String, String>,
    found: &Snapshot,
    height: u64,
) -> Result<(), Failure> {
    if let Some(diff) = diff_kv(&expected.kv, &found.kv) {
        return Err(Failure::new(FailureKind::StateMismatch, height, diff));
    }
    if let Some(diff) = diff_spans(expected, found) {
        return Err(Failure::new(FailureKind::TranscriptMismatch, height, diff));
    }
    if let Some(diff) = diff_heaps(heaps, found) {
        return Err(Failure::new(FailureKind::HeapMismatch, height, diff));
    }
    if let Some(diff) = diff_snapshot_heaps(found) {
        return Err(Failure::new(FailureKind::HeapMismatch, height, diff));
    }
    snapshots_sound(found, height)?;
    match diff_kv(&expected.host, &found.host) {
        Some(diff) => Err(Failure::new(FailureKind::HostStateMismatch, height, format!("host database: {diff}"))),
        None => Ok(()),
    }
}

/// Every snapshot kvStore refers to loads, and no other file is left.
pub(crate) fn snapshots_sound(found: &Snapshot, height: u64) -> Result<(), Failure> {
    let Some(problem) = found.snapshot_problems.first() else {
        return Ok(());
    };
    let kind = match problem.starts_with("orphan") {
        true => FailureKind::SnapshotOrphan,
        false => FailureKind::SnapshotBroken,
    };
    Err(Failure::new(kind, height, problem.clone()))
}

/// The host's database after the reference run's block `height` holds
/// exactly the chain sends of every block so far (which the oracle checked).
pub(crate) fn host_follows(reports: &[BlockReport], found: &Snapshot, height: u64) -> Result<(), Failure> {
    let mut expected = BTreeMap::new();
    for report in reports {
        expected.extend(store::chain::host_entries(report.height, &report.chain_sends));
    }
    match diff_kv(&expected, &found.host) {
        Some(diff) => Err(Failure::new(FailureKind::OracleMismatch, height, format!("host database: {diff}"))),
        None => Ok(()),
    }
}

/// A heap rebuilt from a snapshot against the same vat rebuilt from the start
/// of its span: a snapshot must hold exactly the heap a replay reaches.
fn diff_snapshot_heaps(found: &Snapshot) -> Option<String> {
    let (vat, heaps) = found.snapshot_heaps.iter().find(|(_, h)| h.from_snapshot != h.from_span_start)?;
    Some(format!(
        "vat {vat}: heap from its snapshot at position {} is {}, replay from the span's start gives {}",
        heaps.position, heaps.from_snapshot, heaps.from_span_start
    ))
}

/// A plan that names a point or an operation the run never reached is not a
/// passing run (`crashes_left`, `faults_left`: what the run did not reach).
pub(crate) fn plan_reached(crashes_left: &[CrashAt], faults_left: &[FaultAt]) -> Option<Failure> {
    if let Some(first) = crashes_left.first() {
        let message = format!("the crash plan names {first}, which the run never reached");
        return Some(Failure::new(FailureKind::InvalidPlan, first.block, message));
    }
    let first = faults_left.first()?;
    let message = format!("the I/O fault plan names {first}, which the run never reached");
    Some(Failure::new(FailureKind::InvalidPlan, first.block, message))
}

/// The first difference between two kv maps, or `None`.
pub fn diff_kv(expected: &BTreeMap<String, String>, found: &BTreeMap<String, String>) -> Option<String> {
    let keys = expected.keys().chain(found.keys());
    let mut differing = keys.filter(|k| expected.get(*k) != found.get(*k)).collect::<Vec<_>>();
    differing.sort();
    let key = differing.first()?;
    Some(format!("kv {key}: expected {:?}, found {:?}", expected.get(*key), found.get(*key)))
}

/// The first difference between the spans of two snapshots, or `None`.
pub fn diff_spans(expected: &Snapshot, found: &Snapshot) -> Option<String> {
    for (vat, items) in &expected.spans {
        let Some(found_items) = found.spans.get(vat) else {
            return Some(format!("vat {vat}: span missing"));
        };
        if items != found_items {
            let first = items.iter().zip(found_items).find(|(a, b)| a != b);
            return Some(match first {
                Some((a, b)) => format!("vat {vat}: item {} expected {}, found item {} {}", a.0, a.1, b.0, b.1),
                None => format!("vat {vat}: {} items expected, {} found", items.len(), found_items.len()),
            });
        }
    }
    None
}

/// Every rebuilt vat's heap against the oracle's.
pub fn diff_heaps(oracle: &BTreeMap<String, String>, found: &Snapshot) -> Option<String> {
    let vats: Vec<&String> = found.vats.keys().collect();
    let oracle_vats: Vec<&String> = oracle.keys().collect();
    if vats != oracle_vats {
        return Some(format!("vats: oracle has {oracle_vats:?}, kernel has {vats:?}"));
    }
    for (vat, status) in &found.vats {
        if oracle[vat] != status.heap_digest {
            let (expected, heap) = (&oracle[vat], &status.heap_summary);
            return Some(format!("vat {vat}: heap {} ({heap}), oracle expected {expected}", status.heap_digest));
        }
        if status.start > status.end {
            return Some(format!("vat {vat}: start {} > end {}", status.start, status.end));
        }
    }
    None
}
