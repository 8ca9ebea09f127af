//! The properties every parser of client or provider input must keep, one `pub fn` per fuzz
//! target. Each takes the raw input (bytes or text as the gateway would see it) and panics when
//! a property fails; "the input was refused" is always an acceptable outcome, a panic never is.
//!
//! Compiled twice: into the `cargo fuzz` targets (`fuzz/fuzz_targets/*.rs`, nightly) and into
//! the stable test suite (`tests/properties.rs` includes this file with `#[path]`), so CI checks
//! the same properties with proptest on every change.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE, HOST, SET_COOKIE};
use http::{Request, StatusCode, Uri, Version};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Value};

use tollgate::auth::jwks::{KeySet, Lookup};
use tollgate::auth::{jwt, Invalid};
use tollgate::authority::{self, Authority, AuthorityError};
use tollgate::config::{Config, IpRange, Issuer, TokenSource};
use tollgate::path::normalize_path;
use tollgate::session::cookie;
use tollgate::session::{Sealed, Session, Sessions, SESSION_PURPOSE};
use tollgate::upstream::headers::{self, Protected};

// ---------------------------------------------------------------------------------------------
// Shared input helpers

/// Header lines `name: value` separated by `\n`; lines that are not a valid header are skipped
/// (hyper would refuse the request before tollgate saw it).
pub fn header_lines(data: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            h.append(n, v);
        }
    }
    h
}

/// The first line and the rest.
fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn percent_decode_ref(s: &str) -> Option<String> {
    // A reference decoder: exactly two hex digits after each `%`.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(hi), Some(lo)) = (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) else {
                return None;
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// Bearer token extraction (src/auth/token.rs)

/// RFC 6750 b64token, written plainly (the library's version is branch-free per byte).
fn is_b64token(t: &[u8]) -> bool {
    let body = t.len() - t.iter().rev().take_while(|&&b| b == b'=').count();
    body > 0 && t[..body].iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// What `Authorization` alone should yield: `Err(())` for a malformed bearer header.
fn header_token_model(headers: &HeaderMap) -> Result<Option<String>, ()> {
    let all: Vec<&HeaderValue> = headers.get_all(AUTHORIZATION).iter().collect();
    match all.as_slice() {
        [] => Ok(None),
        [one] => {
            let v = one.as_bytes();
            let (scheme, rest) = match v.iter().position(|&b| b == b' ') {
                Some(i) => (&v[..i], &v[i + 1..]),
                None => (v, &b""[..]),
            };
            if !scheme.eq_ignore_ascii_case(b"bearer") {
                return Ok(None);
            }
            let token: Vec<u8> = rest.iter().copied().skip_while(|&b| b == b' ').collect();
            if is_b64token(&token) {
                Ok(Some(String::from_utf8(token).unwrap()))
            } else {
                Err(())
            }
        }
        _ => Err(()),
    }
}

/// Input: the request target on the first line, header lines after it.
pub fn token(data: &[u8]) {
    let (target, rest) = first_line(data);
    let uri = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    let headers = header_lines(rest);
    // The model knows the Bearer scheme only: DPoP (a route option) is left off here.
    let header_only =
        tollgate::auth::token::extract(&headers, &uri, &[TokenSource::Header], false).map(|p| p.map(|p| p.token));
    match (&header_only, header_token_model(&headers)) {
        (Ok(got), Ok(want)) => assert_eq!(got.as_deref(), want.as_deref(), "Authorization read differently"),
        (Err(tollgate::auth::AuthError::InvalidRequest(_)), Err(())) => {}
        (got, want) => panic!("Authorization: got {got:?}, the model says {want:?}"),
    }
    let all = [TokenSource::Header, TokenSource::Query("access_token".into()), TokenSource::Cookie("at".into())];
    match tollgate::auth::token::extract(&headers, &uri, &all, false).map(|p| p.map(|p| p.token)) {
        Ok(Some(t)) => {
            assert!(!t.is_empty(), "an empty token was extracted");
            if let Ok(Some(h)) = &header_only {
                assert_eq!(&t, h, "a second source overrode the header");
            }
        }
        Ok(None) => assert!(matches!(header_only, Ok(None)), "the header's token was lost"),
        Err(tollgate::auth::AuthError::InvalidRequest(_)) => {}
        Err(e) => panic!("extraction failed with {e:?}, not InvalidRequest"),
    }
}

// ---------------------------------------------------------------------------------------------
// Path normalisation (src/path.rs)

/// A normalised path is a fixed point, absolute, without dot segments, empty segments (but a
/// trailing one), encoded slashes, dots or backslashes, or control characters.
pub fn path(raw: &str) {
    let Ok(p) = normalize_path(raw) else { return };
    if let Cow::Borrowed(b) = &p {
        assert_eq!(*b, raw);
    }
    let again = normalize_path(&p).unwrap_or_else(|e| panic!("{raw:?} -> {p:?}, which is refused: {e}"));
    assert_eq!(again, p, "{raw:?}: not a fixed point");
    assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
    let segments: Vec<&str> = p[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        assert!(!seg.is_empty() || i + 1 == segments.len(), "{raw:?} -> {p:?}: empty segment");
        let name = seg.split(';').next().unwrap_or("");
        assert!(name != "." && name != "..", "{raw:?} -> {p:?}: dot segment");
    }
    let upper = p.to_ascii_uppercase();
    for bad in ["%2F", "%2E", "%5C", "%00", "\\"] {
        assert!(!upper.contains(bad), "{raw:?} -> {p:?} contains {bad}");
    }
    assert!(!p.bytes().any(|b| b < 0x20 || b == 0x7f), "{raw:?} -> {p:?}: control character");
    // Every escape left is two upper-case hex digits of a byte that is not unreserved.
    let b = p.as_bytes();
    for (i, _) in p.match_indices('%') {
        let hex = b.get(i + 1..i + 3).unwrap_or_else(|| panic!("{p:?}: truncated escape"));
        assert!(hex.iter().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)), "{p:?}: escape {hex:?}");
        let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        assert!(!(v.is_ascii_alphanumeric() || b"-._~".contains(&v)), "{p:?}: unreserved byte left encoded");
    }
}

// ---------------------------------------------------------------------------------------------
// Authority (src/authority.rs)

/// An accepted authority re-parses to itself, is lower-case visible ASCII without any of
/// `#?/\@ %`, agrees with the `Host` header parser, and is a host name, IPv4 or IPv6 literal.
/// Returns it for the fuzz target's WHATWG cross-check.
pub fn authority(raw: &[u8]) -> Option<Authority> {
    let parsed = authority::parse(raw);
    if let Ok(v) = HeaderValue::from_bytes(raw) {
        assert_eq!(Authority::from_header(&v), parsed, "Host header and parser disagree on {raw:?}");
    }
    let a = parsed.ok()?;
    let s = a.as_str();
    assert_eq!(authority::parse(s.as_bytes()).as_ref(), Ok(&a), "{raw:?} -> {s:?} does not re-parse to itself");
    assert!(s.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()), "{s:?}");
    for bad in "#?/\\@ %,;*~!$&'()+=\"<>^`{|}".chars() {
        assert!(!s.contains(bad), "{raw:?} -> {s:?} contains {bad:?}");
    }
    let host = a.host();
    let want = match a.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    assert_eq!(s, want);
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').expect("bracketed IPv6");
        inner.parse::<Ipv6Addr>().unwrap_or_else(|_| panic!("{host:?} is not IPv6"));
    } else {
        assert!(!host.is_empty() && !host.ends_with('.') && !host.contains(':'), "{host:?}");
        let last = host.rsplit('.').next().unwrap_or("");
        let numeric = last.bytes().all(|b| b.is_ascii_digit())
            || last.strip_prefix("0x").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if numeric {
            host.parse::<Ipv4Addr>().unwrap_or_else(|_| panic!("{host:?}: numeric last label, not IPv4"));
        }
        for label in host.split('.') {
            assert!(!label.is_empty() && label.len() <= 63, "{host:?}");
        }
    }
    Some(a)
}

/// Input: a flag byte (HTTP version), the request target on the first line, `Host` values on
/// the following lines. One authority per request: what is accepted re-parses to itself and
/// is what both the target and `Host` name.
pub fn of_request(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let version = [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][usize::from(flags % 3)];
    let (target, hosts) = first_line(rest);
    let Ok(uri) = Uri::try_from(target) else { return };
    let mut b = Request::builder().version(version).uri(uri.clone());
    let mut host_values = Vec::new();
    for h in hosts.split(|&c| c == b'\n').take(3) {
        if let Ok(v) = HeaderValue::from_bytes(h) {
            b = b.header(HOST, v.clone());
            host_values.push(v);
        }
    }
    let Ok(req) = b.body(()) else { return };
    let got = authority::of_request(&req);
    if host_values.len() > 1 {
        assert_eq!(got, Err(AuthorityError::DuplicateHost));
        return;
    }
    let Ok(a) = got else { return };
    assert_eq!(authority::parse(a.as_str().as_bytes()).as_ref(), Ok(&a));
    if let Some(h) = host_values.first() {
        let h = Authority::from_header(h).expect("an accepted request's Host parses");
        assert_eq!(h.host(), a.host(), "Host and the accepted authority name different hosts");
    }
    if let Some(t) = uri.authority() {
        let t = authority::parse(t.as_str().as_bytes()).expect("an accepted request's target authority parses");
        assert_eq!(t.host(), a.host(), "the target and the accepted authority name different hosts");
    }
}

// ---------------------------------------------------------------------------------------------
// Cookies and sessions (src/auth/cookie.rs, src/auth/session.rs)

pub const COOKIE_NAME: &str = "s";
/// The raw-cookie target's key: nothing in the corpus was ever sealed with it, so any cookie
/// that opens is a forgery.
const RAW_SECRET: &str = "fuzz-raw-cookie-key-that-never-sealed-anything";
const SEAL_SECRET: &str = "fuzz-sealing-key-0123456789abcdef0123456789";
const OLD_SECRET: &str = "fuzz-old-key-still-opens-0123456789abcdef";
pub const NOW: u64 = 1_800_000_000;

