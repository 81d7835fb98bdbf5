//! The kernel promise table.

use super::keys;
use super::run_queue::{self, RunQueueEvent};
use crate::error::{Error, Result};
use crate::swing_store::SwingStore;
use crate::vat::Resolution;
use serde::{Deserialize, Serialize};

/// Who may resolve a promise: a vat, or the kernel itself (upgrade results).
pub const KERNEL_DECIDER: &str = "kernel";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromiseState {
    pub decider: String,
    pub subscribers: Vec<String>,
    pub resolution: Option<Resolution>,
}

pub(crate) fn allocate(store: &mut SwingStore, decider: &str) -> Result<String> {
    let next = run_queue::read_u64(store, keys::PROMISE_NEXT_ID)?;
    store.kv_set(keys::PROMISE_NEXT_ID, &(next + 1).to_string())?;
    let id = format!("kp{next}");
    let state = PromiseState { decider: decider.into(), subscribers: Vec::new(), resolution: None };
    write(store, &id, &state)?;
    Ok(id)
}

pub fn read(store: &SwingStore, id: &str) -> Result<PromiseState> {
    let text = store.kv_get(&keys::promise(id))?.ok_or_else(|| Error::Invariant(format!("no promise {id}")))?;
    Ok(serde_json::from_str(&text)?)
}

fn write(store: &mut SwingStore, id: &str, state: &PromiseState) -> Result<()> {
    store.kv_set(&keys::promise(id), &serde_json::to_string(state)?)
}

/// Subscribe `vat`; a settled promise notifies it at once.
pub(crate) fn subscribe(store: &mut SwingStore, id: &str, vat: &str) -> Result<()> {
    let mut state = read(store, id)?;
    if state.resolution.is_some() {
        return run_queue::push(store, &RunQueueEvent::Notify { vat: vat.into(), promise: id.into() });
    }
    if !state.subscribers.iter().any(|s| s == vat) {
        state.subscribers.push(vat.into());
        write(store, id, &state)?;
    }
    Ok(())
}

/// Settle a promise and queue a notify for each subscriber. `Ok(false)` when
/// `decider` may not settle it (already settled, or not its decider).
pub(crate) fn resolve(store: &mut SwingStore, id: &str, decider: &str, resolution: Resolution) -> Result<bool> {
    let mut state = read(store, id)?;
    if state.resolution.is_some() || state.decider != decider {
        return Ok(false);
    }
    for vat in &state.subscribers {
        run_queue::push(store, &RunQueueEvent::Notify { vat: vat.clone(), promise: id.into() })?;
    }
    state.resolution = Some(resolution);
    state.subscribers.clear();
    write(store, id, &state)?;
    Ok(true)
}
