//! SQLite on a simulated disk: an in-memory VFS with a durable and a live image per file.
//!
//! # The model
//!
//! Every file lives in memory, in a per-thread disk (one simulated run per OS
//! thread; the files of one thread are invisible to every other), keyed by the
//! exact path SQLite passes to xOpen. Each file has two images:
//!
//! * `live`: what reads see, every write applied;
//! * `durable`: the content as of the file's last xSync. A file never synced has
//!   no durable image: it does not exist after a power loss.
//!
//! Each file also remembers the 512-byte sectors ([`fault::SECTOR_BYTES`])
//! written since its last sync. What [`capture`] returns:
//!
//! * process crash: every file's live image;
//! * power loss: every file's durable image;
//! * power loss with `torn`: the durable image (empty for a file never synced)
//!   with each sector written since the last sync, in ascending order of path
//!   then sector, drawn by [`fault::draw_sector_fate`]: it survives (the live
//!   bytes, clipped to the live length; the image grows to cover them),
//!   vanishes (durable bytes kept) or is torn (filled with seeded garbage,
//!   clipped likewise). A never-synced file all of whose sectors vanished stays
//!   absent.
//!
//! Every xSync is a crash point ([`world::durability_point`]): a crash there
//! leaves the sync without effect.
//!
//! Simplification: directory operations are durable at once. Creating a file
//! adds no durable state (the file exists after power loss iff it was synced
//! once), and xDelete removes both images immediately. In rollback-journal
//! mode the deletion of the journal after COMMIT is therefore the durable
//! commit point, with no crash point between it and the database sync before.
//!
//! Shared memory (the WAL index, xShmMap) is live only: it is never part of an
//! image, and a restored disk starts without it, as after a reboot.
//!
//! A file is an inode: an open handle keeps its file after xDelete or
//! [`restore`], so a connection left over from a crashed run never writes into
//! the restored disk through its handles. It can still delete by path: drop
//! the crashed run's connections before [`restore`] (xDelete fails while the
//! run is crashed).
//!
//! Temp files (xOpen with a NULL name) are private to their handle and never
//! part of an image; their syncs are not crash points.
//!
//! SQLite's own PRNG (journal nonces, WAL salts) is process-global and is seeded
//! through the *default* VFS, so xRandomness here is rarely consulted; see
//! [`seed_sqlite_prng`].

use crate::cow::lose_unsynced;
use crate::cow::CowBytes;
use crate::fault::{self, CrashSpec, FaultKind, FaultMode, OpClass, PointKind, SectorFate, SECTOR_BYTES};
use crate::world;
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use rusqlite::ffi;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};

/// Name under which the VFS is registered with SQLite.
pub const VFS_NAME: &str = "swingsim";
const VFS_NAME_C: &CStr = c"swingsim";

/// Julian day of the Unix epoch, in milliseconds.
const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;
const MS_PER_DAY: f64 = 86_400_000.0;
const SHM_SLOTS: usize = ffi::SQLITE_SHM_NLOCK as usize;

/// The files of this thread's simulated disk as they survive a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VfsImage {
    pub files: BTreeMap<String, Vec<u8>>,
}

// ---------------------------------------------------------------------------
// One file.

/// One file's contents, locks and shared memory.
#[derive(Default)]
struct Node {
    live: CowBytes,
    /// As of the last sync; `None`: never synced. Sharing chunks with `live`,
    /// a sync is a copy of the chunk list, not of the bytes.
    durable: Option<CowBytes>,
    /// Sectors written since the last sync.
    dirty: BTreeSet<usize>,
    locks: FileLocks,
    shm: Shm,
}

/// The byte range of sector `sector`, clipped to `len`.
fn sector_range(sector: usize, len: usize) -> Range<usize> {
    let start = (sector * SECTOR_BYTES).min(len);
    start..((sector + 1) * SECTOR_BYTES).min(len)
}

