//! The persistence model of the simulated disk (`sim::disk::fs::Fs`), as plain
//! data: no I/O. What a power loss keeps (only what was synced: file data as
//! of its last fsync, directory entries as of their directory's last fsync),
//! what a torn power loss may keep (any subset of the pending operations,
//! each unsynced sector surviving, vanishing or torn), and what a process
//! crash keeps (everything).

mod common;

use common::{file, power_loss, rng, torn, Counting};
use rand_core::Rng;
use sim::cow::CowBytes;
use sim::disk::fs::{DirImage, DirOp, Entry, Fs, Image, NothingPending, Survival, Torn, ROOT};
use sim::fault::{SectorFate, SECTOR_BYTES};
use std::collections::{BTreeMap, BTreeSet};

const S: usize = SECTOR_BYTES;

/// A durable file `name` in the root holding `data` (synced, directory synced).
fn durable_file(fs: &mut Fs, name: &str, data: &[u8]) -> u32 {
    let ino = fs.create(ROOT, name);
    fs.write(ino, 0, data);
    fs.sync_file(ino);
    fs.sync_dir(ROOT);
    ino
}

fn names(image: &Image) -> Vec<String> {
    image.files().into_iter().map(|(path, _)| path).collect()
}

/// A file created (and even fsynced) exists after a power loss only once its
/// directory has been fsynced; the file's own fsync does not make its entry durable.
#[test]
fn created_file_is_absent_until_its_directory_is_synced() {
    let mut fs = Fs::new();
    let a = fs.create(ROOT, "a");
    fs.write(a, 0, b"hello");
    assert_eq!(power_loss(&fs), Image::default(), "nothing synced");
    fs.sync_file(a);
    assert_eq!(file(&power_loss(&fs), "a"), None, "data synced, entry not");
    assert_eq!(file(&fs.live_image(), "a"), Some(b"hello".to_vec()));
    assert_eq!(fs.pending_dir_ops(), vec![(ROOT, DirOp::Link("a".into(), a))]);

    // Torn: the entry survives or not, as a whole, with the synced data.
    let mut seen = BTreeSet::new();
    for seed in 0..64 {
        let got = file(&torn(&fs, seed), "a");
        assert!(got.is_none() || got.as_deref() == Some(&b"hello"[..]), "seed {seed}: {got:?}");
        seen.insert(got.is_some());
    }
    assert_eq!(seen.len(), 2, "the pending link survives in some seeds and not in others");

    fs.sync_dir(ROOT);
    assert!(fs.pending_dir_ops().is_empty());
    assert_eq!(file(&power_loss(&fs), "a"), Some(b"hello".to_vec()));
    for seed in 0..16 {
        assert_eq!(file(&torn(&fs, seed), "a"), Some(b"hello".to_vec()), "seed {seed}");
    }
}

/// A directory sync makes the entry durable even if the data never was: the
/// file comes back empty.
#[test]
fn directory_sync_alone_keeps_an_empty_file() {
    let mut fs = Fs::new();
    let a = fs.create(ROOT, "a");
    fs.write(a, 0, &[1; 3 * S]);
    fs.sync_dir(ROOT);
    assert_eq!(file(&power_loss(&fs), "a"), Some(Vec::new()));
}

/// A file in a new subdirectory needs the subdirectory synced (its entry)
/// and the parent synced (the subdirectory's entry).
#[test]
fn a_new_subdirectory_needs_its_parent_synced() {
    let mut fs = Fs::new();
    let kv = fs.mkdir(ROOT, "kv");
    let data = fs.create(kv, "data.mdb");
    fs.write(data, 0, &[7; 2 * S]);
    fs.sync_file(data);
    fs.sync_dir(kv);
    assert_eq!(power_loss(&fs), Image::default(), "kv's own entry is not durable");
    assert_eq!(fs.lookup("kv/data.mdb"), Some(data));
    fs.sync_dir(ROOT);
    assert_eq!(file(&power_loss(&fs), "kv/data.mdb"), Some(vec![7; 2 * S]));

    // The other order: the parent synced first keeps an empty directory.
    let mut fs = Fs::new();
    let kv = fs.mkdir(ROOT, "kv");
    let data = fs.create(kv, "data.mdb");
    fs.write(data, 0, &[7; 2 * S]);
    fs.sync_file(data);
    fs.sync_dir(ROOT);
    let image = power_loss(&fs);
    assert_eq!(image.root.entries.get("kv"), Some(&Entry::Dir(DirImage::default())));
    assert_eq!(file(&image, "kv/data.mdb"), None);
}

