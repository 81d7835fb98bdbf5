//! LMDB durability points by libc interposition.
//!
//! LMDB has no VFS, so the simulator observes its file I/O by defining, in the
//! process, the libc functions LMDB calls to write and sync its data file:
//! `pwrite`, `pwrite64`, `writev`, `pwritev`, `pwritev64`, `fdatasync`, `fsync`,
//! `close` (only to invalidate the fd cache) and `unlink` (a removed data file
//! leaves the model). The real calls are
//! made with raw `syscall(2)`s. LMDB (lmdb-master-sys 0.2.6, Linux, heed's
//! default flags) writes a commit's data pages with `pwrite` (one page run) or
//! `lseek`+`writev` (several runs), syncs them with `fdatasync` on its main
//! descriptor, then writes the meta page with `pwrite` on a second descriptor
//! opened `O_DSYNC`. A fresh environment gets its two meta pages by a plain
//! `pwrite` at open. `MDB_WRITEMAP` (data written through the map, synced by
//! `msync`) and `mdb_env_copy` (plain `write`) are not modelled.
//!
//! # What is tracked
//!
//! Tracking is per thread. [`track_dir`] registers a directory; a file is
//! tracked iff its canonical path is directly inside a tracked directory and its
//! name is `data.mdb` (`lock.mdb` is not durable state). A descriptor is mapped
//! to its path once (readlink of `/proc/self/fd/N`, plus `F_GETFL` for
//! `O_DSYNC`/`O_SYNC` and the access mode), and the answer, negative too, is
//! cached per thread until the descriptor is closed through the interposed
//! `close` (or [`track_dir`], [`restore`], [`reset`] clear the cache). Calls on
//! untracked descriptors, and every call on a thread that tracks nothing, pass
//! straight through. A descriptor closed by another thread, or replaced by
//! `dup2`, can leave a stale cache entry on this thread: keep an environment
//! on the thread that tracks it.
//!
//! Per tracked file the model keeps the *durable* image (`None`: never synced,
//! the file does not exist after a power loss), the set of 512-byte sectors
//! written since the last sync, and the *live* content: the real file (on
//! tmpfs) as every interposed write left it, kept in memory, copy-on-write
//! ([`crate::cow`]), so that the state of every crash point can be kept
//! ([`state`]). Debug builds check it against the real file at every sync and
//! abort on a difference. A file already present when first seen
//! ([`track_dir`] or its first tracked call) counts as durable as it is if it
//! has any content. A file whose first
//! durable bytes come from an `O_DSYNC` write (LMDB never does this) exists
//! after power loss with zeros elsewhere.
//!
//! # Durability points
//!
//! Each is a [`PointKind::LmdbSync`] point, taken before the real call with none
//! of this module's state borrowed:
//! * `fdatasync`/`fsync` of a tracked descriptor: on success every dirty sector
//!   is copied from the live file into the durable image, which takes the live
//!   file's length;
//! * a write (`pwrite*`/`writev`/`pwritev*`) through a tracked `O_DSYNC` or
//!   `O_SYNC` descriptor (LMDB's meta page): on success its bytes are durable at
//!   once; a dirty sector it touches is made durable whole from the live file,
//!   as the kernel flushes whole pages.
//!
//! When the point is the crash (or the run crashed earlier) the call fails with
//! `EIO` and does nothing. After a crash, plain writes to tracked files also
//! fail with `EIO` (they never reach the file, and the frozen image is a copy
//! anyway). Errno is preserved as the real call leaves it.
//!
//! # I/O faults
//!
//! Every tracked write asks the world whether to fail ([`world::io_operation`]:
//! ENOSPC for a planned `enospc` on a write past the file's end, EIO for
//! `write-eio`), before anything is written. Every tracked `fdatasync`/`fsync`
//! that passes its durability point asks too: an `fsync-eio` fault writes the
//! durable content (zeros past its end) back over every dirty sector of the
//! real file and the model, keeping the length (LMDB has the file mapped), and
//! fails with EIO; the fsync-retry mutation then syncs again, "successfully".
//!
//! # What survives ([`capture`])
//!
//! * `process-crash`: every tracked `data.mdb` as the live file is now (a
//!   file created but never written through an interposer is not in it).
//! * `power-loss`: every tracked file's durable image; never synced: absent.
//! * `power-loss` + `torn`: starting from the durable image (a never-synced
//!   file is still absent), for each sector written since the last sync, in
//!   ascending (path, sector) order, [`fault::draw_sector_fate`] decides: it
//!   survives (live bytes), vanishes (durable bytes) or is torn (bytes from the
//!   torn rng). Sectors past the live end take only the part inside the file;
//!   a gap before a surviving sector past the durable end reads as zeros.
//!
//! # Linking
//!
//! `#[no_mangle]` definitions in an rlib reach the final binary only if their
//! object is pulled in: [`track_dir`] (and [`install`]) reference every
//! interposer, so any binary that tracks a directory gets them all.

