//! A database alone on the simulated disk, crashed once: what it does with a
//! setting, observed directly (`cargo xtask durability-matrix`).
//!
//! A probe makes a database durable (created, its directory synced), then
//! commits [`COMMITS`] transactions, each adding a row (some spanning
//! several pages) and setting a counter to the transaction's number; SQLite
//! in WAL mode also checkpoints now and then, as a store must. The process
//! dies at one point of that phase, drawn from the seed among all of them:
//! every durability point (a sync of a file or a directory, an `O_DSYNC`
//! write), every call that changes the disk (so a process may die between
//! two writes of one commit), and just before and after each COMMIT. What
//! survives is the crash image of the [`ProbeMode`]. The database is opened
//! again and read whole:
//!
//! * **corrupts**: it does not open, fails an integrity check or a read, or
//!   holds anything but the rows of a prefix of the transactions with the
//!   counter on the last of them (data that was never written);
//! * **loses commits**: it holds fewer transactions than had returned from
//!   COMMIT before the crash;
//! * **durable**: otherwise.

use crate::disk::fs::{Fs, Image, NothingPending, Torn, TornWhole};
use crate::disk::{self, Injector};
use crate::fault::{Crashed, FaultKind, OpClass, PointKind};
use heed::types::Str;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::fmt;
use std::path::Path;
use store::{JournalMode, LmdbFlags, Synchronous};

/// Transactions a probe commits after its setup.
pub const COMMITS: u64 = 10;
/// SQLite in WAL mode checkpoints after every this many commits.
const CHECKPOINT_EVERY: u64 = 4;

/// The database and setting a probe runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeDb {
    Sqlite {
        journal: JournalMode,
        sync: Synchronous,
    },
    Lmdb {
        flags: LmdbFlags,
    },
    /// redb (the host database's third engine), each commit at `durability`.
    Redb {
        durability: RedbDurability,
    },
}

/// redb's commit durability (`redb::Durability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RedbDurability {
    /// The default: durable when `commit` returns.
    Immediate,
    /// Not durable until a later `Immediate` commit.
    None,
}

impl RedbDurability {
    pub const ALL: [RedbDurability; 2] = [RedbDurability::Immediate, RedbDurability::None];

    pub fn name(self) -> &'static str {
        match self {
            RedbDurability::Immediate => "immediate",
            RedbDurability::None => "none",
        }
    }

    fn parse(text: &str) -> Result<RedbDurability, String> {
        RedbDurability::ALL
            .into_iter()
            .find(|d| d.name() == text)
            .ok_or_else(|| format!("unknown redb durability `{text}` (expected immediate or none)"))
    }
}

impl ProbeDb {
    /// Every setting the node can run with, SQLite's first: each SQLite and
    /// LMDB setting, and redb as the host uses it (`Immediate`). redb's
    /// `Durability::None` is probed only when named (`--setting redb:none`):
    /// see docs/findings.md, "redb".
    pub fn all() -> Vec<ProbeDb> {
        let sqlite = JournalMode::ALL
            .iter()
            .flat_map(|journal| Synchronous::ALL.iter().map(|sync| ProbeDb::Sqlite { journal: *journal, sync: *sync }));
        let lmdb = LmdbFlags::ALL.iter().map(|flags| ProbeDb::Lmdb { flags: *flags });
        let redb = ProbeDb::Redb { durability: RedbDurability::Immediate };
        sqlite.chain(lmdb).chain([redb]).collect()
    }

    /// The setting as one word: `sqlite:wal:full`, `lmdb:nosync`,
    /// `redb:immediate` ([`ProbeDb::parse`] reads it).
    pub fn word(&self) -> String {
        match self {
            ProbeDb::Sqlite { journal, sync } => format!("sqlite:{journal}:{sync}"),
            ProbeDb::Lmdb { flags } => format!("lmdb:{flags}"),
            ProbeDb::Redb { durability } => format!("redb:{}", durability.name()),
        }
    }

    pub fn parse(word: &str) -> Result<ProbeDb, String> {
        let parts: Vec<&str> = word.split(':').collect();
        match parts[..] {
            ["sqlite", journal, sync] => Ok(ProbeDb::Sqlite { journal: journal.parse()?, sync: sync.parse()? }),
            ["lmdb", flags] => Ok(ProbeDb::Lmdb { flags: flags.parse()? }),
            ["redb", durability] => Ok(ProbeDb::Redb { durability: RedbDurability::parse(durability)? }),
            _ => Err(format!("`{word}` is not a probe setting (sqlite:JOURNAL:SYNC, lmdb:FLAGS or redb:DURABILITY)")),
        }
    }
}

