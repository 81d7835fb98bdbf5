//! Coverage of rare states: the one list of the states that matter for this
//! store, each named and with why, counted in every run. A green run is
//! worth something only if it reached them; a workload generator that drifts
//! away from one is caught by `--require-coverage` (`cargo xtask sim`,
//! `soak`), which fails a run that never reached a listed state.
//!
//! The list is [`states`]: a crash at every kind of durability point
//! ([`PointKind::ALL`]; a kind the store has no point of yet says why in
//! `no_point_yet`), an injection of every fault kind ([`FaultKind::ALL`]),
//! then the conjunctions in `CONJUNCTIONS`; a state considered and left
//! off says why in `LEFT_OFF`. A new mechanism adds its
//! point kind (counted here at once, and a compile error in `no_point_yet`
//! until it is placed there) and its own conjunctions to `CONJUNCTIONS`,
//! from the structured record of a run: the crashes and I/O faults (with
//! whether they fell between point A and point B, and what the crash kept of
//! the disk), the host's events ([`crate::event::Event`]), and the reference
//! run (per block: its report, its state, the workers online).
//!
//! Each state is checked once per seed, from what the run recorded anyway:
//! counting costs nothing while the seed runs.

use crate::event::Event;
use crate::fault::{FaultKind, PointKind};
use crate::run::{Reference, SeedReport};
use crate::world::PointRecord;

/// One rare state on the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub name: String,
    /// Why it matters, in one line.
    pub reason: String,
}

/// What a state is checked against: one seed's report and its reference run.
pub(crate) struct Run<'a> {
    report: &'a SeedReport,
    reference: &'a Reference,
}

/// A conjunction of events that matters, and how a run shows it reached it.
struct Conjunction {
    name: &'static str,
    reason: &'static str,
    reached: fn(&Run) -> bool,
}

/// The conjunctions, in the order the summary lists them.
const CONJUNCTIONS: &[Conjunction] = &[
    Conjunction {
        name: "window-crash-after-upgrade",
        reason: "a crash between point A and point B of a block that upgraded a vat: SQLite holds the new \
                 incarnation's transcript, LMDB the old span (length-zero and ram-buffer fail here)",
        reached: |run| run.window_crashes().any(|c| !run.upgrades(c.at.height).0.is_empty()),
    },
    Conjunction {
        name: "window-crash-after-failed-upgrade",
        reason: "the same with a failed upgrade: its unwound crank must leave nothing in SQLite that the \
                 old span reads (erase fails here)",
        reached: |run| run.window_crashes().any(|c| run.upgrades(c.at.height).1),
    },
    Conjunction {
        name: "window-crash-upgraded-vat-evicted",
        reason: "the same while the upgraded vat's worker was evicted: it is rebuilt from the transcript \
                 alone, no live worker hides a wrong span",
        reached: |run| run.window_crashes().any(|c| run.upgraded_vat_evicted(c.at.height)),
    },
    Conjunction {
        name: "lmdb-fault-after-point-a",
        reason: "an I/O fault of LMDB's commit after SQLite committed: the window of point A to point B, \
                 reached by an error instead of a crash",
        reached: |run| run.report.faults.iter().any(|f| f.window && f.database == "lmdb"),
    },
    Conjunction {
        name: "torn-sqlite-journal-or-wal",
        reason: "a torn power loss garbled a sector of SQLite's WAL or rollback journal: SQLite must reject \
                 the torn frame or journal, not replay it",
        reached: |run| {
            let journal = |file: &String| file.ends_with("-wal") || file.ends_with("-journal");
            run.report.crashes.iter().any(|c| c.disk.torn.iter().any(journal))
        },
    },
    Conjunction {
        name: "lost-directory-operation",
        reason: "the crash image lost a created or renamed file, or brought an unlinked one back: the store \
                 must not rely on a directory entry that was never synced",
        reached: |run| run.report.crashes.iter().any(|c| c.disk.lost_a_directory_operation()),
    },
    Conjunction {
        name: "crash-while-store-created",
        reason: "a crash before the store's first open finished: the next open finds a partial store, or \
                 none, and must create it again",
        reached: |run| run.report.crashes.iter().any(|c| c.at.height == 0),
    },
    Conjunction {
        name: "hangover-at-restart",
        reason: "a restart found the kernel one block ahead of the host (a crash between point B and point C): \
                 the host must apply the block's recorded chain sends, not run the block again",
        reached: |run| run.restarts().any(|r| r.hangover.is_some()),
    },
    Conjunction {
        name: "hangover-with-chain-sends",
        reason: "the same with at least one chain send to apply: a host that skips the hangover differs only here",
        reached: |run| run.restarts().any(|r| r.hangover.is_some_and(|sends| sends > 0)),
    },
    Conjunction {
        name: "orphan-snapshot-removed",
        reason: "a crash left a heap snapshot file no durable record names (saved in a block that never \
                 committed, or a deletion cut short): the open must remove it, and no snapshot in use",
        reached: |run| run.restarts().any(|r| r.orphans_removed > 0),
    },
    Conjunction {
        name: "rebuilt-from-snapshot-after-crash",
        reason: "a vat rebuilt after a crash from its heap snapshot and the span after it, and compared with a \
                 replay of the whole span",
        reached: |run| run.restarts().any(|r| r.from_snapshot > 0),
    },
    Conjunction {
        name: "upgraded-worker-rebuilt",
        reason: "a worker evicted by the cap after its vat's upgrade and rebuilt by replay for a delivery: \
                 replay must start at the new incarnation's span (replay-from-zero fails here)",
        reached: |run| run.reference.snapshots.last().is_some_and(|s| s.rebuilds_after_upgrade > 0),
    },
    Conjunction {
        name: "two-crashes-in-one-block",
        reason: "a second crash while the kernel recovers from the first or runs its block again: recovery \
                 must survive being cut short",
        reached: |run| {
            let crashes = &run.report.crashes;
            crashes.iter().enumerate().any(|(i, c)| crashes[..i].iter().any(|d| d.at.height == c.at.height))
        },
    },
    Conjunction {
        name: "crash-during-recovery",
        reason: "a crash or I/O fault before a restarted kernel had recovered: recovery's own syncs and \
                 checkpoints must be restartable",
        reached: |run| run.died_while_recovering(),
    },
    Conjunction {
        name: "recovered-block-in-flight",
        reason: "the block in flight committed before the crash: the host must skip it, not run it again \
                 (host-repeats-committed-block fails here)",
        reached: |run| run.recoveries().any(|(acked, height, _)| height == acked + 1),
    },
    Conjunction {
        name: "sqlite-ahead-at-recovery",
        reason: "a recovery found SQLite holding a block kvStore does not (the echo from the future): a \
                 design must read only the span kvStore names",
        reached: |run| run.recoveries().any(|(_, height, sqlite)| sqlite.is_some_and(|s| s > height)),
    },
];

