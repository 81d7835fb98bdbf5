//! Eviction and reload by replay rebuild exactly the same heaps; a tampered or
//! missing transcript item is reported with its vat and position.

mod common;

use common::*;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use store::vat::{Syscall, SyscallResult, TranscriptEntry};
use store::{Design, Error};

#[test]
fn eviction_and_reload_rebuild_the_same_heap() {
    for design in Design::ALL {
        let (small_dir, big_dir) = (tempdir(), tempdir());
        let mut small = kernel(small_dir.path(), design, 1);
        let mut big = kernel(big_dir.path(), design, 16);
        let blocks = chatty_blocks();
        for (i, inputs) in blocks.iter().enumerate() {
            let a = run(&mut small, inputs);
            let b = run(&mut big, inputs);
            // Evictions are invisible to consensus state.
            assert_eq!(a, b, "{design}: block {} reports differ", i + 1);
            assert_eq!(a.run_queue_left, 0, "{design}");
            assert_eq!(small.activity_hash().unwrap(), big.activity_hash().unwrap(), "{design}");
            assert_eq!(kv_digest(&small), kv_digest(&big), "{design}");
        }
        assert!(small.worker_stats().evictions > 0, "{design}: {:?}", small.worker_stats());
        assert!(small.worker_stats().replayed_deliveries > 0, "{design}");
        assert_eq!(big.worker_stats().evictions, 0, "{design}");

        // With 16 slots the heaps of v1, v3, v4 were never rebuilt: live heaps.
        let live = statuses(&mut big);
        assert_eq!(live.len(), 4);
        let small_statuses = statuses(&mut small);
        assert_eq!(small_statuses, live, "{design}: replayed heaps differ from live ones");
        big.evict_all();
        small.evict_all();
        assert_eq!(big.worker_stats().online, 0);
        assert_eq!(statuses(&mut big), live, "{design}: after evict_all");
        assert_eq!(statuses(&mut small), live, "{design}: after evict_all (cap 1)");
        assert_eq!(small.worker_stats().online, 1, "{design}");

        // Concrete values: forward adds n locally and passes n+1 along.
        let counts: Vec<_> = live.iter().map(count).collect();
        // v1: 1 + 11 + 1002 + (1*2+1) + 8 + 6; v2: 2 + (2*3+1) + 101 + 1000 + 7;
        // v3: 3 + 10 + 1001 + 6; v4: 4 + (1*7+1) + 12 + 100 + 5 + 7.
        assert_eq!(counts, vec![1031, 1117, 1020, 136], "{design}");
        for s in &live {
            assert!(s.heap_summary.contains(" awaiting=0 "), "{design}: {}", s.heap_summary);
            assert!(!s.vatstore.contains_key("boom"), "{design}");
        }
        assert_eq!(live[1].incarnation, 1, "{design}");
        assert!(live[0].heap_summary.contains(" settled=3 "), "{design}: {}", live[0].heap_summary);
    }
}

#[test]
fn workers_stay_within_the_cap() {
    let dir = tempdir();
    let mut k = kernel(dir.path(), Design::StartPosition, 2);
    let blocks = chatty_blocks();
    for inputs in &blocks {
        run(&mut k, inputs);
        assert!(k.worker_stats().online <= 2, "{:?}", k.worker_stats());
    }
    let stats = k.worker_stats();
    assert!(stats.evictions > 0 && stats.rebuilds > 0, "{stats:?}");
}

fn sqlite_path(dir: &Path) -> std::path::PathBuf {
    dir.join("swingstore.sqlite")
}

fn read_item(conn: &Connection, stream: &str, position: u64) -> String {
    conn.query_row(
        "SELECT item FROM streamItem WHERE streamName = ?1 AND position = ?2",
        params![stream, position as i64],
        |row| row.get(0),
    )
    .optional()
    .unwrap()
    .unwrap_or_else(|| panic!("no item {stream}[{position}]"))
}

