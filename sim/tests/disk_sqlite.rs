//! SQLite on the simulated disk: its own unix VFS (registered as `swingsim`)
//! over the interposed libc. Crash images made from the disk's model come
//! back as what SQLite promises for each journal mode and synchronous level,
//! including the loss SQLite documents for DELETE mode below EXTRA (the
//! journal's unlink is not made durable).

mod common;

use common::{file, power_loss, rng, serial, TestDir};
use rusqlite::{ffi, Connection, OpenFlags};
use sim::disk::fs::{Fs, Image, Torn};
use sim::disk::{self, Installed, Passive};
use sim::fault::{CrashAt, CrashSpec, FaultMode, PointKind};
use sim::world::{self, World};
use std::path::Path;

/// The store's name: the disk names SQLite's durability points by it (`sqlite-sync`).
const DB: &str = "swingstore.sqlite";
const JOURNAL: &str = "swingstore.sqlite-journal";
const WAL: &str = "swingstore.sqlite-wal";

const PROCESS_CRASH: CrashSpec = CrashSpec { mode: FaultMode::ProcessCrash, torn: false };
const POWER_LOSS: CrashSpec = CrashSpec { mode: FaultMode::PowerLoss, torn: false };
const TORN: CrashSpec = CrashSpec { mode: FaultMode::PowerLoss, torn: true };

/// A journal mode with a synchronous level.
#[derive(Clone, Copy, Debug)]
struct Mode {
    journal: &'static str,
    sync: &'static str,
}

const WAL_FULL: Mode = Mode { journal: "wal", sync: "full" };
const WAL_NORMAL: Mode = Mode { journal: "wal", sync: "normal" };
const WAL_OFF: Mode = Mode { journal: "wal", sync: "off" };
const DELETE_FULL: Mode = Mode { journal: "delete", sync: "full" };
const DELETE_EXTRA: Mode = Mode { journal: "delete", sync: "extra" };

/// A disk with a passive injector over a fresh directory for `test`.
fn setup(test: &str) -> (TestDir, Installed) {
    disk::sqlite::register();
    disk::sqlite::seed_prng(7);
    let dir = TestDir::new(test);
    let installed = disk::install(dir.path(), Box::new(Passive::default()));
    (dir, installed)
}

/// The first column of a statement's first row, after stepping it to its
/// end (a PRAGMA that writes commits at its last step).
fn pragma<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> rusqlite::Result<T> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let first: T = rows.next()?.expect("a row").get(0)?;
    while rows.next()?.is_some() {}
    Ok(first)
}

fn try_open(dir: &Path, mode: Mode) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let conn = Connection::open_with_flags_and_vfs(dir.join(DB), flags, disk::sqlite::VFS_NAME)?;
    conn.execute_batch(&format!("PRAGMA synchronous={}", mode.sync))?;
    pragma::<String>(&conn, &format!("PRAGMA journal_mode={}", mode.journal))?;
    Ok(conn)
}

fn open(dir: &Path, mode: Mode) -> Connection {
    let conn = try_open(dir, mode).expect("open");
    assert_eq!(pragma::<String>(&conn, "PRAGMA journal_mode").unwrap(), mode.journal, "{mode:?}");
    conn
}

/// A fresh database (the disk emptied first) with table `kv` holding rows `0..rows`.
fn fresh_db(dir: &Path, mode: Mode, rows: i64) -> Connection {
    disk::restore(&Image::default());
    let conn = open(dir, mode);
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

/// Open a transaction big enough to spill to the database file (or the WAL)
/// before COMMIT.
fn spill_uncommitted(conn: &Connection, keys: std::ops::Range<i64>) {
    conn.execute_batch("PRAGMA cache_size=10; BEGIN").unwrap();
    insert_rows(conn, keys);
}

fn model() -> Fs {
    disk::state().expect("a disk is installed")
}

/// Restore `image` (the crashed connection closed first) and reopen as a
/// restarted process would.
fn restart(conn: Connection, dir: &Path, image: &Image, mode: Mode) -> Connection {
    drop(conn);
    disk::restore(image);
    open(dir, mode)
}

fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap()
}

fn rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM kv", [], |row| row.get(0)).unwrap()
}

