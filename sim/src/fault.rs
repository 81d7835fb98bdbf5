//! The fault model: everything the simulator may do to the store, in one place.
//!
//! A run has one *crash-point ordinal* counter. Every place where durability
//! changes is a crash point and takes the next ordinal:
//!
//! * `sqlite-sync`: every xSync the SQLite VFS receives (journal or database);
//! * `lmdb-sync`: every fdatasync/fsync of an LMDB file, and every write through
//!   LMDB's O_DSYNC meta-page descriptor (durable as soon as it returns);
//! * `point-a`: the swing-store's SQLite COMMIT has returned, LMDB not yet committed;
//! * `point-b`: the LMDB commit has returned (the block is durable);
//! * `crank`: the start of every crank.
//!
//! A crash *at* a point means: the process stops just before that point's
//! durability operation takes effect. The state that survives is frozen there:
//!
//! * `power-loss`: each file as of its last sync. A file never synced does not
//!   exist. With `torn`, every 512-byte sector written since the last sync
//!   independently survives, vanishes, or is torn (filled with seeded garbage),
//!   as SQLite's own crash test does.
//! * `process-crash`: everything written survives, synced or not.
//!
//! Everything the doomed run does after the crash is discarded: from then on
//! every durability point fails (EIO / SQLITE_IOERR) so the run stops quickly,
//! and its later writes never reach the frozen image. Directory entries are not
//! modelled separately: a file exists after power loss iff it was synced once.
//!
//! # I/O faults ([`FaultKind`])
//!
//! Besides crashes, a run may get I/O faults: the process lives on, one call
//! fails, and the store must stop (no retry, no carrying on half-applied):
//!
//! * `fsync-eio`: an xSync of a SQLite file or an `fdatasync`/`fsync` of LMDB's
//!   data file fails with EIO, and that file's data written since its last
//!   sync is lost, as if power failed for that file alone: every dirty sector
//!   reads as its durable content again (zeros past the durable end; the file
//!   keeps its length, since LMDB has it mapped);
//! * `enospc`: a write that extends a file (past its current end) fails with
//!   ENOSPC (SQLite: `SQLITE_FULL`), writing nothing;
//! * `write-eio`: a write fails with EIO (SQLite: `SQLITE_IOERR_WRITE`),
//!   writing nothing;
//! * `torn`: at a power loss, unsynced sectors survive, vanish or tear (above).
//!
//! An I/O fault is named like a crash point ([`FaultAt`]): the `nth` operation
//! of its class ([`OpClass`]: syncs, writes, extending writes) while the host
//! runs block `block`, counted from the start of the run or the last crash.
//! Syncs and writes of SQLite's temp files and LMDB's lock file are not
//! counted. After the failed call returns, the host sees the kernel's error
//! and restarts the process on the disk as it is then: what it reads is every
//! file's live image, and nothing becomes durable (a later power loss still
//! loses what was never synced). The dying process can no longer do I/O. Then
//! the checks of a crash recovery apply. A seed's faults and crashes end
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
    /// An fsync of a file of the store's own (neither SQLite's nor LMDB's).
    FileSync,
    PointA,
    PointB,
    Crank,
}

impl PointKind {
    pub const ALL: [PointKind; 7] = [
        PointKind::SqliteSync,
        PointKind::LmdbSync,
        PointKind::DirSync,
        PointKind::FileSync,
        PointKind::PointA,
        PointKind::PointB,
        PointKind::Crank,
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
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [FaultKind::FsyncEio, FaultKind::Enospc, FaultKind::WriteEio, FaultKind::Torn];
    /// The kinds injected into a live run (torn happens at a crash instead).
    pub const IO: [FaultKind; 3] = [FaultKind::FsyncEio, FaultKind::Enospc, FaultKind::WriteEio];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::FsyncEio => "fsync-eio",
            FaultKind::Enospc => "enospc",
            FaultKind::WriteEio => "write-eio",
            FaultKind::Torn => "torn",
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
            None => "crash",
        };
        write!(f, "{} at {class} #{} of block {}", self.fault, self.nth, self.block)
    }
}