/// An unlink is lost until the directory is synced: the file comes back with
/// its durable data (not the data written after its last sync).
#[test]
fn unlink_is_lost_until_the_directory_is_synced() {
    let mut fs = Fs::new();
    let a = durable_file(&mut fs, "a", &[1; 2 * S]);
    fs.write(a, 0, &[2; S]);
    assert_eq!(fs.unlink(ROOT, "a"), Some(a));
    assert_eq!(fs.lookup("a"), None);
    assert_eq!(file(&fs.live_image(), "a"), None, "a process crash keeps the unlink");
    assert_eq!(file(&power_loss(&fs), "a"), Some(vec![1; 2 * S]), "the unlink is lost");

    // Torn: gone, or back as its durable data with the unsynced sector surviving, vanishing or torn.
    let mut gone = 0;
    let mut back = 0;
    for seed in 0..64 {
        match file(&torn(&fs, seed), "a") {
            None => gone += 1,
            Some(bytes) => {
                back += 1;
                assert_eq!(bytes.len(), 2 * S, "seed {seed}");
                assert_eq!(&bytes[S..], &[1; S][..], "seed {seed}: the unwritten sector is durable");
            }
        }
    }
    assert!(gone > 0 && back > 0, "gone {gone}, back {back}");

    fs.sync_dir(ROOT);
    assert_eq!(file(&power_loss(&fs), "a"), None);
    for seed in 0..16 {
        assert_eq!(file(&torn(&fs, seed), "a"), None, "seed {seed}");
    }
}

/// Which names a rename leaves: `Old`, `New`, `Neither` or `Both`.
fn rename_outcome(image: &Image, data: &[u8]) -> &'static str {
    let old = file(image, "old");
    let new = file(image, "new");
    for bytes in [&old, &new].into_iter().flatten() {
        assert_eq!(bytes, data, "a renamed file keeps its data");
    }
    match (old.is_some(), new.is_some()) {
        (true, false) => "old",
        (false, true) => "new",
        (false, false) => "neither",
        (true, true) => "both",
    }
}

/// A rename is pending entry operations (an unlink of the source, a link of
/// the destination, and an unlink of a replaced destination), each persisting
/// on its own (ALICE's default file system): before the directory fsync a
/// torn power loss can leave the old name, the new name, neither, or both; a
/// plain power loss leaves the old name; after the fsync, only the new name.
#[test]
fn rename_before_and_after_the_directory_sync() {
    let mut fs = Fs::new();
    let ino = durable_file(&mut fs, "old", b"contents");
    assert_eq!(fs.rename(ROOT, "old", ROOT, "new"), Some(ino));
    assert_eq!(fs.lookup("new"), Some(ino));
    assert_eq!(
        fs.pending_dir_ops(),
        vec![(ROOT, DirOp::Unlink("old".into(), ino)), (ROOT, DirOp::Link("new".into(), ino))]
    );
    assert_eq!(rename_outcome(&power_loss(&fs), b"contents"), "old");
    assert_eq!(rename_outcome(&fs.live_image(), b"contents"), "new");

    let mut outcomes = BTreeMap::new();
    for seed in 0..128 {
        *outcomes.entry(rename_outcome(&torn(&fs, seed), b"contents")).or_insert(0) += 1;
    }
    // Each of the two operations persists on its own: both names (the link
    // without the unlink) is as possible as neither (the unlink without the link).
    for outcome in ["old", "new", "neither", "both"] {
        assert!(outcomes.contains_key(outcome), "{outcome} never seen: {outcomes:?}");
    }

    fs.sync_dir(ROOT);
    assert_eq!(rename_outcome(&power_loss(&fs), b"contents"), "new");
    for seed in 0..32 {
        assert_eq!(rename_outcome(&torn(&fs, seed), b"contents"), "new", "seed {seed}");
    }
}

