//! The swing-store: kvStore (crank buffer, block buffer, LMDB) and streamStore
//! (SQLite), with the two-commit-point protocol of the seed issue.
//!
//! Reads see the crank buffer, then the block buffer, then the database.
//! `commit` runs: SQLite COMMIT, point A, LMDB commit, point B. In the `unified`
//! design kvStore is a table of the SQLite database and there is one commit.

use crate::config::{Design, JournalMode, Mutant, Observer, Point, StoreConfig};
use crate::error::{Error, Result};
use crate::lmdb::LmdbKv;
use crate::snap_store::{self, SnapStore, SnapshotProblem, SNAPSHOT_DIR};
use crate::sqlite::{self, SQLITE_FILE};

/// Where the poison-persists mutation records a storage error (named so that
/// the directory check counts it as the store's).
const POISON_MARKER: &str = "swingstore.sqlite-poisoned";
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Pending kv changes: `None` is a delete.
pub type KvWrites = BTreeMap<String, Option<String>>;

/// A stream write buffered by the `ram-buffer` design until crank commit.
#[derive(Clone, Debug)]
enum StreamOp {
    Write { stream: String, position: u64, item: String },
    Delete { stream: String },
}

/// Name of the crank savepoint of the `unified` design.
const CRANK_SAVEPOINT: &str = "crank";
const SAVEPOINT_CRANK: &str = "SAVEPOINT crank";
const RELEASE_CRANK: &str = "RELEASE crank";

/// Run one statement of no rows, prepared once per connection (the hot
/// BEGIN/COMMIT of every block, and the crank savepoints).
fn execute_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

pub struct SwingStore {
    design: Design,
    journal_mode: JournalMode,
    dir: PathBuf,
    conn: Connection,
    /// `None` in the `unified` design.
    lmdb: Option<LmdbKv>,
    observer: Box<dyn Observer>,
    mutant: Option<Mutant>,
    /// Whether a SQLite transaction is open (opened lazily, closed by commit).
    sqlite_txn_open: bool,
    /// `Some` while a crank is open: that crank's kv writes.
    crank_kv: Option<KvWrites>,
    block_kv: KvWrites,
    /// Stream writes of the open crank (`ram-buffer` design only).
    crank_streams: Vec<StreamOp>,
    poisoned: Option<String>,
    /// Block commits since the WAL was last checkpointed (WAL mode only).
    commits_since_checkpoint: u32,
    /// The block height the next commit records in SQLite (see [`SwingStore::record_height`]).
    pending_height: Option<u64>,
    snaps: SnapStore,
    /// Snapshots to delete once the next block commit is durable.
    doomed_snapshots: Vec<String>,
}

/// In WAL mode the store checkpoints every this many block commits (and at
/// open), so the WAL stays bounded without SQLite's automatic checkpoints.
const CHECKPOINT_EVERY_COMMITS: u32 = 8;

