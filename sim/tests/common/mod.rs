//! Helpers shared by the disk tests: per-test directories, the SQLite lock,
//! seeded rngs, and the one rule for a file whose data was never synced.
#![allow(dead_code)]

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use sim::cow::CowBytes;
use sim::disk::fs::{DirOp, Fs, Image, NothingPending, Survival, Torn, ROOT};
use sim::fault::{SectorFate, SECTOR_BYTES};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A directory of its own for one test, `/dev/shm/swingsim-<pid>-<test>-<label>`
/// (the test's name is its thread's), removed when dropped. Declare it
/// before the disk's guard, so that the disk is gone (and its `stopped`
/// state with it) when the directory goes.
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(label: &str) -> TestDir {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let test = std::thread::current().name().unwrap_or("main").replace("::", "-");
        let dir = base.join(format!("swingsim-{}-{test}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        TestDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SQLite's PRNG and its unix VFS's inode table are process-global: tests
/// that use SQLite run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// What a power loss that keeps only what was synced leaves.
pub fn power_loss(fs: &Fs) -> Image {
    fs.surviving(&mut NothingPending)
}

/// What a torn power loss drawn from `seed` leaves.
pub fn torn(fs: &Fs, seed: u64) -> Image {
    fs.surviving(&mut Torn(&mut rng(seed)))
}

/// The bytes of `path` in `image`, if present.
pub fn file(image: &Image, path: &str) -> Option<Vec<u8>> {
    image.file(path).map(CowBytes::to_vec)
}

/// A survival that counts what it is asked and answers from `inner`.
pub struct Counting<S> {
    pub inner: S,
    pub dir_ops: usize,
    pub shrinks: usize,
    pub sectors: usize,
}

impl<S: Survival> Counting<S> {
    pub fn new(inner: S) -> Counting<S> {
        Counting { inner, dir_ops: 0, shrinks: 0, sectors: 0 }
    }
}

impl<S: Survival> Survival for Counting<S> {
    fn dir_op(&mut self, op: &DirOp) -> bool {
        self.dir_ops += 1;
        self.inner.dir_op(op)
    }
    fn shrink(&mut self) -> bool {
        self.shrinks += 1;
        self.inner.shrink()
    }
    fn sector(&mut self) -> SectorFate {
        self.sectors += 1;
        self.inner.sector()
    }
    fn garbage(&mut self, buf: &mut [u8]) {
        self.inner.garbage(buf)
    }
}

/// A survival in which every pending directory operation survives, and
/// everything else is as `inner` draws it (without a draw for the entries).
pub struct EntriesSurvive<S>(pub S);

impl<S: Survival> Survival for EntriesSurvive<S> {
    fn dir_op(&mut self, _op: &DirOp) -> bool {
        true
    }
    fn shrink(&mut self) -> bool {
        self.0.shrink()
    }
    fn sector(&mut self) -> SectorFate {
        self.0.sector()
    }
    fn garbage(&mut self, buf: &mut [u8]) {
        self.0.garbage(buf)
    }
}

/// A never-synced file whose entry was still pending (`pending`) and the same
/// after its directory was synced (`synced`): when a torn power loss keeps
/// the pending entry, the file's content is what it is with the entry
/// durable, draw for draw. Under `Torn` itself it is absent in some seeds
/// and present in others.
pub fn assert_surviving_entry_is_the_same_rule(pending: &Fs, synced: &Fs, path: &str) {
    assert!(!pending.pending_dir_ops().is_empty(), "{path}: its entry is pending");
    assert_eq!(file(&power_loss(pending), path), None, "{path}: a plain power loss loses the pending entry");
    let mut present = 0;
    for seed in 0..32 {
        let kept = pending.surviving(&mut EntriesSurvive(Torn(&mut rng(seed))));
        assert_eq!(file(&kept, path), file(&torn(synced, seed), path), "{path}: seed {seed}");
        present += usize::from(file(&torn(pending, seed), path).is_some());
    }
    assert!(0 < present && present < 32, "{path}: the pending entry survives in {present} of 32 torn power losses");
}

/// How often each fate was seen over a run of torn images.
#[derive(Debug, Default)]
pub struct Fates {
    pub survived: usize,
    pub vanished: usize,
    pub torn: usize,
}

/// The one rule for a file whose data was never synced but whose directory
/// entry is durable, whoever wrote it (SQLite, LMDB, `std::fs`): after a
/// power loss it is there, with its durable content (nothing) plus each
/// sector written since (all of them) surviving, vanishing (zeros, or a
/// shorter file) or torn (garbage); never anything else.
///
/// Checked on the model `fs` of a real disk in three ways, for each of
/// `paths`: the plain power loss (an empty file); 64 torn images sector by
/// sector; and byte for byte against a model that made the same bytes with
/// one plain write per file, created in the same order (the same draws must
/// give the same files). The last needs the files' sectors to be all that a
/// torn power loss of `fs` draws for: checked first.
pub fn assert_never_synced_rule(fs: &Fs, paths: &[&str]) -> Fates {
    let mut fates = Fates::default();
    let mut files = Vec::new();
    for path in paths {
        let ino = fs.lookup(path).unwrap_or_else(|| panic!("{path} is in the model"));
        let live = fs.live(ino).expect("a file").to_vec();
        files.push((ino, *path, live));
    }
    files.sort_by_key(|(ino, _, _)| *ino);
    for (ino, path, live) in &files {
        let (ino, path) = (*ino, *path);
        assert!(!live.is_empty(), "{path}: the test needs written data");
        assert_eq!(fs.durable(ino).map(CowBytes::len), Some(0), "{path}: never synced");
        assert_eq!(file(&power_loss(fs), path), Some(Vec::new()), "{path}: a plain power loss keeps an empty file");
        assert_eq!(file(&fs.live_image(), path).as_ref(), Some(live), "{path}: a process crash keeps it all");

        for seed in 0..64 {
            let image = torn(fs, seed);
            assert_eq!(image, torn(fs, seed), "{path}: torn draws are a function of the seed");
            let got = file(&image, path).unwrap_or_else(|| panic!("{path}: its entry is durable (seed {seed})"));
            assert!(got.len() <= live.len(), "{path}: seed {seed}: {} bytes of {}", got.len(), live.len());
            assert!(
                got.len() == live.len() || got.len().div_ceil(SECTOR_BYTES) * SECTOR_BYTES == got.len(),
                "{path}: seed {seed}: a torn file ends at a sector boundary or at its live end, not at {}",
                got.len()
            );
            for sector in 0..live.len().div_ceil(SECTOR_BYTES) {
                let range = sector * SECTOR_BYTES..((sector + 1) * SECTOR_BYTES).min(live.len());
                if range.start >= got.len() {
                    fates.vanished += 1;
                    continue;
                }
                let here = &got[range.clone()];
                if here == &live[range.clone()] {
                    fates.survived += 1;
                } else if here.iter().all(|&b| b == 0) {
                    fates.vanished += 1;
                } else {
                    // Garbage: a whole (clipped) sector that is neither the data nor nothing.
                    fates.torn += 1;
                }
            }
        }
    }
    assert!(fates.survived > 0 && fates.vanished > 0 && fates.torn > 0, "{paths:?}: every fate occurs: {fates:?}");

    // Byte for byte: the same draws tear these files as they tear plain
    // files of the same bytes.
    let mut counting = Counting::new(NothingPending);
    let _ = fs.surviving(&mut counting);
    let sectors: usize = files.iter().map(|(_, _, live)| live.len().div_ceil(SECTOR_BYTES)).sum();
    assert!(
        counting.dir_ops == 0 && counting.shrinks == 0 && counting.sectors == sectors,
        "{paths:?}: a torn power loss draws for more than these files ({} dir ops, {} shrinks, {} sectors for their {sectors})",
        counting.dir_ops,
        counting.shrinks,
        counting.sectors
    );
    let mut plain = Fs::new();
    for (i, (_, _, live)) in files.iter().enumerate() {
        let f = plain.create(ROOT, &format!("plain{i}"));
        plain.write(f, 0, live);
    }
    plain.sync_dir(ROOT);
    for seed in 0..64 {
        let ours = torn(fs, seed);
        let theirs = torn(&plain, seed);
        for (i, (_, path, _)) in files.iter().enumerate() {
            assert_eq!(
                file(&ours, path),
                file(&theirs, &format!("plain{i}")),
                "{path}: seed {seed}: torn as a plain file of the same bytes is"
            );
        }
    }
    fates
}
