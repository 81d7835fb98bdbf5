//! The reference run: the seed's workload with no fault. It records what
//! every committed height looks like (the block reports, the state after
//! each block, the oracle's heaps) and, as the world captures them, every
//! crash point and the disk state it would leave, and the I/O operations
//! per block: what the plans draw from and the faulty run starts from.

use super::kernel::{in_world, setup, KernelHandle};
use super::phases::{add_phase, phase_clock};
use super::Case;
use crate::check::{self, Failure, FailureKind};
use crate::fault::OpClass;
use crate::node::{item_digest, Snapshot};
use crate::oracle::Oracle;
use crate::trace::{describe_block, Trace};
use crate::world::{self, Captured, Site, World};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use store::kernel::BlockReport;

/// The reference run's record of every committed height.
pub(crate) struct Reference {
    pub(crate) reports: Vec<BlockReport>,
    /// Index h: the state after block h (index 0: before any block).
    pub(crate) snapshots: Vec<Snapshot>,
    /// Index h: the oracle's heap digests after block h.
    pub(crate) heaps: Vec<BTreeMap<String, String>>,
    pub(crate) final_snapshot: Snapshot,
    /// Every crash point of the run, by ordinal.
    pub(crate) sites: Vec<Site>,
    /// What each crash point would leave, by ordinal.
    pub(crate) captured: Vec<Captured>,
    /// I/O operations per (class, block).
    pub(crate) io_counts: BTreeMap<(OpClass, u64), u64>,
}

impl Reference {
    /// The text of the transcript item with `digest`, among the deliveries
    /// the reference committed (a failing check decodes with it).
    pub(crate) fn item_text(&self, digest: &str) -> Option<String> {
        let entries = self.reports.iter().flat_map(|r| &r.committed).map(|c| c.entry.encode());
        entries.into_iter().find(|text| item_digest(text) == digest)
    }

    /// The oracle as it was after block `height` (run again from the
    /// committed blocks: a failing check reads its heaps).
    pub(crate) fn oracle_at(&self, height: u64) -> Oracle {
        let mut oracle = Oracle::default();
        for report in self.reports.iter().take(height as usize) {
            // The reference run applied these same blocks without an error.
            let _ = oracle.apply(report);
        }
        oracle
    }
}

/// The reference run of `case` in `dir`; its blocks go to `trace`. A run
/// that fails hands back the disk at every point it hit with its failure.
pub(super) fn reference_run(case: &Case, dir: &Path, trace: &mut Trace) -> Result<Reference, (Failure, Vec<Captured>)> {
    let kernel_setup = setup(case, dir);
    let workload = case.options.workload.clone();
    let body = async move {
        let kernel = KernelHandle::start(kernel_setup);
        let mut oracle = Oracle::default();
        let fail = |height: u64, message: String| Failure::new(FailureKind::ReferenceFailed, height, message);
        let mut reference = Reference {
            reports: Vec::new(),
            snapshots: vec![kernel.snapshot(false).await.map_err(|e| fail(0, e.to_string()))?],
            heaps: vec![BTreeMap::new()],
            final_snapshot: Snapshot::default(),
            sites: Vec::new(),
            captured: Vec::new(),
            io_counts: BTreeMap::new(),
        };
        for (index, inputs) in workload.into_iter().enumerate() {
            let height = index as u64 + 1;
            world::set_height(height);
            let report = kernel.run_block(height, inputs).await.map_err(|e| fail(height, e.to_string()))?;
            check::oracle_agrees(&mut oracle, &report)?;
            let snapshot = kernel.snapshot(false).await.map_err(|e| fail(height, e.to_string()))?;
            reference.reports.push(report);
            check::host_follows(&reference.reports, &snapshot, height)?;
            reference.snapshots.push(snapshot);
            reference.heaps.push(oracle.heap_digests());
            madsim::time::sleep(Duration::from_secs(5)).await;
        }
        let height = reference.reports.len() as u64;
        let last = kernel.snapshot(true).await.map_err(|e| fail(height, e.to_string()))?;
        check::oracle_heaps(&oracle, &last, height)?;
        check::snapshots_sound(&last, height)?;
        reference.final_snapshot = last;
        Ok(reference)
    };
    let started = phase_clock();
    let (result, mut world) = in_world(case, dir, World::capturing(case.seed, case.options.crash), body);
    add_phase(|p| &mut p.reference, started);
    let mut reference = result.map_err(|failure| (failure, world.take_captured()))?;
    reference.sites = world.sites().to_vec();
    reference.io_counts = world.io_counts().clone();
    reference.captured = world.take_captured();
    for report in &reference.reports {
        trace.line(describe_block(report));
    }
    Ok(reference)
}
