//! Vat upgrades: a failed upgrade leaves the vat as it was (every design but
//! `erase`, whose failure is kept visible), a successful one raises the
//! incarnation and keeps durable data.

mod common;

use common::*;
use store::kernel::VatOutcome;
use store::{Design, Error, Kernel};

/// The id the next kernel promise will get.
fn next_promise_id(k: &Kernel) -> u64 {
    k.store().kv_get("kp.nextID").unwrap().map_or(0, |id| id.parse().unwrap())
}

/// Whether the upgrade allocated exactly one promise (`id`, its result) and
/// retired it: settled, and nobody subscribed to it.
fn upgrade_promise_retired(k: &Kernel, id: u64) -> bool {
    next_promise_id(k) == id + 1 && k.store().kv_get(&format!("kp{id}.state")).unwrap().is_none()
}

fn upgrade_outcome(bundle: &str, result: Result<u64, String>) -> VatOutcome {
    VatOutcome { vat: "v1".into(), action: "upgrade", bundle: bundle.into(), result }
}

/// v1 (counter-v1, multiplier 2) bumped twice, next to an idle v2; when
/// `upgraded_first`, v1 is then upgraded to counter-v2 (multiplier 5) and bumped.
fn setup(k: &mut Kernel, upgraded_first: bool) {
    run(k, &[create("v1", "counter-v1", 2), create("v2", "counter-v1", 3)]);
    run(k, &[bump("v1", 3), bump("v1", 4), bump("v2", 1)]);
    if upgraded_first {
        let report = run(k, &[upgrade("v1", "counter-v2", 5), bump("v1", 1)]);
        assert_eq!(report.outcomes, vec![upgrade_outcome("counter-v2", Ok(1))]);
    }
}

#[test]
fn failed_upgrade_leaves_the_vat_identical() {
    for design in SOUND {
        for upgraded_first in [false, true] {
            for (defect, reason) in DEFECTS {
                let ctx = format!("{design} / {defect} / upgraded_first={upgraded_first}");
                let dir = tempdir();
                let mut k = kernel(dir.path(), design, 2);
                setup(&mut k, upgraded_first);
                let before = status(&mut k, "v1");
                let other = status(&mut k, "v2");
                let (version, multiplier) = if upgraded_first { (2, 5) } else { (1, 2) };
                assert_eq!(before.incarnation, u64::from(upgraded_first), "{ctx}");

                let promise = next_promise_id(&k);
                let report = run(&mut k, &[upgrade("v1", defect, 9)]);
                assert_eq!(report.outcomes, vec![upgrade_outcome(defect, Err(reason.into()))], "{ctx}");
                assert_eq!((report.cranks, report.aborted_cranks), (1, 1), "{ctx}");
                assert!(report.committed.is_empty(), "{ctx}");
                assert!(upgrade_promise_retired(&k, promise), "{ctx}: the upgrade's result promise is retired");

                // Rebuilt by replay of its own span: identical in every respect.
                let after = status(&mut k, "v1");
                assert_eq!(after, before, "{ctx}: the failed upgrade changed the vat");
                assert_eq!(status(&mut k, "v2"), other, "{ctx}");

                // The vat keeps working with its old code.
                let report = run(&mut k, &[bump("v1", 2)]);
                assert_eq!((report.cranks, report.aborted_cranks), (1, 0), "{ctx}");
                assert_eq!(report.committed.len(), 1, "{ctx}");
                assert_eq!(report.committed[0].entry.r, None, "{ctx}");
                let bumped = status(&mut k, "v1");
                assert_eq!(count(&bumped), count(&before) + 2 * multiplier + version, "{ctx}");
                assert_eq!(bumped.end, before.end + 1, "{ctx}");
                assert_eq!(bumped.start, before.start, "{ctx}");
                assert_eq!(bumped.source, before.source, "{ctx}");
                assert_eq!(bumped.incarnation, before.incarnation, "{ctx}");

                // ... also once evicted and reloaded by replay, and after reopen.
                let rebuilds = k.worker_stats().rebuilds;
                k.evict_all();
                assert_eq!(status(&mut k, "v1"), bumped, "{ctx}: replay after eviction");
                assert_eq!(k.worker_stats().rebuilds, rebuilds + 1, "{ctx}");
                k.close();
                let mut k = kernel(dir.path(), design, 2);
                assert_eq!(status(&mut k, "v1"), bumped, "{ctx}: after reopen");
                let report = run(&mut k, &[bump("v1", 1)]);
                assert_eq!(report.aborted_cranks, 0, "{ctx}");
                assert_eq!(count(&status(&mut k, "v1")), count(&bumped) + multiplier + version, "{ctx}");
            }
        }
    }
}