use crate::cow::{lose_unsynced, CowBytes};
use crate::fault::{self, CrashSpec, FaultKind, FaultMode, OpClass, PointKind, SectorFate};
use crate::world;
use libc::{c_int, c_void, iovec, off_t, size_t, ssize_t};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The tracked files of this thread as they survive a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LmdbImage {
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

const DATA_FILE: &str = "data.mdb";
const LOCK_FILE: &str = "lock.mdb";
const SECTOR: u64 = fault::SECTOR_BYTES as u64;
/// Descriptors at or above this are resolved on every call instead of cached.
const MAX_CACHED_FD: usize = 1 << 16;

/// One tracked file of the model.
#[derive(Clone, Debug, Default)]
struct FileModel {
    /// The live file's contents, kept from every write the interposers see
    /// (LMDB writes its data file only through them); checked against the real
    /// file at every sync in debug builds.
    live: CowBytes,
    /// As of the last sync; `None`: never synced (absent after power loss).
    durable: Option<CowBytes>,
    /// Sectors written since the last sync.
    dirty: BTreeSet<u64>,
}

impl FileModel {
    /// A file first seen with `bytes`: durable as it is, if it has any.
    fn seen(bytes: Vec<u8>) -> FileModel {
        let live = CowBytes::from_slice(&bytes);
        let durable = (!bytes.is_empty()).then(|| live.clone());
        FileModel { live, durable, dirty: BTreeSet::new() }
    }
}

/// Every tracked file as a crash at one moment would find it, kept for later
/// (cheap: the contents share chunks with the model). [`LmdbState::surviving`]
/// makes the crash image from it, exactly as [`capture`] would have then.
#[derive(Clone, Debug, Default)]
pub struct LmdbState {
    files: BTreeMap<PathBuf, FileModel>,
}

impl LmdbState {
    /// What survives a crash per `spec` (torn draws from `rng`, in (path, sector) order).
    pub fn surviving(&self, spec: CrashSpec, rng: &mut ChaCha8Rng) -> LmdbImage {
        let mut image = LmdbImage::default();
        for (path, file) in &self.files {
            let bytes = match spec.mode {
                FaultMode::ProcessCrash => Some(file.live.to_vec()),
                FaultMode::PowerLoss => file.durable.as_ref().map(|durable| {
                    let mut out = durable.to_vec();
                    if spec.torn && !file.dirty.is_empty() {
                        let dirty: Vec<u64> = file.dirty.iter().copied().collect();
                        tear(&mut out, &file.live, &dirty, rng);
                    }
                    out
                }),
            };
            if let Some(bytes) = bytes {
                image.files.insert(path.clone(), bytes);
            }
        }
        image
    }
}

/// What a descriptor refers to, as far as this thread knows.
#[derive(Clone, Debug, Default)]
enum FdSlot {
    #[default]
    Unknown,
    Untracked,
    Tracked(Tracked),
}

#[derive(Clone, Debug)]
struct Tracked {
    path: Rc<Path>,
    /// Opened `O_DSYNC` or `O_SYNC`: every write is durable when it returns.
    dsync: bool,
}

struct State {
    /// Canonical tracked directories.
    dirs: Vec<PathBuf>,
    files: BTreeMap<PathBuf, FileModel>,
    fds: Vec<FdSlot>,
}

impl State {
    const fn new() -> State {
        State { dirs: Vec::new(), files: BTreeMap::new(), fds: Vec::new() }
    }
}

thread_local! {
    /// Whether this thread tracks anything: the fast path of every interposer.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static STATE: RefCell<State> = const { RefCell::new(State::new()) };
}

/// Make sure the interposers are linked into the binary (they are referenced
/// from here, which pulls their object in). [`track_dir`] calls it, so callers
/// that track a directory need not.
pub fn install() {
    let symbols: [usize; 9] = [
        pwrite as *const () as usize,
        pwrite64 as *const () as usize,
        writev as *const () as usize,
        pwritev as *const () as usize,
        pwritev64 as *const () as usize,
        fdatasync as *const () as usize,
        fsync as *const () as usize,
        close as *const () as usize,
        unlink as *const () as usize,
    ];
    std::hint::black_box(symbols);
}

/// Track every LMDB data file (`data.mdb`) directly inside `dir` on this thread.
/// `dir` need not exist yet (its existing ancestor is canonicalized). An
/// existing non-empty `data.mdb` counts as durable as it is.
pub fn track_dir(dir: &Path) {
    install();
    let dir = canonical_dir(dir);
    let data = dir.join(DATA_FILE);
    let existing = if STATE.with(|s| s.borrow().files.contains_key(&data)) { None } else { read_whole(&data) };
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if !s.dirs.contains(&dir) {
            s.dirs.push(dir);
        }
        if let Some(bytes) = existing {
            world::disk_changed();
            s.files.entry(data).or_insert_with(|| FileModel::seen(bytes));
        }
        s.fds.clear();
    });
    ACTIVE.with(|a| a.set(true));
}