impl fmt::Display for ProbeDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeDb::Sqlite { journal, sync } => write!(f, "SQLite journal_mode={journal} synchronous={sync}"),
            ProbeDb::Lmdb { flags } => write!(f, "LMDB {flags}"),
            ProbeDb::Redb { durability } => write!(f, "redb durability={}", durability.name()),
        }
    }
}

/// What survives the probe's crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeMode {
    /// What was made durable, nothing pending.
    PowerLoss,
    /// Any subset of what was pending, sectors torn (the `torn` rule).
    Torn,
    /// As `Torn` on a device whose sector writes are atomic: a sector
    /// survives or vanishes whole, never garbled.
    TornWhole,
    /// Everything written.
    ProcessCrash,
}

impl ProbeMode {
    pub const ALL: [ProbeMode; 4] =
        [ProbeMode::PowerLoss, ProbeMode::Torn, ProbeMode::TornWhole, ProbeMode::ProcessCrash];

    pub fn name(self) -> &'static str {
        match self {
            ProbeMode::PowerLoss => "power-loss",
            ProbeMode::Torn => "torn",
            ProbeMode::TornWhole => "torn-whole-sectors",
            ProbeMode::ProcessCrash => "process-crash",
        }
    }

    pub fn parse(text: &str) -> Result<ProbeMode, String> {
        ProbeMode::ALL.into_iter().find(|m| m.name() == text).ok_or_else(|| format!("unknown probe mode `{text}`"))
    }
}

/// What a database did with a setting, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Never lost a commit it had acknowledged.
    Durable,
    /// Lost acknowledged commits, and always opened consistent.
    LosesCommits,
    /// Could not be opened, or held data that was never written.
    Corrupts,
}

impl Behaviour {
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Durable => "durable",
            Behaviour::LosesCommits => "loses commits",
            Behaviour::Corrupts => "corrupts",
        }
    }
}

/// One probe run's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    pub seed: u64,
    pub behaviour: Behaviour,
    /// Where the process died.
    pub crash: String,
    /// Commits acknowledged before the crash, and found after it.
    pub acknowledged: u64,
    pub found: u64,
    /// What was wrong, for a corruption.
    pub detail: String,
}

/// Run probe `seed` of `db` in `mode`, in `dir` (an existing, empty directory).
pub fn probe(db: ProbeDb, mode: ProbeMode, seed: u64, dir: &Path) -> ProbeOutcome {
    disk::sqlite::register();
    let points = workload_run(db, dir, ProbeInjector::counting(seed)).points;
    let crash_at = ChaCha8Rng::seed_from_u64(seed ^ 0x9_0be).next_u64() % points.max(1);
    let run = workload_run(db, dir, ProbeInjector::crashing(seed, mode, crash_at));
    let (crash, image) = run.crash.expect("the probe crashes at a point it counted");
    let installed = disk::install(dir, Box::new(disk::Passive::default()));
    disk::restore(&image);
    let checked = check(db, dir, run.acknowledged);
    drop(installed);
    let (behaviour, found, detail) = match checked {
        Ok(found) if found < run.acknowledged => (Behaviour::LosesCommits, found, String::new()),
        Ok(found) => (Behaviour::Durable, found, String::new()),
        Err(detail) => (Behaviour::Corrupts, 0, detail),
    };
    ProbeOutcome { seed, behaviour, crash, acknowledged: run.acknowledged, found, detail }
}

/// What one run of the workload saw.
struct WorkloadRun {
    points: u64,
    acknowledged: u64,
    crash: Option<(String, Image)>,
}

/// Set the database up durably, arm the injector, run the commits until the
/// process dies (or to the end), and hand back what the injector saw.
fn workload_run(db: ProbeDb, dir: &Path, injector: ProbeInjector) -> WorkloadRun {
    // SQLite's PRNG (journal nonces, WAL salts) is process-global: the same
    // stream for the counting run and the crashing one.
    disk::sqlite::seed_prng((injector.seed as u32) | 1);
    let installed = disk::install(dir, Box::new(injector));
    let acknowledged = match db {
        ProbeDb::Sqlite { journal, sync } => sqlite_workload(dir, journal, sync),
        ProbeDb::Lmdb { flags } => lmdb_workload(dir, flags),
        ProbeDb::Redb { durability } => redb_workload(dir, durability),
    };
    let injector = installed.finish::<ProbeInjector>().expect("the probe's injector");
    WorkloadRun { points: injector.next, acknowledged, crash: injector.crash }
}

