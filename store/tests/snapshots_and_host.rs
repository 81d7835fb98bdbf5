//! Heap snapshots as files (saved every K deliveries, loaded with their hash
//! checked, deleted once unused, orphans removed at open, dropped on
//! upgrade) and the host chain's own database (point C, the restart rule,
//! the hangover), through the store's API alone.

mod common;

use common::*;
use store::chain::{Chain, ChainConfig, CHAIN_DIR, STORE_DIR};
use store::kernel::snapshots::record;
use store::snap_store::snapshot_file;
use store::{Design, Error, HostDb, Kernel, KernelConfig, NoObserver, Reconciled, StoreConfig};

fn snapshotting(every: u64) -> KernelConfig {
    KernelConfig { max_workers_online: 1, max_cranks_per_block: 64, snapshot_interval: Some(every) }
}

fn open_kernel(dir: &std::path::Path, every: u64) -> Kernel {
    Kernel::open(dir, StoreConfig::new(Design::StartPosition), snapshotting(every)).expect("open kernel")
}

fn open_chain(home: &std::path::Path, engine: HostDb) -> store::Result<Chain> {
    let chain = ChainConfig { engine, sqlite_vfs: None, observer: Box::new(NoObserver), mutant: None };
    Chain::open(home, StoreConfig::new(Design::StartPosition), snapshotting(2), chain)
}

/// Blocks 1..=3: two vats, a few deliveries each (the cap of one worker
/// makes every delivery a rebuild).
fn run_three_blocks(k: &mut Kernel) {
    k.run_block(1, &[create("v1", "counter-v1", 1), create("v2", "counter-v1", 2)]).unwrap();
    k.run_block(2, &[bump("v1", 1), bump("v2", 2), bump("v1", 3)]).unwrap();
    k.run_block(3, &[bump("v1", 4), bump("v2", 5), bump("v1", 6)]).unwrap();
}

/// Every file of the snapshot directory, by name.
fn snapshot_files(k: &Kernel) -> Vec<String> {
    k.store().snapshot_files().unwrap()
}

/// A vat's heap is saved every K deliveries; the snapshot directory holds
/// exactly the snapshots the vats use (superseded ones deleted after the
/// block), and a rebuild from the snapshot has the heap of a full replay.
#[test]
fn snapshots_are_saved_used_and_retired() {
    let dir = tempdir();
    let mut k = open_kernel(dir.path(), 2);
    run_three_blocks(&mut k);
    let v1 = record(k.store(), "v1").unwrap().expect("v1 has a snapshot");
    let v2 = record(k.store(), "v2").unwrap().expect("v2 has a snapshot");
    let mut used = vec![format!("{}.heap", v1.hash), format!("{}.heap", v2.hash)];
    used.sort();
    used.dedup();
    assert_eq!(snapshot_files(&k), used, "only the snapshots in use are left");
    let with_snapshot = k.vat_status("v1").unwrap().heap_digest;
    let (position, from_start) = k.heap_without_snapshot("v1").unwrap().expect("v1 has a snapshot");
    assert_eq!((position, from_start), (v1.position, with_snapshot));
}

/// A snapshot file that went missing, or whose bytes no longer hash to its
/// name, is an error naming the vat and the file: never a silently wrong heap.
#[test]
fn a_missing_or_corrupt_snapshot_is_an_error_naming_vat_and_file() {
    let dir = tempdir();
    let mut k = open_kernel(dir.path(), 2);
    run_three_blocks(&mut k);
    let v1 = record(k.store(), "v1").unwrap().expect("a snapshot");
    k.close();
    let path = dir.path().join(snapshot_file(&v1.hash));
    std::fs::write(&path, b"{\"bundle\":\"counter-v1\",\"heap\":").unwrap();
    let mut k = open_kernel(dir.path(), 2);
    let corrupt = k.vat_status("v1").unwrap_err();
    let text = corrupt.to_string();
    assert!(matches!(corrupt, Error::SnapshotUnusable { .. }), "{text}");
    assert!(text.contains("vat v1") && text.contains(&snapshot_file(&v1.hash)) && text.contains("corrupt"), "{text}");
    k.close();
    std::fs::remove_file(&path).unwrap();
    let mut k = open_kernel(dir.path(), 2);
    let missing = k.vat_status("v1").unwrap_err().to_string();
    assert!(missing.contains("vat v1") && missing.contains("missing"), "{missing}");
}

