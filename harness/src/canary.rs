//! Keyed canary blocks and the scanner that finds them anywhere in a buffer.
//!
//! A residue check writes canary into memory as one tenant and looks for it as another.
//! The canary must be found wherever an allocator or a page remapping moved it (so the
//! scanner matches at any byte offset, not only in place), and it must never be found in
//! data that is not canary (so every block carries a tag derived from a per-run random key
//! and the block's index).
//!
//! A block is [`BLOCK_BYTES`] bytes: four little-endian `u64` words
//!
//! | word | value |
//! | --- | --- |
//! | 0 | the marker, derived from the key alone |
//! | 1 | the block index |
//! | 2 | the tag, a keyed bijection of the index |
//! | 3 | the tag's complement xor the marker |
//!
//! The scanner looks for the 8-byte marker with `memchr`'s SIMD substring search, then
//! verifies the whole block; after a verified block it checks the next 32 bytes directly,
//! so a long run of canary costs one comparison per word rather than one search per block.
//! Random data matches a block with probability about 2^-128 per byte offset.
//!
//! Devices count canary with a kernel of their own instead ([`count_aligned`] is its
//! reference implementation, which the sim runs): a block is looked for at every 4-byte
//! aligned offset, which is every offset an allocator can move data to, since device
//! allocations are aligned far more coarsely. Only the counts cross the bus.

use memchr::memmem;

/// The size of one canary block, in bytes.
pub const BLOCK_BYTES: usize = 32;

/// The per-run secret from which every canary block of a run derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CanaryKey(pub u64);

impl CanaryKey {
    /// A fresh random key.
    pub fn random() -> CanaryKey {
        CanaryKey(rand::random())
    }

    /// A key derived from this one for a different purpose (a second tenant, local memory),
    /// so that canary from one role is never counted as another's.
    pub fn derive(self, purpose: u64) -> CanaryKey {
        CanaryKey(splitmix(self.0 ^ splitmix(purpose)))
    }

    fn marker(self) -> u64 {
        // Never zero: zeroed memory must not even start a candidate match.
        splitmix(self.0 ^ 0x6869_6c74_6d61_726b) | 1
    }

    fn tag_keys(self) -> (u64, u64) {
        (splitmix(self.0 ^ 0x7461_6731), splitmix(self.0 ^ 0x7461_6732) | 1)
    }

    /// The values a device kernel needs to generate this key's blocks itself:
    /// `(marker, x, m)`, where block `i` is `[marker, i, t, !t ^ marker]` with
    /// `t = (i ^ x) * m` (wrapping).
    pub fn parts(self) -> (u64, u64, u64) {
        let (x, m) = self.tag_keys();
        (self.marker(), x, m)
    }

    /// The four words of block `index`.
    pub fn block(self, index: u64) -> [u64; 4] {
        let marker = self.marker();
        let (x, m) = self.tag_keys();
        let tag = (index ^ x).wrapping_mul(m);
        [marker, index, tag, !tag ^ marker]
    }
}

/// Fills `buf` with consecutive canary blocks numbered from `first_index`. A tail shorter
/// than a block gets the first bytes of the next block (which the scanner will not count).
pub fn fill(buf: &mut [u8], key: CanaryKey, first_index: u64) {
    let mut chunks = buf.chunks_exact_mut(BLOCK_BYTES);
    let mut index = first_index;
    for chunk in &mut chunks {
        write_block(chunk, key.block(index));
        index += 1;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut block = [0u8; BLOCK_BYTES];
        write_block(&mut block, key.block(index));
        let n = tail.len();
        tail.copy_from_slice(&block[..n]);
    }
}

fn write_block(out: &mut [u8], words: [u64; 4]) {
    for (dst, w) in out.chunks_exact_mut(8).zip(words) {
        dst.copy_from_slice(&w.to_le_bytes());
    }
}

