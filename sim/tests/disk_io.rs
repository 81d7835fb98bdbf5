//! The interposed libc calls on plain `std::fs` (and raw `libc`) I/O: the
//! model's live state follows the real directory call by call, each call
//! changes what a power loss would keep as the model says, and the run's
//! injector decides durability points and I/O faults.

mod common;

use common::{file, power_loss, TestDir};
use sim::cow::CowBytes;
use sim::disk::fs::{DirImage, DirOp, Entry, Fs, Image, ROOT};
use sim::disk::{self, Passive};
use sim::fault::{CrashAt, CrashSpec, FaultAt, FaultKind, FaultMode, PointKind, SECTOR_BYTES};
use sim::world::{self, World};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

const S: usize = SECTOR_BYTES;
const POWER_LOSS: CrashSpec = CrashSpec { mode: FaultMode::PowerLoss, torn: false };

fn model() -> Fs {
    disk::state().expect("a disk is installed")
}

/// The real directory as an image (scratch files left out, as the model does).
fn real_image(dir: &Path) -> Image {
    fn walk(dir: &Path) -> DirImage {
        let mut out = DirImage::default();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with("-shm") || name.ends_with("lock.mdb") {
                continue;
            }
            let path = entry.path();
            let value = match path.is_dir() {
                true => Entry::Dir(walk(&path)),
                false => Entry::File(CowBytes::from_slice(&std::fs::read(&path).unwrap())),
            };
            out.entries.insert(name, value);
        }
        out
    }
    Image { root: walk(dir) }
}

/// The model's live state is the real directory.
#[track_caller]
fn assert_follows(dir: &Path, step: &str) {
    assert_eq!(model().live_image(), real_image(dir), "after {step}");
}

