//! SQLite on the simulated disk: SQLite's own unix VFS, unchanged, under the
//! name [`VFS_NAME`], with only its clock, randomness and sleep taken from the
//! run (a seed's run must not read the wall clock or /dev/urandom).
//!
//! Every file operation is the unix VFS's own code (`os_unix.c`): its journal
//! and WAL handling, its directory sync after the first sync of a new
//! journal, super-journal or WAL (`UNIXFILE_DIRSYNC`), and its `unixDelete`
//! that syncs the directory only when asked (`dirSync`). Its system calls
//! reach the simulated disk through [`super::interpose`].
//!
//! One thing differs, and it is a property of the device, not of SQLite: the
//! simulated disk does not promise *powersafe overwrite* (a torn sector may
//! lose bytes of it that were not being written; sqlite.org/psow.html), so
//! the VFS does not claim it, exactly as SQLite's own `psow=0` option does.
//! SQLite then pads each WAL commit to a sector boundary, so that a torn
//! sector of one commit never holds the last bytes of the one before.
//! (Claiming it on this disk loses commits: see docs/findings.md.)
//!
//! SQLite's own PRNG (journal nonces, WAL salts) is process-global and seeded
//! from the *default* VFS; [`seed_prng`] makes it a function of the run.

use super::with;
use rusqlite::ffi;
use std::ffi::{c_char, c_int, CStr};
use std::sync::{Mutex, Once, OnceLock};

/// Name under which the VFS is registered with SQLite.
pub const VFS_NAME: &str = "swingsim";
const VFS_NAME_C: &CStr = c"swingsim";

/// Julian day of the Unix epoch, in milliseconds.
const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;
const MS_PER_DAY: f64 = 86_400_000.0;
/// Simulated wall-clock time outside a run (2022-01-01).
const EPOCH_MS: i64 = 1_640_995_200_000;

/// Register the VFS with SQLite (idempotent, thread-safe). Not the default VFS.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_vfs_find returns SQLite's static unix VFS (or null).
        let unix = unsafe { ffi::sqlite3_vfs_find(c"unix".as_ptr()) };
        assert!(!unix.is_null(), "SQLite has no unix VFS");
        // SAFETY: a plain copy of a C struct SQLite keeps alive forever.
        let mut vfs = unsafe { std::ptr::read(unix) };
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = VFS_NAME_C.as_ptr();
        vfs.xRandomness = Some(x_randomness);
        vfs.xSleep = Some(x_sleep);
        vfs.xCurrentTime = Some(x_current_time);
        vfs.xCurrentTimeInt64 = Some(x_current_time_int64);
        UNIX_OPEN.set(vfs.xOpen.expect("the unix VFS opens files")).expect("set once");
        vfs.xOpen = Some(x_open);
        let vfs = Box::leak(Box::new(vfs));
        // SAFETY: `vfs` is leaked, so it lives as long as SQLite may use it.
        let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
        assert_eq!(rc, ffi::SQLITE_OK, "registering the {VFS_NAME} VFS");
    });
}

/// Seed SQLite's built-in PRNG and restart its stream. SQLite seeds it once
/// per process from the default VFS (/dev/urandom), so byte-identical files
/// across two runs need this at the start of each run. The PRNG is
/// process-global: one run at a time per process.
pub fn seed_prng(seed: u32) {
    // Zero would mean "back to the default VFS's randomness".
    let seed = if seed == 0 { 0x5eed } else { seed };
    // SAFETY: PRNG_SEED takes an int and a (null) connection.
    unsafe {
        ffi::sqlite3_test_control(ffi::SQLITE_TESTCTRL_PRNG_SEED, seed as c_int, std::ptr::null_mut::<ffi::sqlite3>());
    }
}

type XOpen = unsafe extern "C" fn(
    *mut ffi::sqlite3_vfs,
    ffi::sqlite3_filename,
    *mut ffi::sqlite3_file,
    c_int,
    *mut c_int,
) -> c_int;
type XDeviceCharacteristics = unsafe extern "C" fn(*mut ffi::sqlite3_file) -> c_int;

static UNIX_OPEN: OnceLock<XOpen> = OnceLock::new();
static UNIX_DEVICE_CHARACTERISTICS: OnceLock<XDeviceCharacteristics> = OnceLock::new();
/// Each unix method table seen, and its copy without powersafe overwrite
/// (leaked: SQLite may use them as long as the process lives).
static PATCHED: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// The unix VFS's open, with the file's methods swapped for a copy whose
/// device characteristics do not claim powersafe overwrite.
unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let open = UNIX_OPEN.get().expect("registered");
    let rc = open(vfs, name, file, flags, out_flags);
    if rc == ffi::SQLITE_OK && !(*file).pMethods.is_null() {
        (*file).pMethods = without_psow((*file).pMethods);
    }
    rc
}

/// The copy of `methods` whose xDeviceCharacteristics drops powersafe overwrite.
fn without_psow(methods: *const ffi::sqlite3_io_methods) -> *const ffi::sqlite3_io_methods {
    let mut patched = PATCHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, copy)) = patched.iter().find(|(orig, _)| *orig == methods as usize) {
        return *copy as *const ffi::sqlite3_io_methods;
    }
    // SAFETY: SQLite's unix method tables are static.
    let mut copy = unsafe { std::ptr::read(methods) };
    if let Some(original) = copy.xDeviceCharacteristics {
        let known = *UNIX_DEVICE_CHARACTERISTICS.get_or_init(|| original);
        assert!(known as usize == original as usize, "one unix xDeviceCharacteristics");
        copy.xDeviceCharacteristics = Some(x_device_characteristics);
    }
    let copy: &'static ffi::sqlite3_io_methods = Box::leak(Box::new(copy));
    patched.push((methods as usize, copy as *const _ as usize));
    copy
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let original = UNIX_DEVICE_CHARACTERISTICS.get().expect("patched tables have one");
    original(file) & !ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE
}

fn now_ms() -> i64 {
    with(|d| d.injector.now_ms()).unwrap_or(EPOCH_MS)
}

/// Seeded by the run, so that two runs of one seed see the same bytes.
unsafe extern "C" fn x_randomness(_vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let n = usize::try_from(n).unwrap_or(0);
    let buf = std::slice::from_raw_parts_mut(out.cast::<u8>(), n);
    let filled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        with(|d| d.injector.fill_random(&mut *buf)).is_some()
    }));
    if !matches!(filled, Ok(true)) {
        buf.fill(0);
    }
    n as c_int
}

/// Simulated: returns at once, claiming the full sleep.
unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    micros
}

unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    *out = (now_ms() + UNIX_EPOCH_JULIAN_MS) as f64 / MS_PER_DAY;
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_current_time_int64(_vfs: *mut ffi::sqlite3_vfs, out: *mut ffi::sqlite3_int64) -> c_int {
    *out = now_ms() + UNIX_EPOCH_JULIAN_MS;
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_constants_agree() {
        assert_eq!(VFS_NAME_C.to_str(), Ok(VFS_NAME));
    }
}
