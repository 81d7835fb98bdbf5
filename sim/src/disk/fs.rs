//! The file system model: inodes, directories, and what of them is durable.
//!
//! This is the one place where the persistence model of [`crate::fault`] is
//! implemented. It is plain data: no I/O, no thread-locals, no knowledge of
//! who calls it. [`super::Disk`] feeds it every mutating file system call
//! the store makes (through SQLite's and LMDB's own code, and the store's
//! own `std::fs` calls), after the real call on tmpfs succeeded, so that the
//! model's *live* state is the real one; the model adds what the real file
//! system does not show: what would survive a power loss now.
//!
//! Per file inode: the live bytes, the durable bytes (as of its last
//! fsync/fdatasync; empty if never synced) and the 512-byte sectors written
//! since. Per directory inode: the live entries, the durable entries (as of
//! its last fsync) and the entry operations since then, in order
//! ([`DirOp`]). A rename is three entry operations, as in ALICE's default
//! file system model (`alicedefaultfs.py`, `rename`): unlink of the
//! destination's old entry, unlink of the source entry, link of the
//! destination (here recorded as: unlink of the source, then unlink of the
//! old entry and link of the destination).
//!
//! [`FsState::surviving`] makes a crash image; the caller decides with a
//! [`Survival`] which pending operations survive. Each persists on its own,
//! so a renamed file may survive under its old name, its new name, both
//! (the source's unlink lost, the target's link kept) or neither.

use crate::cow::CowBytes;
use crate::fault::{SectorFate, SECTOR_BYTES};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An inode number of the model (allocation order, so deterministic; not the real one).
pub type Ino = u32;

/// The store's directory: the model's root, durable from the start (the
/// operator made it; the store only works inside it).
pub const ROOT: Ino = 0;

/// Deepest directory nesting an image follows (a guard; the store uses two levels).
const MAX_DEPTH: usize = 16;

/// One pending operation on a directory's entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirOp {
    /// `name` now refers to the inode (create, mkdir, rename's destination).
    Link(String, Ino),
    /// `name` no longer refers to the inode (unlink, rmdir, rename's source,
    /// and the entry a rename replaces).
    Unlink(String, Ino),
}

#[derive(Clone, Debug, Default)]
struct FileNode {
    live: CowBytes,
    /// As of the last sync (empty: never synced). Shares chunks with `live`.
    durable: CowBytes,
    /// Sectors written since the last sync.
    dirty: BTreeSet<usize>,
}

#[derive(Clone, Debug, Default)]
struct DirNode {
    live: BTreeMap<String, Ino>,
    durable: BTreeMap<String, Ino>,
    /// Entry operations since the last sync of this directory, in order.
    pending: Vec<DirOp>,
}

#[derive(Clone, Debug)]
enum Inode {
    File(FileNode),
    Dir(DirNode),
}

/// The whole model. Cloning it costs a reference count per inode: the
/// reference run keeps one per crash point ([`FsState`]).
#[derive(Clone, Debug)]
pub struct Fs {
    inodes: BTreeMap<Ino, Arc<Inode>>,
    next_ino: Ino,
    /// Bumped at every change: a capture can reuse the previous one when equal.
    generation: u64,
}

/// The model at one moment, kept for a crash image made later.
pub type FsState = Fs;

/// A file system as it survives a crash: a tree of directories and files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub root: DirImage,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirImage {
    pub entries: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File(CowBytes),
    Dir(DirImage),
}

impl Image {
    /// The file at `path` (`/`-separated, relative to the root), if present.
    pub fn file(&self, path: &str) -> Option<&CowBytes> {
        let mut dir = &self.root;
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            match (dir.entries.get(part)?, parts.peek()) {
                (Entry::File(bytes), None) => return Some(bytes),
                (Entry::Dir(sub), Some(_)) => dir = sub,
                _ => return None,
            }
        }
        None
    }

    /// This image with only the top-level directory `name` (and what is in it).
    pub fn only_under(&self, name: &str) -> Image {
        let mut root = DirImage::default();
        if let Some(entry) = self.root.entries.get(name) {
            root.entries.insert(name.to_string(), entry.clone());
        }
        Image { root }
    }

    /// Whether the image holds no file at all.
    pub fn is_empty(&self) -> bool {
        self.files().is_empty()
    }

    /// Every file, by path relative to the root, in path order.
    pub fn files(&self) -> Vec<(String, &CowBytes)> {
        let mut out = Vec::new();
        collect_files(&self.root, "", &mut out);
        out
    }
}

