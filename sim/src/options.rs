//! Everything a seed decides (swarm testing): the workload the host feeds in,
//! the kernel's limits, the fault mode and where to crash. One seed, one
//! ChaCha8 stream, drawn in a fixed order: a seed means the same run everywhere.

use crate::fault::{CrashSpec, FaultKind, FaultMode, FaultSet, PointKind};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt;
use store::kernel::{HostInput, KernelConfig};
use store::vat::VatParams;
use store::{HostDb, JournalMode, LmdbFlags, Synchronous};

/// Flags a user can set; everything else comes from the seed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `None`: the seed picks the fault mode.
    pub mode: Option<FaultMode>,
    /// Force torn writes at every power loss (else the seed decides, if `faults` allows).
    pub torn: bool,
    /// The fault kinds a seed may get (`--faults`; default: all).
    pub faults: FaultSet,
    /// The databases' durability settings.
    pub settings: Settings,
}

impl Flags {
    /// Crashes only: no I/O faults, no torn writes unless `torn`.
    pub fn crashes_only(mode: Option<FaultMode>, torn: bool) -> Flags {
        Flags { mode, torn, faults: FaultSet::none(), settings: Settings::default() }
    }
}

/// The durability settings the store runs with: every one a user of SQLite
/// or LMDB could pick. The default is the store's own ([`store::StoreConfig::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Settings {
    pub sqlite_journal: JournalMode,
    pub sqlite_sync: Synchronous,
    pub lmdb_flags: LmdbFlags,
    /// The host's own database.
    pub host_db: HostDb,
}

impl Default for Settings {
    fn default() -> Settings {
        let store = store::StoreConfig::new(store::Design::StartPosition);
        Settings {
            sqlite_journal: store.journal_mode,
            sqlite_sync: store.synchronous,
            lmdb_flags: store.lmdb_flags,
            host_db: HostDb::Sqlite,
        }
    }
}

impl Settings {
    /// `Err` for a setting the simulator cannot observe faithfully, with why:
    /// it must refuse to give a verdict on it.
    pub fn check_observable(&self) -> Result<(), String> {
        match self.lmdb_flags {
            LmdbFlags::WriteMap | LmdbFlags::WriteMapAsync => Err(format!(
                "LMDB flag {} is not supported: with MDB_WRITEMAP LMDB writes its pages through a shared \
                 writable map, which the simulated disk cannot see (it sees system calls), so it cannot say \
                 what a crash would keep",
                self.lmdb_flags
            )),
            _ => Ok(()),
        }
    }

    /// Apply to a store configuration.
    pub fn configure(&self, config: &mut store::StoreConfig) {
        config.journal_mode = self.sqlite_journal;
        config.synchronous = self.sqlite_sync;
        config.lmdb_flags = self.lmdb_flags;
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sqlite={}+{} lmdb={} host={}", self.sqlite_journal, self.sqlite_sync, self.lmdb_flags, self.host_db)
    }
}

/// A deliberate defect in the system under test or the host, to prove the
/// harness catches it (`cargo xtask mutants`). Never on unless named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    Store(store::Mutant),
    /// After a restart the host runs again the block the kernel had committed.
    HostRepeatsCommittedBlock,
    /// The store's I/O layer retries a failed fsync once and carries on (as
    /// PostgreSQL did until 2018): the retry "succeeds" with the data lost.
    FsyncRetry,
}

impl Mutation {
    pub fn all() -> Vec<Mutation> {
        let mut all: Vec<Mutation> = store::Mutant::ALL.iter().map(|m| Mutation::Store(*m)).collect();
        all.push(Mutation::HostRepeatsCommittedBlock);
        all.push(Mutation::FsyncRetry);
        all
    }

