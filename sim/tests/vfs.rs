//! The in-memory SQLite VFS: crash images survive what SQLite promises they survive.

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use rusqlite::{Connection, OpenFlags};
use sim::fault::{CrashSpec, FaultMode};
use sim::vfs::{self, VfsImage, VFS_NAME};
use std::sync::{Mutex, MutexGuard, PoisonError};

const DB: &str = "/sim/t1/db.sqlite";
const JOURNAL: &str = "/sim/t1/db.sqlite-journal";

const PROCESS_CRASH: CrashSpec = CrashSpec { mode: FaultMode::ProcessCrash, torn: false };
const POWER_LOSS: CrashSpec = CrashSpec { mode: FaultMode::PowerLoss, torn: false };
const TORN: CrashSpec = CrashSpec { mode: FaultMode::PowerLoss, torn: true };

/// SQLite's PRNG is process-global: tests that run at once would interleave its
/// stream and break the byte-identity the determinism test checks.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open(path: &str, journal_mode: &str) -> Connection {
    vfs::register();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let conn = Connection::open_with_flags_and_vfs(path, flags, VFS_NAME).expect("open");
    let mode: String =
        conn.query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |row| row.get(0)).expect("journal_mode");
    assert_eq!(mode, journal_mode.to_lowercase());
    conn.execute_batch("PRAGMA synchronous=FULL").expect("synchronous");
    conn
}

/// A fresh disk with table `kv` holding rows `0..rows`, committed.
fn fresh_db(journal_mode: &str, rows: i64) -> Connection {
    vfs::reset();
    let conn = open(DB, journal_mode);
    conn.execute_batch("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
    commit_rows(&conn, 0..rows);
    conn
}

fn insert_rows(conn: &Connection, keys: std::ops::Range<i64>) {
    let mut insert = conn.prepare("INSERT INTO kv (k, v) VALUES (?1, printf('%0300d', ?1))").unwrap();
    for k in keys {
        insert.execute([k]).unwrap();
    }
}

fn commit_rows(conn: &Connection, keys: std::ops::Range<i64>) {
    conn.execute_batch("BEGIN").unwrap();
    insert_rows(conn, keys);
    conn.execute_batch("COMMIT").unwrap();
}

/// Open a transaction big enough to spill to the database file before COMMIT.
fn spill_uncommitted(conn: &Connection, keys: std::ops::Range<i64>) {
    conn.execute_batch("PRAGMA cache_size=10; BEGIN").unwrap();
    insert_rows(conn, keys);
}

/// Restore `image` and reopen the database as a restarted process would.
fn restart(image: &VfsImage, journal_mode: &str) -> Connection {
    vfs::restore(image);
    open(DB, journal_mode)
}

fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap()
}

fn rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM kv", [], |row| row.get(0)).unwrap()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[test]
fn power_loss_keeps_the_commit_and_drops_the_open_transaction() {
    let _serial = serial();
    let conn = fresh_db("DELETE", 100);
    assert!(vfs::file_names().iter().all(|name| name != JOURNAL), "journal deleted at commit");
    spill_uncommitted(&conn, 100..2_000);
    let image = vfs::capture(POWER_LOSS, &mut rng(0));
    drop(conn);
    assert!(image.files.get(JOURNAL).is_some_and(|j| !j.is_empty()), "the spill synced a hot journal");

    let conn = restart(&image, "DELETE");
    assert_eq!(integrity(&conn), "ok");
    assert_eq!(rows(&conn), 100);
}

#[test]
fn power_loss_without_any_sync_leaves_nothing() {
    let _serial = serial();
    vfs::reset();
    vfs::register();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let conn = Connection::open_with_flags_and_vfs(DB, flags, VFS_NAME).unwrap();
    conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; CREATE TABLE t (x)").unwrap();
    assert!(vfs::live_bytes(DB).is_some_and(|db| !db.is_empty()));
    assert_eq!(vfs::durable_bytes(DB), None);
    assert_eq!(vfs::capture(POWER_LOSS, &mut rng(0)), VfsImage::default());
    assert_eq!(vfs::capture(PROCESS_CRASH, &mut rng(0)).files.len(), 1);
}

