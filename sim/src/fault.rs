//! The fault model: everything the simulator may do to the store, in one place.
//!
//! # The persistence model (one rule, both databases)
//!
//! Every durable byte of the store goes through one simulated file system
//! ([`crate::disk`]): SQLite's own unix VFS, LMDB and the store's `std::fs`
//! calls alike. It keeps what POSIX requires to survive a power loss and
//! nothing more; the rules, with their sources:
//!
//! 1. **A file's data survives as of its last `fsync` or `fdatasync`**
//!    (POSIX.1-2017 `fsync`: "all data for the open file descriptor ... is to
//!    be transferred to the storage device"; `fdatasync` the same for data and
//!    the metadata needed to read it, such as its length). A write through a
//!    descriptor opened `O_DSYNC`/`O_SYNC` is durable when it returns (POSIX
//!    `open`, "synchronized I/O data integrity completion"): LMDB's meta page.
//! 2. **A directory's entries survive as of that directory's last `fsync`**:
//!    a created, unlinked or renamed name (and a `mkdir`) is not durable
//!    before. Linux `fsync(2)`: "Calling fsync() does not necessarily ensure
//!    that the entry in the directory containing the file has also reached
//!    disk. For that an explicit fsync() on a file descriptor for the
//!    directory is also needed." The ALICE model (Pillai et al., "All File
//!    Systems Are Not Created Equal", OSDI 2014; `alicedefaultfs.py`) makes a
//!    directory entry operation depend only on an fsync of its parent.
//! 3. **Everything else is not guaranteed.** A power loss without `torn`
//!    keeps exactly rules 1 and 2 (the weakest state). With `torn` (and in
//!    exhaustive mode) any subset of the operations not yet made durable may
//!    survive, respecting only what fsync orders, as in ALICE's model:
//!    * every 512-byte sector written since its file's last sync survives,
//!      vanishes or is torn (filled with garbage), as SQLite's own crash test
//!      does (`src/test6.c`); an append may so expose zeros or garbage before
//!      its data; a pending truncation survives or not;
//!    * each pending directory entry operation survives or not: a lost unlink
//!      brings the old file back (with its durable data), a created file may
//!      appear with its data not durable (the rule of its sectors above, so a
//!      never-synced file appears empty or with some of its sectors), and a
//!      rename is three operations (unlink the target's old entry, unlink
//!      the source, link the target), as `alicedefaultfs.py` splits it: the
//!      renamed file may be seen under the new name before its data is
//!      durable, or under neither name.
//!
//!    Where this differs from ALICE: ALICE splits writes at a configurable
//!    block size (we use 512-byte sectors); ALICE crashes between any two
//!    operations, we at durability points (below) with any subset of the
//!    pending operations surviving, which covers the states of the earlier
//!    crashes except the intermediate contents of a sector written twice
//!    between two syncs; ALICE has no `O_DSYNC` (we follow POSIX).
//! 4. **No powersafe overwrite.** A torn sector may garble bytes of it that
//!    were not being written. SQLite's unix VFS assumes otherwise by default
//!    (sqlite.org/psow.html); the simulated device does not promise it, so
//!    SQLite is told (as its `psow=0` option does) and pads its WAL commits.
//! 5. **A process crash keeps everything written**, synced or not: the
//!    kernel's page cache survives the process.
//!
//! SQLite's `-shm` file (the WAL index, rebuilt from the WAL by the first
//! connection) and LMDB's `lock.mdb` (re-initialised by the first process to
//! open the environment) hold no durable state; they are left out of the
//! model and of crash images.
//!
//! # Crash points
//!
//! A run has one *crash-point ordinal* counter. Every place where durability
//! changes is a crash point and takes the next ordinal:
//!
//! * `sqlite-sync`: every fsync of a SQLite file (database, journal, WAL);
//! * `lmdb-sync`: every fdatasync/fsync of LMDB's data file, and every write
//!   through LMDB's O_DSYNC meta-page descriptor (durable as soon as it returns);
//! * `dir-sync`: every fsync of a directory of the node (SQLite's after the
//!   first sync of a new journal or WAL and, under `synchronous=EXTRA`, after
//!   unlinking a journal; the store's and the host's own after they open;
//!   the snapshot directory's before a block commit that refers to a new
//!   snapshot);
//! * `file-sync`: every fsync of a file of the store's own: a heap
//!   snapshot's, before its rename;
//! * `chain-sync`: every fsync of the host's own database (SQLite's WAL and
//!   database file, or redb's file);
//! * `point-a`: the swing-store's SQLite COMMIT has returned, LMDB not yet committed;
//! * `point-b`: the LMDB commit has returned (the block is durable in the
//!   swing-store; the host has not committed it yet);
//! * `point-c`: the host's database has committed the block too;
//! * `snapshot-rename`: a heap snapshot's data is synced, its rename into
//!   place comes next;
//! * `snapshot-delete`: a snapshot nothing uses is about to be deleted
//!   (after point B, or by the cleanup at open);
//! * `crank`: the start of every crank.
//!
//! A crash *at* a point means: the process stops just before that point's
//! durability operation takes effect. The state that survives is frozen
//! there, by the persistence model above:
//!
//! * `power-loss`: rules 1-4 (with `torn`, the subsets of rule 3);
//! * `process-crash`: rule 5.
//!
//! Everything the doomed process does after the crash is discarded: every
//! call of it that would change the disk fails (EIO) until the host has
//! restored the crash image, closing its databases included.
//!
//! # I/O faults ([`FaultKind`])
//!
//! Besides crashes, a run may get I/O faults: the process lives on, one call
//! fails, and the store must stop (no retry, no carrying on half-applied):
//!
//! * `fsync-eio`: an fsync/fdatasync of a file of the node (SQLite's,
//!   LMDB's, a heap snapshot's, the host database's) fails with EIO,
//!   and that file's data written since its last sync is lost, as if power
//!   failed for that file alone: every dirty sector reads as its durable
//!   content again (zeros past the durable end; the file keeps its length,
//!   since LMDB has it mapped). POSIX leaves the data's state after a failed
//!   fsync unspecified; Linux may drop the dirty pages (the "fsyncgate" of
//!   PostgreSQL, 2018);
//! * `enospc`: a write that extends a file (past its current end) fails with
//!   ENOSPC (SQLite: `SQLITE_FULL`), writing nothing;
//! * `write-eio`: a write fails with EIO (SQLite: `SQLITE_IOERR_WRITE`),
//!   writing nothing;
//! * `torn`: at a power loss, unsynced sectors survive, vanish or tear (rule 3);
//! * `stop`: a graceful stop, counted over crank starts: the host stops the
//!   node in the middle of a block as an operator's restart does. The
//!   kernel's block fails there, the node closes the swing-store and the
//!   host's database (no kill), and a new process starts on the disk as it
//!   is. What the block had not committed must not become durable by the
//!   close.
//!
//! A snapshot write that fails stops the block like any storage error (the
//! snapshot's record is part of the block's state, which every node
//! computes alike, so a node may not skip it); the block runs again after
//! the restart.
//!
//! An I/O fault is named like a crash point ([`FaultAt`]): the `nth` operation
//! of its class ([`OpClass`]: syncs, writes, extending writes) while the host
//! runs block `block`, counted from the start of the run or the last crash.
//! Syncs and writes of directories, SQLite's temp and `-shm` files and LMDB's
//! lock file are not counted. After the failed call returns, the host sees
//! the kernel's error and restarts the process on the disk as it is then:
//! what it reads is every file's live image, and nothing becomes durable (a
//! later power loss still loses what was never synced). The dying process
//! can no longer do I/O. Then the checks of a crash recovery apply.
//!
//! A database may absorb a fault (SQLite rolls back, or ignores an error it
//! can afford to) and the kernel still acknowledges its block: the power then
//! fails at once, and the block must survive it (an *absorbed* fault,
//! counted; losing the block is the failure). A seed's faults and crashes end
//! somewhere: after the last, the liveness phase requires every remaining
//! block to complete.
//!
//! Deliberately absent: partial (short) writes, read errors, faults of
//! directory operations, and an I/O fault and a crash at the same call.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What survives a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultMode {
    /// Unsynced writes are lost (or torn, with `torn`).
    PowerLoss,
    /// Everything written survives; only the process dies.
    ProcessCrash,
}

