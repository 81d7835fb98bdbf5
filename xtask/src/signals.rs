//! Ctrl-C and SIGTERM stop a run cleanly. The handler only records the
//! signal; the worker pool looks at it at least every 200 ms, and the
//! commands that run seeds in this process between two runs. They stop, kill
//! their workers, remove every scratch directory, print what they have
//! (marked interrupted) and exit with 128 + the signal (130, 143).
//!
//! Workers ignore both signals from their start, so a signal that reaches
//! the whole process group (a terminal's Ctrl-C) and one sent to the parent
//! alone end the same way: the parent stops the workers, and none of their
//! seeds is reported as failed because of the signal. A second signal ends
//! the process at once, for a run that does not come back to look.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

/// The signal received, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: libc::c_int) {
    if RECEIVED.swap(signal, Ordering::SeqCst) != 0 {
        // SAFETY: signal(2) and raise(3) are async-signal-safe; the second
        // signal ends the process as if no handler were installed.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

/// Record SIGINT and SIGTERM from now on instead of dying of them.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores an atomic (or re-raises).
        unsafe { libc::signal(signal, record as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

/// A signal that asked the run to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted(libc::c_int);

impl Interrupted {
    pub fn name(self) -> String {
        match self.0 {
            libc::SIGINT => "SIGINT".into(),
            libc::SIGTERM => "SIGTERM".into(),
            other => format!("signal {other}"),
        }
    }

    /// The exit status of a process the signal stopped: 128 + its number.
    pub fn status(self) -> i32 {
        128 + self.0
    }

    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self.status() as u8)
    }
}

/// Whether a signal asked the run to stop.
pub fn interrupted() -> Option<Interrupted> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Interrupted(signal)),
    }
}

/// Make the process `command` starts ignore SIGINT and SIGTERM from its first
/// instruction (an ignored disposition survives exec): the parent decides
/// when a worker stops.
pub fn ignored_by(command: &mut Command) {
    // SAFETY: between fork and exec the closure only calls signal(2), which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            Ok(())
        })
    };
}
