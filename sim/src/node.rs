//! The node as a madsim node: the host chain ([`store::Chain`]) with its
//! kernel, which owns the swing-store and the vat workers; it serves the
//! simulated host's requests. Killing the node drops it, which really closes
//! every database; restarting it reopens them from the crash images. A
//! graceful stop closes them before the node dies.

use crate::fault::PointKind;
use crate::world::{self, Position};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use store::kernel::{BlockReport, HostInput, Kernel, KernelConfig, SnapshotHeaps, VatStatus};
use store::{Chain, ChainConfig, Design, Observer, Point, Reconciled, Stop, StoreConfig};

/// How the node opens its kernel's store and its host's database.
#[derive(Clone, Debug)]
pub struct KernelSetup {
    /// The node's home: `swingstore/` and `chain/` inside.
    pub dir: PathBuf,
    pub design: Design,
    pub settings: crate::options::Settings,
    pub kernel: KernelConfig,
    pub mutant: Option<store::Mutant>,
}

/// The node's state as a check sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The kernel's committed height (kvStore's `host.height`).
    pub height: Option<u64>,
    /// The host's own committed height.
    pub host_height: u64,
    /// Everything in the host's database.
    pub host: BTreeMap<String, String>,
    /// What the node's last open found (the hangover, if any).
    pub reconciled: Option<Reconciled>,
    /// Snapshot files the kernel's open removed (crash leftovers).
    pub orphans_removed: Vec<String>,
    /// Snapshot problems, as a person reads them (full snapshots only).
    pub snapshot_problems: SnapshotProblems,
    /// Per vat with a snapshot, its heap rebuilt from the snapshot and from
    /// the span's start (full snapshots only).
    pub snapshot_heaps: BTreeMap<String, SnapshotHeaps>,
    /// The block SQLite's last commit recorded (the kernel's `height` is kvStore's).
    pub sqlite_height: Option<u64>,
    pub kv: BTreeMap<String, String>,
    pub activity_hash: String,
    /// Per vat, each item of the current span: (position, digest of the item).
    pub spans: BTreeMap<String, Vec<(u64, String)>>,
    /// The text of every span item by its digest (full snapshots only: what
    /// a diverging item is decoded from).
    pub item_texts: BTreeMap<String, String>,
    /// The vats whose workers were online (the others are rebuilt when next used).
    pub online: Vec<String>,
    /// Per vat, with every worker rebuilt by replay (full snapshots only).
    pub vats: BTreeMap<String, VatStatus>,
    /// Deliveries replayed to rebuild the workers (full snapshots only).
    pub replayed: u64,
    /// Workers evicted by the cap since the kernel opened.
    pub evictions: u64,
    /// Workers of upgraded vats rebuilt by replay since the kernel opened
    /// (before this snapshot's own rebuilds).
    pub rebuilds_after_upgrade: u64,
}

pub enum Request {
    RunBlock {
        height: u64,
        inputs: Vec<HostInput>,
        reply: oneshot::Sender<store::Result<BlockReport>>,
    },
    /// `full`: evict every worker and rebuild it by replay first.
    Snapshot {
        full: bool,
        reply: oneshot::Sender<store::Result<Snapshot>>,
    },
}

/// Where the node finds the receiving end of its request channel at each start.
pub type Inbox = Arc<Mutex<Option<mpsc::UnboundedReceiver<Request>>>>;

/// Maps the store's durability points to the world's crash points.
struct SimObserver;

impl Observer for SimObserver {
    fn reached(&self, point: Point) -> Result<(), Stop> {
        let (kind, file) = match point {
            Point::CrankStart { height, crank } => {
                world::set_position(Position { height, crank });
                (PointKind::Crank, "crank")
            }
            Point::PointA => (PointKind::PointA, "commit"),
            Point::PointB => (PointKind::PointB, "commit"),
            Point::PointC => (PointKind::PointC, "commit"),
            Point::SnapshotRename => (PointKind::SnapshotRename, "snapshot"),
            Point::SnapshotDelete => (PointKind::SnapshotDelete, "snapshot"),
        };
        world::durability_point(kind, "swing-store", file).map_err(|_| Stop)
    }
}

fn chain_config(setup: &KernelSetup) -> ChainConfig {
    ChainConfig {
        engine: setup.settings.host_db,
        sqlite_vfs: Some(crate::disk::sqlite::VFS_NAME.to_string()),
        observer: Box::new(SimObserver),
        mutant: setup.mutant,
    }
}

/// LMDB's map size for the simulated store (and for reading its images).
pub(crate) const LMDB_MAP_BYTES: usize = 4 << 20;

fn store_config(setup: &KernelSetup) -> StoreConfig {
    let mut config = StoreConfig::new(setup.design);
    setup.settings.configure(&mut config);
    config.mutant = setup.mutant;
    config.sqlite_vfs = Some(crate::disk::sqlite::VFS_NAME.to_string());
    config.lmdb_map_bytes = LMDB_MAP_BYTES;
    config.observer = Box::new(SimObserver);
    config
}

