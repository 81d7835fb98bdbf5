//! The deterministic simulator. See ARCHITECTURE.md.

pub mod check;
pub mod coverage;
pub mod cow;
pub mod decode;
pub mod disk;
pub mod event;
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
pub mod timeline;
pub mod trace;
pub mod world;
