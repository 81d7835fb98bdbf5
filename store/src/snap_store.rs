//! snapStore: vat heap snapshots as files in a directory of their own, each
//! named by the hash of its content, as the swing-store of 2022 kept them
//! (agoric-sdk packages/swing-store, `snapStore.js` before the move into
//! SQLite).
//!
//! A save writes the bytes under a temporary name, syncs the file, and
//! renames it to `<hash>.heap`; the rename is durable only once the directory
//! is synced (POSIX, the ALICE model), which the swing-store does at the next
//! block commit, before the commit that first refers to the snapshot
//! ([`crate::SwingStore::commit`]). A name already present is not written
//! again: the content behind a hash is the same, and a rename over a durable
//! file could lose it at a power loss (a rename is an unlink and a link until
//! the directory is synced).
//!
//! Nothing here decides which snapshots are in use: the kernel records that
//! in kvStore, and deletes a file only after the block that stopped using it
//! is durable. A load checks the bytes against their hash.

use crate::config::Mutant;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The snapshot directory inside the store's directory.
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";
/// The suffix of a complete snapshot file: `<hash>.heap`.
const SUFFIX: &str = ".heap";
/// The suffix of a snapshot being written: `<hash>.heap.tmp`.
const TEMP_SUFFIX: &str = ".heap.tmp";

/// Why a snapshot cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotProblem {
    Missing,
    /// The bytes do not hash to the name (a torn or truncated write, say).
    Corrupt(String),
}

/// The snapshot files of one store.
pub(crate) struct SnapStore {
    dir: PathBuf,
    /// Files renamed into place or deleted since the directory was last synced.
    unsynced: bool,
    mutant: Option<Mutant>,
}

/// The hash a snapshot is named by: the first 128 bits of its SHA-256, in hex.
pub fn snapshot_hash(bytes: &[u8]) -> String {
    crate::vat::hex(&Sha256::digest(bytes)[..16])
}

/// The file name of the snapshot `hash` in the snapshot directory.
pub fn file_name(hash: &str) -> String {
    format!("{hash}{SUFFIX}")
}

/// The file name of the snapshot `hash` (relative to the store's directory).
pub fn snapshot_file(hash: &str) -> String {
    format!("{SNAPSHOT_DIR}/{}", file_name(hash))
}

impl SnapStore {
    /// The snapshot directory of the store in `store_dir` (created if missing;
    /// the store syncs its directory after opening, which makes it durable).
    pub(crate) fn open(store_dir: &Path, mutant: Option<Mutant>) -> Result<SnapStore> {
        let dir = store_dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&dir)?;
        Ok(SnapStore { dir, unsynced: false, mutant })
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(file_name(hash))
    }

    /// Write `bytes` under a temporary name and sync them; the hash and the
    /// temporary path to rename with [`SnapStore::publish`]. `None`: a
    /// snapshot of this content exists already.
    pub(crate) fn write_temp(&self, bytes: &[u8]) -> Result<(String, Option<PathBuf>)> {
        let hash = snapshot_hash(bytes);
        if self.path(&hash).exists() {
            return Ok((hash, None));
        }
        let temp = self.dir.join(format!("{hash}{TEMP_SUFFIX}"));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        // The 2022 snapStore's truncated-snapshot bug: a rename that
        // reaches the disk before the data does leaves an empty file.
        if self.mutant != Some(Mutant::SnapshotNoFsync) {
            file.sync_all()?;
        }
        Ok((hash, Some(temp)))
    }

    /// Rename a synced temporary file to its snapshot name.
    pub(crate) fn publish(&mut self, hash: &str, temp: &Path) -> Result<()> {
        std::fs::rename(temp, self.path(hash))?;
        self.unsynced = true;
        Ok(())
    }

    /// Make the renames and deletions since the last call durable (a
    /// directory fsync).
    pub(crate) fn sync_dir(&mut self) -> Result<()> {
        if !self.unsynced || self.mutant == Some(Mutant::SnapshotNoDirSync) {
            return Ok(());
        }
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.unsynced = false;
        Ok(())
    }

    /// The bytes of snapshot `hash`, checked against the hash.
    pub(crate) fn load(&self, hash: &str) -> Result<Result<Vec<u8>, SnapshotProblem>> {
        let bytes = match std::fs::read(self.path(hash)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(SnapshotProblem::Missing)),
            Err(e) => return Err(e.into()),
        };
        let found = snapshot_hash(&bytes);
        if found != hash {
            let reason = format!("{} bytes hash to {found}", bytes.len());
            return Ok(Err(SnapshotProblem::Corrupt(reason)));
        }
        Ok(Ok(bytes))
    }

    /// Delete a file of the snapshot directory; gone already is fine.
    pub(crate) fn remove(&mut self, name: &str) -> Result<()> {
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => {
                self.unsynced = true;
                Ok(())
            }
        }
    }

    /// Every file in the snapshot directory, by name, sorted.
    pub(crate) fn files(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

/// The hash a snapshot file name stands for (`None`: not a complete snapshot).
pub(crate) fn hash_of(name: &str) -> Option<&str> {
    name.strip_suffix(SUFFIX).filter(|hash| !hash.is_empty() && !hash.contains('.'))
}

impl std::fmt::Display for SnapshotProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotProblem::Missing => write!(f, "missing"),
            SnapshotProblem::Corrupt(reason) => write!(f, "corrupt: {reason}"),
        }
    }
}

/// The error of a snapshot the kernel needs and cannot use.
pub(crate) fn problem_error(vat: &str, hash: &str, reason: String) -> Error {
    Error::SnapshotUnusable { vat: vat.into(), file: snapshot_file(hash), reason }
}
