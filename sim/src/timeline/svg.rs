//! A timeline drawn as SVG, by hand: plain shapes and text, integer
//! coordinates, no script, so that the bytes depend on the run alone and the
//! picture shows the same in a browser and on GitHub.
//!
//! Top to bottom: the title and legend; the axis (the run's crash-point
//! ordinals, one cell per durability point); the block the host was running;
//! a row per kind of point ([`PointKind::ALL`], a colour each); the lanes of
//! heights ([`LANES`]: per database what it acknowledged and what is
//! durable, and the block the host saw committed), orange where the two
//! databases are apart; the numbered markers of crashes, I/O faults and
//! recoveries, with a line down the chart; then the blocks' inputs and the
//! story in words, the failure decoded.

use super::{notes, Heights, Reading, Timeline};
use crate::event::Event;
use crate::fault::PointKind;
use std::fmt::Write;

/// Room for the row labels on the left.
const LEFT: i64 = 200;
const RIGHT: i64 = 24;
/// The narrowest picture (the text panel needs the room).
const MIN_WIDTH: i64 = 1000;
/// The chart aims at this width; a cell is 3 to 24 pixels wide.
const CHART_AIM: i64 = 1400;
/// A character of the 11-pixel monospace font is about 6.6 pixels wide.
const CHAR_TENTHS: i64 = 66;
const LINE: i64 = 15;
const KIND_ROW: i64 = 12;
const LANE_ROW: i64 = 16;
const MARK_ROW: i64 = 16;
const MARK_ROWS: usize = 3;
/// A colour per kind of point, by its place in [`PointKind::ALL`] (a new
/// kind without a colour of its own does not compile).
const PALETTE: [&str; PointKind::ALL.len()] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e", "#d62728", "#7f7f7f", "#17becf", "#bcbd22", "#e377c2",
    "#393b79",
];
const APART: &str = "#fdae6b";
const NO_PROCESS: &str = "#d9d9d9";

/// The lanes of heights, top to bottom: a label (`{kv}`: where kvStore
/// lives) and what the lane shows at each point.
const LANES: [(&str, Lane); 6] = [
    ("SQLite acknowledged", Lane::Acknowledged(Db::Sqlite)),
    ("{kv} acknowledged", Lane::Acknowledged(Db::Kv)),
    ("SQLite durable", Lane::Durable(Db::Sqlite)),
    ("{kv} durable", Lane::Durable(Db::Kv)),
    ("host database durable", Lane::HostDurable),
    ("host: seen committed", Lane::Host),
];

#[derive(Clone, Copy)]
enum Db {
    Sqlite,
    Kv,
}

#[derive(Clone, Copy)]
enum Lane {
    Acknowledged(Db),
    Durable(Db),
    /// The host's own database: what a power loss would keep.
    HostDurable,
    /// The block the host (the simulator's) saw committed.
    Host,
}

/// The SVG text of `timeline`.
pub(super) fn draw(timeline: &Timeline) -> String {
    let mut picture = Picture::new(timeline);
    picture.header();
    picture.axis();
    picture.blocks();
    picture.kinds();
    picture.lanes();
    picture.markers();
    picture.panel();
    picture.finish()
}

/// The picture being drawn: its geometry, the next free row, and the body.
struct Picture<'a> {
    timeline: &'a Timeline,
    step: i64,
    width: i64,
    y: i64,
    chart_top: i64,
    body: String,
}

