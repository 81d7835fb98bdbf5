//! `cargo xtask <command>`: the project's commands, one module each.

mod pool;
mod sim;
mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Deterministic crash simulation of a two-database swing-store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run seeds through the simulator: crash, restart, recover, check.
    Sim(sim::SimArgs),
    /// Internal: run a stripe of seeds and print one JSON line each.
    #[command(hide = true)]
    SimWorker(worker::WorkerArgs),
}

fn main() -> ExitCode {
    // Output piped into `head` must end the program quietly, as for any Unix tool,
    // not panic in println!.
    // SAFETY: setting a signal disposition to its default at startup.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim::run(args),
        Command::SimWorker(args) => worker::run(args),
    }
}
