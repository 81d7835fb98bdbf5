//! Vat workers online, capped (least recently used evicted), and rebuilt by
//! replaying the current span of the transcript.

use super::keys;
use super::run_queue::read_u64;
use super::snapshots;
use super::transcript::{self, Decoded};
use crate::config::Mutant;
use crate::error::{Error, Result};
use crate::snap_store;
use crate::swing_store::SwingStore;
use crate::vat::{describe, DeliverError, Syscall, SyscallHandler, SyscallRecord, SyscallResult, VatWorker};
use std::collections::BTreeMap;

/// Counters of worker activity, and the workers online now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Workers online now (at most the cap).
    pub online: usize,
    pub evictions: u64,
    pub rebuilds: u64,
    /// Rebuilds of a vat upgraded before (incarnation above 0): its replay
    /// must start at the new incarnation's span.
    pub rebuilds_after_upgrade: u64,
    pub replayed_deliveries: u64,
}

pub(crate) struct Workers {
    /// Each online worker with the tick of its last use.
    online: BTreeMap<String, (VatWorker, u64)>,
    tick: u64,
    cap: usize,
    pub stats: WorkerStats,
}

impl Workers {
    pub fn new(cap: usize) -> Workers {
        assert!(cap >= 1, "at least one worker must fit online");
        Workers { online: BTreeMap::new(), tick: 0, cap, stats: WorkerStats::default() }
    }

    /// Take a worker out for a delivery (put it back with [`Workers::put`]).
    pub fn take(&mut self, vat: &str) -> Option<VatWorker> {
        self.online.remove(vat).map(|(worker, _)| worker)
    }

    /// Bring a worker online, evicting the least recently used beyond the cap.
    pub fn put(&mut self, vat: &str, worker: VatWorker) {
        self.tick += 1;
        self.online.insert(vat.to_string(), (worker, self.tick));
        while self.online.len() > self.cap {
            let oldest = self.online.iter().min_by_key(|(_, (_, tick))| *tick).map(|(vat, _)| vat.clone());
            let Some(oldest) = oldest else { break };
            self.online.remove(&oldest);
            self.stats.evictions += 1;
        }
    }

    pub fn evict_all(&mut self) {
        self.online.clear();
    }

    pub fn online(&self) -> impl Iterator<Item = &str> {
        self.online.keys().map(String::as_str)
    }
}

/// Where a rebuild starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RebuildFrom {
    /// The vat's current snapshot, if it has one (else the span's start).
    LastSnapshot,
    /// The start of the span, whatever snapshot there is.
    SpanStart,
}

/// Rebuild a vat's worker: its current bundle with the heap of its last
/// snapshot (or evaluated afresh), then the span replayed from there.
pub(crate) fn rebuild(store: &SwingStore, vat: &str, from: RebuildFrom, workers: &mut Workers) -> Result<VatWorker> {
    let source =
        store.kv_get(&keys::source(vat))?.ok_or_else(|| Error::Invariant(format!("vat {vat} has no source")))?;
    let mut span = transcript::span(store, vat)?;
    let replay_from_zero = store.mutant() == Some(Mutant::ReplayFromZero);
    let record = match (from, replay_from_zero) {
        (RebuildFrom::LastSnapshot, false) => snapshots::record(store, vat)?,
        _ => None,
    };
    let mut worker = match &record {
        Some(record) => {
            snapshots::check_within(vat, record, span.start, span.end)?;
            span.start = record.position;
            restore(store, vat, &source, &record.hash)?
        }
        None => VatWorker::evaluate(&source)
            .map_err(|e| Error::Invariant(format!("vat {vat}: current bundle does not load: {e}")))?,
    };
    if replay_from_zero {
        span.start = 0;
    }
    let entries = transcript::read_remembered(store, vat, &span)?;
    let stats = &mut workers.stats;
    for (offset, decoded) in entries.iter().enumerate() {
        replay_one(&mut worker, vat, span.start + offset as u64, decoded)?;
        stats.replayed_deliveries += 1;
    }
    stats.rebuilds += 1;
    if read_u64(store, &keys::incarnation(vat))? > 0 {
        stats.rebuilds_after_upgrade += 1;
    }
    Ok(worker)
}

/// A worker of `bundle` with the heap of snapshot `hash`, checked.
fn restore(store: &SwingStore, vat: &str, bundle: &str, hash: &str) -> Result<VatWorker> {
    let bytes = match store.snapshot_load(hash)? {
        Ok(bytes) => bytes,
        Err(problem) => return Err(snap_store::problem_error(vat, hash, problem.to_string())),
    };
    VatWorker::restore(bundle, &bytes).map_err(|reason| snap_store::problem_error(vat, hash, reason))
}

/// Replay one transcript entry: the same syscalls and the same outcome.
fn replay_one(worker: &mut VatWorker, vat: &str, position: u64, decoded: &Decoded) -> Result<()> {
    let entry = &decoded.entry;
    let mut replay = ReplaySyscalls { vat, position, expected: &entry.sc, described: &decoded.results, next: 0 };
    let outcome = match worker.deliver_described(&entry.d, Some(&decoded.delivery), &mut replay) {
        Ok(()) => None,
        Err(DeliverError::Vat(message)) => Some(message),
        Err(DeliverError::Kernel(error)) => return Err(error),
    };
    replay.finish()?;
    if outcome != entry.r {
        let (expected, found) = (describe(&entry.r), describe(&outcome));
        return Err(Error::ReplayDiverged { vat: vat.into(), position, expected, found });
    }
    Ok(())
}

/// Serves syscall results from the transcript, checking each syscall is the recorded one.
struct ReplaySyscalls<'a> {
    vat: &'a str,
    position: u64,
    expected: &'a [SyscallRecord],
    /// `describe` of each expected result.
    described: &'a [String],
    next: usize,
}

impl ReplaySyscalls<'_> {
    fn diverged(&self, expected: String, found: String) -> Error {
        Error::ReplayDiverged { vat: self.vat.into(), position: self.position, expected, found }
    }

    /// Every recorded syscall must have been made.
    fn finish(&self) -> Result<()> {
        match self.expected.get(self.next) {
            Some(missing) => Err(self.diverged(describe(&missing.s), "no further syscall".into())),
            None => Ok(()),
        }
    }
}

impl SyscallHandler for ReplaySyscalls<'_> {
    fn described_result(&self) -> Option<&str> {
        self.next.checked_sub(1).and_then(|last| self.described.get(last)).map(String::as_str)
    }

    fn syscall(&mut self, syscall: Syscall) -> Result<SyscallResult> {
        match self.expected.get(self.next) {
            Some(record) if record.s == syscall => {
                self.next += 1;
                Ok(record.r.clone())
            }
            Some(record) => Err(self.diverged(describe(&record.s), describe(&syscall))),
            None => Err(self.diverged("no further syscall".into(), describe(&syscall))),
        }
    }
}
