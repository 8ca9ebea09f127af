//! The shared cache of verified tokens: principals by the SHA-256 of their token.
//!
//! Bounded by memory, as a `moka` cache was before it: at most `capacity` bytes by
//! [`Principal::approx_size`], split evenly over `SHARDS` shards, each a map behind its own
//! mutex with a CLOCK (second chance) ring for eviction. An entry is answered until
//! min(its `exp`, inserted + `max_ttl`), never after. Everything happens on the caller's thread
//! in the call that needs it (no background thread, no deferred upkeep): an insert that would
//! pass its shard's budget first evicts, from where the clock hand is, expired entries and
//! entries not read since the hand last passed. At a full cache a miss then pays one eviction
//! or two, not moka's frequency sketch, timer wheel and write queue. Every insert also frees
//! the expired entries among the next [`SWEEP`] slots of its shard, so that while tokens keep
//! arriving the cache holds about what is live, not its bound. (After inserts stop, expired
//! entries stay until read or until later inserts, and a shard's ring and map keep their peak
//! length.)

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::front::DigestHasherBuilder;
use super::{Principal, TokenHash};

/// Shards: a request holds one shard's lock for a map lookup, so contention stays low.
const SHARDS: usize = 16;

/// Slots an insert looks at for expired entries. A shard's sweep goes round its ring once in
/// ring / `SWEEP` inserts, so its expired entries are at most about 1 / `SWEEP` of the ring's
/// slots: about 1 / (`SWEEP` - 1) of the live entries at a steady insert rate.
const SWEEP: usize = 8;

pub struct Verified {
    shards: Box<[Mutex<Shard>]>,
    /// Chooses the shard (the top bits) and hashes the shard's map: keyed per process.
    hasher: DigestHasherBuilder,
    max_ttl_secs: u64,
}

struct Shard {
    /// Key to its slot in `ring`.
    map: HashMap<TokenHash, usize, DigestHasherBuilder>,
    ring: Vec<Option<Entry>>,
    /// Slots of `ring` that are free.
    free: Vec<usize>,
    hand: usize,
    /// Where the next insert's look for expired entries starts.
    sweep: usize,
    bytes: u64,
    budget: u64,
}

struct Entry {
    key: TokenHash,
    principal: Arc<Principal>,
    /// Unix seconds from which it is no longer answered.
    until: u64,
    size: u32,
    /// Read since the clock hand last passed: spared once.
    referenced: bool,
}

impl Verified {
    /// A cache of at most `capacity` bytes whose entries live at most `max_ttl`.
    pub fn new(capacity: u64, max_ttl: Duration) -> Verified {
        let hasher = DigestHasherBuilder::default();
        let budget = capacity / SHARDS as u64;
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::with_hasher(hasher.clone()),
                    ring: Vec::new(),
                    free: Vec::new(),
                    hand: 0,
                    sweep: 0,
                    bytes: 0,
                    budget,
                })
            })
            .collect();
        Verified { shards, hasher, max_ttl_secs: max_ttl.as_secs() }
    }

    fn shard(&self, key: &TokenHash) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) >> 60) as usize % SHARDS;
        // A panic while holding the lock leaves the shard consistent (no method panics midway
        // through an update); serve on rather than fail every later request.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The principal for `key`, unless its time is up at `now` (Unix seconds).
    pub fn get(&self, key: &TokenHash, now: u64) -> Option<Arc<Principal>> {
        let mut shard = self.shard(key);
        let slot = *shard.map.get(key)?;
        let entry = shard.ring[slot].as_mut()?;
        if now >= entry.until {
            shard.remove(slot);
            return None;
        }
        entry.referenced = true;
        Some(entry.principal.clone())
    }

    /// Keeps `principal` for `key` until min(its `expires_at`, `now` + the cache's `max_ttl`),
    /// evicting what its shard's budget needs. A principal larger than a shard's budget is not
    /// kept.
    pub fn insert(&self, key: TokenHash, principal: Arc<Principal>, now: u64) {
        let size = principal.approx_size();
        let until = principal.expires_at.min(now.saturating_add(self.max_ttl_secs));
        let mut shard = self.shard(&key);
        if let Some(&slot) = shard.map.get(&key) {
            shard.remove(slot);
        }
        if u64::from(size) > shard.budget || now >= until {
            return;
        }
        shard.sweep_expired(now);
        while shard.bytes + u64::from(size) > shard.budget {
            if !shard.evict_one(now) {
                return;
            }
        }
        let entry = Entry { key, principal, until, size, referenced: false };
        let slot = match shard.free.pop() {
            Some(slot) => {
                shard.ring[slot] = Some(entry);
                slot
            }
            None => {
                shard.ring.push(Some(entry));
                shard.ring.len() - 1
            }
        };
        shard.map.insert(key, slot);
        shard.bytes += u64::from(size);
    }

    /// Bytes held (by the estimate) and entries, over all shards.
    #[cfg(test)]
    fn usage(&self) -> (u64, usize) {
        let shards = self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()));
        shards.fold((0, 0), |(b, n), s| (b + s.bytes, n + s.map.len()))
    }
}

