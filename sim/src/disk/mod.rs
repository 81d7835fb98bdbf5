//! The one simulated file system under the store: files *and* directories,
//! with the persistence model of [`crate::fault`].
//!
//! Every durable byte of the store goes through it, whoever writes it:
//! SQLite's own unix VFS code, LMDB's code, and the store's `std::fs` calls
//! all call libc, and [`interpose`] defines the libc functions that change a
//! file system (`open` with `O_CREAT`, `write` and its relatives, `ftruncate`,
//! `fsync`, `fdatasync`, `unlink`, `rename`, `mkdir`, `rmdir`, `close`). The
//! real call runs on tmpfs (LMDB reads its data file through a shared map, and
//! SQLite reads with `pread`, so the live files must be real), and the model
//! ([`fs::Fs`]) follows it: it knows what a power loss would keep.
//!
//! The layers, one way only:
//! * the adapters ([`interpose`], [`sqlite`]) turn a call into a [`Disk`] operation;
//! * a [`Disk`] asks its [`Injector`] (the run's world) whether a durability
//!   point crashes and whether an operation faults, handing it the model to
//!   capture, then does the real call and updates the model;
//! * [`fs`] is plain data and knows nothing of either.
//!
//! A disk is installed on a thread with [`install`], which returns a guard;
//! dropping the guard (or [`Installed::finish`]) removes it. Only the store's
//! directory (the root given to `install`) is tracked: every other path
//! passes straight through, as does everything on a thread with no disk.
//!
//! Scratch files are not modelled: SQLite's `-shm` (the WAL index, rebuilt
//! from the WAL by the first connection after a crash: "the shm file ... is
//! not actually used as a file; its content ... is reconstructed", sqlite.org
//! walformat.html, section 2.2) and LMDB's `lock.mdb` (its reader table,
//! re-initialised by the first process to open the environment: lmdb.h,
//! "Caveats"). They pass through, and a crash image leaves them out.

mod calls;
pub mod fs;
pub mod interpose;
mod real;
pub mod sqlite;