fn collect_files<'a>(dir: &'a DirImage, prefix: &str, out: &mut Vec<(String, &'a CowBytes)>) {
    for (name, entry) in &dir.entries {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        match entry {
            Entry::File(bytes) => out.push((path, bytes)),
            Entry::Dir(sub) => collect_files(sub, &path, out),
        }
    }
}

/// Decides, at a power loss, which pending operations survive. Asked in a
/// fixed order (directories by inode, each's operations in order; then files
/// by inode, each's pending truncation, then its dirty sectors ascending), so
/// that a seeded implementation gives one image per seed.
pub trait Survival {
    /// Does this pending directory entry operation survive?
    fn dir_op(&mut self, op: &DirOp) -> bool;
    /// Does a pending truncation (the file is shorter than its durable image) survive?
    fn shrink(&mut self) -> bool;
    /// What becomes of one sector written since the file's last sync?
    fn sector(&mut self) -> SectorFate;
    /// The bytes a torn sector holds (asked right after [`Survival::sector`] said `Torn`).
    fn garbage(&mut self, buf: &mut [u8]);
}

/// A power loss that keeps exactly what was made durable: nothing pending survives.
pub struct NothingPending;

impl Survival for NothingPending {
    fn dir_op(&mut self, _op: &DirOp) -> bool {
        false
    }
    fn shrink(&mut self) -> bool {
        false
    }
    fn sector(&mut self) -> SectorFate {
        SectorFate::Vanishes
    }
    fn garbage(&mut self, _buf: &mut [u8]) {}
}

/// The byte range of sector `sector`, clipped to `len`.
fn sector_range(sector: usize, len: usize) -> std::ops::Range<usize> {
    let start = (sector * SECTOR_BYTES).min(len);
    start..((sector + 1) * SECTOR_BYTES).min(len)
}

impl Default for Fs {
    fn default() -> Fs {
        Fs::new()
    }
}

impl Fs {
    /// An empty root directory, durable.
    pub fn new() -> Fs {
        let mut inodes = BTreeMap::new();
        inodes.insert(ROOT, Arc::new(Inode::Dir(DirNode::default())));
        Fs { inodes, next_ino: ROOT + 1, generation: 0 }
    }

    /// A model whose durable and live states are both `image` (after a crash).
    pub fn from_image(image: &Image) -> Fs {
        let mut fs = Fs::new();
        fs.load_dir(ROOT, &image.root);
        fs
    }

    fn load_dir(&mut self, dir: Ino, image: &DirImage) {
        for (name, entry) in &image.entries {
            let ino = match entry {
                Entry::File(bytes) => self.add(Inode::File(FileNode {
                    live: bytes.clone(),
                    durable: bytes.clone(),
                    dirty: BTreeSet::new(),
                })),
                Entry::Dir(_) => self.add(Inode::Dir(DirNode::default())),
            };
            let node = self.dir_mut(dir);
            node.live.insert(name.clone(), ino);
            node.durable.insert(name.clone(), ino);
            if let Entry::Dir(sub) = entry {
                self.load_dir(ino, sub);
            }
        }
    }