/// A power loss keeps the last commit and drops the open transaction, whose
/// spilled pages a synced hot journal (DELETE) rolls back or whose WAL
/// frames have no commit frame (WAL).
#[test]
fn power_loss_keeps_the_commit_and_drops_the_open_transaction() {
    let _serial = serial();
    let (dir, _disk) = setup("root");
    for mode in [WAL_FULL, DELETE_EXTRA] {
        let conn = fresh_db(dir.path(), mode, 100);
        spill_uncommitted(&conn, 100..2_000);
        let image = power_loss(&model());
        match mode.journal {
            "delete" => assert!(file(&image, JOURNAL).is_some_and(|j| !j.is_empty()), "the spill synced a hot journal"),
            _ => assert!(file(&image, WAL).is_some_and(|w| !w.is_empty()), "{mode:?}: the WAL survives"),
        }
        assert!(image.files().iter().all(|(name, _)| !name.ends_with("-shm")), "-shm is scratch");
        let conn = restart(conn, dir.path(), &image, mode);
        assert_eq!(integrity(&conn), "ok", "{mode:?}");
        assert_eq!(rows(&conn), 100, "{mode:?}");
    }
}

/// A process crash mid-transaction leaves the spilled pages in the database
/// file and a hot journal, which the next connection rolls back and deletes.
#[test]
fn process_crash_mid_transaction_rolls_back_the_hot_journal() {
    let _serial = serial();
    let (dir, _disk) = setup("root");
    let conn = fresh_db(dir.path(), DELETE_FULL, 100);
    spill_uncommitted(&conn, 100..2_000);
    let fs = model();
    let image = fs.live_image();
    assert!(file(&image, JOURNAL).is_some_and(|j| !j.is_empty()), "a hot journal");
    assert_ne!(file(&image, DB), file(&power_loss(&fs), DB), "spilled pages are in the image");

    let conn = restart(conn, dir.path(), &image, DELETE_FULL);
    assert_eq!(integrity(&conn), "ok");
    assert_eq!(rows(&conn), 100);
    assert_eq!(model().lookup(JOURNAL), None, "the rollback deleted the journal");
    assert_eq!(file(&power_loss(&model()), DB), file(&model().live_image(), DB), "and synced the database");
}

/// Torn power loss (unsynced sectors survive, vanish or tear) keeps the last
/// commit in WAL+FULL and DELETE+EXTRA, over 20 seeds each.
#[test]
fn torn_power_loss_keeps_the_last_commit() {
    let _serial = serial();
    let (dir, _disk) = setup("root");
    for mode in [WAL_FULL, DELETE_EXTRA] {
        for seed in 0..20 {
            let conn = fresh_db(dir.path(), mode, 100);
            commit_rows(&conn, 100..200);
            spill_uncommitted(&conn, 200..1_000 + 37 * seed as i64);
            let image = model().surviving(&mut Torn(&mut rng(seed)));
            let conn = restart(conn, dir.path(), &image, mode);
            assert_eq!(integrity(&conn), "ok", "{mode:?} seed {seed}");
            assert_eq!(rows(&conn), 200, "{mode:?} seed {seed}");
        }
    }
}

/// One script, crashed mid-transaction in each way.
fn script_images(dir: &Path, mode: Mode) -> Vec<Image> {
    disk::sqlite::seed_prng(7);
    let installed = disk::install(dir, Box::new(Passive::default()));
    let conn = fresh_db(dir, mode, 100);
    commit_rows(&conn, 100..200);
    spill_uncommitted(&conn, 200..1_500);
    let fs = model();
    let images = [PROCESS_CRASH, POWER_LOSS, TORN].map(|spec| world::crash_image(&fs, spec, &mut rng(3)));
    drop(conn);
    drop(installed);
    images.into()
}

/// The same script gives the same bytes twice, in every crash image.
#[test]
fn same_script_same_bytes() {
    let _serial = serial();
    disk::sqlite::register();
    let dir = TestDir::new("root");
    for mode in [DELETE_FULL, WAL_FULL] {
        let first = script_images(dir.path(), mode);
        assert_eq!(first, script_images(dir.path(), mode), "{mode:?}");
        assert!(first.iter().all(|image| file(image, DB).is_some()), "{mode:?}");
        assert_ne!(first[0], first[1], "{mode:?}: a process crash keeps more than a power loss");
    }
}