/// Grow `image` with zeros to at least `len` bytes.
fn grow(image: &mut Vec<u8>, len: usize) {
    if image.len() < len {
        image.resize(len, 0);
    }
}

impl Node {
    /// A file as a restored disk has it: synced, nothing pending.
    fn synced(bytes: &[u8]) -> Node {
        let live = CowBytes::from_slice(bytes);
        Node { durable: Some(live.clone()), live, ..Node::default() }
    }

    /// Read at `offset`; zero-fills past the end and says whether `buf` was filled.
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        let n = self.live.read(offset, buf);
        buf[n..].fill(0);
        n == buf.len()
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        world::disk_changed();
        let end = offset + data.len();
        self.live.write(offset, data);
        self.dirty.extend(offset / SECTOR_BYTES..=(end - 1) / SECTOR_BYTES);
    }

    fn truncate(&mut self, len: usize) {
        world::disk_changed();
        if len > self.live.len() {
            // Extending writes zeros: those sectors change too.
            self.dirty.extend(self.live.len() / SECTOR_BYTES..len.div_ceil(SECTOR_BYTES));
        }
        self.live.resize(len);
    }

    /// Make the live image durable.
    fn sync(&mut self) {
        world::disk_changed();
        self.durable = Some(self.live.clone());
        self.dirty.clear();
    }

    /// A failed sync: the data written since the last sync is lost.
    fn lose_unsynced(&mut self) {
        world::disk_changed();
        let dirty = std::mem::take(&mut self.dirty);
        lose_unsynced(&mut self.live, self.durable.as_ref(), dirty, SECTOR_BYTES);
    }

    /// The file's state for a crash image taken later.
    fn state(&self) -> FileState {
        FileState { live: self.live.clone(), durable: self.durable.clone(), dirty: self.dirty.clone() }
    }
}

/// One file as a crash at this moment would find it, kept for later (cheap:
/// the contents share chunks with the disk).
#[derive(Clone, Debug)]
struct FileState {
    live: CowBytes,
    durable: Option<CowBytes>,
    dirty: BTreeSet<usize>,
}

impl FileState {
    /// What of this file survives a crash per `spec`; `None` if it does not exist.
    fn surviving(&self, spec: CrashSpec, rng: &mut ChaCha8Rng) -> Option<Vec<u8>> {
        match (spec.mode, spec.torn) {
            (FaultMode::ProcessCrash, _) => Some(self.live.to_vec()),
            (FaultMode::PowerLoss, false) => self.durable.as_ref().map(CowBytes::to_vec),
            (FaultMode::PowerLoss, true) => self.torn(rng),
        }
    }

    /// The durable image with every dirty sector surviving, vanishing or torn.
    fn torn(&self, rng: &mut ChaCha8Rng) -> Option<Vec<u8>> {
        let mut image = self.durable.as_ref().map(CowBytes::to_vec);
        for &sector in &self.dirty {
            let fate = fault::draw_sector_fate(rng);
            let range = sector_range(sector, self.live.len());
            if fate == SectorFate::Vanishes || range.is_empty() {
                continue;
            }
            let image = image.get_or_insert_with(Vec::new);
            grow(image, range.end);
            match fate {
                SectorFate::Survives => {
                    self.live.read(range.start, &mut image[range.clone()]);
                }
                _ => rng.fill_bytes(&mut image[range]),
            }
        }
        image
    }
}

/// Every file of this thread's disk as a crash at one moment would find it.
/// Taking it costs a reference count per file; [`VfsState::surviving`] makes
/// the crash image from it later, exactly as [`capture`] would have then.
#[derive(Clone, Debug, Default)]
pub struct VfsState {
    files: Vec<(String, FileState)>,
}

impl VfsState {
    /// What survives a crash per `spec` (torn draws from `rng`, in path then sector order).
    pub fn surviving(&self, spec: CrashSpec, rng: &mut ChaCha8Rng) -> VfsImage {
        let files =
            self.files.iter().filter_map(|(path, file)| Some((path.clone(), file.surviving(spec, rng)?))).collect();
        VfsImage { files }
    }
}