fn write_item(conn: &Connection, stream: &str, position: u64, item: &str) {
    let n = conn
        .execute(
            "UPDATE streamItem SET item = ?3 WHERE streamName = ?1 AND position = ?2",
            params![stream, position as i64, item],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// v1 and v2 created, v1 bumped, upgraded to counter-v2 and bumped twice more
/// (so that in `start-position` the span does not start at 0).
fn tamper_setup(dir: &Path, design: Design) -> (store::VatStatus, store::VatStatus) {
    let mut k = kernel(dir, design, 2);
    run(&mut k, &[create("v1", "counter-v1", 2), create("v2", "counter-v1", 3)]);
    run(&mut k, &[bump("v1", 3), bump("v2", 1)]);
    run(&mut k, &[upgrade("v1", "counter-v2", 5)]);
    run(&mut k, &[bump("v1", 1), bump("v1", 2)]);
    let v1 = status(&mut k, "v1");
    let v2 = status(&mut k, "v2");
    k.close();
    (v1, v2)
}

#[test]
fn tampered_item_is_a_replay_divergence() {
    for design in Design::ALL {
        let dir = tempdir();
        let (v1, v2) = tamper_setup(dir.path(), design);
        let start = if design == Design::StartPosition { 3 } else { 0 };
        assert_eq!((v1.start, v1.end), (start, start + 3), "{design}");
        let position = v1.end - 1;

        // Change the vatstoreGet("count") result recorded in the last bump.
        let conn = Connection::open(sqlite_path(dir.path())).unwrap();
        let mut entry = TranscriptEntry::decode(&read_item(&conn, &v1.stream, position)).unwrap();
        let record = &mut entry.sc[0];
        assert_eq!(record.s, Syscall::VatstoreGet { key: "count".into() }, "{design}");
        // count: 3*2+1 = 7 under v1, then 7 + 1*5+2 = 14 under v2.
        assert_eq!(record.r, SyscallResult::Value { value: Some("14".into()) }, "{design}");
        record.r = SyscallResult::Value { value: Some("1000".into()) };
        write_item(&conn, &v1.stream, position, &entry.encode());
        drop(conn);

        let mut k = kernel(dir.path(), design, 2);
        match k.vat_status("v1") {
            Err(Error::ReplayDiverged { vat, position: p, expected, found }) => {
                assert_eq!((vat.as_str(), p), ("v1", position), "{design}");
                // Replay now sets 1000 + 2*5+2 instead of the recorded 14 + 12.
                assert!(expected.contains("\"26\""), "{design}: {expected}");
                assert!(found.contains("\"1012\""), "{design}: {found}");
            }
            other => panic!("{design}: expected ReplayDiverged, got {other:?}"),
        }
        // The other vat is unaffected.
        assert_eq!(status(&mut k, "v2"), v2, "{design}");
    }
}

#[test]
fn undecodable_item_is_a_replay_divergence() {
    for design in Design::ALL {
        let dir = tempdir();
        let (v1, _) = tamper_setup(dir.path(), design);
        let position = v1.start + 1;
        let conn = Connection::open(sqlite_path(dir.path())).unwrap();
        write_item(&conn, &v1.stream, position, "not json");
        drop(conn);
        let mut k = kernel(dir.path(), design, 2);
        match k.vat_status("v1") {
            Err(Error::ReplayDiverged { vat, position: p, .. }) => {
                assert_eq!((vat.as_str(), p), ("v1", position), "{design}")
            }
            other => panic!("{design}: expected ReplayDiverged, got {other:?}"),
        }
    }
}

#[test]
fn changed_delivery_outcome_is_a_replay_divergence() {
    for design in Design::ALL {
        let dir = tempdir();
        let (v1, _) = tamper_setup(dir.path(), design);
        let position = v1.start + 1;
        let conn = Connection::open(sqlite_path(dir.path())).unwrap();
        let mut entry = TranscriptEntry::decode(&read_item(&conn, &v1.stream, position)).unwrap();
        assert_eq!(entry.r, None);
        entry.r = Some("it failed back then".into());
        write_item(&conn, &v1.stream, position, &entry.encode());
        drop(conn);
        let mut k = kernel(dir.path(), design, 2);
        match k.vat_status("v1") {
            Err(Error::ReplayDiverged { vat, position: p, expected, found }) => {
                assert_eq!((vat.as_str(), p), ("v1", position), "{design}");
                assert!(expected.contains("it failed back then"), "{design}: {expected}");
                assert_eq!(found, "null", "{design}");
            }
            other => panic!("{design}: expected ReplayDiverged, got {other:?}"),
        }
    }
}

#[test]
fn deleted_item_is_reported_missing() {
    for design in Design::ALL {
        let dir = tempdir();
        let (v1, v2) = tamper_setup(dir.path(), design);
        let position = v1.start + 1;
        let conn = Connection::open(sqlite_path(dir.path())).unwrap();
        let n = conn
            .execute(
                "DELETE FROM streamItem WHERE streamName = ?1 AND position = ?2",
                params![v1.stream, position as i64],
            )
            .unwrap();
        assert_eq!(n, 1);
        drop(conn);
        let mut k = kernel(dir.path(), design, 2);
        match k.vat_status("v1") {
            Err(Error::TranscriptMissing { vat, position: p, start, end }) => {
                assert_eq!((vat.as_str(), p, start, end), ("v1", position, v1.start, v1.end), "{design}");
            }
            other => panic!("{design}: expected TranscriptMissing, got {other:?}"),
        }
        assert_eq!(status(&mut k, "v2"), v2, "{design}");
        // A delivery to the vat fails the block with the same error.
        let height = k.last_committed_height().unwrap().unwrap() + 1;
        match k.run_block(height, &[bump("v1", 1)]) {
            Err(Error::TranscriptMissing { vat, position: p, .. }) => {
                assert_eq!((vat.as_str(), p), ("v1", position), "{design}")
            }
            other => panic!("{design}: expected TranscriptMissing, got {other:?}"),
        }
    }
}
