//! The one authority (host and optional port) a request is judged by: validated per RFC 3986
//! §3.2.2, lower-cased, one trailing dot removed. Routing, `X-Forwarded-Host`, `preserve_host`
//! and the access log all use this value, so what tollgate checked is what the upstream sees.
//!
//! Accepted hosts are host names (labels of letters, digits, `-` and `_`), dotted-quad IPv4 and
//! bracketed IPv6. Everything else RFC 3986 admits in a reg-name (`!$&'()*+,;=~`, `%`-escapes)
//! is refused, as are names whose last label is a number (`127.1`, `0x7f.1`, `example.123`):
//! URL parsers (WHATWG) read those as IPv4 addresses, so the upstream and the router would
//! disagree on which host was meant.

use std::fmt;
use std::net::Ipv6Addr;
use std::sync::OnceLock;

use http::header::{HeaderValue, HOST};
use http::{Request, Version};

/// Longest host name accepted (DNS: 253 characters without the trailing dot).
const MAX_HOST: usize = 253;
/// Longest label of a host name (DNS).
const MAX_LABEL: usize = 63;

/// A validated, normalised authority.
#[derive(Clone, PartialEq, Eq)]
pub struct Authority {
    /// `host[:port]` in normal form, ready to go upstream in `Host` or `X-Forwarded-Host`.
    value: HeaderValue,
    /// Length of the host part of `value` (IPv6 with its brackets).
    host_len: usize,
    port: Option<u16>,
}

/// Why an authority was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// No host at all (an empty `Host`, or `:80`).
    #[error("empty host")]
    Empty,
    /// A byte that no host name, IPv4 or IPv6 literal contains (`#`, `?`, `/`, `\`, `@`, `%`,
    /// space, control characters, non-ASCII).
    #[error("invalid character in the host")]
    BadChar,
    /// `a..b`, `.a`, or more than one trailing dot.
    #[error("empty label in the host")]
    EmptyLabel,
    /// A label over 63 or a name over 253 characters.
    #[error("host name too long")]
    TooLong,
    /// The last label is a number but the host is not a dotted-quad IPv4 address.
    #[error("numeric host that is not an IPv4 address")]
    Numeric,
    /// `[...]` that is not an IPv6 address (zone ids and IPvFuture are not accepted).
    #[error("invalid IPv6 address in the host")]
    BadIpv6,
    /// A port that is empty, not a number, has leading zeros, or is not in 1..=65535.
    #[error("invalid port")]
    BadPort,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2), or any request with no authority.
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` header (RFC 9112 §3.2).
    #[error("more than one Host header")]
    DuplicateHost,
    /// The request target's authority (absolute form, HTTP/2 `:authority`) and `Host` differ.
    #[error("the request target's authority and the Host header differ")]
    Mismatch,
}

impl AuthorityError {
    /// The reason as a static string, for a 400 body.
    pub fn reason(self) -> &'static str {
        match self {
            AuthorityError::Empty => "empty host",
            AuthorityError::BadChar => "invalid character in the host",
            AuthorityError::EmptyLabel => "empty label in the host",
            AuthorityError::TooLong => "host name too long",
            AuthorityError::Numeric => "numeric host that is not an IPv4 address",
            AuthorityError::BadIpv6 => "invalid IPv6 address in the host",
            AuthorityError::BadPort => "invalid port in the host",
            AuthorityError::MissingHost => "missing Host header",
            AuthorityError::DuplicateHost => "more than one Host header",
            AuthorityError::Mismatch => "the request target's authority and the Host header differ",
        }
    }
}

impl Authority {
    /// The host in normal form: lower case, no trailing dot, IPv6 in brackets, no port.
    pub fn host(&self) -> &str {
        let b = &self.value.as_bytes()[..self.host_len];
        // Validation admitted ASCII only; the fallback never matches a route.
        std::str::from_utf8(b).unwrap_or("")
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]` in normal form, as it goes upstream.
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.value.as_bytes()).unwrap_or("")
    }

    /// Parses a `Host` header value; when it is already in normal form (the usual case) the
    /// value is shared, not copied.
    pub fn from_header(value: &HeaderValue) -> Result<Authority, AuthorityError> {
        let shape = check(value.as_bytes())?;
        if shape.normal {
            return Ok(Authority { value: value.clone(), host_len: shape.host_len, port: shape.port });
        }
        Ok(build(value.as_bytes(), shape))
    }

    /// The same host, and the same port once a missing one is read as `default_port`.
    fn same_as(&self, other: &Authority, default_port: u16) -> bool {
        self.host() == other.host() && self.port.unwrap_or(default_port) == other.port.unwrap_or(default_port)
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Authority").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses and normalises an authority (`host[:port]`, no userinfo). Pure; for the request path
/// see [`of_request`], which avoids copying a value already in normal form.
pub fn parse(raw: &[u8]) -> Result<Authority, AuthorityError> {
    let shape = check(raw)?;
    Ok(build(raw, shape))
}

/// The authority of a request: its `Host` header, or the target's authority (absolute form,
/// HTTP/2 `:authority`), which must then agree with `Host` when both are present.
///
/// - more than one `Host`: refused (RFC 9112 §3.2);
/// - HTTP/1.1 without `Host`: refused, even in absolute form (RFC 9112 §3.2);
/// - HTTP/1.0 without `Host`: the absolute-form target's authority, else refused (there is
///   nothing to route by);
/// - HTTP/2 without `:authority` and `host`: refused.
pub fn of_request<B>(req: &Request<B>) -> Result<Authority, AuthorityError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(AuthorityError::DuplicateHost);
    }
    let Some(target) = req.uri().authority() else {
        return host.map_or(Err(AuthorityError::MissingHost), Authority::from_header);
    };
    let target = parse(target.as_str().as_bytes())?;
    match host {
        Some(h) => {
            let default_port = if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 };
            let host = Authority::from_header(h)?;
            if !target.same_as(&host, default_port) {
                return Err(AuthorityError::Mismatch);
            }
            // The target wins (RFC 9112 §3.2.2, RFC 9113 §8.3.1); they agree anyway.
            Ok(target)
        }
        None if req.version() == Version::HTTP_11 => Err(AuthorityError::MissingHost),
        None => Ok(target),
    }
}