/// A rename over an existing durable file: the replaced entry's unlink is a
/// pending operation of its own. A plain power loss keeps the old target.
#[test]
fn rename_over_an_existing_file() {
    let mut fs = Fs::new();
    let old_target = durable_file(&mut fs, "cfg", b"v1");
    let tmp = fs.create(ROOT, "cfg.tmp");
    fs.write(tmp, 0, b"v2");
    fs.sync_file(tmp);
    fs.rename(ROOT, "cfg.tmp", ROOT, "cfg");
    let ops: BTreeSet<String> = fs.pending_dir_ops().into_iter().map(|(_, op)| format!("{op:?}")).collect();
    let expected: BTreeSet<String> = [
        DirOp::Link("cfg.tmp".into(), tmp),
        DirOp::Unlink("cfg.tmp".into(), tmp),
        DirOp::Unlink("cfg".into(), old_target),
        DirOp::Link("cfg".into(), tmp),
    ]
    .iter()
    .map(|op| format!("{op:?}"))
    .collect();
    assert_eq!(ops, expected, "create of the temporary name, then the rename's three operations");

    let image = power_loss(&fs);
    assert_eq!(file(&image, "cfg"), Some(b"v1".to_vec()));
    assert_eq!(file(&image, "cfg.tmp"), None);
    let mut cfg = BTreeSet::new();
    for seed in 0..128 {
        let got = file(&torn(&fs, seed), "cfg");
        assert!(matches!(got.as_deref(), None | Some(b"v1") | Some(b"v2")), "seed {seed}: {got:?}");
        cfg.insert(got);
    }
    assert_eq!(cfg.len(), 3, "cfg is v1, v2 or missing: {cfg:?}");
    fs.sync_dir(ROOT);
    assert_eq!(file(&power_loss(&fs), "cfg"), Some(b"v2".to_vec()));
    assert_eq!(file(&power_loss(&fs), "cfg.tmp"), None);
}

/// File data survives a power loss as of its last sync only.
#[test]
fn file_data_survives_as_of_its_last_sync() {
    let mut fs = Fs::new();
    let a = durable_file(&mut fs, "a", &[1; 4 * S]);
    fs.write(a, S + 10, &[2; S]);
    fs.write(a, 4 * S, &[3; 100]);
    let mut live = vec![1; 4 * S];
    live[S + 10..2 * S + 10].fill(2);
    live.extend([3; 100]);
    assert_eq!(fs.live(a).map(CowBytes::to_vec), Some(live.clone()));
    assert_eq!(file(&power_loss(&fs), "a"), Some(vec![1; 4 * S]));
    assert_eq!(file(&fs.live_image(), "a"), Some(live.clone()));
    fs.sync_file(a);
    assert_eq!(fs.durable(a).map(CowBytes::to_vec), Some(live.clone()));
    assert_eq!(file(&power_loss(&fs), "a"), Some(live.clone()));
    assert_eq!(file(&torn(&fs, 1), "a"), Some(live), "nothing left to tear");
}

/// A write through an O_DSYNC descriptor is durable when it returns, and so
/// is every dirty sector it touches (whole); other dirty sectors are not.
#[test]
fn o_dsync_writes_are_durable_at_once() {
    let mut fs = Fs::new();
    let a = durable_file(&mut fs, "a", &[1; 4 * S]);
    fs.write(a, 10, &[2; 4]); // sector 0, buffered
    fs.write(a, 3 * S, &[3; 4]); // sector 3, buffered
    fs.write_durable(a, 100, &[9; 8]); // sector 0 through O_DSYNC
    let mut expected = vec![1; 4 * S];
    expected[10..14].fill(2);
    expected[100..108].fill(9);
    assert_eq!(file(&power_loss(&fs), "a"), Some(expected.clone()));
    // Sector 3 is still unsynced: a torn power loss may keep, lose or tear it; sector 0 never changes.
    for seed in 0..32 {
        let got = file(&torn(&fs, seed), "a").unwrap();
        assert_eq!(&got[..3 * S], &expected[..3 * S], "seed {seed}");
    }

    // O_DSYNC past the end of a never-synced file: data and length durable,
    // the unwritten gap zeros; the entry still needs its directory sync.
    let b = fs.create(ROOT, "b");
    fs.write_durable(b, 2 * S, b"meta");
    assert_eq!(file(&power_loss(&fs), "b"), None);
    fs.sync_dir(ROOT);
    let mut meta = vec![0; 2 * S];
    meta.extend(b"meta");
    assert_eq!(file(&power_loss(&fs), "b"), Some(meta));
}

