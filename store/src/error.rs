//! The crate's one error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store and the kernel. A path in an
/// error is relative to the store's directory (`swingstore.sqlite`,
/// `kv/data.mdb`; `.` for the directory itself): where the store lives is
/// the caller's to know, and an error's text is then the same wherever it
/// lives (a simulator compares traces across processes).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("LMDB error: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding error: {0}")]
    Encoding(#[from] serde_json::Error),
    /// An observer stopped the store at a durability point (a simulated crash).
    #[error("interrupted at durability point {0}")]
    Interrupted(String),
    #[error("store at {path} was created with design `{found}`, opened as `{expected}`")]
    DesignMismatch { path: PathBuf, found: String, expected: String },
    #[error("{path} is not a swing-store directory: {reason}")]
    Foreign { path: PathBuf, reason: String },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("replay diverged: vat {vat} at transcript position {position}: expected {expected}, found {found}")]
    ReplayDiverged { vat: String, position: u64, expected: String, found: String },
    #[error("transcript of vat {vat} is missing position {position} (span {start}..{end})")]
    TranscriptMissing { vat: String, position: u64, start: u64, end: u64 },
    /// A heap snapshot the kernel needs is missing or does not match its hash.
    #[error("snapshot {file} of vat {vat} is unusable: {reason}")]
    SnapshotUnusable { vat: String, file: String, reason: String },
    /// The host chain and the kernel disagree about the last block in a way
    /// no restart can mend (cosmic-swingset stops with "Unimplemented reset
    /// state from K to H").
    #[error(
        "the host is at height {host} but the kernel at {kernel}: unimplemented reset state from {kernel} to {host}"
    )]
    HeightMismatch { kernel: u64, host: u64 },
    /// A broken invariant of the kernel's or store's own state.
    #[error("invariant violated: {0}")]
    Invariant(String),
    /// A call the API does not allow now (e.g. commit with a crank open).
    #[error("misuse: {0}")]
    Misuse(String),
    /// An earlier storage error left the store half-applied; it must be reopened.
    #[error("store is poisoned by an earlier error ({0}); reopen it")]
    Poisoned(String),
}

impl Error {
    /// This error, with the path it names made relative to `dir`.
    pub(crate) fn relative_to(self, dir: &Path) -> Error {
        let relative = |path: PathBuf| match path.strip_prefix(dir) {
            Ok(inside) if inside.as_os_str().is_empty() => PathBuf::from("."),
            Ok(inside) => inside.to_path_buf(),
            Err(_) => path,
        };
        match self {
            Error::DesignMismatch { path, found, expected } => {
                Error::DesignMismatch { path: relative(path), found, expected }
            }
            Error::Foreign { path, reason } => Error::Foreign { path: relative(path), reason },
            Error::Corrupt { path, reason } => Error::Corrupt { path: relative(path), reason },
            other => other,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
