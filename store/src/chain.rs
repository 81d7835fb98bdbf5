//! The host chain around the kernel, in cosmic-swingset's role: it feeds
//! the kernel its blocks and keeps its own state (its height, and what the
//! kernel sent it in each block: the chain sends) in a database of its own,
//! committed after the swing-store: point C, a third commit point after
//! SQLite's (A) and LMDB's (B).
//!
//! On restart the host reads its height H and the kernel's K (the
//! swing-store's `host.height`), as cosmic-swingset does
//! (agoric-sdk golang/cosmos and packages/cosmic-swingset, `launch-chain`):
//! * K = H: both are at the same block; the next is H + 1;
//! * K = H + 1: the kernel committed block K and the host did not: the
//!   block must not run again. The host applies the chain sends the kernel
//!   recorded for it (the "hangover") and commits;
//! * anything else is fatal ("Unimplemented reset state from K to H").
//!
//! A node's home directory holds the swing-store in `swingstore/` and the
//! host's database in `chain/`.

use crate::config::{HostDb, JournalMode, Mutant, Observer, Point, StoreConfig, Synchronous};
use crate::error::{Error, Result};
use crate::kernel::{BlockReport, ChainSend, HostInput, Kernel, KernelConfig};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;

/// The swing-store's directory inside a node's home.
pub const STORE_DIR: &str = "swingstore";
/// The host database's directory inside a node's home.
pub const CHAIN_DIR: &str = "chain";
/// The host's state key of its height.
const HEIGHT_KEY: &str = "height";

/// How the host opens its own database.
pub struct ChainConfig {
    pub engine: HostDb,
    /// Name of a registered SQLite VFS (the SQLite engine), as for the store.
    pub sqlite_vfs: Option<String>,
    pub observer: Box<dyn Observer>,
    pub mutant: Option<Mutant>,
}

/// What the host found at its last open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// Host and kernel at the same height (0: a new node).
    InStep { height: u64 },
    /// The kernel had committed block `height`, the host had not: the host
    /// applied the kernel's record of its `sends` chain sends and committed.
    Hangover { height: u64, sends: usize },
}

/// A node: the host chain and its kernel.
pub struct Chain {
    kernel: Kernel,
    db: ChainDb,
    observer: Box<dyn Observer>,
    mutant: Option<Mutant>,
    reconciled: Reconciled,
}

impl Chain {
    /// Open the node in `home` (created if missing) and reconcile the two
    /// heights (see the module doc).
    pub fn open(home: &Path, store: StoreConfig, kernel: KernelConfig, chain: ChainConfig) -> Result<Chain> {
        std::fs::create_dir_all(home.join(STORE_DIR))?;
        std::fs::create_dir_all(home.join(CHAIN_DIR))?;
        // The two directories exist after a power loss only once their
        // parent is synced (POSIX; the ALICE model).
        std::fs::File::open(home)?.sync_all()?;
        let kernel = Kernel::open(&home.join(STORE_DIR), store, kernel)?;
        let db = ChainDb::open(&home.join(CHAIN_DIR), &chain).map_err(|e| e.relative_to(home))?;
        let (observer, mutant) = (chain.observer, chain.mutant);
        let mut node = Chain { kernel, db, observer, mutant, reconciled: Reconciled::InStep { height: 0 } };
        node.reconciled = node.reconcile()?;
        Ok(node)
    }

    fn reconcile(&mut self) -> Result<Reconciled> {
        let kernel = self.kernel.last_committed_height()?.unwrap_or(0);
        let host = self.db.height()?;
        if kernel == host {
            return Ok(Reconciled::InStep { height: host });
        }
        if kernel != host + 1 {
            return Err(Error::HeightMismatch { kernel, host });
        }
        let sends = match self.mutant {
            Some(Mutant::HangoverSkipped) => Vec::new(),
            _ => self.kernel.recorded_chain_sends()?,
        };
        self.commit_host(kernel, &sends)?;
        Ok(Reconciled::Hangover { height: kernel, sends: sends.len() })
    }

    /// What the last open found.
    pub fn reconciled(&self) -> &Reconciled {
        &self.reconciled
    }

