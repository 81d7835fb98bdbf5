//! The persistent run queue: events in kvStore between `head` and `tail`.

use super::keys;
use crate::error::{Error, Result};
use crate::swing_store::SwingStore;
use crate::vat::VatParams;
use serde::{Deserialize, Serialize};

/// One run-queue event: one crank processes one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RunQueueEvent {
    CreateVat { vat: String, bundle: String, params: VatParams },
    Send { target: String, method: String, args: Vec<String>, result: Option<String> },
    Notify { vat: String, promise: String },
    UpgradeVat { vat: String, bundle: String, params: VatParams, result: Option<String> },
}

impl RunQueueEvent {
    /// The promise a notify event is of (`None` for any other event).
    pub(crate) fn notified_promise(&self) -> Option<&str> {
        match self {
            RunQueueEvent::Notify { promise, .. } => Some(promise),
            _ => None,
        }
    }
}

pub(crate) fn read_u64(store: &SwingStore, key: &str) -> Result<u64> {
    match store.kv_get(key)? {
        None => Ok(0),
        Some(text) => text.parse().map_err(|_| Error::Invariant(format!("{key} is not a number: {text:?}"))),
    }
}

pub(crate) fn push(store: &mut SwingStore, event: &RunQueueEvent) -> Result<()> {
    let tail = read_u64(store, keys::RUN_QUEUE_TAIL)?;
    store.kv_set(&keys::run_queue_entry(tail), &serde_json::to_string(event)?)?;
    store.kv_set(keys::RUN_QUEUE_TAIL, &(tail + 1).to_string())
}

pub(crate) fn len(store: &SwingStore) -> Result<u64> {
    let head = read_u64(store, keys::RUN_QUEUE_HEAD)?;
    let tail = read_u64(store, keys::RUN_QUEUE_TAIL)?;
    if head > tail {
        return Err(Error::Invariant(format!("run queue head {head} past tail {tail}")));
    }
    Ok(tail - head)
}

/// Remove and return the oldest event (the caller has made sure there is one).
pub(crate) fn pop(store: &mut SwingStore) -> Result<RunQueueEvent> {
    let head = read_u64(store, keys::RUN_QUEUE_HEAD)?;
    let key = keys::run_queue_entry(head);
    let text = store.kv_get(&key)?.ok_or_else(|| Error::Invariant(format!("run queue entry {key} missing")))?;
    store.kv_delete(&key)?;
    store.kv_set(keys::RUN_QUEUE_HEAD, &(head + 1).to_string())?;
    Ok(serde_json::from_str(&text)?)
}
