//! LMDB durability points by libc interposition. (Interface stub; implementation pending.)

use crate::fault::CrashSpec;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The tracked files of this thread as they survive a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LmdbImage {
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

/// Track every LMDB data file under `dir` on this thread.
pub fn track_dir(_dir: &Path) {
    todo!()
}

/// Stop tracking anything on this thread.
pub fn reset() {
    todo!()
}

/// What survives a crash now, per `spec`.
pub fn capture(_spec: CrashSpec, _rng: &mut ChaCha8Rng) -> LmdbImage {
    todo!()
}

/// Write `image` to the real files (after a crash, with LMDB closed).
pub fn restore(_image: &LmdbImage) {
    todo!()
}
