//! What a run is a function of (a [`Case`]: seed, design, options, plans),
//! what it reports ([`SeedReport`]), and the plans a seed draws: where the
//! faulty run crashes and which of its I/O operations fail.

use crate::check::Failure;
use crate::event::Event;
use crate::fault::{CrashAt, FaultAt, FaultKind, OpClass, PointKind};
use crate::node::Snapshot;
use crate::options::{Flags, Mutation, SeedOptions};
use crate::summary::Skips;
use crate::trace::Trace;
use crate::world::{FaultRecord, PointRecord, Site};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;
use store::Design;

/// What one seed is run with.
#[derive(Clone, Debug)]
pub struct SeedConfig {
    pub seed: u64,
    pub design: Design,
    pub flags: Flags,
    /// Keep a readable trace of every event (for `--seed`).
    pub verbose: bool,
}

/// Where the crashes of a run come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashPlan {
    /// Drawn from the seed over the reference run's crash points.
    Seeded,
    /// Named points, in order (scenarios, shrunk cases); empty: no crash.
    Explicit(Vec<CrashAt>),
}

/// Where the I/O faults of a run come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultPlan {
    /// Drawn from the seed over the reference run's I/O operations.
    Seeded,
    /// Named operations (scenarios, shrunk cases); empty: no I/O fault.
    Explicit(Vec<FaultAt>),
}

/// Everything one run is a function of.
#[derive(Clone, Debug)]
pub struct Case {
    /// Seeds madsim, SQLite's randomness and the torn-write draws.
    pub seed: u64,
    pub design: Design,
    pub options: SeedOptions,
    pub plan: CrashPlan,
    pub faults: FaultPlan,
    /// A deliberate defect to run with (`None` always, but for `mutants`).
    pub mutation: Option<Mutation>,
    pub verbose: bool,
}

impl Case {
    pub fn with_mutation(self, mutation: Option<Mutation>) -> Case {
        Case { mutation, ..self }
    }

    pub fn from_seed(config: &SeedConfig) -> Case {
        Case {
            seed: config.seed,
            design: config.design,
            options: SeedOptions::derive(config.seed, &config.flags),
            plan: CrashPlan::Seeded,
            faults: FaultPlan::Seeded,
            mutation: None,
            verbose: config.verbose,
        }
    }

    /// The crash plan of the faulty run, over the reference run's crash points.
    pub(super) fn crash_plan(&self, sites: &[Site]) -> Vec<CrashAt> {
        match &self.plan {
            CrashPlan::Seeded => seeded_plan(self, sites),
            CrashPlan::Explicit(plan) => plan.clone(),
        }
    }

    /// The I/O fault plan of the faulty run, over the reference run's I/O operations.
    pub(super) fn fault_plan(&self, io_counts: &BTreeMap<(OpClass, u64), u64>) -> Vec<FaultAt> {
        match &self.faults {
            FaultPlan::Seeded => seeded_faults(self, io_counts),
            FaultPlan::Explicit(faults) => faults.clone(),
        }
    }
}

/// What one seed did.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub design: Design,
    pub options: SeedOptions,
    /// The crash plan the faulty run followed.
    pub plan: Vec<CrashAt>,
    /// The I/O faults planned for the faulty run.
    pub fault_plan: Vec<FaultAt>,
    pub failure: Option<Failure>,
    pub crashes: Vec<PointRecord>,
    /// The I/O faults injected, in order.
    pub faults: Vec<FaultRecord>,
    /// Seeded events skipped, I/O faults absorbed.
    pub skips: Skips,
    pub recoveries_checked: u64,
    pub cranks: u64,
    pub evictions: u64,
    /// The faulty run's final state (every vat rebuilt by replay), when it got there.
    pub final_state: Option<Snapshot>,
    pub trace: Trace,
    /// What the faulty run's host saw, in order.
    pub events: Vec<Event>,
    /// The rare states of [`crate::coverage`] this seed reached, by name.
    pub coverage: Vec<String>,
}

impl SeedReport {
    /// The report of a case before anything ran.
    pub(super) fn empty(case: &Case) -> SeedReport {
        SeedReport {
            seed: case.seed,
            design: case.design,
            options: case.options.clone(),
            plan: Vec::new(),
            fault_plan: Vec::new(),
            failure: None,
            crashes: Vec::new(),
            skips: Skips::default(),
            faults: Vec::new(),
            recoveries_checked: 0,
            cranks: 0,
            evictions: 0,
            final_state: None,
            trace: Trace::new(false),
            events: Vec::new(),
            coverage: Vec::new(),
        }
    }
}

