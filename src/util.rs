//! Small text helpers shared by the request path and the login endpoints: percent-decoding,
//! query parameters, and removing cookies or query parameters before a request goes upstream.

use std::ops::Range;

use http::header::{HeaderMap, HeaderValue, COOKIE};

/// Decodes `%XX` escapes; `plus_is_space` for `application/x-www-form-urlencoded`. `None` for
/// a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded value of `name` in a query string or form body (the first one).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v, true)).flatten()
    })
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Exponential backoff from 1 s to 30 s with ±25 % jitter, for retries against identity
/// providers (discovery, key sets, token endpoints).
#[derive(Debug)]
pub struct Backoff(std::time::Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(std::time::Duration::from_millis(500))
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> std::time::Duration {
        self.0 = (self.0 * 2).min(std::time::Duration::from_secs(30));
        let mut b = [0u8; 1];
        // Without randomness the wait is merely not jittered.
        let _ = aws_lc_rs::rand::fill(&mut b);
        self.0.mul_f64(0.75 + f64::from(b[0]) / 1020.0)
    }
}

/// The request's cookies as (name, value) pairs, from `Cookie` lines that are UTF-8.
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    // `to_str` would check each byte for visible ASCII; hyper admits only visible ASCII,
    // tabs and bytes ≥ 0x80 in a header value, so UTF-8 validity (checked a word at a time) is
    // what is left to check, and `;` and `=` never split a character.
    // The pairs are cut from the checked line by position: `;`, `=` and the trimmed spaces are
    // ASCII, so every cut is a character boundary and the kilobytes of a session value are not
    // checked a second time (`get` keeps even a wrong cut from panicking).
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .flat_map(|v| pair_ranges(v.as_bytes()).filter_map(move |(n, val)| Some((v.get(n)?, v.get(val)?))))
}

/// The request's cookies as bytes, from every `Cookie` line (also one that is not UTF-8), for
/// values that are checked by what reads them (a sealed session).
pub fn cookie_bytes(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers.get_all(COOKIE).iter().flat_map(|v| cookie_pairs(v.as_bytes()))
}

/// The trimmed `name=value` pairs of one `Cookie` line (pairs without `=` skipped), split with
/// SIMD searches: a session cookie line runs to kilobytes and is read twice per request.
fn cookie_pairs(line: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    pair_ranges(line).map(move |(n, v)| (&line[n], &line[v]))
}

/// Where [`cookie_pairs`]'s names and values are in `line`.
fn pair_ranges(line: &[u8]) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b';', line).chain(std::iter::once(line.len()));
    std::iter::from_fn(move || loop {
        let end = ends.next()?;
        let raw = &line[start..end];
        let lead = raw.len() - raw.trim_ascii_start().len();
        let pair = raw.trim_ascii();
        let from = start + lead;
        start = end + 1;
        if let Some(eq) = memchr::memchr(b'=', pair) {
            return Some((from..from + eq, from + eq + 1..from + pair.len()));
        }
    })
}

/// Removes the cookies whose names `drop` selects, keeping the rest in one `Cookie` header.
/// Nothing is allocated when no cookie is dropped, and a dropped value (the session, kilobytes)
/// is not copied. Every `Cookie` line is searched, also one that is not visible ASCII (which
/// [`cookies`] skips): such a line cannot smuggle a dropped cookie past, and its other cookies
/// are kept.
pub fn strip_cookies(headers: &mut HeaderMap, drop: impl Fn(&str) -> bool) {
    /// Kept pairs remembered from the first search; past that many, the lines are searched
    /// again to rebuild (a session cookie line runs to kilobytes: one search is what it costs).
    const REMEMBERED: usize = 8;
    let dropped = |name: &[u8]| std::str::from_utf8(name).is_ok_and(&drop);
    let mut any = false;
    let mut seen: [(&[u8], &[u8]); REMEMBERED] = [(&[], &[]); REMEMBERED];
    let mut kept_count = 0;
    for line in headers.get_all(COOKIE) {
        for (n, v) in cookie_pairs(line.as_bytes()) {
            if dropped(n) {
                any = true;
            } else {
                if let Some(slot) = seen.get_mut(kept_count) {
                    *slot = (n, v);
                }
                kept_count += 1;
            }
        }
    }
    if !any {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    let mut keep = |n: &[u8], v: &[u8]| {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(n);
        kept.push(b'=');
        kept.extend_from_slice(v);
    };
    match seen.get(..kept_count) {
        Some(remembered) => remembered.iter().for_each(|(n, v)| keep(n, v)),
        None => {
            for line in headers.get_all(COOKIE) {
                cookie_pairs(line.as_bytes()).filter(|(n, _)| !dropped(n)).for_each(|(n, v)| keep(n, v));
            }
        }
    }
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            headers.insert(COOKIE, v);
        }
    }
}

