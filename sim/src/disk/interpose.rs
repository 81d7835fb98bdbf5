//! The libc functions that change a file system, defined in the process so
//! that SQLite's unix VFS, LMDB and the store's `std::fs` calls reach the
//! simulated disk ([`super::Disk`]). `#[no_mangle]` definitions in the final
//! binary take precedence over libc's for every caller in it: the C code
//! compiled into it (SQLite, LMDB) and Rust's standard library.
//!
//! On a thread with no disk each function is the raw system call, and so is
//! any call on a path or descriptor outside the store's directory. A panic in
//! the tracked path becomes EIO (it must not unwind into C).
//!
//! Not interposed (the store, SQLite and LMDB do not use them on the store's
//! files; a write the model misses is caught in debug builds, which compare
//! the model with the real file at every sync): `fopen` and stdio, `dup*`,
//! `link`, `symlink`, `fallocate`, `copy_file_range`, `sendfile`, writes
//! through a shared writable map (LMDB's `MDB_WRITEMAP` is refused for that
//! reason), and `truncate` by path.
//!
//! `open` and `openat` are variadic in C; their mode argument is read as a
//! fixed third (fourth) argument, which is how the x86-64 and AArch64 Linux
//! calling conventions pass it.

use super::calls::{iov_data, At};
use super::real::{self, to_ssize, SysResult};
use super::{active, with};
use libc::{c_char, c_int, c_uint, c_void, iovec, off_t, size_t, ssize_t};

/// Make sure every interposer is linked into the binary (this references
/// them, which pulls their object in). [`super::install`] calls it.
pub fn link() {
    let symbols: [usize; 28] = [
        open as *const () as usize,
        open64 as *const () as usize,
        __open_2 as *const () as usize,
        __open64_2 as *const () as usize,
        openat as *const () as usize,
        openat64 as *const () as usize,
        __openat_2 as *const () as usize,
        __openat64_2 as *const () as usize,
        creat as *const () as usize,
        creat64 as *const () as usize,
        close as *const () as usize,
        write as *const () as usize,
        pwrite as *const () as usize,
        pwrite64 as *const () as usize,
        writev as *const () as usize,
        pwritev as *const () as usize,
        pwritev64 as *const () as usize,
        ftruncate as *const () as usize,
        ftruncate64 as *const () as usize,
        fsync as *const () as usize,
        fdatasync as *const () as usize,
        unlink as *const () as usize,
        unlinkat as *const () as usize,
        rmdir as *const () as usize,
        mkdir as *const () as usize,
        mkdirat as *const () as usize,
        rename as *const () as usize,
        renameat as *const () as usize,
    ];
    std::hint::black_box(symbols);
    std::hint::black_box([renameat2 as *const () as usize, fcntl as *const () as usize, fcntl64 as *const () as usize]);
}

/// Run a call on this thread's disk, or `raw` without one. Errno is the
/// call's on failure, and as it was before on success.
fn tracked(raw: impl FnOnce() -> SysResult, on_disk: impl FnOnce(&mut super::Disk) -> SysResult) -> SysResult {
    if !active() {
        return raw();
    }
    let saved = real::errno();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| with(on_disk)));
    let result = match result {
        Ok(Some(result)) => result,
        // From inside a call on the disk (its own real I/O): not tracked.
        Ok(None) => raw(),
        Err(_) => Err(libc::EIO),
    };
    if result.is_ok() {
        real::set_errno(saved);
    }
    result
}

fn to_int(r: SysResult) -> c_int {
    to_ssize(r) as c_int
}

unsafe fn open_at(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    to_int(tracked(|| real::openat(dirfd, path, flags, mode), |d| d.open(dirfd, path, flags, mode)))
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    open_at(libc::AT_FDCWD, path, flags, mode)
}

/// # Safety
/// As the libc function (what Rust's `std::fs` calls).
#[no_mangle]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    open_at(libc::AT_FDCWD, path, flags, mode)
}

/// # Safety
/// As the libc function (`open` under `_FORTIFY_SOURCE`, without a mode).
#[no_mangle]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    open_at(libc::AT_FDCWD, path, flags, 0)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    open_at(libc::AT_FDCWD, path, flags, 0)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    open_at(dirfd, path, flags, mode)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    open_at(dirfd, path, flags, mode)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    open_at(dirfd, path, flags, 0)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    open_at(dirfd, path, flags, 0)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn creat(path: *const c_char, mode: c_uint) -> c_int {
    open_at(libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: c_uint) -> c_int {
    creat(path, mode)
}

