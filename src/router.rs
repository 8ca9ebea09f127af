//! Route table and path normalisation. Matching uses the host and the normalised path only,
//! never the query string; the normalised path is also what goes upstream, so the gateway and
//! the upstream always agree on which resource was asked for.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::Route;

/// Why a request path was refused (400): ambiguous forms are refused, never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The request target does not start with `/`.
    #[error("the path must start with /")]
    NotAbsolute,
    /// `%2F`: an encoded slash would let the gateway and upstream split segments differently.
    #[error("encoded slash (%2F) in the path")]
    EncodedSlash,
    /// `\` or `%5C`: some servers treat it as a separator.
    #[error("backslash in the path")]
    Backslash,
    /// `%2E`: an encoded dot can hide a `..` segment.
    #[error("encoded dot (%2E) in the path")]
    EncodedDot,
    /// `%00` or a raw control character.
    #[error("NUL or control character in the path")]
    Control,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-escape in the path")]
    BadEscape,
    /// `..;x` or `.;x`: servlet containers drop `;params` and then resolve the dot segment,
    /// so the gateway and the upstream would disagree on the path.
    #[error("dot segment with path parameters in the path")]
    DotSegmentParameters,
}

/// A route's host: exact (`api.example.com`) or a suffix wildcard (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// Stored with its leading dot: `.example.com`.
    Suffix(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !valid {
            return Err(format!(
                "invalid host {s:?}: expected a host name like \"api.example.com\" or \"*.example.com\" (no port)"
            ));
        }
        Ok(if wild { HostPattern::Suffix(format!(".{name}")) } else { HostPattern::Exact(name.to_string()) })
    }
}

/// Normalises a request path (RFC 3986 §6.2.2): unreserved escapes decoded, hex made upper case,
/// duplicate slashes merged, dot segments removed. Ambiguous encodings are refused. A path that
/// is already normal (the usual case) is returned as it is, without copying.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if is_normal(raw) {
        Ok(Cow::Borrowed(raw))
    } else {
        normalize_path_slow(raw).map(Cow::Owned)
    }
}

/// True when `normalize_path_slow` would return `raw` unchanged: absolute, no escape, backslash
/// or control byte, no empty segment but a trailing one, and no dot segment (also not `..;x`).
fn is_normal(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else { return false };
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last) || matches!(seg.split(';').next(), Some("." | "..")) {
            return false;
        }
        if seg.bytes().any(|c| c == b'%' || c == b'\\' || c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    true
}

