//! What each file system call does on a [`Disk`]: ask the injector (crash
//! point, I/O fault), make the real call, then update the model. A call on a
//! path or descriptor outside the store's directory is only the real call.
//!
//! Once the process is dead ([`super::Injector::is_stopped`]: crashed, or
//! stopped after an I/O fault) every call that would change the disk fails
//! with EIO and changes nothing: the run is over, its crash image is taken.

use super::real::{self, SysResult};
use super::{database_of, sync_kind, Disk, FdSlot, OpenFile};
use crate::fault::{FaultKind, OpClass, PointKind};
use libc::{c_char, c_int, c_uint, c_void, iovec, size_t};

/// Where a write lands.
#[derive(Clone, Copy)]
pub(super) enum At {
    Offset(i64),
    /// At the descriptor's position (or the end, with `O_APPEND`).
    Position,
}

impl Disk {
    /// `open`/`openat` of `path`: a file created in the store's directory is a
    /// pending directory entry; `O_TRUNC` truncates it.
    pub(super) unsafe fn open(&mut self, dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> SysResult {
        let rel = real::resolve_at(dirfd, real::c_bytes(path)).and_then(|p| self.relative(&p));
        let ours = rel.is_some();
        let Some(rel) = rel.filter(|rel| !super::is_scratch(rel)) else {
            let fd = real::openat(dirfd, path, flags, mode)?;
            let slot = if ours { FdSlot::Scratch } else { FdSlot::Untracked };
            self.set_slot(fd as c_int, slot);
            return Ok(fd);
        };
        let existing = self.fs.lookup(&rel);
        let creates = existing.is_none() && flags & libc::O_CREAT != 0;
        let truncates = existing.is_some() && flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY;
        if (creates || truncates) && !self.may_change(if creates { "create" } else { "truncate" }, &rel) {
            return Err(libc::EIO);
        }
        let fd = real::openat(dirfd, path, flags, mode)? as c_int;
        let ino = match existing {
            Some(ino) => ino,
            None if creates => match self.parent_of(&rel) {
                Some((dir, name)) => self.fs.create(dir, name),
                None => return self.untracked_open(fd, &rel),
            },
            None => return self.untracked_open(fd, &rel),
        };
        if truncates && !self.fs.is_dir(ino) {
            self.fs.truncate(ino, 0);
        }
        let dsync = flags & (libc::O_DSYNC | libc::O_SYNC) != 0;
        self.set_slot(
            fd,
            FdSlot::Tracked(OpenFile { ino, path: rel.into(), dsync, append: flags & libc::O_APPEND != 0 }),
        );
        Ok(fd as isize)
    }

    /// A file of the store's directory the model does not know (its
    /// directory was made behind the model's back): a simulator defect.
    fn untracked_open(&mut self, fd: c_int, rel: &str) -> SysResult {
        eprintln!("disk: {rel} was opened, but the model has no such file or directory");
        debug_assert!(false, "disk model out of step with the real directory at {rel}");
        self.set_slot(fd, FdSlot::Untracked);
        Ok(fd as isize)
    }

    /// `fcntl` on a descriptor of the store's directory: a POSIX record lock
    /// is answered here (see [`super::interpose::fcntl`]); `None`: make the call.
    pub(super) fn record_lock(&mut self, fd: c_int, cmd: c_int, arg: usize) -> Option<SysResult> {
        let lock_command = matches!(
            cmd,
            libc::F_SETLK | libc::F_SETLKW | libc::F_GETLK | libc::F_OFD_SETLK | libc::F_OFD_SETLKW | libc::F_OFD_GETLK
        );
        if !lock_command || !self.is_ours(fd) {
            return None;
        }
        if matches!(cmd, libc::F_GETLK | libc::F_OFD_GETLK) {
            // SAFETY: for these commands the argument is the caller's `struct flock`.
            unsafe { (*(arg as *mut libc::flock)).l_type = libc::F_UNLCK as libc::c_short };
        }
        Some(Ok(0))
    }

    pub(super) fn close(&mut self, fd: c_int) {
        if let FdSlot::Tracked(_) = self.slot_now(fd) {
            self.set_slot(fd, FdSlot::Unknown);
            self.collect_garbage();
        } else {
            self.set_slot(fd, FdSlot::Unknown);
        }
    }

    /// A write of `len` bytes through `fd`; `write` performs it, `data(n)`
    /// returns its first `n` bytes. Through an `O_DSYNC` descriptor it is a
    /// durability point; an I/O fault planned for it fails it before anything
    /// is written.
    pub(super) fn write(
        &mut self,
        fd: c_int,
        at: At,
        len: usize,
        write: impl FnOnce() -> SysResult,
        data: impl FnOnce(usize) -> Vec<u8>,
    ) -> SysResult {
        let Some(file) = self.open_file(fd) else { return write() };
        if file.dsync {
            let kind = sync_kind(&file.path);
            if self.injector.durability_point(kind, database_of(&file.path), &file.path, &self.fs).is_err() {
                return Err(libc::EIO);
            }
        } else if !self.may_change("write", &file.path) {
            return Err(libc::EIO);
        }
        let live_len = self.fs.live(file.ino).map_or(0, |b| b.len());
        // Through O_APPEND every write lands at the end, pwrite's too (Linux
        // pwrite(2), BUGS).
        let offset = match at {
            _ if file.append => live_len,
            At::Offset(offset) => offset.max(0) as usize,
            At::Position => real::position(fd).unwrap_or(0).max(0) as usize,
        };
        let extends = offset + len > live_len;
        match self.injector.io_operation(OpClass::Write, extends, database_of(&file.path), &file.path) {
            Some(FaultKind::Enospc) => return Err(libc::ENOSPC),
            Some(_) => return Err(libc::EIO),
            None => {}
        }
        let written = write()?;
        if written > 0 {
            let bytes = data(written as usize);
            match file.dsync {
                true => self.fs.write_durable(file.ino, offset, &bytes),
                false => self.fs.write(file.ino, offset, &bytes),
            }
        }
        Ok(written)
    }

    pub(super) fn ftruncate(&mut self, fd: c_int, len: i64) -> SysResult {
        let Some(file) = self.open_file(fd) else { return unsafe { real::ftruncate(fd, len) } };
        if !self.may_change("truncate", &file.path) {
            return Err(libc::EIO);
        }
        // SAFETY: a plain system call on the caller's descriptor.
        let r = unsafe { real::ftruncate(fd, len) }?;
        self.fs.truncate(file.ino, len.max(0) as usize);
        Ok(r)
    }

    /// `fsync` or `fdatasync` (`data_only`): a durability point. Of a file, an
    /// fsync-eio fault may fail it and lose the file's unsynced data; of a
    /// directory, it makes the directory's entries durable.
    pub(super) fn sync(&mut self, fd: c_int, data_only: bool) -> SysResult {
        let raw = || unsafe {
            match data_only {
                true => real::fdatasync(fd),
                false => real::fsync(fd),
            }
        };
        let Some(file) = self.open_file(fd) else { return raw() };
        if self.fs.is_dir(file.ino) {
            let name = if file.path.is_empty() { "." } else { &*file.path };
            if self.injector.durability_point(PointKind::DirSync, "directory", name, &self.fs).is_err() {
                return Err(libc::EIO);
            }
            let r = raw()?;
            self.fs.sync_dir(file.ino);
            self.collect_garbage();
            return Ok(r);
        }
        let database = database_of(&file.path);
        if self.injector.durability_point(sync_kind(&file.path), database, &file.path, &self.fs).is_err() {
            return Err(libc::EIO);
        }
        if self.injector.io_operation(OpClass::Sync, false, database, &file.path).is_some() {
            self.lose_unsynced(&file);
            if !self.injector.retries_failed_sync() {
                return Err(libc::EIO);
            }
        }
        let r = raw()?;
        self.fs.sync_file(file.ino);
        #[cfg(debug_assertions)]
        self.check_live(&file);
        Ok(r)
    }

    /// An fsync-eio fault: the file's unsynced sectors read as their durable
    /// content again, in the model and in the real file (written through a
    /// descriptor of its own: the caller's may append).
    fn lose_unsynced(&mut self, file: &OpenFile) {
        let writes = self.fs.lose_unsynced(file.ino);
        let path = std::ffi::CString::new(self.root.join(&*file.path).into_os_string().into_encoded_bytes());
        let path = path.expect("a path without NUL");
        // SAFETY: a valid path; our own descriptor, closed below.
        let fd = unsafe { real::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC, 0) };
        let fd = fd.unwrap_or_else(|e| panic!("disk: reopening {} to revert it: errno {e}", file.path)) as c_int;
        for (offset, bytes) in writes {
            // SAFETY: `bytes` is a live buffer of `bytes.len()` bytes.
            let n = unsafe { real::pwrite(fd, bytes.as_ptr().cast::<c_void>(), bytes.len() as size_t, offset as i64) };
            assert_eq!(n, Ok(bytes.len() as isize), "disk: reverting {} at {offset}", file.path);
        }
        // SAFETY: closing the descriptor opened above.
        let _ = unsafe { real::close(fd) };
    }

