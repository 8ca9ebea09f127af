//! The cookies tollgate sets: their attributes, and chunking past the ~4 KB browsers keep per
//! cookie (values are sealed by [`super::sealer::Sealer`] before they get here).

use std::borrow::Cow;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, SET_COOKIE};

/// Cookie values longer than this are split into `NAME_0`, `NAME_1`, …
pub const CHUNK: usize = 3800;
/// More chunks than this is a broken or hostile request.
const MAX_CHUNKS: usize = 16;

/// Cookie attributes for everything tollgate sets.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub secure: bool,
    /// The login's `public_url` path (`/` for none): two apps on one host by path never see
    /// each other's cookies.
    pub path: &'a str,
}

/// The value of `name`, reassembled from `name_0`, `name_1`, … when it was chunked. Borrowed
/// from the request unless it has to be reassembled. The first cookie of each name counts.
///
/// Bytes, not text: the value is a sealed session (kilobytes), which opens only if it is what
/// tollgate sealed, so it is not checked for UTF-8 on every request (every `Cookie` line is
/// read, as `util::strip_cookies` searches every line).
pub fn read<'h>(headers: &'h HeaderMap, name: &str) -> Option<Cow<'h, [u8]>> {
    let mut chunks: [Option<&[u8]>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    for (n, v) in crate::util::cookie_bytes(headers) {
        let Some(rest) = n.strip_prefix(name.as_bytes()) else { continue };
        if rest.is_empty() {
            return Some(Cow::Borrowed(v));
        }
        let index = rest.strip_prefix(b"_").and_then(|d| std::str::from_utf8(d).ok()).and_then(chunk_index);
        if let Some(slot) = index.and_then(|i| chunks.get_mut(i)) {
            slot.get_or_insert(v);
        }
    }
    chunks[0]?;
    let parts = chunks.iter().map_while(|c| *c);
    let mut out = Vec::with_capacity(parts.clone().map(<[u8]>::len).sum());
    parts.for_each(|p| out.extend_from_slice(p));
    Some(Cow::Owned(out))
}