fn normalize_path_slow(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Decode into segments without allocating per segment: `out` holds the result, `starts`
    // where each kept segment begins so `..` can pop it.
    let mut out = String::with_capacity(raw.len());
    let mut seg = String::with_capacity(32);
    let mut starts: Vec<usize> = Vec::new();
    let mut i = 0;
    while i <= bytes.len() {
        let b = bytes.get(i).copied();
        match b {
            None | Some(b'/') => {
                if matches!(seg.split(';').next(), Some("." | "..")) && seg.contains(';') {
                    return Err(PathError::DotSegmentParameters);
                }
                match seg.as_str() {
                    "" | "." => {}
                    ".." => {
                        if let Some(start) = starts.pop() {
                            out.truncate(start);
                        }
                    }
                    s => {
                        starts.push(out.len());
                        out.push('/');
                        out.push_str(s);
                    }
                }
                // A trailing slash (or a trailing dot segment) keeps the path a "directory".
                if b.is_none() && (raw.ends_with('/') || seg == "." || seg == "..") {
                    out.push('/');
                }
                seg.clear();
                i += 1;
            }
            Some(b'%') => {
                let hi = bytes.get(i + 1).and_then(|c| hex(*c));
                let lo = bytes.get(i + 2).and_then(|c| hex(*c));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEscape);
                };
                let decoded = hi << 4 | lo;
                match decoded {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    b'.' => return Err(PathError::EncodedDot),
                    0..=0x1f | 0x7f => return Err(PathError::Control),
                    c if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'~' => seg.push(c as char),
                    c => {
                        seg.push('%');
                        seg.push(HEX[(c >> 4) as usize] as char);
                        seg.push(HEX[(c & 15) as usize] as char);
                    }
                }
                i += 3;
            }
            Some(b'\\') => return Err(PathError::Backslash),
            Some(c) if c < 0x20 || c == 0x7f => return Err(PathError::Control),
            Some(c) => {
                // `raw` is a `str`, and hyper only admits visible ASCII in paths; copy the char.
                let ch_len = utf8_len(c);
                seg.push_str(&raw[i..i + ch_len]);
                i += ch_len;
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// True when `path` is under `prefix` on a segment boundary: `/api` and `/api/` both match
/// `/api`, `/api/x` and `/api;jsessionid=1/x` (servlet containers drop `;params`, so `;` ends a
/// segment too), never `/apix`. Matching is case-sensitive.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let base = prefix.strip_suffix('/').unwrap_or(prefix);
    path.starts_with(base) && matches!(path.as_bytes().get(base.len()), None | Some(b'/') | Some(b';'))
}

/// The route table: routes grouped by host kind, each group sorted by prefix length, longest first.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    exact: HashMap<String, Vec<usize>>,
    suffix: Vec<(String, Vec<usize>)>,
    any: Vec<usize>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut suffix: Vec<(String, Vec<usize>)> = Vec::new();
        let mut any = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match &r.host {
                Some(HostPattern::Exact(h)) => exact.entry(h.clone()).or_default().push(i),
                Some(HostPattern::Suffix(s)) => match suffix.iter_mut().find(|(k, _)| k == s) {
                    Some((_, v)) => v.push(i),
                    None => suffix.push((s.clone(), vec![i])),
                },
                None => any.push(i),
            }
        }
        let by_len = |v: &mut Vec<usize>| v.sort_by_key(|&i| std::cmp::Reverse(routes[i].path.len()));
        exact.values_mut().for_each(by_len);
        suffix.iter_mut().for_each(|(_, v)| by_len(v));
        by_len(&mut any);
        // The most specific wildcard first.
        suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Router { routes, exact, suffix, any }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `host` (lower case, no port) and a normalised `path`. The longest prefix
    /// wins; for equal prefixes an exact host beats a wildcard, which beats no host.
    pub fn find(&self, host: &str, path: &str) -> Option<&Route> {
        let mut best: Option<usize> = None;
        let mut consider = |group: &[usize]| {
            if let Some(&i) = group.iter().find(|&&i| prefix_matches(&self.routes[i].path, path)) {
                if best.is_none_or(|b| self.routes[i].path.len() > self.routes[b].path.len()) {
                    best = Some(i);
                }
            }
        };
        if let Some(group) = self.exact.get(host) {
            consider(group);
        }
        for (suffix, group) in &self.suffix {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                consider(group);
            }
        }
        consider(&self.any);
        best.map(|i| &self.routes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let cases = [
            ("/", "/"),
            ("/a/../b", "/b"),
            ("//b", "/b"),
            ("/a//b///c", "/a/b/c"),
            ("/a/./b/", "/a/b/"),
            ("/../../x", "/x"),
            ("/a/b/..", "/a/"),
            ("/%7Euser/%41bc", "/~user/Abc"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/api", "/api"),
            ("/a;b/c", "/a;b/c"),
            ("/x/..y/b", "/x/..y/b"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn already_normal_paths_are_borrowed_and_agree_with_the_full_normaliser() {
        let corpus = [
            "/", "/a", "/a/", "/a/b;c", "/a/..;x", "/a/.;/b", "/a//b", "/.", "/..", "/a/.", "/a/..", "/a%2e", "/%41",
            "/ä/b", "/a/b/", "/;x", "/a/...", "/a/.b", "/a/b.", "/a\\b", "/a\tb", "relative", "", "//",
        ];
        for p in corpus {
            assert_eq!(normalize_path(p).map(Cow::into_owned), normalize_path_slow(p), "{p}");
        }
        assert!(matches!(normalize_path("/api/v1/things"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize_path("/api//v1"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn refuses_ambiguous_paths() {
        let cases = [
            ("/%2e%2e/b", PathError::EncodedDot),
            ("/%2E/b", PathError::EncodedDot),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%5cb", PathError::Backslash),
            ("/a\\b", PathError::Backslash),
            ("/a%00b", PathError::Control),
            ("/a\0b", PathError::Control),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("a/b", PathError::NotAbsolute),
            ("/public/..;/api/x", PathError::DotSegmentParameters),
            ("/public/..;jsessionid=1/api", PathError::DotSegmentParameters),
            ("/a/.;x/b", PathError::DotSegmentParameters),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input), Err(want), "{input}");
        }
    }

    fn route(name: &str, host: Option<&str>, path: &str) -> Route {
        Route { host: host.map(|h| HostPattern::parse(h).unwrap()), ..Route::for_tests(name, path) }
    }

    #[test]
    fn longest_prefix_and_host_specificity() {
        let r = Router::new(vec![
            route("root", None, "/"),
            route("api", None, "/api"),
            route("api-v2", None, "/api/v2/"),
            route("wild", Some("*.example.com"), "/api"),
            route("exact", Some("a.example.com"), "/api"),
        ]);
        let name = |h: &str, p: &str| r.find(h, p).map(|r| r.name.as_str());
        assert_eq!(name("x", "/"), Some("root"));
        assert_eq!(name("x", "/api"), Some("api"));
        assert_eq!(name("x", "/api/x"), Some("api"));
        assert_eq!(name("x", "/apix"), Some("root"));
        assert_eq!(name("x", "/api;jsessionid=1/secret"), Some("api"), "`;` ends a segment");
        assert_eq!(name("x", "/api/v2"), Some("api-v2"), "a trailing-slash prefix matches without it");
        assert_eq!(name("x", "/api/v2;x"), Some("api-v2"));
        assert_eq!(name("x", "/api/v2/x"), Some("api-v2"));
        assert_eq!(name("b.example.com", "/api/x"), Some("wild"));
        assert_eq!(name("a.example.com", "/api/x"), Some("exact"));
        assert_eq!(name("example.com", "/api/x"), Some("api"));
        assert_eq!(name("a.example.com", "/api/v2/x"), Some("api-v2"));
    }

    #[test]
    fn no_match_without_catch_all() {
        let r = Router::new(vec![route("api", Some("api.test"), "/api/")]);
        assert!(r.find("api.test", "/other").is_none());
        assert!(r.find("other.test", "/api/x").is_none());
    }

    #[test]
    fn host_patterns() {
        assert_eq!(HostPattern::parse("*.Example.com"), Ok(HostPattern::Suffix(".example.com".into())));
        for bad in ["", "*.", "a..b", "a.com:80", "*", "a b"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