/// Rollback-journal locks of one file, shared by its handles (as POSIX locks
/// are shared by the connections of one process).
#[derive(Default)]
struct FileLocks {
    /// Handles holding at least SHARED.
    shared: u32,
    /// The handle holding RESERVED, if any.
    reserved: Option<u64>,
    /// The handle holding PENDING or EXCLUSIVE, if any.
    pending: Option<u64>,
}

impl FileLocks {
    /// Raise handle `id` from `held` towards `want`; returns the level reached and a code.
    fn lock(&mut self, id: u64, held: c_int, want: c_int) -> (c_int, c_int) {
        if held >= want {
            return (held, ffi::SQLITE_OK);
        }
        match want {
            ffi::SQLITE_LOCK_SHARED if self.pending.is_some() => (held, ffi::SQLITE_BUSY),
            ffi::SQLITE_LOCK_SHARED => {
                self.shared += 1;
                (want, ffi::SQLITE_OK)
            }
            ffi::SQLITE_LOCK_RESERVED if self.reserved.is_some() => (held, ffi::SQLITE_BUSY),
            ffi::SQLITE_LOCK_RESERVED => {
                self.reserved = Some(id);
                (want, ffi::SQLITE_OK)
            }
            _ => self.lock_exclusive(id, held),
        }
    }

    /// PENDING first (new readers are kept out), EXCLUSIVE once the other readers left.
    fn lock_exclusive(&mut self, id: u64, held: c_int) -> (c_int, c_int) {
        if self.pending.is_some_and(|owner| owner != id) {
            return (held, ffi::SQLITE_BUSY);
        }
        self.pending = Some(id);
        if self.shared > 1 {
            return (ffi::SQLITE_LOCK_PENDING, ffi::SQLITE_BUSY);
        }
        (ffi::SQLITE_LOCK_EXCLUSIVE, ffi::SQLITE_OK)
    }

    /// Lower handle `id` from `held` to `want` (SHARED or NONE); returns the new level.
    fn unlock(&mut self, id: u64, held: c_int, want: c_int) -> c_int {
        if held > ffi::SQLITE_LOCK_SHARED && want <= ffi::SQLITE_LOCK_SHARED {
            if self.reserved == Some(id) {
                self.reserved = None;
            }
            if self.pending == Some(id) {
                self.pending = None;
            }
        }
        if held >= ffi::SQLITE_LOCK_SHARED && want == ffi::SQLITE_LOCK_NONE {
            self.shared -= 1;
        }
        held.min(want)
    }
}

/// The shared memory (WAL index) of one database file.
#[derive(Default)]
struct Shm {
    /// Regions handed out by pointer: boxed so that their addresses stay put.
    regions: Vec<Box<[u8]>>,
    /// Handles that have mapped a region.
    users: u32,
    shared: [u32; SHM_SLOTS],
    exclusive: [bool; SHM_SLOTS],
}

impl Shm {
    /// Region `index` of `size` bytes, created if `extend`; null if absent.
    fn map(&mut self, index: usize, size: usize, extend: bool) -> *mut c_void {
        while extend && self.regions.len() <= index {
            self.regions.push(vec![0; size].into_boxed_slice());
        }
        match self.regions.get_mut(index) {
            Some(region) => region.as_mut_ptr().cast(),
            None => std::ptr::null_mut(),
        }
    }

    /// Take or release the locks `slots` for a handle holding `held`.
    fn lock(&mut self, held: &mut ShmHeld, slots: Range<usize>, flags: c_int) -> c_int {
        if flags & ffi::SQLITE_SHM_UNLOCK != 0 {
            slots.for_each(|slot| self.release(held, slot));
            return ffi::SQLITE_OK;
        }
        let exclusive = flags & ffi::SQLITE_SHM_EXCLUSIVE != 0;
        if !slots.clone().all(|slot| self.can_take(held, slot, exclusive)) {
            return ffi::SQLITE_BUSY;
        }
        for slot in slots {
            self.take(held, slot, exclusive);
        }
        ffi::SQLITE_OK
    }

