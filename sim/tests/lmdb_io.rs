//! The LMDB interposition layer against real LMDB (heed) and against plain file I/O.

use heed::types::Str;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use sim::fault::{CrashSpec, FaultMode, PointKind, SECTOR_BYTES};
use sim::lmdb_io::{self, LmdbImage};
use sim::world::{self, World};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

type Db = Database<'static, Str, Str>;
type State = BTreeMap<String, String>;

const COMMITS: usize = 6;

/// A fresh directory for one test, on tmpfs when there is one.
fn test_dir(name: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = base.join(format!("sim-lmdb-io-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open_env(dir: &Path) -> Env {
    unsafe { EnvOpenOptions::new().map_size(1 << 20).max_dbs(1).open(dir) }.expect("open LMDB")
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

/// Commit `i` (1-based) of the sequence: a small key and, every other commit,
/// a value spanning several pages (overflow pages, written by writev).
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

/// The content after the first `j` commits of the sequence (0: none).
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

fn lmdb_points() -> Vec<u64> {
    world::points_by_kind().get(&PointKind::LmdbSync).cloned().unwrap_or_default()
}

fn spec(mode: FaultMode, torn: bool) -> CrashSpec {
    CrashSpec { mode, torn }
}

fn data_file(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap().join("data.mdb")
}

#[test]
fn committed_data_survives_power_loss() {
    let dir = test_dir("committed");
    world::install(World::new(1, spec(FaultMode::PowerLoss, false), vec![]));
    lmdb_io::track_dir(&dir);

    let env = open_env(&dir);
    let db = create_db(&env).unwrap();
    let after_create = lmdb_points().len();
    let mut per_commit = Vec::new();
    for i in 1..=COMMITS {
        let before = lmdb_points().len();
        commit(&env, db, i).unwrap();
        per_commit.push(lmdb_points().len() - before);
    }
    eprintln!("lmdb-sync points: create {after_create}, per commit {per_commit:?}");
    // Creating the unnamed database dirties nothing: LMDB skips that commit.
    assert_eq!(after_create, 0);
    // An fdatasync of the data pages and an O_DSYNC meta-page write per commit.
    assert!(per_commit.iter().all(|&n| n == 2), "{per_commit:?}");
    assert_eq!(world::points_hit(), 2 * COMMITS as u64);

    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let image = lmdb_io::capture(spec(FaultMode::PowerLoss, false), &mut rng);
    assert_eq!(image.files.keys().collect::<Vec<_>>(), vec![&data_file(&dir)]);
    // Nothing is pending after a commit: tearing changes nothing, and the live
    // file is the durable one.
    assert_eq!(lmdb_io::capture(spec(FaultMode::PowerLoss, true), &mut rng), image);
    assert_eq!(lmdb_io::capture(spec(FaultMode::ProcessCrash, false), &mut rng), image);

    close_env(env);
    lmdb_io::restore(&image);
    assert!(!dir.join("lock.mdb").exists());
    let env = open_env(&dir);
    assert_eq!(read_state(&env), state_after(COMMITS));
    close_env(env);

    world::uninstall();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Run the create + commits sequence until an operation fails; returns the
/// index of the failed operation (0: create, i: commit i), if any.
fn run_sequence(env: &Env) -> Option<usize> {
    let Ok(db) = create_db(env) else {
        return Some(0);
    };
    (1..=COMMITS).find(|&i| commit(env, db, i).is_err())
}

fn crash_at_every_point(name: &str, crash: CrashSpec) {
    let dir = test_dir(name);

    // A dry run counts the points.
    world::install(World::new(3, crash, vec![]));
    lmdb_io::track_dir(&dir);
    let env = open_env(&dir);
    assert_eq!(run_sequence(&env), None);
    close_env(env);
    let total = world::points_hit();
    assert_eq!(lmdb_points().len() as u64, total);
    assert_eq!(total, 2 * COMMITS as u64);

    let mut outcomes = BTreeMap::new();
    for k in 0..total {
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        world::install(World::new(100 + k, crash, vec![lmdb_point(k)]));
        lmdb_io::track_dir(&dir);

        let env = open_env(&dir);
        let failed = run_sequence(&env).unwrap_or_else(|| panic!("{name}: no operation failed at point {k}"));
        let (record, images) = world::take_crash().expect("a crash");
        assert_eq!(record.ordinal, k);
        assert_eq!(record.kind, PointKind::LmdbSync);
        assert_eq!(record.database, "lmdb");
        close_env(env);

        lmdb_io::restore(&images.lmdb);
        let env = open_env(&dir);
        let state = read_state(&env);
        let outcome = if failed > 0 && state == state_after(failed - 1) {
            "before"
        } else if state == state_after(failed) {
            "after"
        } else if failed == 0 && state.is_empty() {
            "before"
        } else {
            panic!(
                "{name}: crash at point {k} ({record}) during operation {failed}: recovered keys {:?}",
                state.keys().collect::<Vec<_>>()
            )
        };
        *outcomes.entry(outcome).or_insert(0) += 1;

        // The recovered environment keeps working.
        let db = create_db(&env).unwrap();
        commit(&env, db, 100).unwrap();
        let mut expected = state;
        expected.extend(writes(100));
        assert_eq!(read_state(&env), expected);
        close_env(env);
    }
    eprintln!("{name}: {total} points, recovered state relative to the failed operation: {outcomes:?}");

    world::uninstall();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn crash_at_every_point_power_loss() {
    crash_at_every_point("power-loss", spec(FaultMode::PowerLoss, false));
}

#[test]
fn crash_at_every_point_power_loss_torn() {
    crash_at_every_point("power-loss-torn", spec(FaultMode::PowerLoss, true));
}

#[test]
fn crash_at_every_point_process_crash() {
    crash_at_every_point("process-crash", spec(FaultMode::ProcessCrash, false));
}

#[test]
fn untracked_io_passes_through() {
    let dir = test_dir("untracked");
    let other = test_dir("untracked-other");
    // Once on a thread that tracks nothing, once on one that tracks `dir`.
    for tracking in [false, true] {
        world::install(World::new(5, spec(FaultMode::PowerLoss, false), vec![]));
        if tracking {
            lmdb_io::track_dir(&dir);
        }
        let path = other.join("plain.bin");
        std::fs::write(&path, b"hello world").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        file.write_all_at(b"HELLO", 0).unwrap();
        file.write_all_at(b"!", 11).unwrap();
        file.sync_data().unwrap();
        file.sync_all().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"HELLO world!");
        // A data.mdb outside the tracked directory is not tracked either.
        let mdb = other.join("data.mdb");
        let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&mdb).unwrap();
        file.write_all_at(&[1; 1000], 0).unwrap();
        file.sync_data().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&mdb).unwrap(), vec![1; 1000]);
        assert_eq!(world::points_hit(), 0);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(lmdb_io::capture(spec(FaultMode::ProcessCrash, false), &mut rng), LmdbImage::default());
        world::uninstall();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

/// The model on plain file I/O: pending writes, syncs, O_DSYNC writes, torn sectors.
#[test]
fn model_of_plain_writes() {
    const S: usize = SECTOR_BYTES;
    let dir = test_dir("model");
    world::install(World::new(9, spec(FaultMode::PowerLoss, false), vec![]));
    lmdb_io::track_dir(&dir);
    let path = data_file(&dir);
    let power_loss = |torn: bool, seed: u64| {
        lmdb_io::capture(spec(FaultMode::PowerLoss, torn), &mut ChaCha8Rng::seed_from_u64(seed))
    };
    let process_crash = || lmdb_io::capture(spec(FaultMode::ProcessCrash, false), &mut ChaCha8Rng::seed_from_u64(0));
    let image = |bytes: &[u8]| LmdbImage { files: BTreeMap::from([(path.clone(), bytes.to_vec())]) };

    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
    // The lock file is not durable state.
    std::fs::File::create(dir.join("lock.mdb")).unwrap().write_all_at(b"lock", 0).unwrap();
    let v1 = vec![1u8; 4 * S];
    file.write_all_at(&v1, 0).unwrap();
    assert_eq!(power_loss(false, 0), LmdbImage::default(), "never synced: absent");
    assert_eq!(power_loss(true, 0), LmdbImage::default(), "never synced: absent, even torn");
    assert_eq!(process_crash(), image(&v1));
    assert_eq!(world::points_hit(), 0);

    file.sync_data().unwrap();
    assert_eq!(world::points_hit(), 1);
    assert_eq!(power_loss(false, 0), image(&v1));
    assert_eq!(power_loss(true, 0), image(&v1));

    // Pending: part of sector 1, sector 3, and sectors 5..6 past the end (writev at the position).
    file.write_all_at(&[2; 10], S as u64 + 7).unwrap();
    file.write_all_at(&[3; S], 3 * S as u64).unwrap();
    let mut cursor = &file;
    cursor.seek(SeekFrom::Start(5 * S as u64)).unwrap();
    let written = cursor.write_vectored(&[IoSlice::new(&[5; S]), IoSlice::new(&[6; S])]).unwrap();
    assert_eq!(written, 2 * S);
    let live = std::fs::read(&path).unwrap();
    assert_eq!(live.len(), 7 * S);
    assert_eq!(power_loss(false, 0), image(&v1));
    assert_eq!(process_crash(), image(&live));

    // Torn: each pending sector is live, durable, or garbage; the rest is durable.
    let mut fates = BTreeMap::new();
    for seed in 0..40 {
        let torn = power_loss(true, seed);
        assert_eq!(torn, power_loss(true, seed), "deterministic per seed");
        let out = &torn.files[&path];
        assert!(out.len() >= 4 * S && out.len() <= 7 * S);
        for sector in 0..7 {
            if sector * S >= out.len() {
                continue;
            }
            let range = sector * S..((sector + 1) * S).min(out.len());
            let got = &out[range.clone()];
            if [0, 2].contains(&sector) {
                assert_eq!(got, &v1[range], "sector {sector} was not written");
                continue;
            }
            if sector == 4 {
                assert!(got.iter().all(|&b| b == 0), "sector 4 is a hole");
                continue;
            }
            let durable = v1.get(range.clone()).map(|b| b.to_vec()).unwrap_or_else(|| vec![0; range.len()]);
            let fate = if got == &live[range.clone()] {
                "survives"
            } else if got == &durable[..] {
                "vanishes"
            } else {
                "torn"
            };
            *fates.entry(fate).or_insert(0) += 1;
        }
    }
    assert_eq!(fates.len(), 3, "{fates:?}");

    // A write through an O_DSYNC descriptor is a point and durable when it returns;
    // it makes the dirty sector it touches durable whole.
    let meta = OpenOptions::new().write(true).custom_flags(libc::O_DSYNC).open(&path).unwrap();
    meta.write_all_at(&[9; 4], S as u64 + 100).unwrap();
    assert_eq!(world::points_hit(), 2);
    let mut expected = v1.clone();
    expected[S + 7..S + 17].fill(2);
    expected[S + 100..S + 104].fill(9);
    assert_eq!(power_loss(false, 0), image(&expected));
    drop(meta);

    // fsync makes everything durable, including the file's length.
    file.sync_all().unwrap();
    assert_eq!(world::points_hit(), 3);
    let live = std::fs::read(&path).unwrap();
    assert_eq!(power_loss(false, 0), image(&live));
    assert_eq!(power_loss(true, 0), image(&live));
    drop(file);

    // restore: the image becomes the file and the durable state; the lock file goes.
    let restored = image(&[7; 3 * S]);
    lmdb_io::restore(&restored);
    assert_eq!(std::fs::read(&path).unwrap(), vec![7; 3 * S]);
    assert!(!dir.join("lock.mdb").exists());
    assert_eq!(power_loss(true, 0), restored);
    assert_eq!(world::points_hit(), 3);
    lmdb_io::restore(&LmdbImage::default());
    assert!(!path.exists());

    // After a crash, syncs and writes to tracked files fail with EIO and change nothing.
    world::install(World::new(9, spec(FaultMode::PowerLoss, false), vec![lmdb_point(0)]));
    lmdb_io::track_dir(&dir);
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
    file.write_all_at(&[1; S], 0).unwrap();
    let err = file.sync_data().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let err = file.write_all_at(&[2; S], 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let (record, images) = world::take_crash().unwrap();
    assert!(record.file.ends_with("data.mdb"), "{}", record.file);
    assert_eq!(images.lmdb, LmdbImage::default());
    drop(file);

    world::uninstall();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A data file written before tracking started counts as durable.
#[test]
fn existing_data_is_durable() {
    let dir = test_dir("existing");
    let env = open_env(&dir);
    let db = create_db(&env).unwrap();
    for i in 1..=3 {
        commit(&env, db, i).unwrap();
    }
    close_env(env);

    // Crash at the fdatasync of the next commit (its first point).
    world::install(World::new(11, spec(FaultMode::PowerLoss, true), vec![lmdb_point(0)]));
    lmdb_io::track_dir(&dir);
    let env = open_env(&dir);
    let db = create_db(&env).unwrap();
    assert!(commit(&env, db, 4).is_err());
    let (record, images) = world::take_crash().unwrap();
    assert!(record.file.ends_with("data.mdb"), "{}", record.file);
    close_env(env);
    lmdb_io::restore(&images.lmdb);
    let env = open_env(&dir);
    assert_eq!(read_state(&env), state_after(3));
    close_env(env);

    world::uninstall();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The crash point at `ordinal` when every point is an LMDB sync outside any block.
fn lmdb_point(ordinal: u64) -> sim::fault::CrashAt {
    sim::fault::CrashAt { at: sim::fault::PointKind::LmdbSync, block: 0, nth: ordinal + 1 }
}
