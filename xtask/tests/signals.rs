//! Ctrl-C and SIGTERM, sent to real runs as a terminal and as a user would:
//! every command that runs seeds stops within about a second, says it was
//! interrupted (summary, JSON, JUnit), reports no seed as failed because of
//! the signal, exits with 128 + the signal, and leaves no scratch directory
//! of its own or of its workers behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One signalled run at a time: each needs the cores to answer in time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Who gets the signal.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The run's whole process group, as a terminal's Ctrl-C.
    Group,
    /// The parent process alone, as `kill PID`.
    Parent,
}

/// When a run is in the middle of its work.
#[derive(Clone, Copy, Debug)]
enum Busy {
    /// Its workers have run for this long (they have finished seeds).
    Workers(Duration),
    /// A run in the process itself is under way (its scratch directory exists).
    InProcess,
}

/// What a signalled run came to.
struct Stopped {
    output: Output,
    /// From the signal to the run's exit.
    took: Duration,
    /// The run's process and every process it started, as seen while it ran.
    pids: Vec<i32>,
}

impl Stopped {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
}

/// The processes whose parent is `pid`.
fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let parent_of =
        |stat: String| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| std::fs::read_to_string(format!("/proc/{child}/stat")).ok().and_then(parent_of) == Some(pid))
        .collect()
}

fn scratch_dir(pid: i32) -> PathBuf {
    Path::new("/dev/shm").join(format!("swingsim-{pid}"))
}

/// Run `cargo xtask <args>` in a process group of its own; once it is `busy`,
/// send `signal` to `target`.
fn interrupt(args: &[&str], busy: Busy, target: Target, signal: i32) -> Stopped {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child: Child = command.spawn().expect("xtask starts");
    let pid = child.id() as i32;
    let mut pids = vec![pid];
    let mut workers_since = None;
    loop {
        let workers = children(pid);
        pids.extend(workers.iter().filter(|w| !pids.contains(w)).collect::<Vec<_>>());
        workers_since = match (workers.is_empty(), workers_since) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, since) => since,
        };
        let ready = match busy {
            Busy::Workers(enough) => workers_since.is_some_and(|since| since.elapsed() >= enough),
            Busy::InProcess => scratch_dir(pid).exists(),
        };
        if ready {
            break;
        }
        if let Some(status) = child.try_wait().expect("xtask runs") {
            panic!("{args:?} ended ({status}) before it was {busy:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Instant::now();
    let to = match target {
        Target::Group => -pid,
        Target::Parent => pid,
    };
    // SAFETY: kill(2) on the run's own process (group).
    assert_eq!(unsafe { libc::kill(to, signal) }, 0);
    let output = child.wait_with_output().expect("xtask ends");
    let took = sent.elapsed();
    eprintln!("{}: signal {signal} to {target:?}: ended in {took:.2?}", args[0]);
    Stopped { output, took, pids }
}

/// Long enough for a worker of the debug build to finish a few seeds.
const SEEDS_DONE: Duration = Duration::from_millis(1500);

/// What every signalled run must come to.
fn check_stopped(stopped: &Stopped, signal: i32, name: &str) {
    assert_eq!(stopped.output.status.code(), Some(128 + signal), "{:?}", stopped.output);
    assert!(stopped.took < Duration::from_secs(3), "took {:?} to stop", stopped.took);
    let text = stopped.stdout();
    assert!(text.contains(&format!("interrupted by {name}")), "no interruption said: {text}");
    for pid in &stopped.pids {
        assert!(!scratch_dir(*pid).exists(), "{} left behind", scratch_dir(*pid).display());
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} still runs");
    }
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xtask-signals-{name}-{}", std::process::id()))
}

/// `sim` with JSON and JUnit, stopped by `signal` sent to `target`: a partial
/// summary, no seed failed because of it, both files say it.
fn sim_stops(target: Target, signal: i32, name: &str) {
    let (json, junit) = (temp("sim.json"), temp("sim.xml"));
    let args = ["sim", "--seeds", "100000", "--jobs", "2", "--json", json.to_str().unwrap()];
    let stopped = interrupt(
        &[&args[..], &["--junit", junit.to_str().unwrap()]].concat(),
        Busy::Workers(SEEDS_DONE),
        target,
        signal,
    );
    check_stopped(&stopped, signal, name);
    assert!(stopped.pids.len() >= 3, "the run had its two workers: {:?}", stopped.pids);
    let text = stopped.stdout();
    assert!(!text.contains("FAILED"), "{text}");
    assert!(text.trim_end().ends_with(&format!("(interrupted by {name})")), "the summary comes last: {text}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], name);
    assert!(summary["seeds"].as_u64().unwrap() > 0, "seeds completed before the signal");
    assert_eq!(summary["failed"], 0);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("interrupted"), "{xml}");
    let _ = (std::fs::remove_file(json), std::fs::remove_file(junit));
}

#[test]
fn ctrl_c_in_a_terminal_stops_sim() {
    sim_stops(Target::Group, libc::SIGINT, "SIGINT");
}

#[test]
fn sigint_to_the_parent_alone_stops_sim() {
    sim_stops(Target::Parent, libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_stops_sim() {
    sim_stops(Target::Parent, libc::SIGTERM, "SIGTERM");
}

#[test]
fn soak_stops_and_its_summary_says_so() {
    let out = temp("soak");
    let args = ["soak", "--minutes", "10", "--seed-base", "0", "--jobs", "2", "--out", out.to_str().unwrap()];
    let stopped = interrupt(&args, Busy::Workers(SEEDS_DONE), Target::Group, libc::SIGINT);
    check_stopped(&stopped, libc::SIGINT, "SIGINT");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], "SIGINT");
    assert_eq!(summary["failed"], 0);
    let _ = std::fs::remove_dir_all(out);
}

/// (Seed 239: a `length-zero` seed that fails; seed 2 no longer does since
/// seeds got I/O faults and settings.)
#[test]
fn shrink_stops_and_writes_nothing() {
    let out = temp("shrink");
    let args = ["shrink", "--seed", "239", "--design", "length-zero", "--out", out.to_str().unwrap()];
    let stopped = interrupt(&args, Busy::InProcess, Target::Parent, libc::SIGTERM);
    check_stopped(&stopped, libc::SIGTERM, "SIGTERM");
    assert!(!out.exists(), "an interrupted shrink wrote {}", out.display());
}

#[test]
fn scenario_stops() {
    let names = vec!["seed-issue-start-position"; 200];
    let stopped =
        interrupt(&[&["scenario", "--quiet"], &names[..]].concat(), Busy::InProcess, Target::Group, libc::SIGINT);
    check_stopped(&stopped, libc::SIGINT, "SIGINT");
}

#[test]
fn truth_table_stops() {
    let stopped = interrupt(
        &["truth-table", "--seeds", "100000", "--jobs", "2"],
        Busy::Workers(SEEDS_DONE),
        Target::Group,
        libc::SIGINT,
    );
    check_stopped(&stopped, libc::SIGINT, "SIGINT");
}

/// Each mutant's run ends at its first failure (under a second in all): the
/// signal goes as soon as the first worker runs.
#[test]
fn mutants_stop() {
    let stopped = interrupt(
        &["mutants", "--seeds", "100000", "--jobs", "2"],
        Busy::Workers(Duration::ZERO),
        Target::Parent,
        libc::SIGINT,
    );
    check_stopped(&stopped, libc::SIGINT, "SIGINT");
}
