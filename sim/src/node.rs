//! The kernel as a madsim node: it owns the store and the vat workers and serves
//! the host's requests. Killing the node drops the kernel, which really closes
//! both databases; restarting it reopens them from the crash images.

use crate::fault::PointKind;
use crate::world::{self, Position};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use store::kernel::{BlockReport, HostInput, Kernel, KernelConfig, VatStatus};
use store::{Design, Observer, Point, Stop, StoreConfig};

/// How the kernel node opens its store.
#[derive(Clone, Debug)]
pub struct KernelSetup {
    pub dir: PathBuf,
    pub design: Design,
    pub settings: crate::options::Settings,
    pub kernel: KernelConfig,
    pub mutant: Option<store::Mutant>,
}

/// The kernel's state as a check sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub height: Option<u64>,
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
        };
        world::durability_point(kind, "swing-store", file).map_err(|_| Stop)
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

/// The node's main task: open the kernel, serve requests until killed.
pub async fn serve(setup: KernelSetup, inbox: Inbox) {
    let Some(mut requests) = inbox.lock().expect("inbox lock").take() else {
        return;
    };
    let mut kernel = Kernel::open(&setup.dir, store_config(&setup), setup.kernel);
    while let Some(request) = requests.next().await {
        match request {
            Request::RunBlock { height, inputs, reply } => {
                let result = kernel.as_mut().map_err(clone_error).and_then(|k| k.run_block(height, &inputs));
                let _ = reply.send(result);
            }
            Request::Snapshot { full, reply } => {
                let result = kernel.as_mut().map_err(clone_error).and_then(|k| snapshot(k, full));
                let _ = reply.send(result);
            }
        }
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
        other => store::Error::Invariant(format!("kernel did not open: {other}")),
    }
}

/// The kernel's state as checks see it; `full`: every worker evicted and rebuilt by replay first.
pub fn snapshot(kernel: &mut Kernel, full: bool) -> store::Result<Snapshot> {
    let mut snap = Snapshot {
        height: kernel.last_committed_height()?,
        sqlite_height: kernel.store().sqlite_height()?,
        kv: kernel.store().kv_scan("")?,
        activity_hash: kernel.activity_hash()?,
        evictions: kernel.worker_stats().evictions,
        rebuilds_after_upgrade: kernel.worker_stats().rebuilds_after_upgrade,
        online: kernel.workers_online(),
        ..Snapshot::default()
    };
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
        kernel.evict_all();
        let before = kernel.worker_stats().replayed_deliveries;
        for vat in &vats {
            snap.vats.insert(vat.clone(), kernel.vat_status(vat)?);
        }
        snap.replayed = kernel.worker_stats().replayed_deliveries - before;
    }
    Ok(snap)
}

/// The digest a snapshot keeps of a transcript item (12 hex digits).
pub fn item_digest(item: &str) -> String {
    store::vat::hex(&Sha256::digest(item.as_bytes())[..6])
}