    /// `unlink`, `rmdir`, `unlinkat`: the entry goes; its removal is pending.
    pub(super) unsafe fn unlink(&mut self, dirfd: c_int, path: *const c_char, flags: c_int) -> SysResult {
        let rel = real::resolve_at(dirfd, real::c_bytes(path)).and_then(|p| self.tracked(&p));
        let Some(rel) = rel else { return real::unlinkat(dirfd, path, flags) };
        if !self.may_change("unlink", &rel) {
            return Err(libc::EIO);
        }
        let r = real::unlinkat(dirfd, path, flags)?;
        if let Some((dir, name)) = self.parent_of(&rel) {
            self.fs.unlink(dir, name);
        }
        Ok(r)
    }

    /// `mkdir`, `mkdirat`: a new directory entry, pending.
    pub(super) unsafe fn mkdir(&mut self, dirfd: c_int, path: *const c_char, mode: c_uint) -> SysResult {
        let rel = real::resolve_at(dirfd, real::c_bytes(path)).and_then(|p| self.tracked(&p));
        let Some(rel) = rel else { return real::mkdirat(dirfd, path, mode) };
        if !self.may_change("mkdir", &rel) {
            return Err(libc::EIO);
        }
        let r = real::mkdirat(dirfd, path, mode)?;
        if let Some((dir, name)) = self.parent_of(&rel) {
            self.fs.mkdir(dir, name);
        }
        Ok(r)
    }