/// Stop tracking anything on this thread.
pub fn reset() {
    world::disk_changed();
    ACTIVE.with(|a| a.set(false));
    STATE.with(|s| *s.borrow_mut() = State::new());
}

/// What survives a crash now, per `spec`. Only reads (LMDB may be inside a call).
pub fn capture(spec: CrashSpec, rng: &mut ChaCha8Rng) -> LmdbImage {
    state().surviving(spec, rng)
}

/// Every tracked file's state now, for a crash image made later.
pub fn state() -> LmdbState {
    STATE.with(|s| LmdbState { files: s.borrow().files.clone() })
}

/// Apply the torn rule to `out` (the durable image) for the `dirty` sectors.
fn tear(out: &mut Vec<u8>, live: &CowBytes, dirty: &[u64], rng: &mut ChaCha8Rng) {
    for &sector in dirty {
        let fate = fault::draw_sector_fate(rng);
        let start = (sector * SECTOR).min(live.len() as u64) as usize;
        let end = ((sector + 1) * SECTOR).min(live.len() as u64) as usize;
        if fate == SectorFate::Vanishes || start == end {
            continue;
        }
        if out.len() < end {
            out.resize(end, 0);
        }
        match fate {
            SectorFate::Survives => {
                live.read(start, &mut out[start..end]);
            }
            SectorFate::Torn => rng.fill_bytes(&mut out[start..end]),
            SectorFate::Vanishes => {}
        }
    }
}

/// Write `image` to the real files (after a crash, with LMDB closed): every
/// tracked `data.mdb` becomes the image's (or is deleted if absent from it),
/// `lock.mdb` is deleted, and the model restarts with durable = image.
pub fn restore(image: &LmdbImage) {
    let dirs = STATE.with(|s| s.borrow().dirs.clone());
    for path in image.files.keys() {
        assert!(
            path.file_name() == Some(OsStr::new(DATA_FILE))
                && path.parent().is_some_and(|p| dirs.iter().any(|d| d == p)),
            "lmdb_io::restore: {} is not a data file of a tracked directory",
            path.display()
        );
    }
    for dir in &dirs {
        let data = dir.join(DATA_FILE);
        match image.files.get(&data) {
            Some(bytes) => {
                // A run that starts from an image has not created the directory yet.
                std::fs::create_dir_all(dir)
                    .unwrap_or_else(|e| panic!("lmdb_io::restore: creating {}: {e}", dir.display()));
                std::fs::write(&data, bytes)
                    .unwrap_or_else(|e| panic!("lmdb_io::restore: writing {}: {e}", data.display()))
            }
            None => remove_if_exists(&data),
        }
        remove_if_exists(&dir.join(LOCK_FILE));
    }
    world::disk_changed();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.files = image
            .files
            .iter()
            .map(|(path, bytes)| {
                let live = CowBytes::from_slice(bytes);
                (path.clone(), FileModel { durable: Some(live.clone()), live, dirty: BTreeSet::new() })
            })
            .collect();
        s.fds.clear();
    });
}