    /// Run block `height` in the kernel (its commit: points A and B), then
    /// commit the host's state with the block's chain sends (point C).
    pub fn run_block(&mut self, height: u64, inputs: &[HostInput]) -> Result<BlockReport> {
        if self.mutant == Some(Mutant::HostCommitFirst) {
            // The defect: the host takes the block as done before the kernel has it.
            self.db.commit(height, &[])?;
        }
        let report = self.kernel.run_block(height, inputs)?;
        self.commit_host(height, &report.chain_sends)?;
        Ok(report)
    }

    /// Commit block `height` and its chain sends in the host's database: point C.
    fn commit_host(&mut self, height: u64, sends: &[ChainSend]) -> Result<()> {
        self.db.commit(height, sends)?;
        match self.observer.reached(Point::PointC) {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::Interrupted(Point::PointC.to_string())),
        }
    }

    pub fn kernel(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    pub fn kernel_ref(&self) -> &Kernel {
        &self.kernel
    }

    /// The host's committed height (0: none yet).
    pub fn host_height(&self) -> Result<u64> {
        self.db.height()
    }

    /// Everything in the host's database, by key.
    pub fn host_state(&self) -> Result<BTreeMap<String, String>> {
        self.db.state()
    }

    /// Close the kernel's store and the host's database for real.
    pub fn close(self) {
        self.kernel.close();
        drop(self.db);
    }
}

/// The height the host's database in `home` holds (0: none), opened on its
/// own, without the kernel: for reading what a disk image would recover.
pub fn read_host_height(home: &Path, engine: HostDb) -> Result<u64> {
    let config = ChainConfig { engine, sqlite_vfs: None, observer: Box::new(crate::NoObserver), mutant: None };
    ChainDb::open(&home.join(CHAIN_DIR), &config)?.height()
}

/// The host's state after block `height` with its chain `sends`: the
/// height, and each send under `out.<height>.<index>` as `<vat>: <body>`.
pub fn host_entries(height: u64, sends: &[ChainSend]) -> Vec<(String, String)> {
    let mut entries = vec![(HEIGHT_KEY.to_string(), height.to_string())];
    for (index, send) in sends.iter().enumerate() {
        entries.push((format!("out.{height:06}.{index:03}"), format!("{}: {}", send.vat, send.body)));
    }
    entries
}

/// The host's database, one of two engines with one table of text pairs.
enum ChainDb {
    Sqlite { conn: Connection, commits_since_checkpoint: u32 },
    Redb(redb::Database),
}

const SQLITE_FILE: &str = "host.sqlite";
const REDB_FILE: &str = "host.redb";
const REDB_TABLE: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("hostState");
/// In WAL mode the host checkpoints every this many commits (and at open).
const CHECKPOINT_EVERY_COMMITS: u32 = 8;

impl ChainDb {
    fn open(dir: &Path, config: &ChainConfig) -> Result<ChainDb> {
        let db = match config.engine {
            HostDb::Sqlite => ChainDb::open_sqlite(dir, config)?,
            HostDb::Redb => ChainDb::open_redb(dir)?,
        };
        // The database file's own entry (neither engine syncs it).
        std::fs::File::open(dir)?.sync_all()?;
        Ok(db)
    }

    /// SQLite in WAL mode with `synchronous=FULL`: durable by its own
    /// documentation and by `cargo xtask durability-matrix`.
    fn open_sqlite(dir: &Path, config: &ChainConfig) -> Result<ChainDb> {
        let path = dir.join(SQLITE_FILE);
        let conn =
            crate::sqlite::open_connection(&path, config.sqlite_vfs.as_deref(), JournalMode::Wal, Synchronous::Full)?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS hostState (key TEXT PRIMARY KEY, value TEXT NOT NULL)")?;
        Ok(ChainDb::Sqlite { conn, commits_since_checkpoint: 0 })
    }