/// `query` without the parameters named in `names` (`None` when nothing is left).
pub fn strip_query_params(query: &str, names: &[&str]) -> Option<String> {
    let kept: Vec<&str> =
        query.split('&').filter(|p| !names.contains(&p.split_once('=').map_or(*p, |(k, _)| k))).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_params() {
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%ff", false), None, "not UTF-8");
        assert_eq!(query_param(Some("x=1&rd=%2Fa%3Fb"), "rd").as_deref(), Some("/a?b"));
        assert_eq!(strip_query_params("a=1&access_token=t&b=2", &["access_token"]).as_deref(), Some("a=1&b=2"));
        assert_eq!(strip_query_params("access_token=t", &["access_token"]), None);
    }

    #[test]
    fn hex_and_backoff() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= std::time::Duration::from_millis(750) && first <= std::time::Duration::from_millis(1250));
        for _ in 0..10 {
            assert!(b.next_delay() <= std::time::Duration::from_millis(37_500));
        }
    }

    #[test]
    fn cookie_stripping() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; tollgate_0=x"));
        h.append(COOKIE, HeaderValue::from_static("tollgate_1=y; b=2"));
        strip_cookies(&mut h, |n| n.starts_with("tollgate"));
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), vec!["a=1; b=2"]);
        strip_cookies(&mut h, |_| true);
        assert!(h.get(COOKIE).is_none());
        // More kept cookies than the first search remembers: the lines are searched again.
        let many: Vec<String> = (0..10).map(|i| format!("k{i}={i}")).collect();
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_str(&many[..6].join("; ")).unwrap());
        h.append(COOKIE, HeaderValue::from_static("tollgate=x"));
        h.append(COOKIE, HeaderValue::from_str(&many[6..].join(";")).unwrap());
        strip_cookies(&mut h, |n| n == "tollgate");
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), vec![many.join("; ").as_str()]);
        // Nothing to drop: untouched, even lines that are not visible ASCII.
        let Ok(odd) = HeaderValue::from_bytes(b"caf\xc3\xa9=1;  tollgate=x") else { panic!("a valid header value") };
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1;b=2"));
        h.append(COOKIE, odd.clone());
        strip_cookies(&mut h, |n| n == "c");
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), vec![&HeaderValue::from_static("a=1;b=2"), &odd]);
        // A dropped cookie is found in such a line too; the rest of it is kept.
        strip_cookies(&mut h, |n| n == "tollgate");
        assert_eq!(
            h.get_all(COOKIE).iter().map(HeaderValue::as_bytes).collect::<Vec<_>>(),
            vec![b"a=1; b=2; caf\xc3\xa9=1"]
        );
    }

    /// Pairs are cut from the line as the byte splitter cuts them, UTF-8 included; a line that
    /// is not UTF-8 is skipped whole.
    #[test]
    fn cookie_reading() {
        let mut h = HeaderMap::new();
        let Ok(utf8) = HeaderValue::from_bytes("  a=1; b = 2 ;c=;d; caf\u{e9}=th\u{e9}=x ;".as_bytes()) else {
            panic!()
        };
        h.append(COOKIE, utf8);
        let Ok(bad) = HeaderValue::from_bytes(b"z=\xff; y=1") else { panic!() };
        h.append(COOKIE, bad);
        let pairs: Vec<_> = cookies(&h).collect();
        assert_eq!(pairs, [("a", "1"), ("b ", " 2"), ("c", ""), ("caf\u{e9}", "th\u{e9}=x")]);
        let line = h.get(COOKIE).unwrap().as_bytes();
        let bytes: Vec<_> = cookie_pairs(line).collect();
        assert_eq!(bytes.len(), pairs.len());
        assert!(bytes.iter().zip(&pairs).all(|((n, v), (sn, sv))| *n == sn.as_bytes() && *v == sv.as_bytes()));
    }
}