    fn can_take(&self, held: &ShmHeld, slot: usize, exclusive: bool) -> bool {
        if held.exclusive[slot] || (held.shared[slot] && !exclusive) {
            return true;
        }
        let other_readers = self.shared[slot] - u32::from(held.shared[slot]);
        !self.exclusive[slot] && (!exclusive || other_readers == 0)
    }

    fn take(&mut self, held: &mut ShmHeld, slot: usize, exclusive: bool) {
        if held.exclusive[slot] || (held.shared[slot] && !exclusive) {
            return;
        }
        self.release(held, slot);
        if exclusive {
            self.exclusive[slot] = true;
            held.exclusive[slot] = true;
        } else {
            self.shared[slot] += 1;
            held.shared[slot] = true;
        }
    }

    fn release(&mut self, held: &mut ShmHeld, slot: usize) {
        if std::mem::take(&mut held.shared[slot]) {
            self.shared[slot] -= 1;
        }
        if std::mem::take(&mut held.exclusive[slot]) {
            self.exclusive[slot] = false;
        }
    }

    /// A handle stops using the shared memory; the last one drops it (as if the
    /// -shm file were deleted: SQLite rebuilds the index from the WAL).
    fn unmap(&mut self, held: &mut ShmHeld) {
        (0..SHM_SLOTS).for_each(|slot| self.release(held, slot));
        self.users -= 1;
        if self.users == 0 {
            self.regions.clear();
        }
    }
}

/// The shared-memory locks one handle holds.
#[derive(Default)]
struct ShmHeld {
    shared: [bool; SHM_SLOTS],
    exclusive: [bool; SHM_SLOTS],
}

fn lock(node: &Mutex<Node>) -> MutexGuard<'_, Node> {
    // A panic while locked was caught at the callback; the file is still usable.
    node.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// This thread's disk and the public interface.

type NodeRef = Arc<Mutex<Node>>;

thread_local! {
    static DISK: RefCell<BTreeMap<String, NodeRef>> = const { RefCell::new(BTreeMap::new()) };
}

fn with_disk<R>(f: impl FnOnce(&mut BTreeMap<String, NodeRef>) -> R) -> R {
    DISK.with(|disk| f(&mut disk.borrow_mut()))
}

/// [`with_disk`] for a change of the set of files.
fn change_disk<R>(f: impl FnOnce(&mut BTreeMap<String, NodeRef>) -> R) -> R {
    world::disk_changed();
    with_disk(f)
}

/// Register the VFS with SQLite (idempotent, thread-safe). Not the default VFS.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let vfs = Box::leak(Box::new(new_vfs()));
        // SAFETY: `vfs` is leaked, so it lives as long as SQLite may use it.
        let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
        assert_eq!(rc, ffi::SQLITE_OK, "registering the {VFS_NAME} VFS");
    });
}

/// Forget every file of this thread's disk (a new seed starts).
pub fn reset() {
    change_disk(BTreeMap::clear);
}

/// What survives a crash now, per `spec`.
pub fn capture(spec: CrashSpec, rng: &mut ChaCha8Rng) -> VfsImage {
    state().surviving(spec, rng)
}

/// Every file's state now, for a crash image made later.
pub fn state() -> VfsState {
    let nodes: Vec<(String, NodeRef)> = with_disk(|disk| disk.iter().map(|(p, n)| (p.clone(), n.clone())).collect());
    VfsState { files: nodes.into_iter().map(|(path, node)| (path, lock(&node).state())).collect() }
}