/// Where a seed crashes: the first crash at a point of a kind drawn by the
/// seed's weights; each further crash at a point of a later block, or, for a
/// seed that draws it, the second in the block of the first (see
/// [`same_block_point`]).
fn seeded_plan(case: &Case, sites: &[Site]) -> Vec<CrashAt> {
    let options = &case.options;
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ 0x00c0_a511);
    let mut kinds: Vec<PointKind> = sites.iter().map(|s| s.kind).collect();
    kinds.sort();
    kinds.dedup();
    let total_weight: u32 = kinds.iter().map(|k| options.point_weights[k]).sum();
    if total_weight == 0 {
        return Vec::new();
    }
    let mut ticket = i64::from(rng.next_u32() % total_weight);
    let kind = *kinds
        .iter()
        .find(|k| {
            ticket -= i64::from(options.point_weights[*k]);
            ticket < 0
        })
        .expect("a weighted kind");
    let of_kind: Vec<usize> = (0..sites.len()).filter(|i| sites[*i].kind == kind).collect();
    let mut ordinal = of_kind[(rng.next_u64() % of_kind.len() as u64) as usize];
    let mut plan = vec![name_site(sites, ordinal)];
    if options.crashes == 2 && options.same_block_crash {
        plan.push(same_block_point(case.seed, sites, plan[0].block));
        return plan;
    }
    while plan.len() < options.crashes {
        let block = plan.last().expect("a first crash").block;
        let later: Vec<usize> = (ordinal..sites.len()).filter(|i| sites[*i].height > block).collect();
        if later.is_empty() {
            break;
        }
        ordinal = later[(rng.next_u64() % later.len() as u64) as usize];
        plan.push(name_site(sites, ordinal));
    }
    plan
}

/// A fault of kind `fault` at an operation of its class, drawn uniformly
/// from all the reference run made (`None`: it made none).
fn place_fault(fault: FaultKind, io_counts: &BTreeMap<(OpClass, u64), u64>, rng: &mut ChaCha8Rng) -> Option<FaultAt> {
    let class = fault.class().expect("a fault at an operation");
    let counts: Vec<(u64, u64)> =
        io_counts.iter().filter(|((c, _), _)| *c == class).map(|((_, block), n)| (*block, *n)).collect();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.next_u64() % total;
    for (block, n) in counts {
        if ticket < n {
            return Some(FaultAt { fault, block, nth: ticket + 1 });
        }
        ticket -= n;
    }
    None
}

/// A second crash in `block`, the block of the first: any of its points,
/// counted (as a later crash is) from the first crash, so that it falls in the
/// recovery or in the block run again; drawn from a stream of its own, which
/// leaves every other seed's plan as it was. A point the run no longer
/// reaches (the block committed before the first crash) is skipped.
fn same_block_point(seed: u64, sites: &[Site], block: u64) -> CrashAt {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5a_e0b1);
    let in_block: Vec<usize> = (0..sites.len()).filter(|i| sites[*i].height == block).collect();
    name_site(sites, in_block[(rng.next_u64() % in_block.len() as u64) as usize])
}

/// The point at `ordinal`, named by kind, block and its count within that block.
fn name_site(sites: &[Site], ordinal: usize) -> CrashAt {
    let site = sites[ordinal];
    let nth = sites[..=ordinal].iter().filter(|s| **s == site).count() as u64;
    CrashAt { at: site.kind, block: site.height, nth }
}

/// The ordinal of the point `at` names, counted from the start of the run.
pub(super) fn ordinal_of(sites: &[Site], at: CrashAt) -> Option<usize> {
    let mut nth = 0;
    for (ordinal, site) in sites.iter().enumerate() {
        if site.kind == at.at && site.height == at.block {
            nth += 1;
            if nth == at.nth {
                return Some(ordinal);
            }
        }
    }
    None
}

/// Where a seed's I/O faults go: each of a kind the seed gets, at an operation
/// of the fault's class drawn uniformly from all the reference run made; a
/// graceful stop likewise at a crank's start.
fn seeded_faults(case: &Case, io_counts: &BTreeMap<(OpClass, u64), u64>) -> Vec<FaultAt> {
    let options = &case.options;
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ 0x10_fa17);
    let mut plan = Vec::new();
    for _ in 0..options.io_faults {
        let fault = options.io_kinds[(rng.next_u64() % options.io_kinds.len() as u64) as usize];
        plan.extend(place_fault(fault, io_counts, &mut rng));
    }
    for _ in 0..options.stops {
        plan.extend(place_fault(FaultKind::Stop, io_counts, &mut rng));
    }
    plan.sort();
    plan.dedup();
    plan
}
