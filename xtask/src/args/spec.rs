//! The run specification: every setting a seed's run is a function of,
//! besides the seed itself. It is declared once, in [`RunSpec`]; from that one
//! declaration come the flags `sim`, `shrink` and the worker parse (clap),
//! the worker's arguments ([`RunSpec::to_args`]) and the repro line of a
//! failure ([`RunSpec::repro_line`]). The tests below hold the round trip
//! (spec, arguments, spec; failure, repro line, the same run) for every flag.
//!
//! To add a setting: a field in [`RunSpec`] with its `#[arg]` (parser and
//! default, which is left out of arguments and repro lines), and, unless it
//! is a `bool`, `#[serde(serialize_with = "as_text")]` or `as_optional_text`
//! (its flag text is its `Display`, which its parser must read back); a
//! sample value in `SAMPLES` (the tests name any flag that has none); then
//! its use, e.g. in [`RunSpec::flags`].

use clap::{Args, CommandFactory, Parser};
use serde::{Serialize, Serializer};
use sim::fault::{FaultMode, FaultSet};
use sim::options::{Flags, Mutation, Settings};
use sim::run::{Case, Depth, SeedConfig};
use std::fmt;
use store::{Design, HostDb, JournalMode, LmdbFlags, Synchronous};

/// The settings of a run, besides the seed (see the module's doc).
#[derive(Args, Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunSpec {
    /// A design (erase, length-zero, ram-buffer, generation, start-position,
    /// unified), several separated by commas, or `all`.
    #[arg(long, value_parser = Designs::parse, default_value = "start-position")]
    #[serde(serialize_with = "as_text")]
    pub design: Designs,
    /// power-loss or process-crash (default: the seed picks).
    #[arg(long, value_parser = parse_mode)]
    #[serde(serialize_with = "as_optional_text")]
    pub mode: Option<FaultMode>,
    /// With power loss: unsynced sectors survive, vanish or tear (at every
    /// power loss; without it, the seed decides when `torn` is in --faults).
    #[arg(long)]
    pub torn: bool,
    /// Fault kinds the seeds may get: `all`, `none`, or a list of fsync-eio,
    /// enospc, write-eio, torn, stop (a graceful stop in the middle of a
    /// block). Each seed picks which of them it gets, and when.
    #[arg(long, value_parser = FaultSet::parse, default_value = "all")]
    #[serde(serialize_with = "as_text")]
    pub faults: FaultSet,
    /// Build the store (or the host) with one deliberate defect (see `cargo xtask mutants`).
    #[arg(long, value_parser = Mutation::parse)]
    #[serde(serialize_with = "as_optional_text")]
    pub mutant: Option<Mutation>,
    /// Crash at every crash point of each seed, one after the other, and check
    /// each recovery (the workload runs once per seed; see README, Performance).
    #[arg(long)]
    pub exhaustive: bool,
    /// With --exhaustive: after each recovery, `recover` (check only),
    /// `next-block` (run the block in flight again) or `to-end`.
    #[arg(long, value_parser = parse_depth, default_value = "next-block", requires = "exhaustive")]
    #[serde(serialize_with = "as_text")]
    pub depth: Depth,
    /// Run every seed twice and compare the two runs.
    #[arg(long)]
    pub check_determinism: bool,
    /// SQLite `journal_mode`: delete, truncate, persist, memory, wal, off.
    #[arg(long, default_value_t = Settings::default().sqlite_journal)]
    #[serde(serialize_with = "as_text")]
    pub sqlite_journal: JournalMode,
    /// SQLite `synchronous`: off, normal, full, extra.
    #[arg(long, default_value_t = Settings::default().sqlite_sync)]
    #[serde(serialize_with = "as_text")]
    pub sqlite_sync: Synchronous,
    /// LMDB's durability flags: default, nometasync, nosync (writemap and
    /// writemap-mapasync are refused: the simulator cannot observe them).
    #[arg(long, default_value_t = Settings::default().lmdb_flags)]
    #[serde(serialize_with = "as_text")]
    pub lmdb_flags: LmdbFlags,
    /// The host's own database: sqlite or redb.
    #[arg(long, default_value_t = Settings::default().host_db)]
    #[serde(serialize_with = "as_text")]
    pub host_db: HostDb,
}

