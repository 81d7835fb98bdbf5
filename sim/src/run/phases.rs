//! Wall-clock time spent in each phase of the seeds run on this thread, for
//! `cargo xtask bench`. Measured with the real monotonic clock (madsim
//! replaces `clock_gettime` inside a run); it never reaches a result.

use std::cell::Cell;

/// Seconds per phase.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phases {
    /// The reference run (its per-block snapshots, oracle and captures included).
    pub reference: f64,
    /// Restarting from crash images and rebuilding every vat by replay.
    pub recovery: f64,
    /// Blocks the faulty run executes after a recovery.
    pub faulty: f64,
    /// Comparisons with the reference and the oracle, and the final replay check.
    pub checks: f64,
}

thread_local! {
    static PHASES: Cell<Phases> = const {
        Cell::new(Phases { reference: 0.0, recovery: 0.0, faulty: 0.0, checks: 0.0 })
    };
    /// Whether phases are timed on this thread (off: no clock reads at all).
    static TIMING: Cell<bool> = const { Cell::new(false) };
}

/// Time the phases of the seeds run on this thread from now on (or stop).
pub fn time_phases(on: bool) {
    TIMING.with(|t| t.set(on));
}

/// The phase times accumulated on this thread since the last call.
pub fn take_phases() -> Phases {
    PHASES.with(|p| p.take())
}

/// Seconds on the real monotonic clock (a raw syscall: madsim's `clock_gettime` is simulated).
pub fn real_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts as *mut libc::timespec) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The start of a timed phase (0 when phases are not timed).
pub(super) fn phase_clock() -> f64 {
    match TIMING.with(Cell::get) {
        true => real_seconds(),
        false => 0.0,
    }
}

/// Add the time since `started` to the phase `field` picks.
pub(super) fn add_phase(field: impl FnOnce(&mut Phases) -> &mut f64, started: f64) {
    if !TIMING.with(Cell::get) {
        return;
    }
    let elapsed = real_seconds() - started;
    PHASES.with(|p| {
        let mut phases = p.get();
        *field(&mut phases) += elapsed;
        p.set(phases);
    });
}
