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
//! Deliberately absent (later issues): fsync failure, ENOSPC, write EIO.

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
    PointA,
    PointB,
    Crank,
}

impl PointKind {
    pub const ALL: [PointKind; 5] =
        [PointKind::SqliteSync, PointKind::LmdbSync, PointKind::PointA, PointKind::PointB, PointKind::Crank];

    pub fn name(self) -> &'static str {
        match self {
            PointKind::SqliteSync => "sqlite-sync",
            PointKind::LmdbSync => "lmdb-sync",
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

/// Returned by [`crate::world::durability_point`] once the run has crashed.
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