/// Replace this thread's disk by `image` (after a crash): durable = live = image.
pub fn restore(image: &VfsImage) {
    let files = image.files.iter().map(|(path, bytes)| (path.clone(), Arc::new(Mutex::new(Node::synced(bytes)))));
    change_disk(|disk| *disk = files.collect());
}

/// The paths of this thread's files, in order.
pub fn file_names() -> Vec<String> {
    with_disk(|disk| disk.keys().cloned().collect())
}

/// The live image of `path` on this thread's disk.
pub fn live_bytes(path: &str) -> Option<Vec<u8>> {
    let node = with_disk(|disk| disk.get(path).cloned())?;
    let bytes = lock(&node).live.to_vec();
    Some(bytes)
}

/// The durable image of `path` on this thread's disk (`None` if never synced).
pub fn durable_bytes(path: &str) -> Option<Vec<u8>> {
    let node = with_disk(|disk| disk.get(path).cloned())?;
    let bytes = lock(&node).durable.as_ref().map(CowBytes::to_vec);
    bytes
}

/// Seed SQLite's built-in PRNG (journal nonces, WAL salts, random rowids) and
/// restart its stream. SQLite seeds it once per process from the default VFS
/// (/dev/urandom), so byte-identical files across two runs need this at the
/// start of each run. The PRNG is process-global: runs on parallel threads
/// still interleave its stream, so byte-identity holds only one run at a time.
pub fn seed_sqlite_prng(seed: u32) {
    // Zero would mean "back to the default VFS's randomness".
    let seed = if seed == 0 { 0x5eed } else { seed };
    // SAFETY: PRNG_SEED takes an int and a (null) connection.
    unsafe {
        ffi::sqlite3_test_control(ffi::SQLITE_TESTCTRL_PRNG_SEED, seed as c_int, std::ptr::null_mut::<ffi::sqlite3>());
    }
}

// ---------------------------------------------------------------------------
// Handles.

/// What SQLite allocates per open file (`szOsFile` bytes).
#[repr(C)]
struct SimFile {
    base: ffi::sqlite3_file,
    handle: *mut Handle,
}

/// One open file.
struct Handle {
    /// Identifies the handle in lock tables.
    id: u64,
    /// `None` for a temp file, which is in no directory.
    path: Option<String>,
    node: NodeRef,
    delete_on_close: bool,
    lock_level: c_int,
    shm_mapped: bool,
    shm_held: ShmHeld,
}

static NEXT_HANDLE_ID: AtomicU64 = AtomicU64::new(1);

/// The handle behind `file`.
///
/// # Safety
/// `file` must be a `SimFile` opened by [`x_open`] and not yet closed.
unsafe fn handle<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Handle {
    &mut *(*file.cast::<SimFile>()).handle
}

