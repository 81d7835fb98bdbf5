//! Where a run's files live: a per-process scratch root on tmpfs, and one
//! directory per run in it, held for the run's length and removed after it.

use super::Case;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// A per-process scratch root on tmpfs when there is one.
pub fn scratch_root() -> (PathBuf, Option<String>) {
    let shm = Path::new("/dev/shm");
    let pid = std::process::id();
    if shm.is_dir() {
        return (shm.join(format!("swingsim-{pid}")), None);
    }
    let warning = "warning: /dev/shm not found; LMDB files go to the system temp dir (slower)".to_string();
    (std::env::temp_dir().join(format!("swingsim-{pid}")), Some(warning))
}

/// Serializes runs within a process: SQLite's PRNG is process-global, so two
/// runs on two threads would interleave its stream and lose determinism.
/// Parallelism comes from worker processes instead.
static RUN_LOCK: Mutex<()> = Mutex::new(());

/// The directory of one run, in a per-process scratch root. While it lives no
/// other run starts in this process; when it is dropped (also when a panic
/// unwinds) its files are removed, and the root too if it is empty.
pub(super) struct RunDir {
    base: PathBuf,
    root: PathBuf,
    _one_run_at_a_time: MutexGuard<'static, ()>,
}

impl RunDir {
    /// Wait until no other run is in progress, then claim `case`'s directory under `root`.
    pub(super) fn claim(case: &Case, root: &Path) -> RunDir {
        tune_allocator();
        let lock = RUN_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let base = root.join(format!("{}-{}", case.seed, case.design));
        RunDir { base, root: root.to_path_buf(), _one_run_at_a_time: lock }
    }

    /// Where the kernel's store lives. One directory for the reference and
    /// the faulty runs: the crash images the reference captures name their
    /// files by path, and the faulty run starts from one of them.
    pub(super) fn store(&self) -> PathBuf {
        self.base.join("run")
    }

    /// A directory of the run's own beside the store's (removed with it).
    pub(super) fn scratch(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// Every kernel open makes LMDB calloc its 2 MiB dirty-page list and free it at
/// close. glibc's adaptive mmap threshold then serves such blocks from the heap,
/// where calloc must zero all 2 MiB each time; a fixed threshold below that keeps
/// them mmapped (zero pages from the kernel, touched only as used).
/// Speed only: nothing here reaches a result.
fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    ONCE.call_once(|| {
        // SAFETY: mallopt only sets a tunable of the allocator.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1536 * 1024) };
    });
}