    fn add(&mut self, inode: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Arc::new(inode));
        self.generation += 1;
        ino
    }

    /// Changes with every change of the model.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn inode_mut(&mut self, ino: Ino) -> &mut Inode {
        self.generation += 1;
        Arc::make_mut(self.inodes.get_mut(&ino).expect("a live inode of the model"))
    }

    fn dir_mut(&mut self, ino: Ino) -> &mut DirNode {
        match self.inode_mut(ino) {
            Inode::Dir(dir) => dir,
            Inode::File(_) => panic!("inode {ino} is a file, not a directory"),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> &mut FileNode {
        match self.inode_mut(ino) {
            Inode::File(file) => file,
            Inode::Dir(_) => panic!("inode {ino} is a directory, not a file"),
        }
    }

    fn file(&self, ino: Ino) -> Option<&FileNode> {
        match self.inodes.get(&ino).map(Arc::as_ref) {
            Some(Inode::File(file)) => Some(file),
            _ => None,
        }
    }

    /// Whether `ino` is a directory.
    pub fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.inodes.get(&ino).map(Arc::as_ref), Some(Inode::Dir(_)))
    }

    /// The live entry `name` of directory `dir`.
    pub fn entry(&self, dir: Ino, name: &str) -> Option<Ino> {
        match self.inodes.get(&dir).map(Arc::as_ref) {
            Some(Inode::Dir(node)) => node.live.get(name).copied(),
            _ => None,
        }
    }

    /// The inode at `path` (relative to the root, `/`-separated; "" is the root).
    pub fn lookup(&self, path: &str) -> Option<Ino> {
        path.split('/').filter(|p| !p.is_empty()).try_fold(ROOT, |dir, name| self.entry(dir, name))
    }

    /// A new empty file `name` in `dir` (the real open with O_CREAT made it).
    pub fn create(&mut self, dir: Ino, name: &str) -> Ino {
        let ino = self.add(Inode::File(FileNode::default()));
        self.link(dir, name, ino);
        ino
    }

    /// A new empty directory `name` in `dir`.
    pub fn mkdir(&mut self, dir: Ino, name: &str) -> Ino {
        let ino = self.add(Inode::Dir(DirNode::default()));
        self.link(dir, name, ino);
        ino
    }

    fn link(&mut self, dir: Ino, name: &str, ino: Ino) {
        let node = self.dir_mut(dir);
        if let Some(old) = node.live.insert(name.to_string(), ino) {
            node.pending.push(DirOp::Unlink(name.to_string(), old));
        }
        node.pending.push(DirOp::Link(name.to_string(), ino));
    }

    /// Remove the entry `name` of `dir` (unlink or rmdir); the inode lives on
    /// while open. Returns it.
    pub fn unlink(&mut self, dir: Ino, name: &str) -> Option<Ino> {
        let node = self.dir_mut(dir);
        let ino = node.live.remove(name)?;
        node.pending.push(DirOp::Unlink(name.to_string(), ino));
        Some(ino)
    }

    /// Rename `from` in `from_dir` to `to` in `to_dir`, replacing any entry there.
    pub fn rename(&mut self, from_dir: Ino, from: &str, to_dir: Ino, to: &str) -> Option<Ino> {
        if from_dir == to_dir && from == to {
            return self.entry(from_dir, from);
        }
        let ino = self.unlink(from_dir, from)?;
        self.link(to_dir, to, ino);
        Some(ino)
    }

    /// A write of `data` at `offset` reached the live file.
    pub fn write(&mut self, ino: Ino, offset: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let file = self.file_mut(ino);
        file.live.write(offset, data);
        file.dirty.extend(offset / SECTOR_BYTES..(offset + data.len()).div_ceil(SECTOR_BYTES));
    }

    /// The live file was truncated (or extended with zeros) to `len`.
    pub fn truncate(&mut self, ino: Ino, len: usize) {
        let file = self.file_mut(ino);
        let old = file.live.len();
        if len > old {
            file.dirty.extend(old / SECTOR_BYTES..len.div_ceil(SECTOR_BYTES));
        }
        file.live.resize(len);
        // Sectors wholly past the new end no longer hold data to lose or tear.
        let first_gone = len.div_ceil(SECTOR_BYTES);
        file.dirty.retain(|s| *s < first_gone);
    }

    /// An fsync or fdatasync of the file returned: its data is durable.
    pub fn sync_file(&mut self, ino: Ino) {
        let file = self.file_mut(ino);
        file.durable = file.live.clone();
        file.dirty.clear();
    }

    /// An fsync of the directory returned: its entries are durable.
    pub fn sync_dir(&mut self, ino: Ino) {
        let dir = self.dir_mut(ino);
        dir.durable = dir.live.clone();
        dir.pending.clear();
    }

    /// A write through an `O_DSYNC` descriptor returned: `data` is durable at
    /// `offset`, and so is every dirty sector it touches (whole, from the live
    /// file, as the kernel writes whole pages).
    pub fn write_durable(&mut self, ino: Ino, offset: usize, data: &[u8]) {
        self.write(ino, offset, data);
        let file = self.file_mut(ino);
        let touched = offset / SECTOR_BYTES..(offset + data.len()).div_ceil(SECTOR_BYTES);
        let sectors: Vec<usize> = file.dirty.range(touched).copied().collect();
        for sector in sectors {
            let range = sector_range(sector, file.live.len());
            let bytes = file.live.slice(range.start, range.end);
            file.durable.write(range.start, &bytes);
            file.dirty.remove(&sector);
        }
    }

    /// A failed sync (fsync-eio): the file's unsynced sectors read as their
    /// durable content again (zeros past its durable end); the length stays.
    /// Returns the writes that make a real file agree, in order.
    pub fn lose_unsynced(&mut self, ino: Ino) -> Vec<(usize, Vec<u8>)> {
        let file = self.file_mut(ino);
        let dirty = std::mem::take(&mut file.dirty);
        crate::cow::lose_unsynced(&mut file.live, Some(&file.durable), dirty, SECTOR_BYTES)
    }

    /// The live bytes of file `ino`.
    pub fn live(&self, ino: Ino) -> Option<&CowBytes> {
        self.file(ino).map(|f| &f.live)
    }

    /// The durable bytes of file `ino` (empty if never synced).
    pub fn durable(&self, ino: Ino) -> Option<&CowBytes> {
        self.file(ino).map(|f| &f.durable)
    }

    /// The sectors of file `ino` written since its last sync, ascending.
    pub fn dirty_sectors(&self, ino: Ino) -> impl Iterator<Item = usize> + '_ {
        self.file(ino).into_iter().flat_map(|f| f.dirty.iter().copied())
    }

    /// Every pending directory operation, by directory inode, in the order
    /// [`Survival::dir_op`] is asked about them.
    pub fn pending_dir_ops(&self) -> Vec<(Ino, DirOp)> {
        let mut out = Vec::new();
        for (ino, inode) in &self.inodes {
            if let Inode::Dir(dir) = inode.as_ref() {
                out.extend(dir.pending.iter().map(|op| (*ino, op.clone())));
            }
        }
        out
    }

    /// Forget the inodes nothing can reach any more: no directory entry, live,
    /// durable or pending, leads to them, and none is in `open`. A crash
    /// image could never show them; they would only cost every capture.
    pub fn collect(&mut self, open: &BTreeSet<Ino>) {
        let mut reachable: BTreeSet<Ino> = BTreeSet::new();
        let mut todo: Vec<Ino> = open.iter().copied().chain([ROOT]).collect();
        while let Some(ino) = todo.pop() {
            if !reachable.insert(ino) {
                continue;
            }
            if let Some(Inode::Dir(dir)) = self.inodes.get(&ino).map(Arc::as_ref) {
                let pending = dir.pending.iter().map(|op| match op {
                    DirOp::Link(_, ino) | DirOp::Unlink(_, ino) => *ino,
                });
                todo.extend(dir.live.values().chain(dir.durable.values()).copied().chain(pending));
            }
        }
        if reachable.len() < self.inodes.len() {
            self.inodes.retain(|ino, _| reachable.contains(ino));
            self.generation += 1;
        }
    }

    /// The state now, for a crash image made later (a reference count per inode).
    pub fn state(&self) -> FsState {
        self.clone()
    }

    /// Everything as it is now: what a process crash leaves.
    pub fn live_image(&self) -> Image {
        let entries = |ino: Ino| match self.inodes[&ino].as_ref() {
            Inode::Dir(dir) => dir.live.clone(),
            Inode::File(_) => BTreeMap::new(),
        };
        let contents = |ino: Ino| self.file(ino).map(|f| f.live.clone());
        Image { root: self.tree(ROOT, &entries, &contents, 0) }
    }

    /// What survives a power loss now: every directory's durable entries and
    /// every file's durable data, plus whatever of the pending operations
    /// `survival` lets through (the rules of [`crate::fault`]).
    pub fn surviving(&self, survival: &mut dyn Survival) -> Image {
        let mut entries_of = BTreeMap::new();
        let mut contents_of = BTreeMap::new();
        for (ino, inode) in &self.inodes {
            if let Inode::Dir(dir) = inode.as_ref() {
                entries_of.insert(*ino, surviving_entries(dir, survival));
            }
        }
        for (ino, inode) in &self.inodes {
            if let Inode::File(file) = inode.as_ref() {
                contents_of.insert(*ino, surviving_bytes(file, survival));
            }
        }
        let entries = |ino: Ino| entries_of.get(&ino).cloned().unwrap_or_default();
        let contents = |ino: Ino| contents_of.get(&ino).cloned();
        Image { root: self.tree(ROOT, &entries, &contents, 0) }
    }

    /// The image of directory `ino` given each directory's entries and each file's bytes.
    fn tree(
        &self,
        ino: Ino,
        entries: &dyn Fn(Ino) -> BTreeMap<String, Ino>,
        contents: &dyn Fn(Ino) -> Option<CowBytes>,
        depth: usize,
    ) -> DirImage {
        let mut out = DirImage::default();
        for (name, child) in entries(ino) {
            let entry = match self.inodes.get(&child).map(Arc::as_ref) {
                Some(Inode::Dir(_)) if depth < MAX_DEPTH => Entry::Dir(self.tree(child, entries, contents, depth + 1)),
                Some(Inode::File(_)) => Entry::File(contents(child).unwrap_or_default()),
                _ => continue,
            };
            out.entries.insert(name, entry);
        }
        out
    }
}