/// The designs a run covers (`--design`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Designs(pub Vec<Design>);

impl Designs {
    /// A design, several separated by commas, or `all`.
    pub fn parse(text: &str) -> Result<Designs, String> {
        match text {
            "all" => Ok(Designs(Design::ALL.to_vec())),
            names => names.split(',').map(str::parse).collect::<Result<_, _>>().map(Designs),
        }
    }
}

impl fmt::Display for Designs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Design::ALL {
            return f.write_str("all");
        }
        let names: Vec<&str> = self.0.iter().map(|d| d.name()).collect();
        f.write_str(&names.join(","))
    }
}

fn parse_mode(text: &str) -> Result<FaultMode, String> {
    FaultMode::parse(text).ok_or(format!("unknown mode `{text}` (expected power-loss or process-crash)"))
}

fn parse_depth(text: &str) -> Result<Depth, String> {
    Depth::parse(text).ok_or_else(|| format!("unknown depth `{text}` (expected recover, next-block or to-end)"))
}

/// A setting's value as its flag's text.
fn as_text<T: fmt::Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// An optional setting's value as its flag's text (`None`: no flag).
fn as_optional_text<T: fmt::Display, S: Serializer>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

/// The specification alone, to parse its defaults.
#[derive(Parser)]
struct SpecOnly {
    #[command(flatten)]
    spec: RunSpec,
}

impl Default for RunSpec {
    /// What no flag gives (the defaults declared on the fields).
    fn default() -> RunSpec {
        SpecOnly::parse_from(["spec"]).spec
    }
}

/// Settings shown in every argument list and repro line, even at their default.
const ALWAYS_SHOWN: &[&str] = &["design"];

impl RunSpec {
    /// Checks across settings that their parsers cannot make alone.
    pub fn validate(&self) -> Result<(), String> {
        if self.torn && self.mode == Some(FaultMode::ProcessCrash) {
            return Err("--torn needs power loss; it cannot go with --mode process-crash".into());
        }
        self.settings().check_observable()
    }

    /// This specification for one design.
    pub fn with_design(&self, design: Design) -> RunSpec {
        RunSpec { design: Designs(vec![design]), ..self.clone() }
    }

    /// What the seeds derive their options with.
    pub fn flags(&self) -> Flags {
        Flags { mode: self.mode, torn: self.torn, faults: self.faults.clone(), settings: self.settings() }
    }

    /// The databases' durability settings.
    pub fn settings(&self) -> Settings {
        Settings {
            sqlite_journal: self.sqlite_journal,
            sqlite_sync: self.sqlite_sync,
            lmdb_flags: self.lmdb_flags,
            host_db: self.host_db,
        }
    }

    /// The depth of exhaustive exploration, when the run is exhaustive.
    pub fn exhaustive_depth(&self) -> Option<Depth> {
        self.exhaustive.then_some(self.depth)
    }

    /// The case of `seed` with `design` under this specification.
    pub fn case(&self, seed: u64, design: Design, verbose: bool) -> Case {
        let config = SeedConfig { seed, design, flags: self.flags(), verbose };
        Case::from_seed(&config).with_mutation(self.mutant)
    }

    /// The command-line arguments that give this specification: every setting
    /// that is not at its default (the design always), in declaration order.
    pub fn to_args(&self) -> Vec<String> {
        let (values, defaults) = (as_json(self), as_json(&RunSpec::default()));
        let mut args = Vec::new();
        for arg in SpecOnly::command().get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else { continue };
            if values[id] == defaults[id] && !ALWAYS_SHOWN.contains(&id) {
                continue;
            }
            match &values[id] {
                serde_json::Value::Bool(true) => args.push(format!("--{long}")),
                serde_json::Value::String(text) => args.extend([format!("--{long}"), text.clone()]),
                other => panic!("setting `{id}` has no flag text ({other}): serialize it `as_text`"),
            }
        }
        args
    }

    /// The command that runs `seed` with `design` exactly as this
    /// specification ran it.
    pub fn repro_line(&self, seed: u64, design: Design) -> String {
        format!("cargo xtask sim --seed {seed} {}", self.with_design(design).to_args().join(" "))
    }
}