fn sync_dir(dir: &Path) {
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// Every call `std::fs` makes for these operations reaches the model, which
/// follows the real directory; a power loss keeps only what was synced.
#[test]
fn the_model_follows_std_fs() {
    let dir = TestDir::new("root");
    let d = dir.path();
    let _disk = disk::install(d, Box::new(Passive::default()));
    assert_follows(d, "install (an empty directory)");

    let mut f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(d.join("a")).unwrap();
    f.write_all(&[1; 3 * S]).unwrap();
    f.write_all_at(&[2; 10], S as u64 + 7).unwrap();
    f.seek(SeekFrom::Start(5 * S as u64)).unwrap();
    let n = f.write_vectored(&[IoSlice::new(&[5; S]), IoSlice::new(&[6; 100])]).unwrap();
    assert_eq!(n, S + 100);
    assert_follows(d, "write, pwrite, writev at the position");
    assert_eq!(power_loss(&model()), Image::default(), "nothing synced");

    f.sync_data().unwrap();
    assert_eq!(file(&power_loss(&model()), "a"), None, "data synced, its entry not");
    sync_dir(d);
    assert_eq!(power_loss(&model()), real_image(d), "all synced");

    f.set_len(S as u64 + 1).unwrap();
    assert_follows(d, "ftruncate (shrink)");
    f.set_len(4 * S as u64).unwrap();
    assert_follows(d, "ftruncate (grow)");
    let g = f.try_clone().unwrap(); // a dup the disk never saw opened: found by path
    g.write_all_at(b"through the clone", 100).unwrap();
    assert_follows(d, "a write through a duplicated descriptor");
    drop(g);

    let mut app = OpenOptions::new().append(true).open(d.join("a")).unwrap();
    app.write_all(b"appended").unwrap();
    assert_follows(d, "write through O_APPEND");
    drop(app);

    std::fs::write(d.join("b"), b"bbb").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/c"), b"a longer first content").unwrap();
    std::fs::rename(d.join("b"), d.join("sub/b2")).unwrap();
    std::fs::write(d.join("sub/c"), b"shorter").unwrap();
    assert_follows(d, "create, mkdir, a rename across directories, O_TRUNC");
    let sub = model().lookup("sub").unwrap();
    let b = model().lookup("sub/b2").unwrap();
    let ops = model().pending_dir_ops();
    assert!(
        ops.contains(&(ROOT, DirOp::Unlink("b".into(), b))) && ops.contains(&(sub, DirOp::Link("b2".into(), b))),
        "{ops:?}"
    );

    std::fs::remove_file(d.join("sub/c")).unwrap();
    std::fs::remove_file(d.join("sub/b2")).unwrap();
    std::fs::remove_dir(d.join("sub")).unwrap();
    assert_follows(d, "unlink, rmdir");
    drop(f);
    std::fs::remove_file(d.join("a")).unwrap();
    assert_follows(d, "unlink of the synced file");
    assert!(file(&power_loss(&model()), "a").is_some(), "its unlink is not durable yet");
    sync_dir(d);
    assert_eq!(power_loss(&model()), Image::default());
}

/// The `*at` calls resolve their path against the directory descriptor, and
/// a rename into or out of the store's directory is a create or an unlink.
#[test]
fn at_calls_and_renames_across_the_root() {
    let dir = TestDir::new("root");
    let outside = TestDir::new("outside");
    let d = dir.path();
    let _disk = disk::install(d, Box::new(Passive::default()));
    let root = std::fs::File::open(d).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&root);
    // SAFETY: plain libc calls with valid NUL-terminated paths; the descriptors are closed below.
    unsafe {
        let name = c(Path::new("x"));
        let x = libc::openat(fd, name.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
        assert!(x >= 0);
        assert_eq!(libc::write(x, b"xyz".as_ptr().cast(), 3), 3);
        assert_eq!(libc::fsync(x), 0);
        assert_eq!(libc::close(x), 0);
        assert_eq!(libc::mkdirat(fd, c(Path::new("dir")).as_ptr(), 0o755), 0);
        assert_eq!(libc::renameat(fd, name.as_ptr(), fd, c(Path::new("dir/y")).as_ptr()), 0);
    }
    assert_follows(d, "openat, mkdirat, renameat");
    assert_eq!(model().lookup("dir/y").and_then(|i| model().durable(i).map(CowBytes::to_vec)), Some(b"xyz".to_vec()));

    std::fs::write(outside.path().join("in"), b"from outside").unwrap();
    std::fs::rename(outside.path().join("in"), d.join("in")).unwrap();
    assert_follows(d, "a rename into the root");
    let ino = model().lookup("in").unwrap();
    assert_eq!(model().durable(ino).map(CowBytes::len), Some(0), "its data is not known to be durable");
    std::fs::rename(d.join("dir/y"), outside.path().join("y")).unwrap();
    assert_follows(d, "a rename out of the root");
    // SAFETY: as above.
    unsafe {
        assert_eq!(libc::unlinkat(fd, c(Path::new("in")).as_ptr(), 0), 0);
        assert_eq!(libc::unlinkat(fd, c(Path::new("dir")).as_ptr(), libc::AT_REMOVEDIR), 0);
    }
    assert_follows(d, "unlinkat");
    assert_eq!(std::fs::read(outside.path().join("y")).unwrap(), b"xyz");
}

/// A directory renamed into the store's directory brings its files: the
/// model must know them (pending, never synced), not take the directory for
/// an empty file.
#[test]
fn a_directory_renamed_into_the_root_brings_its_files() {
    let dir = TestDir::new("root");
    let outside = TestDir::new("outside");
    let d = dir.path();
    let _disk = disk::install(d, Box::new(Passive::default()));
    std::fs::create_dir(outside.path().join("env")).unwrap();
    std::fs::write(outside.path().join("env/data.mdb"), b"data").unwrap();
    std::fs::rename(outside.path().join("env"), d.join("env")).unwrap();
    assert_follows(d, "a directory renamed into the root");
}

/// The store's directory reached through a symbolic link is the same
/// directory: its I/O is tracked, not passed through unmodelled.
#[test]
fn the_root_through_a_symlink_is_tracked() {
    let dir = TestDir::new("root");
    let links = TestDir::new("links");
    let d = dir.path();
    let link = links.path().join("store");
    std::os::unix::fs::symlink(d, &link).unwrap();
    let _disk = disk::install(&link, Box::new(Passive::default()));
    std::fs::write(link.join("f"), b"through the link").unwrap();
    assert_follows(d, "a write through the symlinked root");
}

/// Linux's pwrite on an O_APPEND descriptor appends, whatever the offset
/// (pwrite(2), BUGS). The model must land the bytes where the kernel did.
#[test]
fn pwrite_through_o_append_lands_at_the_end() {
    let dir = TestDir::new("root");
    let d = dir.path();
    let _disk = disk::install(d, Box::new(Passive::default()));
    std::fs::write(d.join("log"), b"0123456789").unwrap();
    let log = OpenOptions::new().append(true).open(d.join("log")).unwrap();
    log.write_at(b"AB", 0).unwrap();
    assert_eq!(std::fs::read(d.join("log")).unwrap(), b"0123456789AB", "what Linux does");
    assert_follows(d, "pwrite through O_APPEND");
}

/// An fsync-eio on a file written through an O_APPEND descriptor: the
/// revert of its unsynced sectors must overwrite them, not append.
#[test]
fn fsync_eio_through_o_append_reverts_in_place() {
    let dir = TestDir::new("root");
    let d = dir.path();
    let plan = vec![FaultAt { fault: FaultKind::FsyncEio, block: 0, nth: 2 }];
    let _disk = disk::install(d, Box::new(World::new(3, POWER_LOSS, vec![]).with_faults(plan, false)));
    let mut log = OpenOptions::new().create(true).append(true).open(d.join("log")).unwrap();
    log.write_all(b"synced").unwrap();
    log.sync_data().unwrap();
    log.write_all(b" lost").unwrap();
    assert_eq!(log.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(std::fs::read(d.join("log")).unwrap(), b"synced\0\0\0\0\0", "the lost bytes read as zeros");
    assert_follows(d, "a failed sync through O_APPEND");
}

/// A write through an O_DSYNC descriptor is a durability point and durable
/// when it returns; an fsync or fdatasync is one too; writes and opens are not.
#[test]
fn o_dsync_writes_and_syncs_are_durability_points() {
    let dir = TestDir::new("root");
    let d = dir.path();
    let _disk = disk::install(d, Box::new(World::new(1, POWER_LOSS, vec![])));
    let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(d.join("data.mdb")).unwrap();
    f.write_all_at(&[1; 2 * S], 0).unwrap();
    assert_eq!(world::points_hit(), 0);
    let meta = OpenOptions::new().write(true).custom_flags(libc::O_DSYNC).open(d.join("data.mdb")).unwrap();
    meta.write_all_at(&[9; 4], S as u64 + 100).unwrap();
    assert_eq!(world::points_hit(), 1);
    sync_dir(d);
    let by_kind = world::points_by_kind();
    assert_eq!(by_kind.get(&PointKind::LmdbSync).map(Vec::len), Some(1), "{by_kind:?}");
    assert_eq!(by_kind.get(&PointKind::DirSync).map(Vec::len), Some(1), "{by_kind:?}");
    // The O_DSYNC write made its own sector durable, whole; sector 0 is still unsynced.
    let mut expected = vec![0; S];
    expected.extend([1; S]);
    expected[S + 100..S + 104].fill(9);
    assert_eq!(file(&power_loss(&model()), "data.mdb"), Some(expected));
    f.sync_data().unwrap();
    std::fs::write(d.join("other"), b"x").unwrap();
    std::fs::File::open(d.join("other")).unwrap().sync_all().unwrap();
    let by_kind = world::points_by_kind();
    assert_eq!(by_kind.get(&PointKind::LmdbSync).map(Vec::len), Some(2));
    assert_eq!(by_kind.get(&PointKind::FileSync).map(Vec::len), Some(1), "a file of the store's own");
}

/// After a crash every call that would change the disk fails with EIO and
/// changes nothing, real or modelled; the crash image is the one of the point.
#[test]
fn after_a_crash_every_change_fails() {
    let dir = TestDir::new("root");
    let d = dir.path();
    let plan = vec![CrashAt { at: PointKind::FileSync, block: 0, nth: 1 }];
    let _disk = disk::install(d, Box::new(World::new(2, POWER_LOSS, plan)));
    std::fs::write(d.join("keep"), b"k").unwrap();
    sync_dir(d);
    let f = OpenOptions::new().read(true).write(true).open(d.join("keep")).unwrap();
    f.write_all_at(b"K", 0).unwrap();
    let before = real_image(d);
    let eio = |r: std::io::Result<()>| assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
    eio(f.sync_data());
    eio(f.write_all_at(b"2", 0));
    eio(f.set_len(0));
    eio(std::fs::write(d.join("new"), b"n"));
    eio(std::fs::remove_file(d.join("keep")));
    eio(std::fs::rename(d.join("keep"), d.join("moved")));
    eio(std::fs::create_dir(d.join("sub")));
    eio(std::fs::File::open(d).unwrap().sync_all());
    assert_eq!(real_image(d), before, "nothing changed");
    assert_follows(d, "the failed calls");
    let (record, image) = world::take_crash().expect("crashed");
    assert_eq!((record.kind, record.file.as_str()), (PointKind::FileSync, "keep"));
    assert_eq!(file(&image, "keep"), Some(Vec::new()), "the entry is durable, the data never synced");
    // Reading still works.
    assert_eq!(std::fs::read(d.join("keep")).unwrap(), b"K");
}

/// fsync-eio: the sync fails and the file's unsynced sectors read as their
/// durable content again, in the real file too, its length kept. With the
/// fsync-retry mutation the retry "succeeds" on the lost data.
#[test]
fn fsync_eio_loses_the_unsynced_data() {
    for retry in [false, true] {
        let dir = TestDir::new(&format!("retry-{retry}"));
        let d = dir.path();
        let plan = vec![FaultAt { fault: FaultKind::FsyncEio, block: 0, nth: 2 }];
        let world = World::new(3, POWER_LOSS, vec![]).with_faults(plan, retry);
        let _disk = disk::install(d, Box::new(world));
        let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(d.join("f")).unwrap();
        f.write_all_at(&[1; 2 * S], 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(&[2; 10], 5).unwrap();
        f.write_all_at(&[3; S], 3 * S as u64).unwrap();
        let synced = f.sync_data();
        let fault = world::take_fault().expect("injected");
        assert_eq!(fault.named.fault, FaultKind::FsyncEio);
        match retry {
            false => assert_eq!(synced.unwrap_err().raw_os_error(), Some(libc::EIO)),
            true => synced.unwrap(),
        }
        let mut expected = vec![1; 2 * S];
        expected.extend([0; 2 * S]);
        assert_eq!(std::fs::read(d.join("f")).unwrap(), expected, "retry {retry}: the real file lost the data");
        assert_follows(d, "a failed sync");
        let durable = model().durable(model().lookup("f").unwrap()).unwrap().to_vec();
        match retry {
            false => assert_eq!(durable, vec![1; 2 * S]),
            true => assert_eq!(durable, expected, "the retried sync made the loss durable"),
        }
    }
}

/// enospc (an extending write) and write-eio fail the write before anything
/// is written.
#[test]
fn enospc_and_write_eio_write_nothing() {
    let dir = TestDir::new("root");
    let d = dir.path();
    let plan = vec![
        FaultAt { fault: FaultKind::Enospc, block: 0, nth: 2 },
        FaultAt { fault: FaultKind::WriteEio, block: 0, nth: 4 },
    ];
    let _disk = disk::install(d, Box::new(World::new(4, POWER_LOSS, vec![]).with_faults(plan, false)));
    let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(d.join("f")).unwrap();
    f.write_all_at(b"first", 0).unwrap(); // write 1, extend 1
    f.write_all_at(b"over", 0).unwrap(); // write 2, not extending
    let err = f.write_all_at(b"past the end", 100).unwrap_err(); // write 3, extend 2
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(world::take_fault().map(|f| f.named.fault), Some(FaultKind::Enospc));
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"overt");
    let err = f.write_all_at(b"X", 0).unwrap_err(); // write 4
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert_eq!(world::take_fault().map(|f| f.named.fault), Some(FaultKind::WriteEio));
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"overt");
    assert_follows(d, "the failed writes");
}

/// `restore` makes the real directory and the model's live and durable
/// states the image, scratch files gone.
#[test]
fn restore_rewrites_the_directory_and_the_model() {
    let dir = TestDir::new("root");
    let d = dir.path();
    let _disk = disk::install(d, Box::new(Passive::default()));
    std::fs::write(d.join("old"), b"old").unwrap();
    std::fs::write(d.join("x-shm"), b"scratch").unwrap();
    std::fs::create_dir(d.join("kv")).unwrap();
    std::fs::write(d.join("kv/lock.mdb"), b"scratch").unwrap();
    assert_follows(d, "setup");

    let mut kv = DirImage::default();
    kv.entries.insert("data.mdb".into(), Entry::File(CowBytes::from_slice(&[7; 3 * S])));
    let mut root = DirImage::default();
    root.entries.insert("kv".into(), Entry::Dir(kv));
    root.entries.insert("empty".into(), Entry::File(CowBytes::default()));
    let image = Image { root };
    disk::restore(&image);
    assert_eq!(real_image(d), image);
    assert!(!d.join("x-shm").exists() && !d.join("kv/lock.mdb").exists());
    assert_eq!(model().live_image(), image);
    assert_eq!(power_loss(&model()), image, "durable as restored");
    assert!(model().pending_dir_ops().is_empty());
    // And the model goes on following the calls.
    std::fs::write(d.join("kv/data.mdb"), b"rewritten").unwrap();
    assert_follows(d, "a write after restore");
    assert_eq!(file(&power_loss(&model()), "kv/data.mdb"), Some(vec![7; 3 * S]));
}
