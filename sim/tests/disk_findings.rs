//! Regressions of what the one-disk model found in SQLite's use by the
//! store (findings F3, F4 and F7 of issue 12, not yet in docs/findings.md),
//! reproduced at the SQLite level on the simulated disk with a small
//! scripted injector: no store, no run, one fault each where the finding put it.

mod common;

use common::{power_loss, serial, TestDir};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use sim::disk::fs::{Fs, Image};
use sim::disk::{self, Injector, Installed};
use sim::fault::{Crashed, FaultKind, OpClass, PointKind};
use std::any::Any;
use std::path::{Path, PathBuf};

const DB: &str = "swingstore.sqlite";
const WAL: &str = "swingstore.sqlite-wal";
const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// An injector that faults where the test arms it, and otherwise passes.
#[derive(Default)]
struct Script {
    root: PathBuf,
    /// The process is dead: every operation that changes the disk fails.
    stopped: bool,
    time_ms: i64,
    random: u8,
    /// ENOSPC on the first extending write of the WAL made when the WAL ends
    /// with a whole commit frame and is longer than this (the length when
    /// armed): the first padding write after a commit frame.
    enospc_after_commit_frame: Option<usize>,
    /// EIO (fsync-eio: the file's unsynced data is lost) on the next sync of this file.
    eio_on_next_sync_of: Option<&'static str>,
    /// What was injected, in order.
    fired: Vec<String>,
}

impl Script {
    /// Whether the real WAL now ends with a whole frame whose header says it
    /// commits (a nonzero database size).
    fn wal_ends_with_commit_frame(&self) -> Option<usize> {
        let wal = std::fs::read(self.root.join(WAL)).ok()?;
        let page = u32::from_be_bytes(wal.get(8..12)?.try_into().ok()?) as usize;
        let frame = FRAME_HEADER + page;
        let frames = wal.len().checked_sub(WAL_HEADER)?;
        if page == 0 || frames == 0 || frames % frame != 0 {
            return None;
        }
        let last = wal.len() - frame;
        let commit = u32::from_be_bytes(wal[last + 4..last + 8].try_into().ok()?);
        (commit != 0).then_some(wal.len())
    }
}

impl Injector for Script {
    fn durability_point(&mut self, _: PointKind, _: &'static str, _: &str, _: &Fs) -> Result<(), Crashed> {
        match self.stopped {
            true => Err(Crashed),
            false => Ok(()),
        }
    }
    fn io_operation(&mut self, class: OpClass, extends: bool, _: &'static str, file: &str) -> Option<FaultKind> {
        if class == OpClass::Sync && self.eio_on_next_sync_of == Some(file) {
            self.eio_on_next_sync_of = None;
            self.fired.push(format!("fsync-eio {file}"));
            return Some(FaultKind::FsyncEio);
        }
        if class == OpClass::Write && extends && file == WAL {
            let armed = self.enospc_after_commit_frame?;
            if self.wal_ends_with_commit_frame().is_some_and(|len| len > armed) {
                self.enospc_after_commit_frame = None;
                self.fired.push(format!("enospc {file}"));
                return Some(FaultKind::Enospc);
            }
        }
        None
    }
    fn is_stopped(&self) -> bool {
        self.stopped
    }
    fn retries_failed_sync(&self) -> bool {
        false
    }
    fn fill_random(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.random = self.random.wrapping_add(17);
            *b = self.random;
        }
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

fn script<R>(f: impl FnOnce(&mut Script) -> R) -> R {
    disk::with_injector(f).expect("the script is installed")
}

fn setup(test: &str) -> (TestDir, Installed) {
    disk::sqlite::register();
    disk::sqlite::seed_prng(7);
    let dir = TestDir::new(test);
    let root = dir.path().canonicalize().unwrap();
    let installed = disk::install(dir.path(), Box::new(Script { root, ..Script::default() }));
    (dir, installed)
}

fn model() -> Fs {
    disk::state().expect("a disk is installed")
}

/// The first column of a statement's first row, after stepping it to its end.
fn pragma<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> rusqlite::Result<T> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let first: T = rows.next()?.expect("a row").get(0)?;
    while rows.next()?.is_some() {}
    Ok(first)
}

fn connect(dir: &Path) -> Connection {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    Connection::open_with_flags_and_vfs(dir.join(DB), flags, disk::sqlite::VFS_NAME).unwrap()
}

