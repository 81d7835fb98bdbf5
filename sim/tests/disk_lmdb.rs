//! LMDB (heed) on the simulated disk: its writes, `fdatasync`s and O_DSYNC
//! meta-page writes reach the model through the interposed libc, and the
//! crash images the model makes come back as what LMDB promises, once the
//! directories holding its files are synced (LMDB never syncs them).

mod common;

use common::{file, power_loss, torn, TestDir};
use heed::types::Str;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions};
use sim::disk::fs::{Fs, Image, ROOT};
use sim::disk::{self, Passive};
use sim::fault::{CrashAt, CrashSpec, FaultMode, PointKind};
use sim::world::{self, World};
use std::collections::BTreeMap;
use std::path::Path;

type Db = Database<'static, Str, Str>;
type State = BTreeMap<String, String>;

const COMMITS: usize = 6;
const POWER_LOSS: CrashSpec = CrashSpec { mode: FaultMode::PowerLoss, torn: false };
const TORN: CrashSpec = CrashSpec { mode: FaultMode::PowerLoss, torn: true };
const PROCESS_CRASH: CrashSpec = CrashSpec { mode: FaultMode::ProcessCrash, torn: false };

fn open_env(dir: &Path) -> heed::Result<Env> {
    // SAFETY: each test opens an environment from one place only.
    unsafe { EnvOpenOptions::new().map_size(1 << 20).max_dbs(1).open(dir) }
}

fn close_env(env: Env) {
    env.prepare_for_closing().wait();
}

fn create_db(env: &Env) -> heed::Result<Db> {
    let wtxn = env.write_txn()?;
    Ok(env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener.create_database::<Str, Str>(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
        })?
        .unwrap_commit())
}

/// Commit `i` (1-based): a small key and, every other commit, a value
/// spanning several pages (overflow pages, which LMDB writes with writev).
fn commit(env: &Env, db: Db, i: usize) -> heed::Result<()> {
    let mut wtxn = env.write_txn()?;
    for (key, value) in writes(i) {
        db.put(&mut wtxn, &key, &value)?;
    }
    wtxn.commit()
}

fn writes(i: usize) -> Vec<(String, String)> {
    let mut out = vec![(format!("k{i:03}"), format!("small value {i}"))];
    if i & 1 == 0 {
        out.push((format!("big{i:03}"), format!("{i}-").repeat(3000)));
    }
    out
}

/// The content after the first `j` commits (0: none).
fn state_after(j: usize) -> State {
    (1..=j).flat_map(writes).collect()
}

fn read_state(env: &Env) -> State {
    let rtxn = env.read_txn().unwrap();
    let db: Option<Db> = env
        .open_databases_and_commit(rtxn, |opener, rtxn| {
            opener.open_database::<Str, Str>(rtxn, None).map(CommitOrAbort::<_, ()>::Commit)
        })
        .unwrap()
        .unwrap_commit();
    let Some(db) = db else { return State::new() };
    let rtxn = env.read_txn().unwrap();
    db.iter(&rtxn).unwrap().map(|e| e.map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap()).collect()
}

