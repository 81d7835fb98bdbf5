//! Reading the heights a disk state holds: the image is written to a scratch
//! directory and opened with the store itself, as a recovering kernel would
//! open it (outside any simulated disk: the run is over).

use super::{Heights, Reading};
use crate::disk::fs::{Fs, Image, NothingPending};
use crate::run::Case;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::kernel::keys::HOST_HEIGHT;
use store::{Design, StoreConfig, SwingStore};

/// SQLite's database file and LMDB's data file, as a crash image of a
/// node's home names them.
const SQLITE_FILE: &str = "swingstore/swingstore.sqlite";
const LMDB_DATA: &str = "swingstore/kv/data.mdb";

/// Reads heights from disk states, remembering the last image of each kind
/// (most points leave the durable image as it was: only a sync changes it).
pub(super) struct Reader {
    dir: PathBuf,
    design: Design,
    settings: crate::options::Settings,
    last_durable: Option<(Image, Heights)>,
    last_written: Option<(Image, Heights)>,
    last_host: Option<(Image, Reading)>,
}

impl Reader {
    pub(super) fn new(dir: &Path, case: &Case) -> Reader {
        let (design, settings) = (case.design, case.options.settings);
        Reader { dir: dir.to_path_buf(), design, settings, last_durable: None, last_written: None, last_host: None }
    }

    /// What a power loss at this disk state would keep.
    pub(super) fn durable(&mut self, fs: &Arc<Fs>) -> Heights {
        let image = fs.surviving(&mut NothingPending);
        let mut last = self.last_durable.take();
        let heights = self.cached(&mut last, image);
        self.last_durable = last;
        heights
    }

    /// What the files hold now (a process crash would keep it): what the
    /// databases have acknowledged.
    pub(super) fn written(&mut self, fs: &Arc<Fs>) -> Heights {
        let image = fs.live_image();
        let mut last = self.last_written.take();
        let heights = self.cached(&mut last, image);
        self.last_written = last;
        heights
    }

    /// The height the host's database would keep at a power loss at this
    /// disk state (read again only when its files changed).
    pub(super) fn host_durable(&mut self, fs: &Arc<Fs>) -> Reading {
        let image = fs.surviving(&mut NothingPending).only_under(store::chain::CHAIN_DIR);
        if let Some((seen, reading)) = &self.last_host {
            if *seen == image {
                return *reading;
            }
        }
        let reading = self.read_host(&image);
        self.last_host = Some((image, reading));
        reading
    }

    fn read_host(&self, image: &Image) -> Reading {
        if image.is_empty() {
            return Reading::Absent;
        }
        let home = self.dir.join("host");
        crate::disk::materialise(&home, image);
        let reading = match store::chain::read_host_height(&home, self.settings.host_db) {
            Ok(0) => Reading::Empty,
            Ok(height) => Reading::At(height),
            Err(_) => Reading::Unreadable,
        };
        let _ = std::fs::remove_dir_all(&home);
        reading
    }

    /// The heights of `image`, read again only when it differs from `last`'s.
    fn cached(&self, last: &mut Option<(Image, Heights)>, image: Image) -> Heights {
        if let Some((seen, heights)) = last {
            if *seen == image {
                return *heights;
            }
        }
        let heights = self.read(&image);
        *last = Some((image, heights));
        heights
    }

    fn read(&self, image: &Image) -> Heights {
        let sqlite_absent = image.file(SQLITE_FILE).is_none();
        let kv_absent = match self.design.uses_lmdb() {
            true => image.file(LMDB_DATA).is_none(),
            false => sqlite_absent,
        };
        if sqlite_absent && kv_absent {
            return Heights { sqlite: Reading::Absent, kv: Reading::Absent };
        }
        crate::disk::materialise(&self.dir, image);
        let read = self.open_and_read();
        let absent_or = |absent: bool, reading: Reading| if absent { Reading::Absent } else { reading };
        Heights { sqlite: absent_or(sqlite_absent, read.sqlite), kv: absent_or(kv_absent, read.kv) }
    }

    /// Open the store on the scratch directory and read both heights.
    fn open_and_read(&self) -> Heights {
        let mut config = StoreConfig::new(self.design);
        self.settings.configure(&mut config);
        config.lmdb_map_bytes = crate::node::LMDB_MAP_BYTES;
        let Ok(store) = SwingStore::open(&self.dir.join(store::chain::STORE_DIR), config) else {
            return Heights { sqlite: Reading::Unreadable, kv: Reading::Unreadable };
        };
        let sqlite = match store.sqlite_height() {
            Ok(Some(height)) => Reading::At(height),
            Ok(None) => Reading::Empty,
            Err(_) => Reading::Unreadable,
        };
        let kv = match store.kv_get(HOST_HEIGHT).map(|v| v.map(|text| text.parse::<u64>())) {
            Ok(Some(Ok(height))) => Reading::At(height),
            Ok(None) => Reading::Empty,
            _ => Reading::Unreadable,
        };
        store.close();
        Heights { sqlite, kv }
    }
}
