//! What SQLite's, LMDB's and redb's own documentation promises for each setting,
//! quoted with its source: the external truth `cargo xtask durability-matrix`
//! holds the harness against.
//!
//! A promise is read as two bounds on what a power loss or a crash may do
//! (see [`Behaviour`]): the worst the documentation *allows*, and what it
//! *states* does happen (a setting documented to lose commits must be seen
//! losing them, or the harness is too weak to show it). Where the pages are
//! silent on a setting, the database's source is the documentation, quoted
//! likewise.

use crate::probe::{Behaviour, ProbeDb, ProbeMode, RedbDurability};
use store::{JournalMode, LmdbFlags, Synchronous};

/// One setting's documented promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promise {
    /// The worst the documentation allows.
    pub allows: Behaviour,
    /// What the documentation states does happen.
    pub states: Behaviour,
    /// The documentation's words.
    pub quote: &'static str,
    /// Where they are.
    pub source: &'static str,
}

impl Promise {
    /// Whether `observed` is what this promise says.
    pub fn agrees(&self, observed: Behaviour) -> bool {
        self.states <= observed && observed <= self.allows
    }
}

/// Why a setting gets no verdict, when it gets none.
pub fn refused(db: ProbeDb) -> Option<&'static str> {
    match db {
        ProbeDb::Lmdb { flags: LmdbFlags::WriteMap | LmdbFlags::WriteMapAsync } => Some(
            "LMDB writes its pages through a shared writable map (MDB_WRITEMAP): the simulated disk sees system \
             calls, not stores into a map, so it cannot say what a crash would keep",
        ),
        _ => None,
    }
}

/// The crash modes a setting is judged in: those its database's documented
/// assumptions about the device allow. SQLite assumes a sector write may
/// tear (it is told so: no powersafe overwrite); LMDB keeps no checksum on
/// its meta pages and refuses an environment with a malformed one
/// (`mdb_env_read_header` in mdb.c), so it relies on a sector write being
/// atomic, and is judged with sectors that survive or vanish whole.
/// redb states its assumptions (`docs/design.md`, "Assumptions about
/// underlying media"): single byte writes are atomic, and powersafe
/// overwrite; a sector that tears into garbage breaks both, so it too is
/// judged with sectors that survive or vanish whole.
pub fn judged_modes(db: ProbeDb) -> [ProbeMode; 3] {
    match db {
        ProbeDb::Sqlite { .. } => [ProbeMode::PowerLoss, ProbeMode::Torn, ProbeMode::ProcessCrash],
        ProbeDb::Lmdb { .. } | ProbeDb::Redb { .. } => {
            [ProbeMode::PowerLoss, ProbeMode::TornWhole, ProbeMode::ProcessCrash]
        }
    }
}

const PRAGMA_SYNCHRONOUS: &str = "sqlite.org/pragma.html#pragma_synchronous";
const PRAGMA_JOURNAL_MODE: &str = "sqlite.org/pragma.html#pragma_journal_mode";

const SYNC_OFF: &str = "With synchronous OFF (0), SQLite continues without syncing as soon as it has handed data off \
    to the operating system. If the application running SQLite crashes, the data will be safe, but the database \
    might become corrupted if the operating system crashes or the computer loses power before that data has been \
    written to the disk surface.";
const SYNC_NORMAL: &str = "When synchronous is NORMAL (1), the SQLite database engine will still sync at the most \
    critical moments, but less often than in FULL mode. There is a very small (though non-zero) chance that a power \
    failure at just the wrong time could corrupt the database in journal_mode=DELETE on an older filesystem.";
const SYNC_FULL_DELETE: &str = "When synchronous is FULL (2) ... This ensures that an operating system crash or power \
    failure will not corrupt the database. ... EXTRA synchronous is like FULL with the addition that the directory \
    containing a rollback journal is synced after that journal is unlinked to commit a transaction in DELETE mode. \
    EXTRA provides additional durability if the commit is followed closely by a power loss.";
const SYNC_EXTRA: &str = "EXTRA synchronous is like FULL with the addition that the directory containing a rollback \
    journal is synced after that journal is unlinked to commit a transaction in DELETE mode.";
const WAL_NORMAL: &str = "WAL mode is always consistent with synchronous=NORMAL, but WAL mode does lose durability. \
    A transaction committed in WAL mode with synchronous=NORMAL might roll back following a power loss or system \
    crash.";
const WAL_FULL: &str = "With synchronous=FULL in WAL mode, an additional sync operation of the WAL file happens \
    after each transaction commit. The extra WAL sync following each transaction helps ensure that transactions are \
    durable across a power loss.";
const TRUNCATE_SYNCED: &str = "Make sure the new file size is written into the inode right away. Otherwise the \
    journal might resurrect following a power loss and cause the last transaction to roll back. (Done when \
    synchronous is FULL or EXTRA.)";
const TRUNCATE_SOURCE: &str = "SQLite's source: pager.c, pager_end_transaction (sqlite3.c of libsqlite3-sys 0.40)";
const PERSIST_SYNCED: &str = "The PERSIST journaling mode prevents the rollback journal from being deleted at the \
    end of each transaction. Instead, the header of the journal is overwritten with zeros. (pager.c, \
    zeroJournalHdr: the zeroed header is synced unless synchronous is OFF.)";
const MEMORY: &str = "The MEMORY journaling mode stores the rollback journal in volatile RAM. This saves disk I/O \
    but at the expense of database safety and integrity. If the application using SQLite crashes in the middle of a \
    transaction when the MEMORY journaling mode is set, then the database file will very likely go corrupt.";
