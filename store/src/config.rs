//! How a store is opened: its design, SQLite settings, and the durability observer.

use std::fmt;
use std::str::FromStr;

/// How the transcript of a vat is handled when the vat is upgraded: the options
/// the seed issue (agoric-sdk #4232) weighs. Recorded at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Design {
    /// Delete the vat's old items; end position 0 (the seed issue's original plan).
    Erase,
    /// End position 0, items kept; the new version overwrites from position 0.
    LengthZero,
    /// Stream writes buffered in memory per crank, written at crank commit; upgrade erases.
    RamBuffer,
    /// The stream name carries a generation counter kept in kvStore; erase is counter + 1.
    Generation,
    /// Upgrade sets start = end; nothing deleted (the fix adopted in 2022).
    StartPosition,
    /// kvStore in the same SQLite database as the streams; one commit, a savepoint per crank.
    Unified,
}

impl Design {
    pub const ALL: [Design; 6] = [
        Design::Erase,
        Design::LengthZero,
        Design::RamBuffer,
        Design::Generation,
        Design::StartPosition,
        Design::Unified,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Design::Erase => "erase",
            Design::LengthZero => "length-zero",
            Design::RamBuffer => "ram-buffer",
            Design::Generation => "generation",
            Design::StartPosition => "start-position",
            Design::Unified => "unified",
        }
    }

    /// Whether kvStore lives in LMDB (every design but `unified`).
    pub fn uses_lmdb(self) -> bool {
        self != Design::Unified
    }
}

impl fmt::Display for Design {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Design {
    type Err = String;
    fn from_str(s: &str) -> Result<Design, String> {
        Design::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| {
            let names: Vec<_> = Design::ALL.iter().map(|d| d.name()).collect();
            format!("unknown design `{s}` (expected one of: {})", names.join(", "))
        })
    }
}

/// SQLite `journal_mode`, set explicitly at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalMode {
    Delete,
    Wal,
}

/// SQLite `synchronous`, set explicitly at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    Off,
    Normal,
    Full,
}

/// A place where durability changes, reported to the [`Observer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// A crank of block `height` is about to start (before it touches any state).
    CrankStart { height: u64, crank: u64 },
    /// Point A: the SQLite COMMIT returned; LMDB not yet committed.
    PointA,
    /// Point B: the LMDB commit returned; the block is durable.
    PointB,
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Point::CrankStart { height, crank } => write!(f, "crank-start(block {height}, crank {crank})"),
            Point::PointA => f.write_str("point-a"),
            Point::PointB => f.write_str("point-b"),
        }
    }
}

/// An observer's request to stop the store at a durability point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stop;

/// Watches the store's durability points. A simulator implements it to crash the
/// store there (by returning `Err`); outside a simulator it is [`NoObserver`].
pub trait Observer {
    /// `Err(Stop)` stops the operation: the store returns `Error::Interrupted`.
    fn reached(&self, point: Point) -> Result<(), Stop>;
}

/// The observer of a store nobody watches: every point passes, at no cost.
pub struct NoObserver;

impl Observer for NoObserver {
    fn reached(&self, _point: Point) -> Result<(), Stop> {
        Ok(())
    }
}

/// A deliberate defect, for proving that a harness catches it. Never on by
/// default: only a caller that names one gets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// Commit LMDB before SQLite (point B before point A).
    LmdbFirst,
    /// SQLite with `synchronous=OFF` whatever the configuration says.
    SqliteSyncOff,
    /// A crank abort keeps its kv writes.
    AbortKeepsKv,
    /// Replay starts at position 0 instead of the span's start.
    ReplayFromZero,
    /// A storage error is recorded on disk, and every later block is refused,
    /// after a restart too: the store never makes progress again.
    PoisonPersists,
}

impl Mutant {
    pub const ALL: [Mutant; 5] = [
        Mutant::LmdbFirst,
        Mutant::SqliteSyncOff,
        Mutant::AbortKeepsKv,
        Mutant::ReplayFromZero,
        Mutant::PoisonPersists,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::LmdbFirst => "lmdb-first",
            Mutant::SqliteSyncOff => "sqlite-sync-off",
            Mutant::AbortKeepsKv => "abort-keeps-kv",
            Mutant::ReplayFromZero => "replay-from-zero",
            Mutant::PoisonPersists => "poison-persists",
        }
    }
}

/// Everything needed to open a store, besides its directory.
pub struct StoreConfig {
    pub design: Design,
    pub journal_mode: JournalMode,
    pub synchronous: Synchronous,
    /// Name of a registered SQLite VFS to use instead of the default one.
    pub sqlite_vfs: Option<String>,
    /// LMDB map size; a multiple of the page size.
    pub lmdb_map_bytes: usize,
    pub observer: Box<dyn Observer>,
    /// A deliberate defect; `None` in every real use.
    pub mutant: Option<Mutant>,
}

impl StoreConfig {
    /// The defaults: a rollback journal with `synchronous=FULL`, the default VFS.
    pub fn new(design: Design) -> StoreConfig {
        StoreConfig {
            design,
            journal_mode: JournalMode::Delete,
            synchronous: Synchronous::Full,
            sqlite_vfs: None,
            lmdb_map_bytes: 64 << 20,
            observer: Box::new(NoObserver),
            mutant: None,
        }
    }
}