fn sessions(secrets: &[&str]) -> Sessions {
    let secrets = secrets.join(",");
    let toml = format!(
        "[[issuer]]\nname = \"idp\"\nurl = \"https://idp.example.com\"\naudiences = [\"api\"]\n\n\
         [login]\nclient_id = \"gw\"\nclient_secret = \"gw-secret\"\npublic_url = \"https://app.example.com\"\n\
         cookie_secret = \"{secrets}\"\ncookie_name = \"{COOKIE_NAME}\"\n\n\
         [[route]]\nauth = \"login\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n"
    );
    let config = Config::from_str(&toml, Path::new("fuzz.toml"), &|_| None).unwrap_or_else(|e| panic!("{e}"));
    Sessions::new(config.logins.first().expect("[login]")).expect("cookie store")
}

static RAW_SESSIONS: LazyLock<Sessions> = LazyLock::new(|| sessions(&[RAW_SECRET]));
static SEAL_SESSIONS: LazyLock<Sessions> = LazyLock::new(|| sessions(&[SEAL_SECRET, OLD_SECRET]));

/// `(name, value)` of every cookie, as a reader of RFC 6265 `Cookie` lines sees them.
fn cookie_pairs_model(headers: &HeaderMap) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for line in headers.get_all(COOKIE) {
        for pair in line.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(eq) = pair.iter().position(|&b| b == b'=') {
                out.push((pair[..eq].to_vec(), pair[eq + 1..].to_vec()));
            }
        }
    }
    out
}

/// `name` whole, else `name_0`, `name_1`, … up to the first gap (16 at most), first of each.
fn cookie_read_model(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let pairs = cookie_pairs_model(headers);
    if let Some((_, v)) = pairs.iter().find(|(n, _)| n == name.as_bytes()) {
        return Some(v.clone());
    }
    let chunk = |i: usize| pairs.iter().find(|(n, _)| *n == format!("{name}_{i}").as_bytes()).map(|(_, v)| v.clone());
    chunk(0)?;
    Some((0..16).map_while(chunk).flatten().collect())
}

/// Input: `Cookie` lines (and any other headers). Reading agrees with the model, the names to
/// clear are bounded and real, and nothing opens: the key never sealed anything.
pub fn cookie(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, v);
        }
    }
    let read = cookie::read(&headers, COOKIE_NAME);
    assert_eq!(read.as_deref(), cookie_read_model(&headers, COOKIE_NAME).as_deref(), "chunk assembly");
    let present = cookie::present(&headers, COOKIE_NAME);
    assert!(present.len() <= 17, "{} names to clear", present.len());
    let names: Vec<String> =
        cookie_pairs_model(&headers).into_iter().filter_map(|(n, _)| String::from_utf8(n).ok()).collect();
    for (i, p) in present.iter().enumerate() {
        assert!(names.contains(p) && !present[..i].contains(p), "{p:?}");
        let ok = p == COOKIE_NAME || (0..16).any(|n| *p == format!("{COOKIE_NAME}_{n}"));
        assert!(ok, "{p:?} is not one of ours");
    }
    if let Some(v) = read {
        let text = std::str::from_utf8(&v).ok();
        assert!(
            text.and_then(|t| RAW_SESSIONS.sealer.open(SESSION_PURPOSE, t)).is_none(),
            "a cookie nobody sealed opened"
        );
        assert!(RAW_SESSIONS.open_sealed(&Sealed::Cookie(v), NOW).is_none(), "a forged session opened");
    }
}

/// A session whose access token makes the sealed value `len_hint` × 256 bytes longer: long
/// ones are chunked.
fn session_for(claims: &[u8], len_hint: u8) -> Session {
    let claims = serde_json::from_slice::<Value>(claims)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"sub": String::from_utf8_lossy(claims)}));
    Session {
        id: "A".repeat(43),
        claims,
        id_token: "id.token.x".into(),
        access_token: "t".repeat(usize::from(len_hint) * 256),
        refresh_token: Some("refresh".into()),
        access_exp: NOW + 300,
        access_issued: NOW - 10,
        created: NOW - 10,
        seen: NOW - 5,
    }
}

/// Input: an op byte, a position (2 bytes), an xor byte, a length byte, then the session's
/// claims. The session is sealed, written as cookies (chunked when long), sent back in one
/// `Cookie` line with other cookies, then tampered with. Untampered, it opens to the same
/// session; changed, it never opens to anything else, and never after its time.
pub fn cookie_sealed(data: &[u8]) {
    let [op, p0, p1, xor, len, claims @ ..] = data else { return };
    let s = &*SEAL_SESSIONS;
    // Past 16 chunks a session is refused (`SessionError::TooLarge`), not written.
    let session = session_for(claims, (*len).min(160));
    let sealed = s.sealer.seal(SESSION_PURPOSE, &serde_json::to_vec(&session).unwrap()).unwrap();
    let mut out = HeaderMap::new();
    let attrs = cookie::Attributes { secure: true, path: "/" };
    assert!(cookie::write(&mut out, COOKIE_NAME, &sealed, Duration::from_secs(60), attrs, &[]), "not written");
    let mut jar: Vec<String> =
        out.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string()).collect();
    if op & 1 == 1 {
        jar.reverse(); // chunk order in the line does not matter
    }
    jar.insert(0, "other=1".into());
    jar.push("s_x=junk".into());
    let line = jar.join("; ");
    let opens = |line: &[u8]| -> Option<(Vec<u8>, Option<Session>)> {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_bytes(line).ok()?);
        let v = cookie::read(&h, COOKIE_NAME)?.into_owned();
        let opened = s.open_sealed(&Sealed::Cookie(Cow::Borrowed(&v[..])), NOW);
        Some((v, opened))
    };
    let (v, opened) = opens(line.as_bytes()).expect("the written cookies are read back");
    assert!(v == sealed.as_bytes(), "chunks reassembled wrongly ({} bytes, {} read)", sealed.len(), v.len());
    assert_eq!(opened.as_ref(), Some(&session), "an untampered session did not open");
    assert!(s.sealer.open("tollgate flow", &sealed).is_none(), "sealed for one purpose, opened for another");
    assert!(
        s.open_sealed(&Sealed::Cookie(Cow::Borrowed(sealed.as_bytes())), s.live_until(&session)).is_none(),
        "expired"
    );
    let mut bytes = line.clone().into_bytes();
    let at = usize::from(u16::from_le_bytes([*p0, *p1])) % bytes.len();
    match op >> 1 & 3 {
        0 => bytes[at] ^= (*xor).max(1),
        1 => bytes.truncate(at),
        2 => bytes.insert(at, *xor),
        _ => {
            bytes.remove(at);
        }
    }
    let truncated = &sealed[..at % sealed.len()];
    assert!(s.sealer.open(SESSION_PURPOSE, truncated).is_none(), "a truncated seal opened");
    if let Some((v, Some(got))) = opens(&bytes) {
        assert!(v == sealed.as_bytes(), "a changed sealed value opened");
        assert_eq!(got, session);
    }
}

// ---------------------------------------------------------------------------------------------
// Redirect targets (src/auth/redirect.rs)

pub const PUBLIC_ORIGIN: &str = "https://app.example.com";
pub const ALLOWED_HOSTS: [&str; 2] = [".trusted.example", "docs.example.com"];

fn host_allowed(host: &str) -> bool {
    ALLOWED_HOSTS.iter().any(|a| if a.starts_with('.') { host.ends_with(a) } else { host == *a })
}

/// A target that passes is `/`, a path on the gateway's origin (also once percent-decoded), the
/// public origin itself, or https on an allowed host; plain ASCII, no userinfo. Returns it for
/// the fuzz target's WHATWG cross-check.
pub fn redirect(rd: &str) -> String {
    let allowed: Vec<String> = ALLOWED_HOSTS.iter().map(|s| s.to_string()).collect();
    let t = tollgate::login::redirect::safe_target(rd, PUBLIC_ORIGIN, &allowed);
    assert!(t.len() <= tollgate::login::redirect::MAX_TARGET, "{rd:?} -> {} bytes", t.len());
    assert!(t.bytes().all(|b| b.is_ascii_graphic()), "{rd:?} -> {t:?}: not visible ASCII");
    assert!(!t.contains('\\'), "{rd:?} -> {t:?}");
    if t.starts_with('/') {
        assert!(!t.starts_with("//"), "{rd:?} -> {t:?}: another host");
        if let Some(d) = percent_decode_ref(&t) {
            let head = d.split(['?', '#']).next().unwrap_or("");
            assert!(!head.starts_with("//") && !head.contains('\\'), "{rd:?} -> {t:?}: decoded {d:?}");
            assert!(!head.chars().any(char::is_control), "{rd:?} -> {t:?}: decoded {d:?}");
        }
        return t;
    }
    let uri: Uri = t.parse().unwrap_or_else(|e| panic!("{rd:?} -> {t:?} is not a URI: {e}"));
    let authority = uri.authority().expect("an absolute target has a host");
    assert!(!authority.as_str().contains('@'), "{rd:?} -> {t:?}: userinfo");
    let origin = format!("{}://{}", uri.scheme_str().unwrap_or(""), authority.as_str()).to_ascii_lowercase();
    let host = authority.host().to_ascii_lowercase();
    assert!(
        origin == PUBLIC_ORIGIN
            || (uri.scheme_str() == Some("https") && uri.port_u16().is_none_or(|p| p == 443) && host_allowed(&host)),
        "{rd:?} -> {t:?}: off site"
    );
    t
}

// ---------------------------------------------------------------------------------------------
// X-Request-Id (src/gateway.rs) and forwarding headers (src/forward_auth.rs, set_forwarding)