/// The seed issue's bug, kept visible: `erase` deletes the old transcript in
/// SQLite, which the crank abort does not undo, so the old vat cannot be reloaded.
#[test]
fn erase_failed_upgrade_loses_the_transcript() {
    for (defect, reason) in DEFECTS {
        let dir = tempdir();
        let mut k = kernel(dir.path(), Design::Erase, 2);
        setup(&mut k, false);
        let before = status(&mut k, "v1");
        assert_eq!((before.start, before.end), (0, 3));
        let report = run(&mut k, &[upgrade("v1", defect, 9)]);
        assert_eq!(report.outcomes, vec![upgrade_outcome(defect, Err(reason.into()))], "{defect}");
        assert_eq!(report.aborted_cranks, 1, "{defect}");
        // kvStore still describes the old span, but SQLite has nothing of it.
        assert!(all_items(&k, "transcript-v1").is_empty(), "{defect}");
        match k.vat_status("v1") {
            Err(Error::TranscriptMissing { vat, position, start, end }) => {
                assert_eq!((vat.as_str(), position, start, end), ("v1", 0, 0, 3), "{defect}");
            }
            other => panic!("{defect}: expected TranscriptMissing, got {other:?}"),
        }
        // The untouched vat is fine.
        assert_eq!(status(&mut k, "v2").end, 2, "{defect}");
        // A delivery to the broken vat fails the block, and the kernel stays failed.
        match k.run_block(4, &[bump("v1", 1)]) {
            Err(Error::TranscriptMissing { vat, position: 0, .. }) => assert_eq!(vat, "v1"),
            other => panic!("{defect}: expected TranscriptMissing, got {other:?}"),
        }
        assert!(matches!(k.run_block(4, &[]), Err(Error::Poisoned(_))), "{defect}");
        // The failed block was not committed.
        k.close();
        let k = kernel(dir.path(), Design::Erase, 2);
        assert_eq!(k.last_committed_height().unwrap(), Some(3), "{defect}");
    }
}

fn expected_stream(design: Design, generation: u64) -> String {
    match design {
        Design::Generation => format!("transcript-v1.g{generation}"),
        _ => "transcript-v1".into(),
    }
}