/// DELETE+FULL: COMMIT is the journal's unlink, which SQLite does not make
/// durable (it syncs the directory after the unlink only at EXTRA). After a
/// power loss the journal comes back, hot, and SQLite rolls the committed
/// transaction back. DELETE+EXTRA keeps it.
#[test]
fn delete_full_loses_the_commit_whose_journal_unlink_was_not_durable() {
    let _serial = serial();
    let (dir, _disk) = setup("root");
    let conn = fresh_db(dir.path(), DELETE_FULL, 100);
    commit_rows(&conn, 100..200);
    assert_eq!(model().lookup(JOURNAL), None, "COMMIT unlinked the journal");
    let fs = model();
    let image = power_loss(&fs);
    assert!(file(&image, JOURNAL).is_some_and(|j| !j.is_empty()), "the unlink is lost: the journal is back");
    let conn = restart(conn, dir.path(), &image, DELETE_FULL);
    assert_eq!(integrity(&conn), "ok");
    assert_eq!(rows(&conn), 100, "the hot journal rolled the committed transaction back");
    drop(conn);

    // Torn: the unlink survives in some seeds (commit kept) and not in others (rolled back).
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let image = fs.surviving(&mut Torn(&mut rng(seed)));
        disk::restore(&image);
        let conn = open(dir.path(), DELETE_FULL);
        assert_eq!(integrity(&conn), "ok", "seed {seed}");
        outcomes.insert(rows(&conn));
    }
    assert_eq!(outcomes, [100, 200].into(), "torn: the commit is kept or rolled back");

    let conn = fresh_db(dir.path(), DELETE_EXTRA, 100);
    commit_rows(&conn, 100..200);
    let image = power_loss(&model());
    assert_eq!(file(&image, JOURNAL), None, "EXTRA synced the directory after the unlink");
    let conn = restart(conn, dir.path(), &image, DELETE_EXTRA);
    assert_eq!(rows(&conn), 200);
}

/// A WAL never synced (synchronous=OFF, on a database made durable before)
/// whose directory entry a directory sync made durable: after a power loss
/// it is there with its durable (empty) content plus surviving or torn
/// sectors; before that sync, a torn power loss that keeps its entry gives
/// the same file. The rule every never-synced file follows, whoever wrote it
/// (`common::assert_never_synced_rule`; the same rule for LMDB's data file
/// and a plain file in `disk_lmdb`).
#[test]
fn a_never_synced_wal_follows_the_one_torn_rule() {
    let _serial = serial();
    let (dir, _disk) = setup("root");
    let conn = fresh_db(dir.path(), WAL_FULL, 10);
    drop(conn); // checkpoints and deletes the WAL
                // A model with nothing pending (no unlinked journal left to draw for).
    disk::restore(&model().live_image());
    assert_eq!(model().lookup(WAL), None);
    let conn = open(dir.path(), WAL_OFF);
    conn.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
    for step in 1..=4 {
        commit_rows(&conn, step * 10..step * 10 + 10);
    }
    let pending = model();
    std::fs::File::open(dir.path()).unwrap().sync_all().unwrap();
    let fs = model();
    assert!(fs.pending_dir_ops().is_empty());
    common::assert_never_synced_rule(&fs, &[WAL]);
    common::assert_surviving_entry_is_the_same_rule(&pending, &fs, WAL);
}