const JOURNAL_OFF: &str = "The OFF journaling mode disables the rollback journal completely. ... If the application \
    crashes in the middle of a transaction when the OFF journaling mode is set, then the database file will very \
    likely go corrupt.";

const LMDB_H: &str = "lmdb.h (lmdb-master-sys 0.2.6)";
const LMDB_DEFAULT: &str = "It is also fully transactional with full ACID semantics ... Data is always written to \
    disk when mdb_txn_commit() is called ... LMDB always flushes the OS buffers upon commit as well, unless the \
    environment was opened with MDB_NOSYNC or in part MDB_NOMETASYNC.";
const LMDB_NOMETASYNC: &str = "Flush system buffers to disk only once per transaction, omit the metadata flush. \
    ... This optimization maintains database integrity, but a system crash may undo the last committed \
    transaction. I.e. it preserves the ACI (atomicity, consistency, isolation) but not D (durability) database \
    property.";
const LMDB_NOSYNC: &str = "Don't flush system buffers to disk when committing a transaction. This optimization \
    means a system crash can corrupt the database or lose the last transactions if buffers are not yet flushed to \
    disk. ... However, if the filesystem preserves write order and the MDB_WRITEMAP flag is not used, transactions \
    exhibit ACI ... and only lose D (durability). (The simulated file system does not preserve write order.)";

const REDB_SOURCE: &str = "redb 4.6 src/transactions.rs, enum Durability (docs.rs/redb)";
const REDB_IMMEDIATE: &str = "Commits with this durability level are guaranteed to be persistent as soon as \
    [`WriteTransaction::commit`] returns.";
const REDB_NONE: &str = "Commits with this durability level will not be persisted to disk unless followed by a \
    commit with [`Durability::Immediate`]. ... in the event of a crash the database is still guaranteed to be \
    consistent, and will return to either the last non-durable commit or the last full commit that was made \
    (docs/design.md, Non-durable commits).";

fn promise_of(allows: Behaviour, states: Behaviour, quote: &'static str, source: &'static str) -> Promise {
    Promise { allows, states, quote, source }
}

/// The documented promise of `db`; `None` for a setting that is refused.
pub fn promise(db: ProbeDb) -> Option<Promise> {
    use Behaviour::{Corrupts, Durable, LosesCommits};
    if refused(db).is_some() {
        return None;
    }
    Some(match db {
        ProbeDb::Redb { durability: RedbDurability::Immediate } => {
            promise_of(Durable, Durable, REDB_IMMEDIATE, REDB_SOURCE)
        }
        ProbeDb::Redb { durability: RedbDurability::None } => {
            promise_of(LosesCommits, LosesCommits, REDB_NONE, REDB_SOURCE)
        }
        ProbeDb::Lmdb { flags } => match flags {
            LmdbFlags::Default => promise_of(Durable, Durable, LMDB_DEFAULT, LMDB_H),
            LmdbFlags::NoMetaSync => promise_of(LosesCommits, LosesCommits, LMDB_NOMETASYNC, LMDB_H),
            _ => promise_of(Corrupts, Corrupts, LMDB_NOSYNC, LMDB_H),
        },
        ProbeDb::Sqlite { journal: JournalMode::Off, .. } => {
            promise_of(Corrupts, Corrupts, JOURNAL_OFF, PRAGMA_JOURNAL_MODE)
        }
        ProbeDb::Sqlite { journal: JournalMode::Memory, .. } => {
            promise_of(Corrupts, Corrupts, MEMORY, PRAGMA_JOURNAL_MODE)
        }
        ProbeDb::Sqlite { sync: Synchronous::Off, .. } => promise_of(Corrupts, Corrupts, SYNC_OFF, PRAGMA_SYNCHRONOUS),
        ProbeDb::Sqlite { journal: JournalMode::Wal, sync } => match sync {
            Synchronous::Normal => promise_of(LosesCommits, LosesCommits, WAL_NORMAL, PRAGMA_SYNCHRONOUS),
            _ => promise_of(Durable, Durable, WAL_FULL, PRAGMA_SYNCHRONOUS),
        },
        ProbeDb::Sqlite { journal, sync } => rollback_promise(journal, sync),
    })
}

/// DELETE, TRUNCATE and PERSIST at NORMAL, FULL or EXTRA.
fn rollback_promise(journal: JournalMode, sync: Synchronous) -> Promise {
    use Behaviour::{Corrupts, Durable, LosesCommits};
    let commit_mark_synced = match journal {
        JournalMode::Delete => sync == Synchronous::Extra,
        JournalMode::Truncate => sync != Synchronous::Normal,
        _ => true,
    };
    let states = if commit_mark_synced { Durable } else { LosesCommits };
    match (sync, journal) {
        (Synchronous::Normal, _) => promise_of(Corrupts, states, SYNC_NORMAL, PRAGMA_SYNCHRONOUS),
        (_, JournalMode::Truncate) => promise_of(states, states, TRUNCATE_SYNCED, TRUNCATE_SOURCE),
        (_, JournalMode::Persist) => promise_of(states, states, PERSIST_SYNCED, PRAGMA_JOURNAL_MODE),
        (Synchronous::Extra, _) => promise_of(Durable, Durable, SYNC_EXTRA, PRAGMA_SYNCHRONOUS),
        _ => promise_of(LosesCommits, LosesCommits, SYNC_FULL_DELETE, PRAGMA_SYNCHRONOUS),
    }
}
