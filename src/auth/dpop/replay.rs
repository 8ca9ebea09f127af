//! The memory of DPoP proofs already used (RFC 9449 §11.1).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

/// Proofs seen, until the end of the window in which they could be accepted. Exact and bounded:
/// when full of unexpired entries it refuses new proofs (fail closed) rather than forgetting old
/// ones, which a cache with an admission policy (moka's TinyLFU) would do silently, letting a
/// replay through. Sharded so that workers rarely meet on one lock; each critical section is a
/// hash-map probe.
pub struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Chooses the shard with a key of this process: a client cannot grind `jti`s that all
    /// land in one shard to fill it and have everyone else's proofs there refused.
    shard_of: RandomState,
}

#[derive(Default)]
struct Shard {
    /// Replay key → Unix second from which it may be forgotten.
    seen: HashMap<[u8; 16], u64>,
    /// Second of the last sweep for expired entries (at most one per second).
    swept: u64,
}

const SHARDS: usize = 16;

/// The replay memory is full of proofs still in their window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl ReplayCache {
    /// Room for `capacity` proofs at once (about 40 bytes each).
    pub fn new(capacity: usize) -> ReplayCache {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        ReplayCache { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), per_shard, shard_of: RandomState::new() }
    }

    /// True when `key` was not seen (it is then remembered until `until`); false for a replay.
    pub fn first_use(&self, key: [u8; 16], until: u64, now: u64) -> Result<bool, Full> {
        let shard = &self.shards[self.shard_of.hash_one(key) as usize % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(&expires) = shard.seen.get(&key) {
            if expires > now {
                return Ok(false);
            }
        }
        if shard.seen.len() >= self.per_shard && shard.swept < now {
            shard.seen.retain(|_, &mut expires| expires > now);
            shard.swept = now;
        }
        if shard.seen.len() >= self.per_shard && !shard.seen.contains_key(&key) {
            return Err(Full);
        }
        shard.seen.insert(key, until);
        Ok(true)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn replay_memory_is_exact_and_fails_closed_when_full() {
        let cache = ReplayCache::new(SHARDS);
        let key = |i: u8| [i; 16];
        assert_eq!(cache.first_use(key(1), 100, 10), Ok(true));
        assert_eq!(cache.first_use(key(1), 100, 50), Ok(false), "replayed within the window");
        assert_eq!(cache.first_use(key(1), 200, 100), Ok(true), "forgotten when its window ended");
        // One entry per shard: another key of key 1's shard finds it full of an unexpired entry.
        let shard = |k: [u8; 16]| cache.shard_of.hash_one(k) as usize % SHARDS;
        let same = (2..=255).map(key).find(|&k| shard(k) == shard(key(1))).expect("a key in the same shard");
        assert_eq!(cache.first_use(same, 300, 150), Err(Full));
        assert_eq!(cache.first_use(same, 300, 200), Ok(true), "room after the sweep");
    }
}
