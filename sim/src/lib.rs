//! The deterministic simulator. See ARCHITECTURE.md.

pub mod check;
pub mod cow;
pub mod disk;
pub mod fault;
pub mod node;
pub mod options;
pub mod oracle;
pub mod probe;
pub mod promise;
pub mod run;
pub mod scenario;
pub mod shrink;
pub mod summary;
pub mod trace;
pub mod world;
