//! Property tests: random sequences of swing-store operations against an
//! in-memory model of kvStore (database, block buffer, crank buffer) and of
//! streamStore per design.

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use store::{Design, Error, SwingStore};

const KEYS: [&str; 9] = ["a", "ab", "abc", "a.b", "b", "ba", "c", "é", "éa"];
const PREFIXES: [&str; 7] = ["", "a", "ab", "a.", "b", "é", "z"];
const STREAMS: [&str; 2] = ["s1", "s2"];
const POSITIONS: u64 = 6;

#[derive(Clone, Debug)]
enum Op {
    Set(usize, u32),
    Delete(usize),
    Get(usize),
    Scan(usize),
    Write(usize, u64, u32),
    Read(usize, u64, u64),
    DeleteStream(usize),
    Begin,
    CommitCrank,
    Abort,
    Commit,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let stream = 0..STREAMS.len();
    prop_oneof![
        6 => (key.clone(), 0..1000u32).prop_map(|(k, v)| Op::Set(k, v)),
        3 => key.clone().prop_map(Op::Delete),
        3 => key.prop_map(Op::Get),
        2 => (0..PREFIXES.len()).prop_map(Op::Scan),
        5 => (stream.clone(), 0..POSITIONS, 0..1000u32).prop_map(|(s, p, i)| Op::Write(s, p, i)),
        2 => (stream.clone(), 0..POSITIONS + 1, 0..POSITIONS + 2).prop_map(|(s, a, b)| Op::Read(s, a, b)),
        1 => stream.prop_map(Op::DeleteStream),
        3 => Just(Op::Begin),
        2 => Just(Op::CommitCrank),
        2 => Just(Op::Abort),
        2 => Just(Op::Commit),
        1 => Just(Op::Reopen),
    ]
}

type Kv = BTreeMap<String, String>;
type Overlay = BTreeMap<String, Option<String>>;
type Streams = BTreeMap<(String, u64), String>;

/// What the store should look like.
struct Model {
    design: Design,
    db_kv: Kv,
    block_kv: Overlay,
    crank_kv: Option<Overlay>,
    /// Stream items as of the last commit.
    db_streams: Streams,
    /// Stream items as reads see them now.
    streams: Streams,
    /// The stream items when the open crank began.
    crank_start_streams: Option<Streams>,
}

impl Model {
    fn new(design: Design) -> Model {
        Model {
            design,
            db_kv: Kv::new(),
            block_kv: Overlay::new(),
            crank_kv: None,
            db_streams: Streams::new(),
            streams: Streams::new(),
            crank_start_streams: None,
        }
    }

    /// Whether a crank abort undoes the crank's stream writes.
    fn abort_undoes_streams(&self) -> bool {
        matches!(self.design, Design::RamBuffer | Design::Unified)
    }

    fn get(&self, key: &str) -> Option<String> {
        for overlay in [self.crank_kv.as_ref(), Some(&self.block_kv)].into_iter().flatten() {
            if let Some(value) = overlay.get(key) {
                return value.clone();
            }
        }
        self.db_kv.get(key).cloned()
    }

    fn scan(&self, prefix: &str) -> Kv {
        let mut out: Kv = self.db_kv.iter().filter(|(k, _)| k.starts_with(prefix)).map(clone2).collect();
        for overlay in [Some(&self.block_kv), self.crank_kv.as_ref()].into_iter().flatten() {
            for (key, value) in overlay.iter().filter(|(k, _)| k.starts_with(prefix)) {
                match value {
                    Some(value) => out.insert(key.clone(), value.clone()),
                    None => out.remove(key),
                };
            }
        }
        out
    }

    fn pending(&mut self) -> &mut Overlay {
        match &mut self.crank_kv {
            Some(crank) => crank,
            None => &mut self.block_kv,
        }
    }

    fn read(&self, stream: &str, start: u64, end: u64) -> Vec<(u64, String)> {
        self.streams
            .iter()
            .filter(|((s, p), _)| s == stream && (start..end).contains(p))
            .map(|((_, p), item)| (*p, item.clone()))
            .collect()
    }
}

fn clone2((k, v): (&String, &String)) -> (String, String) {
    (k.clone(), v.clone())
}

fn misuse<T: std::fmt::Debug>(result: Result<T, Error>) -> Result<(), TestCaseError> {
    match result {
        Err(Error::Misuse(_)) => Ok(()),
        other => Err(TestCaseError::fail(format!("expected Misuse, got {other:?}"))),
    }
}

