//! A SwingSet-style kernel: a persistent run queue, one crank per event
//! (deliver, notify, create-vat, update-vat), vat workers rebuilt by replay, and
//! one swing-store commit per block with the host's height in it.

mod chain;
pub mod keys;
mod promises;
mod run_queue;
pub mod snapshots;
mod syscalls;
pub mod transcript;
mod workers;

pub use chain::ChainSend;
pub use promises::{PromiseState, KERNEL_DECIDER};
pub use run_queue::RunQueueEvent;
pub use snapshots::SnapshotRecord;
pub use transcript::Span;
pub use workers::WorkerStats;

use crate::config::{Point, StoreConfig};
use crate::error::{Error, Result};
use crate::swing_store::SwingStore;
use crate::vat::{hex16, DeliverError, Delivery, Resolution, TranscriptEntry, VatParams, VatWorker};
use run_queue::read_u64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use syscalls::LiveSyscalls;
use workers::{RebuildFrom, Workers};

/// Feeds formatted text straight into a hash, with no string in between.
struct HashWriter(Sha256);

impl std::fmt::Write for HashWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// Whether `Debug` of `text` escapes nothing but `"` and `\\` (ASCII, no
/// control characters): then [`hash_escaped`] writes exactly its bytes.
fn debug_is_plain(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The inside of `format!("{text:?}")` for a [`debug_is_plain`] text, hashed.
fn hash_escaped(hasher: &mut Sha256, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'"' || *b == b'\\' {
            hasher.update(&bytes[start..i]);
            hasher.update(if *b == b'"' { b"\\\"" } else { b"\\\\" });
            start = i + 1;
        }
    }
    hasher.update(&bytes[start..]);
}

/// Limits of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    /// Workers online at once; the least recently used is evicted beyond it.
    pub max_workers_online: usize,
    /// Cranks per block; events left over wait for the next block.
    pub max_cranks_per_block: u64,
    /// Save a vat's heap as a snapshot every this many deliveries of its
    /// span (`None`: never; rebuilds replay the whole span).
    pub snapshot_interval: Option<u64>,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig { max_workers_online: 2, max_cranks_per_block: 64, snapshot_interval: None }
    }
}

/// What the host feeds into a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HostInput {
    CreateVat { vat: String, bundle: String, params: VatParams },
    Send { target: String, method: String, args: Vec<String> },
    UpgradeVat { vat: String, bundle: String, params: VatParams },
}

/// The outcome of a create-vat or update-vat event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VatOutcome {
    pub vat: String,
    /// "create" or "upgrade".
    pub action: &'static str,
    pub bundle: String,
    /// The new incarnation number, or why the action failed.
    pub result: Result<u64, String>,
}

/// A delivery that a committed crank made, for an oracle that replays vat code
/// without the store. `new_worker` names the bundle evaluated just before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedDelivery {
    pub vat: String,
    pub new_worker: Option<String>,
    pub entry: TranscriptEntry,
}

/// What one block did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockReport {
    pub height: u64,
    pub cranks: u64,
    pub aborted_cranks: u64,
    pub outcomes: Vec<VatOutcome>,
    pub committed: Vec<CommittedDelivery>,
    pub run_queue_left: u64,
    /// The chain sends of the block's committed cranks, in order.
    pub chain_sends: Vec<ChainSend>,
}

/// Everything a check compares about one vat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VatStatus {
    pub vat: String,
    pub source: String,
    pub options: String,
    pub incarnation: u64,
    pub stream: String,
    pub start: u64,
    pub end: u64,
    pub vatstore: BTreeMap<String, String>,
    pub heap_digest: String,
    pub heap_summary: String,
    /// The whole heap as JSON (what `heap_digest` digests).
    pub heap: String,
}

/// A vat's heap rebuilt two ways: from its snapshot (and the span after
/// it), and from the start of its span alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHeaps {
    /// The transcript position the snapshot covers.
    pub position: u64,
    pub from_snapshot: String,
    pub from_span_start: String,
}

/// What a crank decided.
struct CrankOutcome {
    committed: Vec<CommittedDelivery>,
    vat_outcome: Option<VatOutcome>,
    /// `Some`: undo the crank, keep the event consumed, settle this promise.
    abort: Option<Abort>,
}