fn as_json(spec: &RunSpec) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(spec) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!("a run specification serializes as a map: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};

    /// A value other than the default for every flag; the round trip covers
    /// them one by one and all together.
    const SAMPLES: &[&[&str]] = &[
        &["--design", "erase,unified"],
        &["--mode", "power-loss"],
        &["--torn"],
        &["--faults", "torn,enospc"],
        &["--mutant", "fsync-retry"],
        &["--exhaustive", "--depth", "to-end"],
        &["--exhaustive"],
        &["--check-determinism"],
        &["--sqlite-journal", "delete"],
        &["--sqlite-sync", "extra"],
        &["--lmdb-flags", "nometasync"],
        &["--host-db", "redb"],
    ];

    /// Every sample alone, then all of them (a flag once: its first sample).
    fn argument_lists() -> Vec<Vec<&'static str>> {
        let mut lists: Vec<Vec<&str>> = SAMPLES.iter().map(|s| s.to_vec()).collect();
        let mut all: Vec<&str> = Vec::new();
        for sample in SAMPLES {
            if !all.contains(&sample[0]) {
                all.extend(*sample);
            }
        }
        lists.push(all);
        lists
    }

    fn parse(args: &[&str]) -> Command {
        let argv = ["cargo xtask"].iter().chain(args);
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}")).command
    }

    /// The specification `cargo xtask sim --seed 7 <args>` runs with.
    fn sim_spec(args: &[&str]) -> (Option<u64>, RunSpec) {
        match parse(&[&["sim", "--seed", "7"], args].concat()) {
            Command::Sim(sim) => (sim.seed, sim.spec),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_flag_has_a_sample() {
        for arg in SpecOnly::command().get_arguments() {
            let flag = format!("--{}", arg.get_long().expect("a long flag"));
            assert!(SAMPLES.iter().any(|s| s.contains(&flag.as_str())), "no sample for {flag}: add one to SAMPLES");
        }
    }

    #[test]
    fn the_worker_parses_its_arguments_back_to_the_spec() {
        for args in argument_lists() {
            let (_, spec) = sim_spec(&args);
            spec.validate().unwrap();
            assert_ne!(spec, RunSpec::default(), "{args:?} changes nothing");
            let stripe = ["sim-worker", "--start", "0", "--first-unit", "0", "--end-unit", "1", "--step", "1"];
            let worker_args = spec.to_args();
            let worker = parse(&[&stripe[..], &worker_args.iter().map(String::as_str).collect::<Vec<_>>()].concat());
            let Command::SimWorker(worker) = worker else { unreachable!() };
            assert_eq!(worker.spec, spec, "{args:?} -> {worker_args:?}");
        }
    }

    #[test]
    fn a_repro_line_reruns_what_failed() {
        for args in argument_lists() {
            let (_, spec) = sim_spec(&args);
            for design in &spec.design.0 {
                let line = spec.repro_line(42, *design);
                let words: Vec<&str> = line.split(' ').collect();
                assert_eq!(words[..2], ["cargo", "xtask"], "{line}");
                let (seed, rerun) = match parse(&words[2..]) {
                    Command::Sim(sim) => (sim.seed, sim.spec),
                    _ => panic!("not a sim command: {line}"),
                };
                assert_eq!((seed, rerun), (Some(42), spec.with_design(*design)), "{args:?}: {line}");
            }
        }
    }

    /// A repro line names the design, and flags only when they are not at their default.
    #[test]
    fn a_repro_line_repeats_only_what_differs_from_the_defaults() {
        let line = RunSpec::default().repro_line(3, Design::StartPosition);
        assert_eq!(line, "cargo xtask sim --seed 3 --design start-position");
        let (_, spec) = sim_spec(&["--faults", "torn,enospc", "--mode", "process-crash"]);
        assert_eq!(
            spec.repro_line(3, Design::Erase),
            "cargo xtask sim --seed 3 --design erase --mode process-crash --faults enospc,torn"
        );
    }
}