#[test]
fn process_crash_mid_transaction_rolls_back_the_hot_journal() {
    let _serial = serial();
    let conn = fresh_db("DELETE", 100);
    spill_uncommitted(&conn, 100..2_000);
    let image = vfs::capture(PROCESS_CRASH, &mut rng(0));
    drop(conn);
    assert!(image.files.get(JOURNAL).is_some_and(|j| !j.is_empty()), "a hot journal");
    assert_ne!(image.files.get(DB), vfs::durable_bytes(DB).as_ref(), "spilled pages are in the image");

    let conn = restart(&image, "DELETE");
    assert_eq!(integrity(&conn), "ok");
    assert_eq!(rows(&conn), 100);
    assert!(!vfs::file_names().iter().any(|name| name == JOURNAL), "the rollback deleted the journal");
}

#[test]
fn torn_power_loss_keeps_the_last_commit() {
    let _serial = serial();
    for seed in 0..50 {
        let conn = fresh_db("DELETE", 100);
        commit_rows(&conn, 100..200);
        spill_uncommitted(&conn, 200..1_000 + 37 * seed as i64);
        let image = vfs::capture(TORN, &mut rng(seed));
        drop(conn);

        let conn = restart(&image, "DELETE");
        assert_eq!(integrity(&conn), "ok", "seed {seed}");
        assert_eq!(rows(&conn), 200, "seed {seed}");
    }
}

#[test]
fn wal_mode_is_real_and_keeps_commits() {
    let _serial = serial();
    let conn = fresh_db("WAL", 100);
    commit_rows(&conn, 100..150);
    let image = vfs::capture(POWER_LOSS, &mut rng(0));
    drop(conn);
    assert!(image.files.get("/sim/t1/db.sqlite-wal").is_some_and(|wal| !wal.is_empty()));
    assert!(!image.files.keys().any(|name| name.ends_with("-shm")), "shm is never a file");

    let conn = restart(&image, "WAL");
    assert_eq!(integrity(&conn), "ok");
    assert_eq!(rows(&conn), 150);
}

#[test]
fn wal_torn_power_loss_keeps_the_last_commit() {
    let _serial = serial();
    for seed in 0..20 {
        let conn = fresh_db("WAL", 100);
        commit_rows(&conn, 100..200);
        spill_uncommitted(&conn, 200..1_000 + 37 * seed as i64);
        let image = vfs::capture(TORN, &mut rng(seed));
        drop(conn);

        let conn = restart(&image, "WAL");
        assert_eq!(integrity(&conn), "ok", "seed {seed}");
        assert_eq!(rows(&conn), 200, "seed {seed}");
    }
}

/// One script, captured mid-transaction in every mode.
fn script_images(journal_mode: &str) -> Vec<VfsImage> {
    vfs::seed_sqlite_prng(7);
    let conn = fresh_db(journal_mode, 100);
    commit_rows(&conn, 100..200);
    spill_uncommitted(&conn, 200..1_500);
    let images = [PROCESS_CRASH, POWER_LOSS, TORN].map(|spec| vfs::capture(spec, &mut rng(3)));
    drop(conn);
    images.into()
}

#[test]
fn same_script_same_bytes() {
    let _serial = serial();
    for journal_mode in ["DELETE", "WAL"] {
        let first = script_images(journal_mode);
        assert_eq!(first, script_images(journal_mode), "{journal_mode}");
        assert!(first.iter().all(|image| !image.files.is_empty()));
    }
}

#[test]
fn files_are_invisible_from_another_thread() {
    let _serial = serial();
    let conn = fresh_db("DELETE", 10);
    let mine = vfs::live_bytes(DB).unwrap();
    std::thread::spawn(|| {
        assert!(vfs::file_names().is_empty());
        assert_eq!(vfs::capture(PROCESS_CRASH, &mut rng(0)), VfsImage::default());
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE;
        assert!(Connection::open_with_flags_and_vfs(DB, flags, VFS_NAME).is_err(), "no such file here");
        let theirs = fresh_db("DELETE", 3);
        assert_eq!(rows(&theirs), 3);
    })
    .join()
    .unwrap();
    assert_eq!(vfs::live_bytes(DB).unwrap(), mine);
    assert_eq!(rows(&conn), 10);
}

