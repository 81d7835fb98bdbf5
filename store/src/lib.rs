//! The system under test: a SwingSet-style kernel over a swing-store made of two
//! databases with two commit points (LMDB kvStore, SQLite streamStore). It knows
//! nothing of any simulator: a simulator watches it through [`config::Observer`]
//! and through the SQLite VFS and the files it is given. See ARCHITECTURE.md.

pub mod chain;
pub mod config;
pub mod error;
pub mod kernel;
mod lmdb;
pub mod snap_store;
mod sqlite;
pub mod swing_store;
pub mod vat;

pub use chain::{Chain, ChainConfig, Reconciled};
pub use config::{
    Design, HostDb, JournalMode, LmdbFlags, Mutant, NoObserver, Observer, Point, Stop, StoreConfig, Synchronous,
};
pub use error::{Error, Result};
pub use kernel::{BlockReport, HostInput, Kernel, KernelConfig, VatStatus};
pub use swing_store::SwingStore;