/// What a scan found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanReport {
    /// Complete canary blocks found.
    pub blocks: u64,
    /// Of those, blocks found exactly where their index says they were written
    /// (offset = index × block size from the start of the scanned buffer).
    pub in_place: u64,
    /// Bytes scanned.
    pub scanned: u64,
    /// Byte offset of the first block found, if any.
    pub first_offset: Option<u64>,
}

impl ScanReport {
    /// Bytes of canary found.
    pub fn leaked_bytes(&self) -> u64 {
        self.blocks * BLOCK_BYTES as u64
    }

    /// Adds another scan's findings to this one, as if the buffers were concatenated
    /// (offsets of `other` are shifted by the bytes already scanned).
    pub fn merge(&mut self, other: ScanReport) {
        if self.first_offset.is_none() {
            self.first_offset = other.first_offset.map(|o| o + self.scanned);
        }
        self.blocks += other.blocks;
        self.in_place += other.in_place;
        self.scanned += other.scanned;
    }
}

/// A reusable scanner for one key.
pub struct Scanner {
    key: CanaryKey,
    marker: [u8; 8],
    finder: memmem::Finder<'static>,
    tag_keys: (u64, u64),
}

impl Scanner {
    /// A scanner for canary written with `key`.
    pub fn new(key: CanaryKey) -> Scanner {
        let marker = key.marker().to_le_bytes();
        Scanner {
            key,
            marker,
            finder: memmem::Finder::new(&marker).into_owned(),
            tag_keys: key.tag_keys(),
        }
    }

    /// The key this scanner looks for.
    pub fn key(&self) -> CanaryKey {
        self.key
    }

    /// Counts the complete canary blocks in `hay`, at any byte offset.
    pub fn scan(&self, hay: &[u8]) -> ScanReport {
        self.scan_from(hay, 0, hay.len() as u64)
    }

    /// Counts the complete canary blocks of a chunk of a larger buffer: `hay` starts at byte
    /// `base` of the buffer, and only blocks that start in its first `limit` bytes count
    /// (the rest of `hay` is overlap with the next chunk, so that a block across the
    /// boundary is found once). Offsets in the report are offsets in the whole buffer.
    pub fn scan_from(&self, hay: &[u8], base: u64, limit: u64) -> ScanReport {
        let limit = limit.min(hay.len() as u64) as usize;
        let mut report = ScanReport {
            scanned: limit as u64,
            ..ScanReport::default()
        };
        let mut pos = 0;
        while pos < limit && pos + BLOCK_BYTES <= hay.len() {
            let Some(found) = self.finder.find(&hay[pos..]) else {
                break;
            };
            let mut at = pos + found;
            let start = at;
            // Walk the run of consecutive verified blocks starting at the candidate.
            while at < limit
                && let Some(index) = hay.get(at..at + BLOCK_BYTES).and_then(|b| self.verify(b))
            {
                report.blocks += 1;
                let offset = base + at as u64;
                if index.checked_mul(BLOCK_BYTES as u64) == Some(offset) {
                    report.in_place += 1;
                }
                report.first_offset.get_or_insert(offset);
                at += BLOCK_BYTES;
            }
            pos = if at > start { at } else { start + 1 };
        }
        report
    }