static REQUEST_IDS: LazyLock<tollgate::gateway::request_id::RequestIds> =
    LazyLock::new(tollgate::gateway::request_id::RequestIds::new);

/// A client's id is kept exactly when it is 1..=128 of `[A-Za-z0-9-_.:]`; otherwise a fresh
/// 32-hex-digit one is made. Either way the id is safe in a log line and a header.
pub fn request_id(value: &[u8]) {
    let mut h = HeaderMap::new();
    let sent = HeaderValue::from_bytes(value).ok();
    if let Some(v) = &sent {
        h.insert("x-request-id", v.clone());
    }
    let id = REQUEST_IDS.accept_or_generate(&h);
    let b = id.as_bytes();
    let plain = |b: &[u8]| {
        !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
    };
    assert!(plain(b), "{}", String::from_utf8_lossy(b));
    if sent.is_some() && plain(value) {
        assert_eq!(b, value, "a plain id was replaced");
    } else {
        assert!(
            b.len() == 32 && b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)),
            "{}",
            String::from_utf8_lossy(b)
        );
        assert_ne!(REQUEST_IDS.accept_or_generate(&h), id, "generated ids repeat");
    }
}

/// The entry of `list` that `n` folds to.
fn folds_to<'a>(n: &str, list: &[&'a str]) -> Option<&'a str> {
    list.iter().find(|l| headers::fold(l) == headers::fold(n)).copied()
}

fn one<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut all = h.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then(|| first.to_str().ok()).flatten()
}

/// Input: a flag byte (trusted peer, TLS, own authority), then header lines. Forward auth reads
/// one original request, from headers that agree; `set_forwarding` leaves exactly one of each
/// forwarding header, with the routed host and, from an untrusted peer, only what the
/// connection says.
pub fn forwarded(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut headers = header_lines(rest);
    let own = (flags & 4 != 0).then_some("own.example:8443");
    if let Ok((scheme, authority_, target, uri)) = tollgate::gateway::forward_auth::read_forwarded(&headers, own) {
        assert!(matches!(scheme, None | Some("http") | Some("https")), "{scheme:?}");
        if let Some(t) = target {
            assert!(t.starts_with('/') && !t.contains('#'), "{t:?}");
            for name in ["x-forwarded-uri", "x-original-uri"] {
                if let Some(v) = one(&headers, name) {
                    assert_eq!(v, t, "{name} disagrees with the target used");
                }
            }
        }
        let host_of = |a: &str| authority::parse(a.as_bytes()).ok().map(|a| a.host().to_string());
        if let (Some(a), Some(h)) = (authority_, one(&headers, "x-forwarded-host")) {
            assert_eq!(host_of(a), host_of(h), "X-Forwarded-Host disagrees with the host used");
        }
        if let Ok(uri) = uri {
            let t = target.unwrap_or("/");
            assert_eq!(uri.path(), t.split('?').next().unwrap(), "the rebuilt URI has another path");
            assert_eq!(uri.query(), t.split_once('?').map(|(_, q)| q), "the rebuilt URI has another query");
            if let Some(ua) = uri.authority() {
                assert_eq!(host_of(ua.as_str()), authority_.and_then(host_of), "the rebuilt URI has another host");
            }
        }
    }
    let trusted = flags & 1 != 0;
    let ranges = [IpRange::parse("10.0.0.0/8").unwrap()];
    let peer: SocketAddr = if trusted { "10.1.2.3:5000" } else { "192.0.2.7:5000" }.parse().unwrap();
    let conn = tollgate::gateway::Conn::new(peer, flags & 2 != 0, &ranges);
    assert_eq!(conn.trusted, trusted);
    let prior_proto = headers.contains_key("x-forwarded-proto");
    let host = HeaderValue::from_static("app.example.com");
    tollgate::gateway::request::set_forwarding(&mut headers, &conn, &host);
    let xff = one(&headers, "x-forwarded-for").expect("one X-Forwarded-For");
    let proto = one(&headers, "x-forwarded-proto");
    // A trusted proxy's own X-Forwarded-Proto is kept as it sent it (one copy or several).
    assert!(proto.is_some() || (trusted && prior_proto), "one X-Forwarded-Proto");
    assert_eq!(one(&headers, "x-forwarded-host"), Some("app.example.com"));
    let ip = peer.ip().to_string();
    if trusted {
        assert!(xff == ip || xff.ends_with(&format!(", {ip}")), "{xff:?}");
    } else {
        assert_eq!(xff, ip, "an untrusted peer's X-Forwarded-For survived");
    }
    if !(trusted && prior_proto) {
        assert_eq!(proto, Some(if conn.tls { "https" } else { "http" }));
    }
}

// ---------------------------------------------------------------------------------------------
// Header-name folding (src/upstream/headers.rs)

static PROTECTED: LazyLock<Protected> = LazyLock::new(|| {
    Protected::configured(
        [HeaderName::from_static("x-tenant")].into_iter(),
        &["X-Internal-*".to_string(), "X-Debug".to_string()],
        &["X-Forwarded-Client-Cert".to_string()],
    )
});

