//! `cargo xtask mutants`: run the simulator against the store (and host) with
//! each deliberate defect switched on, and say within how many seeds each is
//! caught. Exit 0 only when every mutant is caught.

use crate::pool::{run_pool, PoolConfig, SeedSet};
use crate::sim::parse_number;
use clap::Args;
use sim::options::Mutation;
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
        eprintln!("error: --seeds and --jobs must be at least 1");
        return ExitCode::from(2);
    }
    println!("| mutant | caught | seeds to detection | first failure | repro |");
    println!("|---|---|---|---|---|");
    let mut missed = 0;
    for mutation in Mutation::all() {
        let config = PoolConfig {
            mutant: Some(mutation.name().to_string()),
            ..PoolConfig::new(SeedSet::range(0, args.seeds), vec![store::Design::StartPosition], args.jobs)
        };
        let mut first: Option<sim::summary::FailureRecord> = None;
        let mut finished = std::collections::BTreeSet::new();
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
        if let Err(message) = ran {
            eprintln!("error: mutant {} run is incomplete: {message}", mutation.name());
            return ExitCode::from(2);
        }
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