#[test]
fn successful_upgrade_raises_incarnation_and_keeps_durable_data() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut k = kernel(dir.path(), design, 2);
        run(&mut k, &[create("v1", "counter-v1", 2)]);
        run(&mut k, &[bump("v1", 3), bump("v1", 4)]);
        let v1 = status(&mut k, "v1");
        // bump(n) adds n * multiplier + version: 3*2+1 = 7, then 7 + 4*2+1 = 16.
        assert_eq!(count(&v1), 16, "{design}");
        assert_eq!((v1.incarnation, v1.start, v1.end), (0, 0, 3), "{design}");
        assert_eq!(v1.stream, expected_stream(design, 1), "{design}");

        // v1 -> v2: stopVat at position 3, startVat of the new span.
        let promise = next_promise_id(&k);
        let report = run(&mut k, &[upgrade("v1", "counter-v2", 5)]);
        assert_eq!(report.outcomes, vec![upgrade_outcome("counter-v2", Ok(1))], "{design}");
        assert_eq!((report.cranks, report.aborted_cranks), (1, 0), "{design}");
        let names: Vec<_> = report.committed.iter().map(|c| (delivery_name(&c.entry), c.new_worker.clone())).collect();
        assert_eq!(names, vec![("stopVat".into(), None), ("startVat".into(), Some("counter-v2".into()))], "{design}");
        assert!(upgrade_promise_retired(&k, promise), "{design}: the upgrade's result promise is retired");

        let v2 = status(&mut k, "v1");
        assert_eq!(v2.incarnation, 1, "{design}");
        assert_eq!(v2.source, "counter-v2", "{design}");
        assert_eq!(v2.options, r#"{"multiplier":5}"#, "{design}");
        assert_eq!(v2.vatstore.get("count").map(String::as_str), Some("16"), "{design}");
        assert_eq!(v2.vatstore.get("kind.Counter").map(String::as_str), Some("counter-v2"), "{design}");
        assert_eq!(v2.vatstore.get("kind.Ledger").map(String::as_str), Some("counter-v2"), "{design}");
        // The old version saw startVat, two bumps and stopVat.
        assert_eq!(v2.vatstore.get("stoppedAfter").map(String::as_str), Some("4"), "{design}");
        assert_eq!(
            v2.heap_summary, "counter-v2 counter=16 deliveries=1 awaiting=0 settled=0 stopped=false",
            "{design}"
        );
        let (start, end) = match design {
            Design::StartPosition => (4, 5),
            _ => (0, 1),
        };
        assert_eq!((v2.start, v2.end), (start, end), "{design}");
        assert_eq!(v2.stream, expected_stream(design, 2), "{design}");
        assert_eq!(delivery_name(&entry_at(&k, &v2.stream, start)), "startVat", "{design}");

        // What is left of the old span in SQLite, per design.
        let stream = v2.stream.clone();
        let stored = positions(&all_items(&k, &stream));
        match design {
            Design::Erase | Design::RamBuffer | Design::Unified => {
                assert_eq!(stored, vec![0], "{design}")
            }
            Design::LengthZero => {
                assert_eq!(stored, vec![0, 1, 2, 3], "{design}");
                assert_eq!(delivery_name(&entry_at(&k, &stream, 1)), "bump", "{design}");
                assert_eq!(delivery_name(&entry_at(&k, &stream, 3)), "stopVat", "{design}");
            }
            Design::Generation => {
                assert_eq!(stored, vec![0], "{design}");
                let old = expected_stream(design, 1);
                assert_eq!(positions(&all_items(&k, &old)), vec![0, 1, 2, 3], "{design}");
                assert_eq!(delivery_name(&entry_at(&k, &old, 3)), "stopVat", "{design}");
            }
            Design::StartPosition => {
                assert_eq!(stored, vec![0, 1, 2, 3, 4], "{design}");
                assert_eq!(delivery_name(&entry_at(&k, &stream, 3)), "stopVat", "{design}");
            }
        }

        // The heap counter continues from the durable count: 16 + 1*5 + 2 = 23.
        run(&mut k, &[bump("v1", 1)]);
        let bumped = status(&mut k, "v1");
        assert_eq!(count(&bumped), 23, "{design}");
        assert!(bumped.heap_summary.starts_with("counter-v2 counter=23 deliveries=2 "), "{}", bumped.heap_summary);

        // v2 -> v3.
        let report = run(&mut k, &[upgrade("v1", "counter-v3", 1)]);
        assert_eq!(report.outcomes, vec![upgrade_outcome("counter-v3", Ok(2))], "{design}");
        let v3 = status(&mut k, "v1");
        assert_eq!((v3.incarnation, v3.source.as_str()), (2, "counter-v3"), "{design}");
        let (start, end) = match design {
            // The bump ended the span at 6, stopVat took 6.
            Design::StartPosition => (7, 8),
            _ => (0, 1),
        };
        assert_eq!((v3.start, v3.end), (start, end), "{design}");
        assert_eq!(v3.stream, expected_stream(design, 3), "{design}");
        assert_eq!(v3.vatstore.get("stoppedAfter").map(String::as_str), Some("3"), "{design}");
        run(&mut k, &[bump("v1", 1)]);
        let last = status(&mut k, "v1");
        // 23 + 1*1 + 3 = 27.
        assert_eq!(count(&last), 27, "{design}");

        // Replay and reopen rebuild the same vat.
        k.evict_all();
        assert_eq!(status(&mut k, "v1"), last, "{design}: after eviction");
        k.close();
        let mut k = kernel(dir.path(), design, 2);
        assert_eq!(status(&mut k, "v1"), last, "{design}: after reopen");
    }
}
