//! A small per-thread cache of verified tokens in front of the shared one: a repeated token is
//! found without hashing it with SHA-256 and without touching the shared cache's atomics.
//!
//! Direct-mapped: `SLOTS` slots per thread, a slot chosen by a keyed hash of the token's last
//! bytes (a JWS's signature) and holding the whole token, which must match exactly. It holds
//! only principals the shared cache gave out or a verification produced, and the caller applies
//! every check of a shared-cache hit (the route's issuers, `exp` with leeway) on each hit here,
//! so it answers exactly as the shared cache would. An entry is kept for a short time only (the
//! caller's `until`, a few seconds): the shared cache's own limit on how long a verification is
//! trusted (an hour) is then exceeded by at most that, and an entry whose shared-cache entry was
//! evicted for room goes soon after. The memory bound is the shared cache's plus at most `SLOTS`
//! entries of `MAX_TOKEN` bytes per thread (and their principals).

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Principal;

/// Slots per thread.
pub const SLOTS: usize = 256;
/// Longer tokens are not kept here (they are still in the shared cache).
pub const MAX_TOKEN: usize = 2048;
/// Bytes at the end of the token that choose the slot.
const TAIL: usize = 32;

/// Identifies one authenticator: a thread's slots may hold entries of several (tests, benches,
/// a reloaded configuration), and an entry is only ever answered to the one that made it.
pub fn new_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Slot {
    owner: u64,
    /// Unix seconds from which the entry is no longer answered.
    until: u64,
    /// Reused when another token takes the slot (at most `MAX_TOKEN` bytes).
    token: String,
    principal: Arc<Principal>,
}

pub struct Front {
    slots: Box<[Option<Slot>]>,
    /// Keyed per thread; a weak mix is enough here (see [`Front::index`]).
    hasher: DigestHasherBuilder,
    /// Counts [`Front::offer`] calls: one in `OFFER_EVERY` is taken.
    offers: u32,
}

/// A token found in the shared cache enters the front on one lookup in this many: when more
/// tokens are in use than there are slots, most lookups miss here, and replacing a slot on each
/// would cost more than the front saves (about 0.25 µs per lookup over 1,024 tokens).
const OFFER_EVERY: u32 = 4;

impl Default for Front {
    fn default() -> Front {
        Front { slots: (0..SLOTS).map(|_| None).collect(), hasher: DigestHasherBuilder::default(), offers: 0 }
    }
}

/// `a == b`, the last `TAIL` bytes compared first: tokens that share a slot and differ mostly
/// differ there (a JWS's signature), while from the start they share the header and most of
/// the payload, so a miss would compare hundreds of equal bytes first.
fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let tail = a.len().saturating_sub(TAIL);
    a.len() == b.len() && a[tail..] == b[tail..] && a[..tail] == b[..tail]
}

impl Front {
    /// The slot for `token`: its last `TAIL` bytes mixed with the thread's random key. Not
    /// SipHash (about 200 instructions a lookup): a client that made tokens share a slot would
    /// only make the front miss, and it holds only tokens that were verified, whose signatures
    /// nobody but the issuer chooses.
    fn index(&self, token: &str) -> usize {
        let tail = &token.as_bytes()[token.len().saturating_sub(TAIL)..];
        let mut h = self.hasher.build_hasher();
        h.write(tail);
        // SLOTS is a power of two.
        (h.finish() as usize) & (SLOTS - 1)
    }

    /// The principal kept for exactly `token` by `owner`, unless its time here is up at `now`.
    pub fn get(&self, owner: u64, token: &str, now: u64) -> Option<Arc<Principal>> {
        match &self.slots[self.index(token)] {
            Some(s) if s.owner == owner && now < s.until && same_token(&s.token, token) => Some(s.principal.clone()),
            _ => None,
        }
    }

    /// Keeps `principal` for `token` until `until` (Unix seconds), replacing whatever shared its
    /// slot.
    pub fn put(&mut self, owner: u64, token: &str, principal: &Arc<Principal>, until: u64) {
        if token.len() > MAX_TOKEN {
            return;
        }
        let i = self.index(token);
        match &mut self.slots[i] {
            Some(s) => {
                s.owner = owner;
                s.until = until;
                s.token.clear();
                s.token.push_str(token);
                s.principal = principal.clone();
            }
            empty => *empty = Some(Slot { owner, until, token: token.into(), principal: principal.clone() }),
        }
    }

    /// [`Front::put`], on one call in `OFFER_EVERY`.
    pub fn offer(&mut self, owner: u64, token: &str, principal: &Arc<Principal>, until: u64) {
        self.offers = self.offers.wrapping_add(1);
        if self.offers % OFFER_EVERY == 0 {
            self.put(owner, token, principal, until);
        }
    }

    /// Forgets `token` (found expired, or no longer accepted).
    pub fn remove(&mut self, owner: u64, token: &str) {
        let i = self.index(token);
        if self.slots[i].as_ref().is_some_and(|s| s.owner == owner && same_token(&s.token, token)) {
            self.slots[i] = None;
        }
    }

    /// Entries held, whoever owns them.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

thread_local! {
    static FRONT: RefCell<Front> = RefCell::new(Front::default());
}

/// This thread's entry for `token`, if any (see [`Front::get`]).
pub fn get(owner: u64, token: &str, now: u64) -> Option<Arc<Principal>> {
    FRONT.try_with(|f| f.try_borrow().ok().and_then(|f| f.get(owner, token, now))).ok().flatten()
}

pub fn put(owner: u64, token: &str, principal: &Arc<Principal>, until: u64) {
    let _ = FRONT.try_with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            f.put(owner, token, principal, until)
        }
    });
}