/// Open in WAL+FULL with SQLite's own checkpoints off, as the store does,
/// except for the close-time checkpoint when `checkpoint_on_close`.
fn open_wal(dir: &Path, checkpoint_on_close: bool) -> Connection {
    try_open_wal(dir, checkpoint_on_close).expect("open")
}

fn try_open_wal(dir: &Path, checkpoint_on_close: bool) -> rusqlite::Result<Connection> {
    let conn = connect(dir);
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, !checkpoint_on_close)?;
    conn.execute_batch("PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=FULL")?;
    assert_eq!(pragma::<String>(&conn, "PRAGMA journal_mode=wal")?, "wal");
    Ok(conn)
}

fn rows(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
}

/// The process dies: `conn` closes while nothing it does reaches the disk.
fn kill(conn: Connection) {
    script(|s| s.stopped = true);
    drop(conn);
    script(|s| s.stopped = false);
}

/// A database with row 1 committed, and a COMMIT of rows 2 and 3 that fails
/// with SQLITE_FULL on the padding write after its commit frame (F3's state).
fn failed_commit_after_its_commit_frame(dir: &Path) {
    let conn = open_wal(dir, false);
    conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
    conn.execute_batch("INSERT INTO t VALUES (1, printf('%05000d', 1))").unwrap();
    conn.execute_batch(
        "BEGIN; INSERT INTO t VALUES (2, printf('%05000d', 2)); INSERT INTO t VALUES (3, printf('%09000d', 3))",
    )
    .unwrap();
    let armed = std::fs::metadata(dir.join(WAL)).unwrap().len() as usize;
    script(|s| s.enospc_after_commit_frame = Some(armed));
    let err = conn.execute_batch("COMMIT").expect_err("the padding write fails");
    assert_eq!(err.sqlite_error_code(), Some(ErrorCode::DiskFull), "{err}");
    assert_eq!(script(|s| s.fired.clone()), ["enospc swingstore.sqlite-wal"]);
    kill(conn);
}

/// F3: ENOSPC on the padding write that follows a WAL commit frame fails the
/// COMMIT (SQLITE_FULL), yet the unsynced commit frame is in the WAL, so a
/// restarted process reads the transaction as committed and a power cut
/// takes it back. `PRAGMA wal_checkpoint(FULL)` at open (the store's fix)
/// makes what the reopened connection reads durable.
#[test]
fn f3_enospc_on_the_padding_after_a_commit_frame() {
    let _serial = serial();
    let (dir, _disk) = setup("db");
    failed_commit_after_its_commit_frame(dir.path());
    let wal = model().lookup(WAL).unwrap();
    assert!(model().durable(wal).unwrap().len() < model().live(wal).unwrap().len(), "the commit frame is unsynced");

    // Restarted without a checkpoint: the failed transaction is there...
    let conn = open_wal(dir.path(), false);
    assert_eq!(rows(&conn).unwrap(), 3, "the reopened connection sees the failed COMMIT's rows");
    let cut_without = power_loss(&model());
    kill(conn);

    // ...restarted with the store's checkpoint at open: there, and durable.
    let conn = open_wal(dir.path(), false);
    assert_eq!(pragma::<i64>(&conn, "PRAGMA wal_checkpoint(FULL)").unwrap(), 0, "not busy");
    assert_eq!(rows(&conn).unwrap(), 3);
    let cut_with = power_loss(&model());
    kill(conn);

    // ...and a power cut takes them back only without the checkpoint.
    for (image, expected, what) in [(cut_without, 1, "without"), (cut_with, 3, "with")] {
        disk::restore(&image);
        let conn = open_wal(dir.path(), false);
        assert_eq!(rows(&conn).unwrap(), expected, "power cut after a restart {what} the checkpoint at open");
        kill(conn);
    }
}