fn model() -> Fs {
    disk::state().expect("a disk is installed")
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The store's way to make an environment (`store::lmdb::create_env`): in a
/// staging directory, synced (data file, then the directory), renamed into
/// place, the parent synced.
fn create_env_as_the_store_does(root: &Path) -> Result<(), String> {
    let staging = root.join("kv.new");
    std::fs::create_dir(&staging).map_err(|e| e.to_string())?;
    let env = open_env(&staging).map_err(|e| e.to_string())?;
    let synced = create_db(&env).and_then(|_| env.force_sync());
    close_env(env);
    synced.map_err(|e| e.to_string())?;
    sync_dir(&staging).map_err(|e| e.to_string())?;
    std::fs::rename(&staging, root.join("kv")).map_err(|e| e.to_string())?;
    sync_dir(root).map_err(|e| e.to_string())
}

/// The store-like sequence: make the environment, then the commits. Returns
/// the operation that failed (0: making it, `i`: commit `i`), if any.
fn run_sequence(root: &Path) -> Option<usize> {
    if create_env_as_the_store_does(root).is_err() {
        return Some(0);
    }
    let env = open_env(&root.join("kv")).expect("open the made environment");
    let db = create_db(&env).expect("the main database");
    let failed = (1..=COMMITS).find(|&i| commit(&env, db, i).is_err());
    close_env(env);
    failed
}

fn lmdb_points() -> usize {
    world::points_by_kind().get(&PointKind::LmdbSync).map_or(0, Vec::len)
}

/// The store-like sequence makes every commit durable: after a power loss
/// the environment holds all of them. A commit is an `fdatasync` of the data
/// pages and an O_DSYNC meta-page write (two `lmdb-sync` points); afterwards
/// nothing is pending, so a torn power loss and a process crash leave the
/// same image.
#[test]
fn committed_data_survives_a_power_loss_with_the_store_sequence() {
    let dir = TestDir::new("root");
    let _disk = disk::install(dir.path(), Box::new(World::new(1, POWER_LOSS, vec![])));
    create_env_as_the_store_does(dir.path()).unwrap();
    let made = world::points_by_kind();
    assert_eq!(made.get(&PointKind::DirSync).map(Vec::len), Some(2), "kv.new, then the root: {made:?}");
    let env = open_env(&dir.path().join("kv")).unwrap();
    let db = create_db(&env).unwrap();
    let before = lmdb_points();
    let mut per_commit = Vec::new();
    for i in 1..=COMMITS {
        let before = lmdb_points();
        commit(&env, db, i).unwrap();
        per_commit.push(lmdb_points() - before);
    }
    assert_eq!(lmdb_points() - before, 2 * COMMITS, "{per_commit:?}");
    assert!(per_commit.iter().all(|&n| n == 2), "{per_commit:?}");

    let fs = model();
    let image = power_loss(&fs);
    let names: Vec<String> = image.files().into_iter().map(|(p, _)| p).collect();
    assert_eq!(names, ["kv/data.mdb"], "lock.mdb is scratch; kv.new was renamed");
    assert_eq!(torn(&fs, 7), image, "nothing pending: nothing to tear");
    assert_eq!(fs.live_image(), image, "the live file is the durable one");

    close_env(env);
    disk::restore(&image);
    assert!(!dir.path().join("kv/lock.mdb").exists(), "restore leaves scratch files out");
    let env = open_env(&dir.path().join("kv")).unwrap();
    assert_eq!(read_state(&env), state_after(COMMITS));
    close_env(env);
}

/// Without a directory sync, an environment's data file that LMDB created
/// and committed to (every commit's data and meta page synced) is missing
/// after a power loss: its directory entry was never made durable. The data
/// itself was: with the directory synced in a copy of the model, it is all there.
#[test]
fn without_a_directory_sync_the_created_data_file_is_missing() {
    let dir = TestDir::new("root");
    let _disk = disk::install(dir.path(), Box::new(Passive::default()));
    let env = open_env(dir.path()).unwrap();
    let db = create_db(&env).unwrap();
    env.force_sync().unwrap();
    for i in 1..=3 {
        commit(&env, db, i).unwrap();
    }
    let fs = model();
    let data = fs.lookup("data.mdb").expect("LMDB's data file is in the model");
    assert_eq!(fs.durable(data), fs.live(data), "every byte of it synced");
    assert_eq!(fs.lookup("lock.mdb"), None, "lock.mdb is scratch");
    assert_eq!(power_loss(&fs), Image::default(), "the created data file is missing");
    for seed in 0..16 {
        let image = torn(&fs, seed);
        assert!(image == Image::default() || file(&image, "data.mdb") == Some(fs.live(data).unwrap().to_vec()));
    }

    let mut synced = fs.clone();
    synced.sync_dir(ROOT);
    let with_entry = power_loss(&synced);
    assert!(file(&with_entry, "data.mdb").is_some());

    close_env(env);
    disk::restore(&with_entry);
    let env = open_env(dir.path()).unwrap();
    assert_eq!(read_state(&env), state_after(3), "with its entry durable, every commit is there");
    close_env(env);
    disk::restore(&power_loss(&fs));
    let env = open_env(dir.path()).unwrap();
    assert_eq!(read_state(&env), State::new(), "without it, a new empty environment");
    close_env(env);
}

/// A new environment's meta pages are written without a sync; once the
/// directory is synced (as the store does at open), its data file follows
/// the one rule for a never-synced file: empty, plus surviving or torn
/// sectors, exactly as a plain file of the same bytes would tear
/// (`common::assert_never_synced_rule`; the same for SQLite's WAL in
/// `disk_sqlite`). Before the directory sync, a torn power loss that keeps
/// the entry gives the same file.
#[test]
fn a_new_environment_follows_the_one_torn_rule() {
    let dir = TestDir::new("root");
    let _disk = disk::install(dir.path(), Box::new(Passive::default()));
    let env = open_env(dir.path()).unwrap();
    let pending = model();
    sync_dir(dir.path()).unwrap();
    let fs = model();
    let data = fs.lookup("data.mdb").unwrap();
    assert!(fs.live(data).is_some_and(|b| b.len() >= 2 * 4096), "two meta pages written");
    common::assert_never_synced_rule(&fs, &["data.mdb"]);
    common::assert_surviving_entry_is_the_same_rule(&pending, &fs, "data.mdb");
    close_env(env);
}

/// A plain `std::fs` file follows the same rule, entry durable or surviving torn.
#[test]
fn a_plain_file_follows_the_one_torn_rule() {
    let dir = TestDir::new("root");
    let _disk = disk::install(dir.path(), Box::new(Passive::default()));
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8 + 1).collect();
    std::fs::write(dir.path().join("plain.bin"), &bytes).unwrap();
    let pending = model();
    sync_dir(dir.path()).unwrap();
    common::assert_never_synced_rule(&model(), &["plain.bin"]);
    common::assert_surviving_entry_is_the_same_rule(&pending, &model(), "plain.bin");
}

