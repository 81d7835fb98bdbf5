//! A run as a picture: every durability point the faulty run went through,
//! in order, with the block and crank the host was at; for each database the
//! height it had acknowledged and the height that was durable on the
//! simulated disk at that point (what a power loss there would keep); the
//! crashes, I/O faults and recoveries the host saw; and the check that
//! failed, with what differs decoded. `build` gathers it after a pictured
//! run ([`crate::run::run_case_pictured`]); [`Timeline::svg`] draws it.
//!
//! The heights are read, not inferred: each point's power-loss image
//! (`Fs::surviving(&mut NothingPending)`) is written to a scratch directory
//! and opened with the store itself (SQLite's `storeMeta` height, kvStore's
//! `host.height`); at the store's commit points (point A, point B) the live
//! files are read the same way: what each database has acknowledged. So the
//! window between point A and point B, and a lost directory operation, show
//! as the two databases' heights apart. Only a pictured run pays for this.
//!
//! A new kind of durability point gets a row of its own ([`PointKind::ALL`]);
//! a new database would get its two lanes in [`Heights`] and `svg.rs`'s `LANES`.

mod heights;
mod notes;
mod svg;

use crate::check::Failure;
use crate::event::Event;
use crate::fault::PointKind;
use crate::run::{Case, SeedReport};
use crate::world::Captured;
use std::path::Path;
use store::kernel::HostInput;

/// What one database holds, as read from an image of the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Its file is not on the disk (not created yet, or lost).
    Absent,
    /// The database holds no block yet.
    Empty,
    /// The database holds this block.
    At(u64),
    /// The store could not open or read it.
    Unreadable,
}

impl Reading {
    /// The label of a lane segment: the height, `0`, `-` (absent) or `?`.
    pub fn label(self) -> String {
        match self {
            Reading::Absent => "-".into(),
            Reading::Empty => "0".into(),
            Reading::At(height) => height.to_string(),
            Reading::Unreadable => "?".into(),
        }
    }
}

/// The heights of both databases in one image of the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heights {
    /// The block SQLite's last commit recorded (`storeMeta`, key `height`).
    pub sqlite: Reading,
    /// kvStore's `host.height` (LMDB; SQLite's kv table in `unified`).
    pub kv: Reading,
}

/// One durability point of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub ordinal: u64,
    pub kind: PointKind,
    /// The block the host was running (0: the store's first open).
    pub height: u64,
    pub crank: u64,
    /// What a power loss here would keep.
    pub durable: Heights,
    /// At the store's commit points: what the live files hold, i.e. what
    /// the databases have acknowledged.
    pub acknowledged: Option<Heights>,
    /// The height the host's own database would keep at a power loss here.
    pub host_durable: Reading,
}

/// A run, ready to draw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// What ran, e.g. `seed 2, design length-zero`.
    pub title: String,
    /// The seed's options, as its trace header says them.
    pub options: String,
    /// Where kvStore lives: `LMDB`, or `SQLite` for `unified`.
    pub kv_database: &'static str,
    /// What each block's host inputs do, from block 1.
    pub blocks: Vec<String>,
    pub points: Vec<Point>,
    pub events: Vec<Event>,
    pub failure: Option<Failure>,
}

impl Timeline {
    /// This timeline under another title (a scenario's name instead of its seed).
    pub fn titled(self, title: String) -> Timeline {
        Timeline { title, ..self }
    }

    /// The picture, as SVG text: the same bytes for the same run.
    pub fn svg(&self) -> String {
        svg::draw(self)
    }
}

/// The timeline of `case`'s run that made `report`, going through `points`
/// (every point of the faulty run, with its disk); `scratch` is a directory
/// of the run's own to read images in.
pub(crate) fn build(case: &Case, report: &SeedReport, points: &[Captured], scratch: &Path) -> Timeline {
    let mut reader = heights::Reader::new(scratch, case);
    let points = points
        .iter()
        .map(|captured| Point {
            ordinal: captured.ordinal,
            kind: captured.kind,
            height: captured.at.height,
            crank: captured.at.crank,
            durable: reader.durable(&captured.disk),
            acknowledged: matches!(captured.kind, PointKind::PointA | PointKind::PointB)
                .then(|| reader.written(&captured.disk)),
            host_durable: reader.host_durable(&captured.disk),
        })
        .collect();
    let _ = std::fs::remove_dir_all(scratch);
    Timeline {
        title: format!("seed {}, design {}", case.seed, case.design),
        options: case.options.to_string(),
        kv_database: if case.design.uses_lmdb() { "LMDB" } else { "SQLite" },
        blocks: case.options.workload.iter().map(|inputs| block_note(inputs)).collect(),
        points,
        events: report.events.clone(),
        failure: report.failure.clone(),
    }
}

/// What a block's inputs do, in a few words: `create v1 v2; 3 sends; upgrade v4 to counter-v2`.
fn block_note(inputs: &[HostInput]) -> String {
    let created: Vec<&str> = inputs
        .iter()
        .filter_map(|i| match i {
            HostInput::CreateVat { vat, .. } => Some(vat.as_str()),
            _ => None,
        })
        .collect();
    let sends = inputs.iter().filter(|i| matches!(i, HostInput::Send { .. })).count();
    let mut parts = Vec::new();
    if !created.is_empty() {
        parts.push(format!("create {}", created.join(" ")));
    }
    if sends > 0 {
        parts.push(format!("{sends} send{}", if sends == 1 { "" } else { "s" }));
    }
    for input in inputs {
        if let HostInput::UpgradeVat { vat, bundle, .. } = input {
            parts.push(format!("upgrade {vat} to {bundle}"));
        }
    }
    if parts.is_empty() {
        "no input".into()
    } else {
        parts.join("; ")
    }
}