/// Input: a flag byte (trusted peer), then header lines. After cleaning, no header folds to a
/// name tollgate sets or strips, canonical and forwarding names pass only in their exact
/// spelling (forwarding ones only from a trusted peer), and every unprotected header is kept.
pub fn header_names(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let trusted = flags & 1 != 0;
    let original = header_lines(rest);
    let mut h = original.clone();
    let upgrade = PROTECTED.clean_request(&mut h, trusted);
    let fold = headers::fold;
    let strip: Vec<&str> =
        headers::HOP_BY_HOP.iter().chain(headers::IDENTITY).copied().chain(["x-tenant", "x-debug"]).collect();
    let prefixes: Vec<String> =
        headers::FOREIGN.iter().filter_map(|f| f.strip_suffix('*')).chain(["x-internal-"]).map(fold).collect();
    let kept = "x-forwarded-client-cert";
    // Names the client listed in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
    let listed: Vec<String> = original
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let protected = |n: &str| -> bool {
        listed.iter().any(|l| l == n)
            || folds_to(n, &strip).is_some()
            || folds_to(n, headers::CANONICAL).is_some()
            || folds_to(n, headers::FORWARDING).is_some()
            || folds_to(n, headers::FOREIGN).is_some()
            || fold(n) == fold(kept)
            || prefixes.iter().any(|p| fold(n).starts_with(p.as_str()))
    };
    for n in h.keys().map(HeaderName::as_str) {
        assert!(folds_to(n, &strip).is_none(), "{n:?} got through");
        if let Some(c) = folds_to(n, headers::CANONICAL) {
            assert_eq!(n, c, "a second spelling of {c} got through");
        } else if let Some(f) = folds_to(n, headers::FORWARDING) {
            assert!(trusted && n == f, "{n:?} got through (trusted: {trusted})");
        } else if fold(n) == fold(kept) {
            assert_eq!(n, kept);
        } else {
            assert!(folds_to(n, headers::FOREIGN).is_none(), "{n:?} got through");
            assert!(!prefixes.iter().any(|p| fold(n).starts_with(p.as_str())), "{n:?} got through");
        }
    }
    for n in original.keys().map(HeaderName::as_str) {
        if !protected(n) {
            assert_eq!(
                h.get_all(n).iter().collect::<Vec<_>>(),
                original.get_all(n).iter().collect::<Vec<_>>(),
                "{n:?}"
            );
        }
    }
    if let Some(u) = upgrade {
        assert!(u.as_bytes().eq_ignore_ascii_case(b"websocket"), "{u:?}");
    }
    assert!(!h.contains_key("connection") && !h.contains_key("upgrade"));
    // A list header (groups) splits back into exactly its items.
    let items: Vec<&str> = original.iter().filter_map(|(_, v)| std::str::from_utf8(v.as_bytes()).ok()).collect();
    if !items.is_empty() {
        let encoded = headers::encode_list(&items);
        assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded:?}");
        let back: Vec<String> = encoded.split(',').map(|i| percent_decode_ref(i).expect("decodes")).collect();
        assert_eq!(back, items, "encode_list does not round-trip");
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration (src/config: TOML, `${VAR}` substitution, validation)

fn mentions_files(v: &toml::Value) -> bool {
    match v {
        toml::Value::Table(t) => t.iter().any(|(k, v)| k.contains("file") || mentions_files(v)),
        toml::Value::Array(a) => a.iter().any(mentions_files),
        _ => false,
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("example.com".into()),
        "EMPTY" => Some(String::new()),
        "PORT" => Some("8080".into()),
        "ISSUER_URL" => Some("https://idp.example.com".into()),
        "UPSTREAM_URL" => Some("http://127.0.0.1:9".into()),
        "SECRET" => Some("0123456789abcdef0123456789abcdef".into()),
        _ => None,
    }
}

/// Any text: a configuration or a list of errors, each naming what is wrong; never a panic.
/// What loads has normalised route paths. (Files are not read: inputs naming one are skipped,
/// since reading `/dev/zero` is the operator's choice, not an attack.)
pub fn config(text: &str) {
    if toml::from_str::<toml::Value>(text).is_ok_and(|t| mentions_files(&t)) {
        return;
    }
    match Config::from_str(text, Path::new("/nonexistent/tollgate-fuzz/t.toml"), &env) {
        Ok(c) => {
            for r in &c.routes {
                assert!(matches!(normalize_path(&r.path), Ok(Cow::Borrowed(_))), "route path {:?}", r.path);
            }
        }
        Err(e) => {
            assert!(!e.errors.is_empty(), "an error without errors");
            for err in &e.errors {
                assert!(!err.reason.is_empty(), "an error without a reason at {:?}", err.field);
            }
            let _ = e.to_string();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Provider documents: JWKS, discovery, token endpoint answers

const ALL_ALGS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

const RSA1_JWK: &str = include_str!("../../tests/idp/keys/rsa1.json");
const RSA1_PEM: &[u8] = include_bytes!("../../tests/idp/keys/rsa1.pem");
const RSA1_PUB_PEM: &[u8] = include_bytes!("../../tests/idp/keys/rsa1.pub.pem");
const RSA2_PEM: &[u8] = include_bytes!("../../tests/idp/keys/rsa2.pem");
const EC1_JWK: &str = include_str!("../../tests/idp/keys/ec1.json");
const EC1_PEM: &[u8] = include_bytes!("../../tests/idp/keys/ec1.pem");
const EC1_PUB_PEM: &[u8] = include_bytes!("../../tests/idp/keys/ec1.pub.pem");

fn strip_zeros(b: &[u8]) -> &[u8] {
    &b[b.iter().take_while(|&&x| x == 0).count()..]
}

/// `header.payload` and its RS256 signature by rsa1, made once.
static RSA1_SIGNED: LazyLock<(String, String)> = LazyLock::new(|| {
    let msg = "eyJhbGciOiJSUzI1NiJ9.e30".to_string();
    let sig =
        jsonwebtoken::crypto::sign(msg.as_bytes(), &EncodingKey::from_rsa_pem(RSA1_PEM).unwrap(), Algorithm::RS256)
            .unwrap();
    (msg, sig)
});

/// Any document: a key set or an error. A key found is pinned to algorithms of its type (never
/// HMAC), was not marked for encryption, and verifies rsa1's signature only if it is rsa1.
pub fn jwks(body: &[u8]) {
    let Ok(set) = KeySet::parse(body, &ALL_ALGS) else { return };
    let doc: Value = serde_json::from_slice(body).expect("a key set that parsed is JSON");
    let keys = doc["keys"].as_array().expect("a keys array");
    assert!(set.len() <= keys.len());
    let rsa1_n = URL_SAFE_NO_PAD
        .decode(serde_json::from_str::<Value>(RSA1_JWK).unwrap()["keys"][0]["n"].as_str().unwrap())
        .unwrap();
    for raw in keys {
        let Some(kid) = raw.get("kid").and_then(Value::as_str) else { continue };
        let unique = keys.iter().filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid)).count() == 1;
        for alg in ALL_ALGS.iter().chain(&HMAC).copied() {
            let Lookup::Found(key) = set.find(Some(kid), alg) else { continue };
            assert!(key.algorithms.contains(&alg) && !HMAC.contains(&alg), "{kid}: {alg:?}");
            if !unique {
                continue;
            }
            assert!(raw.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig"), "{kid}: not a signing key");
            let family: &[Algorithm] = match raw["kty"].as_str() {
                Some("RSA") => &ALL_ALGS[..6],
                Some("EC") if raw["crv"] == "P-256" => &[Algorithm::ES256],
                Some("EC") if raw["crv"] == "P-384" => &[Algorithm::ES384],
                Some("OKP") => &[Algorithm::EdDSA],
                other => panic!("{kid}: a {other:?} key was taken"),
            };
            assert!(family.contains(&alg), "{kid}: {alg:?} for a {:?} key", raw["kty"]);
            if let Some(pinned) = raw.get("alg").and_then(Value::as_str) {
                assert_eq!(Ok(alg), tollgate::config::parse_asymmetric_algorithm(pinned), "{kid}: pinned to {pinned}");
            }
            if alg == Algorithm::RS256 && key.verify(alg, RSA1_SIGNED.0.as_bytes(), &RSA1_SIGNED.1) {
                let n = URL_SAFE_NO_PAD.decode(raw["n"].as_str().unwrap_or("")).unwrap_or_default();
                assert_eq!(strip_zeros(&n), strip_zeros(&rsa1_n), "{kid}: verified rsa1's signature with another key");
            }
        }
    }
}

pub const ISSUER: &str = "https://idp.example.com";
const ENDPOINTS: [&str; 6] = [
    "jwks_uri",
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "introspection_endpoint",
    "end_session_endpoint",
];

fn loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Any document: metadata or an error. Accepted metadata names the configured issuer and only
/// https (or loopback) endpoints. Returns the accepted endpoints as written, for the fuzz
/// target's WHATWG cross-check.
pub fn discovery(body: &[u8]) -> Vec<(String, Uri)> {
    let mut accepted = Vec::new();
    for insecure in [false, true] {
        let url = "https://idp.example.com/.well-known/openid-configuration";
        let Ok(m) = tollgate::oidc::discovery::parse_metadata(body, url, ISSUER, insecure) else { continue };
        assert_eq!(m.issuer, ISSUER);
        // serde_json skips an unknown member without checking its escapes (a lone surrogate):
        // such a document is accepted, and cannot be read as a `Value`.
        let Ok(doc) = serde_json::from_slice::<Value>(body) else { continue };
        let got = [
            &m.jwks_uri,
            &m.authorization_endpoint,
            &m.token_endpoint,
            &m.userinfo_endpoint,
            &m.introspection_endpoint,
            &m.end_session_endpoint,
        ];
        for (field, uri) in ENDPOINTS.iter().zip(got) {
            let Some(uri) = uri else {
                assert!(doc.get(field).is_none_or(Value::is_null), "{field} dropped");
                continue;
            };
            let host = uri.host().expect("an endpoint has a host");
            match uri.scheme_str() {
                Some("https") => {}
                Some("http") => assert!(insecure || loopback(host), "{field}: plain http to {host}"),
                other => panic!("{field}: scheme {other:?}"),
            }
            if !insecure {
                accepted.push((doc[field].as_str().unwrap().to_string(), uri.clone()));
            }
        }
    }
    accepted
}

const STATUSES: [u16; 9] = [200, 201, 204, 299, 302, 400, 401, 500, 503];

/// Input: a status selector byte, then the body. A success is a non-empty Bearer token; any
/// other status is the provider's refusal with that status; tokens never reach `Debug`.
pub fn token_response(data: &[u8]) {
    let Some((&s, body)) = data.split_first() else { return };
    let status = StatusCode::from_u16(STATUSES[usize::from(s) % STATUSES.len()]).unwrap();
    use tollgate::oidc::token_client::{parse_response, TokenError};
    match parse_response(status, body) {
        Ok(r) => {
            assert!(status.is_success());
            assert!(!r.access_token.is_empty());
            assert!(r.token_type.is_empty() || r.token_type.eq_ignore_ascii_case("bearer"), "{:?}", r.token_type);
            let shown = format!("{r:?}");
            let visible = |t: &str| r.token_type.contains(t) || r.scope.as_deref().is_some_and(|s| s.contains(t));
            for secret in [Some(&r.access_token), r.refresh_token.as_ref(), r.id_token.as_ref()].into_iter().flatten() {
                if secret.len() >= 8
                    && !visible(secret)
                    && !"TokenResponse token_type expires_in scope refresh_token [redacted] Some None"
                        .contains(secret.as_str())
                {
                    assert!(!shown.contains(secret.as_str()), "a token in Debug: {shown}");
                }
            }
        }
        Err(TokenError::Refused { status: got, .. }) => {
            assert!(!status.is_success());
            assert_eq!(got, status);
        }
        Err(TokenError::Invalid(_)) => assert!(status.is_success()),
        Err(e) => panic!("{e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// JWT validation against a fixed key set (src/auth/jwt.rs, claims.rs, jwks.rs)

pub struct JwtFixture {
    pub issuer: Issuer,
    pub keys: KeySet,
    rsa1: EncodingKey,
    rsa2: EncodingKey,
    ec1: EncodingKey,
    rsa1_pub: DecodingKey,
    ec1_pub: DecodingKey,
}

fn public_jwk(doc: &str, kid: &str) -> Value {
    let mut k = serde_json::from_str::<Value>(doc).unwrap()["keys"][0].clone();
    let o = k.as_object_mut().unwrap();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        o.remove(private);
    }
    o.insert("kid".into(), kid.into());
    o.remove("alg");
    k
}

pub static JWT: LazyLock<JwtFixture> = LazyLock::new(|| {
    let toml = format!(
        "[[issuer]]\nname = \"idp\"\nurl = \"{ISSUER}\"\naudiences = [\"api\"]\nleeway = \"30s\"\n\
         algorithms = [\"RS256\", \"PS256\", \"ES256\"]\n\n\
         [[route]]\nauth = \"bearer\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n"
    );
    let config = Config::from_str(&toml, Path::new("fuzz.toml"), &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let issuer = config.issuers[0].clone();
    let doc = json!({"keys": [public_jwk(RSA1_JWK, "rsa1"), public_jwk(EC1_JWK, "ec1")]});
    let keys = KeySet::parse(doc.to_string().as_bytes(), &issuer.algorithms).unwrap();
    assert_eq!(keys.len(), 2);
    JwtFixture {
        issuer,
        keys,
        rsa1: EncodingKey::from_rsa_pem(RSA1_PEM).unwrap(),
        rsa2: EncodingKey::from_rsa_pem(RSA2_PEM).unwrap(),
        ec1: EncodingKey::from_ec_pem(EC1_PEM).unwrap(),
        rsa1_pub: DecodingKey::from_rsa_pem(RSA1_PUB_PEM).unwrap(),
        ec1_pub: DecodingKey::from_ec_pem(EC1_PUB_PEM).unwrap(),
    }
});

/// The bearer path's JWT checks, in the order `Authenticator::verify_jwt` runs them, at [`NOW`].
pub fn validate(fx: &JwtFixture, token: &str) -> Result<u64, Invalid> {
    let parsed = jwt::parse(token)?;
    if parsed.issuer()? != fx.issuer.url {
        return Err(Invalid::UnknownIssuer);
    }
    if token.len() > fx.issuer.max_token_bytes {
        return Err(Invalid::TooLarge);
    }
    let key = match fx.keys.find(parsed.kid.as_deref(), parsed.alg) {
        Lookup::Found(k) => k,
        Lookup::UnknownKid => return Err(Invalid::UnknownKid),
        Lookup::AlgorithmMismatch => return Err(Invalid::AlgorithmMismatch),
    };
    parsed.verify_signature(&key)?;
    parsed.check_claims(&fx.issuer, NOW)
}

/// Any token: accepted only when jsonwebtoken (another code path: PEM keys, its own base64 and
/// crypto calls) verifies its signature with one of the set's keys, and its claims say our
/// issuer, our audience and a live `exp`.
pub fn jwt_raw(token: &str) {
    let fx = &*JWT;
    let parsed = jwt::parse(token);
    if parsed.is_ok() {
        assert!(jwt::looks_like_jws(token));
    }
    let Ok(exp) = validate(fx, token) else { return };
    let parsed = parsed.unwrap();
    let (message, signature) = token.rsplit_once('.').unwrap();
    let key = match parsed.alg {
        Algorithm::ES256 => &fx.ec1_pub,
        _ => &fx.rsa1_pub,
    };
    assert!(
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, parsed.alg).unwrap_or(false),
        "accepted a token whose signature jsonwebtoken refuses: {token}"
    );
    let c = &parsed.claims;
    assert_eq!(c["iss"], ISSUER);
    let aud_ok = c["aud"] == "api" || c["aud"].as_array().is_some_and(|a| a.iter().any(|x| x == "api"));
    assert!(aud_ok, "audience {:?}", c["aud"]);
    assert!(NOW < exp + 30 && c["exp"].as_f64().is_some_and(|e| e >= exp as f64), "exp {:?}", c["exp"]);
}

/// The claims a valid token carries at [`NOW`].
pub fn good_claims() -> Value {
    json!({"iss": ISSUER, "aud": "api", "sub": "alice", "exp": NOW + 600, "iat": NOW - 5})
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Input: an op byte, a position (2 bytes), an xor byte, then header members and claims (JSON
/// objects separated by a NUL; claims default to [`good_claims`]). The token is signed with
/// the set's own key (or, by the op, with a key not in the set), then changed. A token with
/// good claims, no header surprises and the right key validates; a changed token, or one
/// signed by another key, never does.
pub fn jwt_signed(data: &[u8]) {
    let [op, p0, p1, xor, rest @ ..] = data else { return };
    let fx = &*JWT;
    let (extra, claims) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };
    let extra = serde_json::from_slice::<Value>(extra).ok().filter(Value::is_object);
    let claims_given = serde_json::from_slice::<Value>(claims).ok().filter(Value::is_object);
    // RSA signing costs a millisecond: one input in eight.
    let (alg, kid, key) = match op & 7 {
        0 => (Algorithm::RS256, "rsa1", &fx.rsa1),
        1 => (Algorithm::PS256, "rsa1", &fx.rsa1),
        _ => (Algorithm::ES256, "ec1", &fx.ec1),
    };
    let foreign = op & 8 != 0 && alg != Algorithm::ES256;
    let key = if foreign { &fx.rsa2 } else { key };
    let mut header = json!({"alg": format!("{alg:?}"), "kid": kid});
    if let Some(Value::Object(extra)) = &extra {
        header.as_object_mut().unwrap().extend(extra.clone());
    }
    let plain = extra.is_none() && claims_given.is_none();
    let claims = claims_given.unwrap_or_else(good_claims);
    let message = format!("{}.{}", b64json(&header), b64json(&claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    let token = format!("{message}.{signature}");
    let result = validate(fx, &token);
    if foreign {
        assert!(result.is_err(), "a token signed by another key validated");
    } else if plain {
        assert_eq!(result, Ok(NOW + 600), "a good token was refused");
    }
    if result.is_ok() {
        assert_eq!(header["alg"], format!("{alg:?}"), "validated under another alg");
    }
    let mut bytes = token.clone().into_bytes();
    let at = usize::from(u16::from_le_bytes([*p0, *p1])) % bytes.len();
    match op >> 4 & 3 {
        0 => bytes[at] ^= (*xor).max(1),
        1 => bytes.truncate(at),
        2 => bytes.insert(at, *xor),
        _ => {
            bytes.remove(at);
        }
    }
    let Ok(tampered) = String::from_utf8(bytes) else { return };
    if tampered != token {
        assert!(validate(fx, &tampered).is_err(), "a changed token validated: {token} -> {tampered}");
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by the targets below

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().try_into().unwrap()
}

/// A mutation of `bytes` chosen by `mode` (0..4) at `at`: flip bits, truncate, insert, remove.
fn mutate(bytes: &mut Vec<u8>, mode: u8, at: usize, xor: u8) {
    if bytes.is_empty() {
        return;
    }
    let at = at % bytes.len();
    match mode & 3 {
        0 => bytes[at] ^= xor.max(1),
        1 => bytes.truncate(at),
        2 => bytes.insert(at, xor),
        _ => {
            bytes.remove(at);
        }
    }
}

/// Polls a future that never waits (its I/O is in memory) to its end.
fn run_now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("an in-memory read waited"),
    }
}

// ---------------------------------------------------------------------------------------------
// DPoP proofs (src/auth/dpop/mod.rs)

const DPOP_TOKEN: &str = "dpop-bound-access-token";
const DPOP_HTU: &str = "https://api.example.com/r/x";

/// ec1's public members, as base64url strings.
static EC1_XY: LazyLock<(String, String, String)> = LazyLock::new(|| {
    let k = &serde_json::from_str::<Value>(EC1_JWK).unwrap()["keys"][0];
    let s = |m: &str| k[m].as_str().unwrap().to_string();
    (s("x"), s("y"), s("d"))
});

/// RFC 7638 §3.2 input of a public JWK, written from its members by this model.
fn thumbprint_input(jwk: &Value) -> Option<String> {
    let m = |name: &str| jwk.get(name).and_then(Value::as_str);
    Some(match m("kty")? {
        "EC" => format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, m("crv")?, m("x")?, m("y")?),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, m("e")?, m("n")?),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, m("crv")?, m("x")?),
        _ => return None,
    })
}

/// `https://api.example.com/r/x` as RFC 3986 §6.2.2-3 compares it (checked by this model, not
/// the gateway's normaliser): scheme and host in any case, port 443 or none, the path once
/// percent-decoded; query and fragment ignored.
fn htu_is_the_request(htu: &str) -> bool {
    let htu = htu.split(['?', '#']).next().unwrap_or("");
    let Some((scheme, rest)) = htu.split_once("://") else { return false };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (authority, ""),
    };
    let port_ok = port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>() == Ok(443));
    scheme.eq_ignore_ascii_case("https")
        && host.eq_ignore_ascii_case("api.example.com")
        && port_ok
        && percent_decode_ref(path).as_deref() == Some("/r/x")
}

/// Checks an accepted proof against what it says: every claim the check read is the
/// request's, the header is a DPoP one with an embedded public key only, the signature
/// verifies under that key with jsonwebtoken (another code path), and the thumbprint is
/// RFC 7638's of that key.
fn dpop_accepted(proof: &str, jkt: &str) {
    let proof = proof.trim_matches(' ');
    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3, "{proof:?}: not a compact JWS");
    let json = |p: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).ok();
    // serde skips an unknown member without checking its escapes: such a part is not a `Value`.
    let (Some(header), Some(claims)) = (json(parts[0]), json(parts[1])) else { return };
    let typ = header["typ"].as_str().unwrap_or("");
    assert!(typ.eq_ignore_ascii_case("dpop+jwt") || typ.eq_ignore_ascii_case("application/dpop+jwt"), "typ {typ:?}");
    for forbidden in ["crit", "jku", "x5u", "x5c", "kid"] {
        assert!(header.get(forbidden).is_none(), "{forbidden} in an accepted proof");
    }
    let alg = match header["alg"].as_str() {
        Some("ES256") => Algorithm::ES256,
        Some("RS256") => Algorithm::RS256,
        Some("PS256") => Algorithm::PS256,
        Some("EdDSA") => Algorithm::EdDSA,
        other => panic!("alg {other:?} accepted"),
    };
    let jwk = &header["jwk"];
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(jwk.get(private).is_none(), "a jwk with {private:?} accepted");
    }
    // jsonwebtoken reads `alg`, `use` and `key_ops` of a JWK too: give it the key alone.
    let members: serde_json::Map<String, Value> = ["kty", "crv", "x", "y", "n", "e"]
        .iter()
        .filter_map(|m| jwk.get(*m).map(|v| (m.to_string(), v.clone())))
        .collect();
    let key: jsonwebtoken::jwk::Jwk = serde_json::from_value(Value::Object(members)).expect("the jwk is a JWK");
    let key = DecodingKey::from_jwk(&key).expect("the jwk is a key");
    let message = format!("{}.{}", parts[0], parts[1]);
    assert!(
        jsonwebtoken::crypto::verify(parts[2], message.as_bytes(), &key, alg).unwrap_or(false),
        "a proof whose signature does not verify under its own key was accepted"
    );
    let canonical = thumbprint_input(jwk).expect("a thumbprint input");
    assert_eq!(jkt, URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes())), "not the RFC 7638 thumbprint");
    assert_eq!(tollgate::auth::dpop::thumbprint(jwk, alg).as_deref(), Some(jkt));
    assert_eq!(claims["htm"], "POST", "htm");
    assert!(claims["htu"].as_str().is_some_and(htu_is_the_request), "htu {:?}", claims["htu"]);
    assert_eq!(claims["ath"], URL_SAFE_NO_PAD.encode(sha256(DPOP_TOKEN.as_bytes())), "ath");
    let iat = claims["iat"].as_f64().expect("a numeric iat");
    assert!(iat <= (NOW + 5) as f64 && iat.ceil() + 60.0 >= NOW as f64, "iat {iat}");
    let jti = claims["jti"].as_str().expect("a jti");
    assert!(!jti.is_empty() && jti.len() <= 256, "jti of {} bytes", jti.len());
}