/// POSIX record locks (`F_SETLK`, `F_SETLKW`, `F_GETLK` and their `F_OFD_`
/// forms) on a file of the store's directory are answered without the
/// system call: a process never conflicts with its own locks, and a run is
/// one process, so the kernel would grant every lock and `F_GETLK` would
/// find none, which is what the answer is. SQLite takes and releases several
/// per statement. Every other command, and every other descriptor, is the
/// real call.
///
/// # Safety
/// As the libc function (variadic in C; its one optional argument is read as
/// a fixed third, which is how the x86-64 and AArch64 Linux conventions pass it).
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    let answered = if active() { with(|d| d.record_lock(fd, cmd, arg)).flatten() } else { None };
    to_int(answered.unwrap_or_else(|| real::fcntl(fd, cmd, arg)))
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    fcntl(fd, cmd, arg)
}

/// Forgets the descriptor, then closes it (also after a crash).
///
/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if active() {
        with(|d| d.close(fd));
    }
    to_int(real::close(fd))
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let raw = || real::write(fd, buf, count);
    let data = |n: usize| std::slice::from_raw_parts(buf.cast::<u8>(), n).to_vec();
    to_ssize(tracked(raw, |d| d.write(fd, At::Position, count, raw, data)))
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn pwrite(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t {
    let raw = || real::pwrite(fd, buf, count, offset);
    let data = |n: usize| std::slice::from_raw_parts(buf.cast::<u8>(), n).to_vec();
    to_ssize(tracked(raw, |d| d.write(fd, At::Offset(offset), count, raw, data)))
}

/// # Safety
/// As the libc function (what Rust's `FileExt::write_at` calls).
#[no_mangle]
pub unsafe extern "C" fn pwrite64(fd: c_int, buf: *const c_void, count: size_t, offset: libc::off64_t) -> ssize_t {
    pwrite(fd, buf, count, offset)
}

/// # Safety
/// As the libc function (LMDB: after `lseek`, for several page runs).
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    let raw = || real::writev(fd, iov, iovcnt);
    let (len, data) = iov_data(iov, iovcnt);
    to_ssize(tracked(raw, |d| d.write(fd, At::Position, len, raw, data)))
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn pwritev(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t {
    let raw = || real::pwritev(fd, iov, iovcnt, offset);
    let (len, data) = iov_data(iov, iovcnt);
    to_ssize(tracked(raw, |d| d.write(fd, At::Offset(offset), len, raw, data)))
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn pwritev64(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: libc::off64_t) -> ssize_t {
    pwritev(fd, iov, iovcnt, offset)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn ftruncate(fd: c_int, len: off_t) -> c_int {
    to_int(tracked(|| real::ftruncate(fd, len), |d| d.ftruncate(fd, len)))
}

/// # Safety
/// As the libc function (what Rust's `File::set_len` calls).
#[no_mangle]
pub unsafe extern "C" fn ftruncate64(fd: c_int, len: libc::off64_t) -> c_int {
    ftruncate(fd, len)
}

/// # Safety
/// As the libc function (SQLite's unix VFS syncs with `fsync`).
#[no_mangle]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    to_int(tracked(|| real::fsync(fd), |d| d.sync(fd, false)))
}

/// # Safety
/// As the libc function (LMDB's sync of its data file).
#[no_mangle]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    to_int(tracked(|| real::fdatasync(fd), |d| d.sync(fd, true)))
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    unlinkat(libc::AT_FDCWD, path, 0)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    unlinkat(libc::AT_FDCWD, path, libc::AT_REMOVEDIR)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    to_int(tracked(|| real::unlinkat(dirfd, path, flags), |d| d.unlink(dirfd, path, flags)))
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: c_uint) -> c_int {
    mkdirat(libc::AT_FDCWD, path, mode)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: c_uint) -> c_int {
    to_int(tracked(|| real::mkdirat(dirfd, path, mode), |d| d.mkdir(dirfd, path, mode)))
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    renameat2(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn renameat(olddirfd: c_int, old: *const c_char, newdirfd: c_int, new: *const c_char) -> c_int {
    renameat2(olddirfd, old, newdirfd, new, 0)
}

/// # Safety
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn renameat2(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    let raw = || real::renameat2(olddirfd, old, newdirfd, new, flags);
    to_int(tracked(raw, |d| d.rename(olddirfd, old, newdirfd, new, flags)))
}