/// One connection's first authority, as it came (its sole `Host`, or an HTTP/2 request's
/// `:authority` without `Host`), and the [`Authority`] made of it: a client sends the same on
/// every request of a connection, and checking it again each time cost about 450
/// instructions. A later request that says the same bytes in the same place gets a clone; any
/// other (another host, two `Host`s, an absolute-form target, `Host` beside `:authority`) goes
/// through [`of_request`] as before. The copy is the connection's own, not a view of the first
/// request's read buffer, which would stay allocated with it.
#[derive(Debug, Default)]
pub struct Remembered(OnceLock<(Box<[u8]>, Authority)>);

impl Remembered {
    /// [`of_request`], answered from the remembered authority when the request's is the same.
    pub fn of_request<B>(&self, req: &Request<B>) -> Result<Authority, AuthorityError> {
        let mut hosts = req.headers().get_all(HOST).iter();
        let raw = match (req.uri().authority(), hosts.next(), hosts.next()) {
            (None, Some(host), None) => host.as_bytes(),
            (Some(target), None, _) if req.version() == Version::HTTP_2 => target.as_str().as_bytes(),
            _ => return of_request(req),
        };
        if let Some((seen, authority)) = self.0.get() {
            if **seen == *raw {
                return Ok(authority.clone());
            }
        }
        let authority = of_request(req)?;
        if self.0.get().is_none() {
            let own =
                HeaderValue::from_bytes(authority.value.as_bytes()).unwrap_or(HeaderValue::from_static("invalid"));
            let _ = self.0.set((raw.into(), Authority { value: own, ..authority.clone() }));
        }
        Ok(authority)
    }
}

/// What [`check`] learnt: where the host ends, the port, and whether `raw` is already normal.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Length of the host in `raw`, without a trailing dot.
    host_len: usize,
    /// Where the port's digits start in `raw` (after `:`), when there is one.
    port_at: Option<usize>,
    port: Option<u16>,
    /// No upper case, no trailing dot: `raw` is its own normal form.
    normal: bool,
}

fn check(raw: &[u8]) -> Result<Shape, AuthorityError> {
    let (host, port_at) = split_port(raw)?;
    let port = port_at.map(|at| parse_port(&raw[at..])).transpose()?;
    let (host_len, normal) = if host.first() == Some(&b'[') {
        (check_ipv6(host)?, !host.iter().any(u8::is_ascii_uppercase))
    } else {
        check_name(host)?
    };
    Ok(Shape { host_len, port_at, port, normal })
}