fn dpop_check(proof: &[u8]) -> Option<Result<tollgate::auth::dpop::Checked, tollgate::auth::dpop::ProofError>> {
    use tollgate::auth::dpop::{check_proof, Origin, Request, DPOP};
    let mut headers = HeaderMap::new();
    headers.insert(DPOP.clone(), HeaderValue::from_bytes(proof).ok()?);
    let origin = Origin { tls: true, trusted_proxy: false, authority: "api.example.com" };
    let cert = tollgate::client_cert::Presented::NONE;
    let req = Request { headers: &headers, method: &http::Method::POST, path: "/r/x", origin, cert };
    let settings = tollgate::config::dpop::Dpop::default();
    let result = check_proof(&settings, &req, DPOP_TOKEN, NOW);
    if let Ok(c) = &result {
        dpop_accepted(std::str::from_utf8(proof).unwrap(), &c.jkt);
    }
    Some(result)
}

/// Input: an op byte, a position (2 bytes), an xor byte, then header members and claims (JSON
/// objects separated by a NUL), or (op bit 0) the whole `DPoP` header as sent. A proof signed by
/// ec1 for this request, its jwk members in any order and spacing, is accepted with the RFC 7638
/// thumbprint; with a private jwk, an HMAC or `none` alg it never is; changed in any byte it is
/// accepted only when what it says still holds (see [`dpop_accepted`]).
pub fn dpop_proof(data: &[u8]) {
    let [op, p0, p1, xor, rest @ ..] = data else { return };
    if op & 1 == 1 {
        dpop_check(rest);
        return;
    }
    let (x, y, d) = &*EC1_XY;
    let (extra, claims_extra) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };
    let extra = serde_json::from_slice::<Value>(extra).ok().filter(Value::is_object);
    let claims_extra = serde_json::from_slice::<Value>(claims_extra).ok().filter(Value::is_object);
    let variant = op >> 5;
    // The jwk's members in one of six orders, with or without spaces.
    let mut members = vec![
        r#""kty":"EC""#.to_string(),
        r#""crv":"P-256""#.to_string(),
        format!(r#""x":"{x}""#),
        format!(r#""y":"{y}""#),
    ];
    members.rotate_left(usize::from(*p0 % 4));
    if p1 & 1 == 1 {
        members.swap(0, 1);
    }
    match variant {
        4 => members.push(format!(r#""d":"{d}""#)),
        7 => members = vec![r#""kty":"oct""#.into(), r#""k":"c2VjcmV0""#.into()],
        _ => {}
    }
    let sep = if op & 2 == 2 { ", " } else { "," };
    let alg = match variant {
        5 => "HS256",
        6 => "none",
        _ => "ES256",
    };
    let jwk = format!("{{{}}}", members.join(sep));
    let mut header = format!(r#"{{"typ":"dpop+jwt"{sep}"alg":"{alg}","jwk":{jwk}}}"#);
    if let Some(Value::Object(extra)) = &extra {
        let mut h: Value = serde_json::from_str(&header).unwrap();
        h.as_object_mut().unwrap().extend(extra.clone());
        header = h.to_string();
    }
    let mut claims = json!({
        "jti": format!("j{}", u16::from_le_bytes([*p0, *p1])),
        "htm": "POST",
        "htu": DPOP_HTU,
        "iat": NOW - u64::from(*xor % 8),
        "ath": URL_SAFE_NO_PAD.encode(sha256(DPOP_TOKEN.as_bytes())),
    });
    if let Some(Value::Object(more)) = &claims_extra {
        claims.as_object_mut().unwrap().extend(more.clone());
    }
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(&header), b64json(&claims));
    let signature = if alg == "none" {
        String::new()
    } else {
        jsonwebtoken::crypto::sign(message.as_bytes(), &JWT.ec1, Algorithm::ES256).unwrap()
    };
    let proof = format!("{message}.{signature}");
    let result = dpop_check(proof.as_bytes()).expect("a proof is a header value");
    let plain = extra.is_none() && claims_extra.is_none();
    match variant {
        4..=7 => assert!(result.is_err(), "variant {variant}: a private, symmetric or unsigned proof was accepted"),
        _ if plain => {
            let want = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            let got = result.unwrap_or_else(|e| panic!("a good proof was refused: {e:?}"));
            assert_eq!(
                got.jkt,
                URL_SAFE_NO_PAD.encode(sha256(want.as_bytes())),
                "thumbprint depends on the jwk's form"
            );
        }
        _ => {}
    }
    let mut bytes = proof.into_bytes();
    mutate(&mut bytes, op >> 2, usize::from(u16::from_le_bytes([*p0, *p1])), *xor);
    dpop_check(&bytes);
}

// ---------------------------------------------------------------------------------------------
// Client certificate headers (src/client_cert/header.rs)

/// A PEM certificate block of `der` (the parser does not look inside the DER), its base64 in
/// 64-column lines.
fn pem_block(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

/// URL-encoded as nginx's `$ssl_client_escaped_cert` does (`+` and `/` kept when `keep`).
fn url_encode(s: &str, keep: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep && b"+/=".contains(&b)) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A lenient percent-decoder (bad escapes kept as they are), for the oracle.
fn percent_decode_lossy(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex =
            s.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (s[i], hex) {
            (b'%', Some(v)) if s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit() => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The label of a `-----BEGIN LABEL-----` line as RFC 7468 parsers read it (rustls-pki-types
/// also skips spaces among the five closing dashes).
fn pem_label(line: &[u8]) -> &[u8] {
    let tail = line.iter().rev().take_while(|b| b"- \r\n".contains(b)).count();
    &line[11.min(line.len() - tail)..line.len() - tail]
}

/// The certificate blocks of a decoded PEM text, read by this model: each `-----BEGIN ` line
/// counted, the base64 of CERTIFICATE blocks decoded (whitespace, vertical tab too, ignored; trailing bits and
/// padding as lenient as the PEM reader is).
fn pem_model(text: &[u8]) -> (usize, Vec<Vec<u8>>) {
    use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
    let lenient = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut begins = 0;
    let mut certs = Vec::new();
    let mut body: Option<Vec<u8>> = None;
    for line in text.split(|&b| b == b'\n' || b == b'\r') {
        if line.starts_with(b"-----BEGIN ") {
            begins += 1;
            body = (pem_label(line) == b"CERTIFICATE").then(Vec::new);
        } else if line.starts_with(b"-----END CERTIFICATE-----") {
            if let Some(b) = body.take() {
                let b64: Vec<u8> = b.into_iter().filter(|c| !b" \t\n\r\x0b\x0c".contains(c)).collect();
                let no_pad: Vec<u8> = b64.iter().copied().filter(|&c| c != b'=').collect();
                if let Ok(der) = lenient.decode(&no_pad) {
                    certs.push(der);
                }
            }
        } else if let Some(b) = &mut body {
            b.extend_from_slice(line);
        }
    }
    (begins, certs)
}

/// An accepted PEM header value holds exactly one PEM block, a certificate whose DER hashes to
/// the thumbprint.
fn pem_accepted(value: &[u8], t: tollgate::client_cert::Thumbprint) {
    let (begins, certs) = pem_model(&percent_decode_lossy(value.trim_ascii()));
    let shown = String::from_utf8_lossy(value);
    assert_eq!(begins, 1, "{shown:?}: {begins} PEM blocks in an accepted header");
    assert_eq!(certs.len(), 1, "{shown:?}");
    assert_eq!(
        t.to_base64url(),
        URL_SAFE_NO_PAD.encode(sha256(&certs[0])),
        "{shown:?}: the thumbprint is not the DER's"
    );
}

/// An accepted XFCC value names its thumbprint: as hex (a `Hash`), or as a certificate (a
/// `Cert`) whose DER hashes to it.
fn xfcc_accepted(value: &[u8], t: tollgate::client_cert::Thumbprint) {
    let want = URL_SAFE_NO_PAD.decode(t.to_base64url()).unwrap();
    let lower = value.to_ascii_lowercase();
    let hex = hex_lower(&want);
    if lower.windows(64).any(|w| w == hex.as_bytes()) {
        return;
    }
    // Each `Key=Value` (a URL-encoded PEM has no raw `;` or `,`), unquoted, then decoded.
    let unquoted: Vec<u8> = value.iter().copied().filter(|&b| b != b'\\' && b != b'"').collect();
    let certs: Vec<Vec<u8>> = unquoted
        .split(|&b| b == b';' || b == b',')
        .filter_map(|pair| pair.iter().position(|&b| b == b'=').map(|i| &pair[i + 1..]))
        // The reader trims blanks around a value (` -----BEGIN`), as around the whole header.
        .flat_map(|v| pem_model(&percent_decode_lossy(v.trim_ascii())).1)
        .collect();
    assert!(
        certs.iter().any(|c| sha256(c) == want[..]),
        "{:?}: the thumbprint is neither a Hash nor a Cert of the header",
        String::from_utf8_lossy(value)
    );
}

/// Input: an op byte, then (op bit 0) a header value as sent, or pieces of one XFCC element
/// list and PEM value built from two certificates A and B. Accepted XFCC names its first
/// element's `Hash` or `Cert`; a first element naming two certificates, or one twice, is
/// refused; a PEM value is exactly one certificate.
pub fn client_cert_header(data: &[u8]) {
    use tollgate::client_cert::header::{pem, xfcc};
    use tollgate::client_cert::Thumbprint;
    let Some((&op, rest)) = data.split_first() else { return };
    let check = |value: &[u8]| {
        if let Ok(Some(t)) = pem(value) {
            pem_accepted(value, t);
        }
        if let Ok(v) = HeaderValue::from_bytes(value) {
            if let Ok(Some(t)) = xfcc(std::iter::once(&v)) {
                xfcc_accepted(value, t);
            }
        }
    };
    if op & 1 == 1 {
        check(rest);
        return;
    }
    // Two certificates (DER need not be valid: the parsers hash it), then the pieces of the
    // first element, one byte each: which piece.
    let (a, b) = (b"certificate A DER".to_vec(), [b"certificate B DER ".as_slice(), rest].concat());
    let (ta, tb) = (Thumbprint::of_der(&a), Thumbprint::of_der(&b));
    let keep = op & 2 == 2;
    let cert_value = |der: &[u8], quoted: bool| {
        // `+`, `/` and `=` may stand as they are only inside quotes.
        let v = url_encode(&pem_block(der), keep && quoted);
        if quoted {
            format!("\"{v}\"")
        } else {
            v
        }
    };
    let mut pairs = Vec::new();
    let (mut hashes, mut certs) = (Vec::new(), Vec::new());
    for &piece in rest.iter().take(6) {
        let (name, value) = match piece % 8 {
            0 => ("Hash", hex_lower(&sha256(&a))),
            1 => ("hash", hex_lower(&sha256(&b)).to_uppercase()),
            2 => ("Cert", cert_value(&a, piece & 8 != 0)),
            3 => ("CERT", cert_value(&b, piece & 8 != 0)),
            4 => ("By", "spiffe://proxy.example/x".into()),
            5 => ("Subject", "\"/C=US/CN=a,b;c=d \\\"q\\\"\"".into()),
            6 => ("URI", "spiffe://client.example/y".into()),
            _ => ("DNS", "client.example".into()),
        };
        match piece % 8 {
            0 => hashes.push(ta),
            1 => hashes.push(tb),
            2 => certs.push(ta),
            3 => certs.push(tb),
            _ => {}
        }
        pairs.push(format!("{name}={value}"));
    }
    let first = pairs.join(";");
    let later = if op & 4 == 4 { format!(",By=x;Hash={}", hex_lower(&sha256(b"another"))) } else { String::new() };
    let value = format!("{first}{later}");
    let expected = match (hashes.as_slice(), certs.as_slice()) {
        ([h], [c]) if h != c => None,
        ([t], []) | ([], [t]) | ([t], [_]) => Some(*t),
        _ => None,
    };
    let v = HeaderValue::from_str(&value).unwrap();
    let got = xfcc(std::iter::once(&v));
    assert_eq!(got.ok().flatten(), expected, "{value:?}");
    // A PEM value: A alone is A; A and B, or B twice, never.
    let two = op & 8 == 8;
    let pem_value = if two { url_encode(&(pem_block(&a) + &pem_block(&b)), keep) } else { cert_value(&a, false) };
    let got = pem(pem_value.as_bytes());
    assert_eq!(got.ok().flatten(), (!two).then_some(ta), "{pem_value:?}");
    // Changed anywhere, either is accepted only for what it still says.
    for mut bytes in [value.into_bytes(), pem_value.into_bytes()] {
        mutate(&mut bytes, op >> 4, usize::from(rest.first().copied().unwrap_or(0)) * 37, op);
        check(&bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// W3C Trace Context (src/telemetry/traceparent.rs)

/// A valid `traceparent` as this model reads the W3C text: version 00, lower-case hex ids not
/// all zero, two hex digits of flags.
fn traceparent_model(v: &[u8]) -> bool {
    let lhex = |s: &[u8]| s.iter().all(|&c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    let parts: Vec<&[u8]> = v.split(|&b| b == b'-').collect();
    matches!(parts.as_slice(), [ver, t, s, f]
        if *ver == b"00" && t.len() == 32 && s.len() == 16 && f.len() == 2
            && lhex(t) && lhex(s) && lhex(f)
            && t.iter().any(|&c| c != b'0') && s.iter().any(|&c| c != b'0'))
}

/// The members of a `tracestate` that this model finds valid (W3C §3.3), or `None`.
fn tracestate_model(joined: &str) -> Option<Vec<(String, String)>> {
    if joined.is_empty() || joined.len() > 512 {
        return None;
    }
    let key_part = |p: &str, digit_first: bool, max: usize| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.len() <= max
            && (b[0].is_ascii_lowercase() || (digit_first && b[0].is_ascii_digit()))
            && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(&c))
    };
    let mut out = Vec::new();
    for m in joined.split(',') {
        let m = m.trim_matches([' ', '\t']);
        if m.is_empty() {
            continue;
        }
        let (k, v) = m.split_once('=')?;
        let key_ok = match k.split_once('@') {
            None => key_part(k, false, 256),
            // 13, not the W3C text's 14: opentelemetry's limit, which src/telemetry/traceparent.rs keeps.
            Some((t, s)) => key_part(t, true, 241) && key_part(s, false, 13),
        };
        let value_ok = !v.is_empty()
            && v.len() <= 256
            && !v.ends_with(' ')
            && v.bytes().all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=');
        if !key_ok || !value_ok {
            return None;
        }
        out.push((k.to_string(), v.to_string()));
    }
    (out.len() <= 32).then_some(out)
}

/// Input: header lines (`traceparent`, `tracestate`, others). A parent is taken exactly when
/// there is one `traceparent` that the W3C model accepts, and it re-formats to that value (the
/// sampled flag kept); a `tracestate` is kept exactly when it is within the W3C limits.
pub fn traceparent(data: &[u8]) {
    use tollgate::telemetry::traceparent::{extract, header, TRACEPARENT, TRACESTATE};
    let headers = header_lines(data);
    let parents: Vec<&HeaderValue> = headers.get_all(&TRACEPARENT).iter().collect();
    let got = extract(&headers);
    let one_valid = matches!(parents.as_slice(), [v] if traceparent_model(v.as_bytes()));
    assert_eq!(got.is_some(), one_valid, "{parents:?}: parent taken: {}", got.is_some());
    let Some((cx, valid)) = got else { return };
    let sent = parents[0].as_bytes();
    let written = header(&cx);
    let flags = u8::from_str_radix(std::str::from_utf8(&sent[53..]).unwrap(), 16).unwrap();
    assert_eq!(&written.as_bytes()[..53], &sent[..53], "re-formatted differently");
    assert_eq!(&written.as_bytes()[53..], format!("{:02x}", flags & 1).as_bytes());
    assert!(cx.is_remote());
    let states: Vec<&str> = headers.get_all(&TRACESTATE).iter().filter_map(|v| v.to_str().ok()).collect();
    let all_text = states.len() == headers.get_all(&TRACESTATE).iter().count();
    let model = all_text.then(|| tracestate_model(&states.join(","))).flatten();
    let kept = cx.trace_state().header();
    if valid {
        let members = model.unwrap_or_else(|| panic!("{states:?} kept, outside the W3C limits"));
        let want: Vec<String> = members.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(kept, want.join(","), "tracestate changed");
    } else {
        assert_eq!(kept, "", "an invalid tracestate was passed on");
        if let Some(m) = model {
            // Only a repeated key (which the W3C text forbids) may make a model-valid list invalid.
            let mut keys: Vec<&String> = m.iter().map(|(k, _)| k).collect();
            keys.sort();
            keys.dedup();
            assert!(m.is_empty() || keys.len() < m.len(), "{states:?} is valid but was dropped");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC deadlines (src/upstream/grpc.rs)

/// Any `grpc-timeout` value: a deadline exactly when it is 1 to 8 ASCII digits and one of
/// `HMSmun`, equal to the value times the unit (computed here in u128 nanoseconds, so an
/// overflow would show).
pub fn grpc_timeout(value: &[u8]) {
    let Ok(v) = HeaderValue::from_bytes(value) else { return };
    let mut h = HeaderMap::new();
    h.insert("grpc-timeout", v);
    let got = tollgate::upstream::grpc::timeout(&h);
    let want = value.split_last().and_then(|(&unit, digits)| {
        let ns: u128 = match unit {
            b'H' => 3_600_000_000_000,
            b'M' => 60_000_000_000,
            b'S' => 1_000_000_000,
            b'm' => 1_000_000,
            b'u' => 1_000,
            b'n' => 1,
            _ => return None,
        };
        let ok = (1..=8).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit);
        ok.then(|| std::str::from_utf8(digits).unwrap().parse::<u128>().unwrap() * ns)
    });
    assert_eq!(got.map(|d| d.as_nanos()), want, "{:?}", String::from_utf8_lossy(value));
}

// ---------------------------------------------------------------------------------------------
// Redis replies and URLs (src/store/conn.rs, src/store/url.rs)

/// The reply parser's bounds (src/store/conn.rs).
const RESP_MAX_LINE: usize = 64 * 1024;
const RESP_MAX_BULK: i64 = 16 << 20;
const RESP_MAX_ARRAY: i64 = 100_000;
const RESP_MAX_DEPTH: usize = 4;

type RespResult = Result<Result<tollgate::store::conn::Reply, String>, ()>;

/// A reference RESP2 reader over a slice: the same bounds, no buffering. Also records the
/// largest bulk value it made room for.
struct RespModel<'a> {
    s: &'a [u8],
    largest_bulk: usize,
}

impl RespModel<'_> {
    fn line(&mut self) -> Result<&str, ()> {
        let window = &self.s[..self.s.len().min(RESP_MAX_LINE)];
        let end = window.iter().position(|&b| b == b'\n').ok_or(())?;
        let (line, rest) = self.s.split_at(end + 1);
        self.s = rest;
        let line = std::str::from_utf8(line).map_err(|_| ())?;
        line.strip_suffix("\r\n").ok_or(())
    }

    fn reply(&mut self, depth: usize) -> RespResult {
        use tollgate::store::conn::Reply;
        if depth > RESP_MAX_DEPTH {
            return Err(());
        }
        let line = self.line()?;
        // A line that starts with a multi-byte character is of no known type.
        let Some(kind) = line.bytes().next().filter(u8::is_ascii) else { return Err(()) };
        let rest = &line[1..];
        let length = |s: &str| s.parse::<i64>().map_err(|_| ());
        Ok(match kind {
            b'+' => Ok(if rest == "OK" { Reply::Ok } else { Reply::Bytes(rest.as_bytes().to_vec()) }),
            b'-' => Err(rest.to_string()),
            b':' => Ok(Reply::Int(rest.parse().map_err(|_| ())?)),
            b'$' => match length(rest)? {
                n if n < 0 => Ok(Reply::Nil),
                n if n > RESP_MAX_BULK => return Err(()),
                n => {
                    let n = n as usize;
                    self.largest_bulk = self.largest_bulk.max(n + 2);
                    if self.s.len() < n + 2 || &self.s[n..n + 2] != b"\r\n" {
                        return Err(());
                    }
                    let v = self.s[..n].to_vec();
                    self.s = &self.s[n + 2..];
                    Ok(Reply::Bytes(v))
                }
            },
            b'*' => match length(rest)? {
                n if n < 0 => Ok(Reply::Nil),
                n if n > RESP_MAX_ARRAY => return Err(()),
                n => {
                    let (mut items, mut refused) = (Vec::new(), None);
                    for _ in 0..n {
                        match self.reply(depth + 1)? {
                            Ok(r) => items.push(r),
                            Err(e) => refused = refused.or(Some(e)),
                        }
                    }
                    match refused {
                        Some(e) => Err(e),
                        None => Ok(Reply::Array(items)),
                    }
                }
            },
            _ => return Err(()),
        })
    }
}

/// `f`'s result and the most heap it held at once, where it is counted: in the fuzz targets (a
/// counting allocator, `fuzz/src/lib.rs`); the stable suite forbids the `unsafe` that takes.
#[allow(unexpected_cfgs)]
#[cfg(fuzzing)]
use crate::heap::peak_of;

#[allow(unexpected_cfgs)]
#[cfg(not(fuzzing))]
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    (f(), 0)
}

/// Any bytes from a server: the reply the reference reader reads (a value, the server's
/// error, or a protocol error), never a panic; and the heap held while reading is bounded by
/// the largest bulk value the input claims (at most 16 MiB) plus a constant and a linear
/// share of the input, whatever lengths it claims.
pub fn redis_reply(data: &[u8]) {
    let bytes = data.to_vec();
    let (got, peak) = peak_of(|| run_now(tollgate::store::conn::read_reply_from(bytes)).map_err(|_| ()));
    let mut model = RespModel { s: data, largest_bulk: 0 };
    let want = model.reply(0);
    assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&data[..data.len().min(200)]));
    let bound = model.largest_bulk + (1 << 20) + 64 * data.len();
    assert!(peak <= bound, "{peak} bytes held reading {} bytes (bound {bound})", data.len());
}

/// A URL that reads as `u`, written plainly: every byte of a secret percent-encoded.
fn redis_canonical(u: &tollgate::store::url::RedisUrl) -> String {
    use tollgate::store::url::{Credentials, Target};
    let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let userinfo = |c: &Option<Credentials>| match c {
        Some(c) => format!("{}:{}@", c.username.as_deref().map(enc).unwrap_or_default(), enc(&c.password)),
        None => String::new(),
    };
    let scheme = match (&u.target, u.tls) {
        (Target::Direct(_), false) => "redis",
        (Target::Direct(_), true) => "rediss",
        (Target::Sentinel { .. }, false) => "redis+sentinel",
        (Target::Sentinel { .. }, true) => "rediss+sentinel",
    };
    match &u.target {
        Target::Direct(ep) => format!("{scheme}://{}{ep}/{}", userinfo(&u.auth), u.db),
        Target::Sentinel { sentinels, master, auth } => {
            let hosts: Vec<String> = sentinels.iter().map(|e| e.to_string()).collect();
            let query = match auth {
                Some(c) => {
                    let user =
                        c.username.as_deref().map(|n| format!("sentinel_username={}&", enc(n))).unwrap_or_default();
                    format!("?{user}sentinel_password={}", enc(&c.password))
                }
                None => String::new(),
            };
            format!("{scheme}://{}{}/{master}/{}{query}", userinfo(&u.auth), hosts.join(","), u.db)
        }
    }
}

/// Any text: a URL, or an error. What is accepted re-reads from its plain form as the same,
/// has hosts, ports, master name and database within their forms, and its `Debug` never
/// depends on a password.
pub fn redis_url(raw: &str) {
    use tollgate::store::url::{RedisUrl, Target};
    let Ok(u) = RedisUrl::parse(raw) else { return };
    let canonical = redis_canonical(&u);
    assert_eq!(RedisUrl::parse(&canonical).as_ref(), Ok(&u), "{raw:?} -> {canonical:?} reads differently");
    let endpoints = match &u.target {
        Target::Direct(ep) => vec![ep],
        Target::Sentinel { sentinels, master, .. } => {
            assert!(!master.is_empty() && master.len() <= 128, "{master:?}");
            assert!(master.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{master:?}");
            assert!((1..=16).contains(&sentinels.len()));
            sentinels.iter().collect()
        }
    };
    for ep in endpoints {
        assert!(ep.port > 0);
        let name = |h: &str| {
            !h.is_empty() && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        };
        assert!(name(&ep.host) || ep.host.parse::<Ipv6Addr>().is_ok(), "host {:?}", ep.host);
    }
    assert!(u.db < 1 << 16);
    let mut blank = u.clone();
    let hide = |c: &mut Option<tollgate::store::url::Credentials>| {
        if let Some(c) = c {
            c.password = "x".into();
        }
    };
    hide(&mut blank.auth);
    if let Target::Sentinel { auth, .. } = &mut blank.target {
        hide(auth);
    }
    assert_eq!(format!("{u:?}"), format!("{blank:?}"), "a password shows in Debug");
    for c in [&u.auth].into_iter().flatten() {
        assert!(!c.password.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Token exchange answers (src/upstream/exchange.rs)

const EXCHANGE_STATUSES: [u16; 10] = [200, 201, 204, 302, 400, 401, 403, 404, 500, 503];
const REQUESTED: [Option<&str>; 4] = [
    None,
    Some("urn:ietf:params:oauth:token-type:access_token"),
    Some("urn:ietf:params:oauth:token-type:jwt"),
    Some("urn:example:t"),
];

/// What RFC 8693 §2.2 and the module's rules make of an answer, read from its JSON by this
/// model: `Ok((token, expires_in))`, `Err(Some((error, description)))` a refusal, `Err(None)`
/// an outage.
#[allow(clippy::type_complexity)]
fn exchange_model(
    status: StatusCode,
    body: &Value,
    requested: Option<&str>,
) -> Result<(String, Option<u64>), Option<(String, Option<String>)>> {
    // A member as `Option<String>` reads it: absent or null is none, a string is one, else an error.
    let text = |v: &Value, name: &str| -> Result<Option<String>, ()> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(()),
        }
    };
    if !status.is_success() {
        let Value::Object(_) = body else { return Err(None) };
        let (Ok(Some(error)), Ok(description)) = (text(body, "error"), text(body, "error_description")) else {
            return Err(None);
        };
        let code_ok = !error.is_empty()
            && error.len() <= 64
            && error.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !status.is_client_error() || error == "invalid_client" || !code_ok {
            return Err(None);
        }
        let printable = |d: String| d.chars().take(200).map(|c| if c.is_control() { ' ' } else { c }).collect();
        return Err(Some((error, description.map(printable))));
    }
    let Value::Object(_) = body else { return Err(None) };
    let (Ok(token), Ok(token_type), Ok(issued)) =
        (text(body, "access_token"), text(body, "token_type"), text(body, "issued_token_type"))
    else {
        return Err(None);
    };
    let expires_in = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or(None)?),
    };
    let token = token.filter(|t| !t.is_empty()).ok_or(None)?;
    if !token_type.is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
        return Err(None);
    }
    let issued = issued.ok_or(None)?;
    let issued_ok = match requested {
        Some(r) => issued == r,
        None => issued == REQUESTED[1].unwrap() || issued == REQUESTED[2].unwrap(),
    };
    let header_ok = token.len() <= 16 << 10 && token.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
    if !issued_ok || !header_ok {
        return Err(None);
    }
    Ok((token, expires_in))
}

/// Input: a status byte, a byte choosing the requested token type, then the body. A success is
/// a non-empty Bearer token of an accepted `issued_token_type`; a refusal is a 4xx OAuth error
/// other than `invalid_client`; everything else is an outage. Checked against the model both
/// ways (for a body that is its own JSON's canonical form; any body one way).
pub fn exchange_answer(data: &[u8]) {
    use tollgate::upstream::exchange::{parse_answer, ExchangeError};
    let [s, r, body @ ..] = data else { return };
    let status = StatusCode::from_u16(EXCHANGE_STATUSES[usize::from(*s) % EXCHANGE_STATUSES.len()]).unwrap();
    let requested = REQUESTED[usize::from(*r) % REQUESTED.len()];
    let got = parse_answer(status, body, requested);
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        // Not JSON (or JSON serde can skip but not hold): never a token or a refusal.
        assert!(matches!(got, Err(ExchangeError::Unavailable(_))), "{got:?}");
        return;
    };
    let want = exchange_model(status, &doc, requested);
    // A body with repeated members is refused by the parser and read (last wins) by the model.
    let exact = serde_json::to_vec(&doc).unwrap() == body;
    match (&got, &want) {
        (Ok(issued), Ok((token, expires_in))) => {
            assert_eq!(issued.authorization.as_bytes(), format!("Bearer {token}").as_bytes());
            assert_eq!(&issued.expires_in, expires_in);
        }
        (Err(ExchangeError::Refused { error, description }), Err(Some((e, d)))) => {
            assert_eq!((error, description), (e, d));
        }
        (Err(ExchangeError::Unavailable(_)), Err(None)) => {}
        (Err(ExchangeError::Unavailable(_)), _) if !exact => {}
        (got, want) => {
            panic!("{status} {requested:?} {:?}: got {got:?}, the model says {want:?}", String::from_utf8_lossy(body))
        }
    }
}
