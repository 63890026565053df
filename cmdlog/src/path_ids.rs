//! Compact identities of a log's paths, for the whole-log state that holds
//! one entry per output (which outputs were written, by whom): 8 bytes a
//! path whatever its length, in tables that grow a slice at a time.
//!
//! An identity is 64 bits of SipHash under a key that is random in every
//! process (the standard library's `RandomState`), so a log cannot be
//! crafted ahead to make two paths collide; by chance, two of a million
//! paths share one in about 37 million logs. Users of these tables make a
//! collision fail closed where it matters: it refuses a log (two writers,
//! a read before a write), reruns or blocks a command, or makes a lookup
//! look on disk. The one exception: an input taken by a collision for an
//! earlier command's output is not refused as missing by the first pass;
//! the executor still checks it exists before its command runs.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// How many tables a [`PathIdMap`] spreads its entries over. A hash table
/// doubles when it fills, holding the old and the new table at once; with
/// the entries spread, only one small table does so at any moment, so the
/// map's peak stays near its size instead of one and a half times it.
const SHARDS: usize = 64;

/// Gives paths their identities under one random key.
#[derive(Debug, Clone, Default)]
pub struct PathIds {
    key: std::collections::hash_map::RandomState,
}

impl PathIds {
    /// A new random key.
    pub fn new() -> PathIds {
        PathIds::default()
    }

    /// The identity of `path` (give it normalized).
    pub fn of(&self, path: &str) -> PathId {
        PathId(self.key.hash_one(path))
    }
}

/// A path's identity under one [`PathIds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathId(u64);

impl PathId {
    /// The identity as a number, to store it outside a [`PathIdMap`]
    /// (a spill file); meaningful only under the same [`PathIds`].
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The identity a number from [`PathId::as_u64`] stands for.
    pub fn from_u64(raw: u64) -> PathId {
        PathId(raw)
    }

    /// Which table of a [`PathIdMap`] holds this identity. Middle bits:
    /// the table itself uses the low bits (bucket) and the top seven (tag).
    fn shard(self) -> usize {
        (self.0 >> 32) as usize % SHARDS
    }
}

/// Values by [`PathId`]: 8 bytes of key an entry, not hashed again (an
/// identity is a keyed hash already).
#[derive(Debug)]
pub struct PathIdMap<V> {
    shards: Vec<HashMap<PathId, V, BuildPathIdHasher>>,
}

impl<V> Default for PathIdMap<V> {
    fn default() -> Self {
        PathIdMap {
            shards: (0..SHARDS).map(|_| HashMap::default()).collect(),
        }
    }
}

impl<V> PathIdMap<V> {
    /// The value of `id`, if it has one.
    pub fn get(&self, id: &PathId) -> Option<&V> {
        self.shards[id.shard()].get(id)
    }

    /// Whether `id` has a value.
    pub fn contains_key(&self, id: &PathId) -> bool {
        self.shards[id.shard()].contains_key(id)
    }

    /// Sets the value of `id`, returning the one it replaces.
    pub fn insert(&mut self, id: PathId, value: V) -> Option<V> {
        self.shards[id.shard()].insert(id, value)
    }

    /// How many identities have a value.
    pub fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    /// Whether no identity has a value.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(HashMap::is_empty)
    }
}

/// A set of [`PathId`]s.
#[derive(Debug, Default)]
pub struct PathIdSet {
    map: PathIdMap<()>,
}

impl PathIdSet {
    /// Adds `id`; whether it was new.
    pub fn insert(&mut self, id: PathId) -> bool {
        self.map.insert(id, ()).is_none()
    }

    /// Whether the set holds `id`.
    pub fn contains(&self, id: &PathId) -> bool {
        self.map.contains_key(id)
    }

    /// How many identities the set holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Extend<PathId> for PathIdSet {
    fn extend<I: IntoIterator<Item = PathId>>(&mut self, ids: I) {
        for id in ids {
            self.insert(id);
        }
    }
}

/// Builds the [`PathIdHasher`] of maps and sets keyed by [`PathId`].
pub type BuildPathIdHasher = BuildHasherDefault<PathIdHasher>;

/// Passes a [`PathId`] through as its own hash: it is a keyed hash already.
#[derive(Debug, Default)]
pub struct PathIdHasher(u64);

impl Hasher for PathIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` (a `PathId`) is expected; fold anything else in
        // so a wrong use still spreads rather than piling on one bucket.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, id: u64) {
        // A lone `PathId` hashes to itself (the state starts at 0); a key
        // of several parts still depends on every one.
        self.0 = self.0.rotate_left(32) ^ id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_tell_paths_apart_and_agree_on_one() {
        let ids = PathIds::new();
        assert_eq!(ids.of("out/a.o"), ids.of("out/a.o"));
        assert_ne!(ids.of("out/a.o"), ids.of("out/b.o"));
        assert_ne!(ids.of(""), ids.of("a"));
        assert_ne!(
            PathIds::new().of("out/a.o"),
            ids.of("out/a.o"),
            "keys differ"
        );
    }

    #[test]
    fn maps_and_sets_find_what_they_hold() {
        let ids = PathIds::new();
        let mut map = PathIdMap::default();
        let mut set = PathIdSet::default();
        assert!(map.is_empty() && set.is_empty());
        for i in 0..10_000u64 {
            assert_eq!(map.insert(ids.of(&format!("o/{i}.o")), i), None);
        }
        set.extend((0..10_000).map(|i| ids.of(&format!("o/{i}.o"))));
        assert_eq!((map.len(), set.len()), (10_000, 10_000));
        assert_eq!(map.get(&ids.of("o/9999.o")), Some(&9999));
        assert_eq!(map.insert(ids.of("o/7.o"), 70), Some(7));
        assert!(set.contains(&ids.of("o/0.o")));
        assert!(!set.insert(ids.of("o/0.o")));
        assert!(!map.contains_key(&ids.of("o/10000.o")));
        assert!(!set.contains(&ids.of("o/10000.o")));
    }

    #[test]
    fn tables_are_chosen_by_bits_the_tables_themselves_do_not_use() {
        // hashbrown takes a bucket from the low bits and a tag from the
        // top seven: a shard chosen from either would fill its table's
        // buckets unevenly.
        assert_eq!(PathId(1 << 32).shard(), 1);
        assert_eq!(PathId(63 << 32).shard(), 63);
        assert_eq!(PathId(u64::from(u32::MAX)).shard(), 0);
        assert_eq!(PathId(0xFE00_0000_0000_0000).shard(), 0);
    }

    #[test]
    fn a_path_id_hashes_to_itself() {
        let id = PathIds::new().of("o/1.o");
        assert_eq!(BuildPathIdHasher::default().hash_one(id), id.0);
    }

    #[test]
    fn entries_spread_over_every_table() {
        let ids = PathIds::new();
        let mut map = PathIdMap::default();
        for i in 0..10_000u32 {
            map.insert(ids.of(&format!("o/{i}.o")), ());
        }
        // 156 entries a table on average; a table with none or with three
        // times its share would mean the shard bits are not random.
        for shard in &map.shards {
            assert!((1..470).contains(&shard.len()), "{}", shard.len());
        }
    }
}
