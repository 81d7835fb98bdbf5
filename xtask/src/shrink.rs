//! `cargo xtask shrink --seed S --design D`: shrink a failing seed to a small
//! scenario and write it under `scenarios/regressions/`.

use crate::sim::parse_number;
use clap::Args;
use sim::run::{scratch_root, Case, SeedConfig};
use sim::shrink::shrink;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use store::Design;

#[derive(Args, Debug)]
pub struct ShrinkArgs {
    #[arg(long, value_parser = parse_number)]
    pub seed: u64,
    #[arg(long, default_value = "start-position")]
    pub design: String,
    #[command(flatten)]
    pub fault: crate::sim::FaultArgs,
    /// At most this many candidate runs.
    #[arg(long, default_value = "2000")]
    pub max_runs: u64,
    /// Where to write the scenario (default: scenarios/regressions/ of the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The repository's root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

pub fn run(args: ShrinkArgs) -> ExitCode {
    let parsed = (|| Ok::<_, String>((args.design.parse::<Design>()?, args.fault.flags()?)))();
    let (design, flags) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let (root, _) = scratch_root();
    crate::worker::install_cleanup(root.clone());
    let config = SeedConfig { seed: args.seed, design, flags, verbose: false };
    let started = Instant::now();
    let shrunk = match shrink(&Case::from_seed(&config), &root, args.max_runs) {
        Ok(shrunk) => shrunk,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut scenario = shrunk.scenario;
    scenario.description = format!(
        "Shrunk by `cargo xtask shrink --seed {} --design {design}` from {} events to {}: fails with {}.",
        args.seed, shrunk.events_before, shrunk.events_after, shrunk.kind
    );
    let dir = args.out.unwrap_or_else(|| repo_root().join("scenarios").join("regressions"));
    let path = dir.join(format!("{design}-seed-{}.toml", args.seed));
    let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, scenario.to_toml()));
    if let Err(error) = written {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    println!("shrunk seed {} design {design}: {} events -> {}", args.seed, shrunk.events_before, shrunk.events_after);
    println!("  {} candidate runs in {seconds:.1} s", shrunk.runs);
    println!("  fails with: {}", shrunk.message);
    println!("wrote {}", path.display());
    println!("replay: cargo xtask scenario {}", path.file_stem().unwrap_or_default().to_string_lossy());
    ExitCode::SUCCESS
}
