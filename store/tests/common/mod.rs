//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::Path;
use store::vat::VatParams;
use store::{BlockReport, Design, HostInput, Kernel, KernelConfig, StoreConfig, SwingStore, VatStatus};

/// Designs whose failed upgrade leaves the vat usable (every one but `erase`).
pub const SOUND: [Design; 5] =
    [Design::LengthZero, Design::RamBuffer, Design::Generation, Design::StartPosition, Design::Unified];

/// The defective bundles, each with the reason its upgrade from counter-v1 fails.
pub const DEFECTS: [(&str, &str); 3] = [
    ("bad-eval", "bundle bad-eval failed to evaluate: SyntaxError"),
    ("forgets-kind", "defineDurableKind not called for tags [Counter]"),
    ("start-throws", "buildRootObject threw: Error: start failed"),
];

/// A temporary directory, on tmpfs when there is one: these tests never crash,
/// so real fsyncs only cost time (about 30 ms per block commit on /tmp here).
pub fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    match shm.is_dir() {
        true => tempfile::tempdir_in(shm).or_else(|_| tempfile::tempdir()),
        false => tempfile::tempdir(),
    }
    .expect("tempdir")
}

pub fn params(multiplier: i64) -> VatParams {
    VatParams { multiplier }
}

pub fn kernel(dir: &Path, design: Design, max_workers_online: usize) -> Kernel {
    let config = KernelConfig { max_workers_online, ..KernelConfig::default() };
    Kernel::open(dir, StoreConfig::new(design), config).unwrap_or_else(|e| panic!("{design}: open kernel: {e}"))
}

pub fn swing_store(dir: &Path, design: Design) -> SwingStore {
    SwingStore::open(dir, StoreConfig::new(design)).unwrap_or_else(|e| panic!("{design}: open store: {e}"))
}

pub fn create(vat: &str, bundle: &str, multiplier: i64) -> HostInput {
    HostInput::CreateVat { vat: vat.into(), bundle: bundle.into(), params: params(multiplier) }
}

pub fn send(target: &str, method: &str, args: &[&str]) -> HostInput {
    HostInput::Send { target: target.into(), method: method.into(), args: args.iter().map(|a| a.to_string()).collect() }
}

pub fn bump(vat: &str, amount: i64) -> HostInput {
    send(vat, "bump", &[&amount.to_string()])
}

/// forward(n, path...) to the first vat of `path`, which passes it along the rest.
pub fn forward(amount: i64, path: &[&str]) -> HostInput {
    let mut args = vec![amount.to_string()];
    args.extend(path[1..].iter().map(|v| v.to_string()));
    HostInput::Send { target: path[0].into(), method: "forward".into(), args }
}

pub fn explode(vat: &str) -> HostInput {
    send(vat, "explode", &[])
}

pub fn upgrade(vat: &str, bundle: &str, multiplier: i64) -> HostInput {
    HostInput::UpgradeVat { vat: vat.into(), bundle: bundle.into(), params: params(multiplier) }
}

/// Run the next block (height = last committed + 1), panicking on error.
pub fn run(k: &mut Kernel, inputs: &[HostInput]) -> BlockReport {
    let height = k.last_committed_height().unwrap().map_or(1, |h| h + 1);
    k.run_block(height, inputs).unwrap_or_else(|e| panic!("block {height}: {e}"))
}

pub fn status(k: &mut Kernel, vat: &str) -> VatStatus {
    k.vat_status(vat).unwrap_or_else(|e| panic!("vat_status({vat}): {e}"))
}

pub fn statuses(k: &mut Kernel) -> Vec<VatStatus> {
    let vats = k.vat_ids().unwrap();
    vats.iter().map(|v| status(k, v)).collect()
}

/// The vat's vatstore "count" as a number.
pub fn count(status: &VatStatus) -> i64 {
    status.vatstore.get("count").map_or(0, |c| c.parse().unwrap())
}

/// All items of a stream in positions [0, 1000).
pub fn all_items(k: &Kernel, stream: &str) -> Vec<(u64, String)> {
    k.store().stream_read(stream, 0, 1000).unwrap()
}

pub fn positions(items: &[(u64, String)]) -> Vec<u64> {
    items.iter().map(|(p, _)| *p).collect()
}

/// The transcript entry stored at one position (panics when absent).
pub fn entry_at(k: &Kernel, stream: &str, position: u64) -> store::vat::TranscriptEntry {
    let items = k.store().stream_read(stream, position, position + 1).unwrap();
    assert_eq!(items.len(), 1, "no item at {stream}[{position}]");
    store::vat::TranscriptEntry::decode(&items[0].1).unwrap()
}

/// The method of a message delivery (or the delivery type otherwise).
pub fn delivery_name(entry: &store::vat::TranscriptEntry) -> String {
    match &entry.d {
        store::vat::Delivery::Message { method, .. } => method.clone(),
        store::vat::Delivery::StartVat { .. } => "startVat".into(),
        store::vat::Delivery::StopVat => "stopVat".into(),
        store::vat::Delivery::Notify { .. } => "notify".into(),
    }
}

/// Blocks of messages among four vats: forward chains (sends, subscribes,
/// resolves, notifies), bumps, an explode and a successful upgrade.
pub fn chatty_blocks() -> Vec<Vec<HostInput>> {
    vec![
        vec![
            create("v1", "counter-v1", 2),
            create("v2", "counter-v1", 3),
            create("v3", "counter-v1", 5),
            create("v4", "counter-v1", 7),
        ],
        vec![forward(1, &["v1", "v2", "v3", "v4"]), bump("v2", 2)],
        vec![forward(10, &["v3", "v1", "v4"]), explode("v2"), bump("v4", 1), forward(100, &["v4", "v2"])],
        vec![upgrade("v2", "counter-v2", 4), forward(1000, &["v2", "v3", "v1"]), bump("v1", 1)],
        vec![forward(5, &["v4", "v3", "v2", "v1"]), forward(6, &["v1", "v4"])],
    ]
}

/// A digest of every kv entry as reads see them (16 hex digits).
pub fn kv_digest(k: &Kernel) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in k.store().kv_scan("").unwrap() {
        hasher.update(format!("{key}\0{value}\n").as_bytes());
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The items of a vat's current span, as stored: (position, item).
pub fn span_items(k: &Kernel, vat: &str) -> Vec<(u64, String)> {
    let mut items = Vec::new();
    k.span_visit(vat, |position, item| {
        items.push((position, item.to_string()));
        Ok(())
    })
    .unwrap();
    items
}
