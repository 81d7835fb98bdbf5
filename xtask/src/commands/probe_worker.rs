//! The probe worker (`probe-worker`, spawned by `durability-matrix`): runs the
//! probe of one database setting in one crash mode for a range of seeds, one
//! after the other, and prints `begin <seed>` before each and one JSON
//! [`ProbeOutcome`](sim::probe::ProbeOutcome) line after. Reading a corrupt
//! LMDB environment can kill the process (SIGSEGV, SIGBUS): the parent then
//! records that seed as a corruption and goes on after it.

use crate::args::usage_error;
use clap::Args;
use sim::probe::{probe, ProbeDb, ProbeMode};
use std::io::Write;
use std::process::ExitCode;

#[derive(Args, Clone, Debug)]
pub struct ProbeWorkerArgs {
    /// The setting, as `sqlite:JOURNAL:SYNC` or `lmdb:FLAGS`.
    #[arg(long, value_parser = ProbeDb::parse)]
    pub setting: ProbeDb,
    /// power-loss, torn, torn-whole-sectors or process-crash.
    #[arg(long, value_parser = ProbeMode::parse)]
    pub mode: ProbeMode,
    #[arg(long)]
    pub start: u64,
    #[arg(long)]
    pub count: u64,
}

pub fn run(args: ProbeWorkerArgs) -> ExitCode {
    if sim::promise::refused(args.setting).is_some() {
        return usage_error(format!("{} cannot be probed: the simulator cannot observe it", args.setting));
    }
    let dir = std::env::temp_dir().join(format!("swingsim-probe-{}", std::process::id()));
    let dir = match std::path::Path::new("/dev/shm").is_dir() {
        true => std::path::Path::new("/dev/shm").join(dir.file_name().expect("a name")),
        false => dir,
    };
    let mut out = std::io::stdout().lock();
    for seed in args.start..args.start.saturating_add(args.count) {
        let _ = writeln!(out, "begin {seed}");
        let _ = out.flush();
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("error: {}: {e}", dir.display());
            return ExitCode::from(2);
        }
        let outcome = probe(args.setting, args.mode, seed, &dir);
        let _ = writeln!(out, "{}", serde_json::to_string(&outcome).expect("outcomes encode"));
        let _ = out.flush();
    }
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::SUCCESS
}
