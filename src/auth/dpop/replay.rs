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
    /// Replay key → (Unix second from which it may be forgotten, the proof key's digest).
    seen: HashMap<[u8; 16], (u64, u64)>,
    /// Entries per proof key (by digest), for the per-key share.
    per_key: HashMap<u64, u32>,
    /// Second of the last sweep for expired entries (at most one per second).
    swept: u64,
}

const SHARDS: usize = 16;
/// The most of a shard one proof key may hold: one client's flood of fresh proofs fills its
/// share, not the memory everyone's proofs need (1/16 of it: about 1,000 proofs a second per
/// key within a one-minute window, with the default capacity).
const KEY_SHARE: usize = 16;

/// Why a proof could not be remembered (so it is refused: fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The memory is full of proofs still in their window.
    Memory,
    /// This proof key holds its whole share of it.
    KeyShare,
}

impl ReplayCache {
    /// Room for `capacity` proofs at once (about 40 bytes each).
    pub fn new(capacity: usize) -> ReplayCache {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        ReplayCache { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), per_shard, shard_of: RandomState::new() }
    }

    /// True when `key` was not seen (it is then remembered until `until`); false for a replay.
    /// `owner` is the proof key's thumbprint, whose entries are held to a share of each shard.
    pub fn first_use(&self, key: [u8; 16], owner: &str, until: u64, now: u64) -> Result<bool, Full> {
        let shard = &self.shards[self.shard_of.hash_one(key) as usize % SHARDS];
        let owner = self.shard_of.hash_one(owner);
        let mut shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let shard = &mut *shard;
        if let Some(&(expires, _)) = shard.seen.get(&key) {
            if expires > now {
                return Ok(false);
            }
        }
        let share = (self.per_shard / KEY_SHARE).max(1);
        let held = |s: &Shard| s.per_key.get(&owner).map_or(0, |&n| n as usize);
        if (shard.seen.len() >= self.per_shard || held(shard) >= share) && shard.swept < now {
            let per_key = &mut shard.per_key;
            shard.seen.retain(|_, &mut (expires, key_of)| {
                let keep = expires > now;
                if !keep {
                    if let Some(n) = per_key.get_mut(&key_of) {
                        *n = n.saturating_sub(1);
                    }
                }
                keep
            });
            per_key.retain(|_, n| *n > 0);
            shard.swept = now;
        }
        if let Some((_, previous)) = shard.seen.get(&key).copied() {
            // An expired entry of the same key is replaced: its count moves to the new owner.
            if let Some(n) = shard.per_key.get_mut(&previous) {
                *n = n.saturating_sub(1);
            }
        } else if shard.seen.len() >= self.per_shard {
            return Err(Full::Memory);
        }
        if held(shard) >= share {
            return Err(Full::KeyShare);
        }
        shard.seen.insert(key, (until, owner));
        *shard.per_key.entry(owner).or_insert(0) += 1;
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
        assert_eq!(cache.first_use(key(1), "a", 100, 10), Ok(true));
        assert_eq!(cache.first_use(key(1), "a", 100, 50), Ok(false), "replayed within the window");
        assert_eq!(cache.first_use(key(1), "a", 200, 100), Ok(true), "forgotten when its window ended");
        // One entry per shard: another key of key 1's shard finds it full of an unexpired entry.
        let shard = |k: [u8; 16]| cache.shard_of.hash_one(k) as usize % SHARDS;
        let same = (2..=255).map(key).find(|&k| shard(k) == shard(key(1))).expect("a key in the same shard");
        assert_eq!(cache.first_use(same, "b", 300, 150), Err(Full::Memory));
        assert_eq!(cache.first_use(same, "b", 300, 200), Ok(true), "room after the sweep");
    }

    #[test]
    fn one_proof_key_cannot_take_everyones_memory() {
        let cache = ReplayCache::new(SHARDS * KEY_SHARE * 4);
        let mut refused = 0;
        let mut accepted = 0;
        for i in 0..(SHARDS * KEY_SHARE * 4) as u32 {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_be_bytes());
            match cache.first_use(k, "flooder", 1_000, 10) {
                Ok(true) => accepted += 1,
                Err(Full::KeyShare) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(accepted <= SHARDS * 4 && refused > 0, "the flooder holds at most its share: {accepted}");
        // Everyone else still has room, in every shard.
        for i in 1..=64u8 {
            assert_eq!(cache.first_use([i; 16], &format!("client-{i}"), 1_000, 10), Ok(true));
        }
        // The flooder's share comes back as its proofs leave their window.
        assert_eq!(cache.first_use([200; 16], "flooder", 2_000, 1_000), Ok(true));
    }
}
