//! The kernel promise table. A settled promise is retired (its key deleted)
//! once nobody needs it: at resolution when nobody subscribed, else when the
//! last of its queued notifies has been consumed. Every change goes through
//! the crank buffer, so an aborted crank undoes a retirement with the rest.

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
    /// Notifies of this settled promise in the run queue, not yet consumed:
    /// the promise is kept until the last one is.
    #[serde(default)]
    pub notifies: u64,
}

pub(crate) fn allocate(store: &mut SwingStore, decider: &str) -> Result<String> {
    let next = run_queue::read_u64(store, keys::PROMISE_NEXT_ID)?;
    store.kv_set(keys::PROMISE_NEXT_ID, &(next + 1).to_string())?;
    let id = format!("kp{next}");
    let state = PromiseState { decider: decider.into(), subscribers: Vec::new(), resolution: None, notifies: 0 };
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

/// Write a settled promise, or retire it when no notify of it is outstanding.
fn write_settled(store: &mut SwingStore, id: &str, state: &PromiseState) -> Result<()> {
    match state.notifies {
        0 => store.kv_delete(&keys::promise(id)),
        _ => write(store, id, state),
    }
}

fn queue_notify(store: &mut SwingStore, vat: &str, id: &str) -> Result<()> {
    run_queue::push(store, &RunQueueEvent::Notify { vat: vat.into(), promise: id.into() })
}

/// Subscribe `vat`; a settled promise notifies it at once. A vat subscribes
/// only to a promise it holds, which a retired one never is.
pub(crate) fn subscribe(store: &mut SwingStore, id: &str, vat: &str) -> Result<()> {
    let mut state = read(store, id)?;
    if state.resolution.is_some() {
        state.notifies += 1;
        write(store, id, &state)?;
        return queue_notify(store, vat, id);
    }
    if !state.subscribers.iter().any(|s| s == vat) {
        state.subscribers.push(vat.into());
        write(store, id, &state)?;
    }
    Ok(())
}

/// Settle a promise and queue a notify for each subscriber (retired at once
/// if there is none). `Ok(false)` when `decider` may not settle it (already
/// settled, or not its decider).
pub(crate) fn resolve(store: &mut SwingStore, id: &str, decider: &str, resolution: Resolution) -> Result<bool> {
    let mut state = read(store, id)?;
    if state.resolution.is_some() || state.decider != decider {
        return Ok(false);
    }
    let subscribers = std::mem::take(&mut state.subscribers);
    for vat in &subscribers {
        queue_notify(store, vat, id)?;
    }
    state.resolution = Some(resolution);
    state.notifies = subscribers.len() as u64;
    write_settled(store, id, &state)?;
    Ok(true)
}

/// What a queued notify of `id` delivers. A notify must never outlive its
/// promise: a retired or unsettled one is a kernel invariant error.
pub(crate) fn resolution_to_notify(store: &SwingStore, id: &str) -> Result<Resolution> {
    let text = store.kv_get(&keys::promise(id))?;
    let text = text.ok_or_else(|| Error::Invariant(format!("notify of {id}, which is retired")))?;
    let state: PromiseState = serde_json::from_str(&text)?;
    state.resolution.ok_or_else(|| Error::Invariant(format!("notify of {id}, which is unsettled")))
}

/// A notify of `id` was consumed (delivered, or its crank aborted and the
/// event consumed again): one fewer outstanding, the promise retired after
/// the last. Called in the crank that commits the consumption, so that it
/// happens exactly once.
pub(crate) fn notified(store: &mut SwingStore, id: &str) -> Result<()> {
    let mut state = read(store, id)?;
    if state.resolution.is_none() || state.notifies == 0 {
        return Err(Error::Invariant(format!("notify of {id} consumed, but none was outstanding")));
    }
    state.notifies -= 1;
    write_settled(store, id, &state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Design, StoreConfig};

    /// A notify whose crank aborts is consumed again in the fresh crank: the
    /// aborted crank's retirement is undone with it and done once, there;
    /// after it, the promise is gone and a notify of it an invariant error.
    #[test]
    fn notify_consumed_in_an_aborted_crank_retires_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SwingStore::open(dir.path(), StoreConfig::new(Design::StartPosition)).unwrap();
        let id = allocate(&mut store, "v2").unwrap();
        subscribe(&mut store, &id, "v1").unwrap();
        let resolution = Resolution { rejected: false, value: "7".into() };
        assert!(resolve(&mut store, &id, "v2", resolution.clone()).unwrap());
        assert_eq!(read(&store, &id).unwrap().notifies, 1);

        store.begin_crank().unwrap();
        notified(&mut store, &id).unwrap();
        assert!(store.kv_get(&keys::promise(&id)).unwrap().is_none());
        store.abort_crank().unwrap();
        assert_eq!(resolution_to_notify(&store, &id).unwrap(), resolution);

        store.begin_crank().unwrap();
        notified(&mut store, &id).unwrap();
        store.commit_crank().unwrap();
        assert!(store.kv_get(&keys::promise(&id)).unwrap().is_none());
        assert!(matches!(resolution_to_notify(&store, &id), Err(Error::Invariant(_))));
        assert!(matches!(notified(&mut store, &id), Err(Error::Invariant(_))));
    }
}