/// A failed sync (fsync-eio) reverts the dirty sectors to their durable
/// content (zeros past the durable end), keeps the length, and returns the
/// writes that make a real file agree.
#[test]
fn lose_unsynced_reverts_dirty_sectors() {
    let mut fs = Fs::new();
    let a = durable_file(&mut fs, "a", &[1; 2 * S]);
    fs.write(a, S + 5, &[2; 10]);
    fs.write(a, 3 * S, &[3; S]); // past the durable end, leaves a hole at sector 2
    let mut live = fs.live(a).unwrap().to_vec();
    let writes = fs.lose_unsynced(a);
    assert_eq!(writes, vec![(S, vec![1; S]), (3 * S, vec![0; S])]);
    for (offset, bytes) in &writes {
        live[*offset..offset + bytes.len()].copy_from_slice(bytes);
    }
    let mut expected = vec![1; 2 * S];
    expected.extend([0; 2 * S]);
    assert_eq!(live, expected, "the writes turn the real file into the model's");
    assert_eq!(fs.live(a).map(CowBytes::to_vec), Some(expected.clone()), "length kept");
    assert_eq!(fs.durable(a).map(CowBytes::to_vec), Some(vec![1; 2 * S]));
    // Nothing dirty is left: a torn power loss draws no sector.
    let mut counting = Counting::new(NothingPending);
    assert_eq!(file(&fs.surviving(&mut counting), "a"), Some(vec![1; 2 * S]));
    assert_eq!(counting.sectors, 0);
    assert_eq!(fs.lose_unsynced(a), Vec::new(), "nothing left to lose");

    // A never-synced file loses everything to zeros.
    let b = fs.create(ROOT, "b");
    fs.write(b, 0, &[4; 700]);
    assert_eq!(fs.lose_unsynced(b), vec![(0, vec![0; S]), (S, vec![0; 700 - S])]);
    assert_eq!(fs.live(b).map(CowBytes::to_vec), Some(vec![0; 700]));
}

/// A truncation that shrinks a synced file is pending: a plain power loss
/// keeps the durable length; a torn one either; a sync makes it durable.
#[test]
fn a_pending_shrink() {
    let mut fs = Fs::new();
    let data: Vec<u8> = (0..4 * S).map(|i| (i % 251) as u8).collect();
    let a = durable_file(&mut fs, "a", &data);
    fs.truncate(a, 700);
    assert_eq!(fs.live(a).map(CowBytes::len), Some(700));
    assert_eq!(file(&fs.live_image(), "a"), Some(data[..700].to_vec()));
    assert_eq!(file(&power_loss(&fs), "a"), Some(data.clone()));
    let mut lengths = BTreeSet::new();
    for seed in 0..64 {
        let mut r = rng(seed);
        let mut counting = Counting::new(Torn(&mut r));
        let got = file(&fs.surviving(&mut counting), "a").unwrap();
        assert_eq!((counting.shrinks, counting.sectors), (1, 0), "one shrink, no sector to draw");
        assert!(got == data || got == data[..700], "seed {seed}: {} bytes", got.len());
        lengths.insert(got.len());
    }
    assert_eq!(lengths, BTreeSet::from([700, 4 * S]));
    fs.sync_file(a);
    assert_eq!(file(&power_loss(&fs), "a"), Some(data[..700].to_vec()));

    // Shrink, then grow again with zeros: no shrink is pending (the file is
    // as long as its durable image), the regrown sectors are unsynced.
    let mut fs = Fs::new();
    let b = durable_file(&mut fs, "b", &[1; 4 * S]);
    fs.truncate(b, S);
    fs.truncate(b, 4 * S);
    let mut counting = Counting::new(NothingPending);
    assert_eq!(file(&fs.surviving(&mut counting), "b"), Some(vec![1; 4 * S]));
    assert_eq!((counting.shrinks, counting.sectors), (0, 3));
    let mut live = vec![1; S];
    live.extend([0; 3 * S]);
    assert_eq!(file(&fs.live_image(), "b"), Some(live));
}