fn remove_if_exists(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("lmdb_io::restore: removing {}: {e}", path.display()),
    }
}

/// `dir` canonicalized through its longest existing ancestor.
fn canonical_dir(dir: &Path) -> PathBuf {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().expect("lmdb_io::track_dir: current dir").join(dir)
    };
    let mut rest = Vec::new();
    let mut base = dir.as_path();
    loop {
        if let Ok(canonical) = base.canonicalize() {
            let mut out = canonical;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                base = parent;
            }
            _ => return dir,
        }
    }
}

// ---------------------------------------------------------------------------
// Raw I/O (no interposer involved).

fn errno() -> c_int {
    // SAFETY: errno is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

unsafe fn raw_pwrite(fd: c_int, buf: *const c_void, count: size_t, offset: i64) -> ssize_t {
    libc::syscall(libc::SYS_pwrite64, fd, buf, count, offset) as ssize_t
}

unsafe fn raw_writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    libc::syscall(libc::SYS_writev, fd, iov, iovcnt) as ssize_t
}

unsafe fn raw_pwritev(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: i64) -> ssize_t {
    // The kernel takes the offset as (low, high) halves, as glibc passes it.
    let low = offset as libc::c_long;
    let high = ((offset as u64) >> 32) as libc::c_long;
    libc::syscall(libc::SYS_pwritev, fd, iov, iovcnt, low, high) as ssize_t
}

unsafe fn raw_fdatasync(fd: c_int) -> c_int {
    libc::syscall(libc::SYS_fdatasync, fd) as c_int
}

unsafe fn raw_fsync(fd: c_int) -> c_int {
    libc::syscall(libc::SYS_fsync, fd) as c_int
}

unsafe fn raw_unlink(path: *const libc::c_char) -> c_int {
    libc::syscall(libc::SYS_unlinkat, libc::AT_FDCWD, path, 0) as c_int
}

unsafe fn raw_close(fd: c_int) -> c_int {
    libc::syscall(libc::SYS_close, fd) as c_int
}

fn raw_open_read(path: &Path) -> Option<c_int> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) }
        as c_int;
    (fd >= 0).then_some(fd)
}

fn raw_file_len(fd: c_int) -> Option<u64> {
    // SAFETY: fstat into a zeroed stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st.st_size as u64)
    }
}

/// Read up to `len` bytes at `offset` (short at end of file).
fn raw_pread_all(fd: c_int, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        // SAFETY: the buffer has `len - done` bytes left at `done`.
        let n = unsafe {
            libc::syscall(libc::SYS_pread64, fd, buf.as_mut_ptr().add(done), len - done, (offset + done as u64) as i64)
        };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return None;
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    buf.truncate(done);
    Some(buf)
}

/// The whole real file, or `None` if it does not exist.
fn read_whole(path: &Path) -> Option<Vec<u8>> {
    let saved = errno();
    let out = (|| {
        let fd = raw_open_read(path)?;
        let bytes = raw_file_len(fd).and_then(|len| raw_pread_all(fd, 0, len as usize));
        // SAFETY: our own descriptor.
        unsafe { raw_close(fd) };
        bytes
    })();
    set_errno(saved);
    out
}

// ---------------------------------------------------------------------------
// The model behind the interposers.

