//! `cargo xtask truth-table`: every design in every fault mode, measured, against
//! the seed issue's predictions. Exit 0 only when every row matches.

use crate::args::{parse_number, usage_error, Designs, RunSpec};
use crate::pool::{run_pool, PoolConfig, SeedSet};
use crate::signals;
use clap::Args;
use sim::fault::{FaultMode, FaultSet};
use sim::run::scratch_root;
use sim::shrink::shrink;
use std::process::ExitCode;
use store::Design;

#[derive(Args, Debug)]
pub struct TruthTableArgs {
    /// Seeds per design and mode.
    #[arg(long, value_parser = parse_number, default_value = "1000")]
    pub seeds: u64,
    #[arg(long, value_parser = parse_number, default_value = "0")]
    pub start: u64,
    /// Seeds for the designs expected to pass, in power-loss mode (default: --seeds).
    #[arg(long, value_parser = parse_number)]
    pub safe_seeds: Option<u64>,
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Also write the table as JSON.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// The seed issue's prediction for a design.
pub fn expected_to_fail(design: Design) -> bool {
    matches!(design, Design::Erase | Design::LengthZero | Design::RamBuffer)
}

/// One measured row.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub design: String,
    pub mode: String,
    pub seeds: u64,
    pub failures: u64,
    /// Seeds run up to and including the first failure.
    pub seeds_to_first_failure: Option<u64>,
    pub first_failure_kind: Option<String>,
    pub first_failure_seed: Option<u64>,
    /// Events in the shrunk reproduction of the first failure.
    pub shrunk_events: Option<usize>,
    pub expected: &'static str,
    pub matches: bool,
    /// A signal stopped the row before its seeds were all run.
    pub interrupted: bool,
}

/// How many seeds a row runs.
fn seeds_for(design: Design, mode: FaultMode, args: &TruthTableArgs) -> u64 {
    match (expected_to_fail(design), mode) {
        (false, FaultMode::PowerLoss) => args.safe_seeds.unwrap_or(args.seeds),
        _ => args.seeds,
    }
}

fn measure(design: Design, mode: FaultMode, args: &TruthTableArgs) -> Row {
    let wanted = seeds_for(design, mode, args);
    // The table is about crashes: I/O faults have a table of their own (docs/findings.md).
    let spec =
        RunSpec { design: Designs(vec![design]), mode: Some(mode), faults: FaultSet::none(), ..RunSpec::default() };
    let config = PoolConfig::new(SeedSet::range(args.start, wanted), spec.clone(), args.jobs);
    let (mut seeds, mut failures, mut first) = (0, 0, None::<(u64, String)>);
    let ran = run_pool(&config, |result| {
        seeds += 1;
        if let Some(failure) = &result.failure {
            failures += 1;
            if first.as_ref().is_none_or(|(seed, _)| result.seed < *seed) {
                first = Some((result.seed, failure.kind.clone()));
            }
        }
        true
    });
    if let Err(message) = &ran {
        eprintln!("error: {} {} is incomplete: {message}", design, mode);
    }
    let interrupted = matches!(ran, Ok(Some(_)));
    let stop = || signals::interrupted().is_some();
    let shrunk_events = first.as_ref().filter(|_| !interrupted).and_then(|(seed, _)| {
        let shrunk = shrink(&spec.case(*seed, design, false), &scratch_root().0, 2000, &stop);
        shrunk.ok().filter(|_| !stop()).map(|s| s.events_after)
    });
    let fails = expected_to_fail(design);
    Row {
        design: design.name().into(),
        mode: mode.name().into(),
        seeds,
        failures,
        seeds_to_first_failure: first.as_ref().map(|(seed, _)| seed - args.start + 1),
        first_failure_kind: first.as_ref().map(|(_, kind)| kind.clone()),
        first_failure_seed: first.as_ref().map(|(seed, _)| *seed),
        shrunk_events,
        expected: if fails { "fails" } else { "passes" },
        matches: (failures > 0) == fails && seeds == wanted && ran.is_ok(),
        interrupted: interrupted || stop(),
    }
}

pub fn run(args: TruthTableArgs) -> ExitCode {
    if args.seeds == 0 || args.safe_seeds == Some(0) || args.jobs == Some(0) {
        return usage_error("--seeds and --jobs must be at least 1");
    }
    println!("| design | mode | seeds | failures | seeds to first failure | first failure | shrunk events | expected | verdict |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    'table: for design in Design::ALL {
        for mode in FaultMode::ALL {
            let row = measure(design, mode, &args);
            print_row(&row);
            rows.push(row);
            if signals::interrupted().is_some() {
                break 'table;
            }
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows).expect("rows encode");
        if let Err(error) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    let mismatches = rows.iter().filter(|r| !r.matches).count();
    if let Some(signal) = signals::interrupted() {
        println!("truth-table: {} rows, {mismatches} mismatches (interrupted by {})", rows.len(), signal.name());
        return signal.exit_code();
    }
    println!("truth-table: {} rows, {mismatches} mismatches", rows.len());
    if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_row(row: &Row) {
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let verdict = match (row.interrupted, row.matches) {
        (true, _) => "INTERRUPTED",
        (false, true) => "as expected",
        (false, false) => "MISMATCH",
    };
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {verdict} |",
        row.design,
        row.mode,
        row.seeds,
        row.failures,
        show(row.seeds_to_first_failure.map(|n| n.to_string())),
        show(row.first_failure_kind.clone().map(|k| format!("{k} (seed {})", row.first_failure_seed.unwrap_or(0)))),
        show(row.shrunk_events.map(|n| n.to_string())),
        row.expected,
    );
}
