//! Vat transcripts in streamStore, and what each design does on upgrade.

use super::keys;
use super::run_queue::read_u64;
use crate::config::Design;
use crate::error::{Error, Result};
use crate::swing_store::SwingStore;
use crate::vat::TranscriptEntry;
use std::collections::BTreeMap;
use std::sync::Arc;

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

thread_local! {
    static DECODED: std::cell::RefCell<DecodeCache> = std::cell::RefCell::new(DecodeCache::default());
}

/// [`read_cached`] with this thread's cache.
pub(crate) fn read_remembered(store: &SwingStore, vat: &str, span: &Span) -> Result<Vec<Arc<Decoded>>> {
    DECODED.with(|cache| match cache.try_borrow_mut() {
        Ok(mut cache) => read_cached(store, vat, span, &mut cache),
        Err(_) => read_cached(store, vat, span, &mut DecodeCache::default()),
    })
}

/// Every entry of the span, in order; a missing or undecodable item is an error.
pub fn read(store: &SwingStore, vat: &str, span: &Span) -> Result<Vec<TranscriptEntry>> {
    let entries = read_cached(store, vat, span, &mut DecodeCache::default())?;
    Ok(entries.iter().map(|decoded| decoded.entry.clone()).collect())
}

/// A decoded transcript item, with the JSON text of its delivery and of each
/// syscall result, which replay mixes into the vat's heap (`describe` of each:
/// computed once per item rather than at every replay).
pub(crate) struct Decoded {
    pub entry: TranscriptEntry,
    pub delivery: String,
    pub results: Vec<String>,
}

impl Decoded {
    fn new(entry: TranscriptEntry) -> Decoded {
        let delivery = crate::vat::describe(&entry.d);
        let results = entry.sc.iter().map(|record| crate::vat::describe(&record.r)).collect();
        Decoded { entry, delivery, results }
    }
}

/// Decoded transcript items by stream and position, each with the exact text it
/// was decoded from: decoding is a pure function of the text, so an item whose
/// stored text equals the remembered one decodes to the remembered entry. The
/// items are still read from the store every time; only the JSON parse is
/// saved. One per thread, shared by the kernels it runs (exact whatever
/// store an item comes from; bounded).
#[derive(Default)]
pub(crate) struct DecodeCache {
    streams: BTreeMap<String, BTreeMap<u64, (String, Arc<Decoded>)>>,
    len: usize,
}

impl DecodeCache {
    /// Bound on remembered items; past it the cache starts again empty.
    const MAX_ITEMS: usize = 4096;

    /// The entry `item` decodes to.
    fn decode(&mut self, stream: &str, position: u64, item: &str) -> serde_json::Result<Arc<Decoded>> {
        if let Some((text, entry)) = self.streams.get(stream).and_then(|s| s.get(&position)) {
            if text == item {
                return Ok(entry.clone());
            }
        }
        let entry = Arc::new(Decoded::new(TranscriptEntry::decode(item)?));
        if self.len >= Self::MAX_ITEMS {
            self.streams.clear();
            self.len = 0;
        }
        let positions = match self.streams.get_mut(stream) {
            Some(positions) => positions,
            None => self.streams.entry(stream.to_string()).or_default(),
        };
        if positions.insert(position, (item.to_string(), entry.clone())).is_none() {
            self.len += 1;
        }
        Ok(entry)
    }
}

/// [`read`], with decoded items remembered in `cache`.
pub(crate) fn read_cached(
    store: &SwingStore,
    vat: &str,
    span: &Span,
    cache: &mut DecodeCache,
) -> Result<Vec<Arc<Decoded>>> {
    let mut entries = Vec::with_capacity((span.end - span.start) as usize);
    let mut expected_position = span.start;
    // As `read`: every row is read (a row that does not convert fails first),
    // then the items up to the first gap decode in order.
    let mut stopped = false;
    let mut undecodable = None;
    store.stream_visit(&span.stream, span.start, span.end, |position, item| {
        if stopped || position != expected_position {
            stopped = true;
            return Ok(());
        }
        match cache.decode(&span.stream, position, item) {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                stopped = true;
                undecodable = Some(Error::ReplayDiverged {
                    vat: vat.into(),
                    position,
                    expected: "a transcript entry".into(),
                    found: format!("{item:?} ({e})"),
                });
                return Ok(());
            }
        }
        expected_position += 1;
        Ok(())
    })?;
    if let Some(error) = undecodable {
        return Err(error);
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
