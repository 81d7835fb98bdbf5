//! Crank buffers in kvStore (abort leaves no trace, commit keeps, read order), and
//! stream reads that stop at the end position kvStore holds.

mod common;

use common::*;
use std::collections::BTreeMap;
use store::{Design, Error};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn get(s: &store::SwingStore, key: &str) -> Option<String> {
    s.kv_get(key).unwrap()
}

#[test]
fn crank_abort_leaves_no_trace_in_kv_reads() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut s = swing_store(dir.path(), design);
        s.kv_set("a", "1").unwrap();
        s.kv_set("b", "2").unwrap();
        s.kv_set("c", "3").unwrap();
        s.commit().unwrap();

        // Block buffer over the database.
        s.kv_set("b", "20").unwrap();
        s.kv_delete("c").unwrap();
        assert_eq!(s.kv_scan("").unwrap(), map(&[("a", "1"), ("b", "20")]), "{design}");

        // Crank buffer over the block buffer over the database.
        s.begin_crank().unwrap();
        s.kv_set("a", "100").unwrap();
        s.kv_set("d", "4").unwrap();
        s.kv_delete("b").unwrap();
        s.kv_set("c", "30").unwrap();
        assert_eq!(get(&s, "a").as_deref(), Some("100"), "{design}");
        assert_eq!(get(&s, "b"), None, "{design}");
        assert_eq!(get(&s, "c").as_deref(), Some("30"), "{design}");
        assert_eq!(get(&s, "d").as_deref(), Some("4"), "{design}");
        assert_eq!(s.kv_scan("").unwrap(), map(&[("a", "100"), ("c", "30"), ("d", "4")]), "{design}");
        let crank: Vec<_> = s.crank_writes().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(
            crank,
            vec![
                ("a".to_string(), Some("100".to_string())),
                ("b".to_string(), None),
                ("c".to_string(), Some("30".to_string())),
                ("d".to_string(), Some("4".to_string())),
            ],
            "{design}"
        );
        s.abort_crank().unwrap();
        assert!(s.crank_writes().is_none(), "{design}");
        assert_eq!(get(&s, "a").as_deref(), Some("1"), "{design}: abort must restore the db value");
        assert_eq!(get(&s, "b").as_deref(), Some("20"), "{design}: abort must restore the block value");
        assert_eq!(get(&s, "c"), None, "{design}: abort must restore the block delete");
        assert_eq!(get(&s, "d"), None, "{design}: abort must drop a new key");
        assert_eq!(s.kv_scan("").unwrap(), map(&[("a", "1"), ("b", "20")]), "{design}");

        // A committed crank keeps its writes (into the block buffer).
        s.begin_crank().unwrap();
        s.kv_set("a", "7").unwrap();
        s.kv_delete("b").unwrap();
        s.kv_set("e", "5").unwrap();
        s.commit_crank().unwrap();
        assert_eq!(s.kv_scan("").unwrap(), map(&[("a", "7"), ("e", "5")]), "{design}");
        s.commit().unwrap();
        assert_eq!(s.kv_scan("").unwrap(), map(&[("a", "7"), ("e", "5")]), "{design}");

        // Uncommitted block-buffer writes are gone after close and reopen.
        s.kv_set("a", "8").unwrap();
        s.kv_set("f", "6").unwrap();
        s.kv_delete("e").unwrap();
        s.begin_crank().unwrap();
        s.kv_set("g", "9").unwrap();
        s.commit_crank().unwrap();
        assert_eq!(s.kv_scan("").unwrap(), map(&[("a", "8"), ("f", "6"), ("g", "9")]), "{design}");
        s.close();
        let s = swing_store(dir.path(), design);
        assert_eq!(s.kv_scan("").unwrap(), map(&[("a", "7"), ("e", "5")]), "{design}: after reopen");
    }
}

#[test]
fn prefix_scan_merges_all_three_levels() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut s = swing_store(dir.path(), design);
        for (k, v) in [("p.1", "db1"), ("p.2", "db2"), ("p.3", "db3"), ("q.1", "other"), ("p", "bare")] {
            s.kv_set(k, v).unwrap();
        }
        s.commit().unwrap();
        s.kv_set("p.2", "block2").unwrap();
        s.kv_delete("p.3").unwrap();
        s.kv_set("p.4", "block4").unwrap();
        s.begin_crank().unwrap();
        s.kv_set("p.4", "crank4").unwrap();
        s.kv_delete("p.1").unwrap();
        s.kv_set("p.5", "crank5").unwrap();
        s.kv_set("pz", "not-dotted").unwrap();
        assert_eq!(
            s.kv_scan("p.").unwrap(),
            map(&[("p.2", "block2"), ("p.4", "crank4"), ("p.5", "crank5")]),
            "{design}"
        );
        assert_eq!(s.kv_scan("q").unwrap(), map(&[("q.1", "other")]), "{design}");
        assert_eq!(s.kv_scan("r").unwrap(), BTreeMap::new(), "{design}");
        s.abort_crank().unwrap();
        assert_eq!(
            s.kv_scan("p").unwrap(),
            map(&[("p", "bare"), ("p.1", "db1"), ("p.2", "block2"), ("p.4", "block4")]),
            "{design}"
        );
    }
}