/// A process crash keeps everything: pending entries, unsynced data, shrinks.
#[test]
fn process_crash_keeps_everything() {
    let mut fs = Fs::new();
    let a = durable_file(&mut fs, "a", &[1; 2 * S]);
    fs.write(a, 0, &[2; 10]);
    fs.truncate(a, S + 1);
    let kv = fs.mkdir(ROOT, "kv");
    let d = fs.create(kv, "data.mdb");
    fs.write(d, 4096, b"page");
    let j = fs.create(ROOT, "journal");
    fs.write(j, 0, b"hot");
    fs.rename(ROOT, "journal", ROOT, "journal2");
    durable_file(&mut fs, "gone", b"x");
    fs.unlink(ROOT, "gone");

    let image = fs.live_image();
    assert_eq!(names(&image), ["a", "journal2", "kv/data.mdb"]);
    let mut a_live = vec![2; 10];
    a_live.extend([1; S + 1 - 10]);
    assert_eq!(file(&image, "a"), Some(a_live));
    let mut page = vec![0; 4096];
    page.extend(b"page");
    assert_eq!(file(&image, "kv/data.mdb"), Some(page));
    assert_eq!(file(&image, "journal2"), Some(b"hot".to_vec()));
    assert_eq!(Fs::from_image(&image).live_image(), image);
}

/// An image loaded into a model is its live and its durable state: nothing
/// is pending, so no crash changes it and a torn power loss draws nothing.
#[test]
fn from_image_is_live_and_durable() {
    let mut sub = DirImage::default();
    sub.entries.insert("data.mdb".into(), Entry::File(CowBytes::from_slice(&[5; 3 * S + 7])));
    sub.entries.insert("empty".into(), Entry::File(CowBytes::default()));
    sub.entries.insert("deeper".into(), Entry::Dir(DirImage::default()));
    let mut root = DirImage::default();
    root.entries.insert("kv".into(), Entry::Dir(sub));
    root.entries.insert("swingstore.sqlite".into(), Entry::File(CowBytes::from_slice(b"SQLite format 3\0")));
    let image = Image { root };

    let fs = Fs::from_image(&image);
    assert_eq!(fs.live_image(), image);
    assert_eq!(power_loss(&fs), image);
    assert!(fs.pending_dir_ops().is_empty());
    let mut r = rng(9);
    let before = r.get_word_pos();
    assert_eq!(fs.surviving(&mut Torn(&mut r)), image);
    assert_eq!(r.get_word_pos(), before, "nothing pending, nothing drawn");
    assert_eq!(names(&image), ["kv/data.mdb", "kv/empty", "swingstore.sqlite"]);
    assert!(fs.lookup("kv/deeper").is_some_and(|ino| fs.is_dir(ino)));
}

/// Torn draws are a function of the rng: one seed, one image; and the seeds
/// do give different images.
#[test]
fn torn_draws_are_deterministic() {
    let mut fs = Fs::new();
    let a = durable_file(&mut fs, "a", &[1; 8 * S]);
    for sector in 0..8 {
        fs.write(a, sector * S + 3, &[sector as u8 + 10; 5]);
    }
    let b = fs.create(ROOT, "b");
    fs.write(b, 0, &[2; 5 * S]);
    fs.unlink(ROOT, "a");
    let mut distinct = BTreeSet::new();
    for seed in 0..32 {
        let image = torn(&fs, seed);
        assert_eq!(image, torn(&fs, seed), "seed {seed}");
        distinct
            .insert(format!("{:?}", image.files().iter().map(|(p, b)| (p.clone(), b.to_vec())).collect::<Vec<_>>()));
    }
    assert!(distinct.len() > 16, "only {} distinct images of 32 seeds", distinct.len());
}

// ---------------------------------------------------------------------------
// Every torn image is one the model allows: a random history of writes,
// truncations, syncs, O_DSYNC writes and lost syncs on a few files, checked
// against a reference kept by the test.

/// The test's own account of one file: live, durable, and the sectors
/// written since the last sync.
#[derive(Clone, Debug, Default)]
struct Reference {
    live: Vec<u8>,
    durable: Vec<u8>,
    dirty: BTreeSet<usize>,
}

impl Reference {
    fn write(&mut self, offset: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.live.len() < offset + data.len() {
            self.live.resize(offset + data.len(), 0);
        }
        self.live[offset..offset + data.len()].copy_from_slice(data);
        self.dirty.extend(offset / S..(offset + data.len()).div_ceil(S));
    }

    fn truncate(&mut self, len: usize) {
        if len > self.live.len() {
            self.dirty.extend(self.live.len() / S..len.div_ceil(S));
        }
        self.live.resize(len, 0);
        self.dirty.retain(|s| *s < len.div_ceil(S));
    }