/// A crash (power loss, torn, process crash) at every durability point of
/// the store-like sequence, as the run's `World` makes it: the environment
/// recovers to the state before or after the operation the crash stopped;
/// a crash while the environment is made leaves none or an empty one.
///
/// A crash at a point stops the process just before the point's operation
/// takes effect, so a commit crashed at its data sync or its meta-page write
/// is lost ("before"), and `expected` counts the outcomes exactly (`None`:
/// the 12 commit points "before", the 3 others whatever the draws give).
fn crash_at_every_point(name: &str, spec: CrashSpec, expected: Option<&[(&str, usize)]>) {
    let dir = TestDir::new(name);
    let installed = disk::install(dir.path(), Box::new(World::new(3, spec, vec![])));
    assert_eq!(run_sequence(dir.path()), None);
    let sites = disk::with_injector(|w: &mut World| w.sites().to_vec()).unwrap();
    drop(installed);
    let lmdb = sites.iter().filter(|s| s.kind == PointKind::LmdbSync).count();
    let dirs = sites.iter().filter(|s| s.kind == PointKind::DirSync).count();
    assert_eq!((lmdb, dirs, sites.len()), (1 + 2 * COMMITS, 2, 3 + 2 * COMMITS), "{sites:?}");

    let mut outcomes = BTreeMap::new();
    for (ordinal, site) in sites.iter().enumerate() {
        let nth = sites[..=ordinal].iter().filter(|s| s.kind == site.kind).count() as u64;
        let world = World::new(100 + ordinal as u64, spec, vec![CrashAt { at: site.kind, block: 0, nth }]);
        let installed = disk::install(dir.path(), Box::new(world));
        let failed = run_sequence(dir.path()).unwrap_or_else(|| panic!("{name}: nothing failed at point {ordinal}"));
        let (record, image) = world::take_crash().expect("a crash");
        assert_eq!((record.ordinal, record.kind), (ordinal as u64, site.kind));
        drop(installed);

        let installed = disk::install(dir.path(), Box::new(Passive::default()));
        disk::restore(&image);
        let kv = dir.path().join("kv");
        if !kv.exists() {
            assert_eq!(failed, 0, "{name}: the environment is gone after a crash in commit {failed} ({record})");
            *outcomes.entry("no environment").or_insert(0) += 1;
            drop(installed);
            continue;
        }
        let env = open_env(&kv).unwrap_or_else(|e| panic!("{name}: crash at {record}: {e}"));
        let state = read_state(&env);
        let outcome = if failed > 0 && state == state_after(failed - 1) {
            "before"
        } else if state == state_after(failed) {
            "after"
        } else {
            panic!(
                "{name}: crash at {record} in operation {failed}: recovered keys {:?}",
                state.keys().collect::<Vec<_>>()
            )
        };
        *outcomes.entry(outcome).or_insert(0) += 1;

        // The recovered environment keeps working, and its next commit is durable.
        let db = create_db(&env).unwrap();
        commit(&env, db, 100).unwrap();
        let mut expected = state;
        expected.extend(writes(100));
        assert_eq!(read_state(&env), expected);
        let again = power_loss(&model());
        close_env(env);
        disk::restore(&again);
        let env = open_env(&kv).unwrap();
        assert_eq!(read_state(&env), expected, "{name}: the commit after recovery is durable");
        close_env(env);
        drop(installed);
    }
    eprintln!("{name}: {} points: {outcomes:?}", sites.len());
    match expected {
        Some(expected) => assert_eq!(outcomes, expected.iter().copied().collect::<BTreeMap<_, _>>()),
        None => {
            assert_eq!(outcomes.get("before"), Some(&(2 * COMMITS)), "{outcomes:?}");
            assert_eq!(outcomes.values().sum::<usize>(), sites.len(), "{outcomes:?}");
        }
    }
}