    /// The block's index when `block` (exactly one block long) is a valid canary block.
    #[inline]
    fn verify(&self, block: &[u8]) -> Option<u64> {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&block[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        if block[..8] != self.marker {
            return None;
        }
        let index = word(1);
        let (x, m) = self.tag_keys;
        let tag = (index ^ x).wrapping_mul(m);
        let marker = u64::from_le_bytes(self.marker);
        (word(2) == tag && word(3) == !tag ^ marker).then_some(index)
    }
}

/// The device detector, as the OpenCL and CUDA kernels `count_canary` implement it and
/// the sim runs it: counts the canary blocks of `key` that start at any 4-byte-aligned
/// offset of `hay`, where `hay` is the part of a buffer that starts at byte `base` (a
/// multiple of 4). Each aligned offset is judged on its own: the first word is the
/// marker, the last two the keyed tag of the index in the second. Offsets in the report
/// are offsets in the whole buffer.
pub fn count_aligned(hay: &[u8], key: CanaryKey, base: u64) -> ScanReport {
    let [marker, ..] = key.block(0);
    let (x, m) = key.tag_keys();
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&hay[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut report = ScanReport {
        scanned: hay.len() as u64,
        ..ScanReport::default()
    };
    let mut at = 0;
    while at + BLOCK_BYTES <= hay.len() {
        if word(at) == marker {
            let index = word(at + 8);
            let tag = (index ^ x).wrapping_mul(m);
            if word(at + 16) == tag && word(at + 24) == !tag ^ marker {
                let offset = base + at as u64;
                report.blocks += 1;
                if index.checked_mul(BLOCK_BYTES as u64) == Some(offset) {
                    report.in_place += 1;
                }
                report.first_offset.get_or_insert(offset);
            }
        }
        at += 4;
    }
    report
}

/// A plain read of the same buffer (a sum over `u64` words): the baseline the scanner's
/// throughput is measured against in `benches/canary_scan.rs`.
pub fn plain_read(hay: &[u8]) -> u64 {
    hay.chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .fold(0u64, u64::wrapping_add)
}

/// SplitMix64's finaliser: a fast bijective mixer.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canary(key: CanaryKey, blocks: usize, first: u64) -> Vec<u8> {
        let mut v = vec![0u8; blocks * BLOCK_BYTES];
        fill(&mut v, key, first);
        v
    }

    #[test]
    fn a_filled_buffer_is_found_whole_and_in_place() {
        let key = CanaryKey(42);
        let buf = canary(key, 1000, 0);
        let r = Scanner::new(key).scan(&buf);
        assert_eq!(r.blocks, 1000);
        assert_eq!(r.in_place, 1000);
        assert_eq!(r.leaked_bytes(), 32_000);
        assert_eq!(r.first_offset, Some(0));
    }

    #[test]
    fn another_keys_canary_is_not_counted() {
        let buf = canary(CanaryKey(1), 100, 0);
        assert_eq!(Scanner::new(CanaryKey(2)).scan(&buf).blocks, 0);
        assert_eq!(Scanner::new(CanaryKey(1).derive(7)).scan(&buf).blocks, 0);
    }

    #[test]
    fn zeroed_memory_holds_no_canary() {
        assert_eq!(Scanner::new(CanaryKey(3)).scan(&vec![0u8; 1 << 16]).blocks, 0);
    }

    #[test]
    fn a_damaged_block_is_not_counted_but_its_neighbours_are() {
        let key = CanaryKey(5);
        let mut buf = canary(key, 10, 0);
        buf[4 * BLOCK_BYTES + 20] ^= 1;
        let r = Scanner::new(key).scan(&buf);
        assert_eq!(r.blocks, 9);
    }

    #[test]
    fn merge_shifts_offsets() {
        let mut a = ScanReport {
            scanned: 100,
            ..ScanReport::default()
        };
        a.merge(ScanReport {
            blocks: 1,
            in_place: 0,
            scanned: 64,
            first_offset: Some(32),
        });
        assert_eq!(a.first_offset, Some(132));
        assert_eq!(a.blocks, 1);
        assert_eq!(a.scanned, 164);
    }