/// The node's main task: open the node, serve requests until killed.
pub async fn serve(setup: KernelSetup, inbox: Inbox) {
    let Some(mut requests) = inbox.lock().expect("inbox lock").take() else {
        return;
    };
    let mut node = Chain::open(&setup.dir, store_config(&setup), setup.kernel, chain_config(&setup));
    while let Some(request) = requests.next().await {
        match request {
            Request::RunBlock { height, inputs, reply } => {
                let result = node.as_mut().map_err(clone_error).and_then(|n| n.run_block(height, &inputs));
                if result.is_err() && world::stop_requested() {
                    close_gracefully(&mut node);
                }
                let _ = reply.send(result);
            }
            Request::Snapshot { full, reply } => {
                let result = node.as_mut().map_err(clone_error).and_then(|n| snapshot(n, full));
                let _ = reply.send(result);
            }
        }
    }
}

/// A graceful stop: the host closes the kernel's store and its own
/// database, as an operator's restart does, before the process ends.
fn close_gracefully(node: &mut store::Result<Chain>) {
    let closed = Err(store::Error::Invariant("the node was stopped".into()));
    if let Ok(chain) = std::mem::replace(node, closed) {
        chain.close();
    }
}

/// An open error is reported to every request; errors are not Clone, so copy its text.
fn clone_error(error: &mut store::Error) -> store::Error {
    match error {
        store::Error::ReplayDiverged { vat, position, expected, found } => store::Error::ReplayDiverged {
            vat: vat.clone(),
            position: *position,
            expected: expected.clone(),
            found: found.clone(),
        },
        store::Error::SnapshotUnusable { vat, file, reason } => {
            store::Error::SnapshotUnusable { vat: vat.clone(), file: file.clone(), reason: reason.clone() }
        }
        store::Error::HeightMismatch { kernel, host } => store::Error::HeightMismatch { kernel: *kernel, host: *host },
        other => store::Error::Invariant(format!("kernel did not open: {other}")),
    }
}

/// The node's state as checks see it; `full`: every worker evicted and
/// rebuilt by replay first, and each snapshot's heap checked against a
/// replay of the whole span.
pub fn snapshot(node: &mut Chain, full: bool) -> store::Result<Snapshot> {
    let mut snap = Snapshot {
        host_height: node.host_height()?,
        host: node.host_state()?,
        reconciled: Some(node.reconciled().clone()),
        ..Snapshot::default()
    };
    let kernel = node.kernel();
    snap.height = kernel.last_committed_height()?;
    snap.sqlite_height = kernel.store().sqlite_height()?;
    snap.kv = kernel.store().kv_scan("")?;
    snap.activity_hash = kernel.activity_hash()?;
    snap.evictions = kernel.worker_stats().evictions;
    snap.rebuilds_after_upgrade = kernel.worker_stats().rebuilds_after_upgrade;
    snap.online = kernel.workers_online();
    snap.orphans_removed = kernel.orphans_removed().to_vec();
    let vats = kernel.vat_ids()?;
    for vat in &vats {
        let mut digests = Vec::new();
        kernel.span_visit(vat, |position, item| {
            let digest = item_digest(item);
            if full {
                snap.item_texts.insert(digest.clone(), item.to_string());
            }
            digests.push((position, digest));
            Ok(())
        })?;
        snap.spans.insert(vat.clone(), digests);
    }
    if full {
        snap.snapshot_problems = snapshot_problems(kernel, &vats)?;
        kernel.evict_all();
        let before = kernel.worker_stats().replayed_deliveries;
        for vat in &vats {
            snap.vats.insert(vat.clone(), kernel.vat_status(vat)?);
        }
        snap.replayed = kernel.worker_stats().replayed_deliveries - before;
        for (vat, status) in &snap.vats {
            if let Some((position, from_span_start)) = kernel.heap_without_snapshot(vat)? {
                let from_snapshot = status.heap_digest.clone();
                snap.snapshot_heaps.insert(vat.clone(), SnapshotHeaps { position, from_snapshot, from_span_start });
            }
        }
    }
    Ok(snap)
}

/// What is wrong with the snapshot directory, each as a person reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotProblems {
    /// Snapshots kvStore refers to that are missing or corrupt.
    pub broken: Vec<String>,
    /// Files of the snapshot directory no vat refers to.
    pub orphans: Vec<String>,
}

/// Every snapshot kvStore refers to must load (exist, match its hash), and
/// every file of the snapshot directory must be one of them.
fn snapshot_problems(kernel: &Kernel, vats: &[String]) -> store::Result<SnapshotProblems> {
    let store = kernel.store();
    let mut problems = SnapshotProblems::default();
    let mut used = Vec::new();
    for vat in vats {
        let Some(record) = store::kernel::snapshots::record(store, vat)? else { continue };
        if let Err(problem) = store.snapshot_load(&record.hash)? {
            let reason = problem.to_string();
            problems.broken.push(format!("vat {vat}: {} {reason}", store::snap_store::snapshot_file(&record.hash)));
        }
        used.push(store::snap_store::file_name(&record.hash));
    }
    for name in store.snapshot_files()? {
        if !used.contains(&name) {
            problems.orphans.push(format!("orphan: snapshots/{name} (no vat uses it)"));
        }
    }
    Ok(problems)
}

/// The digest a snapshot keeps of a transcript item (12 hex digits).
pub fn item_digest(item: &str) -> String {
    store::vat::hex(&Sha256::digest(item.as_bytes())[..6])
}