impl FaultMode {
    pub const ALL: [FaultMode; 2] = [FaultMode::PowerLoss, FaultMode::ProcessCrash];

    pub fn name(self) -> &'static str {
        match self {
            FaultMode::PowerLoss => "power-loss",
            FaultMode::ProcessCrash => "process-crash",
        }
    }

    pub fn parse(s: &str) -> Option<FaultMode> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a crash treats the frozen image; decided once per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashSpec {
    pub mode: FaultMode,
    /// Only meaningful with `PowerLoss`: unsynced sectors survive, vanish or tear.
    pub torn: bool,
}

/// The kinds of crash point, in the order the JSON summary names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointKind {
    SqliteSync,
    LmdbSync,
    /// An fsync of a directory of the store.
    DirSync,
    /// An fsync of a file of the store's own (neither SQLite's nor LMDB's):
    /// a heap snapshot's.
    FileSync,
    PointA,
    PointB,
    Crank,
    /// An fsync of the host's own database.
    ChainSync,
    /// The host's database committed the block (after point B).
    PointC,
    /// A heap snapshot is synced and about to be renamed into place.
    SnapshotRename,
    /// A heap snapshot is about to be deleted.
    SnapshotDelete,
}

impl PointKind {
    pub const ALL: [PointKind; 11] = [
        PointKind::SqliteSync,
        PointKind::LmdbSync,
        PointKind::DirSync,
        PointKind::FileSync,
        PointKind::PointA,
        PointKind::PointB,
        PointKind::Crank,
        PointKind::ChainSync,
        PointKind::PointC,
        PointKind::SnapshotRename,
        PointKind::SnapshotDelete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PointKind::SqliteSync => "sqlite-sync",
            PointKind::LmdbSync => "lmdb-sync",
            PointKind::DirSync => "dir-sync",
            PointKind::FileSync => "file-sync",
            PointKind::PointA => "point-a",
            PointKind::PointB => "point-b",
            PointKind::Crank => "crank",
            PointKind::ChainSync => "chain-sync",
            PointKind::PointC => "point-c",
            PointKind::SnapshotRename => "snapshot-rename",
            PointKind::SnapshotDelete => "snapshot-delete",
        }
    }
}

