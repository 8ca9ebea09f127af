//! Sessions already opened by this worker thread, so a browser's repeated cookie skips the
//! decryption, the JSON and the principal.
//!
//! - Keyed by the sealed bytes themselves (the cookie's value, or with Redis the value stored
//!   under the cookie's id, which is still fetched on every request). They are authenticated
//!   (AES-GCM), so equal bytes are the same session; a hit compares all of them, the hash only
//!   picks the slot. Entries are added only after a sealed value opened, so forged cookies
//!   never get in.
//! - An entry carries `fresh_until`, which the caller computes: the first second at which the
//!   uncached path would do anything but accept the session as it is (it expires, its token is
//!   due for refresh, its cookie is due for rewriting). A hit is refused from then on.
//! - Per thread (each worker runs a current-thread runtime): no lock or shared counter on the
//!   hit path. Several `OpenedCache` handles (one per `LoginService`, e.g. tests or a
//!   restarted service with other keys) share a thread's map without seeing each other's
//!   entries: the handle's instance number is part of every key.
//! - Bounded per thread by [`MAX_BYTES`] (sealed bytes, principal and token of each entry) and
//!   [`MAX_ENTRIES`]; when full, each insert first removes arbitrary entries (the first in the
//!   map's keyed, random order) until it fits: a few drops per insert, never a pause to sweep
//!   thousands. Stale entries are never answered, and go when looked up or evicted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::auth::Principal;

/// Per worker thread.
pub const MAX_BYTES: usize = 8 << 20;
pub const MAX_ENTRIES: usize = 10_000;
/// How much of the sealed value's end picks the slot: its GCM tag, different for every sealing.
const TAIL: usize = 32;

/// What a request on a cached session needs.
pub struct Opened {
    pub principal: Arc<Principal>,
    /// Shared with every request on the session: a token is half a kilobyte.
    pub access_token: Arc<str>,
    /// The session's id, checked against the cookie's on a hit (Redis store).
    pub id: String,
    /// Unix seconds from which the entry must not be used.
    pub fresh_until: u64,
}

/// One `LoginService`'s view of this thread's cache.
pub struct OpenedCache {
    instance: u64,
}

struct Entry {
    instance: u64,
    sealed: Box<[u8]>,
    opened: Opened,
    cost: usize,
}

/// The slot is already a keyed hash: the map does not hash it again.
#[derive(Default)]
struct Slot(u64);

impl Hasher for Slot {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Map {
    entries: HashMap<u64, Entry, BuildHasherDefault<Slot>>,
    /// Random per thread: which slot a value lands in cannot be steered from outside.
    keys: RandomState,
    bytes: usize,
}

thread_local! {
    static MAP: RefCell<Map> = RefCell::new(Map {
        entries: HashMap::default(),
        keys: RandomState::new(),
        bytes: 0,
    });
}

static INSTANCES: AtomicU64 = AtomicU64::new(1);

impl Default for OpenedCache {
    fn default() -> OpenedCache {
        OpenedCache::new()
    }
}

impl OpenedCache {
    pub fn new() -> OpenedCache {
        OpenedCache { instance: INSTANCES.fetch_add(1, Ordering::Relaxed) }
    }

    /// The principal and access token of the entry for exactly these sealed bytes, if it is
    /// still fresh at `now` and (when the cookie names one) for this session id.
    pub fn get(&self, sealed: &[u8], id: Option<&str>, now: u64) -> Option<(Arc<Principal>, Arc<str>)> {
        MAP.with(|m| {
            let mut m = m.borrow_mut();
            let slot = m.slot(self.instance, sealed);
            let entry = m.entries.get(&slot)?;
            if entry.instance != self.instance || *entry.sealed != *sealed {
                return None;
            }
            if now >= entry.opened.fresh_until {
                m.remove(slot);
                return None;
            }
            if id.is_some_and(|id| id != entry.opened.id) {
                return None;
            }
            Some((entry.opened.principal.clone(), entry.opened.access_token.clone()))
        })
    }

    /// Remembers what `sealed` opened to (nothing when it is already stale at `now`).
    pub fn insert(&self, sealed: &[u8], opened: Opened, now: u64) {
        if now >= opened.fresh_until {
            return;
        }
        let cost =
            128 + sealed.len() + opened.access_token.len() + opened.id.len() + opened.principal.approx_size() as usize;
        if cost > MAX_BYTES / 64 {
            return;
        }
        MAP.with(|m| {
            let mut m = m.borrow_mut();
            let slot = m.slot(self.instance, sealed);
            m.remove(slot);
            m.make_room(cost);
            m.bytes += cost;
            m.entries.insert(slot, Entry { instance: self.instance, sealed: sealed.into(), opened, cost });
        })
    }