impl Shard {
    fn remove(&mut self, slot: usize) {
        if let Some(entry) = self.ring[slot].take() {
            self.map.remove(&entry.key);
            self.bytes -= u64::from(entry.size);
            self.free.push(slot);
        }
    }

    /// Frees the expired entries among the next [`SWEEP`] slots (read marks untouched: the
    /// sweep is not the clock).
    fn sweep_expired(&mut self, now: u64) {
        let len = self.ring.len();
        for _ in 0..SWEEP.min(len) {
            let slot = self.sweep % len;
            self.sweep = (slot + 1) % len;
            if self.ring[slot].as_ref().is_some_and(|e| now >= e.until) {
                self.remove(slot);
            }
        }
    }

    /// Evicts one entry: the first, from the hand on, that is expired or was not read since the
    /// hand last passed (clearing the mark of those that were). Only called with `bytes > 0`,
    /// so there is an entry, and within two turns of the ring one is unmarked (false, never
    /// expected: nothing was found to evict).
    fn evict_one(&mut self, now: u64) -> bool {
        for _ in 0..2 * self.ring.len() {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.ring.len();
            let Some(entry) = self.ring[slot].as_mut() else { continue };
            if entry.referenced && now < entry.until {
                entry.referenced = false;
            } else {
                self.remove(slot);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn principal(expires_at: u64) -> Arc<Principal> {
        Arc::new(Principal::from_claims(0, serde_json::json!({"sub": "u"}), expires_at).unwrap())
    }

    fn key(i: u32) -> TokenHash {
        super::super::hash(&i.to_string())
    }

    #[test]
    fn bounded_by_bytes() {
        let p = principal(NOW + 600);
        let size = u64::from(p.approx_size());
        let capacity = 64 * 1024;
        let cache = Verified::new(capacity, Duration::from_secs(3600));
        for i in 0..10_000 {
            cache.insert(key(i), p.clone(), NOW);
            assert!(cache.usage().0 <= capacity);
        }
        let (bytes, entries) = cache.usage();
        assert!(bytes <= capacity && bytes == entries as u64 * size);
        // Every shard is filled up to its budget, less than one entry short.
        assert!(bytes > capacity - SHARDS as u64 * size, "{bytes} of {capacity}");
        // The newest entry is there.
        assert!(cache.get(&key(9_999), NOW).is_some());
        // Too large for a shard: not kept.
        let tiny = Verified::new(SHARDS as u64 * (size - 1), Duration::from_secs(3600));
        tiny.insert(key(1), p, NOW);
        assert_eq!(tiny.usage(), (0, 0));
    }

    #[test]
    fn entries_live_until_exp() {
        let cache = Verified::new(1 << 20, Duration::from_secs(3600));
        cache.insert(key(1), principal(NOW + 60), NOW);
        assert!(cache.get(&key(1), NOW + 59).is_some());
        assert!(cache.get(&key(1), NOW + 60).is_none(), "expired at exp");
        assert_eq!(cache.usage(), (0, 0), "and dropped");
        cache.insert(key(2), principal(NOW), NOW);
        assert!(cache.get(&key(2), NOW).is_none(), "already expired: not kept");
    }

    #[test]
    fn inserts_free_expired_entries_below_the_bound() {
        // Far below the memory bound, tokens that expire are not read again: the inserts that
        // follow free them (before, they stayed until the bound made room, and a steady stream
        // of short-lived tokens held the whole 32 MiB however few were live).
        let cache = Verified::new(1 << 30, Duration::from_secs(3600));
        for i in 0..1_000 {
            cache.insert(key(i), principal(NOW + 10), NOW);
        }
        assert_eq!(cache.usage().1, 1_000);
        for i in 1_000..2_000 {
            cache.insert(key(i), principal(NOW + 600), NOW + 10);
        }
        assert_eq!(cache.usage().1, 1_000, "the expired thousand are gone");
        assert!(cache.get(&key(1_999), NOW + 10).is_some());
    }

    #[test]
    fn entries_live_at_most_max_ttl() {
        let cache = Verified::new(1 << 20, Duration::from_secs(3600));
        cache.insert(key(1), principal(NOW + 86_400), NOW);
        assert!(cache.get(&key(1), NOW + 3599).is_some());
        assert!(cache.get(&key(1), NOW + 3600).is_none(), "an hour after it was inserted");
        // Inserted again: the hour counts from then.
        cache.insert(key(1), principal(NOW + 86_400), NOW + 3600);
        assert!(cache.get(&key(1), NOW + 7199).is_some());
    }

    #[test]
    fn replacing_counts_once_and_clock_spares_what_is_read() {
        let p = principal(NOW + 600);
        let size = u64::from(p.approx_size());
        let cache = Verified::new(SHARDS as u64 * size * 8, Duration::from_secs(3600));
        for _ in 0..3 {
            cache.insert(key(7), p.clone(), NOW);
        }
        assert_eq!(cache.usage(), (size, 1));
        // A key read between inserts survives a flood that evicts everything unread.
        for i in 100..2_000 {
            assert!(cache.get(&key(7), NOW).is_some(), "evicted after {i}");
            cache.insert(key(i), p.clone(), NOW);
        }
        assert!(cache.usage().0 <= SHARDS as u64 * size * 8);
    }
}
