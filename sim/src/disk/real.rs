//! The real file system under the model: raw system calls (never through the
//! interposed libc functions), path handling, and writing a crash image to
//! tmpfs.

use super::fs::{DirImage, Entry, Image};
use libc::{c_char, c_int, c_uint, c_void, iovec, size_t, ssize_t};
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Descriptors at or above this are never tracked (the table stays small).
pub(super) const MAX_TRACKED_FD: usize = 1 << 16;

pub(super) fn errno() -> c_int {
    // SAFETY: errno is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}

pub(super) fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

/// A syscall's result: the value, or the errno it failed with.
pub(super) type SysResult = Result<isize, c_int>;

fn check(r: libc::c_long) -> SysResult {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as isize)
    }
}

pub(super) unsafe fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> SysResult {
    check(libc::syscall(libc::SYS_openat, dirfd, path, flags, mode))
}

pub(super) unsafe fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> SysResult {
    check(libc::syscall(libc::SYS_fcntl, fd, cmd, arg))
}

pub(super) unsafe fn close(fd: c_int) -> SysResult {
    check(libc::syscall(libc::SYS_close, fd))
}

pub(super) unsafe fn pwrite(fd: c_int, buf: *const c_void, count: size_t, offset: i64) -> SysResult {
    check(libc::syscall(libc::SYS_pwrite64, fd, buf, count, offset))
}

pub(super) unsafe fn write(fd: c_int, buf: *const c_void, count: size_t) -> SysResult {
    check(libc::syscall(libc::SYS_write, fd, buf, count))
}

pub(super) unsafe fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> SysResult {
    check(libc::syscall(libc::SYS_writev, fd, iov, iovcnt))
}

pub(super) unsafe fn pwritev(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: i64) -> SysResult {
    // The kernel takes the offset as (low, high) halves, as glibc passes it.
    let low = offset as libc::c_long;
    let high = ((offset as u64) >> 32) as libc::c_long;
    check(libc::syscall(libc::SYS_pwritev, fd, iov, iovcnt, low, high))
}

pub(super) unsafe fn ftruncate(fd: c_int, len: i64) -> SysResult {
    check(libc::syscall(libc::SYS_ftruncate, fd, len))
}

pub(super) unsafe fn fsync(fd: c_int) -> SysResult {
    check(libc::syscall(libc::SYS_fsync, fd))
}

pub(super) unsafe fn fdatasync(fd: c_int) -> SysResult {
    check(libc::syscall(libc::SYS_fdatasync, fd))
}

pub(super) unsafe fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> SysResult {
    check(libc::syscall(libc::SYS_unlinkat, dirfd, path, flags))
}

pub(super) unsafe fn mkdirat(dirfd: c_int, path: *const c_char, mode: c_uint) -> SysResult {
    check(libc::syscall(libc::SYS_mkdirat, dirfd, path, mode))
}

pub(super) unsafe fn renameat2(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
    flags: c_uint,
) -> SysResult {
    check(libc::syscall(libc::SYS_renameat2, olddirfd, old, newdirfd, new, flags))
}

/// The descriptor's current position (for `write` and `writev`).
pub(super) fn position(fd: c_int) -> Option<i64> {
    // SAFETY: lseek with SEEK_CUR only reads the position.
    let at = unsafe { libc::syscall(libc::SYS_lseek, fd, 0 as libc::off_t, libc::SEEK_CUR) };
    (at >= 0).then_some(at)
}

/// The file's length now.
pub(super) fn file_len(fd: c_int) -> Option<u64> {
    // SAFETY: fstat into a zeroed stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) == 0).then_some(st.st_size as u64)
    }
}

/// Whether `fd` was opened `O_DSYNC` or `O_SYNC`.
pub(super) fn is_dsync(fd: c_int) -> bool {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) } as c_int;
    flags >= 0 && flags & (libc::O_DSYNC | libc::O_SYNC) != 0
}

/// Whether `fd` was opened `O_APPEND`.
pub(super) fn is_append(fd: c_int) -> bool {
    // SAFETY: as above.
    let flags = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) } as c_int;
    flags >= 0 && flags & libc::O_APPEND != 0
}

