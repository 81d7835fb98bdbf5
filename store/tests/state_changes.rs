//! Every kind of kv change in committed and aborted cranks: vatstore deletes,
//! exports dropped from the c-list, promises retired once nobody needs them,
//! and chain sends recorded with the block (an aborted crank's discarded).

mod common;

use common::*;
use store::kernel::{ChainSend, PromiseState};
use store::vat::{Delivery, Resolution, Syscall};
use store::{Design, HostInput, Kernel, KernelConfig, Mutant, StoreConfig};

fn stash(vat: &str, n: i64) -> HostInput {
    send(vat, "stash", &[&n.to_string()])
}

fn clear(vat: &str, n: i64) -> HostInput {
    send(vat, "clear", &[&n.to_string()])
}

fn publish(vat: &str, n: i64) -> HostInput {
    send(vat, "publish", &[&n.to_string()])
}

fn kv(k: &Kernel, key: &str) -> Option<String> {
    k.store().kv_get(key).unwrap()
}

fn chain_send(vat: &str, body: &str) -> ChainSend {
    ChainSend { vat: vat.into(), body: body.into() }
}

fn promise(k: &Kernel, id: &str) -> Option<PromiseState> {
    kv(k, &format!("{id}.state")).map(|text| serde_json::from_str(&text).unwrap())
}

/// stash sets (then overwrites) a vatstore key and exports its object; clear
/// deletes both; the deletes reach the database and replay makes the same
/// syscalls.
#[test]
fn vatstore_deletes_and_dropped_exports() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut k = kernel(dir.path(), design, 2);
        run(&mut k, &[create("v1", "counter-v1", 2)]);
        run(&mut k, &[stash("v1", 5)]);
        assert_eq!(status(&mut k, "v1").vatstore.get("stash.1").map(String::as_str), Some("5@0"), "{design}");
        assert_eq!(kv(&k, "v1.c.o+1").as_deref(), Some("ko0"), "{design}");

        // Overwrite slot 1 (its export stays as it was), export slot 2.
        run(&mut k, &[bump("v1", 1), stash("v1", 1), stash("v1", 2)]);
        let v1 = status(&mut k, "v1");
        assert_eq!(v1.vatstore.get("stash.1").map(String::as_str), Some("1@3"), "{design}");
        assert_eq!(v1.vatstore.get("stash.2").map(String::as_str), Some("2@3"), "{design}");
        assert_eq!((kv(&k, "v1.c.o+1").as_deref(), kv(&k, "v1.c.o+2").as_deref()), (Some("ko0"), Some("ko1")));

        // clear(5) is slot 1: the key and the export go, slot 2 stays.
        run(&mut k, &[clear("v1", 5)]);
        let cleared = status(&mut k, "v1");
        assert!(!cleared.vatstore.contains_key("stash.1"), "{design}");
        assert_eq!(kv(&k, "v1.c.o+1"), None, "{design}");
        assert_eq!(kv(&k, "v1.c.o+2").as_deref(), Some("ko1"), "{design}");

        // Clearing an empty slot only reads it.
        let report = run(&mut k, &[clear("v1", 1)]);
        let calls: Vec<&Syscall> = report.committed[0].entry.sc.iter().map(|r| &r.s).collect();
        assert!(matches!(calls[..], [Syscall::VatstoreGet { .. }, Syscall::Resolve { .. }]), "{design}: {calls:?}");

        // After a reopen: the deletes are in the database, replay agrees.
        let digest = kv_digest(&k);
        let after = status(&mut k, "v1");
        k.close();
        let mut k = kernel(dir.path(), design, 2);
        assert_eq!(kv_digest(&k), digest, "{design}");
        assert_eq!(kv(&k, "v1.vs.stash.1"), None, "{design}");
        assert_eq!(kv(&k, "v1.c.o+1"), None, "{design}");
        assert_eq!(status(&mut k, "v1"), after, "{design}");
    }
}

/// explode writes, deletes `count` and makes a chain send before it throws:
/// none of it survives its aborted crank; a committed publish's send does,
/// in the block's report and in kvStore's record, also after a reopen.
#[test]
fn aborted_cranks_lose_their_deletes_and_chain_sends() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut k = kernel(dir.path(), design, 2);
        run(&mut k, &[create("v1", "counter-v1", 2), create("v2", "counter-v1", 3)]);
        assert_eq!(k.recorded_chain_sends().unwrap(), vec![], "{design}");
        run(&mut k, &[bump("v1", 3)]);

        let report = run(&mut k, &[publish("v2", 1), explode("v1"), publish("v1", 4)]);
        assert_eq!((report.cranks, report.aborted_cranks), (3, 1), "{design}");
        let v1 = status(&mut k, "v1");
        assert_eq!(count(&v1), 7, "{design}: the aborted delete of count survived");
        assert!(!v1.vatstore.contains_key("boom"), "{design}");
        let sends = vec![chain_send("v2", "counter-v1 count=0 n=1"), chain_send("v1", "counter-v1 count=7 n=4")];
        assert_eq!(report.chain_sends, sends, "{design}");
        assert_eq!(k.recorded_chain_sends().unwrap(), sends, "{design}");

        k.close();
        let mut k = kernel(dir.path(), design, 2);
        assert_eq!(k.recorded_chain_sends().unwrap(), sends, "{design}: after reopen");
        assert_eq!(kv(&k, "host.chainSends"), Some(serde_json::to_string(&sends).unwrap()), "{design}");

        // The next block starts a new record.
        let report = run(&mut k, &[bump("v2", 1)]);
        assert_eq!(report.chain_sends, vec![], "{design}");
        assert_eq!(k.recorded_chain_sends().unwrap(), vec![], "{design}");
    }
}

