//! Close and reopen after a commit keeps everything; work that was never
//! committed is gone.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use store::{Design, Error, Kernel, KernelConfig, Observer, Point, StoreConfig, VatStatus};

/// Everything a reopen must preserve.
#[derive(Debug, PartialEq)]
struct Snapshot {
    height: Option<u64>,
    kv: BTreeMap<String, String>,
    kv_digest: String,
    activity_hash: String,
    statuses: Vec<VatStatus>,
    spans: Vec<Vec<(u64, String)>>,
    streams: Vec<Vec<(u64, String)>>,
}

fn snapshot(k: &mut Kernel) -> Snapshot {
    let statuses = statuses(k);
    let vats = k.vat_ids().unwrap();
    Snapshot {
        height: k.last_committed_height().unwrap(),
        kv: k.store().kv_scan("").unwrap(),
        kv_digest: kv_digest(k),
        activity_hash: k.activity_hash().unwrap(),
        spans: vats.iter().map(|v| span_items(k, v)).collect(),
        streams: statuses.iter().map(|s| all_items(k, &s.stream)).collect(),
        statuses,
    }
}

#[test]
fn reopen_after_commit_keeps_everything() {
    for design in Design::ALL {
        let (dir, reference_dir) = (tempdir(), tempdir());
        let mut reference = kernel(reference_dir.path(), design, 2);
        let mut k = kernel(dir.path(), design, 2);
        for (i, inputs) in chatty_blocks().iter().enumerate() {
            let expected = run(&mut reference, inputs);
            // The reopened kernel runs the block exactly as one never closed.
            assert_eq!(run(&mut k, inputs), expected, "{design}: block {}", i + 1);
            let before = snapshot(&mut k);
            assert_eq!(before.height, Some(i as u64 + 1), "{design}");
            assert_eq!(before.activity_hash, reference.activity_hash().unwrap(), "{design}");
            assert_eq!(before.activity_hash.len(), 16, "{design}");
            k.close();
            k = kernel(dir.path(), design, 2);
            assert_eq!(k.worker_stats().online, 0, "{design}");
            assert_eq!(snapshot(&mut k), before, "{design}: block {} reopened", i + 1);
        }
        assert_eq!(k.vat_ids().unwrap(), vec!["v1", "v2", "v3", "v4"], "{design}");
    }
}

#[test]
fn uncommitted_store_writes_are_gone_after_reopen() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut k = kernel(dir.path(), design, 2);
        for inputs in chatty_blocks().iter().take(3) {
            run(&mut k, inputs);
        }
        let before = snapshot(&mut k);
        let v1 = before.statuses[0].clone();
        k.close();

        // Writes of a block that is never committed, at block and crank level.
        let mut s = swing_store(dir.path(), design);
        s.kv_set("v1.vs.count", "999999").unwrap();
        s.kv_set("host.height", "77").unwrap();
        s.kv_delete("v2.source").unwrap();
        s.kv_set("new.key", "x").unwrap();
        s.stream_write(&v1.stream, v1.end, "an item past the end").unwrap();
        s.stream_write(&v1.stream, v1.start, "an overwritten item").unwrap();
        s.stream_delete(&before.statuses[2].stream).unwrap();
        s.begin_crank().unwrap();
        s.kv_set("v1.t.endPosition", "1000").unwrap();
        s.stream_write(&v1.stream, v1.start + 1, "written in a crank").unwrap();
        s.commit_crank().unwrap();
        assert_eq!(s.kv_get("v1.vs.count").unwrap().as_deref(), Some("999999"), "{design}");
        assert_eq!(s.stream_read(&v1.stream, v1.start, v1.start + 1).unwrap()[0].1, "an overwritten item");
        drop(s);

        let mut k = kernel(dir.path(), design, 2);
        assert_eq!(snapshot(&mut k), before, "{design}: uncommitted writes survived a reopen");
        assert_eq!(k.store().kv_get("new.key").unwrap(), None, "{design}");
        assert_eq!(all_items(&k, &v1.stream).iter().filter(|(p, _)| *p >= v1.end).count(), 0, "{design}");
    }
}

/// Stops the store at a durability point, once armed: lets `skip` matching
/// points pass, then fails the next one.
struct StopAt {
    point: fn(&Point) -> bool,
    skip: AtomicU64,
    armed: Arc<AtomicBool>,
}