impl SwingStore {
    /// Open the store in `dir` (created if missing), checking the recorded design.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<SwingStore> {
        SwingStore::open_in(dir, config).map_err(|error| error.relative_to(dir))
    }

    fn open_in(dir: &Path, config: StoreConfig) -> Result<SwingStore> {
        check_directory(dir)?;
        std::fs::create_dir_all(dir)?;
        let conn = sqlite::open(&dir.join(SQLITE_FILE), &config)?;
        let lmdb = match config.design.uses_lmdb() {
            true => Some(LmdbKv::open(&dir.join(LMDB_DIR), config.lmdb_map_bytes, config.lmdb_flags, config.mutant)?),
            false => None,
        };
        let snaps = SnapStore::open(dir, config.mutant)?;
        if config.mutant != Some(Mutant::NoDirSync) {
            sync_directories(dir, lmdb.is_some())?;
        }
        Ok(SwingStore {
            design: config.design,
            journal_mode: config.journal_mode,
            dir: dir.to_path_buf(),
            conn,
            lmdb,
            observer: config.observer,
            mutant: config.mutant,
            sqlite_txn_open: false,
            crank_kv: None,
            block_kv: KvWrites::new(),
            crank_streams: Vec::new(),
            poisoned: None,
            commits_since_checkpoint: 0,
            pending_height: None,
            snaps,
            doomed_snapshots: Vec::new(),
        })
    }

    pub fn design(&self) -> Design {
        self.design
    }

    /// The deliberate defect this store was opened with (tests of a harness only).
    pub fn mutant(&self) -> Option<Mutant> {
        self.mutant
    }

    /// Report a durability point to the observer.
    pub fn reached(&mut self, point: Point) -> Result<()> {
        self.check_usable()?;
        if self.observer.reached(point).is_err() {
            return Err(self.poison(Error::Interrupted(point.to_string())));
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Remember that the store is half-applied; every later call fails.
    fn poison(&mut self, error: Error) -> Error {
        if self.poisoned.is_none() {
            self.poisoned = Some(error.to_string());
            let storage_error = !matches!(error, Error::Interrupted(_));
            if self.mutant == Some(Mutant::PoisonPersists) && storage_error {
                let _ = std::fs::write(self.dir.join(POISON_MARKER), error.to_string());
            }
        }
        error
    }

    /// The poison-persists mutation: the storage error an earlier run recorded.
    pub fn recorded_poison(&self) -> Option<String> {
        if self.mutant != Some(Mutant::PoisonPersists) {
            return None;
        }
        std::fs::read_to_string(self.dir.join(POISON_MARKER)).ok()
    }

    /// Run `f`; a storage error poisons the store (no carrying on half-applied).
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.check_usable()?;
        f(self).map_err(|e| self.poison(e))
    }

    fn ensure_sqlite_txn(&mut self) -> Result<()> {
        if !self.sqlite_txn_open {
            execute_cached(&self.conn, "BEGIN")?;
            self.sqlite_txn_open = true;
        }
        Ok(())
    }

    // ---- kvStore ----

    pub fn kv_get(&self, key: &str) -> Result<Option<String>> {
        self.check_usable()?;
        if let Some(value) = self.crank_kv.as_ref().and_then(|c| c.get(key)) {
            return Ok(value.clone());
        }
        if let Some(value) = self.block_kv.get(key) {
            return Ok(value.clone());
        }
        match &self.lmdb {
            Some(lmdb) => lmdb.get(key),
            None => sqlite::kv_get(&self.conn, key),
        }
    }

    /// Every key starting with `prefix`, in key order, as the reads see them.
    pub fn kv_scan(&self, prefix: &str) -> Result<BTreeMap<String, String>> {
        self.check_usable()?;
        let mut out = match &self.lmdb {
            Some(lmdb) => lmdb.scan_prefix(prefix)?,
            None => sqlite::kv_scan_prefix(&self.conn, prefix)?,
        };
        let overlays = [Some(&self.block_kv), self.crank_kv.as_ref()];
        for overlay in overlays.into_iter().flatten() {
            for (key, value) in overlay.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)) {
                match value {
                    Some(value) => out.insert(key.clone(), value.clone()),
                    None => out.remove(key),
                };
            }
        }
        Ok(out)
    }

    pub fn kv_set(&mut self, key: &str, value: &str) -> Result<()> {
        self.check_usable()?;
        self.pending_kv().insert(key.to_string(), Some(value.to_string()));
        Ok(())
    }

    pub fn kv_delete(&mut self, key: &str) -> Result<()> {
        self.check_usable()?;
        self.pending_kv().insert(key.to_string(), None);
        Ok(())
    }

    /// The crank buffer while a crank is open, else the block buffer.
    fn pending_kv(&mut self) -> &mut KvWrites {
        match &mut self.crank_kv {
            Some(crank) => crank,
            None => &mut self.block_kv,
        }
    }

    /// The open crank's kv writes.
    pub fn crank_writes(&self) -> Option<&KvWrites> {
        self.crank_kv.as_ref()
    }

    // ---- streamStore ----

    /// Upsert one item (an item past the end is simply overwritten later).
    pub fn stream_write(&mut self, stream: &str, position: u64, item: &str) -> Result<()> {
        if self.design == Design::RamBuffer && self.crank_kv.is_some() {
            self.check_usable()?;
            let op = StreamOp::Write { stream: stream.into(), position, item: item.into() };
            self.crank_streams.push(op);
            return Ok(());
        }
        self.guarded(|s| {
            s.ensure_sqlite_txn()?;
            sqlite::write_item(&s.conn, stream, position, item)
        })
    }

    /// Delete every item of `stream`.
    pub fn stream_delete(&mut self, stream: &str) -> Result<()> {
        if self.design == Design::RamBuffer && self.crank_kv.is_some() {
            self.check_usable()?;
            self.crank_streams.push(StreamOp::Delete { stream: stream.into() });
            return Ok(());
        }
        self.guarded(|s| {
            s.ensure_sqlite_txn()?;
            sqlite::delete_stream(&s.conn, stream)
        })
    }

    /// Items of `stream` in `[start, end)` that exist, with their positions.
    pub fn stream_read(&self, stream: &str, start: u64, end: u64) -> Result<Vec<(u64, String)>> {
        self.check_usable()?;
        let stored = sqlite::read_items(&self.conn, stream, start, end)?;
        if self.crank_streams.is_empty() {
            return Ok(stored);
        }
        let mut items: BTreeMap<u64, String> = stored.into_iter().collect();
        for op in &self.crank_streams {
            match op {
                StreamOp::Write { stream: s, position, item } if s == stream && (start..end).contains(position) => {
                    items.insert(*position, item.clone());
                }
                StreamOp::Delete { stream: s } if s == stream => items.clear(),
                _ => {}
            }
        }
        Ok(items.into_iter().collect())
    }

    /// [`SwingStore::stream_read`] without copying the items: `visit` sees
    /// each in position order.
    pub fn stream_visit(
        &self,
        stream: &str,
        start: u64,
        end: u64,
        mut visit: impl FnMut(u64, &str) -> Result<()>,
    ) -> Result<()> {
        if !self.crank_streams.is_empty() {
            for (position, item) in self.stream_read(stream, start, end)? {
                visit(position, &item)?;
            }
            return Ok(());
        }
        self.check_usable()?;
        sqlite::visit_items(&self.conn, stream, start, end, visit)
    }

    // ---- snapStore ----

    /// Save a heap snapshot (written, synced, renamed into place; the
    /// rename is made durable by the next block commit). Returns its hash.
    /// A failure stops the block like any storage error: the snapshot's
    /// record in kvStore is part of the block's state, which every node
    /// computes alike, so a node may not skip it for a disk error.
    pub fn snapshot_save(&mut self, bytes: &[u8]) -> Result<String> {
        self.guarded(|s| {
            let (hash, temp) = s.snaps.write_temp(bytes)?;
            if let Some(temp) = temp {
                s.reached(Point::SnapshotRename)?;
                s.snaps.publish(&hash, &temp)?;
            }
            Ok(hash)
        })
    }

    /// The bytes of snapshot `hash`, checked against it; `Ok(Err(..))`: the
    /// snapshot is missing or corrupt.
    pub fn snapshot_load(&self, hash: &str) -> Result<Result<Vec<u8>, SnapshotProblem>> {
        self.check_usable()?;
        self.snaps.load(hash)
    }

    /// Delete these snapshots once the next block commit is durable.
    pub fn delete_snapshots_after_commit(&mut self, hashes: Vec<String>) {
        self.doomed_snapshots.extend(hashes);
    }

    /// Delete a snapshot file now (one nothing durable refers to: the
    /// kernel's cleanup at open, or the snapshot-delete-early mutant).
    pub fn snapshot_remove_now(&mut self, name: &str) -> Result<()> {
        self.guarded(|s| {
            s.reached(Point::SnapshotDelete)?;
            s.snaps.remove(name)
        })
    }

    /// Every file in the snapshot directory, by name, sorted.
    pub fn snapshot_files(&self) -> Result<Vec<String>> {
        self.check_usable()?;
        self.snaps.files()
    }

    /// After a durable commit: delete the snapshots the block stopped
    /// using, and sync the directory. Correctness needs no sync there (a
    /// file that comes back after a power loss is an orphan, which the next
    /// open removes); it keeps deletions from piling up undecided.
    fn delete_doomed_snapshots(&mut self) -> Result<()> {
        let doomed = std::mem::take(&mut self.doomed_snapshots);
        for hash in &doomed {
            self.snapshot_remove_now(&snap_store::file_name(hash))?;
        }
        if doomed.is_empty() {
            return Ok(());
        }
        self.guarded(|s| s.snaps.sync_dir())
    }

    // ---- cranks ----

    pub fn begin_crank(&mut self) -> Result<()> {
        if self.crank_kv.is_some() {
            return Err(Error::Misuse("begin_crank with a crank open".into()));
        }
        self.guarded(|s| {
            if s.design == Design::Unified {
                // BEGIN first: a savepoint outside a transaction would autocommit at release.
                s.ensure_sqlite_txn()?;
                execute_cached(&s.conn, SAVEPOINT_CRANK)?;
            }
            s.crank_kv = Some(KvWrites::new());
            Ok(())
        })
    }

    /// Keep the crank's changes: kv writes into the block buffer, streams per design.
    pub fn commit_crank(&mut self) -> Result<()> {
        let Some(crank) = self.crank_kv.take() else {
            return Err(Error::Misuse("commit_crank with no crank open".into()));
        };
        self.block_kv.extend(crank);
        let ops = std::mem::take(&mut self.crank_streams);
        self.guarded(|s| {
            if s.design == Design::Unified {
                execute_cached(&s.conn, RELEASE_CRANK)?;
            }
            for op in ops {
                s.apply_stream_op(op)?;
            }
            Ok(())
        })
    }

    fn apply_stream_op(&mut self, op: StreamOp) -> Result<()> {
        self.ensure_sqlite_txn()?;
        match op {
            StreamOp::Write { stream, position, item } => sqlite::write_item(&self.conn, &stream, position, &item),
            StreamOp::Delete { stream } => sqlite::delete_stream(&self.conn, &stream),
        }
    }

    /// Discard the crank's kv writes (and, per design, its stream writes).
    pub fn abort_crank(&mut self) -> Result<()> {
        let Some(crank) = self.crank_kv.take() else {
            return Err(Error::Misuse("abort_crank with no crank open".into()));
        };
        if self.mutant == Some(Mutant::AbortKeepsKv) {
            self.block_kv.extend(crank);
        }
        self.crank_streams.clear();
        self.guarded(|s| {
            if s.design == Design::Unified {
                s.conn.execute_batch(&format!("ROLLBACK TO {CRANK_SAVEPOINT}; RELEASE {CRANK_SAVEPOINT}"))?;
            }
            Ok(())
        })
    }

    // ---- the block commit ----

    /// Make the block durable: SQLite COMMIT, point A, LMDB commit, point B.
    pub fn commit(&mut self) -> Result<()> {
        if self.crank_kv.is_some() {
            return Err(Error::Misuse("commit with a crank open".into()));
        }
        // The snapshots this block refers to must exist after a power loss
        // before any database says the block is committed.
        self.guarded(|s| s.snaps.sync_dir())?;
        if self.mutant == Some(Mutant::LmdbFirst) && self.lmdb.is_some() {
            self.commit_lmdb()?;
            self.reached(Point::PointA)?;
            self.commit_sqlite_side()?;
        } else {
            self.commit_sqlite_side()?;
            self.reached(Point::PointA)?;
            self.commit_lmdb()?;
        }
        self.block_kv.clear();
        self.reached(Point::PointB)?;
        self.delete_doomed_snapshots()?;
        self.checkpoint_now_and_then()
    }

    /// After a durable block, checkpoint the WAL if it is due; a failure
    /// poisons the store (the block itself is already durable).
    fn checkpoint_now_and_then(&mut self) -> Result<()> {
        if self.journal_mode != JournalMode::Wal {
            return Ok(());
        }
        self.commits_since_checkpoint += 1;
        if self.commits_since_checkpoint < CHECKPOINT_EVERY_COMMITS {
            return Ok(());
        }
        self.commits_since_checkpoint = 0;
        self.guarded(|s| sqlite::checkpoint(&s.conn))
    }

    /// SQLite COMMIT (with the kv table in the `unified` design).
    fn commit_sqlite_side(&mut self) -> Result<()> {
        self.guarded(|s| {
            s.ensure_sqlite_txn()?;
            if s.design == Design::Unified {
                sqlite::kv_apply(&s.conn, &s.block_kv)?;
            }
            if let Some(height) = s.pending_height.take() {
                sqlite::set_height(&s.conn, height)?;
            }
            s.commit_sqlite()
        })
    }

    /// The next commit is block `height`'s: SQLite records it too, in the
    /// same transaction, so that each database says which block it holds
    /// (kvStore's own record is the kernel's business).
    pub fn record_height(&mut self, height: u64) {
        self.pending_height = Some(height);
    }

    /// The block height SQLite's last commit recorded (`None`: none yet).
    pub fn sqlite_height(&self) -> Result<Option<u64>> {
        self.check_usable()?;
        sqlite::height(&self.conn)
    }

    /// The LMDB commit of the block buffer (nothing in the `unified` design).
    fn commit_lmdb(&mut self) -> Result<()> {
        if self.lmdb.is_none() {
            return Ok(());
        }
        self.guarded(|s| s.lmdb.as_ref().expect("checked above").commit(&s.block_kv))
    }

    fn commit_sqlite(&mut self) -> Result<()> {
        execute_cached(&self.conn, "COMMIT")?;
        self.sqlite_txn_open = false;
        Ok(())
    }

    /// Close both databases for real (LMDB's environment included).
    pub fn close(mut self) {
        if self.mutant == Some(Mutant::CloseCommits) {
            self.commit_on_close();
        }
        drop(self);
    }

    /// The close-commits mutation: whatever the open block wrote is committed
    /// as it stands, the open crank's writes included.
    fn commit_on_close(&mut self) {
        self.poisoned = None;
        if let Some(crank) = self.crank_kv.take() {
            self.block_kv.extend(crank);
        }
        let _ = self.commit_sqlite_side().and_then(|()| self.commit_lmdb());
    }
}

/// LMDB's environment directory inside the store's directory.
const LMDB_DIR: &str = "kv";

/// Make the entries of the store's directories durable: the files SQLite and
/// LMDB created at open (the database file, LMDB's data file and its
/// directory) exist after a power loss only once their directory is synced
/// (POSIX fsync; the ALICE model), and neither database syncs those
/// directories itself (SQLite syncs one only for a new journal or WAL;
/// LMDB never). Done at every open: the first block's commit must not
/// depend on what a later journal's sync happens to carry along.
fn sync_directories(dir: &Path, lmdb: bool) -> Result<()> {
    if lmdb {
        std::fs::File::open(dir.join(LMDB_DIR))?.sync_all()?;
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A directory that holds files but no swing-store database is someone else's.
fn check_directory(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut foreign = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let ours = name == LMDB_DIR
            || name == crate::lmdb::staging_name(LMDB_DIR)
            || name == SNAPSHOT_DIR
            || name.starts_with(SQLITE_FILE);
        if !ours {
            foreign.push(name);
        }
    }
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    let reason = format!("unexpected entries: {}", foreign.join(", "));
    Err(Error::Foreign { path: dir.to_path_buf(), reason })
}