    /// redb's `create` of a new file is not atomic: a crash before its
    /// syncs leaves a file redb refuses to open ("magic number mismatch").
    /// So a new database is made whole under a staging name and renamed into
    /// place, its directory synced (as the store does for LMDB).
    fn open_redb(dir: &Path) -> Result<ChainDb> {
        let path = dir.join(REDB_FILE);
        if !path.exists() {
            let staging = dir.join(format!("{REDB_FILE}.new"));
            let _ = std::fs::remove_file(&staging);
            drop(redb_builder().create(&staging).map_err(|e| redb_error(&staging, e))?);
            std::fs::rename(&staging, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
        }
        let db = redb_builder().open(&path).map_err(|e| redb_error(&path, e))?;
        Ok(ChainDb::Redb(db))
    }

    fn height(&self) -> Result<u64> {
        let text = self.get(HEIGHT_KEY)?;
        let Some(text) = text else { return Ok(0) };
        text.parse().map_err(|_| Error::Invariant(format!("host height is not a number: {text:?}")))
    }

    fn get(&self, key: &str) -> Result<Option<String>> {
        match self {
            ChainDb::Sqlite { conn, .. } => {
                let sql = "SELECT value FROM hostState WHERE key = ?1";
                Ok(conn.query_row(sql, [key], |row| row.get(0)).optional()?)
            }
            ChainDb::Redb(db) => redb_get(db, key).map_err(redb_io),
        }
    }

    /// One transaction: the height and the block's chain sends.
    fn commit(&mut self, height: u64, sends: &[ChainSend]) -> Result<()> {
        let entries = host_entries(height, sends);
        match self {
            ChainDb::Sqlite { conn, commits_since_checkpoint } => {
                let txn = conn.unchecked_transaction()?;
                for (key, value) in &entries {
                    txn.execute("INSERT OR REPLACE INTO hostState VALUES (?1, ?2)", params![key, value])?;
                }
                txn.commit()?;
                *commits_since_checkpoint += 1;
                if *commits_since_checkpoint >= CHECKPOINT_EVERY_COMMITS {
                    *commits_since_checkpoint = 0;
                    crate::sqlite::checkpoint(conn)?;
                }
                Ok(())
            }
            ChainDb::Redb(db) => redb_commit(db, &entries).map_err(redb_io),
        }
    }

    fn state(&self) -> Result<BTreeMap<String, String>> {
        match self {
            ChainDb::Sqlite { conn, .. } => {
                let mut stmt = conn.prepare("SELECT key, value FROM hostState ORDER BY key")?;
                let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
            ChainDb::Redb(db) => redb_state(db).map_err(redb_io),
        }
    }
}

fn redb_builder() -> redb::Builder {
    let mut builder = redb::Database::builder();
    builder.set_cache_size(1 << 20);
    builder
}

fn redb_get(db: &redb::Database, key: &str) -> std::result::Result<Option<String>, redb::Error> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    let table = match txn.open_table(REDB_TABLE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(key)?.map(|value| value.value().to_string()))
}

fn redb_commit(db: &redb::Database, entries: &[(String, String)]) -> std::result::Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(REDB_TABLE)?;
        for (key, value) in entries {
            table.insert(key.as_str(), value.as_str())?;
        }
    }
    // redb's default durability is Immediate: durable when commit returns.
    txn.commit()?;
    Ok(())
}

fn redb_state(db: &redb::Database) -> std::result::Result<BTreeMap<String, String>, redb::Error> {
    use redb::{ReadableDatabase, ReadableTable};
    let txn = db.begin_read()?;
    let table = match txn.open_table(REDB_TABLE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.into()),
    };
    let mut state = BTreeMap::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        state.insert(key.value().to_string(), value.value().to_string());
    }
    Ok(state)
}

/// A redb error at open: one that says the file is not a database is `Corrupt`.
fn redb_error(path: &Path, error: redb::DatabaseError) -> Error {
    let text = error.to_string();
    match text.contains("Not a redb database") || text.contains("corrupt") {
        true => Error::Corrupt { path: path.to_path_buf(), reason: text },
        false => Error::Io(std::io::Error::other(format!("redb: {text}"))),
    }
}

fn redb_io(error: redb::Error) -> Error {
    Error::Io(std::io::Error::other(format!("redb: {error}")))
}