#[test]
fn crash_at_every_point_power_loss() {
    // Made: crashed before the root's sync made `kv` durable, no environment.
    crash_at_every_point("power-loss", POWER_LOSS, Some(&[("no environment", 3), ("before", 12)]));
}

#[test]
fn crash_at_every_point_torn() {
    // Torn: the root's pending entries may survive, so making it may end in either.
    crash_at_every_point("torn", TORN, None);
}

#[test]
fn crash_at_every_point_process_crash() {
    // Crashed at the root's sync, the rename has happened: an empty environment ("after").
    crash_at_every_point("process-crash", PROCESS_CRASH, Some(&[("no environment", 2), ("after", 1), ("before", 12)]));
}

/// I/O outside the store's directory, and on a thread with no disk, is the
/// real call only: no point, nothing in the model, the bytes right.
#[test]
fn untracked_io_passes_through() {
    let dir = TestDir::new("root");
    let other = TestDir::new("other");
    let world = World::new(5, POWER_LOSS, vec![]);
    let _disk = disk::install(dir.path(), Box::new(world));
    let run = |other: &Path| {
        let path = other.join("plain.bin");
        std::fs::write(&path, b"hello world").unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"HELLO", 0).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"!", 11).unwrap();
        file.sync_data().unwrap();
        file.sync_all().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"HELLO world!");
        std::fs::rename(&path, other.join("renamed.bin")).unwrap();
        std::fs::create_dir(other.join("sub")).unwrap();
        std::fs::remove_dir(other.join("sub")).unwrap();
        // An LMDB environment outside the store's directory is not tracked either.
        let env = open_env(other).unwrap();
        let db = create_db(&env).unwrap();
        commit(&env, db, 2).unwrap();
        assert_eq!(read_state(&env), state_after(2).into_iter().filter(|(k, _)| k.ends_with("002")).collect());
        close_env(env);
        std::fs::remove_file(other.join("data.mdb")).unwrap();
    };
    run(other.path());
    assert_eq!(world::points_hit(), 0, "no point outside the root");
    assert_eq!(model().live_image(), Image::default(), "nothing outside the root in the model");

    // A thread with no disk, on a path inside the root too: not tracked.
    let root = dir.path().to_path_buf();
    let elsewhere = TestDir::new("other-thread");
    let other = elsewhere.path().to_path_buf();
    std::thread::spawn(move || {
        assert!(disk::state().is_none());
        std::fs::write(root.join("from-another-thread"), b"x").unwrap();
        std::fs::File::open(&root).unwrap().sync_all().unwrap();
        std::fs::remove_file(root.join("from-another-thread")).unwrap();
        run(&other);
    })
    .join()
    .unwrap();
    assert_eq!(world::points_hit(), 0);
    assert_eq!(model().live_image(), Image::default());
}