struct Abort {
    reason: String,
    reject: Option<(String, String)>,
}

impl CrankOutcome {
    fn commit(committed: Vec<CommittedDelivery>) -> CrankOutcome {
        CrankOutcome { committed, vat_outcome: None, abort: None }
    }

    /// A create-vat or update-vat that failed: the crank is undone, the caller told why.
    fn vat_action_failed(
        vat: &str,
        action: &'static str,
        bundle: &str,
        reason: String,
        reject: Option<(String, String)>,
    ) -> CrankOutcome {
        let mut outcome = CrankOutcome::abort(reason.clone(), reject);
        outcome.vat_outcome = Some(VatOutcome { vat: vat.into(), action, bundle: bundle.into(), result: Err(reason) });
        outcome
    }

    fn abort(reason: String, reject: Option<(String, String)>) -> CrankOutcome {
        CrankOutcome { committed: Vec::new(), vat_outcome: None, abort: Some(Abort { reason, reject }) }
    }
}

pub struct Kernel {
    store: SwingStore,
    workers: Workers,
    config: KernelConfig,
    /// Set by a kernel error: the kernel must be reopened.
    failed: Option<String>,
    /// Snapshots saved in the block being run.
    snapshots_saved: BTreeSet<String>,
    /// Snapshot files the open removed: no vat used them (crash leftovers).
    orphans_removed: Vec<String>,
}

impl Kernel {
    pub fn open(dir: &Path, store_config: StoreConfig, config: KernelConfig) -> Result<Kernel> {
        let store = SwingStore::open(dir, store_config)?;
        let workers = Workers::new(config.max_workers_online);
        let mut kernel =
            Kernel { store, workers, config, failed: None, snapshots_saved: BTreeSet::new(), orphans_removed: vec![] };
        let vats = kernel.vat_ids()?;
        kernel.orphans_removed = snapshots::remove_orphans(&mut kernel.store, &vats)?;
        Ok(kernel)
    }

    /// The snapshot files opening the kernel removed (no vat used them).
    pub fn orphans_removed(&self) -> &[String] {
        &self.orphans_removed
    }

    pub fn store(&self) -> &SwingStore {
        &self.store
    }

    pub fn worker_stats(&self) -> WorkerStats {
        WorkerStats { online: self.workers.online().count(), ..self.workers.stats }
    }

    /// The vats whose workers are online now, by name; the others are rebuilt
    /// by replay when next used.
    pub fn workers_online(&self) -> Vec<String> {
        self.workers.online().map(str::to_string).collect()
    }

    /// The height of the last block whose commit is durable (`None`: no block yet).
    pub fn last_committed_height(&self) -> Result<Option<u64>> {
        match self.store.kv_get(keys::HOST_HEIGHT)? {
            None => Ok(None),
            Some(_) => Ok(Some(read_u64(&self.store, keys::HOST_HEIGHT)?)),
        }
    }

    /// The chain sends of the last committed block, as kvStore recorded them.
    pub fn recorded_chain_sends(&self) -> Result<Vec<ChainSend>> {
        chain::read(&self.store)
    }

    /// Queue the host's inputs, run cranks (at most the per-block limit), then
    /// commit the block together with its height.
    pub fn run_block(&mut self, height: u64, inputs: &[HostInput]) -> Result<BlockReport> {
        self.check_alive()?;
        if let Some(reason) = self.store.recorded_poison() {
            return Err(Error::Poisoned(format!("recorded by an earlier run: {reason}")));
        }
        let expected = self.last_committed_height()?.map_or(1, |h| h + 1);
        if height != expected {
            return Err(Error::Misuse(format!("block {height} run, but the next block is {expected}")));
        }
        let result = self.run_block_inner(height, inputs);
        if let Err(error) = &result {
            self.failed = Some(error.to_string());
        }
        result
    }

    fn run_block_inner(&mut self, height: u64, inputs: &[HostInput]) -> Result<BlockReport> {
        let mut report = BlockReport { height, ..BlockReport::default() };
        let snapshots_before = snapshots::in_use(&self.store, &self.vat_ids()?)?;
        chain::reset(&mut self.store)?;
        for input in inputs {
            self.queue_input(input)?;
        }
        for _ in 0..self.config.max_cranks_per_block {
            if run_queue::len(&self.store)? == 0 {
                break;
            }
            self.run_crank(height, &mut report)?;
        }
        report.run_queue_left = run_queue::len(&self.store)?;
        self.retire_snapshots(snapshots_before)?;
        report.chain_sends = chain::read(&self.store)?;
        self.store.kv_set(keys::HOST_HEIGHT, &height.to_string())?;
        self.store.record_height(height);
        self.store.commit()?;
        Ok(report)
    }