/// What `fd` is on this thread; `None`: untracked (or this thread tracks nothing).
fn classify(fd: c_int) -> Option<Tracked> {
    if fd < 0 {
        return None;
    }
    let index = fd as usize;
    let cached = STATE
        .try_with(|s| {
            let s = s.try_borrow().ok()?;
            Some(s.fds.get(index).cloned().unwrap_or_default())
        })
        .ok()
        .flatten()?;
    match cached {
        FdSlot::Tracked(t) => return Some(t),
        FdSlot::Untracked => return None,
        FdSlot::Unknown => {}
    }
    let target = fd_path(fd);
    let tracked = STATE.with(|s| {
        let s = s.borrow();
        let target = target.as_ref()?;
        let parent = target.parent()?;
        (target.file_name() == Some(OsStr::new(DATA_FILE)) && s.dirs.iter().any(|d| d == parent))
            .then(|| (target.clone(), s.files.contains_key(target)))
    });
    let slot = match tracked {
        None => FdSlot::Untracked,
        Some((path, known)) => {
            // SAFETY: F_GETFL on a descriptor only reads its flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            if flags < 0 {
                return None;
            }
            let first_sight = if known { None } else { Some(read_whole(&path).unwrap_or_default()) };
            let t = Tracked { path: Rc::from(path.as_path()), dsync: flags & (libc::O_DSYNC | libc::O_SYNC) != 0 };
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                if let Some(bytes) = first_sight {
                    world::disk_changed();
                    s.files.entry(path).or_insert_with(|| FileModel::seen(bytes));
                }
            });
            FdSlot::Tracked(t)
        }
    };
    if index < MAX_CACHED_FD {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if s.fds.len() <= index {
                s.fds.resize(index + 1, FdSlot::Unknown);
            }
            s.fds[index] = slot.clone();
        });
    }
    match slot {
        FdSlot::Tracked(t) => Some(t),
        _ => None,
    }
}