    fn sync(&mut self) {
        self.durable = self.live.clone();
        self.dirty.clear();
    }

    fn sector(bytes: &[u8], sector: usize, len: usize) -> Vec<u8> {
        let range = sector * S..((sector + 1) * S).min(len);
        (range.clone()).map(|i| bytes.get(i).copied().unwrap_or(0)).collect()
    }

    fn write_durable(&mut self, offset: usize, data: &[u8]) {
        self.write(offset, data);
        let touched: Vec<usize> = self.dirty.range(offset / S..(offset + data.len()).div_ceil(S)).copied().collect();
        for sector in touched {
            let bytes = Reference::sector(&self.live, sector, self.live.len());
            let start = sector * S;
            if self.durable.len() < start + bytes.len() {
                self.durable.resize(start + bytes.len(), 0);
            }
            self.durable[start..start + bytes.len()].copy_from_slice(&bytes);
            self.dirty.remove(&sector);
        }
    }

    fn lose_unsynced(&mut self) {
        for sector in std::mem::take(&mut self.dirty) {
            let bytes = Reference::sector(&self.durable, sector, self.live.len());
            self.live[sector * S..sector * S + bytes.len()].copy_from_slice(&bytes);
        }
    }

    /// Whether `got` is an image a power loss may leave of this file: the
    /// durable bytes (or, after a pending shrink, their prefix), where each
    /// sector written since the last sync may instead hold the live bytes, or
    /// anything (torn), and may extend the file up to its live length. A
    /// sector not written since the last sync is exactly its durable bytes.
    fn allows(&self, got: &[u8]) -> Result<(), String> {
        let bases: Vec<usize> = match self.live.len() < self.durable.len() {
            true => vec![self.durable.len(), self.live.len()],
            false => vec![self.durable.len()],
        };
        let mut lengths: BTreeSet<usize> = bases.iter().copied().collect();
        for &base in &bases {
            for &sector in &self.dirty {
                let end = ((sector + 1) * S).min(self.live.len());
                if end > base {
                    lengths.insert(end);
                }
            }
        }
        if !lengths.contains(&got.len()) {
            return Err(format!("length {} not in {lengths:?}", got.len()));
        }
        for sector in 0..got.len().div_ceil(S) {
            let here = Reference::sector(got, sector, got.len());
            if self.dirty.contains(&sector) {
                continue; // live, durable, zeros or garbage: all allowed
            }
            // Not written since the sync: durable bytes, zeros past the durable end.
            let durable = Reference::sector(&self.durable, sector, got.len());
            if here != durable {
                return Err(format!("sector {sector} was not written since the last sync, yet changed"));
            }
        }
        Ok(())
    }
}

/// A survival that draws like `Torn` and records every answer, so that the
/// test can replay them on its reference.
struct Recorded {
    rng: rand_chacha::ChaCha8Rng,
    answers: Vec<Answer>,
}

#[derive(Clone, Debug)]
enum Answer {
    Shrink(bool),
    Sector(SectorFate),
    Garbage(Vec<u8>),
}

impl Survival for Recorded {
    fn dir_op(&mut self, _op: &DirOp) -> bool {
        panic!("no directory operation is pending in this test")
    }
    fn shrink(&mut self) -> bool {
        let keep = self.rng.next_u32() & 1 == 0;
        self.answers.push(Answer::Shrink(keep));
        keep
    }
    fn sector(&mut self) -> SectorFate {
        let fate = sim::fault::draw_sector_fate(&mut self.rng);
        self.answers.push(Answer::Sector(fate));
        fate
    }
    fn garbage(&mut self, buf: &mut [u8]) {
        self.rng.fill_bytes(buf);
        self.answers.push(Answer::Garbage(buf.to_vec()));
    }
}

