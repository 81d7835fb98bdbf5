//! Heap snapshots as the kernel uses them: when to save one, which vat uses
//! which (`vNN.lastSnapshot` in kvStore), and which files may go.
//!
//! A vat's worker is saved every `snapshot_interval` deliveries of its
//! span. The record names the snapshot's hash and the transcript position
//! it covers: a rebuild loads it and replays from there. A snapshot file is
//! deleted only after the block that stopped using it is durable (the
//! swing-store deletes it after point B); files a crash left behind (saved
//! in a block that never committed, or a deletion the crash cut short) are
//! removed when the kernel opens.

use super::keys;
use crate::error::{Error, Result};
use crate::snap_store;
use crate::swing_store::SwingStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A vat's current snapshot: its hash, and the transcript position it
/// covers (the first delivery a rebuild replays).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRecord {
    pub hash: String,
    pub position: u64,
}

pub fn record(store: &SwingStore, vat: &str) -> Result<Option<SnapshotRecord>> {
    match store.kv_get(&keys::last_snapshot(vat))? {
        None => Ok(None),
        Some(text) => Ok(Some(serde_json::from_str(&text)?)),
    }
}

pub(crate) fn set_record(store: &mut SwingStore, vat: &str, record: &SnapshotRecord) -> Result<()> {
    store.kv_set(&keys::last_snapshot(vat), &serde_json::to_string(record)?)
}

/// A new incarnation starts without its predecessor's snapshot.
pub(crate) fn drop_record(store: &mut SwingStore, vat: &str) -> Result<()> {
    store.kv_delete(&keys::last_snapshot(vat))
}

/// The hashes of the snapshots `vats` use, as the store reads now.
pub(crate) fn in_use(store: &SwingStore, vats: &[String]) -> Result<BTreeSet<String>> {
    let mut hashes = BTreeSet::new();
    for vat in vats {
        hashes.extend(record(store, vat)?.map(|r| r.hash));
    }
    Ok(hashes)
}

/// Remove every file of the snapshot directory that no vat uses (crash
/// leftovers); returns their names.
pub(crate) fn remove_orphans(store: &mut SwingStore, vats: &[String]) -> Result<Vec<String>> {
    let used = in_use(store, vats)?;
    let mut removed = Vec::new();
    for name in store.snapshot_files()? {
        if snap_store::hash_of(&name).is_some_and(|hash| used.contains(hash)) {
            continue;
        }
        store.snapshot_remove_now(&name)?;
        removed.push(name);
    }
    Ok(removed)
}

/// The record must lie within the vat's span.
pub(crate) fn check_within(vat: &str, record: &SnapshotRecord, start: u64, end: u64) -> Result<()> {
    if record.position < start || record.position > end {
        let position = record.position;
        return Err(Error::Invariant(format!(
            "vat {vat}: snapshot at position {position} outside span {start}..{end}"
        )));
    }
    Ok(())
}