/// A file no vat uses (a snapshot a crash left, a temporary file) is removed
/// when the kernel opens, and said so.
#[test]
fn orphans_are_removed_at_open() {
    let dir = tempdir();
    let mut k = open_kernel(dir.path(), 2);
    run_three_blocks(&mut k);
    let before = snapshot_files(&k);
    k.close();
    let snapshots = dir.path().join("snapshots");
    std::fs::write(snapshots.join("0123456789abcdef0123456789abcdef.heap"), b"left by a crash").unwrap();
    std::fs::write(snapshots.join("0123456789abcdef0123456789abcdef.heap.tmp"), b"half written").unwrap();
    let k = open_kernel(dir.path(), 2);
    assert_eq!(k.orphans_removed().len(), 2, "{:?}", k.orphans_removed());
    assert_eq!(snapshot_files(&k), before);
}

/// An upgrade starts the new incarnation without its predecessor's
/// snapshot; a failed upgrade keeps it.
#[test]
fn an_upgrade_drops_the_snapshot_and_a_failed_one_keeps_it() {
    let dir = tempdir();
    let mut k = open_kernel(dir.path(), 2);
    run_three_blocks(&mut k);
    let before = record(k.store(), "v1").unwrap();
    assert!(before.is_some());
    let failed = store::HostInput::UpgradeVat { vat: "v1".into(), bundle: "bad-eval".into(), params: params(1) };
    k.run_block(4, &[failed]).unwrap();
    assert_eq!(record(k.store(), "v1").unwrap(), before, "a failed upgrade changes nothing");
    let upgrade = store::HostInput::UpgradeVat { vat: "v1".into(), bundle: "counter-v2".into(), params: params(3) };
    k.run_block(5, &[upgrade]).unwrap();
    assert_eq!(record(k.store(), "v1").unwrap(), None);
    assert!(!snapshot_files(&k).contains(&format!("{}.heap", before.unwrap().hash)), "deleted once unused");
}

/// The host commits after the kernel (point C); both are at one height
/// after an open, on both engines.
#[test]
fn the_host_commits_each_block_after_the_kernel() {
    for engine in [HostDb::Sqlite, HostDb::Redb] {
        let home = tempdir();
        let mut node = open_chain(home.path(), engine).unwrap();
        node.run_block(1, &[create("v1", "counter-v1", 1)]).unwrap();
        node.run_block(2, &[send("v1", "publish", &["7"])]).unwrap();
        assert_eq!(node.host_height().unwrap(), 2, "{engine}");
        let state = node.host_state().unwrap();
        assert_eq!(state.get("out.000002.000").map(String::as_str), Some("v1: counter-v1 count=0 n=7"), "{engine}");
        node.close();
        let node = open_chain(home.path(), engine).unwrap();
        assert_eq!(node.reconciled(), &Reconciled::InStep { height: 2 }, "{engine}");
    }
}

/// K = H + 1 (the kernel committed a block its host did not): the host
/// applies the kernel's record of the block's chain sends and commits;
/// any other pair is fatal.
#[test]
fn the_restart_rule_applies_the_hangover_or_stops() {
    let home = tempdir();
    let mut node = open_chain(home.path(), HostDb::Sqlite).unwrap();
    node.run_block(1, &[create("v1", "counter-v1", 1)]).unwrap();
    node.close();
    // The kernel alone runs block 2, as if the host's commit had been lost.
    let store_dir = home.path().join(STORE_DIR);
    let mut k = Kernel::open(&store_dir, StoreConfig::new(Design::StartPosition), snapshotting(2)).unwrap();
    k.run_block(2, &[send("v1", "publish", &["7"])]).unwrap();
    k.close();
    let node = open_chain(home.path(), HostDb::Sqlite).unwrap();
    assert_eq!(node.reconciled(), &Reconciled::Hangover { height: 2, sends: 1 });
    assert_eq!(node.host_height().unwrap(), 2);
    assert!(node.host_state().unwrap().contains_key("out.000002.000"));
    node.close();
    // Two blocks apart: no restart can mend it.
    let mut k = Kernel::open(&store_dir, StoreConfig::new(Design::StartPosition), snapshotting(2)).unwrap();
    k.run_block(3, &[bump("v1", 1)]).unwrap();
    k.run_block(4, &[bump("v1", 1)]).unwrap();
    k.close();
    match open_chain(home.path(), HostDb::Sqlite) {
        Err(Error::HeightMismatch { kernel: 4, host: 2 }) => {}
        Err(other) => panic!("expected a height mismatch, got {other}"),
        Ok(_) => panic!("expected a height mismatch, the node opened"),
    }
    assert!(home.path().join(CHAIN_DIR).is_dir());
}