use crate::fault::{Crashed, FaultKind, OpClass, PointKind};
use fs::{Fs, Image, Ino, ROOT};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What a disk asks the run about: where it crashes, which operations fault.
/// The run's world implements it; a test may implement a simpler one.
pub trait Injector: Any {
    /// A durability point of `kind` on `file` (of `database`). `Ok`: go on.
    /// `Err`: the run crashed here (or earlier); the operation must fail and
    /// change nothing. `fs` is the disk now, for a capture or crash image.
    fn durability_point(&mut self, kind: PointKind, database: &'static str, file: &str, fs: &Fs)
        -> Result<(), Crashed>;
    /// An I/O operation of `class` (a write also says whether it `extends`
    /// the file): the fault to inject now, if any.
    fn io_operation(&mut self, class: OpClass, extends: bool, database: &'static str, file: &str) -> Option<FaultKind>;
    /// A call that changes the disk (`what`, e.g. "write", on `path`) is about
    /// to be made. `Err`: the process dies just before it; the call fails and
    /// changes nothing. The run's world crashes only at durability points and
    /// lets every call through; a probe of a database alone may stop it
    /// between two writes (a process killed in the middle of a commit).
    fn before_change(&mut self, _what: &'static str, _path: &str, _fs: &Fs) -> Result<(), Crashed> {
        Ok(())
    }
    /// The process is dead (crashed, or stopped after a fault): every
    /// operation that would change the disk fails.
    fn is_stopped(&self) -> bool;
    /// The fsync-retry mutation: a failed sync is retried once, "successfully".
    fn retries_failed_sync(&self) -> bool;
    /// Seeded bytes for SQLite's xRandomness.
    fn fill_random(&mut self, buf: &mut [u8]);
    /// Simulated milliseconds since the Unix epoch for SQLite's clock.
    fn now_ms(&mut self) -> i64;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// Which database a file of the node belongs to (for naming points and
/// faults): the swing-store's SQLite and LMDB, the host's own database
/// (`chain/`), or the store's own files (heap snapshots).
pub fn database_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    if path.starts_with("chain/") {
        "chain"
    } else if name.starts_with("swingstore.sqlite") {
        "sqlite"
    } else if name.ends_with(".mdb") {
        "lmdb"
    } else {
        "store"
    }
}

/// The crash point kind of a sync of `path` (a file of the node).
fn sync_kind(path: &str) -> PointKind {
    match database_of(path) {
        "sqlite" => PointKind::SqliteSync,
        "lmdb" => PointKind::LmdbSync,
        "chain" => PointKind::ChainSync,
        _ => PointKind::FileSync,
    }
}

/// Files the model leaves out (see the module doc).
pub(crate) fn is_scratch(path: &str) -> bool {
    path.ends_with("-shm") || path.ends_with("lock.mdb")
}

/// An open descriptor of a tracked file or directory.
#[derive(Clone, Debug)]
struct OpenFile {
    ino: Ino,
    /// Relative to the root ("" is the root itself).
    path: Rc<str>,
    /// Opened `O_DSYNC` or `O_SYNC`: every write is durable when it returns.
    dsync: bool,
    /// Opened `O_APPEND`: `write` lands at the end.
    append: bool,
}

#[derive(Clone, Debug, Default)]
enum FdSlot {
    /// Not seen yet: classify it from /proc/self/fd if a call uses it.
    #[default]
    Unknown,
    Untracked,
    /// A scratch file of the store's directory (`-shm`, `lock.mdb`): not
    /// modelled, but the store's own.
    Scratch,
    Tracked(OpenFile),
}

/// A simulated disk: the model, the descriptors open on it, and the injector.
pub struct Disk {
    /// The canonical real path of the tracked directory.
    root: PathBuf,
    /// The paths that name it: the canonical one, and the one given to
    /// [`install`] (which may go through a symbolic link).
    root_names: Vec<Vec<u8>>,
    fs: Fs,
    fds: Vec<FdSlot>,
    injector: Box<dyn Injector>,
}

thread_local! {
    static DISK: RefCell<Option<Disk>> = const { RefCell::new(None) };
    /// Whether this thread has a disk: the fast path of every interposer.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// The installed disk of this thread; removed when dropped.
pub struct Installed {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Install a disk over the existing directory `root`, empty and durable, with
/// `injector` deciding crashes and faults. Files already in `root` are removed.
pub fn install(root: &Path, injector: Box<dyn Injector>) -> Installed {
    interpose::link();
    assert!(!active(), "a disk is already installed on this thread");
    let given = real::absolute(root.as_os_str().as_encoded_bytes()).expect("the disk root has a path");
    let root = root.canonicalize().unwrap_or_else(|e| panic!("disk root {}: {e}", root.display()));
    real::clear_dir(&root);
    let mut root_names = vec![root.as_os_str().as_encoded_bytes().to_vec()];
    if given != root_names[0] {
        root_names.push(given);
    }
    let disk = Disk { root, root_names, fs: Fs::new(), fds: Vec::new(), injector };
    DISK.with(|d| *d.borrow_mut() = Some(disk));
    ACTIVE.with(|a| a.set(true));
    Installed { _not_send: std::marker::PhantomData }
}

impl Installed {
    /// Remove the disk and hand back its injector, as the type it was installed as.
    pub fn finish<T: Injector>(self) -> Option<T> {
        let disk = take();
        std::mem::forget(self);
        disk?.injector.into_any().downcast::<T>().ok().map(|t| *t)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        take();
    }
}

fn take() -> Option<Disk> {
    ACTIVE.with(|a| a.set(false));
    DISK.with(|d| d.borrow_mut().take())
}

/// Whether this thread has a disk installed.
pub(crate) fn active() -> bool {
    ACTIVE.try_with(Cell::get).unwrap_or(false)
}

/// Run `f` on this thread's disk; `None` without one (or from inside another
/// call on it: the disk's own real I/O is not tracked).
pub(crate) fn with<R>(f: impl FnOnce(&mut Disk) -> R) -> Option<R> {
    DISK.try_with(|d| d.try_borrow_mut().ok().and_then(|mut d| d.as_mut().map(f))).ok().flatten()
}

/// Run `f` on the injector of this thread's disk, as the type it was installed as.
pub fn with_injector<T: Injector, R>(f: impl FnOnce(&mut T) -> R) -> Option<R> {
    with(|d| d.injector.as_any_mut().downcast_mut::<T>().map(f)).flatten()
}

/// A durability point that is not a file system call (the store's crank
/// starts and commit points): the injector decides, with the disk to capture.
/// Without a disk every point passes.
pub fn point(kind: PointKind, database: &'static str, file: &str) -> Result<(), Crashed> {
    with(|d| d.injector.durability_point(kind, database, file, &d.fs)).unwrap_or(Ok(()))
}

/// The disk's state now, for a crash image made later.
pub fn state() -> Option<Fs> {
    with(|d| d.fs.state())
}

/// Replace everything in the tracked directory by `image` (after a crash, with
/// every descriptor of the crashed process closed): the real files become the
/// image's, and so do the model's live and durable states.
pub fn restore(image: &Image) {
    with(|d| {
        real::clear_dir(&d.root);
        real::write_image(&d.root, image);
        d.fs = Fs::from_image(image);
        d.fds.clear();
    })
    .expect("a disk is installed");
}

/// Make the real directory `dir` (outside any installed disk) hold exactly
/// `image`: a crash image to open with the databases themselves.
pub fn materialise(dir: &Path, image: &Image) {
    let _ = std::fs::create_dir_all(dir);
    real::clear_dir(dir);
    real::write_image(dir, image);
}

impl Disk {
    /// `path` relative to the root if it is inside it ("" for the root).
    fn relative(&self, path: &[u8]) -> Option<String> {
        let path = real::absolute(path)?;
        let rest = self.root_names.iter().find_map(|root| path.strip_prefix(root.as_slice()))?;
        let rest = match rest {
            [] => "",
            [b'/', rest @ ..] => std::str::from_utf8(rest).ok()?,
            _ => return None,
        };
        Some(rest.trim_end_matches('/').to_string())
    }

    /// The tracked path of a real path, or `None` (outside the root, or scratch).
    fn tracked(&self, path: &[u8]) -> Option<String> {
        self.relative(path).filter(|p| !is_scratch(p))
    }

    /// The parent directory's inode and the file name of a tracked path.
    fn parent_of<'a>(&self, path: &'a str) -> Option<(Ino, &'a str)> {
        match path.rsplit_once('/') {
            Some((dir, name)) => Some((self.fs.lookup(dir)?, name)),
            None if path.is_empty() => None,
            None => Some((ROOT, path)),
        }
    }

    fn slot(&mut self, fd: i32) -> FdSlot {
        let Ok(index) = usize::try_from(fd) else { return FdSlot::Untracked };
        if let Some(FdSlot::Tracked(_) | FdSlot::Untracked | FdSlot::Scratch) = self.fds.get(index) {
            return self.fds[index].clone();
        }
        let slot = self.classify(fd);
        self.set_slot(fd, slot.clone());
        slot
    }

    /// What the table says of `fd` now, without classifying it.
    fn slot_now(&self, fd: i32) -> FdSlot {
        usize::try_from(fd).ok().and_then(|i| self.fds.get(i).cloned()).unwrap_or_default()
    }

    /// Drop the inodes of the model nothing reaches any more (see [`Fs::collect`]).
    fn collect_garbage(&mut self) {
        let open = self
            .fds
            .iter()
            .filter_map(|slot| match slot {
                FdSlot::Tracked(file) => Some(file.ino),
                _ => None,
            })
            .collect();
        self.fs.collect(&open);
    }

    fn set_slot(&mut self, fd: i32, slot: FdSlot) {
        let Ok(index) = usize::try_from(fd) else { return };
        if index >= real::MAX_TRACKED_FD {
            return;
        }
        if self.fds.len() <= index {
            self.fds.resize(index + 1, FdSlot::Unknown);
        }
        self.fds[index] = slot;
    }

    /// A descriptor not opened through [`interpose`] (opened before the disk
    /// was installed, or by a call this layer does not see): resolved by path.
    fn classify(&self, fd: i32) -> FdSlot {
        let Some(path) = real::fd_path(fd) else { return FdSlot::Untracked };
        let Some(rel) = self.relative(path.as_os_str().as_encoded_bytes()) else { return FdSlot::Untracked };
        if is_scratch(&rel) {
            return FdSlot::Scratch;
        }
        match self.fs.lookup(&rel) {
            Some(ino) => FdSlot::Tracked(OpenFile {
                ino,
                path: rel.into(),
                dsync: real::is_dsync(fd),
                append: real::is_append(fd),
            }),
            None => FdSlot::Untracked,
        }
    }

    /// The tracked file or directory open on `fd`, if any.
    fn open_file(&mut self, fd: i32) -> Option<OpenFile> {
        match self.slot(fd) {
            FdSlot::Tracked(file) => Some(file),
            _ => None,
        }
    }

    /// Whether `fd` is open on a file of the store's directory (modelled or scratch).
    fn is_ours(&mut self, fd: i32) -> bool {
        matches!(self.slot(fd), FdSlot::Tracked(_) | FdSlot::Scratch)
    }

    fn stopped(&self) -> bool {
        self.injector.is_stopped()
    }

    /// The process may make the change `what` on `path` (see [`Injector::before_change`]).
    fn may_change(&mut self, what: &'static str, path: &str) -> bool {
        !self.stopped() && self.injector.before_change(what, path, &self.fs).is_ok()
    }

    /// Debug builds: the model's live bytes are the real file's, or the
    /// simulator missed a write; that must not pass quietly.
    #[cfg(debug_assertions)]
    fn check_live(&self, file: &OpenFile) {
        let model = self.fs.live(file.ino).map(|b| b.to_vec());
        let real = real::read_whole(&self.root.join(&*file.path));
        if model.is_some() && model != real {
            eprintln!("disk: the model of {} differs from the real file", file.path);
            std::process::abort();
        }
    }
}

/// What a crash left of the disk: each file of the image with its length,
/// the files the crash lost (a creation or rename whose directory was not
/// synced), the ones it brought back (an unlink not synced), and the files
/// with a torn sector (garbage where unsynced data was).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashDisk {
    pub files: Vec<(String, usize)>,
    pub lost: Vec<String>,
    pub back: Vec<String>,
    pub torn: Vec<String>,
}

impl CrashDisk {
    /// What `image` keeps of the disk `live` was in.
    pub fn of(live: &Fs, image: &Image) -> CrashDisk {
        let before = live.live_image();
        let had: Vec<String> = before.files().into_iter().map(|(p, _)| p).collect();
        let has = image.files();
        let files: Vec<(String, usize)> = has.iter().map(|(path, bytes)| (path.clone(), bytes.len())).collect();
        let lost = had.iter().filter(|p| !files.iter().any(|(f, _)| f == *p)).cloned().collect();
        let back = files.iter().filter(|(p, _)| !had.contains(p)).map(|(p, _)| p.clone()).collect();
        let torn = has.iter().filter(|(path, bytes)| has_torn_sector(live, path, bytes)).map(|(p, _)| p.clone());
        CrashDisk { files, lost, back, torn: torn.collect() }
    }

    /// Whether the crash lost a directory operation (a file lost or back).
    pub fn lost_a_directory_operation(&self) -> bool {
        !self.lost.is_empty() || !self.back.is_empty()
    }
}

/// Whether `path`, as the crash left it (`kept`), holds a sector written
/// since its last sync that is neither what was written nor what was
/// durable: garbage, a torn write.
fn has_torn_sector(live: &Fs, path: &str, kept: &crate::cow::CowBytes) -> bool {
    let Some(ino) = live.lookup(path) else { return false };
    let (Some(written), Some(durable)) = (live.live(ino), live.durable(ino)) else { return false };
    live.dirty_sectors(ino).any(|sector| {
        let start = sector * crate::fault::SECTOR_BYTES;
        let end = (start + crate::fault::SECTOR_BYTES).min(written.len());
        let found = kept.slice(start, end);
        let mut old = durable.slice(start, end);
        old.resize(end.saturating_sub(start), 0);
        found.len() == end.saturating_sub(start) && found != written.slice(start, end) && found != old
    })
}

/// The trace's account of a crash (unchanged by the torn files, which the
/// trace does not name), e.g. `swingstore.sqlite 8192, kv/data.mdb 12288;
/// back: swingstore.sqlite-journal`.
impl std::fmt::Display for CrashDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<String> = self.files.iter().map(|(path, len)| format!("{path} {len}")).collect();
        f.write_str(if files.is_empty() { "no files" } else { "" })?;
        f.write_str(&files.join(", "))?;
        for (label, paths) in [("lost", &self.lost), ("back", &self.back)] {
            if !paths.is_empty() {
                write!(f, "; {label}: {}", paths.join(", "))?;
            }
        }
        Ok(())
    }
}

/// An injector that never crashes and never faults: the disk only keeps its
/// model (benchmarks, and tests that crash by taking an image themselves).
#[derive(Debug, Default)]
pub struct Passive {
    time_ms: i64,
}

impl Injector for Passive {
    fn durability_point(&mut self, _: PointKind, _: &'static str, _: &str, _: &Fs) -> Result<(), Crashed> {
        Ok(())
    }
    fn io_operation(&mut self, _: OpClass, _: bool, _: &'static str, _: &str) -> Option<FaultKind> {
        None
    }
    fn is_stopped(&self) -> bool {
        false
    }
    fn retries_failed_sync(&self) -> bool {
        false
    }
    fn fill_random(&mut self, buf: &mut [u8]) {
        buf.fill(0x5a);
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