/// Run a callback body; a panic becomes `on_panic` (it must not unwind into C).
fn guard(on_panic: c_int, body: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// The Rust string of a C path.
///
/// # Safety
/// `name` must be null or a NUL-terminated string.
unsafe fn path_of<'a>(name: *const c_char) -> Option<&'a str> {
    if name.is_null() {
        return None;
    }
    CStr::from_ptr(name).to_str().ok()
}

/// The file at `path`, created empty if absent and `create`.
fn open_node(path: &str, create: bool) -> Option<NodeRef> {
    with_disk(|disk| match disk.get(path) {
        Some(node) => Some(node.clone()),
        None if create => {
            world::disk_changed();
            Some(disk.entry(path.to_string()).or_default().clone())
        }
        None => None,
    })
}

// ---------------------------------------------------------------------------
// VFS methods.

fn new_vfs() -> ffi::sqlite3_vfs {
    ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: std::mem::size_of::<SimFile>() as c_int,
        mxPathname: 1024,
        pNext: std::ptr::null_mut(),
        zName: VFS_NAME_C.as_ptr(),
        pAppData: std::ptr::null_mut(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // Without methods SQLite will not call xClose on a failed open.
    (*file).pMethods = std::ptr::null();
    guard(ffi::SQLITE_CANTOPEN, || {
        let path = if name.is_null() {
            None
        } else {
            match path_of(name) {
                Some(path) => Some(path.to_string()),
                None => return ffi::SQLITE_CANTOPEN,
            }
        };
        let node = match &path {
            None => NodeRef::default(),
            Some(path) => match open_node(path, flags & ffi::SQLITE_OPEN_CREATE != 0) {
                Some(node) => node,
                None => return ffi::SQLITE_CANTOPEN,
            },
        };
        let handle = Handle {
            id: NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed),
            path,
            node,
            delete_on_close: flags & ffi::SQLITE_OPEN_DELETEONCLOSE != 0,
            lock_level: ffi::SQLITE_LOCK_NONE,
            shm_mapped: false,
            shm_held: ShmHeld::default(),
        };
        (*file.cast::<SimFile>()).handle = Box::into_raw(Box::new(handle));
        (*file).pMethods = &IO_METHODS;
        if !out_flags.is_null() {
            *out_flags = flags;
        }
        ffi::SQLITE_OK
    })
}

/// Deletion is durable at once (see the module doc); deleting nothing succeeds.
unsafe extern "C" fn x_delete(_vfs: *mut ffi::sqlite3_vfs, name: *const c_char, _sync_dir: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_DELETE, || {
        if world::is_crashed() {
            return ffi::SQLITE_IOERR_DELETE;
        }
        if let Some(path) = path_of(name) {
            change_disk(|disk| disk.remove(path));
        }
        ffi::SQLITE_OK
    })
}

/// A file exists iff present and not empty (SQLite's own rule for hot journals).
unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    guard(ffi::SQLITE_IOERR_ACCESS, || {
        let node = path_of(name).and_then(|path| with_disk(|disk| disk.get(path).cloned()));
        *out = c_int::from(node.is_some_and(|node| !lock(&node).live.is_empty()));
        ffi::SQLITE_OK
    })
}

/// Paths are keys: copied as they are.
unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || {
        let bytes = CStr::from_ptr(name).to_bytes_with_nul();
        if bytes.len() > usize::try_from(n_out).unwrap_or(0) {
            return ffi::SQLITE_CANTOPEN;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast(), out, bytes.len());
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_dl_open(_vfs: *mut ffi::sqlite3_vfs, _name: *const c_char) -> *mut c_void {
    std::ptr::null_mut()
}

unsafe extern "C" fn x_dl_error(_vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) {
    const MESSAGE: &[u8] = b"extensions are not supported\0";
    let n = usize::try_from(n).unwrap_or(0).min(MESSAGE.len());
    if n > 0 {
        std::ptr::copy_nonoverlapping(MESSAGE.as_ptr().cast(), out, n);
        *out.add(n - 1) = 0;
    }
}

unsafe extern "C" fn x_dl_sym(
    _vfs: *mut ffi::sqlite3_vfs,
    _handle: *mut c_void,
    _symbol: *const c_char,
) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)> {
    None
}

unsafe extern "C" fn x_dl_close(_vfs: *mut ffi::sqlite3_vfs, _handle: *mut c_void) {}

/// Seeded by the world, so that two runs of one seed see the same bytes.
unsafe extern "C" fn x_randomness(_vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    guard(0, || {
        let n = usize::try_from(n).unwrap_or(0);
        world::fill_random(std::slice::from_raw_parts_mut(out.cast::<u8>(), n));
        n as c_int
    })
}

/// Simulated: returns at once, claiming the full sleep.
unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    micros
}

unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    guard(ffi::SQLITE_ERROR, || {
        *out = (world::now_ms() + UNIX_EPOCH_JULIAN_MS) as f64 / MS_PER_DAY;
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_current_time_int64(_vfs: *mut ffi::sqlite3_vfs, out: *mut ffi::sqlite3_int64) -> c_int {
    guard(ffi::SQLITE_ERROR, || {
        *out = world::now_ms() + UNIX_EPOCH_JULIAN_MS;
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_get_last_error(_vfs: *mut ffi::sqlite3_vfs, _n: c_int, _out: *mut c_char) -> c_int {
    0
}

// ---------------------------------------------------------------------------
// File methods.

/// Version 2: with shared memory (WAL needs it), without memory mapping.
static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    guard(ffi::SQLITE_IOERR_CLOSE, || {
        let sim = file.cast::<SimFile>();
        let mut handle = Box::from_raw(std::mem::replace(&mut (*sim).handle, std::ptr::null_mut()));
        release_all(&mut handle);
        if let (true, Some(path)) = (handle.delete_on_close, &handle.path) {
            change_disk(|disk| {
                if disk.get(path).is_some_and(|node| Arc::ptr_eq(node, &handle.node)) {
                    disk.remove(path);
                }
            });
        }
        ffi::SQLITE_OK
    })
}

/// Drop whatever locks and shared memory `handle` still holds.
fn release_all(handle: &mut Handle) {
    let mut node = lock(&handle.node);
    handle.lock_level = node.locks.unlock(handle.id, handle.lock_level, ffi::SQLITE_LOCK_NONE);
    if std::mem::take(&mut handle.shm_mapped) {
        node.shm.unmap(&mut handle.shm_held);
    }
}

unsafe extern "C" fn x_read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amt: c_int, offset: i64) -> c_int {
    guard(ffi::SQLITE_IOERR_READ, || {
        let buf = std::slice::from_raw_parts_mut(buf.cast::<u8>(), usize::try_from(amt).unwrap_or(0));
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        match lock(&handle(file).node).read(offset, buf) {
            true => ffi::SQLITE_OK,
            false => ffi::SQLITE_IOERR_SHORT_READ,
        }
    })
}

/// After the crash the doomed run's writes fail, so it stops quickly.
unsafe extern "C" fn x_write(file: *mut ffi::sqlite3_file, buf: *const c_void, amt: c_int, offset: i64) -> c_int {
    guard(ffi::SQLITE_IOERR_WRITE, || {
        let (Ok(amt), Ok(offset)) = (usize::try_from(amt), usize::try_from(offset)) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        if world::is_crashed() {
            return ffi::SQLITE_IOERR_WRITE;
        }
        let handle = handle(file);
        let mut node = lock(&handle.node);
        if let Some(path) = &handle.path {
            let extends = offset + amt > node.live.len();
            match world::io_operation(OpClass::Write, extends, "sqlite", path) {
                Some(FaultKind::Enospc) => return ffi::SQLITE_FULL,
                Some(_) => return ffi::SQLITE_IOERR_WRITE,
                None => {}
            }
        }
        let data = std::slice::from_raw_parts(buf.cast::<u8>(), amt);
        node.write(offset, data);
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    guard(ffi::SQLITE_IOERR_TRUNCATE, || {
        let Ok(size) = usize::try_from(size) else {
            return ffi::SQLITE_IOERR_TRUNCATE;
        };
        if world::is_crashed() {
            return ffi::SQLITE_IOERR_TRUNCATE;
        }
        lock(&handle(file).node).truncate(size);
        ffi::SQLITE_OK
    })
}

/// A crash point. The world captures the disk when the crash is here, so no
/// lock of ours may be held while asking it. Then an fsync-eio fault may
/// fail the sync and lose the file's unsynced data (with the fsync-retry
/// mutation, the sync is retried and "succeeds").
unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_FSYNC, || {
        let handle = handle(file);
        let passed = match &handle.path {
            Some(path) => world::durability_point(PointKind::SqliteSync, "sqlite", path).is_ok(),
            None => !world::is_crashed(),
        };
        if !passed {
            return ffi::SQLITE_IOERR_FSYNC;
        }
        let failed = match &handle.path {
            Some(path) => world::io_operation(OpClass::Sync, false, "sqlite", path).is_some(),
            None => false,
        };
        let mut node = lock(&handle.node);
        if failed {
            node.lose_unsynced();
            if !world::retries_failed_sync() {
                return ffi::SQLITE_IOERR_FSYNC;
            }
        }
        node.sync();
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    guard(ffi::SQLITE_IOERR_FSTAT, || {
        *size = lock(&handle(file).node).live.len() as i64;
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_LOCK, || {
        let handle = handle(file);
        let (reached, rc) = lock(&handle.node).locks.lock(handle.id, handle.lock_level, level);
        handle.lock_level = reached;
        rc
    })
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_UNLOCK, || {
        let handle = handle(file);
        handle.lock_level = lock(&handle.node).locks.unlock(handle.id, handle.lock_level, level);
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, || {
        let node = lock(&handle(file).node);
        *out = c_int::from(node.locks.reserved.is_some() || node.locks.pending.is_some());
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_file_control(_file: *mut ffi::sqlite3_file, _op: c_int, _arg: *mut c_void) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    SECTOR_BYTES as c_int
}

/// No atomic-write or safe-append claims: SQLite would skip syncs.
unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    0
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    *out = std::ptr::null_mut();
    guard(ffi::SQLITE_IOERR_SHMMAP, || {
        let (Ok(region), Ok(size)) = (usize::try_from(region), usize::try_from(size)) else {
            return ffi::SQLITE_IOERR_SHMMAP;
        };
        let handle = handle(file);
        let mut node = lock(&handle.node);
        if !std::mem::replace(&mut handle.shm_mapped, true) {
            node.shm.users += 1;
        }
        *out = node.shm.map(region, size, extend != 0);
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_SHMLOCK, || {
        let (Ok(offset), Ok(n)) = (usize::try_from(offset), usize::try_from(n)) else {
            return ffi::SQLITE_IOERR_SHMLOCK;
        };
        if offset + n > SHM_SLOTS {
            return ffi::SQLITE_IOERR_SHMLOCK;
        }
        let handle = handle(file);
        lock(&handle.node).shm.lock(&mut handle.shm_held, offset..offset + n, flags)
    })
}

/// One thread per run: there is nothing to order.
unsafe extern "C" fn x_shm_barrier(_file: *mut ffi::sqlite3_file) {}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, _delete: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_SHMMAP, || {
        let handle = handle(file);
        if std::mem::take(&mut handle.shm_mapped) {
            lock(&handle.node).shm.unmap(&mut handle.shm_held);
        }
        ffi::SQLITE_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_constants_agree() {
        assert_eq!(VFS_NAME_C.to_str(), Ok(VFS_NAME));
    }

    #[test]
    fn sync_copies_only_changes_yet_matches_live() {
        let mut node = Node::default();
        node.write(0, &[1; 1500]);
        node.sync();
        node.truncate(100);
        node.write(3000, &[2; 10]);
        node.truncate(2000);
        node.write(600, &[3; 5]);
        node.sync();
        assert_eq!(node.durable.as_ref(), Some(&node.live));
        assert_eq!(node.durable.as_ref().map(CowBytes::to_vec), Some(node.live.to_vec()));
    }

    #[test]
    fn torn_never_synced_all_vanished_is_absent() {
        use rand_core::SeedableRng;
        let mut node = Node::default();
        node.write(0, &[7; 512]);
        let mut seen = BTreeSet::new();
        for seed in 0..32 {
            let image = node.state().torn(&mut ChaCha8Rng::seed_from_u64(seed));
            seen.insert(image.as_ref().map(|i| i == &vec![7; 512]));
            assert!(image.as_ref().is_none_or(|i| i.len() == 512));
        }
        // Absent, survived and torn all occur.
        assert_eq!(seen.len(), 3);
    }
}