#[test]
fn crank_calls_out_of_order_are_misuse() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut s = swing_store(dir.path(), design);
        assert!(matches!(s.commit_crank(), Err(Error::Misuse(_))), "{design}");
        assert!(matches!(s.abort_crank(), Err(Error::Misuse(_))), "{design}");
        s.begin_crank().unwrap();
        s.kv_set("k", "v").unwrap();
        assert!(matches!(s.begin_crank(), Err(Error::Misuse(_))), "{design}");
        assert!(matches!(s.commit(), Err(Error::Misuse(_))), "{design}");
        // Misuse does not poison: the crank is still open and usable.
        assert_eq!(get(&s, "k").as_deref(), Some("v"), "{design}");
        s.commit_crank().unwrap();
        s.commit().unwrap();
        s.close();
        let s = swing_store(dir.path(), design);
        assert_eq!(get(&s, "k").as_deref(), Some("v"), "{design}");
    }
}

/// Whether a stream write of an aborted crank stays in SQLite (past the end).
fn aborted_item_survives(design: Design) -> bool {
    !matches!(design, Design::RamBuffer | Design::Unified)
}

#[test]
fn stream_reads_stop_at_the_end_position() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut k = kernel(dir.path(), design, 2);
        run(&mut k, &[create("v1", "counter-v1", 2)]);
        run(&mut k, &[bump("v1", 3)]);
        let before = status(&mut k, "v1");
        assert_eq!((before.start, before.end), (0, 2), "{design}");
        let stream = before.stream.clone();
        // create-vat begins the first incarnation: generation 0 -> 1.
        let expected_stream = if design == Design::Generation { "transcript-v1.g1" } else { "transcript-v1" };
        assert_eq!(stream, expected_stream);

        let report = run(&mut k, &[explode("v1")]);
        assert_eq!((report.cranks, report.aborted_cranks), (1, 1), "{design}");
        assert!(report.committed.is_empty(), "{design}");

        // The span is unchanged: the explode is not in it.
        let after = status(&mut k, "v1");
        assert_eq!(after, before, "{design}: an aborted crank changed the vat");
        assert!(!after.vatstore.contains_key("boom"), "{design}");
        assert_eq!(positions(&span_items(&k, "v1")), vec![0, 1], "{design}");

        // ... but the item was written to SQLite past the end (per design).
        let raw = k.store().stream_read(&stream, 0, 3).unwrap();
        if aborted_item_survives(design) {
            assert_eq!(positions(&raw), vec![0, 1, 2], "{design}");
            let entry = entry_at(&k, &stream, 2);
            assert_eq!(delivery_name(&entry), "explode", "{design}");
            assert_eq!(entry.r.as_deref(), Some("explode: vat threw"), "{design}");
        } else {
            assert_eq!(positions(&raw), vec![0, 1], "{design}: the aborted crank's item must be undone");
        }

        // The explode's result promise (kp1: kp0 was the bump's) is settled
        // (rejected) and, nobody subscribed, retired at once.
        assert_eq!(k.store().kv_get("kp.nextID").unwrap().as_deref(), Some("2"), "{design}");
        assert_eq!(k.store().kv_get("kp1.state").unwrap(), None, "{design}");

        // A later delivery overwrites that position.
        let report = run(&mut k, &[bump("v1", 1)]);
        assert_eq!((report.cranks, report.aborted_cranks), (1, 0), "{design}");
        let now = status(&mut k, "v1");
        assert_eq!((now.start, now.end), (0, 3), "{design}");
        assert_eq!(positions(&span_items(&k, "v1")), vec![0, 1, 2], "{design}");
        assert_eq!(positions(&all_items(&k, &stream)), vec![0, 1, 2], "{design}");
        let entry = entry_at(&k, &stream, 2);
        assert_eq!(delivery_name(&entry), "bump", "{design}");
        assert_eq!(entry.r, None, "{design}");
        // count: 3*2+1 = 7, then 7 + 1*2 + 1 = 10.
        assert_eq!(now.vatstore.get("count").map(String::as_str), Some("10"), "{design}");
        k.evict_all();
        assert_eq!(status(&mut k, "v1"), now, "{design}: replay after the overwrite");
    }
}

#[test]
fn ram_buffer_and_unified_undo_stream_ops_of_an_aborted_crank() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut s = swing_store(dir.path(), design);
        s.stream_write("s", 0, "zero").unwrap();
        s.stream_write("s", 1, "one").unwrap();
        s.commit().unwrap();

        s.begin_crank().unwrap();
        s.stream_write("s", 1, "ONE").unwrap();
        s.stream_write("s", 2, "two").unwrap();
        // Inside the crank, reads see the crank's writes in every design.
        let inside: Vec<_> = s.stream_read("s", 0, 10).unwrap();
        assert_eq!(inside, vec![(0, "zero".into()), (1, "ONE".into()), (2, "two".into())], "{design}");
        // A read range excludes positions outside it.
        assert_eq!(s.stream_read("s", 1, 2).unwrap(), vec![(1, "ONE".to_string())], "{design}");
        s.abort_crank().unwrap();
        let after = s.stream_read("s", 0, 10).unwrap();
        if aborted_item_survives(design) {
            assert_eq!(
                after,
                vec![(0, "zero".into()), (1, "ONE".into()), (2, "two".into())],
                "{design}: stream writes are not undone by a crank abort"
            );
        } else {
            assert_eq!(after, vec![(0, "zero".into()), (1, "one".into())], "{design}");
        }

        s.begin_crank().unwrap();
        s.stream_delete("s").unwrap();
        assert_eq!(s.stream_read("s", 0, 10).unwrap(), vec![], "{design}");
        s.abort_crank().unwrap();
        let expected_len = if aborted_item_survives(design) { 0 } else { 2 };
        assert_eq!(s.stream_read("s", 0, 10).unwrap().len(), expected_len, "{design}");

        // Nothing uncommitted survives a reopen.
        s.close();
        let s = swing_store(dir.path(), design);
        assert_eq!(s.stream_read("s", 0, 10).unwrap(), vec![(0, "zero".into()), (1, "one".into())], "{design}");
    }
}