    /// `rename`, `renameat`, `renameat2`: the model follows a rename within
    /// the store's directory; one into it is a created file with the real
    /// file's bytes, one out of it an unlink.
    pub(super) unsafe fn rename(
        &mut self,
        olddirfd: c_int,
        old: *const c_char,
        newdirfd: c_int,
        new: *const c_char,
        flags: c_uint,
    ) -> SysResult {
        let from = real::resolve_at(olddirfd, real::c_bytes(old)).and_then(|p| self.tracked(&p));
        let to = real::resolve_at(newdirfd, real::c_bytes(new)).and_then(|p| self.tracked(&p));
        if from.is_none() && to.is_none() {
            return real::renameat2(olddirfd, old, newdirfd, new, flags);
        }
        let named = to.as_deref().or(from.as_deref()).unwrap_or_default().to_string();
        if flags & libc::RENAME_EXCHANGE != 0 || !self.may_change("rename", &named) {
            return Err(libc::EIO);
        }
        let r = real::renameat2(olddirfd, old, newdirfd, new, flags)?;
        let from = from.and_then(|p| Some((self.parent_of(&p)?.0, p.rsplit('/').next()?.to_string())));
        let to = to.and_then(|p| Some((self.parent_of(&p)?.0, p.rsplit('/').next()?.to_string(), p)));
        match (from, to) {
            (Some((from_dir, from_name)), Some((to_dir, to_name, _))) => {
                self.fs.rename(from_dir, &from_name, to_dir, &to_name);
            }
            (Some((from_dir, from_name)), None) => {
                self.fs.unlink(from_dir, &from_name);
            }
            (None, Some((to_dir, to_name, path))) => self.import(to_dir, &to_name, &self.root.join(path)),
            (None, None) => {}
        }
        Ok(r)
    }
}

impl Disk {
    /// A file or directory moved into the store's directory from outside: the
    /// model learns it as if it were created here, nothing of it durable
    /// (what became of it outside is not known).
    fn import(&mut self, dir: super::fs::Ino, name: &str, real_path: &std::path::Path) {
        if real_path.is_dir() && !real_path.is_symlink() {
            let sub = self.fs.mkdir(dir, name);
            let Ok(entries) = std::fs::read_dir(real_path) else { return };
            let mut names: Vec<String> =
                entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            for child in names.iter().filter(|n| !super::is_scratch(n)) {
                self.import(sub, child, &real_path.join(child));
            }
        } else {
            let bytes = real::read_whole(real_path).unwrap_or_default();
            let ino = self.fs.create(dir, name);
            self.fs.write(ino, 0, &bytes);
        }
    }
}

/// `writev`/`pwritev` helpers: the total length and the bytes, for [`Disk::write`].
pub(super) unsafe fn iov_data(iov: *const iovec, iovcnt: c_int) -> (usize, impl FnOnce(usize) -> Vec<u8>) {
    let len = real::iov_len(iov, iovcnt);
    (len, move |n| real::gather(iov, iovcnt, n))
}
