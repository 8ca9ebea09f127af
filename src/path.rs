//! Request path normalisation. Matching uses the normalised path only, never the query
//! string; the normalised path is also what goes upstream, so the gateway and the upstream
//! always agree on which resource was asked for.

use std::borrow::Cow;

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
    // One pass over the bytes (a path is checked on every request; `split` iterators cost
    // several times as much for a short path).
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut start = 1;
    loop {
        let mut end = start;
        while let Some(&c) = b.get(end).filter(|&&c| c != b'/') {
            if c == b'%' || c == b'\\' || c < 0x20 || c == 0x7f {
                return false;
            }
            end += 1;
        }
        let seg = &b[start..end];
        let last = end == b.len();
        let name = seg.iter().position(|&c| c == b';').map_or(seg, |i| &seg[..i]);
        if (seg.is_empty() && !last) || name == b"." || name == b".." {
            return false;
        }
        if last {
            return true;
        }
        start = end + 1;
    }
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

    /// The one-pass check agrees with the `split` formulation it replaced, on every path of up
    /// to six characters over the bytes that matter, and a path it calls normal is one the slow
    /// path returns unchanged.
    #[test]
    fn fast_check_agrees_with_the_split_formulation() {
        fn by_split(raw: &str) -> bool {
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
        let alphabet = ['/', '.', ';', 'a', '%', '\\', '\u{1}'];
        let mut paths = vec![String::new()];
        let mut checked = 0;
        for _ in 0..6 {
            let mut longer = Vec::new();
            for p in &paths {
                for c in alphabet {
                    let mut q = p.clone();
                    q.push(c);
                    assert_eq!(is_normal(&q), by_split(&q), "{q:?}");
                    if is_normal(&q) {
                        assert_eq!(normalize_path_slow(&q).as_deref(), Ok(q.as_str()), "{q:?}");
                    }
                    checked += 1;
                    longer.push(q);
                }
            }
            paths = longer;
        }
        assert!(checked > 100_000);
    }
}
