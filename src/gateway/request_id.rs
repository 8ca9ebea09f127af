//! Request ids, passed upstream and returned to the client.

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: a client's `X-Request-Id` is kept when it is short and plain; otherwise one is
/// made from a random per-worker prefix and a counter (unique, cheap, no syscall per request).
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let mut seed = [0u8; 8];
        // A failed RNG only makes ids less unique across restarts; fall back to the clock.
        if aws_lc_rs::rand::fill(&mut seed).is_err() {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            seed = (nanos as u64).to_le_bytes();
        }
        RequestIds { prefix: u64::from_le_bytes(seed), counter: AtomicU64::new(0) }
    }

    /// The request's id: the client's `X-Request-Id` when it is a plain token of at most 128
    /// bytes, else a new one. Marked sensitive, which HTTP/2's HPACK encodes "never indexed":
    /// a value new on every request would otherwise be inserted into the connection's 4 KiB
    /// header table on every response, after comparing it with each id already there (about
    /// 50), and evict older entries, the headers that repeat among them. About 2.5k
    /// instructions per HTTP/2 request, for about 9 bytes more on the wire (the name goes out
    /// in full).
    pub fn accept_or_generate(&self, headers: &HeaderMap) -> HeaderValue {
        let mut id = match headers.get(&X_REQUEST_ID) {
            Some(v) if acceptable(v.as_bytes()) => v.clone(),
            _ => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 32];
                hex_into(&mut buf[..16], self.prefix);
                hex_into(&mut buf[16..], n);
                HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("invalid"))
            }
        };
        id.set_sensitive(true);
        id
    }
}

fn acceptable(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= 128 && id.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

fn hex_into(out: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = HEX[(v & 15) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let ids = RequestIds::new();
        let a = ids.accept_or_generate(&HeaderMap::new());
        let b = ids.accept_or_generate(&HeaderMap::new());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(ids.accept_or_generate(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("bad id with spaces"));
        assert_ne!(ids.accept_or_generate(&h), "bad id with spaces");
        // Never indexed by HPACK, whether made here or taken from the client.
        assert!(a.is_sensitive() && ids.accept_or_generate(&HeaderMap::new()).is_sensitive());
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert!(ids.accept_or_generate(&h).is_sensitive());
    }
}