    proptest! {
        /// A run of canary placed at any byte offset of any buffer is found exactly.
        #[test]
        fn canary_at_any_offset_is_found_exactly(
            key in any::<u64>(),
            prefix in proptest::collection::vec(any::<u8>(), 0..200),
            suffix in proptest::collection::vec(any::<u8>(), 0..200),
            blocks in 1usize..40,
            first in 0u64..1_000_000,
        ) {
            let key = CanaryKey(key);
            let mut buf = prefix.clone();
            buf.extend(canary(key, blocks, first));
            buf.extend(&suffix);
            let r = Scanner::new(key).scan(&buf);
            prop_assert_eq!(r.blocks, blocks as u64);
            prop_assert_eq!(r.first_offset, Some(prefix.len() as u64));
            prop_assert_eq!(r.scanned, buf.len() as u64);
        }

        /// Scanning a buffer in chunks read with a block of overlap, as backends that
        /// cannot map device memory do, finds exactly what one scan of the whole finds.
        #[test]
        fn chunked_scans_add_up_to_the_whole(
            key in any::<u64>(),
            prefix in proptest::collection::vec(any::<u8>(), 0..300),
            blocks in 1usize..60,
            chunk in 1usize..400,
        ) {
            let key = CanaryKey(key);
            let mut buf = prefix.clone();
            buf.extend(canary(key, blocks, 0));
            buf.extend(&prefix);
            let whole = Scanner::new(key).scan(&buf);
            let scanner = Scanner::new(key);
            let mut sum = ScanReport::default();
            let mut start = 0;
            while start < buf.len() {
                let len = chunk.min(buf.len() - start);
                let end = (start + len + BLOCK_BYTES - 1).min(buf.len());
                let part = scanner.scan_from(&buf[start..end], start as u64, len as u64);
                sum.blocks += part.blocks;
                sum.in_place += part.in_place;
                sum.scanned += part.scanned;
                if sum.first_offset.is_none() {
                    sum.first_offset = part.first_offset;
                }
                start += len;
            }
            prop_assert_eq!(sum, whole);
        }

        /// The device detector's reference finds a run of canary placed at any 4-byte
        /// offset exactly, as the host scanner does.
        #[test]
        fn the_device_detector_finds_canary_at_every_aligned_offset(
            key in any::<u64>(),
            words in 0usize..64,
            blocks in 1usize..40,
            first in 0u64..1_000_000,
            tail in 0usize..40,
            base in 0u64..1000,
        ) {
            let key = CanaryKey(key);
            let mut buf: Vec<u8> = (0..words * 4).map(|i| (i * 131 + 7) as u8).collect();
            buf.extend(canary(key, blocks, first));
            buf.extend(std::iter::repeat_n(0xa5u8, tail));
            let base = base * 4;
            let r = count_aligned(&buf, key, base);
            prop_assert_eq!(r.blocks, blocks as u64);
            prop_assert_eq!(r.first_offset, Some(base + words as u64 * 4));
            prop_assert_eq!(r.scanned, buf.len() as u64);
            let in_place = first * BLOCK_BYTES as u64 == base + words as u64 * 4;
            prop_assert_eq!(r.in_place, if in_place { blocks as u64 } else { 0 });
            let host = Scanner::new(key).scan(&buf);
            prop_assert_eq!(host.blocks, r.blocks);
        }

        /// Random data never yields a canary block to the device detector either.
        #[test]
        fn the_device_detector_finds_nothing_in_random_data(
            key in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..8192),
        ) {
            prop_assert_eq!(count_aligned(&data, CanaryKey(key), 0).blocks, 0);
        }

        /// Random data never yields a canary block.
        #[test]
        fn random_data_has_no_false_positives(
            key in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..8192),
        ) {
            prop_assert_eq!(Scanner::new(CanaryKey(key)).scan(&data).blocks, 0);
        }

        /// Random data with the marker planted everywhere (the hardest near-miss) still
        /// yields nothing: the tag, not the marker, decides.
        #[test]
        fn planted_markers_without_tags_are_not_counted(
            key in any::<u64>(),
            data in proptest::collection::vec(any::<u64>(), 4..512),
        ) {
            let key = CanaryKey(key);
            let marker = key.block(0)[0];
            let mut bytes = Vec::new();
            for (i, w) in data.iter().enumerate() {
                let w = if i % 4 == 0 { marker } else { *w };
                bytes.extend(w.to_le_bytes());
            }
            prop_assert_eq!(Scanner::new(key).scan(&bytes).blocks, 0);
        }
    }
}
