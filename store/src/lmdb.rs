//! kvStore's backing on LMDB (through heed): one environment, the unnamed database.

use crate::config::{LmdbFlags, Mutant};
use crate::error::{Error, Result};
use heed::types::Str;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, RoTxn};
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
    /// The lmdb-deletes-separate mutation: puts and deletes in two commits.
    deletes_separate: bool,
}

impl LmdbKv {
    pub(crate) fn open(dir: &Path, map_bytes: usize, flags: LmdbFlags, mutant: Option<Mutant>) -> Result<LmdbKv> {
        if !dir.exists() {
            create_env(dir, map_bytes, flags)?;
        }
        let env = open_env(dir, map_bytes, flags).map_err(|e| lmdb_open_error(dir, e))?;
        let db = create_main_db(&env)?;
        // What the store reads must be durable before it builds on it (as
        // with SQLite's WAL and journal at open). When LMDB's O_DSYNC write
        // of a meta page fails, it writes "some old data back" to that page
        // through its ordinary descriptor (mdb_env_write_meta, mdb.c): a
        // write nothing syncs, which a power loss may tear, and LMDB refuses
        // an environment with a malformed meta page (MDB_INVALID).
        env.force_sync()?;
        let deletes_separate = mutant == Some(Mutant::LmdbDeletesSeparate);
        Ok(LmdbKv { env: Some(env), db, reader: RefCell::new(None), deletes_separate })
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

    /// Write every change of a block in one LMDB transaction and commit it
    /// (the mutation: the puts in one, then the deletes in another).
    pub(crate) fn commit(&self, writes: &BTreeMap<String, Option<String>>) -> Result<()> {
        self.reader.borrow_mut().take();
        if self.deletes_separate {
            self.commit_some(writes, |value| value.is_some())?;
            return self.commit_some(writes, |value| value.is_none());
        }
        self.commit_some(writes, |_| true)
    }

    /// Commit, in one transaction, the writes whose value `include` accepts.
    fn commit_some(
        &self,
        writes: &BTreeMap<String, Option<String>>,
        include: impl Fn(&Option<String>) -> bool,
    ) -> Result<()> {
        let mut wtxn = self.env().write_txn()?;
        for (key, value) in writes.iter().filter(|(_, value)| include(value)) {
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

fn open_env(dir: &Path, map_bytes: usize, flags: LmdbFlags) -> heed::Result<Env> {
    let env_flags = match flags {
        LmdbFlags::Default => EnvFlags::empty(),
        LmdbFlags::NoMetaSync => EnvFlags::NO_META_SYNC,
        LmdbFlags::NoSync => EnvFlags::NO_SYNC,
        LmdbFlags::WriteMap => EnvFlags::WRITE_MAP,
        LmdbFlags::WriteMapAsync => EnvFlags::WRITE_MAP | EnvFlags::MAP_ASYNC,
    };
    let mut options = EnvOpenOptions::new();
    options.map_size(map_bytes).max_dbs(1);
    // SAFETY: heed refuses a second open of a path that is open in this process,
    // and this store never opens the same environment from two places. The
    // flags trade durability as lmdb.h documents; the store never writes
    // through the map itself (WRITEMAP's "wild pointer" hazard).
    unsafe {
        options.flags(env_flags);
        options.open(dir)
    }
}

/// Where a new environment is made before it takes its place.
fn staging_dir(dir: &Path) -> std::path::PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(staging_name(&name))
}

/// Create the environment `dir` whole or not at all. LMDB writes a new
/// environment's meta pages without a sync, creates its files without syncing
/// their directory, and a commit with nothing to write syncs nothing: a power
/// loss before the first block's commit could leave a data file LMDB refuses
/// (MDB_INVALID, torn meta pages), or none. So the environment is made in a
/// staging directory, synced (data file, then the directory), and renamed
/// into place; the caller syncs the parent. A staging directory left by a
/// crash is discarded.
fn create_env(dir: &Path, map_bytes: usize, flags: LmdbFlags) -> Result<()> {
    let staging = staging_dir(dir);
    match std::fs::remove_dir_all(&staging) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    std::fs::create_dir(&staging)?;
    let env = open_env(&staging, map_bytes, flags).map_err(|e| lmdb_open_error(&staging, e))?;
    let synced = create_main_db(&env).and_then(|_| Ok(env.force_sync()?));
    env.prepare_for_closing().wait();
    synced?;
    std::fs::File::open(&staging)?.sync_all()?;
    std::fs::rename(&staging, dir)?;
    Ok(())
}

/// The environment's main (unnamed) database.
fn create_main_db(env: &Env) -> Result<Database<'static, Str, Str>> {
    let wtxn = env.write_txn()?;
    let db = env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener.create_database::<Str, Str>(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
        })?
        .unwrap_commit();
    Ok(db)
}

/// The name of the staging directory a crash may leave beside `dir`.
pub(crate) fn staging_name(dir_name: &str) -> String {
    format!("{dir_name}.new")
}

fn lmdb_open_error(dir: &Path, error: heed::Error) -> Error {
    match error {
        heed::Error::Mdb(heed::MdbError::Invalid | heed::MdbError::VersionMismatch | heed::MdbError::Corrupted) => {
            Error::Corrupt { path: dir.join(DATA_FILE), reason: error.to_string() }
        }
        other => Error::Lmdb(other),
    }
}