/// The payload of row `i`: every third spans several pages.
fn payload(i: u64) -> String {
    let len = if i.is_multiple_of(3) { 9000 } else { 1500 };
    let unit = format!("{i}:");
    unit.repeat(len / unit.len() + 1)[..len].to_string()
}

/// The database name of the workload's own points.
const PROBE: &str = "probe";

/// A probe point of the workload itself (before or after a COMMIT).
fn app_point(label: &'static str) -> Result<(), Crashed> {
    disk::point(PointKind::Crank, PROBE, label)
}

fn sqlite_open(path: &Path, journal: Option<JournalMode>, sync: Synchronous) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let conn = Connection::open_with_flags_and_vfs(path, flags, disk::sqlite::VFS_NAME)?;
    conn.execute_batch(&format!("PRAGMA synchronous={sync}; PRAGMA wal_autocheckpoint=0"))?;
    if let Some(journal) = journal {
        let mut stmt = conn.prepare(&format!("PRAGMA journal_mode={journal}"))?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    }
    Ok(conn)
}

/// Make `path`'s file and its directory durable (the setup, before the crash window).
fn sync_file_and_dir(path: &Path) {
    for path in [path, path.parent().expect("a directory")] {
        std::fs::File::open(path).and_then(|f| f.sync_all()).expect("the probe's setup syncs");
    }
}

/// The SQLite workload; the commits acknowledged.
fn sqlite_workload(dir: &Path, journal: JournalMode, sync: Synchronous) -> u64 {
    let path = dir.join("probe.sqlite");
    {
        let setup = sqlite_open(&path, None, Synchronous::Full).expect("the probe's setup opens");
        setup
            .execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL); INSERT INTO t VALUES (0, '0');")
            .expect("the probe's setup commits");
        sqlite_open(&path, Some(journal), Synchronous::Full).expect("the probe's setup sets the journal mode");
    }
    sync_file_and_dir(&path);
    disk::with_injector::<ProbeInjector, _>(|p| p.armed = true);
    let Ok(conn) = sqlite_open(&path, Some(journal), sync) else { return 0 };
    let mut acknowledged = 0;
    for i in 1..=COMMITS {
        let body = format!("BEGIN; INSERT INTO t VALUES ({i}, '{}'); UPDATE t SET v = '{i}' WHERE k = 0;", payload(i));
        if conn.execute_batch(&body).is_err() || app_point("before commit").is_err() {
            return acknowledged;
        }
        if conn.execute_batch("COMMIT").is_err() {
            return acknowledged;
        }
        acknowledged = i;
        if app_point("after commit").is_err() {
            return acknowledged;
        }
        if journal == JournalMode::Wal && i.is_multiple_of(CHECKPOINT_EVERY) {
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }
    acknowledged
}

type LmdbTable = Database<'static, Str, Str>;

fn lmdb_open(dir: &Path, flags: LmdbFlags) -> heed::Result<(Env, LmdbTable)> {
    let env_flags = match flags {
        LmdbFlags::Default => EnvFlags::empty(),
        LmdbFlags::NoMetaSync => EnvFlags::NO_META_SYNC,
        LmdbFlags::NoSync => EnvFlags::NO_SYNC,
        LmdbFlags::WriteMap => EnvFlags::WRITE_MAP,
        LmdbFlags::WriteMapAsync => EnvFlags::WRITE_MAP | EnvFlags::MAP_ASYNC,
    };
    let mut options = EnvOpenOptions::new();
    options.map_size(4 << 20).max_dbs(1);
    // SAFETY: one environment per path at a time in this process; the flags
    // trade durability as lmdb.h says, which is what the probe measures.
    let env = unsafe {
        options.flags(env_flags);
        options.open(dir)?
    };
    let wtxn = env.write_txn()?;
    let table = env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener.create_database::<Str, Str>(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
        })?
        .unwrap_commit();
    Ok((env, table))
}

fn lmdb_close(env: Env) {
    env.prepare_for_closing().wait();
}