/// States considered for the list and left off, each with why (one line).
///
/// `io-fault-absorbed` (`Skips::faults_absorbed`: a database absorbs an I/O
/// fault, the kernel acknowledges the block, the host checks it survives a
/// power cut): the one error SQLite ignores is a directory's fsync
/// (os_unix.c, unixSync drops full_fsync's result on the directory), the
/// fault model faults no directory operation, and every other failed write
/// or sync fails the commit in SQLite and LMDB alike. Measured: 0 absorbed
/// in 10,000 default seeds, and in 300 to 600 seeds of each of
/// --sqlite-journal persist, truncate, delete, memory, --sqlite-sync normal,
/// --lmdb-flags nometasync.
const LEFT_OFF: &[(&str, &str)] = &[(
    "io-fault-absorbed",
    "no injected fault can be absorbed: SQLite ignores only a directory fsync's error, and directories are never faulted",
)];

/// Why the store has no durability point of `kind` yet (`None`: it has some,
/// and a crash there is on the list). Every kind must be placed here.
fn no_point_yet(kind: PointKind) -> Option<&'static str> {
    match kind {
        PointKind::SqliteSync
        | PointKind::LmdbSync
        | PointKind::DirSync
        | PointKind::FileSync
        | PointKind::PointA
        | PointKind::PointB
        | PointKind::Crank
        | PointKind::ChainSync
        | PointKind::PointC
        | PointKind::SnapshotRename
        | PointKind::SnapshotDelete => None,
    }
}

/// The name of the state "a crash at a point of `kind`".
fn crash_state(kind: PointKind) -> String {
    format!("crash-at-{kind}")
}

/// The name of the state "a fault of `kind` injected".
fn fault_state(kind: FaultKind) -> String {
    format!("fault-{kind}")
}

/// Every state on the list, in order.
pub fn states() -> Vec<State> {
    let crashes = PointKind::ALL.into_iter().filter(|k| no_point_yet(*k).is_none()).map(|kind| State {
        name: crash_state(kind),
        reason: format!("a crash at a {kind} point: every kind of durability point must be crashed at"),
    });
    let faults = FaultKind::ALL.into_iter().map(|kind| State {
        name: fault_state(kind),
        reason: format!("a {kind} fault injected: every kind of fault must be met"),
    });
    let conjunctions = CONJUNCTIONS.iter().map(|c| State { name: c.name.into(), reason: c.reason.into() });
    crashes.chain(faults).chain(conjunctions).collect()
}

