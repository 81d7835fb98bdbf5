//! One seed's run. Start reading here.
//!
//! A seed is a [`Case`]: its design, the options it derives (workload,
//! kernel limits, fault mode) and its crash and I/O fault plans. It runs in
//! phases (`seed.rs`):
//!
//! 1. the *reference run* (`reference.rs`): the workload with no fault; it
//!    records every committed height, the oracle's heaps, and the disk state
//!    of every crash point (copy-on-write);
//! 2. the *plans* (`case.rs`): the seed draws where the faulty run crashes and
//!    which I/O operations fail, from what the reference run reached;
//! 3. the *faulty run*: the host (`host.rs`) drives the kernel node
//!    (`kernel.rs`) through the workload, from the reference's capture of the
//!    first planned crash (or from nothing), restarts it after every crash and
//!    I/O fault, and requires every block to complete once nothing more is
//!    planned (liveness);
//! 4. every check of a recovery and of the end is in [`crate::check`].
//!
//! `exhaustive.rs` recovers every crash point of a seed from the same one pass
//! instead of a planned few. The rest is plumbing: the scratch directory of
//! a run (`scratch.rs`) and the bench's phase timers (`phases.rs`).

mod case;
mod exhaustive;
mod host;
mod kernel;
mod phases;
mod reference;
mod scratch;
mod seed;

pub use case::{Case, CrashPlan, FaultPlan, SeedConfig, SeedReport};
pub use exhaustive::{run_exhaustive, Depth};
pub use phases::{real_seconds, take_phases, time_phases, Phases};
pub(crate) use reference::Reference;
pub use scratch::scratch_root;
pub use seed::{run_case, run_case_pictured};

#[cfg(test)]
mod tests;
