//! The kernel node as the host holds it ([`KernelHandle`]: start, crash and
//! restart from crash images, stop and restart on the disks as they are,
//! requests), and the world a run executes in ([`in_world`]: its simulated
//! disks, crash and fault plans, and a fresh madsim runtime).

use super::Case;
use crate::disk;
use crate::node::{self, Inbox, KernelSetup, Request, Snapshot};
use crate::options::Mutation;
use crate::world::{self, World};
use futures::channel::{mpsc, oneshot};
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::kernel::{BlockReport, HostInput};

/// A fresh madsim runtime for one run of the seed.
fn runtime(seed: u64) -> Runtime {
    let mut runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(Duration::from_secs(7 * 24 * 3600));
    runtime
}

/// The kernel node and the host's end of its request channel.
pub(super) struct KernelHandle {
    setup: KernelSetup,
    /// `None` until the node is first started.
    id: Option<NodeId>,
    inbox: Inbox,
    requests: mpsc::UnboundedSender<Request>,
}

impl KernelHandle {
    /// A kernel node not started yet: a run that begins with a crash image
    /// restores it first (see [`KernelHandle::crash_and_restart`]).
    pub(super) fn stopped(setup: KernelSetup) -> KernelHandle {
        let (requests, _) = mpsc::unbounded();
        KernelHandle { setup, id: None, inbox: Arc::new(Mutex::new(None)), requests }
    }

    pub(super) fn start(setup: KernelSetup) -> KernelHandle {
        let mut kernel = KernelHandle::stopped(setup);
        kernel.start_node();
        kernel
    }

    /// Start (or restart) the node on a new request channel.
    pub(super) fn start_node(&mut self) {
        let (requests, receiver) = mpsc::unbounded();
        *self.inbox.lock().expect("inbox lock") = Some(receiver);
        self.requests = requests;
        match self.id {
            Some(id) => Handle::current().restart(id),
            None => {
                let (setup, inbox) = (self.setup.clone(), self.inbox.clone());
                let node = Handle::current()
                    .create_node()
                    .name("kernel")
                    .init(move || node::serve(setup.clone(), inbox.clone()))
                    .build();
                self.id = Some(node.id());
            }
        }
    }

    /// Kill the node, let the simulated time pass so that its tasks (and the
    /// databases they own) are dropped, then start it again from `image`.
    pub(super) async fn crash_and_restart(&mut self, image: &disk::fs::Image) {
        self.kill().await;
        disk::restore(image);
        world::restarted();
        self.start_node();
    }

    /// Stop the process (its I/O fails from now on), kill the node, and start
    /// it again on the disks as they are: a process restart, no crash image.
    pub(super) async fn stop_and_restart(&mut self) {
        world::stop_process();
        self.kill().await;
        world::restarted();
        self.start_node();
    }

    /// Kill the node and let the simulated time pass so that its tasks (and
    /// the databases they own) are dropped.
    async fn kill(&self) {
        if let Some(id) = self.id {
            Handle::current().kill(id);
            // madsim drops a killed node's task only when it is next woken:
            // closing its request channel wakes it now, so the dead process's
            // store is closed (and its I/O refused) before anything restarts,
            // not later inside the new process's run.
            self.requests.close_channel();
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub(super) async fn run_block(&self, height: u64, inputs: Vec<HostInput>) -> store::Result<BlockReport> {
        let (reply, answer) = oneshot::channel();
        self.call(Request::RunBlock { height, inputs, reply }, answer).await
    }

    pub(super) async fn snapshot(&self, full: bool) -> store::Result<Snapshot> {
        let (reply, answer) = oneshot::channel();
        self.call(Request::Snapshot { full, reply }, answer).await
    }

    async fn call<T>(&self, request: Request, answer: oneshot::Receiver<store::Result<T>>) -> store::Result<T> {
        let gone = || store::Error::Invariant("kernel node stopped without answering".into());
        self.requests.unbounded_send(request).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// How the kernel node of `case` opens its store in `dir`.
pub(super) fn setup(case: &Case, dir: &Path) -> KernelSetup {
    let mutant = Mutation::store_mutant(case.mutation);
    let (design, settings, kernel) = (case.design, case.options.settings, case.options.kernel);
    KernelSetup { dir: dir.to_path_buf(), design, settings, kernel, mutant }
}

/// Install `world` for a run in `dir`, run `body` in a fresh madsim runtime.
pub(super) fn in_world<T>(
    case: &Case,
    dir: &Path,
    world: World,
    body: impl std::future::Future<Output = T>,
) -> (T, World) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
    disk::sqlite::register();
    // SQLite's PRNG (journal nonces, WAL salts) is process-global: seed it per run.
    disk::sqlite::seed_prng((case.seed ^ (case.seed >> 32)) as u32);
    let installed = disk::install(dir, Box::new(world));
    let result = runtime(case.seed).block_on(body);
    let world = installed.finish::<World>().expect("the disk's injector is the run's world");
    let _ = std::fs::remove_dir_all(dir);
    (result, world)
}
