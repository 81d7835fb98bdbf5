//! Vat transcripts in streamStore, and what each design does on upgrade.

use super::keys;
use super::run_queue::read_u64;
use crate::config::Design;
use crate::error::{Error, Result};
use crate::swing_store::SwingStore;
use crate::vat::TranscriptEntry;

/// The current incarnation's span of a vat's transcript: `[start, end)` of `stream`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub stream: String,
    pub start: u64,
    pub end: u64,
}

pub fn span(store: &SwingStore, vat: &str) -> Result<Span> {
    let generation = match store.design() {
        Design::Generation => Some(read_u64(store, &keys::generation(vat))?),
        _ => None,
    };
    let stream = match generation {
        Some(generation) => format!("transcript-{vat}.g{generation}"),
        None => format!("transcript-{vat}"),
    };
    let start = read_u64(store, &keys::start_position(vat))?;
    let end = read_u64(store, &keys::end_position(vat))?;
    if start > end {
        return Err(Error::Invariant(format!("vat {vat}: transcript start {start} > end {end}")));
    }
    Ok(Span { stream, start, end })
}

/// Append an entry at the end of the span: the item goes to streamStore now
/// (an item past a committed end is harmless), the new end to the crank buffer.
pub(crate) fn append(store: &mut SwingStore, vat: &str, entry: &TranscriptEntry) -> Result<u64> {
    let span = span(store, vat)?;
    store.stream_write(&span.stream, span.end, &entry.encode())?;
    store.kv_set(&keys::end_position(vat), &(span.end + 1).to_string())?;
    Ok(span.end)
}

/// Every entry of the span, in order; a missing or undecodable item is an error.
pub fn read(store: &SwingStore, vat: &str, span: &Span) -> Result<Vec<TranscriptEntry>> {
    let items = store.stream_read(&span.stream, span.start, span.end)?;
    let mut entries = Vec::with_capacity(items.len());
    let mut expected_position = span.start;
    for (position, item) in items {
        if position != expected_position {
            break;
        }
        let entry = TranscriptEntry::decode(&item).map_err(|e| Error::ReplayDiverged {
            vat: vat.into(),
            position,
            expected: "a transcript entry".into(),
            found: format!("{item:?} ({e})"),
        })?;
        entries.push(entry);
        expected_position += 1;
    }
    if expected_position != span.end {
        let (start, end) = (span.start, span.end);
        return Err(Error::TranscriptMissing { vat: vat.into(), position: expected_position, start, end });
    }
    Ok(entries)
}

/// Begin the span of a new incarnation, per the store's design.
pub(crate) fn begin_incarnation(store: &mut SwingStore, vat: &str) -> Result<()> {
    let old = span(store, vat)?;
    match store.design() {
        Design::Erase | Design::RamBuffer | Design::Unified => {
            store.stream_delete(&old.stream)?;
            set_span(store, vat, 0, 0)
        }
        Design::LengthZero => set_span(store, vat, 0, 0),
        Design::Generation => {
            let generation = read_u64(store, &keys::generation(vat))?;
            store.kv_set(&keys::generation(vat), &(generation + 1).to_string())?;
            set_span(store, vat, 0, 0)
        }
        Design::StartPosition => set_span(store, vat, old.end, old.end),
    }
}

fn set_span(store: &mut SwingStore, vat: &str, start: u64, end: u64) -> Result<()> {
    store.kv_set(&keys::start_position(vat), &start.to_string())?;
    store.kv_set(&keys::end_position(vat), &end.to_string())
}