/// A directory's durable entries with the pending operations `survival` keeps
/// applied in order (an unlink of an entry that is not there does nothing).
fn surviving_entries(dir: &DirNode, survival: &mut dyn Survival) -> BTreeMap<String, Ino> {
    let mut entries = dir.durable.clone();
    for op in &dir.pending {
        if !survival.dir_op(op) {
            continue;
        }
        match op {
            DirOp::Link(name, ino) => {
                entries.insert(name.clone(), *ino);
            }
            DirOp::Unlink(name, ino) => {
                if entries.get(name) == Some(ino) {
                    entries.remove(name);
                }
            }
        }
    }
    entries
}

/// A file's durable bytes, with a pending truncation and each dirty sector
/// surviving, vanishing or torn as `survival` says. A surviving or torn
/// sector past the image's end grows it (zeros in between: an append may
/// expose zeros or garbage before its data).
fn surviving_bytes(file: &FileNode, survival: &mut dyn Survival) -> CowBytes {
    let mut image = file.durable.clone();
    if file.live.len() < image.len() && survival.shrink() {
        image.resize(file.live.len());
    }
    for &sector in &file.dirty {
        let fate = survival.sector();
        let range = sector_range(sector, file.live.len());
        if fate == SectorFate::Vanishes || range.is_empty() {
            continue;
        }
        let bytes = match fate {
            SectorFate::Survives => file.live.slice(range.start, range.end),
            _ => {
                let mut bytes = vec![0; range.len()];
                survival.garbage(&mut bytes);
                bytes
            }
        };
        image.write(range.start, &bytes);
    }
    image
}