/// A promise nobody subscribed to is retired when it settles.
#[test]
fn unsubscribed_promise_is_retired_at_resolution() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut k = kernel(dir.path(), design, 2);
        run(&mut k, &[create("v1", "counter-v1", 2)]);
        run(&mut k, &[bump("v1", 1), explode("v1")]);
        assert_eq!(kv(&k, "kp.nextID").as_deref(), Some("2"), "{design}");
        assert_eq!((promise(&k, "kp0"), promise(&k, "kp1")), (None, None), "{design}");
        assert!(k.store().kv_scan("kp").unwrap().keys().all(|key| key == "kp.nextID"), "{design}");
    }
}

/// A settled promise with a subscriber is kept while its notify is queued
/// (across a block boundary and a reopen) and retired once it is consumed.
#[test]
fn queued_notify_finds_its_promise() {
    for design in Design::ALL {
        let dir = tempdir();
        let config = KernelConfig { max_workers_online: 2, max_cranks_per_block: 2, snapshot_interval: None };
        let open = |dir: &std::path::Path| Kernel::open(dir, StoreConfig::new(design), config).unwrap();
        let mut k = open(dir.path());
        run(&mut k, &[create("v1", "counter-v1", 2), create("v2", "counter-v1", 3)]);
        // Crank 1: v1 sends forward(2) to v2 (kp1), subscribes, settles kp0.
        // Crank 2: v2 settles kp1: a notify to v1 is queued, left for the next block.
        let report = run(&mut k, &[forward(1, &["v1", "v2"])]);
        assert_eq!((report.cranks, report.run_queue_left), (2, 1), "{design}");
        assert_eq!(promise(&k, "kp0"), None, "{design}");
        let kp1 = promise(&k, "kp1").expect("kp1 kept for its notify");
        assert_eq!((kp1.notifies, kp1.resolution.map(|r| r.value)), (1, Some("2".into())), "{design}");

        k.close();
        let mut k = open(dir.path());
        let report = run(&mut k, &[]);
        assert_eq!((report.cranks, report.run_queue_left), (1, 0), "{design}");
        assert_eq!(promise(&k, "kp1"), None, "{design}: retired after its last notify");
        assert_eq!(status(&mut k, "v1").vatstore.get("lastNotify").map(String::as_str), Some("kp1"), "{design}");
    }
}

/// A send to a vat that does not exist aborts; its result promise is rejected
/// in a fresh crank, the subscriber notified, and the promise retired.
#[test]
fn rejected_promise_notifies_its_subscriber_then_retires() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut k = kernel(dir.path(), design, 2);
        run(&mut k, &[create("v1", "counter-v1", 2)]);
        let report = run(&mut k, &[forward(1, &["v1", "nosuch"])]);
        assert_eq!((report.cranks, report.aborted_cranks), (3, 1), "{design}");
        let notify = &report.committed.last().expect("the notify committed").entry.d;
        let rejected = Resolution { rejected: true, value: "no such vat nosuch".into() };
        assert_eq!(notify, &Delivery::Notify { promise: "kp1".into(), resolution: rejected }, "{design}");
        assert_eq!((promise(&k, "kp0"), promise(&k, "kp1")), (None, None), "{design}");
    }
}

/// The lmdb-deletes-separate mutation changes nothing a run without a crash
/// can see: only a crash between its two commits reveals it.
#[test]
fn deletes_separate_mutation_is_invisible_without_a_crash() {
    let mut blocks = chatty_blocks();
    blocks.push(vec![stash("v1", 1), stash("v2", 2), publish("v3", 3)]);
    blocks.push(vec![clear("v1", 1), clear("v2", 2), explode("v4"), bump("v1", 1)]);
    let digests: Vec<String> = [None, Some(Mutant::LmdbDeletesSeparate)]
        .into_iter()
        .map(|mutant| {
            let dir = tempdir();
            let mut config = StoreConfig::new(Design::StartPosition);
            config.mutant = mutant;
            let mut k = Kernel::open(dir.path(), config, KernelConfig::default()).unwrap();
            for block in &blocks {
                run(&mut k, block);
            }
            k.close();
            kv_digest(&kernel(dir.path(), Design::StartPosition, 2))
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
}