/// WAL+NORMAL syncs the WAL's header but not its commits: a torn power loss
/// keeps a prefix of the commits (their frames are checksummed), never a
/// corrupt database. (Small pages, so that a commit's frame survives whole
/// in some seeds.)
#[test]
fn wal_normal_torn_power_loss_keeps_a_prefix_of_the_commits() {
    let _serial = serial();
    let (dir, _disk) = setup("root");
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let conn = Connection::open_with_flags_and_vfs(dir.path().join(DB), flags, disk::sqlite::VFS_NAME).unwrap();
    conn.execute_batch("PRAGMA page_size=512; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0").unwrap();
    assert_eq!(pragma::<String>(&conn, "PRAGMA journal_mode=wal").unwrap(), "wal");
    conn.execute_batch("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
    assert_eq!(pragma::<i64>(&conn, "PRAGMA wal_checkpoint(TRUNCATE)").unwrap(), 0, "not busy");
    for k in 0..4 {
        conn.execute("INSERT INTO kv VALUES (?1, 'x')", [k]).unwrap();
    }
    let fs = model();
    let wal = fs.lookup(WAL).expect("a WAL");
    assert_eq!(fs.durable(wal).map(|b| b.len()), Some(32), "only the WAL header was synced");
    assert_eq!(file(&power_loss(&fs), WAL).map(|w| w.len()), Some(32));
    let mut seen = std::collections::BTreeSet::new();
    let mut conn = conn;
    for seed in 0..48 {
        let image = fs.surviving(&mut Torn(&mut rng(seed)));
        conn = restart(conn, dir.path(), &image, WAL_NORMAL);
        assert_eq!(integrity(&conn), "ok", "seed {seed}");
        let got = table_state(&conn);
        assert!(matches!(got, Some(0..=4)), "seed {seed}: {got:?} is not a prefix of the commits");
        seen.insert(got);
    }
    eprintln!("WAL+NORMAL, torn: rows recovered {seen:?}");
    assert!(seen.len() >= 2, "the torn WAL keeps different prefixes: {seen:?}");
}

/// The VFS does not claim powersafe overwrite (a torn sector may lose bytes
/// that were not being written); SQLite's default unix VFS does. Its effect:
/// each WAL commit is padded to a sector boundary.
#[test]
fn the_vfs_does_not_claim_powersafe_overwrite() {
    let _serial = serial();
    let (dir, _disk) = setup("root");
    let plain_dir = TestDir::new("untracked");

    let ours = open(dir.path(), WAL_FULL);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let unix = Connection::open_with_flags_and_vfs(plain_dir.path().join(DB), flags, "unix").unwrap();
    unix.execute_batch("PRAGMA synchronous=FULL").unwrap();
    assert_eq!(pragma::<String>(&unix, "PRAGMA journal_mode=wal").unwrap(), "wal");

    let (ours_caps, sector) = device(&ours, ffi::SQLITE_FCNTL_FILE_POINTER);
    let (unix_caps, _) = device(&unix, ffi::SQLITE_FCNTL_FILE_POINTER);
    assert_ne!(unix_caps & ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE, 0, "the unix VFS claims it");
    assert_eq!(ours_caps & ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE, 0, "swingsim does not");
    assert_eq!(ours_caps, unix_caps & !ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE, "nothing else differs");

    // The same commits in both: ours are padded to the sector boundary with
    // copies of the commit frame; the unix VFS's are not.
    let wal_len = |dir: &Path| std::fs::metadata(dir.join(WAL)).map_or(0, |m| m.len() as usize);
    let page: i64 = ours.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let frame = 24 + page as usize;
    let commits: [&dyn Fn(&Connection); 2] =
        [&|conn| conn.execute_batch("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap(), &|conn| {
            commit_rows(conn, 0..3)
        }];
    let mut padded = 0;
    for commit in commits {
        let (ours_before, unix_before) = (wal_len(dir.path()).max(32), wal_len(plain_dir.path()).max(32));
        commit(&ours);
        commit(&unix);
        let (ours_after, unix_after) = (wal_len(dir.path()), wal_len(plain_dir.path()));
        assert_eq!((unix_after - unix_before) % frame, 0);
        // Ours without padding would end where the same frames end.
        let unpadded = ours_before + (unix_after - unix_before);
        let boundary = unpadded.div_ceil(sector) * sector;
        assert!(
            ours_after >= boundary && ours_after - frame < boundary,
            "ours ends at {ours_after}: padded from {unpadded} to the first frame end past {boundary}"
        );
        padded += (ours_after - unpadded) / frame;
    }
    assert!(padded > 0, "padding frames were written");
    let (wal_caps, _) = device(&ours, ffi::SQLITE_FCNTL_JOURNAL_POINTER);
    assert_eq!(wal_caps & ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE, 0, "nor for the WAL");
    let ours_wal = wal_len(dir.path());
    assert_eq!(model().live(model().lookup(WAL).unwrap()).map(|b| b.len()), Some(ours_wal));
    drop(unix);
}

/// The device characteristics and sector size of the file `op` points at
/// (`SQLITE_FCNTL_FILE_POINTER`: the database; `..._JOURNAL_POINTER`: the WAL).
fn device(conn: &Connection, op: i32) -> (i32, usize) {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the connection is open; the file control writes one pointer to `file`,
    // which SQLite keeps alive while the connection is open.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            op,
            (&mut file as *mut *mut ffi::sqlite3_file).cast(),
        );
        assert_eq!(rc, ffi::SQLITE_OK);
        assert!(!file.is_null() && !(*file).pMethods.is_null(), "an open file");
        let methods = &*(*file).pMethods;
        let caps = methods.xDeviceCharacteristics.expect("xDeviceCharacteristics")(file);
        let sector = methods.xSectorSize.expect("xSectorSize")(file);
        (caps, sector as usize)
    }
}