#[test]
fn temp_files_work_and_stay_private() {
    let _serial = serial();
    let conn = fresh_db("DELETE", 500);
    conn.execute_batch(
        "PRAGMA temp_store=FILE; PRAGMA cache_size=10;
         CREATE TEMP TABLE t AS SELECT k, v FROM kv ORDER BY v DESC;
         VACUUM;",
    )
    .unwrap();
    let sum: i64 = conn.query_row("SELECT sum(k) FROM t", [], |row| row.get(0)).unwrap();
    assert_eq!(sum, (0..500).sum::<i64>());
    assert_eq!(vfs::file_names(), [DB]);
    assert_eq!(integrity(&conn), "ok");
}

#[test]
fn two_connections_lock_each_other_out() {
    let _serial = serial();
    for journal_mode in ["DELETE", "WAL"] {
        let a = fresh_db(journal_mode, 10);
        let b = open(DB, journal_mode);
        a.execute_batch("BEGIN IMMEDIATE; INSERT INTO kv VALUES (100, 'a')").unwrap();
        let err = b.execute_batch("BEGIN IMMEDIATE").unwrap_err();
        assert_eq!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy), "{journal_mode}");
        b.execute_batch("ROLLBACK").ok();
        if journal_mode == "WAL" {
            assert_eq!(rows(&b), 10, "readers see the last commit");
        }
        a.execute_batch("COMMIT").unwrap();
        assert_eq!(rows(&b), 11, "{journal_mode}");
        b.execute_batch("INSERT INTO kv VALUES (101, 'b')").unwrap();
        assert_eq!(rows(&a), 12, "{journal_mode}");
    }
}

// ---------------------------------------------------------------------------
// WORLD-BASED TEST: needs `sim::lmdb_io::reset` and `capture` implemented
// (world::install and the crash capture call them).

/// Rows in `kv`, or `None` if the table does not exist.
fn state(conn: &Connection) -> Option<i64> {
    let tables: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'kv'", [], |row| row.get(0)).unwrap();
    (tables == 1).then(|| rows(conn))
}

/// Setup, then two commits; returns the crash-point count after each step, or
/// the error of the step the crash stopped.
fn world_script(journal_mode: &str) -> Result<Vec<u64>, rusqlite::Error> {
    let conn = Connection::open_with_flags_and_vfs(
        DB,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        VFS_NAME,
    )?;
    conn.query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |_| Ok(()))?;
    conn.execute_batch("PRAGMA synchronous=FULL; CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")?;
    let mut after = vec![sim::world::points_hit()];
    for keys in [0..10, 10..20] {
        let tx = conn.unchecked_transaction()?;
        for k in keys {
            tx.execute("INSERT INTO kv (k, v) VALUES (?1, printf('%0300d', ?1))", [k])?;
        }
        tx.commit()?;
        after.push(sim::world::points_hit());
    }
    Ok(after)
}

#[test]
fn world_crash_at_each_sqlite_sync_recovers_before_or_after_its_commit() {
    use sim::world::{self, World};
    let _serial = serial();
    vfs::register();
    // State after each step: setup leaves an empty table, then 10 and 20 rows.
    let states = [None, Some(0), Some(10), Some(20)];
    for journal_mode in ["DELETE", "WAL"] {
        world::install(World::new(1, POWER_LOSS, vec![]));
        let ends = world_script(journal_mode).expect("no crash planned");
        world::uninstall();
        for spec in [POWER_LOSS, TORN, PROCESS_CRASH] {
            for ordinal in 0..ends[2] {
                world::install(World::new(
                    ordinal,
                    spec,
                    vec![sim::fault::CrashAt { at: sim::fault::PointKind::SqliteSync, block: 0, nth: ordinal + 1 }],
                ));
                assert!(world_script(journal_mode).is_err(), "{journal_mode} {spec:?} #{ordinal}");
                let (record, images) = world::take_crash().expect("crashed");
                assert_eq!(record.ordinal, ordinal);
                let step = ends.iter().position(|&end| ordinal < end).unwrap();
                let conn = restart(&images.sqlite, journal_mode);
                let what = format!("{journal_mode} {spec:?} at {record}");
                assert_eq!(integrity(&conn), "ok", "{what}");
                let got = state(&conn);
                assert!(got == states[step] || got == states[step + 1], "{what}: {got:?}");
                drop(conn);
                world::uninstall();
            }
        }
    }
}