/// `N` of a chunk name `NAME_N`, written as `write` writes it (decimal, no leading zeros).
fn chunk_index(digits: &str) -> Option<usize> {
    let canonical = digits == "0" || (!digits.starts_with('0') && digits.len() <= 2);
    if !canonical || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Names of `name` and its chunks that the request carries, each once: only those that can
/// exist (`NAME_0` to `NAME_15`, written as `write` writes them), so a request stuffed with a
/// thousand look-alikes gets a handful of deletions back, not a thousand.
pub fn present(headers: &HeaderMap, name: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    // Every line, as `read` reads them: a cookie `read` can find is one this can clear.
    for (n, _) in crate::util::cookie_bytes(headers) {
        let Ok(n) = std::str::from_utf8(n) else { continue };
        let ours = n == name
            || n.strip_prefix(name)
                .and_then(|r| r.strip_prefix('_'))
                .and_then(chunk_index)
                .is_some_and(|i| i < MAX_CHUNKS);
        if ours && !found.iter().any(|f| f == n) {
            found.push(n.to_string());
        }
    }
    found
}

/// Sets `name` to `value` (chunked when long) and clears stale chunks the browser still holds.
/// A value longer than [`read`] reassembles ([`MAX_CHUNKS`] chunks) is not written at all and
/// `false` returned: the browser would keep cookies that never let it in again.
#[must_use]
pub fn write(
    out: &mut HeaderMap,
    name: &str,
    value: &str,
    max_age: Duration,
    attrs: Attributes<'_>,
    present: &[String],
) -> bool {
    if value.len() > CHUNK * MAX_CHUNKS {
        return false;
    }
    let mut written = Vec::new();
    if value.len() <= CHUNK {
        append(out, name, value, Some(max_age), attrs);
        written.push(name.to_string());
    } else {
        for (i, part) in value.as_bytes().chunks(CHUNK).enumerate() {
            let chunk_name = format!("{name}_{i}");
            append(out, &chunk_name, std::str::from_utf8(part).unwrap_or(""), Some(max_age), attrs);
            written.push(chunk_name);
        }
    }
    for stale in present.iter().filter(|p| !written.contains(p)) {
        append(out, stale, "", None, attrs);
    }
    true
}

/// Removes `name` and every chunk of it the browser holds.
pub fn clear(out: &mut HeaderMap, present: &[String], attrs: Attributes<'_>) {
    for name in present {
        append(out, name, "", None, attrs);
    }
}

/// One `Set-Cookie`: HttpOnly, SameSite=Lax, the login's Path; Secure over https. `max_age: None`
/// deletes the cookie.
pub fn append(out: &mut HeaderMap, name: &str, value: &str, max_age: Option<Duration>, attrs: Attributes<'_>) {
    let age = max_age.map_or(0, |d| d.as_secs());
    let secure = if attrs.secure { "; Secure" } else { "" };
    let line = format!("{name}={value}; Path={}; Max-Age={age}; HttpOnly; SameSite=Lax{secure}", attrs.path);
    if let Ok(v) = HeaderValue::from_str(&line) {
        out.append(SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;

    #[test]
    fn chunks_round_trip_and_stale_chunks_are_cleared() {
        let value = "x".repeat(CHUNK * 2 + 10);
        let mut out = HeaderMap::new();
        let attrs = Attributes { secure: true, path: "/" };
        let stale = vec!["s".to_string(), "s_0".into(), "s_1".into(), "s_2".into(), "s_3".into()];
        assert!(write(&mut out, "s", &value, Duration::from_secs(60), attrs, &stale));
        let lines: Vec<&str> = out.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(lines.iter().all(|l| l.contains("HttpOnly")
            && l.contains("SameSite=Lax")
            && l.contains("Secure")
            && l.contains("Path=/")));
        assert!(lines.iter().any(|l| l.starts_with("s=;") && l.contains("Max-Age=0")));
        assert!(lines.iter().any(|l| l.starts_with("s_3=;") && l.contains("Max-Age=0")));
        let mut req = HeaderMap::new();
        let jar: Vec<String> = lines
            .iter()
            .filter(|l| !l.contains("Max-Age=0"))
            .map(|l| l.split(';').next().unwrap().to_string())
            .collect();
        req.insert(COOKIE, HeaderValue::from_str(&jar.join("; ")).unwrap());
        assert_eq!(read(&req, "s").unwrap().as_ref(), value.as_bytes());
        assert_eq!(present(&req, "s").len(), 3);
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn reading_borrows_a_whole_cookie_and_reassembles_chunks() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; s_1=B; sx=no; s_0=A; s_01=no; s_1=later"));
        h.append(COOKIE, HeaderValue::from_static("s_2=C; s_4=gap"));
        assert_eq!(read(&h, "s").as_deref(), Some(&b"ABC"[..]), "chunks in order, first of each, up to a gap");
        assert!(read(&h, "sx").is_some_and(|v| matches!(v, Cow::Borrowed(b"no"))));
        h.append(COOKIE, HeaderValue::from_static("s=whole; s=second"));
        assert!(read(&h, "s").is_some_and(|v| matches!(v, Cow::Borrowed(b"whole"))), "the unchunked cookie wins");
        // A line that is not UTF-8 elsewhere is read, and what is read there is cleared too.
        let Ok(odd) = HeaderValue::from_bytes(b"caf\xe9=1; t=sealed") else { panic!("a valid header value") };
        let mut odd_line = HeaderMap::new();
        odd_line.insert(COOKIE, odd);
        assert_eq!(read(&odd_line, "t").as_deref(), Some(&b"sealed"[..]));
        assert_eq!(present(&odd_line, "t"), ["t"]);
        let mut only_later = HeaderMap::new();
        only_later.insert(COOKIE, HeaderValue::from_static("s_1=B; s_00=A"));
        assert_eq!(read(&only_later, "s"), None, "no chunk 0");
        assert_eq!(read(&HeaderMap::new(), "s"), None);
        let mut many = HeaderMap::new();
        let all: Vec<String> = (0..20).map(|i| format!("s_{i}=x")).collect();
        many.insert(COOKIE, HeaderValue::from_str(&all.join("; ")).unwrap());
        assert_eq!(read(&many, "s").unwrap().len(), MAX_CHUNKS);
    }

    /// Found by the `cookie_sealed` fuzz target: a value past 16 chunks was written as 17 or
    /// more cookies, of which `read` takes 16, so the browser held a session that never opened
    /// (a sign-in loop). Now it is not written, and the caller hears so.
    #[test]
    fn values_longer_than_read_reassembles_are_not_written() {
        let attrs = Attributes { secure: false, path: "/" };
        let longest = "x".repeat(CHUNK * MAX_CHUNKS);
        let mut out = HeaderMap::new();
        assert!(write(&mut out, "s", &longest, Duration::from_secs(60), attrs, &[]));
        let jar: Vec<&str> =
            out.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().split(';').next().unwrap()).collect();
        let mut req = HeaderMap::new();
        req.insert(COOKIE, HeaderValue::from_str(&jar.join("; ")).unwrap());
        assert_eq!(read(&req, "s").as_deref(), Some(longest.as_bytes()), "the longest value reads back");
        let mut out = HeaderMap::new();
        assert!(!write(&mut out, "s", &format!("{longest}x"), Duration::from_secs(60), attrs, &[]));
        assert!(out.is_empty(), "nothing written for a value that cannot be read back");
    }

    #[test]
    fn only_chunks_that_can_exist_are_present_and_each_once() {
        let mut h = HeaderMap::new();
        let junk: Vec<String> = (0..1000).map(|i| format!("s_{i}=x")).collect();
        h.insert(COOKIE, HeaderValue::from_str(&junk.join("; ")).unwrap());
        h.append(COOKIE, HeaderValue::from_static("s=1; s=2; s_0=again; s_00=x; s_+1=x; s_-1=x; sx=1"));
        let names = present(&h, "s");
        assert_eq!(names.len(), MAX_CHUNKS + 1, "{names:?}");
        assert!(names.iter().any(|n| n == "s") && names.iter().any(|n| n == "s_15"));
        assert!(!names.iter().any(|n| n == "s_16" || n == "s_00"));
        let mut out = HeaderMap::new();
        clear(&mut out, &names, Attributes { secure: false, path: "/" });
        assert_eq!(out.get_all(SET_COOKIE).iter().count(), MAX_CHUNKS + 1);
    }
}
