//! File contents that are cheap to copy: copy-on-write by 4 KiB chunk.
//!
//! A clone costs one reference count; a write after a clone copies the chunk
//! list once and then only the chunks it touches. This is what lets the world
//! keep the crash image of *every* crash point of a run (see
//! [`crate::world::World::capturing`]): consecutive images share all the chunks no
//! write touched in between.

use std::sync::Arc;

/// Chunk size: SQLite's and LMDB's page size, so a page write touches one chunk.
pub const CHUNK: usize = 4096;

type Chunk = [u8; CHUNK];

/// A file's bytes. Invariant: `chunks.len() == len.div_ceil(CHUNK)` and the
/// bytes of the last chunk past `len` are zero.
#[derive(Clone, Default)]
pub struct CowBytes {
    len: usize,
    chunks: Arc<Vec<Arc<Chunk>>>,
}

impl std::fmt::Debug for CowBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CowBytes({} bytes, {} chunks)", self.len, self.chunks.len())
    }
}

impl PartialEq for CowBytes {
    fn eq(&self, other: &CowBytes) -> bool {
        self.len == other.len
            && self.chunks.iter().zip(other.chunks.iter()).all(|(a, b)| Arc::ptr_eq(a, b) || a[..] == b[..])
    }
}

impl Eq for CowBytes {}

fn zero_chunk() -> Arc<Chunk> {
    Arc::new([0; CHUNK])
}

/// A failed sync loses the file's unsynced data: each of `sectors` (of
/// `sector_bytes`) of `live` becomes what `durable` holds there (zeros past its
/// end; `None`: never synced, all zeros), within `live`'s length, which stays.
/// Returns the writes made, in order, for a caller that keeps a real file too.
pub fn lose_unsynced(
    live: &mut CowBytes,
    durable: Option<&CowBytes>,
    sectors: impl IntoIterator<Item = usize>,
    sector_bytes: usize,
) -> Vec<(usize, Vec<u8>)> {
    let mut writes = Vec::new();
    for sector in sectors {
        let start = (sector * sector_bytes).min(live.len());
        let end = ((sector + 1) * sector_bytes).min(live.len());
        if start == end {
            continue;
        }
        let mut bytes = vec![0; end - start];
        if let Some(durable) = durable {
            durable.read(start, &mut bytes);
        }
        live.write(start, &bytes);
        writes.push((start, bytes));
    }
    writes
}

impl CowBytes {
    pub fn from_slice(bytes: &[u8]) -> CowBytes {
        let mut out = CowBytes::default();
        out.write(0, bytes);
        out
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copy the bytes at `offset` into `buf`; returns how many there were
    /// (short at the end of the file). The rest of `buf` is left as it is.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> usize {
        let start = offset.min(self.len);
        let n = (self.len - start).min(buf.len());
        let mut done = 0;
        while done < n {
            let at = start + done;
            let (index, within) = (at / CHUNK, at % CHUNK);
            let take = (CHUNK - within).min(n - done);
            buf[done..done + take].copy_from_slice(&self.chunks[index][within..within + take]);
            done += take;
        }
        n
    }

    /// The bytes in `start..end` (clipped to the length).
    pub fn slice(&self, start: usize, end: usize) -> Vec<u8> {
        let end = end.min(self.len);
        let start = start.min(end);
        let mut out = vec![0; end - start];
        self.read(start, &mut out);
        out
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.slice(0, self.len)
    }

    /// Grow with zeros or shrink to `len`.
    pub fn resize(&mut self, len: usize) {
        if len == self.len {
            return;
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        let count = len.div_ceil(CHUNK);
        if len < self.len {
            chunks.truncate(count);
            let tail = len % CHUNK;
            if tail != 0 {
                if let Some(last) = chunks.last_mut() {
                    Arc::make_mut(last)[tail..].fill(0);
                }
            }
        } else {
            chunks.resize_with(count, zero_chunk);
        }
        self.len = len;
    }

    /// Write `data` at `offset`, growing the file with zeros as needed.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len();
        if end > self.len {
            self.resize(end);
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        let mut done = 0;
        while done < data.len() {
            let at = offset + done;
            let (index, within) = (at / CHUNK, at % CHUNK);
            let take = (CHUNK - within).min(data.len() - done);
            let slot = &mut chunks[index];
            if take == CHUNK && Arc::strong_count(slot) > 1 {
                // A whole shared chunk is replaced: no need to copy the old bytes first.
                let mut fresh = [0; CHUNK];
                fresh.copy_from_slice(&data[done..done + CHUNK]);
                *slot = Arc::new(fresh);
            } else {
                Arc::make_mut(slot)[within..within + take].copy_from_slice(&data[done..done + take]);
            }
            done += take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random writes, resizes and clones agree with a plain vector.
    #[test]
    fn behaves_like_a_vec() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut model: Vec<u8> = Vec::new();
        let mut cow = CowBytes::default();
        let mut kept: Vec<(Vec<u8>, CowBytes)> = Vec::new();
        for step in 0..2000u64 {
            match next(4) {
                0 | 1 => {
                    let offset = next(5 * CHUNK as u64) as usize;
                    let len = next(2 * CHUNK as u64 + 3) as usize;
                    let data: Vec<u8> = (0..len).map(|i| (step as usize + i) as u8 | 1).collect();
                    if model.len() < offset + len {
                        model.resize(offset + len, 0);
                    }
                    model[offset..offset + len].copy_from_slice(&data);
                    cow.write(offset, &data);
                }
                2 => {
                    let len = next(6 * CHUNK as u64) as usize;
                    model.resize(len, 0);
                    cow.resize(len);
                }
                _ => kept.push((model.clone(), cow.clone())),
            }
            assert_eq!(cow.to_vec(), model);
        }
        for (bytes, image) in kept {
            assert_eq!(image.to_vec(), bytes, "a clone never changes");
            assert_eq!(image, CowBytes::from_slice(&bytes));
        }
    }

    #[test]
    fn read_is_short_at_the_end() {
        let cow = CowBytes::from_slice(&[7; 5000]);
        let mut buf = [1u8; 100];
        assert_eq!(cow.read(4950, &mut buf), 50);
        assert_eq!(&buf[..50], &[7; 50][..]);
        assert_eq!(&buf[50..], &[1; 50][..]);
        assert_eq!(cow.read(6000, &mut buf), 0);
    }
}
