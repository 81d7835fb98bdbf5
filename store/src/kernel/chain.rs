//! Chain sends: what vats ask the host chain to do. The kernel keeps the
//! block's list in kvStore (`host.chainSends`, a JSON list of `{vat, body}`),
//! removed when a block starts and appended to through the crank buffer, so
//! that an aborted crank's sends vanish with it and the list commits with the
//! block: after a restart it is the record of the last committed block's
//! sends (in cosmic-swingset, a host whose own commit was lost replays them
//! instead of running the block again).

use super::keys;
use crate::error::Result;
use crate::swing_store::SwingStore;
use serde::{Deserialize, Serialize};

/// One chain send of a committed crank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSend {
    pub vat: String,
    pub body: String,
}

/// The chain sends recorded so far (of the block being run, else of the last
/// committed block); none before the first block.
pub(crate) fn read(store: &SwingStore) -> Result<Vec<ChainSend>> {
    match store.kv_get(keys::HOST_CHAIN_SENDS)? {
        None => Ok(Vec::new()),
        Some(text) => Ok(serde_json::from_str(&text)?),
    }
}

/// A new block starts with no chain sends (outside any crank): no key is
/// an empty list, so a block without sends leaves none behind.
pub(crate) fn reset(store: &mut SwingStore) -> Result<()> {
    store.kv_delete(keys::HOST_CHAIN_SENDS)
}

/// Append one send (inside the crank that makes it).
pub(crate) fn record(store: &mut SwingStore, vat: &str, body: &str) -> Result<()> {
    let mut sends = read(store)?;
    sends.push(ChainSend { vat: vat.into(), body: body.into() });
    store.kv_set(keys::HOST_CHAIN_SENDS, &serde_json::to_string(&sends)?)
}
