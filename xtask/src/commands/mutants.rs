//! `cargo xtask mutants`: run the simulator against the store (and host) with
//! each deliberate defect switched on, and say within how many seeds each is
//! caught. Exit 0 only when every mutant is caught.

use crate::args::{parse_number, usage_error, RunSpec};
use crate::pool::{run_pool, PoolConfig, SeedSet};
use crate::signals::Interrupted;
use clap::Args;
use sim::options::Mutation;
use sim::summary::FailureRecord;
use std::collections::BTreeSet;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct MutantsArgs {
    /// Give up on a mutant after this many seeds.
    #[arg(long, value_parser = parse_number, default_value = "1000")]
    pub seeds: u64,
    #[arg(long)]
    pub jobs: Option<usize>,
}

pub fn run(args: MutantsArgs) -> ExitCode {
    if args.seeds == 0 || args.jobs == Some(0) {
        return usage_error("--seeds and --jobs must be at least 1");
    }
    println!("| mutant | caught | seeds to detection | first failure | repro |");
    println!("|---|---|---|---|---|");
    let mut missed = 0;
    for mutation in Mutation::all() {
        let first = match first_failure(mutation, &args) {
            Ok(first) => first,
            Err(Stopped::Interrupted(signal)) => {
                println!("| {} | interrupted | - | - | - |", mutation.name());
                println!("mutants: interrupted by {}", signal.name());
                return signal.exit_code();
            }
            Err(Stopped::Broken(message)) => {
                eprintln!("error: mutant {} run is incomplete: {message}", mutation.name());
                return ExitCode::from(2);
            }
        };
        match &first {
            Some(f) => {
                println!("| {} | yes | {} | {}: {} | `{}` |", mutation.name(), f.seed + 1, f.kind, f.message, f.repro)
            }
            None => {
                missed += 1;
                println!("| {} | NO | not within {} seeds | - | - |", mutation.name(), args.seeds);
            }
        }
    }
    println!("mutants: {} run, {missed} not caught", Mutation::all().len());
    if missed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Why a mutant's run did not come to its end.
enum Stopped {
    Interrupted(Interrupted),
    Broken(String),
}

/// The earliest failing seed with `mutation` (`None`: none within the seeds).
fn first_failure(mutation: Mutation, args: &MutantsArgs) -> Result<Option<FailureRecord>, Stopped> {
    let spec = RunSpec { mutant: Some(mutation), ..RunSpec::default() };
    let config = PoolConfig::new(SeedSet::range(0, args.seeds), spec, args.jobs);
    let mut first: Option<FailureRecord> = None;
    let mut finished = BTreeSet::new();
    let ran = run_pool(&config, |result| {
        finished.insert(result.seed);
        if let Some(failure) = &result.failure {
            if first.as_ref().is_none_or(|f| failure.seed < f.seed) {
                first = Some(failure.clone());
            }
        }
        // Stop once the earliest failing seed is known: every seed below it has reported.
        first.as_ref().is_none_or(|f| (0..f.seed).any(|seed| !finished.contains(&seed)))
    });
    match ran {
        Ok(None) => Ok(first),
        Ok(Some(signal)) => Err(Stopped::Interrupted(signal)),
        Err(message) => Err(Stopped::Broken(message)),
    }
}