/// Splits `host[:port]`; the port is what follows the last `:` outside brackets.
fn split_port(raw: &[u8]) -> Result<(&[u8], Option<usize>), AuthorityError> {
    if raw.is_empty() {
        return Err(AuthorityError::Empty);
    }
    let host_end = if raw[0] == b'[' {
        let close = memchr::memchr(b']', raw).ok_or(AuthorityError::BadIpv6)?;
        close + 1
    } else {
        memchr::memchr(b':', raw).unwrap_or(raw.len())
    };
    match raw.get(host_end) {
        None => Ok((raw, None)),
        Some(b':') => Ok((&raw[..host_end], Some(host_end + 1))),
        Some(_) => Err(AuthorityError::BadChar),
    }
}

fn parse_port(digits: &[u8]) -> Result<u16, AuthorityError> {
    let ok = !digits.is_empty() && digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) && digits[0] != b'0';
    if !ok {
        return Err(AuthorityError::BadPort);
    }
    let n = digits.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| AuthorityError::BadPort)
}

/// `[IPv6]`: returns the host's length (brackets included).
fn check_ipv6(host: &[u8]) -> Result<usize, AuthorityError> {
    let inner = &host[1..host.len() - 1];
    // `Ipv6Addr` parsing takes only hex digits, `:` and dotted IPv4: no zone id, no IPvFuture.
    let text = std::str::from_utf8(inner).map_err(|_| AuthorityError::BadIpv6)?;
    text.parse::<Ipv6Addr>().map_err(|_| AuthorityError::BadIpv6)?;
    Ok(host.len())
}

/// A host name or dotted-quad IPv4: returns the length without a trailing dot, and whether
/// the name is already normal.
fn check_name(host: &[u8]) -> Result<(usize, bool), AuthorityError> {
    let (name, dotted) = match host.strip_suffix(b".") {
        Some(n) => (n, true),
        None => (host, false),
    };
    if name.is_empty() {
        return Err(if dotted { AuthorityError::EmptyLabel } else { AuthorityError::Empty });
    }
    if name.len() > MAX_HOST {
        return Err(AuthorityError::TooLong);
    }
    // One pass: label syntax, case, and whether the name is a dotted-quad IPv4 address.
    let (mut upper, mut labels, mut octets) = (false, 0, true);
    let mut last = &name[..0];
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(AuthorityError::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(AuthorityError::TooLong);
        }
        let mut value = 0u32;
        let mut digits = true;
        for &b in label {
            match b {
                b'0'..=b'9' => value = value.saturating_mul(10).saturating_add(u32::from(b - b'0')),
                b'a'..=b'z' | b'-' | b'_' => digits = false,
                b'A'..=b'Z' => (upper, digits) = (true, false),
                _ => return Err(AuthorityError::BadChar),
            }
        }
        // RFC 3986 `dec-octet`: at most 255, no leading zero.
        octets &= digits && label.len() <= 3 && (label.len() == 1 || label[0] != b'0') && value <= 255;
        labels += 1;
        last = label;
    }
    if is_numeric_label(last) && !(octets && labels == 4) {
        return Err(AuthorityError::Numeric);
    }
    Ok((name.len(), !upper && !dotted))
}

/// All digits, or `0x` and hex digits: WHATWG URL parsers take such a last label as IPv4.
fn is_numeric_label(label: &[u8]) -> bool {
    let hex = label.strip_prefix(b"0x").or_else(|| label.strip_prefix(b"0X"));
    match hex {
        Some(digits) => digits.iter().all(u8::is_ascii_hexdigit),
        None => label.iter().all(u8::is_ascii_digit),
    }
}