impl Observer for StopAt {
    fn reached(&self, point: Point) -> Result<(), store::Stop> {
        if !self.armed.load(Ordering::SeqCst) || !(self.point)(&point) {
            return Ok(());
        }
        match self.skip.load(Ordering::SeqCst) {
            0 => Err(store::Stop),
            n => {
                self.skip.store(n - 1, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}

fn interrupted_block_is_not_committed(design: Design, point: fn(&Point) -> bool, skip: u64) {
    let (dir, reference_dir) = (tempdir(), tempdir());
    let mut reference = kernel(reference_dir.path(), design, 2);
    let armed = Arc::new(AtomicBool::new(false));
    let mut config = StoreConfig::new(design);
    config.observer = Box::new(StopAt { point, skip: AtomicU64::new(skip), armed: armed.clone() });
    let kernel_config = KernelConfig { max_workers_online: 2, ..KernelConfig::default() };
    let mut k = Kernel::open(dir.path(), config, kernel_config).unwrap();
    let blocks = chatty_blocks();
    for inputs in &blocks[..3] {
        run(&mut reference, inputs);
        run(&mut k, inputs);
    }
    let before = snapshot(&mut k);

    armed.store(true, Ordering::SeqCst);
    match k.run_block(4, &blocks[3]) {
        Err(Error::Interrupted(_)) => {}
        other => panic!("{design}: expected Interrupted, got {other:?}"),
    }
    assert!(matches!(k.run_block(4, &blocks[3]), Err(Error::Poisoned(_))), "{design}");
    assert!(matches!(k.vat_status("v1"), Err(Error::Poisoned(_))), "{design}");
    drop(k);

    let mut k = kernel(dir.path(), design, 2);
    assert_eq!(snapshot(&mut k), before, "{design}: the interrupted block left traces");
    // The host runs the block again: same result as a kernel never interrupted.
    let expected = run(&mut reference, &blocks[3]);
    assert_eq!(run(&mut k, &blocks[3]), expected, "{design}");
    assert_eq!(k.activity_hash().unwrap(), reference.activity_hash().unwrap(), "{design}");
    assert_eq!(statuses(&mut k), statuses(&mut reference), "{design}");
}

/// How many cranks block 4 of the chatty workload runs.
fn cranks_of_block_4(design: Design) -> u64 {
    let dir = tempdir();
    let mut k = kernel(dir.path(), design, 2);
    let blocks = chatty_blocks();
    blocks[..4].iter().map(|inputs| run(&mut k, inputs)).last().expect("four blocks").cranks
}

#[test]
fn block_interrupted_at_its_last_crank_is_gone() {
    for design in Design::ALL {
        let last = cranks_of_block_4(design) - 1;
        assert!(last > 3, "{design}: block 4 has {} cranks: the mid-block test covers it", last + 1);
        interrupted_block_is_not_committed(design, |p| matches!(p, Point::CrankStart { height: 4, .. }), last);
    }
}

#[test]
fn block_interrupted_mid_block_is_gone() {
    for design in Design::ALL {
        // Block 4 upgrades v2 and delivers two messages, then stops at its fourth crank.
        interrupted_block_is_not_committed(design, |p| matches!(p, Point::CrankStart { height: 4, .. }), 3);
    }
}

#[test]
fn reopen_with_nothing_committed_is_empty() {
    for design in Design::ALL {
        let dir = tempdir();
        let k = kernel(dir.path(), design, 2);
        assert_eq!(k.last_committed_height().unwrap(), None, "{design}");
        assert!(k.vat_ids().unwrap().is_empty(), "{design}");
        assert_eq!(k.activity_hash().unwrap(), "", "{design}");
        k.close();
        let mut k = kernel(dir.path(), design, 2);
        run(&mut k, &[]);
        assert_eq!(k.last_committed_height().unwrap(), Some(1), "{design}");
        k.close();
        let k = kernel(dir.path(), design, 2);
        assert_eq!(k.last_committed_height().unwrap(), Some(1), "{design}");
        assert_eq!(k.store().kv_scan("").unwrap().len(), 1, "{design}: only host.height");
    }
}