    /// Entries and bytes held by this thread (all instances).
    pub fn thread_usage() -> (usize, usize) {
        MAP.with(|m| {
            let m = m.borrow();
            (m.entries.len(), m.bytes)
        })
    }
}

impl Map {
    fn slot(&self, instance: u64, sealed: &[u8]) -> u64 {
        let tail = &sealed[sealed.len().saturating_sub(TAIL)..];
        self.keys.hash_one((instance, tail))
    }

    fn remove(&mut self, slot: u64) {
        if let Some(old) = self.entries.remove(&slot) {
            self.bytes -= old.cost;
        }
    }

    /// Removes arbitrary entries until one costing `cost` fits.
    fn make_room(&mut self, cost: usize) {
        while self.bytes + cost > MAX_BYTES || self.entries.len() >= MAX_ENTRIES {
            let Some(&slot) = self.entries.keys().next() else { break };
            self.remove(slot);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opened(sub: &str, fresh_until: u64) -> Opened {
        let principal = Principal::from_claims(0, json!({ "sub": sub }), fresh_until + 100).unwrap();
        Opened {
            principal: Arc::new(principal),
            access_token: format!("at-{sub}").into(),
            id: format!("id-{sub}"),
            fresh_until,
        }
    }

    #[test]
    fn hits_only_the_same_bytes_until_fresh_until() {
        let cache = OpenedCache::new();
        let sealed = b"v1.sealed-session-value-with-a-tag-at-the-end-0123456789".to_vec();
        assert!(cache.get(&sealed, None, 100).is_none());
        cache.insert(&sealed, opened("ann", 110), 100);
        assert_eq!(cache.get(&sealed, None, 100).unwrap().0.subject, "ann");
        assert_eq!(&*cache.get(&sealed, None, 109).unwrap().1, "at-ann");
        assert!(cache.get(&sealed, None, 110).is_none(), "stale at fresh_until");
        assert!(cache.get(&sealed, None, 105).is_none(), "and the stale entry was dropped");

        cache.insert(&sealed, opened("ann", 110), 100);
        // Same tail (same slot), other bytes before it: not the same session.
        let mut other = sealed.clone();
        other[4] ^= 1;
        assert!(cache.get(&other, None, 100).is_none());
        assert!(cache.get(&sealed[1..], None, 100).is_none());
        // The Redis store also checks the id the cookie names.
        assert!(cache.get(&sealed, Some("id-ann"), 100).is_some());
        assert!(cache.get(&sealed, Some("id-bob"), 100).is_none());
        // Another service (another instance) does not see this one's entries.
        assert!(OpenedCache::new().get(&sealed, None, 100).is_none());
        // Nothing already stale is stored.
        let late = b"v1.another-sealed-value".to_vec();
        cache.insert(&late, opened("bob", 100), 100);
        assert!(cache.get(&late, None, 99).is_none());
    }

    #[test]
    fn stays_within_its_bounds() {
        let cache = OpenedCache::new();
        let value = "x".repeat(3000);
        for i in 0..(MAX_BYTES / 3000 + MAX_ENTRIES) {
            let sealed = format!("{value}{i:08}");
            cache.insert(sealed.as_bytes(), opened("ann", 1000), 10);
            let (entries, bytes) = OpenedCache::thread_usage();
            assert!(entries <= MAX_ENTRIES && bytes <= MAX_BYTES, "{entries} entries, {bytes} bytes");
        }
        let recent = format!("{value}{:08}", MAX_BYTES / 3000 + MAX_ENTRIES - 1);
        assert!(cache.get(recent.as_bytes(), None, 10).is_some(), "the newest entry is kept");
        // Many small entries: still within both bounds.
        for i in 0..(MAX_ENTRIES + 10) {
            cache.insert(format!("s{i}").as_bytes(), opened("bob", 1000), 10);
            assert!(OpenedCache::thread_usage().0 <= MAX_ENTRIES);
        }
        // An entry bigger than a 64th of the room is not kept.
        let before = OpenedCache::thread_usage();
        let huge = vec![b'x'; MAX_BYTES / 64];
        cache.insert(&huge, opened("dee", 2000), 10);
        assert!(cache.get(&huge, None, 10).is_none());
        assert_eq!(OpenedCache::thread_usage(), before);
    }
}