/// Apply `ops` to a real store and to the model, comparing every read, and the
/// whole visible state after every operation.
fn check(design: Design, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempdir();
    let mut store: Option<SwingStore> = Some(swing_store(dir.path(), design));
    let mut model = Model::new(design);
    for (i, op) in ops.iter().enumerate() {
        let s = store.as_mut().unwrap();
        match op {
            Op::Set(k, v) => {
                let value = format!("v{v}");
                s.kv_set(KEYS[*k], &value).unwrap();
                model.pending().insert(KEYS[*k].into(), Some(value));
            }
            Op::Delete(k) => {
                s.kv_delete(KEYS[*k]).unwrap();
                model.pending().insert(KEYS[*k].into(), None);
            }
            Op::Get(k) => {
                prop_assert_eq!(s.kv_get(KEYS[*k]).unwrap(), model.get(KEYS[*k]), "op {}", i)
            }
            Op::Scan(p) => prop_assert_eq!(s.kv_scan(PREFIXES[*p]).unwrap(), model.scan(PREFIXES[*p]), "op {}", i),
            Op::Write(st, p, item) => {
                let item = format!("i{item}");
                s.stream_write(STREAMS[*st], *p, &item).unwrap();
                model.streams.insert((STREAMS[*st].into(), *p), item);
            }
            Op::Read(st, a, b) => {
                let got = s.stream_read(STREAMS[*st], *a, *b).unwrap();
                prop_assert_eq!(got, model.read(STREAMS[*st], *a, *b), "op {}", i);
            }
            Op::DeleteStream(st) => {
                s.stream_delete(STREAMS[*st]).unwrap();
                model.streams.retain(|(name, _), _| name != STREAMS[*st]);
            }
            Op::Begin => match model.crank_kv {
                Some(_) => misuse(s.begin_crank())?,
                None => {
                    s.begin_crank().unwrap();
                    model.crank_kv = Some(Overlay::new());
                    model.crank_start_streams = Some(model.streams.clone());
                }
            },
            Op::CommitCrank => match model.crank_kv.take() {
                None => misuse(s.commit_crank())?,
                Some(crank) => {
                    s.commit_crank().unwrap();
                    model.block_kv.extend(crank);
                    model.crank_start_streams = None;
                }
            },
            Op::Abort => match model.crank_kv.take() {
                None => misuse(s.abort_crank())?,
                Some(_) => {
                    s.abort_crank().unwrap();
                    let start = model.crank_start_streams.take().unwrap();
                    if model.abort_undoes_streams() {
                        model.streams = start;
                    }
                }
            },
            Op::Commit => match model.crank_kv {
                Some(_) => misuse(s.commit())?,
                None => {
                    s.commit().unwrap();
                    for (key, value) in std::mem::take(&mut model.block_kv) {
                        match value {
                            Some(value) => model.db_kv.insert(key, value),
                            None => model.db_kv.remove(&key),
                        };
                    }
                    model.db_streams = model.streams.clone();
                }
            },
            Op::Reopen => {
                store.take().unwrap().close();
                store = Some(swing_store(dir.path(), design));
                model.block_kv.clear();
                model.crank_kv = None;
                model.crank_start_streams = None;
                model.streams = model.db_streams.clone();
            }
        }
        let s = store.as_ref().unwrap();
        prop_assert_eq!(s.kv_scan("").unwrap(), model.scan(""), "after op {} {:?}", i, op);
        for stream in STREAMS {
            prop_assert_eq!(s.stream_read(stream, 0, 100).unwrap(), model.read(stream, 0, 100), "after op {}", i);
        }
        prop_assert_eq!(s.crank_writes().is_some(), model.crank_kv.is_some());
    }
    // What survives a final reopen is exactly what was committed.
    store.take().unwrap().close();
    let s = swing_store(dir.path(), design);
    prop_assert_eq!(s.kv_scan("").unwrap(), model.db_kv.clone(), "after the final reopen");
    for stream in STREAMS {
        let committed: Vec<(u64, String)> = model
            .db_streams
            .iter()
            .filter(|((name, _), _)| name == stream)
            .map(|((_, p), item)| (*p, item.clone()))
            .collect();
        prop_assert_eq!(s.stream_read(stream, 0, 100).unwrap(), committed, "after the final reopen");
    }
    Ok(())
}

macro_rules! model_tests {
    ($($name:ident => $design:expr,)*) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(ops in proptest::collection::vec(op(), 1..60)) {
                    check($design, &ops)?;
                }
            )*
        }
    };
}

model_tests! {
    model_erase => Design::Erase,
    model_length_zero => Design::LengthZero,
    model_ram_buffer => Design::RamBuffer,
    model_generation => Design::Generation,
    model_start_position => Design::StartPosition,
    model_unified => Design::Unified,
}