/// The image the reference gives for the recorded answers (asked in the
/// model's documented order: per file, its pending shrink, then its dirty
/// sectors ascending, garbage right after a torn sector).
fn replay(files: &[Reference], answers: &[Answer]) -> Vec<Vec<u8>> {
    let mut answers = answers.iter();
    let mut out = Vec::new();
    for r in files {
        let mut image = r.durable.clone();
        if r.live.len() < image.len() {
            match answers.next() {
                Some(Answer::Shrink(true)) => image.truncate(r.live.len()),
                Some(Answer::Shrink(false)) => {}
                other => panic!("expected a shrink question, got {other:?}"),
            }
        }
        for &sector in &r.dirty {
            let bytes = match answers.next() {
                Some(Answer::Sector(SectorFate::Vanishes)) => continue,
                Some(Answer::Sector(SectorFate::Survives)) => Reference::sector(&r.live, sector, r.live.len()),
                Some(Answer::Sector(SectorFate::Torn)) => match answers.next() {
                    Some(Answer::Garbage(bytes)) => bytes.clone(),
                    other => panic!("expected garbage, got {other:?}"),
                },
                other => panic!("expected a sector question, got {other:?}"),
            };
            let start = sector * S;
            if image.len() < start + bytes.len() {
                image.resize(start + bytes.len(), 0);
            }
            image[start..start + bytes.len()].copy_from_slice(&bytes);
        }
        out.push(image);
    }
    assert!(answers.next().is_none(), "the model asked more than the reference expects");
    out
}

#[test]
fn every_torn_image_is_one_the_model_allows() {
    const FILES: usize = 3;
    let mut checked = 0;
    for history in 0..60u64 {
        let mut ops = rng(1_000 + history);
        let mut fs = Fs::new();
        let mut inos = Vec::new();
        let mut refs = vec![Reference::default(); FILES];
        for i in 0..FILES {
            inos.push(fs.create(ROOT, &format!("f{i}")));
        }
        fs.sync_dir(ROOT);
        let mut stamp = 1u8;
        for step in 0..40 {
            let i = ops.next_u32() as usize % FILES;
            let (ino, r) = (inos[i], &mut refs[i]);
            let len = r.live.len();
            match ops.next_u32() % 10 {
                0..=4 => {
                    let offset = ops.next_u32() as usize % (len + 2 * S);
                    let data = vec![stamp; 1 + ops.next_u32() as usize % (3 * S)];
                    stamp = stamp.wrapping_add(1).max(1);
                    fs.write(ino, offset, &data);
                    r.write(offset, &data);
                }
                5 => {
                    let to = ops.next_u32() as usize % (len + 2 * S + 1);
                    fs.truncate(ino, to);
                    r.truncate(to);
                }
                6 | 7 => {
                    fs.sync_file(ino);
                    r.sync();
                }
                8 => {
                    let offset = ops.next_u32() as usize % (len + S);
                    let data = vec![stamp; 1 + ops.next_u32() as usize % S];
                    stamp = stamp.wrapping_add(1).max(1);
                    fs.write_durable(ino, offset, &data);
                    r.write_durable(offset, &data);
                }
                _ => {
                    let writes = fs.lose_unsynced(ino);
                    let mut real = r.live.clone();
                    for (offset, bytes) in writes {
                        real[offset..offset + bytes.len()].copy_from_slice(&bytes);
                    }
                    r.lose_unsynced();
                    assert_eq!(real, r.live, "history {history} step {step}: lose_unsynced's writes");
                }
            }
            assert_eq!(fs.live(ino).unwrap().to_vec(), r.live, "history {history} step {step}: live f{i}");
            assert_eq!(fs.durable(ino).unwrap().to_vec(), r.durable, "history {history} step {step}: durable f{i}");

            // Every few steps: crash images now.
            if step % 8 != 7 {
                continue;
            }
            let plain = power_loss(&fs);
            let live = fs.live_image();
            for (i, r) in refs.iter().enumerate() {
                let name = format!("f{i}");
                assert_eq!(file(&plain, &name).as_ref(), Some(&r.durable), "history {history}: power loss of {name}");
                assert_eq!(file(&live, &name).as_ref(), Some(&r.live), "history {history}: process crash of {name}");
            }
            for seed in 0..8 {
                let image = torn(&fs, seed);
                for (i, r) in refs.iter().enumerate() {
                    let name = format!("f{i}");
                    let got = file(&image, &name).expect("every entry is durable");
                    if let Err(why) = r.allows(&got) {
                        panic!("history {history} step {step} seed {seed}: torn {name}: {why}");
                    }
                }
                let mut recorded = Recorded { rng: rng(seed), answers: Vec::new() };
                let image = fs.surviving(&mut recorded);
                let expected = replay(&refs, &recorded.answers);
                for (i, bytes) in expected.iter().enumerate() {
                    let name = format!("f{i}");
                    assert_eq!(file(&image, &name).as_ref(), Some(bytes), "history {history} step {step}: {name}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}