    pub fn name(self) -> &'static str {
        match self {
            Mutation::Store(mutant) => mutant.name(),
            Mutation::HostRepeatsCommittedBlock => "host-repeats-committed-block",
            Mutation::FsyncRetry => "fsync-retry",
        }
    }

    pub fn parse(text: &str) -> Result<Mutation, String> {
        Mutation::all().into_iter().find(|m| m.name() == text).ok_or_else(|| {
            let names: Vec<&str> = Mutation::all().iter().map(|m| m.name()).collect();
            format!("unknown mutant `{text}` (expected one of: {})", names.join(", "))
        })
    }

    /// The store's part of the mutation.
    pub fn store_mutant(mutation: Option<Mutation>) -> Option<store::Mutant> {
        match mutation {
            Some(Mutation::Store(mutant)) => Some(mutant),
            _ => None,
        }
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The options one seed derives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedOptions {
    pub seed: u64,
    pub vats: usize,
    pub blocks: u64,
    pub kernel: KernelConfig,
    pub crash: CrashSpec,
    /// The databases' durability settings (a flag, not drawn).
    pub settings: Settings,
    /// How many crashes the faulty run gets (each after the previous).
    pub crashes: usize,
    /// With two crashes: the second in the block of the first (while it
    /// recovers, or runs the block again), instead of a later block.
    pub same_block_crash: bool,
    /// Relative weights of the kinds of crash point for the first crash.
    pub point_weights: BTreeMap<PointKind, u32>,
    /// The I/O fault kinds this seed gets (swarm: a subset of `--faults`).
    pub io_kinds: Vec<FaultKind>,
    /// How many I/O faults the faulty run gets (0 if `io_kinds` is empty).
    pub io_faults: usize,
    /// How many graceful stops the faulty run gets (0 or 1).
    pub stops: usize,
    /// The host's block log: inputs per height, starting at height 1.
    pub workload: Vec<Vec<HostInput>>,
}

/// Small uniform draws from the seed's stream.
struct Draw(ChaCha8Rng);

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }

    fn range(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.below(high_inclusive - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The kinds of crash point whose weights a seed draws before its workload.
const FIRST_KINDS: [PointKind; 5] =
    [PointKind::SqliteSync, PointKind::LmdbSync, PointKind::PointA, PointKind::PointB, PointKind::Crank];

const UPGRADE_TARGETS: &[&str] =
    &["counter-v2", "counter-v3", "counter-v2", "counter-v3", "bad-eval", "forgets-kind", "start-throws", "counter-v1"];

impl SeedOptions {
    pub fn derive(seed: u64, flags: &Flags) -> SeedOptions {
        SeedOptions::derive_sized(seed, flags, None)
    }

    /// [`SeedOptions::derive`] with the number of blocks forced to `blocks`
    /// (`cargo xtask bench` grows the workload with it; about 13 cranks a
    /// block). Every other draw is the same; `None` is `derive` exactly.
    pub fn derive_sized(seed: u64, flags: &Flags, blocks: Option<u64>) -> SeedOptions {
        let mut draw = Draw(ChaCha8Rng::seed_from_u64(seed));
        let vats = draw.range(3, 5) as usize;
        let drawn_blocks = draw.range(8, 14);
        let blocks = blocks.unwrap_or(drawn_blocks).max(1);
        let mut kernel = KernelConfig {
            max_workers_online: draw.range(1, 3) as usize,
            max_cranks_per_block: 40,
            snapshot_interval: None,
        };
        let mode = match draw.chance(75) {
            true => FaultMode::PowerLoss,
            false => FaultMode::ProcessCrash,
        };
        let mode = flags.mode.unwrap_or(mode);
        let crashes = draw.range(1, 2) as usize;
        // The kinds of point the simulator had first are drawn here, the later
        // ones after the workload: a seed keeps the workload it always had.
        let mut point_weights: BTreeMap<PointKind, u32> =
            FIRST_KINDS.iter().map(|k| (*k, draw.range(0, 4) as u32 + 1)).collect();
        let workload = (1..=blocks).map(|height| block_inputs(&mut draw, height, vats)).collect();
        for kind in PointKind::ALL.into_iter().filter(|k| !FIRST_KINDS.contains(k)) {
            point_weights.insert(kind, draw.range(0, 4) as u32 + 1);
        }
        kernel.snapshot_interval = Some(draw.range(2, 6));
        let faults = FaultDraws::derive(seed, &flags.faults);
        let torn = (flags.torn || faults.torn) && mode == FaultMode::PowerLoss;
        let crash = CrashSpec { mode, torn };
        let (io_kinds, io_faults, stops) = (faults.io_kinds, faults.io_faults, faults.stops);
        let settings = flags.settings;
        // From a stream of its own: the seeds that do not draw it keep every other draw.
        let same_block_crash = Draw(ChaCha8Rng::seed_from_u64(seed ^ 0x2c_5a3e)).chance(25);
        SeedOptions {
            seed,
            vats,
            blocks,
            kernel,
            crash,
            settings,
            crashes,
            same_block_crash,
            point_weights,
            io_kinds,
            io_faults,
            stops,
            workload,
        }
    }
}

/// The seed's fault choices, from a stream of their own (so that narrowing
/// `--faults` leaves the workload and the crash plan of a seed as they are).
struct FaultDraws {
    torn: bool,
    io_kinds: Vec<FaultKind>,
    io_faults: usize,
    stops: usize,
}

impl FaultDraws {
    fn derive(seed: u64, allowed: &FaultSet) -> FaultDraws {
        let mut draw = Draw(ChaCha8Rng::seed_from_u64(seed ^ 0xfa_0175));
        // Every kind is drawn, allowed or not, so each draw means the same for every `--faults`.
        let torn = draw.chance(50) && allowed.contains(FaultKind::Torn);
        let io_kinds: Vec<FaultKind> =
            FaultKind::IO.into_iter().filter(|kind| draw.chance(50) && allowed.contains(*kind)).collect();
        let io_faults = draw.range(0, 2) as usize;
        let io_faults = if io_kinds.is_empty() { 0 } else { io_faults };
        // Drawn last: the kinds drawn before keep their meaning.
        let stops = usize::from(draw.chance(50) && allowed.contains(FaultKind::Stop));
        FaultDraws { torn, io_kinds, io_faults, stops }
    }
}

fn vat_name(index: u64) -> String {
    format!("v{}", index + 1)
}

fn block_inputs(draw: &mut Draw, height: u64, vats: usize) -> Vec<HostInput> {
    let vats = vats as u64;
    if height == 1 {
        let create = |i| HostInput::CreateVat {
            vat: vat_name(i),
            bundle: "counter-v1".into(),
            params: VatParams { multiplier: i as i64 + 1 },
        };
        return (0..vats).map(create).collect();
    }
    let count = draw.range(3, 8);
    (0..count).map(|_| one_input(draw, vats)).collect()
}

/// One host input: a message (bump, forward; stash, clear and publish, which
/// set, overwrite and delete durable data and exports and make chain sends;
/// explode, whose crank aborts) or an upgrade.
fn one_input(draw: &mut Draw, vats: u64) -> HostInput {
    let target = vat_name(draw.below(vats));
    let send = |target, method: &str, args| HostInput::Send { target, method: method.into(), args };
    match draw.below(100) {
        0..=29 => send(target, "bump", vec![draw.range(1, 9).to_string()]),
        30..=65 => {
            let hops = draw.range(1, 3);
            let mut args = vec![draw.range(1, 9).to_string()];
            args.extend((0..hops).map(|_| vat_name(draw.below(vats))));
            send(target, "forward", args)
        }
        66..=72 => send(target, "stash", vec![draw.range(1, 9).to_string()]),
        73..=77 => send(target, "clear", vec![draw.range(1, 9).to_string()]),
        78..=83 => send(target, "publish", vec![draw.range(1, 9).to_string()]),
        84..=91 => send(target, "explode", vec![]),
        _ => HostInput::UpgradeVat {
            vat: target,
            bundle: draw.pick(UPGRADE_TARGETS).to_string(),
            params: VatParams { multiplier: draw.range(1, 9) as i64 },
        },
    }
}

fn kind_names(kinds: &[FaultKind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

impl fmt::Display for SeedOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inputs: usize = self.workload.iter().map(Vec::len).sum();
        let upgrades = self.workload.iter().flatten().filter(|i| matches!(i, HostInput::UpgradeVat { .. })).count();
        write!(
            f,
            "{} mode={} torn={} io_faults={}{} stops={} vats={} blocks={} inputs={} upgrades={} worker_cap={} snapshot_every={} crashes={}",
            self.settings,
            self.crash.mode,
            self.crash.torn,
            self.io_faults,
            if self.io_kinds.is_empty() { String::new() } else { format!(" ({})", kind_names(&self.io_kinds)) },
            self.stops,
            self.vats,
            self.blocks,
            inputs,
            upgrades,
            self.kernel.max_workers_online,
            self.kernel.snapshot_interval.map_or("never".to_string(), |k| k.to_string()),
            self.crashes
        )?;
        // Said only when it applies, so that the other seeds' headers stay as they were.
        if self.crashes == 2 && self.same_block_crash {
            f.write_str(" second_crash=same-block")?;
        }
        Ok(())
    }
}
