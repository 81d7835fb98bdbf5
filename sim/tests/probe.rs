//! The probes of a database alone, and the documentation they are held
//! against: a few settings whose behaviour the documentation states, each
//! shown doing it (the whole matrix is `cargo xtask durability-matrix`).

use sim::probe::{probe, Behaviour, ProbeDb, ProbeMode};
use sim::promise::{promise, refused};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use store::{JournalMode, LmdbFlags, Synchronous};

/// SQLite's PRNG is process-global: one probe at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sqlite(journal: JournalMode, sync: Synchronous) -> ProbeDb {
    ProbeDb::Sqlite { journal, sync }
}

/// The worst of `seeds` probes of `db` in `mode`.
fn worst(db: ProbeDb, mode: ProbeMode, seeds: u64) -> Behaviour {
    let _serial = serial();
    let dir = PathBuf::from(format!("/dev/shm/swingsim-{}-probe-test", std::process::id()));
    let mut worst = Behaviour::Durable;
    for seed in 0..seeds {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let outcome = probe(db, mode, seed, &dir);
        assert!(outcome.found <= outcome.acknowledged + 1, "{db} {mode:?} {outcome:?}");
        worst = worst.max(outcome.behaviour);
    }
    let _ = std::fs::remove_dir_all(&dir);
    worst
}

/// The rollback journal at FULL loses the last commit to a power loss (its
/// unlink is not synced), at EXTRA keeps it; WAL at FULL keeps it.
#[test]
fn the_commit_point_of_a_rollback_journal_needs_extra() {
    let delete_full = sqlite(JournalMode::Delete, Synchronous::Full);
    assert_eq!(worst(delete_full, ProbeMode::PowerLoss, 20), Behaviour::LosesCommits);
    for durable in [sqlite(JournalMode::Delete, Synchronous::Extra), sqlite(JournalMode::Wal, Synchronous::Full)] {
        for mode in [ProbeMode::PowerLoss, ProbeMode::Torn, ProbeMode::ProcessCrash] {
            assert_eq!(worst(durable, mode, 20), Behaviour::Durable, "{durable} {mode:?}");
        }
    }
}

/// WAL at NORMAL loses commits and never corrupts; synchronous=OFF corrupts.
#[test]
fn wal_normal_loses_commits_and_sync_off_corrupts() {
    let wal_normal = sqlite(JournalMode::Wal, Synchronous::Normal);
    assert_eq!(worst(wal_normal, ProbeMode::Torn, 30), Behaviour::LosesCommits);
    assert_eq!(worst(sqlite(JournalMode::Delete, Synchronous::Off), ProbeMode::Torn, 30), Behaviour::Corrupts);
}

/// A process killed in the middle of a commit corrupts a database with no
/// journal on disk (MEMORY, OFF), as the documentation warns.
#[test]
fn no_journal_on_disk_corrupts_at_a_process_crash() {
    for journal in [JournalMode::Memory, JournalMode::Off] {
        let db = sqlite(journal, Synchronous::Full);
        assert_eq!(worst(db, ProbeMode::ProcessCrash, 30), Behaviour::Corrupts, "{db}");
    }
}

/// LMDB by default is durable; with NOMETASYNC it loses the last commit to a
/// power loss, consistent. (Its corruptions are shown by the matrix, whose
/// probes run in processes of their own: reading a corrupt environment can
/// kill the reader.)
#[test]
fn lmdb_default_is_durable_and_nometasync_loses_the_last_commit() {
    let lmdb = |flags| ProbeDb::Lmdb { flags };
    assert_eq!(worst(lmdb(LmdbFlags::Default), ProbeMode::PowerLoss, 20), Behaviour::Durable);
    assert_eq!(worst(lmdb(LmdbFlags::NoMetaSync), ProbeMode::PowerLoss, 20), Behaviour::LosesCommits);
}

/// Every setting has a promise (quoted, with a source) or a reason it is refused.
#[test]
fn every_setting_has_a_promise_or_is_refused() {
    for db in ProbeDb::all() {
        match (promise(db), refused(db)) {
            (Some(p), None) => assert!(p.states <= p.allows && !p.quote.is_empty() && !p.source.is_empty(), "{db}"),
            (None, Some(why)) => assert!(why.contains("cannot"), "{db}: {why}"),
            _ => panic!("{db}: a promise and a refusal, or neither"),
        }
        assert_eq!(ProbeDb::parse(&db.word()), Ok(db));
    }
    // SQLite's journal modes x synchronous, LMDB's flags, redb as the host uses it.
    assert_eq!(ProbeDb::all().len(), 6 * 4 + 5 + 1);
}
