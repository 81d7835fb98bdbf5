//! The words of a timeline: each event the host saw, and the failure with
//! what differs decoded (the picture's text panel and a bug report's list).

use super::Timeline;
use crate::event::Event;

/// An event as a sentence.
pub(super) fn event(event: &Event) -> String {
    match event {
        Event::Crash(point) => {
            let window = if point.window { ", between point A and point B" } else { "" };
            let torn = match point.disk.torn.is_empty() {
                true => String::new(),
                false => format!("; torn: {}", point.disk.torn.join(", ")),
            };
            format!(
                "crash at {} (ordinal {}, {} {}, last crank {}){window}; the disk kept: {}{torn}",
                point.named, point.ordinal, point.database, point.file, point.at.crank, point.disk
            )
        }
        Event::Fault { record, effect } => {
            let window = if record.window { ", between point A and point B" } else { "" };
            format!("I/O fault {record}{window}: {}", effect.name())
        }
        Event::PowerCut { height, .. } => {
            format!("power cut: block {height} was acknowledged after an I/O fault; it must survive")
        }
        Event::Retry { height, .. } => format!("liveness: block {height} failed; the kernel restarts"),
        Event::Recovered { acked, height, sqlite_height, upgraded, restart, .. } => {
            let hangover = match restart.hangover {
                Some(sends) => format!("; the host applied the kernel's {sends} chain send(s) of it (the hangover)"),
                None => String::new(),
            };
            recovered(*acked, *height, *sqlite_height, *upgraded) + &hangover
        }
        Event::Liveness { from, .. } => format!("liveness: nothing more planned; blocks {from}.. must complete"),
        Event::Acked { height, .. } => format!("block {height} committed"),
    }
}

fn recovered(acked: u64, height: u64, sqlite: Option<u64>, upgraded: usize) -> String {
    let ahead = match sqlite {
        Some(sqlite) if sqlite > height => format!(" (SQLite holds block {sqlite})"),
        _ => String::new(),
    };
    let skip = match height == acked + 1 {
        true => "; the block in flight had committed: the host skips it",
        false => "",
    };
    let rebuilt = match upgraded {
        0 => String::new(),
        n => format!("; {n} upgraded vat(s) rebuilt by replay"),
    };
    format!("recovered at height {height}{ahead}, the host having seen block {acked} committed{skip}{rebuilt}")
}

impl Timeline {
    /// The events drawn as markers, in order on the axis (a block's
    /// acknowledgement is drawn in the host's lane instead).
    pub(super) fn marked(&self) -> Vec<&Event> {
        let mut events: Vec<&Event> = self.events.iter().filter(|e| !matches!(e, Event::Acked { .. })).collect();
        events.sort_by_key(|e| position(e));
        events
    }

    /// The text of the picture and of a report: each marked event numbered,
    /// then the failure and what differs, decoded.
    pub fn story(&self) -> Vec<String> {
        let mut lines: Vec<String> =
            self.marked().iter().enumerate().map(|(i, e)| format!("{}. {}", i + 1, event(e))).collect();
        match &self.failure {
            Some(failure) => {
                lines.push(format!("{}. FAILED {failure}", lines.len() + 1));
                lines.extend(failure.detail.iter().map(|line| format!("   {line}")));
            }
            None => lines.push("passed: every recovery and the end equal the reference".into()),
        }
        lines
    }
}

/// Where an event takes effect among the points: a crash at its own point
/// (after it), anything else before the point it stamps.
pub(super) fn position(event: &Event) -> u64 {
    match event {
        Event::Crash(point) => point.ordinal + 1,
        other => other.at(),
    }
}