/// A torn power loss: each pending directory operation and truncation
/// survives with probability 1/2, each dirty sector survives, vanishes or is
/// torn ([`crate::fault::draw_sector_fate`]), torn bytes come from the rng.
pub struct Torn<'a, R: rand_core::Rng>(pub &'a mut R);

impl<R: rand_core::Rng> Survival for Torn<'_, R> {
    fn dir_op(&mut self, _op: &DirOp) -> bool {
        self.0.next_u32() & 1 == 0
    }
    fn shrink(&mut self) -> bool {
        self.0.next_u32() & 1 == 0
    }
    fn sector(&mut self) -> SectorFate {
        crate::fault::draw_sector_fate(self.0)
    }
    fn garbage(&mut self, buf: &mut [u8]) {
        self.0.fill_bytes(buf);
    }
}

/// A torn power loss on a device whose sector writes are atomic: as
/// [`Torn`], but each unsynced sector survives or vanishes whole, never
/// garbled (what LMDB assumes of its meta page).
pub struct TornWhole<'a, R: rand_core::Rng>(pub &'a mut R);

impl<R: rand_core::Rng> Survival for TornWhole<'_, R> {
    fn dir_op(&mut self, _op: &DirOp) -> bool {
        self.0.next_u32() & 1 == 0
    }
    fn shrink(&mut self) -> bool {
        self.0.next_u32() & 1 == 0
    }
    fn sector(&mut self) -> SectorFate {
        match self.0.next_u32() & 1 {
            0 => SectorFate::Survives,
            _ => SectorFate::Vanishes,
        }
    }
    fn garbage(&mut self, _buf: &mut [u8]) {}
}
