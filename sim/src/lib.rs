//! The deterministic simulator. See ARCHITECTURE.md.

pub mod fault;
pub mod lmdb_io;
pub mod vfs;
pub mod world;
