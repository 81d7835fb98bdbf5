//! kvStore's backing on LMDB (through heed): one environment, the unnamed database.

use crate::error::{Error, Result};
use heed::types::Str;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RoTxn};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) struct LmdbKv {
    /// `None` only while closing.
    env: Option<Env>,
    db: Database<'static, Str, Str>,
    /// The read transaction every read uses, begun at the first read after the
    /// last commit (this store is the environment's only writer, and `commit`
    /// ends it first, so it always sees the last commit).
    reader: RefCell<Option<RoTxn<'static, heed::WithTls>>>,
}

impl LmdbKv {
    pub(crate) fn open(dir: &Path, map_bytes: usize) -> Result<LmdbKv> {
        std::fs::create_dir_all(dir)?;
        let env = match open_env(dir, map_bytes) {
            Err(heed::Error::Mdb(heed::MdbError::Invalid)) if never_committed(dir)? => {
                // Nothing but zeros: LMDB's first commit never reached the disk (an
                // fsync that failed loses even the meta pages written at creation),
                // so no block was ever committed here. Start the environment afresh.
                remove_if_present(&dir.join(DATA_FILE))?;
                remove_if_present(&dir.join(LOCK_FILE))?;
                open_env(dir, map_bytes)
            }
            opened => opened,
        }
        .map_err(|e| lmdb_open_error(dir, e))?;
        let wtxn = env.write_txn()?;
        let db = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                opener.create_database::<Str, Str>(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
            })?
            .unwrap_commit();
        Ok(LmdbKv { env: Some(env), db, reader: RefCell::new(None) })
    }

    fn env(&self) -> &Env {
        self.env.as_ref().expect("LMDB environment is open until drop")
    }

    /// Run `read` in the current read transaction (begun if there is none).
    fn with_reader<R>(&self, read: impl FnOnce(&RoTxn<'static, heed::WithTls>) -> Result<R>) -> Result<R> {
        let mut reader = self.reader.borrow_mut();
        let txn = match reader.as_ref() {
            Some(txn) => txn,
            None => reader.insert(self.env().clone().static_read_txn()?),
        };
        read(txn)
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<String>> {
        self.with_reader(|rtxn| Ok(self.db.get(rtxn, key)?.map(str::to_owned)))
    }

    pub(crate) fn scan_prefix(&self, prefix: &str) -> Result<BTreeMap<String, String>> {
        self.with_reader(|rtxn| {
            // LMDB rejects a zero-length key, so the empty prefix is a full iteration.
            match prefix {
                "" => collect(self.db.iter(rtxn)?),
                _ => collect(self.db.prefix_iter(rtxn, prefix)?),
            }
        })
    }

    /// Write every change of a block in one LMDB transaction and commit it.
    pub(crate) fn commit(&self, writes: &BTreeMap<String, Option<String>>) -> Result<()> {
        self.reader.borrow_mut().take();
        let mut wtxn = self.env().write_txn()?;
        for (key, value) in writes {
            match value {
                Some(value) => self.db.put(&mut wtxn, key, value)?,
                None => {
                    self.db.delete(&mut wtxn, key)?;
                }
            }
        }
        wtxn.commit()?;
        Ok(())
    }
}

impl Drop for LmdbKv {
    fn drop(&mut self) {
        // Really close, so that the path can be opened again in this process
        // (the read transaction holds the environment too: end it first).
        self.reader.get_mut().take();
        if let Some(env) = self.env.take() {
            env.prepare_for_closing().wait();
        }
    }
}

fn collect<'a>(entries: impl Iterator<Item = heed::Result<(&'a str, &'a str)>>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for entry in entries {
        let (key, value) = entry?;
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

const DATA_FILE: &str = "data.mdb";
const LOCK_FILE: &str = "lock.mdb";

fn open_env(dir: &Path, map_bytes: usize) -> heed::Result<Env> {
    // SAFETY: heed refuses a second open of a path that is open in this process,
    // and this store never opens the same environment from two places.
    unsafe { EnvOpenOptions::new().map_size(map_bytes).max_dbs(1).open(dir) }
}

/// Whether the data file holds zeros only. Read only after LMDB refused the
/// file: a file with any other byte (a meta page, a data page) is not discarded.
fn never_committed(dir: &Path) -> Result<bool> {
    let bytes = std::fs::read(dir.join(DATA_FILE))?;
    Ok(bytes.iter().all(|b| *b == 0))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn lmdb_open_error(dir: &Path, error: heed::Error) -> Error {
    match error {
        heed::Error::Mdb(heed::MdbError::Invalid | heed::MdbError::VersionMismatch | heed::MdbError::Corrupted) => {
            Error::Corrupt { path: dir.join(DATA_FILE), reason: error.to_string() }
        }
        other => Error::Lmdb(other),
    }
}