/// The LMDB workload; the commits acknowledged.
fn lmdb_workload(dir: &Path, flags: LmdbFlags) -> u64 {
    let env_dir = dir.join("env");
    std::fs::create_dir(&env_dir).expect("the probe's setup makes its directory");
    {
        let (env, _) = lmdb_open(&env_dir, LmdbFlags::Default).expect("the probe's setup opens");
        env.force_sync().expect("the probe's setup syncs");
        lmdb_close(env);
    }
    sync_file_and_dir(&env_dir.join("data.mdb"));
    sync_file_and_dir(&env_dir);
    disk::with_injector::<ProbeInjector, _>(|p| p.armed = true);
    let Ok((env, table)) = lmdb_open(&env_dir, flags) else { return 0 };
    let mut acknowledged = 0;
    for i in 1..=COMMITS {
        let written = (|| {
            let mut wtxn = env.write_txn()?;
            table.put(&mut wtxn, &format!("k{i:03}"), &payload(i))?;
            table.put(&mut wtxn, "counter", &i.to_string())?;
            Ok::<_, heed::Error>(wtxn)
        })();
        let Ok(wtxn) = written else { break };
        if app_point("before commit").is_err() {
            break;
        }
        if wtxn.commit().is_err() {
            break;
        }
        acknowledged = i;
        if app_point("after commit").is_err() {
            break;
        }
    }
    lmdb_close(env);
    acknowledged
}

const REDB_TABLE: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("t");

fn redb_open(path: &Path) -> Result<redb::Database, redb::DatabaseError> {
    let mut builder = redb::Database::builder();
    builder.set_cache_size(1 << 20);
    builder.create(path)
}

/// One redb commit of transaction `i`: its row and the counter.
fn redb_commit(db: &redb::Database, i: u64, durability: RedbDurability) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    if durability == RedbDurability::None {
        txn.set_durability(redb::Durability::None)?;
    }
    {
        let mut table = txn.open_table(REDB_TABLE)?;
        table.insert(format!("k{i:03}").as_str(), payload(i).as_str())?;
        table.insert("counter", i.to_string().as_str())?;
    }
    if app_point("before commit").is_err() {
        return Err(redb::Error::Io(std::io::Error::other("crashed")));
    }
    txn.commit()?;
    Ok(())
}

/// The redb workload; the commits acknowledged.
fn redb_workload(dir: &Path, durability: RedbDurability) -> u64 {
    let path = dir.join("probe.redb");
    {
        let db = redb_open(&path).expect("the probe's setup creates");
        let txn = db.begin_write().expect("the probe's setup begins");
        txn.open_table(REDB_TABLE).expect("the probe's setup makes its table");
        txn.commit().expect("the probe's setup commits");
    }
    sync_file_and_dir(&path);
    disk::with_injector::<ProbeInjector, _>(|p| p.armed = true);
    let Ok(db) = redb_open(&path) else { return 0 };
    let mut acknowledged = 0;
    for i in 1..=COMMITS {
        if redb_commit(&db, i, durability).is_err() {
            break;
        }
        acknowledged = i;
        if app_point("after commit").is_err() {
            break;
        }
    }
    acknowledged
}

fn check_redb(dir: &Path) -> Result<u64, String> {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb_open(&dir.join("probe.redb")).map_err(|e| format!("open: {e}"))?;
    let read = (|| {
        let txn = db.begin_read()?;
        let table = txn.open_table(REDB_TABLE)?;
        let mut pairs = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            pairs.push((key.value().to_string(), value.value().to_string()));
        }
        Ok::<_, redb::Error>(pairs)
    })();
    consistent(read.map_err(|e| format!("read: {e}"))?.into_iter())
}

/// Open the database after the crash and read it whole: the transactions it
/// holds, or what is wrong with it.
fn check(db: ProbeDb, dir: &Path, acknowledged: u64) -> Result<u64, String> {
    let found = match db {
        ProbeDb::Sqlite { journal, sync } => check_sqlite(dir, journal, sync),
        ProbeDb::Lmdb { flags } => check_lmdb(dir, flags),
        ProbeDb::Redb { .. } => check_redb(dir),
    }?;
    if found > acknowledged + 1 {
        return Err(format!("{found} transactions found, {acknowledged} acknowledged and one in flight"));
    }
    Ok(found)
}

fn check_sqlite(dir: &Path, journal: JournalMode, sync: Synchronous) -> Result<u64, String> {
    let conn = sqlite_open(&dir.join("probe.sqlite"), Some(journal), sync).map_err(|e| format!("open: {e}"))?;
    let integrity: String =
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| format!("integrity_check: {e}"))?;
    if integrity != "ok" {
        return Err(format!("integrity_check: {integrity}"));
    }
    let mut stmt = conn.prepare("SELECT k, v FROM t ORDER BY k").map_err(|e| format!("read: {e}"))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)));
    let rows: Vec<(i64, String)> =
        rows.and_then(|rows| rows.collect::<rusqlite::Result<_>>()).map_err(|e| format!("read: {e}"))?;
    consistent(rows.into_iter().map(|(k, v)| (if k == 0 { "counter".into() } else { format!("k{k:03}") }, v)))
}

