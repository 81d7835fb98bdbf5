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

/// A setting with a fixed set of names (the ones the database's own
/// documentation uses, lower-cased): parsing and printing in one place.
macro_rules! named_setting {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<$name, String> {
                $name::ALL.iter().copied().find(|v| v.name().eq_ignore_ascii_case(text)).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.name()).collect();
                    format!("unknown {} `{text}` (expected one of: {})", stringify!($name), names.join(", "))
                })
            }
        }
    };
}

named_setting! {
    /// SQLite `journal_mode`, set explicitly at open (sqlite.org/pragma.html#pragma_journal_mode).
    JournalMode {
        Delete => "delete",
        Truncate => "truncate",
        Persist => "persist",
        Memory => "memory",
        Wal => "wal",
        Off => "off",
    }
}

named_setting! {
    /// SQLite `synchronous`, set explicitly at open (sqlite.org/pragma.html#pragma_synchronous).
    Synchronous {
        Off => "off",
        Normal => "normal",
        Full => "full",
        Extra => "extra",
    }
}

named_setting! {
    /// LMDB's environment flags that change durability (lmdb.h, `mdb_env_open`).
    LmdbFlags {
        /// No flag: every commit syncs data pages, then writes the meta page `O_DSYNC`.
        Default => "default",
        /// `MDB_NOMETASYNC`: the meta page is written without a sync.
        NoMetaSync => "nometasync",
        /// `MDB_NOSYNC`: no sync at commit at all.
        NoSync => "nosync",
        /// `MDB_WRITEMAP`: pages are written through a writable shared map.
        WriteMap => "writemap",
        /// `MDB_WRITEMAP | MDB_MAPASYNC`: the map is flushed asynchronously.
        WriteMapAsync => "writemap-mapasync",
    }
}

named_setting! {
    /// The embedded database the host chain keeps its own state in.
    HostDb {
        /// SQLite (WAL, `synchronous=FULL`), a database of its own.
        Sqlite => "sqlite",
        /// redb (<https://www.redb.org>): a third engine. Its design assumes
        /// byte-atomic writes and powersafe overwrite (redb `docs/design.md`,
        /// "Assumptions about underlying media"), more than the simulated
        /// disk promises: see docs/findings.md.
        Redb => "redb",
    }
}

/// A place where durability changes, reported to the [`Observer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// A crank of block `height` is about to start (before it touches any state).
    CrankStart { height: u64, crank: u64 },
    /// Point A: the SQLite COMMIT returned; LMDB not yet committed.
    PointA,
    /// Point B: the LMDB commit returned; the block is durable in the swing-store.
    PointB,
    /// Point C: the host chain's own database committed the block, after the swing-store.
    PointC,
    /// A heap snapshot's data is synced; its rename into place comes next.
    SnapshotRename,
    /// A heap snapshot nothing uses any more is about to be deleted.
    SnapshotDelete,
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Point::CrankStart { height, crank } => write!(f, "crank-start(block {height}, crank {crank})"),
            Point::PointA => f.write_str("point-a"),
            Point::PointB => f.write_str("point-b"),
            Point::PointC => f.write_str("point-c"),
            Point::SnapshotRename => f.write_str("snapshot-rename"),
            Point::SnapshotDelete => f.write_str("snapshot-delete"),
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
    /// The store does not sync its directories after opening: the files the
    /// databases created there may vanish at a power loss.
    NoDirSync,
    /// A storage error is recorded on disk, and every later block is refused,
    /// after a restart too: the store never makes progress again.
    PoisonPersists,
    /// The LMDB commit writes the block's puts in one transaction and its
    /// deletes in a second: a crash between the two leaves deleted keys
    /// alive in a block whose height is committed.
    LmdbDeletesSeparate,
    /// snapStore renames a snapshot into place without syncing its data
    /// first (the 2022 truncated-snapshot bug, fixed by an fsync).
    SnapshotNoFsync,
    /// snapStore never syncs its directory: a snapshot kvStore refers to
    /// may vanish at a power loss.
    SnapshotNoDirSync,
    /// A superseded snapshot is deleted at once, in the block, rather than
    /// after the block is durable (the 2022 snapshot-deleted-before-commit bug).
    SnapshotDeleteEarly,
    /// The host commits its own database before the swing-store's commit.
    HostCommitFirst,
    /// On restart with the kernel one block ahead, the host takes the
    /// kernel's height without replaying the block's chain sends.
    HangoverSkipped,
    /// A graceful stop closes the store by committing what the block had
    /// written so far.
    CloseCommits,
}

impl Mutant {
    pub const ALL: [Mutant; 13] = [
        Mutant::LmdbFirst,
        Mutant::SqliteSyncOff,
        Mutant::AbortKeepsKv,
        Mutant::ReplayFromZero,
        Mutant::NoDirSync,
        Mutant::PoisonPersists,
        Mutant::LmdbDeletesSeparate,
        Mutant::SnapshotNoFsync,
        Mutant::SnapshotNoDirSync,
        Mutant::SnapshotDeleteEarly,
        Mutant::HostCommitFirst,
        Mutant::HangoverSkipped,
        Mutant::CloseCommits,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::LmdbFirst => "lmdb-first",
            Mutant::SqliteSyncOff => "sqlite-sync-off",
            Mutant::AbortKeepsKv => "abort-keeps-kv",
            Mutant::ReplayFromZero => "replay-from-zero",
            Mutant::NoDirSync => "no-dir-sync",
            Mutant::PoisonPersists => "poison-persists",
            Mutant::LmdbDeletesSeparate => "lmdb-deletes-separate",
            Mutant::SnapshotNoFsync => "snapshot-no-fsync",
            Mutant::SnapshotNoDirSync => "snapshot-no-dir-sync",
            Mutant::SnapshotDeleteEarly => "snapshot-delete-early",
            Mutant::HostCommitFirst => "host-commit-first",
            Mutant::HangoverSkipped => "hangover-skipped",
            Mutant::CloseCommits => "close-commits",
        }
    }
}

/// Everything needed to open a store, besides its directory.
pub struct StoreConfig {
    pub design: Design,
    pub journal_mode: JournalMode,
    pub synchronous: Synchronous,
    pub lmdb_flags: LmdbFlags,
    /// Name of a registered SQLite VFS to use instead of the default one.
    pub sqlite_vfs: Option<String>,
    /// LMDB map size; a multiple of the page size.
    pub lmdb_map_bytes: usize,
    pub observer: Box<dyn Observer>,
    /// A deliberate defect; `None` in every real use.
    pub mutant: Option<Mutant>,
}

impl StoreConfig {
    /// The defaults: SQLite in WAL mode with `synchronous=FULL`, LMDB with no
    /// flag, the default VFS. Both are durable by their own documentation and
    /// by `cargo xtask durability-matrix` (docs/findings.md, "Durability of
    /// every setting"); a rollback journal with `synchronous=FULL` is not.
    pub fn new(design: Design) -> StoreConfig {
        StoreConfig {
            design,
            journal_mode: JournalMode::Wal,
            synchronous: Synchronous::Full,
            lmdb_flags: LmdbFlags::Default,
            sqlite_vfs: None,
            lmdb_map_bytes: 64 << 20,
            observer: Box::new(NoObserver),
            mutant: None,
        }
    }
}
