//! What the host of a faulty run saw, as structured events in order: what
//! coverage counts and a timeline draws. Each is stamped with `at`, the crash
//! points the run had hit by then (the ordinal of the next point), so that it
//! sits among the durability points on one axis. Recording them costs a few
//! small values per block.

use crate::world::{FaultRecord, PointRecord};

/// One thing the faulty run's host saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The host saw block `height` committed (its `run_block` returned).
    Acked { at: u64, height: u64 },
    /// The process died at a crash point (the record's ordinal).
    Crash(PointRecord),
    /// An I/O fault fired (the record's ordinal says when), with what came of it.
    Fault { record: FaultRecord, effect: FaultEffect },
    /// The kernel acknowledged block `height` although an I/O fault hit it:
    /// the power fails now, to check the block survives.
    PowerCut { at: u64, height: u64 },
    /// Liveness phase: block `height` failed, the host restarts the kernel.
    Retry { at: u64, height: u64 },
    /// A new process recovered and its state equals the reference's: kvStore
    /// at `height`, SQLite at `sqlite_height`, the host having seen `acked`
    /// committed; `upgraded` vats (incarnation above 0) rebuilt by replay.
    Recovered { at: u64, acked: u64, height: u64, sqlite_height: Option<u64>, upgraded: usize, restart: Restart },
    /// Nothing more planned: blocks `from..` must complete.
    Liveness { at: u64, from: u64 },
}

/// What the node's open did on a restart, besides recovering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restart {
    /// The kernel had committed a block the host had not (K = H + 1): the
    /// host applied this many chain sends the kernel recorded (the hangover).
    pub hangover: Option<usize>,
    /// Snapshot files no vat used that the kernel's open removed.
    pub orphans_removed: usize,
    /// Vats rebuilt from a heap snapshot, each checked against a replay of
    /// its whole span.
    pub from_snapshot: usize,
}

impl Event {
    /// The crash points hit before it: where it sits on a timeline.
    pub fn at(&self) -> u64 {
        match self {
            Event::Crash(point) => point.ordinal,
            Event::Fault { record, .. } => record.ordinal,
            Event::Acked { at, .. }
            | Event::PowerCut { at, .. }
            | Event::Retry { at, .. }
            | Event::Recovered { at, .. }
            | Event::Liveness { at, .. } => *at,
        }
    }

    /// Whether the process dies here (a crash, a fault that stopped it, a
    /// power cut, a restart to retry a block).
    pub fn ends_process(&self) -> bool {
        match self {
            Event::Fault { effect, .. } => *effect == FaultEffect::Stopped,
            other => matches!(other, Event::Crash(_) | Event::PowerCut { .. } | Event::Retry { .. }),
        }
    }
}

/// What came of an I/O fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultEffect {
    /// The kernel stopped the block; the host restarts it on the disk as it is.
    Stopped,
    /// The kernel acknowledged its block anyway: a power cut follows.
    Absorbed,
    /// A crash came before the kernel had stopped.
    CutShort,
}

impl FaultEffect {
    pub fn name(self) -> &'static str {
        match self {
            FaultEffect::Stopped => "the kernel stopped",
            FaultEffect::Absorbed => "absorbed: the block was acknowledged",
            FaultEffect::CutShort => "a crash came before the kernel stopped",
        }
    }
}