/// The state F4 needs, then an open-time checkpoint whose WAL sync fails
/// (losing the WAL's unsynced bytes, the failed transaction's frames), then
/// the connection closed, with or without SQLite's close-time checkpoint.
/// Returns the reopened database's rows, or why it cannot be read.
fn f4_close_after_a_failed_checkpoint(test: &str, checkpoint_on_close: bool) -> Result<Vec<(i64, String)>, String> {
    let (dir, installed) = setup(test);
    failed_commit_after_its_commit_frame(dir.path());
    script(|s| s.eio_on_next_sync_of = Some(WAL));
    let conn = open_wal(dir.path(), checkpoint_on_close);
    let err = pragma::<i64>(&conn, "PRAGMA wal_checkpoint(FULL)").expect_err("the WAL's sync fails");
    assert_eq!(err.sqlite_error_code(), Some(ErrorCode::SystemIoFailure), "{err}");
    assert_eq!(script(|s| s.fired.len()), 2, "{:?}", script(|s| s.fired.clone()));
    drop(conn); // the process lives on: the store gives up this connection

    let read = |conn: &Connection| -> Result<Vec<(i64, String)>, String> {
        let integrity: String =
            conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).map_err(|e| e.to_string())?;
        if integrity != "ok" {
            return Err(format!("integrity check: {integrity}"));
        }
        let mut stmt = conn.prepare("SELECT k, v FROM t ORDER BY k").map_err(|e| e.to_string())?;
        let items = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).map_err(|e| e.to_string())?;
        items.collect::<rusqlite::Result<_>>().map_err(|e| e.to_string())
    };
    let out = match try_open_wal(dir.path(), false) {
        Ok(conn) => {
            let out = read(&conn);
            kill(conn);
            out
        }
        Err(e) => Err(e.to_string()),
    };
    drop(installed);
    out
}

/// F4: an open-time checkpoint whose WAL sync fails with EIO loses the WAL's
/// unsynced frames, which the connection's WAL index still lists; SQLite's
/// close-time checkpoint then syncs again, "successfully", and copies those
/// frames, now zeros, into the database. With SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE
/// (the store's fix) closing copies nothing and the database stays sound.
#[test]
fn f4_no_checkpoint_on_close_after_a_failed_checkpoint() {
    let _serial = serial();
    let items = f4_close_after_a_failed_checkpoint("no-ckpt-on-close", false);
    assert_eq!(items, Ok(vec![(1, format!("{:05000}", 1))]), "the failed transaction is gone, nothing else changed");

    // The finding itself: with the close-time checkpoint, the lost bytes
    // (zeros, page 1's included) reach the database.
    let corrupt = f4_close_after_a_failed_checkpoint("ckpt-on-close", true);
    assert_eq!(corrupt, Err("file is not a database".to_string()));
}

/// F7: `PRAGMA journal_mode=WAL` on a new database answers "wal" from its
/// first step and commits the conversion at the next, which `query_row`
/// never runs, so an fsync EIO there rolls the conversion back unseen: the
/// database stays in DELETE mode, where FULL loses commits at a power cut.
/// Stepping the pragma to its end (the store's fix) returns the error.
#[test]
fn f7_journal_mode_wal_answered_but_not_made() {
    let _serial = serial();
    let (dir, _disk) = setup("db");
    script(|s| s.eio_on_next_sync_of = Some(DB));
    let conn = connect(dir.path());
    conn.execute_batch("PRAGMA synchronous=FULL").unwrap();
    let answered: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)).unwrap();
    assert_eq!(answered, "wal", "the first row answers what was asked");
    assert_eq!(script(|s| s.fired.clone()), ["fsync-eio swingstore.sqlite"], "the conversion's commit hit the fault");
    conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
    assert_eq!(pragma::<String>(&conn, "PRAGMA journal_mode").unwrap(), "delete", "the database is not in WAL mode");
    assert_eq!(model().lookup(WAL), None, "no WAL");
    let other = connect(dir.path());
    assert_eq!(pragma::<String>(&other, "PRAGMA journal_mode").unwrap(), "delete", "another connection agrees");
    drop(other);

    // In DELETE mode with FULL, a power cut after COMMIT brings the journal back.
    conn.execute_batch("INSERT INTO t VALUES (1, 'one'), (2, 'two')").unwrap();
    let image = power_loss(&model());
    drop(conn);
    disk::restore(&image);
    let conn = connect(dir.path());
    assert_eq!(rows(&conn).unwrap(), 0, "the acknowledged rows are lost");
    drop(conn);

    // The fix: stepped to its end, the pragma reports the failed conversion.
    disk::restore(&Image::default());
    script(|s| s.eio_on_next_sync_of = Some(DB));
    let conn = connect(dir.path());
    conn.execute_batch("PRAGMA synchronous=FULL").unwrap();
    let err = pragma::<String>(&conn, "PRAGMA journal_mode=WAL").expect_err("the commit's error");
    assert_eq!(err.sqlite_error_code(), Some(ErrorCode::SystemIoFailure), "{err}");
    assert_eq!(script(|s| s.fired.len()), 2);
}