pub fn offer(owner: u64, token: &str, principal: &Arc<Principal>, until: u64) {
    let _ = FRONT.try_with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            f.offer(owner, token, principal, until)
        }
    });
}

pub fn remove(owner: u64, token: &str) {
    let _ = FRONT.try_with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            f.remove(owner, token)
        }
    });
}

/// Entries in this thread's front cache (for tests).
pub fn thread_len() -> usize {
    FRONT.try_with(|f| f.try_borrow().map_or(0, |f| f.len())).unwrap_or(0)
}

/// A [`BuildHasher`] for keys that are already SHA-256 digests (uniformly distributed, and not
/// chosen by a client: finding tokens whose digests collide costs a preimage search, and only
/// verified tokens are inserted). SipHash over 40 bytes per key was a tenth of a cache miss at
/// the cache's bound (the concurrent map rehashes every key as it grows and clears tombstones);
/// this mixes the digest's words with a per-process random key instead.
#[derive(Clone)]
pub struct DigestHasherBuilder(u64);

impl Default for DigestHasherBuilder {
    fn default() -> DigestHasherBuilder {
        DigestHasherBuilder(RandomState::new().hash_one(0x746f_6c6c_6761_7465_u64))
    }
}

impl BuildHasher for DigestHasherBuilder {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(self.0)
    }
}

pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
    }

    fn finish(&self) -> u64 {
        // splitmix64's finalizer: every output bit depends on every input bit.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn principal(sub: &str) -> Arc<Principal> {
        Arc::new(Principal::from_claims(0, serde_json::json!({ "sub": sub }), u64::MAX).unwrap())
    }

    /// Tokens whose tails differ (signatures) fill the slots evenly: 2,000 of them leave
    /// almost none of the 256 empty, and tails that differ in one character spread too.
    #[test]
    fn slots_spread_over_signatures() {
        let f = Front::default();
        let b64 = |i: u32| {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &i.to_le_bytes());
            d.as_ref()
                .iter()
                .map(|b| {
                    char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[usize::from(b & 63)])
                })
                .collect::<String>()
        };
        let used: std::collections::HashSet<usize> =
            (0..2000).map(|i| f.index(&format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.{}", b64(i)))).collect();
        assert!(used.len() >= 245, "{} of {SLOTS} slots used", used.len());
        let one_char: std::collections::HashSet<usize> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .chars()
                .map(|c| f.index(&format!("h.p.{}{c}", "s".repeat(40))))
                .collect();
        assert!(one_char.len() >= 40, "{} slots for 64 last characters", one_char.len());
    }

    #[test]
    fn answers_only_the_exact_token_and_owner() {
        let mut f = Front::default();
        let p = principal("a");
        f.put(1, "aaa.bbb.ccc", &p, 100);
        assert_eq!(f.get(1, "aaa.bbb.ccc", 99).map(|p| p.subject.clone()), Some("a".into()));
        assert!(f.get(1, "aaa.bbb.ccc", 100).is_none(), "its time here is up");
        assert!(f.get(2, "aaa.bbb.ccc", 99).is_none(), "another authenticator's entry");
        assert!(f.get(1, "aaa.bbb.ccd", 99).is_none());
        assert!(f.get(1, "xaaa.bbb.ccc", 99).is_none(), "same tail, different token");
        let long = format!("{}.p.sig", "h".repeat(100));
        f.put(1, &long, &p, 100);
        assert!(f.get(1, &long, 99).is_some());
        let mut other = long.clone().into_bytes();
        other[3] = b'x';
        assert!(f.get(1, std::str::from_utf8(&other).unwrap(), 99).is_none(), "same tail, differs before it");
        f.remove(2, "aaa.bbb.ccc");
        assert!(f.get(1, "aaa.bbb.ccc", 99).is_some(), "only the owner removes");
        f.remove(1, "aaa.bbb.ccc");
        assert!(f.get(1, "aaa.bbb.ccc", 99).is_none());
    }

    #[test]
    fn bounded_in_entries_and_token_size() {
        let mut f = Front::default();
        let p = principal("a");
        for i in 0..SLOTS * 8 {
            f.put(1, &format!("h.p.sig{i}"), &p, u64::MAX);
        }
        assert!(f.len() <= SLOTS);
        assert!(f.len() > SLOTS / 2, "tokens spread over the slots: {}", f.len());
        let taken = (0..OFFER_EVERY).filter(|i| {
            f.offer(1, &format!("offered{i}"), &p, u64::MAX);
            f.get(1, &format!("offered{i}"), 0).is_some()
        });
        assert_eq!(taken.count(), 1, "one offer in OFFER_EVERY is taken");
        let long = "x".repeat(MAX_TOKEN + 1);
        f.put(1, &long, &p, u64::MAX);
        assert!(f.get(1, &long, 0).is_none());
    }

    #[test]
    fn digest_hasher_spreads_digests() {
        let b = DigestHasherBuilder::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..4096u32 {
            let digest = super::super::hash(&i.to_string());
            seen.insert(b.hash_one(digest) & 0xfff);
        }
        assert!(seen.len() > 2000, "{} of 4096 low-bit patterns", seen.len());
    }
}