    /// Hand the swing-store the snapshots this block stopped using, or saved
    /// and superseded within it: it deletes them once the block is durable.
    fn retire_snapshots(&mut self, before: BTreeSet<String>) -> Result<()> {
        let after = snapshots::in_use(&self.store, &self.vat_ids()?)?;
        let saved = std::mem::take(&mut self.snapshots_saved);
        let doomed = before.union(&saved).filter(|hash| !after.contains(*hash)).cloned().collect();
        self.store.delete_snapshots_after_commit(doomed);
        Ok(())
    }

    /// Save the vat's heap once `snapshot_interval` deliveries of its span
    /// have passed since its last snapshot (or the span's start).
    fn maybe_snapshot(&mut self, vat: &str, worker: &VatWorker) -> Result<()> {
        let Some(interval) = self.config.snapshot_interval else {
            return Ok(());
        };
        let span = transcript::span(&self.store, vat)?;
        let previous = snapshots::record(&self.store, vat)?;
        let covered = previous.as_ref().map_or(span.start, |record| record.position);
        if span.end.saturating_sub(covered) < interval {
            return Ok(());
        }
        let hash = self.store.snapshot_save(&worker.snapshot_bytes())?;
        self.snapshots_saved.insert(hash.clone());
        snapshots::set_record(&mut self.store, vat, &SnapshotRecord { hash, position: span.end })?;
        self.superseded(previous)
    }

    /// A snapshot a newer one of its vat superseded: normally deleted after
    /// the block is durable (see [`Kernel::retire_snapshots`]); the
    /// snapshot-delete-early mutation deletes it now.
    fn superseded(&mut self, previous: Option<SnapshotRecord>) -> Result<()> {
        match previous {
            Some(previous) if self.store.mutant() == Some(crate::Mutant::SnapshotDeleteEarly) => {
                self.store.snapshot_remove_now(&crate::snap_store::file_name(&previous.hash))
            }
            _ => Ok(()),
        }
    }