impl fmt::Display for PointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PointKind {
    pub fn parse(s: &str) -> Option<PointKind> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// A crash point as a person names it: the `nth` (from 1) point of kind `at`
/// while the host runs block `block`, counted from the start of the run for the
/// first crash of a plan and from the previous crash for each later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashAt {
    pub at: PointKind,
    pub block: u64,
    pub nth: u64,
}

impl fmt::Display for CrashAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} #{} of block {}", self.at, self.nth, self.block)
    }
}

/// Sector size used for torn writes.
pub const SECTOR_BYTES: usize = 512;

/// What happens to one unsynced sector at a torn power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectorFate {
    Survives,
    Vanishes,
    Torn,
}

/// Returned at a durability point once the run has crashed (there or earlier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crashed;

/// Draw the fate of one unsynced sector at a torn power loss.
pub fn draw_sector_fate(rng: &mut impl rand_core::Rng) -> SectorFate {
    match rng.next_u32() % 3 {
        0 => SectorFate::Survives,
        1 => SectorFate::Vanishes,
        _ => SectorFate::Torn,
    }
}

/// The kinds of fault beyond a plain crash, as `--faults` and the JSON name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    FsyncEio,
    Enospc,
    WriteEio,
    Torn,
    /// The host stops the kernel gracefully at the start of a crank: the
    /// store is closed, not killed (an operator's restart).
    Stop,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] =
        [FaultKind::FsyncEio, FaultKind::Enospc, FaultKind::WriteEio, FaultKind::Torn, FaultKind::Stop];
    /// The kinds injected into a live run at an I/O operation (torn happens
    /// at a crash instead, a graceful stop at a crank's start).
    pub const IO: [FaultKind; 3] = [FaultKind::FsyncEio, FaultKind::Enospc, FaultKind::WriteEio];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::FsyncEio => "fsync-eio",
            FaultKind::Enospc => "enospc",
            FaultKind::WriteEio => "write-eio",
            FaultKind::Torn => "torn",
            FaultKind::Stop => "stop",
        }
    }

    pub fn parse(text: &str) -> Option<FaultKind> {
        Self::ALL.into_iter().find(|k| k.name() == text)
    }

    /// The operations this fault is counted over (`None`: torn, not an operation).
    pub fn class(self) -> Option<OpClass> {
        match self {
            FaultKind::FsyncEio => Some(OpClass::Sync),
            FaultKind::Enospc => Some(OpClass::Extend),
            FaultKind::WriteEio => Some(OpClass::Write),
            FaultKind::Torn => None,
            FaultKind::Stop => Some(OpClass::Crank),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of fault kinds (`--faults`): which kinds a seed may get.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FaultSet(pub std::collections::BTreeSet<FaultKind>);

impl FaultSet {
    pub fn all() -> FaultSet {
        FaultSet(FaultKind::ALL.into_iter().collect())
    }

    pub fn none() -> FaultSet {
        FaultSet(Default::default())
    }

    pub fn contains(&self, kind: FaultKind) -> bool {
        self.0.contains(&kind)
    }

    /// `all`, `none`, or a comma-separated list of kinds.
    pub fn parse(text: &str) -> Result<FaultSet, String> {
        match text.trim() {
            "all" => return Ok(FaultSet::all()),
            "none" => return Ok(FaultSet::none()),
            _ => {}
        }
        let mut set = FaultSet::none();
        for name in text.split(',').map(str::trim) {
            let kind = FaultKind::parse(name).ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault kind `{name}` (expected all, none, or a list of: {})", names.join(", "))
            })?;
            set.0.insert(kind);
        }
        Ok(set)
    }
}

impl Default for FaultSet {
    /// Every kind: faults are on unless narrowed.
    fn default() -> FaultSet {
        FaultSet::all()
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.0.iter().map(|k| k.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// The operations I/O faults are counted over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpClass {
    /// xSync, fdatasync, fsync.
    Sync,
    /// Every write.
    Write,
    /// A write that ends past the file's current end (also counted as a write).
    Extend,
    /// The start of a crank (where a graceful stop may come).
    Crank,
}

/// An I/O fault as a person names it: the `nth` (from 1) operation of the
/// fault's class while the host runs block `block`, counted from the start of
/// the run or the last crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAt {
    pub fault: FaultKind,
    pub block: u64,
    pub nth: u64,
}

impl fmt::Display for FaultAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.fault.class() {
            Some(OpClass::Sync) => "sync",
            Some(OpClass::Write) => "write",
            Some(OpClass::Extend) => "extending write",
            Some(OpClass::Crank) => "crank",
            None => "crash",
        };
        write!(f, "{} at {class} #{} of block {}", self.fault, self.nth, self.block)
    }
}