fn check_lmdb(dir: &Path, flags: LmdbFlags) -> Result<u64, String> {
    let (env, table) = lmdb_open(&dir.join("env"), flags).map_err(|e| format!("open: {e}"))?;
    let read = (|| {
        let rtxn = env.read_txn()?;
        let pairs: heed::Result<Vec<(String, String)>> =
            table.iter(&rtxn)?.map(|e| e.map(|(k, v)| (k.to_string(), v.to_string()))).collect();
        pairs
    })();
    lmdb_close(env);
    consistent(read.map_err(|e| format!("read: {e}"))?.into_iter())
}

/// The transactions `pairs` (key, value) hold: the counter `c`, and exactly
/// the rows `k001..=c` with their payloads; anything else is corruption.
fn consistent(pairs: impl Iterator<Item = (String, String)>) -> Result<u64, String> {
    let pairs: Vec<(String, String)> = pairs.collect();
    let counter = pairs.iter().find(|(k, _)| k == "counter").map(|(_, v)| v.clone());
    let counter = counter.unwrap_or_else(|| "0".into());
    let c: u64 = counter.parse().map_err(|_| format!("counter holds {counter:?}"))?;
    let rows: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "counter").collect();
    if rows.len() as u64 != c {
        return Err(format!("counter says {c} transactions, {} rows found", rows.len()));
    }
    for (i, (key, value)) in (1..=c).zip(rows) {
        if *key != format!("k{i:03}") || *value != payload(i) {
            return Err(format!("row {key} does not hold what transaction {i} wrote"));
        }
    }
    Ok(c)
}

/// The probe's injector: counts every point of the armed phase, and (when
/// crashing) dies at one of them, freezing the crash image of its mode.
struct ProbeInjector {
    seed: u64,
    mode: Option<ProbeMode>,
    crash_at: u64,
    armed: bool,
    next: u64,
    crash: Option<(String, Image)>,
    time_ms: i64,
}

impl ProbeInjector {
    fn counting(seed: u64) -> ProbeInjector {
        ProbeInjector { seed, mode: None, crash_at: u64::MAX, armed: false, next: 0, crash: None, time_ms: 0 }
    }

    fn crashing(seed: u64, mode: ProbeMode, crash_at: u64) -> ProbeInjector {
        ProbeInjector { mode: Some(mode), crash_at, ..ProbeInjector::counting(seed) }
    }

    /// A point of the armed phase: `Err` if the process dies here (or died).
    fn point(&mut self, label: String, fs: &Fs) -> Result<(), Crashed> {
        if self.crash.is_some() {
            return Err(Crashed);
        }
        if !self.armed {
            return Ok(());
        }
        let ordinal = self.next;
        self.next += 1;
        let Some(mode) = self.mode.filter(|_| ordinal == self.crash_at) else { return Ok(()) };
        let image = match mode {
            ProbeMode::PowerLoss => fs.surviving(&mut NothingPending),
            ProbeMode::Torn => fs.surviving(&mut Torn(&mut ChaCha8Rng::seed_from_u64(self.seed ^ 0x7_0e2))),
            ProbeMode::TornWhole => fs.surviving(&mut TornWhole(&mut ChaCha8Rng::seed_from_u64(self.seed ^ 0x7_0e2))),
            ProbeMode::ProcessCrash => fs.live_image(),
        };
        self.crash = Some((format!("{label} (point {ordinal})"), image));
        Err(Crashed)
    }
}

impl Injector for ProbeInjector {
    fn durability_point(
        &mut self,
        kind: PointKind,
        database: &'static str,
        file: &str,
        fs: &Fs,
    ) -> Result<(), Crashed> {
        let label = if database == PROBE { format!("the workload {file}") } else { format!("{kind} of {file}") };
        self.point(label, fs)
    }
    fn io_operation(&mut self, _: OpClass, _: bool, _: &'static str, _: &str) -> Option<FaultKind> {
        None
    }
    fn before_change(&mut self, what: &'static str, path: &str, fs: &Fs) -> Result<(), Crashed> {
        self.point(format!("{what} of {path}"), fs)
    }
    fn is_stopped(&self) -> bool {
        self.crash.is_some()
    }
    fn retries_failed_sync(&self) -> bool {
        false
    }
    fn fill_random(&mut self, buf: &mut [u8]) {
        ChaCha8Rng::seed_from_u64(self.seed).fill_bytes(buf);
    }
    fn now_ms(&mut self) -> i64 {
        self.time_ms += 1;
        1_640_995_200_000 + self.time_ms
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}