/// Temporary files (VACUUM, temp tables) are outside the store's directory
/// and never enter the model.
#[test]
fn temp_files_stay_out_of_the_model() {
    let _serial = serial();
    let (dir, _disk) = setup("root");
    let conn = fresh_db(dir.path(), DELETE_FULL, 500);
    conn.execute_batch(
        "PRAGMA temp_store=FILE; PRAGMA cache_size=10;
         CREATE TEMP TABLE t AS SELECT k, v FROM kv ORDER BY v DESC;
         VACUUM;",
    )
    .unwrap();
    let sum: i64 = conn.query_row("SELECT sum(k) FROM t", [], |row| row.get(0)).unwrap();
    assert_eq!(sum, (0..500).sum::<i64>());
    let names: Vec<String> = model().live_image().files().into_iter().map(|(p, _)| p).collect();
    assert_eq!(names, [DB]);
    assert_eq!(integrity(&conn), "ok");
}

// ---------------------------------------------------------------------------
// The run's world as the injector: a crash at every durability point.

/// Rows in `kv`, or `None` if the table does not exist.
fn table_state(conn: &Connection) -> Option<i64> {
    let tables: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'kv'", [], |row| row.get(0)).unwrap();
    (tables == 1).then(|| rows(conn))
}

/// Setup, then two commits; the points hit after each step, or the error of
/// the step the crash stopped.
fn world_script(dir: &Path, mode: Mode) -> Result<Vec<u64>, rusqlite::Error> {
    let conn = try_open(dir, mode)?;
    conn.execute_batch("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")?;
    let mut after = vec![world::points_hit()];
    for keys in [0..10, 10..20] {
        let tx = conn.unchecked_transaction()?;
        for k in keys {
            tx.execute("INSERT INTO kv (k, v) VALUES (?1, printf('%0300d', ?1))", [k])?;
        }
        tx.commit()?;
        after.push(world::points_hit());
    }
    Ok(after)
}

/// A crash (power loss, torn, process crash) at every durability point of
/// the script, as the run's `World` makes it, recovers to the state before
/// or after the step it interrupted (WAL+FULL and DELETE+EXTRA).
#[test]
fn world_crash_at_every_point_recovers_before_or_after_its_step() {
    let _serial = serial();
    disk::sqlite::register();
    let dir = TestDir::new("root");
    // After setup an empty table, then 10 and 20 rows.
    let states = [None, Some(0), Some(10), Some(20)];
    for mode in [WAL_FULL, DELETE_EXTRA] {
        disk::sqlite::seed_prng(7);
        let installed = disk::install(dir.path(), Box::new(World::new(1, POWER_LOSS, vec![])));
        let ends = world_script(dir.path(), mode).expect("no crash planned");
        let sites = disk::with_injector(|w: &mut World| w.sites().to_vec()).unwrap();
        drop(installed);
        // Closing the connection (a WAL checkpoint) hits points after the script's last step.
        assert!(sites.len() as u64 >= ends[2]);
        let sites = &sites[..ends[2] as usize];
        eprintln!("{mode:?}: {} points: {:?}", sites.len(), sites.iter().map(|s| s.kind.name()).collect::<Vec<_>>());
        let kinds: std::collections::BTreeSet<_> = sites.iter().map(|s| s.kind).collect();
        assert!(kinds.contains(&PointKind::SqliteSync) && kinds.contains(&PointKind::DirSync), "{kinds:?}");
        for spec in [POWER_LOSS, TORN, PROCESS_CRASH] {
            for (ordinal, site) in sites.iter().enumerate() {
                let nth = sites[..=ordinal].iter().filter(|s| s.kind == site.kind).count() as u64;
                let plan = vec![CrashAt { at: site.kind, block: 0, nth }];
                disk::sqlite::seed_prng(7);
                let installed = disk::install(dir.path(), Box::new(World::new(ordinal as u64, spec, plan)));
                let what = format!("{mode:?} {spec:?} at #{ordinal} ({})", site.kind);
                assert!(world_script(dir.path(), mode).is_err(), "{what}: the crash stops the script");
                let (record, image) = world::take_crash().expect("crashed");
                assert_eq!(record.ordinal, ordinal as u64, "{what}");
                drop(installed);
                let step = ends.iter().position(|&end| (ordinal as u64) < end).unwrap();

                let installed = disk::install(dir.path(), Box::new(Passive::default()));
                disk::restore(&image);
                let conn = open(dir.path(), mode);
                assert_eq!(integrity(&conn), "ok", "{what}");
                let got = table_state(&conn);
                assert!(got == states[step] || got == states[step + 1], "{what}: {got:?}");
                drop(conn);
                drop(installed);
            }
        }
    }
}