/// The normal form of a checked `raw`: lower case, trailing dot dropped, port kept.
fn build(raw: &[u8], shape: Shape) -> Authority {
    let mut out = Vec::with_capacity(raw.len());
    out.extend(raw[..shape.host_len].iter().map(u8::to_ascii_lowercase));
    if let Some(at) = shape.port_at {
        out.push(b':');
        out.extend_from_slice(&raw[at..]);
    }
    // Only visible ASCII passed `check`, so this cannot fail; the fallback is never routed.
    let value = HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("invalid"));
    Authority { value, host_len: shape.host_len, port: shape.port }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (String, Option<u16>, String) {
        let a = parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        (a.host().to_string(), a.port(), a.as_str().to_string())
    }

    #[test]
    fn accepts_and_normalises() {
        let cases = [
            ("example.com", "example.com", None, "example.com"),
            ("Example.COM", "example.com", None, "example.com"),
            ("example.com.", "example.com", None, "example.com"),
            ("WWW.Example.com.:8080", "www.example.com", Some(8080), "www.example.com:8080"),
            ("a-b_c.example", "a-b_c.example", None, "a-b_c.example"),
            ("localhost:65535", "localhost", Some(65535), "localhost:65535"),
            ("127.0.0.1", "127.0.0.1", None, "127.0.0.1"),
            ("10.0.0.255:80", "10.0.0.255", Some(80), "10.0.0.255:80"),
            // Long digit labels (not the last) are names: the octet arithmetic must not overflow.
            (
                "99999999999999999999999.example",
                "99999999999999999999999.example",
                None,
                "99999999999999999999999.example",
            ),
            ("[::1]", "[::1]", None, "[::1]"),
            ("[2001:DB8::1]:443", "[2001:db8::1]", Some(443), "[2001:db8::1]:443"),
            ("[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]", None, "[::ffff:1.2.3.4]"),
            ("1e100.net", "1e100.net", None, "1e100.net"),
            ("0x.example", "0x.example", None, "0x.example"),
        ];
        for (raw, host, port, value) in cases {
            assert_eq!(ok(raw), (host.to_string(), port, value.to_string()), "{raw}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        use AuthorityError::*;
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        let cases: Vec<(&[u8], AuthorityError)> = vec![
            (b"", Empty),
            (b":80", Empty),
            (b"admin.example.com#.example.com", BadChar),
            (b"admin.example.com?.example.com", BadChar),
            (b"admin.example.com/.example.com", BadChar),
            (b"admin.example.com\\.example.com", BadChar),
            (b"admin@www.example.com", BadChar),
            (b"user:pw@example.com", BadPort),
            (b"admin.example.com .example.com", BadChar),
            (b"admin.example.com%00.example.com", BadChar),
            (b"admin.example.com\0.example.com", BadChar),
            (b"a\tb", BadChar),
            (b"caf\xc3\xa9.example", BadChar),
            (b"a*b.example", BadChar),
            (b"a,b.example", BadChar),
            (b"a;b.example", BadChar),
            (b"a~b.example", BadChar),
            (b"a..b", EmptyLabel),
            (b".example.com", EmptyLabel),
            (b"example.com..", EmptyLabel),
            (b".", EmptyLabel),
            (long_label.as_bytes(), TooLong),
            (long_name.as_bytes(), TooLong),
            (b"127.1", Numeric),
            (b"0x7f.0.0.1", Numeric),
            (b"0x7f000001", Numeric),
            (b"2130706433", Numeric),
            (b"010.0.0.1", Numeric),
            (b"1.2.3.256", Numeric),
            (b"1.2.3.4.5", Numeric),
            (b"example.123", Numeric),
            (b"[::1", BadIpv6),
            (b"[::1]x", BadChar),
            (b"[fe80::1%25eth0]", BadIpv6),
            (b"[v1.x]", BadIpv6),
            (b"[example.com]", BadIpv6),
            (b"[]", BadIpv6),
            (b"example.com:", BadPort),
            (b"example.com:0", BadPort),
            (b"example.com:080", BadPort),
            (b"example.com:65536", BadPort),
            (b"example.com:8080:1", BadPort),
            (b"example.com:+80", BadPort),
            (b"::1", BadPort),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw).map(|a| a.to_string()), Err(want), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn normal_header_values_are_shared() {
        let v = HeaderValue::from_static("api.example.com:8443");
        let a = Authority::from_header(&v).unwrap();
        assert_eq!(a.header_value(), &v);
        assert_eq!((a.host(), a.port()), ("api.example.com", Some(8443)));
        let a = Authority::from_header(&HeaderValue::from_static("API.example.com.")).unwrap();
        assert_eq!(a.header_value(), "api.example.com");
    }

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn one_authority_per_request() {
        use AuthorityError::*;
        let host = |r: Request<()>| of_request(&r).map(|a| a.to_string());
        let v11 = Version::HTTP_11;
        assert_eq!(host(req(v11, "/x", &["Www.Example.com"])), Ok("www.example.com".into()));
        assert_eq!(host(req(v11, "/x", &[])), Err(MissingHost));
        assert_eq!(host(req(v11, "/x", &["a.example", "a.example"])), Err(DuplicateHost));
        assert_eq!(host(req(v11, "/x", &[""])), Err(Empty));
        assert_eq!(host(req(v11, "http://www.example.com/x", &["admin.example.com"])), Err(Mismatch));
        assert_eq!(host(req(v11, "http://www.example.com/x", &["WWW.example.com."])), Ok("www.example.com".into()));
        assert_eq!(host(req(v11, "http://www.example.com/x", &["www.example.com:80"])), Ok("www.example.com".into()));
        assert_eq!(host(req(v11, "https://a.example:443/x", &["a.example"])), Ok("a.example:443".into()));
        assert_eq!(host(req(v11, "http://a.example:8080/x", &["a.example"])), Err(Mismatch));
        assert_eq!(host(req(v11, "http://a.example/x", &[])), Err(MissingHost));
        assert_eq!(host(req(v11, "http://a@a.example/x", &["a.example"])), Err(BadChar));
        assert_eq!(host(req(Version::HTTP_10, "/x", &[])), Err(MissingHost));
        assert_eq!(host(req(Version::HTTP_10, "http://a.example/x", &[])), Ok("a.example".into()));
        assert_eq!(host(req(Version::HTTP_2, "https://a.example/x", &[])), Ok("a.example".into()));
        assert_eq!(host(req(Version::HTTP_2, "https://a.example/x", &["b.example"])), Err(Mismatch));
        assert_eq!(host(req(Version::HTTP_2, "/x", &["a.example"])), Ok("a.example".into()));
        assert_eq!(host(req(Version::HTTP_2, "/x", &[])), Err(MissingHost));
    }

    /// The remembered `Host` answers exactly as [`of_request`] would, for every request of a
    /// connection, whatever came first.
    #[test]
    fn remembered_host_answers_as_of_request() {
        let conn = Remembered::default();
        let cases: &[(Version, &str, &[&str])] = &[
            (Version::HTTP_11, "/a", &["Example.COM:8080"]),
            (Version::HTTP_11, "/b", &["Example.COM:8080"]),
            (Version::HTTP_11, "/c", &["other.example"]),
            (Version::HTTP_11, "/d", &["bad host"]),
            (Version::HTTP_11, "/e", &["Example.COM:8080", "Example.COM:8080"]),
            (Version::HTTP_11, "/f", &[]),
            (Version::HTTP_11, "http://elsewhere.example/g", &["Example.COM:8080"]),
            (Version::HTTP_10, "http://elsewhere.example/h", &[]),
            (Version::HTTP_11, "/i", &["Example.COM:8080"]),
            (Version::HTTP_11, "/j", &["example.com:8080"]),
            (Version::HTTP_11, "/k", &["Example.COM:8081"]),
            (Version::HTTP_11, "/l", &["Example.ORG:8080"]),
            (Version::HTTP_2, "https://Example.COM:8080/m", &[]),
            (Version::HTTP_2, "https://example.com:8080/n", &["example.com:8080"]),
            (Version::HTTP_2, "https://example.com:8080/o", &["example.org:8080"]),
            (Version::HTTP_11, "https://Example.COM:8080/p", &[]),
        ];
        for (version, uri, hosts) in cases {
            let r = req(*version, uri, hosts);
            assert_eq!(conn.of_request(&r), of_request(&r), "{uri} {hosts:?}");
        }
        assert_eq!(conn.0.get().expect("the first Host").1.as_str(), "example.com:8080");
        // A copy of its own, not a view of the request it came from.
        let (first, conn) = (req(Version::HTTP_11, "/", &["example.com"]), Remembered::default());
        assert_eq!(
            conn.of_request(&first).map(|a| a.header_value().as_bytes().as_ptr()),
            Ok(first.headers()[HOST].as_bytes().as_ptr())
        );
        assert_ne!(
            conn.0.get().expect("remembered").1.header_value().as_bytes().as_ptr(),
            first.headers()[HOST].as_bytes().as_ptr()
        );
        // An HTTP/2 connection's :authority.
        let h2 = Remembered::default();
        for (uri, hosts) in [
            ("https://API.example/a", &[][..]),
            ("https://API.example/b", &[]),
            ("https://api.example/c", &["other.example"]),
            ("https://APi.example/d", &[]),
            ("https://xyz.example/e", &[]),
        ] {
            let r = req(Version::HTTP_2, uri, hosts);
            assert_eq!(h2.of_request(&r), of_request(&r), "{uri} {hosts:?}");
        }
        assert_eq!(h2.0.get().map(|(raw, a)| (&raw[..], a.as_str())), Some((&b"API.example"[..], "api.example")));
        // A first request that is refused is not remembered.
        let fresh = Remembered::default();
        assert!(fresh.of_request(&req(Version::HTTP_11, "/", &["a b"])).is_err());
        assert!(fresh.0.get().is_none());
    }

    #[test]
    fn host_patterns() {
        assert_eq!(HostPattern::parse("*.Example.com"), Ok(HostPattern::Suffix(".example.com".into())));
        for bad in ["", "*.", "a..b", "a.com:80", "*", "a b"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