/// The states left off the list, each with why: kinds of point the store
/// has none of yet, and the states of `LEFT_OFF`.
pub fn left_out() -> Vec<(String, &'static str)> {
    let kinds = PointKind::ALL.into_iter().filter_map(|kind| Some((crash_state(kind), no_point_yet(kind)?)));
    kinds.chain(LEFT_OFF.iter().map(|(name, why)| (name.to_string(), *why))).collect()
}

/// The states `report` reached (its reference run at hand), in list order.
pub(crate) fn reached(report: &SeedReport, reference: &Reference) -> Vec<String> {
    let run = Run { report, reference };
    let crashed = |kind: &PointKind| report.crashes.iter().any(|c| c.kind == *kind);
    let crashes = PointKind::ALL.into_iter().filter(|k| no_point_yet(*k).is_none() && crashed(k));
    let faulted = |kind: &FaultKind| match kind {
        FaultKind::Torn => report.crashes.iter().any(|c| c.torn),
        io => report.faults.iter().any(|f| f.named.fault == *io),
    };
    let mut names: Vec<String> = crashes.map(crash_state).collect();
    names.extend(FaultKind::ALL.into_iter().filter(faulted).map(fault_state));
    names.extend(CONJUNCTIONS.iter().filter(|c| (c.reached)(&run)).map(|c| c.name.to_string()));
    names
}

impl Run<'_> {
    /// The crashes between point A and point B of their block.
    fn window_crashes(&self) -> impl Iterator<Item = &PointRecord> {
        self.report.crashes.iter().filter(|c| c.window)
    }

    /// The vats block `height` upgraded (in the reference run), and whether
    /// an upgrade failed in it.
    fn upgrades(&self, height: u64) -> (Vec<&str>, bool) {
        let Some(report) = height.checked_sub(1).and_then(|i| self.reference.reports.get(i as usize)) else {
            return (Vec::new(), false);
        };
        let upgrades = report.outcomes.iter().filter(|o| o.action == "upgrade");
        let failed = upgrades.clone().any(|o| o.result.is_err());
        (upgrades.filter(|o| o.result.is_ok()).map(|o| o.vat.as_str()).collect(), failed)
    }

    /// Whether a vat that block `height` upgraded was no longer online when
    /// the block committed (the window's crash comes after the last crank).
    fn upgraded_vat_evicted(&self, height: u64) -> bool {
        let Some(state) = self.reference.snapshots.get(height as usize) else { return false };
        self.upgrades(height).0.iter().any(|vat| !state.online.iter().any(|v| v == vat))
    }

    /// Each recovery: (blocks the host had seen committed, kvStore's height, SQLite's).
    fn recoveries(&self) -> impl Iterator<Item = (u64, u64, Option<u64>)> + '_ {
        self.report.events.iter().filter_map(|event| match event {
            Event::Recovered { acked, height, sqlite_height, .. } => Some((*acked, *height, *sqlite_height)),
            _ => None,
        })
    }

    /// What each restart's open did.
    fn restarts(&self) -> impl Iterator<Item = crate::event::Restart> + '_ {
        self.report.events.iter().filter_map(|event| match event {
            Event::Recovered { restart, .. } => Some(*restart),
            _ => None,
        })
    }

    /// Whether a process died again after one had died and before any recovered.
    fn died_while_recovering(&self) -> bool {
        let mut recovering = false;
        for event in &self.report.events {
            match event {
                Event::Recovered { .. } => recovering = false,
                event if event.ends_process() => {
                    if recovering {
                        return true;
                    }
                    recovering = true;
                }
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_state_says_why() {
        let states = states();
        for (i, state) in states.iter().enumerate() {
            assert!(!state.reason.is_empty(), "{}", state.name);
            assert!(states[..i].iter().all(|s| s.name != state.name), "{} twice", state.name);
        }
        for (name, why) in left_out() {
            assert!(!states.iter().any(|s| s.name == name), "{name} is both listed and left out");
            assert!(!why.is_empty());
        }
        let all = PointKind::ALL.len() + FaultKind::ALL.len() + CONJUNCTIONS.len() + LEFT_OFF.len();
        assert_eq!(states.len() + left_out().len(), all);
    }
}