/// The canonical path `fd` refers to, from `/proc/self/fd`.
fn fd_path(fd: c_int) -> Option<PathBuf> {
    let link = CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` has `buf.len()` writable bytes.
    let n = unsafe { libc::readlink(link.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 || n as usize >= buf.len() {
        return None;
    }
    buf.truncate(n as usize);
    let path = PathBuf::from(OsStr::from_bytes(&buf));
    path.is_absolute().then_some(path)
}

fn point(t: &Tracked) -> Result<(), fault::Crashed> {
    world::durability_point(PointKind::LmdbSync, "lmdb", &t.path.to_string_lossy())
}

/// A plain write of `bytes` at `offset` reached the live file.
fn note_dirty(t: &Tracked, offset: u64, bytes: &[u8]) {
    world::disk_changed();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let file = s.files.entry(t.path.to_path_buf()).or_default();
        file.live.write(offset as usize, bytes);
        file.dirty.extend(offset / SECTOR..(offset + bytes.len() as u64).div_ceil(SECTOR));
    });
}

/// An O_DSYNC write of `bytes` at `offset` returned: it is durable, and so is
/// every dirty sector it touches (whole, from the live file).
fn note_durable_write(t: &Tracked, offset: u64, bytes: &[u8]) {
    world::disk_changed();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let file = s.files.entry(t.path.to_path_buf()).or_default();
        file.live.write(offset as usize, bytes);
        let touched = offset / SECTOR..(offset + bytes.len() as u64).div_ceil(SECTOR);
        let dirty_touched: Vec<u64> = file.dirty.range(touched).copied().collect();
        let durable = file.durable.get_or_insert_with(CowBytes::default);
        durable.write(offset as usize, bytes);
        for sector in &dirty_touched {
            let start = (sector * SECTOR) as usize;
            let chunk = file.live.slice(start, start + SECTOR as usize);
            durable.write(start, &chunk);
            file.dirty.remove(sector);
        }
    });
}

/// A sync of the file returned: durable = live.
fn note_synced(t: &Tracked) {
    world::disk_changed();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let file = s.files.entry(t.path.to_path_buf()).or_default();
        file.durable = Some(file.live.clone());
        file.dirty.clear();
    });
    #[cfg(debug_assertions)]
    check_live(t);
}

/// Debug builds: the model's live bytes are the real file's, or the simulator
/// is wrong (a write it did not see); that must not pass quietly.
#[cfg(debug_assertions)]
fn check_live(t: &Tracked) {
    let model = STATE.with(|s| s.borrow().files.get(&*t.path).map(|f| f.live.to_vec()));
    let real = read_whole(&t.path);
    if model != real {
        eprintln!("lmdb_io: the model of {} differs from the real file", t.path.display());
        std::process::abort();
    }
}

fn active() -> bool {
    ACTIVE.try_with(Cell::get).unwrap_or(false)
}

/// Run the tracked path of an interposer; a panic becomes `EIO`.
fn guarded<R: From<i8>>(f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            set_errno(libc::EIO);
            R::from(-1)
        }
    }
}

/// Where a write lands: at an explicit offset, or at the descriptor's position.
#[derive(Clone, Copy)]
enum At {
    Offset(i64),
    Position,
}

/// A write of `len` bytes through `fd`: `write` performs it; `gather(n)`
/// returns its first `n` bytes (for O_DSYNC writes). An I/O fault planned for
/// it fails it with ENOSPC or EIO before anything is written.
fn tracked_write(
    fd: c_int,
    at: At,
    len: usize,
    write: impl FnOnce() -> ssize_t,
    gather: impl FnOnce(usize) -> Vec<u8>,
) -> ssize_t {
    let saved = errno();
    let Some(t) = classify(fd) else {
        set_errno(saved);
        return write();
    };
    let blocked = if t.dsync { point(&t).is_err() } else { world::is_crashed() };
    if blocked {
        set_errno(libc::EIO);
        return -1;
    }
    let start = match at {
        At::Offset(offset) => offset,
        // SAFETY: lseek only reads the position of `fd`.
        At::Position => unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) },
    };
    if let Some(fault) = write_fault(&t, start, len) {
        set_errno(if fault == FaultKind::Enospc { libc::ENOSPC } else { libc::EIO });
        return -1;
    }
    set_errno(saved);
    let n = write();
    if n <= 0 {
        return n;
    }
    let after = errno();
    if start >= 0 {
        let bytes = gather(n as usize);
        if t.dsync {
            note_durable_write(&t, start as u64, &bytes);
        } else {
            note_dirty(&t, start as u64, &bytes);
        }
    }
    set_errno(after);
    n
}

/// The I/O fault the world injects into a write of `len` bytes at `offset`, if any.
fn write_fault(t: &Tracked, offset: i64, len: usize) -> Option<FaultKind> {
    let live_len = STATE.with(|s| s.borrow().files.get(&*t.path).map_or(0, |f| f.live.len()));
    let extends = offset.max(0) as usize + len > live_len;
    world::io_operation(OpClass::Write, extends, "lmdb", &t.path.to_string_lossy())
}

fn tracked_sync(fd: c_int, sync: impl FnOnce() -> c_int) -> c_int {
    let saved = errno();
    let Some(t) = classify(fd) else {
        set_errno(saved);
        return sync();
    };
    if point(&t).is_err() {
        set_errno(libc::EIO);
        return -1;
    }
    if world::io_operation(OpClass::Sync, false, "lmdb", &t.path.to_string_lossy()).is_some() {
        lose_unsynced_data(fd, &t);
        if !world::retries_failed_sync() {
            set_errno(libc::EIO);
            return -1;
        }
    }
    set_errno(saved);
    let r = sync();
    if r != 0 {
        return r;
    }
    let after = errno();
    note_synced(&t);
    set_errno(after);
    r
}

/// An fsync-eio fault: the file's unsynced sectors read as their durable
/// content again, in the model and in the real file (through `fd`).
fn lose_unsynced_data(fd: c_int, t: &Tracked) {
    world::disk_changed();
    let writes = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let file = s.files.entry(t.path.to_path_buf()).or_default();
        let dirty = std::mem::take(&mut file.dirty);
        lose_unsynced(&mut file.live, file.durable.as_ref(), dirty.into_iter().map(|s| s as usize), SECTOR as usize)
    });
    for (offset, bytes) in writes {
        // SAFETY: `bytes` is a live buffer of `bytes.len()` bytes.
        let n = unsafe { raw_pwrite(fd, bytes.as_ptr().cast(), bytes.len(), offset as i64) };
        assert_eq!(n, bytes.len() as ssize_t, "lmdb_io: reverting {} at {offset}", t.path.display());
    }
}

/// The bytes `iov[..iovcnt]` describes.
unsafe fn iov_len(iov: *const iovec, iovcnt: c_int) -> usize {
    (0..iovcnt.max(0) as usize).map(|i| (*iov.add(i)).iov_len).sum()
}

/// The first `n` bytes described by `iov[..iovcnt]`.
unsafe fn gather_iov(iov: *const iovec, iovcnt: c_int, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    for i in 0..iovcnt.max(0) as usize {
        if out.len() >= n {
            break;
        }
        let v = &*iov.add(i);
        let take = v.iov_len.min(n - out.len());
        if take > 0 {
            out.extend_from_slice(std::slice::from_raw_parts(v.iov_base as *const u8, take));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The interposers.

/// Interposed `pwrite(2)`.
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn pwrite(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t {
    if !active() {
        return raw_pwrite(fd, buf, count, offset);
    }
    guarded(|| {
        tracked_write(
            fd,
            At::Offset(offset),
            count,
            || raw_pwrite(fd, buf, count, offset),
            |n| std::slice::from_raw_parts(buf as *const u8, n).to_vec(),
        )
    })
}

/// Interposed `pwrite64(2)` (what Rust's `FileExt::write_at` calls).
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: libc::off64_t) -> ssize_t {
    pwrite(fd, buf, count, offset)
}

/// Interposed `writev(2)` (LMDB: after `lseek`, for several page runs).
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    if !active() {
        return raw_writev(fd, iov, iovcnt);
    }
    let len = iov_len(iov, iovcnt);
    guarded(|| tracked_write(fd, At::Position, len, || raw_writev(fd, iov, iovcnt), |n| gather_iov(iov, iovcnt, n)))
}

/// Interposed `pwritev(2)` (LMDB only with `MDB_USE_PWRITEV`, not defined here).
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn pwritev(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t {
    if !active() {
        return raw_pwritev(fd, iov, iovcnt, offset);
    }
    let len = iov_len(iov, iovcnt);
    guarded(|| {
        tracked_write(
            fd,
            At::Offset(offset),
            len,
            || raw_pwritev(fd, iov, iovcnt, offset),
            |n| gather_iov(iov, iovcnt, n),
        )
    })
}

/// Interposed `pwritev64(2)`.
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn pwritev64(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: libc::off64_t) -> ssize_t {
    pwritev(fd, iov, iovcnt, offset)
}

/// Interposed `fdatasync(2)`.
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    if !active() {
        return raw_fdatasync(fd);
    }
    guarded(|| tracked_sync(fd, || raw_fdatasync(fd)))
}

/// Interposed `fsync(2)`.
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    if !active() {
        return raw_fsync(fd);
    }
    guarded(|| tracked_sync(fd, || raw_fsync(fd)))
}

/// Interposed `unlink(2)` (what `std::fs::remove_file` calls): a tracked data
/// file that is removed leaves the model too (directory operations are durable
/// at once, as in the SQLite VFS), so a file created again starts empty.
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn unlink(path: *const libc::c_char) -> c_int {
    if active() && !path.is_null() {
        let path = Path::new(OsStr::from_bytes(std::ffi::CStr::from_ptr(path).to_bytes()));
        forget_file(path);
    }
    raw_unlink(path)
}

/// Drop `path` from the model if it is a tracked data file.
fn forget_file(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return };
    if name != OsStr::new(DATA_FILE) {
        return;
    }
    let path = canonical_dir(dir).join(name);
    world::disk_changed();
    let _ = STATE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.files.remove(&path);
            s.fds.clear();
        }
    });
}

/// Interposed `close(2)`: forgets what this thread knew about `fd`.
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if active() && fd >= 0 {
        let _ = STATE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                if let Some(slot) = s.fds.get_mut(fd as usize) {
                    *slot = FdSlot::Unknown;
                }
            }
        });
    }
    raw_close(fd)
}