/// The path `fd` refers to, from /proc/self/fd (`None` if deleted or not a path).
pub(super) fn fd_path(fd: c_int) -> Option<PathBuf> {
    let link = CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` has `buf.len()` writable bytes.
    let n = unsafe { libc::readlink(link.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 || n as usize >= buf.len() {
        return None;
    }
    buf.truncate(n as usize);
    if buf.ends_with(b" (deleted)") || buf.first() != Some(&b'/') {
        return None;
    }
    Some(PathBuf::from(OsStr::from_bytes(&buf)))
}

/// The current directory, by a raw syscall.
fn cwd() -> Option<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` has `buf.len()` writable bytes.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if n <= 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    buf.truncate(end);
    Some(buf)
}

/// `path` made absolute (from the current directory) and normalized
/// lexically: no `.`, no `..`, no repeated or trailing slashes.
pub(super) fn absolute(path: &[u8]) -> Option<Vec<u8>> {
    let joined;
    let path = if path.first() == Some(&b'/') {
        path
    } else {
        let mut base = cwd()?;
        base.push(b'/');
        base.extend_from_slice(path);
        joined = base;
        &joined
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for part in parts {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

/// The absolute path of `path` relative to the directory open on `dirfd`.
pub(super) fn resolve_at(dirfd: c_int, path: &[u8]) -> Option<Vec<u8>> {
    if path.first() == Some(&b'/') || dirfd == libc::AT_FDCWD {
        return absolute(path);
    }
    let mut base = fd_path(dirfd)?.into_os_string().into_vec();
    base.push(b'/');
    base.extend_from_slice(path);
    absolute(&base)
}

/// The whole real file, or `None` if it does not exist.
pub(super) fn read_whole(path: &Path) -> Option<Vec<u8>> {
    let saved = errno();
    let out = std::panic::catch_unwind(|| {
        let c = CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: a valid NUL-terminated path; our own descriptor, closed below.
        unsafe {
            let fd = openat(libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0).ok()? as c_int;
            let bytes = file_len(fd).and_then(|len| pread_all(fd, len as usize));
            let _ = close(fd);
            bytes
        }
    })
    .ok()
    .flatten();
    set_errno(saved);
    out
}

unsafe fn pread_all(fd: c_int, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = libc::syscall(libc::SYS_pread64, fd, buf.as_mut_ptr().add(done), len - done, done as i64);
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    buf.truncate(done);
    Some(buf)
}

/// Remove everything inside `dir` (which stays). Runs with the disk borrowed,
/// so the interposers pass these calls through.
pub(super) fn clear_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let removed = match path.is_dir() && !path.is_symlink() {
            true => std::fs::remove_dir_all(&path),
            false => std::fs::remove_file(&path),
        };
        removed.unwrap_or_else(|e| panic!("disk: removing {}: {e}", path.display()));
    }
}

/// Write `image` into the (empty) directory `root`.
pub(super) fn write_image(root: &Path, image: &Image) {
    write_dir(root, &image.root);
}

fn write_dir(dir: &Path, image: &DirImage) {
    for (name, entry) in &image.entries {
        let path = dir.join(name);
        match entry {
            Entry::File(bytes) => std::fs::write(&path, bytes.to_vec()),
            Entry::Dir(sub) => std::fs::create_dir(&path).map(|()| write_dir(&path, sub)),
        }
        .unwrap_or_else(|e| panic!("disk: writing {}: {e}", path.display()));
    }
}

/// The bytes `iov[..iovcnt]` describes, up to `n`.
pub(super) unsafe fn gather(iov: *const iovec, iovcnt: c_int, n: usize) -> Vec<u8> {
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

/// The length `iov[..iovcnt]` describes.
pub(super) unsafe fn iov_len(iov: *const iovec, iovcnt: c_int) -> usize {
    (0..iovcnt.max(0) as usize).map(|i| (*iov.add(i)).iov_len).sum()
}

/// A C string's bytes (empty for null).
pub(super) unsafe fn c_bytes<'a>(path: *const c_char) -> &'a [u8] {
    if path.is_null() {
        return &[];
    }
    std::ffi::CStr::from_ptr(path).to_bytes()
}

/// A failed write's length type for interposers returning `ssize_t`.
pub(super) fn to_ssize(r: SysResult) -> ssize_t {
    match r {
        Ok(n) => n as ssize_t,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}
