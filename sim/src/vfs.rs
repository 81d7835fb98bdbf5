//! SQLite on a simulated disk: an in-memory VFS with a durable and a live image per file.
//! (Interface stub; implementation pending.)

use crate::fault::CrashSpec;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Name under which the VFS is registered with SQLite.
pub const VFS_NAME: &str = "swingsim";

/// The files of this thread's simulated disk as they survive a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VfsImage {
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Register the VFS with SQLite (idempotent, thread-safe).
pub fn register() {
    todo!()
}

/// Forget every file of this thread's disk (a new seed starts).
pub fn reset() {
    todo!()
}

/// What survives a crash now, per `spec`.
pub fn capture(_spec: CrashSpec, _rng: &mut ChaCha8Rng) -> VfsImage {
    todo!()
}

/// Replace this thread's disk by `image` (after a crash): durable = live = image.
pub fn restore(_image: &VfsImage) {
    todo!()
}