    fn check_alive(&self) -> Result<()> {
        match &self.failed {
            Some(reason) => Err(Error::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    fn queue_input(&mut self, input: &HostInput) -> Result<()> {
        let event = match input.clone() {
            HostInput::CreateVat { vat, bundle, params } => RunQueueEvent::CreateVat { vat, bundle, params },
            HostInput::Send { target, method, args } => {
                let result = Some(promises::allocate(&mut self.store, &target)?);
                RunQueueEvent::Send { target, method, args, result }
            }
            HostInput::UpgradeVat { vat, bundle, params } => {
                let result = Some(promises::allocate(&mut self.store, KERNEL_DECIDER)?);
                RunQueueEvent::UpgradeVat { vat, bundle, params, result }
            }
        };
        run_queue::push(&mut self.store, &event)
    }

    fn run_crank(&mut self, height: u64, report: &mut BlockReport) -> Result<()> {
        let crank = read_u64(&self.store, keys::CRANK_NUMBER)?;
        self.store.reached(Point::CrankStart { height, crank })?;
        self.store.begin_crank()?;
        let event = run_queue::pop(&mut self.store)?;
        let notified = event.notified_promise().map(str::to_string);
        let outcome = self.process(event)?;
        report.cranks += 1;
        report.outcomes.extend(outcome.vat_outcome);
        match outcome.abort {
            None => report.committed.extend(outcome.committed),
            Some(abort) => {
                report.aborted_cranks += 1;
                self.abort_crank(abort)?;
            }
        }
        // In the crank that commits the event's consumption (the fresh one
        // after an abort): a promise is retired exactly once.
        if let Some(promise) = notified {
            promises::notified(&mut self.store, &promise)?;
        }
        self.finish_crank(crank)
    }

    /// Undo the crank but keep its event consumed, and settle its result promise.
    fn abort_crank(&mut self, abort: Abort) -> Result<()> {
        self.store.abort_crank()?;
        self.store.begin_crank()?;
        run_queue::pop(&mut self.store)?;
        if let Some((promise, decider)) = abort.reject {
            let resolution = Resolution { rejected: true, value: abort.reason };
            promises::resolve(&mut self.store, &promise, &decider, resolution)?;
        }
        Ok(())
    }

    /// Chain the crank's kv changes into the activity hash, then commit the crank.
    fn finish_crank(&mut self, crank: u64) -> Result<()> {
        self.store.kv_set(keys::CRANK_NUMBER, &(crank + 1).to_string())?;
        let previous = self.store.kv_get(keys::ACTIVITY_HASH)?.unwrap_or_default();
        let mut hasher = HashWriter(Sha256::new());
        hasher.0.update(previous.as_bytes());
        for (key, value) in self.store.crank_writes().into_iter().flatten() {
            hash_kv_write(&mut hasher, key, value);
        }
        self.store.kv_set(keys::ACTIVITY_HASH, &hex16(&hasher.0.finalize()))?;
        self.store.commit_crank()
    }

    fn process(&mut self, event: RunQueueEvent) -> Result<CrankOutcome> {
        match event {
            RunQueueEvent::Send { target, method, args, result } => {
                let reject = result.clone().map(|p| (p, target.clone()));
                let delivery = Delivery::Message { method, args, result };
                self.deliver(&target, delivery, reject)
            }
            RunQueueEvent::Notify { vat, promise } => {
                let resolution = promises::resolution_to_notify(&self.store, &promise)?;
                self.deliver(&vat, Delivery::Notify { promise, resolution }, None)
            }
            RunQueueEvent::CreateVat { vat, bundle, params } => self.create_vat(&vat, &bundle, params),
            RunQueueEvent::UpgradeVat { vat, bundle, params, result } => {
                self.upgrade_vat(&vat, &bundle, params, result)
            }
        }
    }

    fn vat_exists(&self, vat: &str) -> Result<bool> {
        Ok(self.store.kv_get(&keys::source(vat))?.is_some())
    }

    /// The vat's worker, rebuilt by replay when offline; `None` if no such vat.
    fn online_worker(&mut self, vat: &str) -> Result<Option<VatWorker>> {
        if let Some(worker) = self.workers.take(vat) {
            return Ok(Some(worker));
        }
        if !self.vat_exists(vat)? {
            return Ok(None);
        }
        workers::rebuild(&self.store, vat, RebuildFrom::LastSnapshot, &mut self.workers).map(Some)
    }

    /// Run one delivery live: the transcript entry, and the vat's error if any.
    fn deliver_live(&mut self, vat: &str, worker: &mut VatWorker, delivery: Delivery) -> Result<TranscriptEntry> {
        let mut sys = LiveSyscalls { store: &mut self.store, vat, records: Vec::new() };
        let outcome = match worker.deliver(&delivery, &mut sys) {
            Ok(()) => None,
            Err(DeliverError::Vat(message)) => Some(message),
            Err(DeliverError::Kernel(error)) => return Err(error),
        };
        Ok(TranscriptEntry { d: delivery, sc: sys.records, r: outcome })
    }

    /// A message or notify: the transcript entry is written whatever the outcome
    /// (an aborted crank leaves an item past the end, overwritten later).
    fn deliver(&mut self, vat: &str, delivery: Delivery, reject: Option<(String, String)>) -> Result<CrankOutcome> {
        let Some(mut worker) = self.online_worker(vat)? else {
            return Ok(CrankOutcome::abort(format!("no such vat {vat}"), reject));
        };
        let entry = self.deliver_live(vat, &mut worker, delivery)?;
        transcript::append(&mut self.store, vat, &entry)?;
        match entry.r.clone() {
            // The worker's heap saw the failed delivery: drop it, replay rebuilds it.
            Some(reason) => Ok(CrankOutcome::abort(reason, reject)),
            None => {
                self.maybe_snapshot(vat, &worker)?;
                self.workers.put(vat, worker);
                Ok(CrankOutcome::commit(vec![CommittedDelivery { vat: vat.into(), new_worker: None, entry }]))
            }
        }
    }

    fn create_vat(&mut self, vat: &str, bundle: &str, params: VatParams) -> Result<CrankOutcome> {
        let failed = |reason: String| Ok(CrankOutcome::vat_action_failed(vat, "create", bundle, reason, None));
        if self.vat_exists(vat)? {
            return failed(format!("vat {vat} exists"));
        }
        self.store.kv_set(&keys::source(vat), bundle)?;
        self.store.kv_set(&keys::options(vat), &serde_json::to_string(&params)?)?;
        self.store.kv_set(&keys::incarnation(vat), "0")?;
        transcript::begin_incarnation(&mut self.store, vat)?;
        let (worker, entry) = match self.start_worker(vat, bundle, params)? {
            Ok(started) => started,
            Err(reason) => return failed(reason),
        };
        let mut vats = self.vat_ids()?;
        vats.push(vat.to_string());
        self.store.kv_set(keys::VATS, &serde_json::to_string(&vats)?)?;
        self.workers.put(vat, worker);
        let committed = vec![CommittedDelivery { vat: vat.into(), new_worker: Some(bundle.into()), entry }];
        let mut outcome = CrankOutcome::commit(committed);
        outcome.vat_outcome =
            Some(VatOutcome { vat: vat.into(), action: "create", bundle: bundle.into(), result: Ok(0) });
        Ok(outcome)
    }

    /// Evaluate a bundle and deliver startVat, appending its entry on success.
    fn start_worker(
        &mut self,
        vat: &str,
        bundle: &str,
        params: VatParams,
    ) -> Result<Result<(VatWorker, TranscriptEntry), String>> {
        let mut worker = match VatWorker::evaluate(bundle) {
            Ok(worker) => worker,
            Err(reason) => return Ok(Err(reason)),
        };
        let entry = self.deliver_live(vat, &mut worker, Delivery::StartVat { params })?;
        if let Some(reason) = entry.r {
            return Ok(Err(reason));
        }
        transcript::append(&mut self.store, vat, &entry)?;
        Ok(Ok((worker, entry)))
    }

    /// update-vat in one crank: stopVat to the old version, new source and
    /// options, a new transcript span per design, startVat to the new version.
    /// Any failure undoes the crank (but for the event's consumption).
    fn upgrade_vat(
        &mut self,
        vat: &str,
        bundle: &str,
        params: VatParams,
        result: Option<String>,
    ) -> Result<CrankOutcome> {
        let failed = |reason: String| {
            let reject = result.clone().map(|p| (p, KERNEL_DECIDER.to_string()));
            Ok(CrankOutcome::vat_action_failed(vat, "upgrade", bundle, reason, reject))
        };
        let Some(mut old) = self.online_worker(vat)? else {
            return failed(format!("no such vat {vat}"));
        };
        let stop = self.deliver_live(vat, &mut old, Delivery::StopVat)?;
        transcript::append(&mut self.store, vat, &stop)?;
        drop(old);
        if let Some(reason) = stop.r.clone() {
            return failed(format!("stopVat failed: {reason}"));
        }
        self.store.kv_set(&keys::source(vat), bundle)?;
        self.store.kv_set(&keys::options(vat), &serde_json::to_string(&params)?)?;
        snapshots::drop_record(&mut self.store, vat)?;
        transcript::begin_incarnation(&mut self.store, vat)?;
        let (worker, start) = match self.start_worker(vat, bundle, params)? {
            Ok(started) => started,
            Err(reason) => return failed(reason),
        };
        let incarnation = read_u64(&self.store, &keys::incarnation(vat))? + 1;
        self.store.kv_set(&keys::incarnation(vat), &incarnation.to_string())?;
        if let Some(promise) = result {
            let resolution = Resolution { rejected: false, value: incarnation.to_string() };
            promises::resolve(&mut self.store, &promise, KERNEL_DECIDER, resolution)?;
        }
        self.workers.put(vat, worker);
        let committed = vec![
            CommittedDelivery { vat: vat.into(), new_worker: None, entry: stop },
            CommittedDelivery { vat: vat.into(), new_worker: Some(bundle.into()), entry: start },
        ];
        let mut outcome = CrankOutcome::commit(committed);
        let result = Ok(incarnation);
        outcome.vat_outcome = Some(VatOutcome { vat: vat.into(), action: "upgrade", bundle: bundle.into(), result });
        Ok(outcome)
    }

    /// The vats created so far, in creation order.
    pub fn vat_ids(&self) -> Result<Vec<String>> {
        match self.store.kv_get(keys::VATS)? {
            None => Ok(Vec::new()),
            Some(text) => Ok(serde_json::from_str(&text)?),
        }
    }

    /// Drop every worker: the next use of each vat rebuilds it by replay.
    pub fn evict_all(&mut self) {
        self.workers.evict_all();
    }

    /// Everything about one vat; rebuilds its worker by replay when offline.
    pub fn vat_status(&mut self, vat: &str) -> Result<VatStatus> {
        self.check_alive()?;
        let Some(worker) = self.online_worker(vat)? else {
            return Err(Error::Misuse(format!("no such vat {vat}")));
        };
        let span = transcript::span(&self.store, vat)?;
        let prefix = keys::vatstore_prefix(vat);
        let vatstore = self.store.kv_scan(&prefix)?.into_iter().map(|(k, v)| (k[prefix.len()..].to_string(), v));
        let status = VatStatus {
            vat: vat.into(),
            source: self.store.kv_get(&keys::source(vat))?.unwrap_or_default(),
            options: self.store.kv_get(&keys::options(vat))?.unwrap_or_default(),
            incarnation: read_u64(&self.store, &keys::incarnation(vat))?,
            stream: span.stream,
            start: span.start,
            end: span.end,
            vatstore: vatstore.collect(),
            heap_digest: worker.heap_digest(),
            heap_summary: worker.heap_summary(),
            heap: worker.heap_json(),
        };
        self.workers.put(vat, worker);
        Ok(status)
    }

    /// For a vat with a snapshot: the transcript position it covers, and the
    /// heap digest of a worker rebuilt from the start of the span without
    /// it (which must equal the heap the snapshot gives, see
    /// [`Kernel::vat_status`]); `None` for a vat without one. The worker
    /// does not go online.
    pub fn heap_without_snapshot(&mut self, vat: &str) -> Result<Option<(u64, String)>> {
        self.check_alive()?;
        let Some(record) = snapshots::record(&self.store, vat)? else {
            return Ok(None);
        };
        let from_start = workers::rebuild(&self.store, vat, RebuildFrom::SpanStart, &mut self.workers)?;
        Ok(Some((record.position, from_start.heap_digest())))
    }

    /// Each item of a vat's current span, as stored: `visit` sees it in place.
    pub fn span_visit(&self, vat: &str, visit: impl FnMut(u64, &str) -> Result<()>) -> Result<()> {
        let span = transcript::span(&self.store, vat)?;
        self.store.stream_visit(&span.stream, span.start, span.end, visit)
    }

    /// The chained hash of every crank's kv changes.
    pub fn activity_hash(&self) -> Result<String> {
        Ok(self.store.kv_get(keys::ACTIVITY_HASH)?.unwrap_or_default())
    }

    /// Close both databases for real.
    pub fn close(self) {
        self.store.close();
    }
}

/// Hash the bytes of `format!("{key}\0{value:?}\n")` without formatting them
/// (the activity hash's definition; the fast path covers plain strings).
fn hash_kv_write(hasher: &mut HashWriter, key: &str, value: &Option<String>) {
    hasher.0.update(key.as_bytes());
    hasher.0.update(b"\0");
    match value {
        Some(value) if debug_is_plain(value) => {
            hasher.0.update(b"Some(\"");
            hash_escaped(&mut hasher.0, value);
            hasher.0.update(b"\")\n");
        }
        None => hasher.0.update(b"None\n"),
        value => {
            let _ = writeln!(hasher, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The activity hash's fast path hashes exactly the bytes of `format!`.
    #[test]
    fn hashed_debug_matches_format() {
        for value in [
            None,
            Some(""),
            Some("plain"),
            Some(r#"{"a":"b\"c","d":"e\\f"}"#),
            Some("tab\tnew\nline"),
            Some("é ü ✓"),
            Some("quote ' and \u{7f}"),
        ] {
            let value = value.map(str::to_string);
            let mut fast = HashWriter(Sha256::new());
            hash_kv_write(&mut fast, "key", &value);
            let expected = Sha256::digest(format!("key\0{value:?}\n").as_bytes());
            assert_eq!(fast.0.finalize(), expected, "{value:?}");
        }
    }
}