impl<'a> Picture<'a> {
    fn new(timeline: &'a Timeline) -> Picture<'a> {
        let cells = timeline.points.len().max(1) as i64;
        let step = (CHART_AIM / cells).clamp(3, 24);
        let width = (LEFT + cells * step + RIGHT).max(MIN_WIDTH);
        Picture { timeline, step, width, y: 0, chart_top: 0, body: String::new() }
    }

    /// The left edge of cell `index` (the chart's right end past the last).
    fn x(&self, index: usize) -> i64 {
        LEFT + index.min(self.timeline.points.len()) as i64 * self.step
    }

    /// The cell of the point with `ordinal` (past the end if none is).
    fn cell(&self, ordinal: u64) -> usize {
        self.timeline.points.partition_point(|p| p.ordinal < ordinal)
    }

    fn text(&mut self, x: i64, y: i64, attrs: &str, text: &str) {
        let _ = writeln!(self.body, r#"<text x="{x}" y="{y}"{attrs}>{}</text>"#, escape(text));
    }

    fn rect(&mut self, (x, y, w, h): (i64, i64, i64, i64), fill: &str, tip: Option<&str>) {
        let tip = tip.map_or(String::new(), |t| format!("<title>{}</title>", escape(t)));
        let _ = writeln!(self.body, r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}">{tip}</rect>"#);
    }

    /// A row label on the left.
    fn label(&mut self, y: i64, text: &str) {
        self.text(LEFT - 8, y, r#" text-anchor="end""#, text);
    }

    /// Title, options, verdict, and the legend.
    fn header(&mut self) {
        let t = self.timeline;
        self.text(12, 20, r#" font-size="15" font-weight="bold""#, &format!("swingsim timeline: {}", t.title));
        self.text(12, 38, "", &t.options);
        let (colour, verdict) = match &t.failure {
            Some(f) => ("#b2182b", format!("FAILED {} at block {}", f.kind, f.height)),
            None => ("#1a7837", "passed".to_string()),
        };
        self.text(12, 56, &format!(r#" font-weight="bold" fill="{colour}""#), &verdict);
        self.legend(76);
        self.y = 112;
    }

    fn legend(&mut self, y: i64) {
        let mut x = 12;
        self.text(x, y, "", "points:");
        x += 64;
        for (index, kind) in PointKind::ALL.iter().enumerate() {
            self.rect((x, y - 9, 9, 9), PALETTE[index], None);
            self.text(x + 13, y, "", kind.name());
            x += 13 + kind.name().len() as i64 * CHAR_TENTHS / 10 + 14;
        }
        let y = y + 18;
        self.rect((12, y - 9, 9, 9), APART, None);
        self.text(25, y, "", "databases apart (point A to B, B to C, a lost file)");
        self.rect((470, y - 9, 9, 9), NO_PROCESS, None);
        self.text(483, y, "", "no process (died, not recovered yet)");
        self.text(740, y, "", "durable: kept by a power loss here");
    }

    /// Ordinals along the top, a tick every round number of cells.
    fn axis(&mut self) {
        self.chart_top = self.y;
        let every =
            [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].into_iter().find(|k| k * self.step >= 48).unwrap_or(2000);
        self.label(self.y + 10, "crash-point ordinal");
        let points = &self.timeline.points;
        for index in (0..points.len()).filter(|i| points[*i].ordinal as i64 % every == 0) {
            let (x, y) = (self.x(index), self.y);
            let _ = writeln!(self.body, r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#999"/>"##, y + 11, y + 15);
            self.text(x, y + 9, r#" font-size="9""#, &points[index].ordinal.to_string());
        }
        self.y += 16;
    }

    /// The block the host was running at each point, as bands.
    fn blocks(&mut self) {
        self.label(self.y + 12, "block (0: first open)");
        let heights: Vec<u64> = self.timeline.points.iter().map(|p| p.height).collect();
        for (start, end, height) in runs(&heights) {
            let (x, w) = (self.x(start), (end - start) as i64 * self.step);
            let fill = if height % 2 == 0 { "#f0f0f0" } else { "#dcdcdc" };
            let note = height.checked_sub(1).and_then(|index| self.timeline.blocks.get(index as usize));
            let tip = note.map(|note| format!("block {height}: {note}"));
            self.rect((x, self.y, w, 16), fill, tip.as_deref());
            let label = fitting(&[format!("block {height}"), height.to_string()], w);
            self.text(x + w / 2, self.y + 12, r#" text-anchor="middle""#, &label);
        }
        self.y += 20;
    }

    /// A row per kind of point, a mark at each point of it.
    fn kinds(&mut self) {
        for (index, kind) in PointKind::ALL.iter().enumerate() {
            self.label(self.y + 9, kind.name());
            let colour = PALETTE[index];
            let points: Vec<(usize, String)> = (self.timeline.points.iter().enumerate())
                .filter(|(_, p)| p.kind == *kind)
                .map(|(i, p)| (i, format!("ordinal {}: {kind}, block {}, crank {}", p.ordinal, p.height, p.crank)))
                .collect();
            for (cell, tip) in points {
                let w = (self.step - 2).max(1);
                self.rect((self.x(cell) + (self.step - w) / 2, self.y + 2, w, 8), colour, Some(&tip));
            }
            self.y += KIND_ROW;
        }
        self.y += 4;
    }

    /// The lanes of heights.
    fn lanes(&mut self) {
        let values: Vec<Vec<Option<Reading>>> = LANES.iter().map(|(_, lane)| self.lane(*lane)).collect();
        for (index, (label, lane)) in LANES.iter().enumerate() {
            self.label(self.y + 12, &label.replace("{kv}", &format!("kvStore ({})", self.timeline.kv_database)));
            // Orange where two databases hold other blocks: SQLite against
            // kvStore, and the host's database against kvStore (point C).
            let other = match lane {
                Lane::Acknowledged(_) | Lane::Durable(_) => Some(&values[index ^ 1]),
                Lane::HostDurable => Some(&values[3]),
                Lane::Host => None,
            };
            self.segments(&values[index], other);
            self.y += LANE_ROW + 2;
        }
    }

    /// One lane: a segment per run of equal readings, orange where `other`
    /// (the other database's lane) reads otherwise.
    fn segments(&mut self, values: &[Option<Reading>], other: Option<&Vec<Option<Reading>>>) {
        let apart: Vec<bool> = match other {
            Some(other) => values.iter().zip(other).map(|(a, b)| apart(*a, *b)).collect(),
            None => vec![false; values.len()],
        };
        let keyed: Vec<(Option<Reading>, bool)> = values.iter().copied().zip(apart).collect();
        for (start, end, (reading, apart)) in runs(&keyed) {
            let (x, w) = (self.x(start), (end - start) as i64 * self.step);
            let fill = match (reading, apart) {
                (None, _) => NO_PROCESS,
                (Some(_), true) => APART,
                (Some(Reading::At(h)), false) if h % 2 == 1 => "#c6dbef",
                (Some(Reading::Unreadable), false) => "#f4a582",
                (Some(_), false) => "#deebf7",
            };
            self.rect((x, self.y, w, LANE_ROW), fill, None);
            let label = reading.map_or(String::new(), |r| fitting(&[r.label()], w));
            self.text(x + w / 2, self.y + 12, r#" text-anchor="middle""#, &label);
        }
    }

    /// What `lane` shows at each point (`None`: no process).
    fn lane(&self, lane: Lane) -> Vec<Option<Reading>> {
        let pick = |heights: Heights, db: Db| match db {
            Db::Sqlite => heights.sqlite,
            Db::Kv => heights.kv,
        };
        match lane {
            Lane::Durable(db) => self.timeline.points.iter().map(|p| Some(pick(p.durable, db))).collect(),
            Lane::Acknowledged(db) => self.acknowledged().into_iter().map(|h| h.map(|h| pick(h, db))).collect(),
            Lane::HostDurable => self.timeline.points.iter().map(|p| Some(p.host_durable)).collect(),
            Lane::Host => self.host_seen().into_iter().map(|h| Some(height_reading(h))).collect(),
        }
    }

    /// What the live process had acknowledged at each point: nothing at the
    /// first open; what its commits wrote (read at points A and B); none
    /// while no process lives; what a recovered process found.
    fn acknowledged(&self) -> Vec<Option<Heights>> {
        let none = Heights { sqlite: Reading::Empty, kv: Reading::Empty };
        let mut state = Some(none);
        self.walk(|point, events| {
            for event in events {
                if event.ends_process() {
                    state = None;
                }
                if let Event::Recovered { height, sqlite_height, .. } = event {
                    let sqlite = sqlite_height.map_or(Reading::Empty, Reading::At);
                    state = Some(Heights { sqlite, kv: height_reading(*height) });
                }
            }
            state = point.acknowledged.or(state);
            state
        })
    }

    /// The block the host had seen committed at each point: before it saw
    /// any, the one before the block it runs.
    fn host_seen(&self) -> Vec<u64> {
        let mut seen: Option<u64> = None;
        self.walk(|point, events| {
            for event in events {
                if let Event::Acked { height, .. } | Event::Recovered { height, .. } = event {
                    seen = Some(*height);
                }
            }
            seen.unwrap_or(point.height.saturating_sub(1))
        })
    }

    /// `f` at each point, given the events that took effect since the previous one.
    fn walk<T>(&self, mut f: impl FnMut(&super::Point, &[&Event]) -> T) -> Vec<T> {
        let mut events: Vec<&Event> = self.timeline.events.iter().collect();
        events.sort_by_key(|e| notes::position(e));
        let mut next = 0;
        let mut out = Vec::with_capacity(self.timeline.points.len());
        for point in &self.timeline.points {
            let start = next;
            while next < events.len() && notes::position(events[next]) <= point.ordinal {
                next += 1;
            }
            out.push(f(point, &events[start..next]));
        }
        out
    }

    /// A numbered marker per event (as the story numbers them) and the
    /// failure's at the end, each with a line down the chart.
    fn markers(&mut self) {
        self.label(self.y + 12, "events (see below)");
        let marked: Vec<(i64, &str, bool)> = self.timeline.marked().into_iter().map(|e| self.marker(e)).collect();
        // The x of the last marker in each row: a marker takes the first row it fits in.
        let mut last: [Option<i64>; MARK_ROWS] = [None; MARK_ROWS];
        let failure = self.timeline.failure.as_ref().map(|_| (self.x(usize::MAX), "#b2182b", true));
        for (number, (x, colour, line)) in marked.into_iter().chain(failure).enumerate() {
            let fits = |row: &usize| last[*row].is_none_or(|left| x - left >= 18);
            let row = (0..MARK_ROWS).find(fits).unwrap_or(MARK_ROWS - 1);
            last[row] = Some(x);
            let y = self.y + row as i64 * MARK_ROW + 8;
            if line {
                let (top, stroke) = (self.chart_top + 14, format!(r#" stroke="{colour}" stroke-dasharray="3,2""#));
                let _ = writeln!(self.body, r#"<line x1="{x}" y1="{top}" x2="{x}" y2="{}"{stroke}/>"#, y - 7);
            }
            let _ = writeln!(self.body, r#"<circle cx="{x}" cy="{y}" r="7" fill="{colour}"/>"#);
            let attrs = r##" text-anchor="middle" font-size="9" fill="#fff" font-weight="bold""##;
            self.text(x, y + 3, attrs, &(number + 1).to_string());
        }
        self.y += MARK_ROW * MARK_ROWS as i64 + 8;
    }

    /// Where an event's marker goes, its colour, and whether it draws a line.
    fn marker(&self, event: &Event) -> (i64, &'static str, bool) {
        let x = match event {
            Event::Crash(point) => self.x(self.cell(point.ordinal)) + self.step / 2,
            other => self.x(self.cell(other.at())),
        };
        let (colour, line) = match event {
            Event::Crash(_) => ("#d62728", true),
            Event::Fault { .. } => ("#ff7f0e", true),
            Event::PowerCut { .. } => ("#9467bd", true),
            Event::Recovered { .. } => ("#1a9850", false),
            Event::Retry { .. } | Event::Liveness { .. } | Event::Acked { .. } => ("#737373", false),
        };
        (x, colour, line)
    }

    /// The blocks' inputs and the story, in words, wrapped to the width.
    fn panel(&mut self) {
        let columns = ((self.width - 24) * 10 / CHAR_TENTHS) as usize;
        let blocks: Vec<String> =
            self.timeline.blocks.iter().enumerate().map(|(i, note)| format!("{}: {note}", i + 1)).collect();
        let sections = [("blocks", blocks.join(" | ")), ("what happened", String::new())];
        for (heading, text) in sections {
            self.y += 6;
            self.text(12, self.y + 11, r#" font-weight="bold""#, heading);
            self.y += LINE;
            for line in wrap(&text, columns) {
                self.text(12, self.y + 11, "", &line);
                self.y += LINE;
            }
        }
        for line in self.timeline.story() {
            let detail = line.starts_with(' ');
            let attrs = if detail || line.contains("FAILED") { r##" fill="#b2182b""## } else { "" };
            // Continuation lines are indented: they get the columns the indent leaves.
            for (index, part) in wrap(line.trim_start(), columns - 5).into_iter().enumerate() {
                let indent = if index == 0 && !detail { 12 } else { 40 };
                self.text(indent, self.y + 11, attrs, &part);
                self.y += LINE;
            }
        }
    }

    fn finish(self) -> String {
        let (width, height) = (self.width, self.y + 12);
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="11">"#
        );
        let _ = writeln!(svg, r##"<rect width="{width}" height="{height}" fill="#fff"/>"##);
        svg.push_str(&self.body);
        svg.push_str("</svg>\n");
        svg
    }
}

/// Whether two databases' readings hold different blocks (a database not
/// created yet holds none; an unreadable one is compared with nothing).
fn apart(a: Option<Reading>, b: Option<Reading>) -> bool {
    let block = |reading: Option<Reading>| match reading? {
        Reading::Absent | Reading::Empty => Some(0),
        Reading::At(height) => Some(height),
        Reading::Unreadable => None,
    };
    matches!((block(a), block(b)), (Some(a), Some(b)) if a != b)
}

/// A height as a lane reads it (0: none yet).
fn height_reading(height: u64) -> Reading {
    if height == 0 {
        Reading::Empty
    } else {
        Reading::At(height)
    }
}

/// Runs of equal values: (first index, one past the last, value).
fn runs<T: PartialEq + Copy>(values: &[T]) -> Vec<(usize, usize, T)> {
    let mut out: Vec<(usize, usize, T)> = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match out.last_mut() {
            Some((_, end, last)) if last == value => *end = index + 1,
            _ => out.push((index, index + 1, *value)),
        }
    }
    out
}

/// The first of `labels` that fits in `width` pixels, or nothing.
fn fitting(labels: &[String], width: i64) -> String {
    let fits = |label: &&String| label.chars().count() as i64 * CHAR_TENTHS / 10 + 4 <= width;
    labels.iter().find(fits).cloned().unwrap_or_default()
}

/// `text` in lines of at most `columns` characters, broken at spaces where it can.
fn wrap(text: &str, columns: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > columns {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > columns {
            let cut: String = line.chars().take(columns).collect();
            line = line.chars().skip(columns).collect();
            lines.push(cut);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Text safe inside an SVG element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_equal_neighbours() {
        assert_eq!(runs(&[1, 1, 2, 1]), vec![(0, 2, 1), (2, 3, 2), (3, 4, 1)]);
        assert!(runs::<u8>(&[]).is_empty());
    }

    #[test]
    fn wrapping_keeps_every_character() {
        let text = "a bb ccc dddddddddddd e";
        let lines = wrap(text, 5);
        assert!(lines.iter().all(|l| l.chars().count() <= 5), "{lines:?}");
        assert_eq!(lines.join(" ").replace(' ', ""), text.replace(' ', ""));
        assert!(wrap("", 5).is_empty());
    }

    #[test]
    fn labels_fit_or_are_left_out() {
        let labels = ["block 12".to_string(), "12".to_string()];
        assert_eq!(fitting(&labels, 200), "block 12");
        assert_eq!(fitting(&labels, 20), "12");
        assert_eq!(fitting(&labels, 5), "");
        assert_eq!(escape("a<b & c>"), "a&lt;b &amp; c&gt;");
    }

    #[test]
    fn databases_are_apart_when_they_hold_other_blocks() {
        let at = |h| Some(Reading::At(h));
        assert!(apart(at(2), at(1)));
        assert!(apart(at(1), Some(Reading::Absent)), "a lost database file");
        assert!(!apart(Some(Reading::Empty), Some(Reading::Absent)), "no block in either");
        assert!(!apart(at(1), Some(Reading::Unreadable)) && !apart(at(1), None));
    }
}
