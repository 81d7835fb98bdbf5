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

    /// Whether only a kernel error has this kind (see [`FailureKind::of_error`]),
    /// never a check that found a wrong state. `snapshot-broken` and
    /// `height-mismatch` come from both, so they are not: a liveness restart
    /// that fails with one keeps that kind rather than becoming `stuck`.
    pub fn is_kernel_error(self) -> bool {
        matches!(self, FailureKind::ReplayDiverged | FailureKind::TranscriptMissing | FailureKind::KernelError)
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
    /// What differs, decoded (transcript items, kv values, heaps), a line each.
    pub detail: Vec<String>,
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
        Failure { kind, message, detail: Vec::new(), point: None, fault: None, height }
    }

    /// A failure of `kind` at `height` for what `diff` found.
    fn of_diff(kind: FailureKind, height: u64, diff: Diff) -> Failure {
        Failure { detail: diff.detail, ..Failure::new(kind, height, diff.message) }
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
pub(crate) fn oracle_heaps(oracle: &Oracle, last: &Snapshot, height: u64) -> Result<(), Failure> {
    match diff_heaps(&oracle.heap_digests(), last, &|vat| oracle.heap_json(vat)) {
        Some(diff) => {
            let diff = Diff { message: format!("oracle: {}", diff.message), ..diff };
            Err(Failure::of_diff(FailureKind::OracleMismatch, height, diff))
        }
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
    same_state(reference, height, &reference.snapshots[height as usize], found)?;
    Ok(height)
}

/// The end of the faulty run: the state, every heap and the activity hash
/// are the reference's.
pub(crate) fn final_state(reference: &Reference, found: &Snapshot) -> Result<(), Failure> {
    let height = reference.reports.len() as u64;
    same_state(reference, height, &reference.final_snapshot, found)
        .map_err(|f| Failure { kind: FailureKind::FinalMismatch, ..f })?;
    if found.activity_hash != reference.final_snapshot.activity_hash {
        let message =
            format!("activity hash {} expected {}", found.activity_hash, reference.final_snapshot.activity_hash);
        return Err(Failure::new(FailureKind::FinalMismatch, height, message));
    }
    Ok(())
}

/// `found` at `height` against `expected`, the reference's state there, and
/// the oracle's heaps; what differs is decoded from the reference's items
/// and the oracle run again to `height` (only then: this costs nothing while
/// the states agree).
fn same_state(reference: &Reference, height: u64, expected: &Snapshot, found: &Snapshot) -> Result<(), Failure> {
    if let Some(diff) = diff_kv(&expected.kv, &found.kv) {
        return Err(Failure::of_diff(FailureKind::StateMismatch, height, diff));
    }
    let text = |digest: &str| found.item_texts.get(digest).cloned().or_else(|| reference.item_text(digest));
    if let Some(diff) = diff_spans(expected, found, &text) {
        return Err(Failure::of_diff(FailureKind::TranscriptMismatch, height, diff));
    }
    let oracle_heap = |vat: &str| reference.oracle_at(height).heap_json(vat);
    if let Some(diff) = diff_heaps(&reference.heaps[height as usize], found, &oracle_heap) {
        return Err(Failure::of_diff(FailureKind::HeapMismatch, height, diff));
    }
    if let Some(diff) = diff_snapshot_heaps(found) {
        return Err(Failure::new(FailureKind::HeapMismatch, height, diff));
    }
    snapshots_sound(found, height)?;
    match diff_kv(&expected.host, &found.host) {
        Some(diff) => Err(Failure::of_diff(FailureKind::HostStateMismatch, height, diff.named("host database"))),
        None => Ok(()),
    }
}

/// Every snapshot kvStore refers to loads, and no other file is left.
pub(crate) fn snapshots_sound(found: &Snapshot, height: u64) -> Result<(), Failure> {
    let problems = &found.snapshot_problems;
    let broken = problems.broken.first().map(|problem| (FailureKind::SnapshotBroken, problem));
    let orphan = problems.orphans.first().map(|problem| (FailureKind::SnapshotOrphan, problem));
    match broken.or(orphan) {
        Some((kind, problem)) => Err(Failure::new(kind, height, problem.clone())),
        None => Ok(()),
    }
}

/// The host's database after the reference run's block `height` holds
/// exactly the chain sends of every block so far (which the oracle checked).
pub(crate) fn host_follows(reports: &[BlockReport], found: &Snapshot, height: u64) -> Result<(), Failure> {
    let mut expected = BTreeMap::new();
    for report in reports {
        expected.extend(store::chain::host_entries(report.height, &report.chain_sends));
    }
    match diff_kv(&expected, &found.host) {
        Some(diff) => Err(Failure::of_diff(FailureKind::OracleMismatch, height, diff.named("host database"))),
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

/// What a comparison found different: one line, and what it names decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    pub message: String,
    /// A line per differing thing (kv key, transcript item, heap field).
    pub detail: Vec<String>,
}

impl Diff {
    /// This diff, its message prefixed with what was compared.
    fn named(self, what: &str) -> Diff {
        Diff { message: format!("{what}: {}", self.message), ..self }
    }
}

/// Differing kv keys listed in a [`Diff`]'s detail at most.
const MAX_KV_LINES: usize = 12;

/// The first difference between two kv maps (every differing key, with both
/// values, in the detail), or `None`.
pub fn diff_kv(expected: &BTreeMap<String, String>, found: &BTreeMap<String, String>) -> Option<Diff> {
    let mut keys: Vec<&String> = expected.keys().chain(found.keys()).collect();
    keys.sort();
    keys.dedup();
    let differing: Vec<&String> = keys.into_iter().filter(|k| expected.get(*k) != found.get(*k)).collect();
    let line = |key: &String| format!("kv {key}: expected {:?}, found {:?}", expected.get(key), found.get(key));
    let message = line(differing.first()?);
    let mut detail: Vec<String> = differing.iter().take(MAX_KV_LINES).map(|key| line(key)).collect();
    if differing.len() > MAX_KV_LINES {
        detail.push(format!("... and {} more kv keys", differing.len() - MAX_KV_LINES));
    }
    Some(Diff { message, detail })
}

/// The first difference between the spans of two snapshots, or `None`; the
/// differing items decoded from their texts (`text`: the item of a digest).
pub fn diff_spans(expected: &Snapshot, found: &Snapshot, text: &dyn Fn(&str) -> Option<String>) -> Option<Diff> {
    for (vat, items) in &expected.spans {
        let Some(found_items) = found.spans.get(vat) else {
            return Some(Diff { message: format!("vat {vat}: span missing"), detail: Vec::new() });
        };
        if items == found_items {
            continue;
        }
        let Some((a, b)) = items.iter().zip(found_items).find(|(a, b)| a != b) else {
            let message = format!("vat {vat}: {} items expected, {} found", items.len(), found_items.len());
            let extra = items.iter().skip(found_items.len()).chain(found_items.iter().skip(items.len()));
            let side = if items.len() > found_items.len() { "missing" } else { "extra" };
            let detail = extra.map(|(position, digest)| item_line(side, *position, digest, text)).collect();
            return Some(Diff { message, detail });
        };
        let short = |digest: &str| text(digest).and_then(|t| crate::decode::delivery_of(&t)).unwrap_or_default();
        let message = format!(
            "vat {vat}: item {} expected {} {}, found item {} {} {}",
            a.0,
            a.1,
            short(&a.1),
            b.0,
            b.1,
            short(&b.1)
        );
        let detail = vec![item_line("expected", a.0, &a.1, text), item_line("found", b.0, &b.1, text)];
        return Some(Diff { message, detail });
    }
    None
}

/// One transcript item of a diff, decoded: `expected item 0 (5ea75d5e6fa2): startVat(...) | ... | ok`.
fn item_line(side: &str, position: u64, digest: &str, text: &dyn Fn(&str) -> Option<String>) -> String {
    let decoded = text(digest).map_or("(text not at hand)".to_string(), |t| crate::decode::item(&t));
    format!("{side} item {position} ({digest}): {decoded}")
}

/// Every rebuilt vat's heap against the oracle's digests (`oracle_heap`: the
/// oracle's heap of a vat as JSON, to decode the first that differs).
pub fn diff_heaps(
    oracle: &BTreeMap<String, String>,
    found: &Snapshot,
    oracle_heap: &dyn Fn(&str) -> Option<String>,
) -> Option<Diff> {
    let vats: Vec<&String> = found.vats.keys().collect();
    let oracle_vats: Vec<&String> = oracle.keys().collect();
    if vats != oracle_vats {
        return Some(Diff {
            message: format!("vats: oracle has {oracle_vats:?}, kernel has {vats:?}"),
            detail: vec![],
        });
    }
    for (vat, status) in &found.vats {
        if oracle[vat] != status.heap_digest {
            let (expected, heap) = (&oracle[vat], &status.heap_summary);
            let message = format!("vat {vat}: heap {} ({heap}), oracle expected {expected}", status.heap_digest);
            let detail = match oracle_heap(vat) {
                Some(expected) => crate::decode::heap_fields(&expected, &status.heap)
                    .into_iter()
                    .map(|line| format!("vat {vat} heap {line}"))
                    .collect(),
                None => vec![format!("vat {vat} heap found {}", status.heap)],
            };
            return Some(Diff { message, detail });
        }
        if status.start > status.end {
            let message = format!("vat {vat}: start {} > end {}", status.start, status.end);
            return Some(Diff { message, detail: Vec::new() });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::SnapshotProblems;

    fn found(broken: &[&str], orphans: &[&str]) -> Snapshot {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        let snapshot_problems = SnapshotProblems { broken: strings(broken), orphans: strings(orphans) };
        Snapshot { snapshot_problems, ..Snapshot::default() }
    }

    /// A broken snapshot outranks an orphan; each has its own kind.
    #[test]
    fn snapshot_problems_have_their_kinds() {
        assert!(snapshots_sound(&found(&[], &[]), 3).is_ok());
        let orphan = snapshots_sound(&found(&[], &["orphan: snapshots/a.heap"]), 3).unwrap_err();
        assert_eq!((orphan.kind, orphan.message.as_str()), (FailureKind::SnapshotOrphan, "orphan: snapshots/a.heap"));
        let broken = snapshots_sound(&found(&["vat v1: missing"], &["orphan: snapshots/a.heap"]), 3).unwrap_err();
        assert_eq!((broken.kind, broken.message.as_str()), (FailureKind::SnapshotBroken, "vat v1: missing"));
    }
}
