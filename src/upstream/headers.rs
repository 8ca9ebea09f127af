//! Header hygiene between client and upstream: hop-by-hop headers (including names listed in
//! `Connection`) never cross the gateway, and no client can send a header the gateway itself
//! sets or removes, in any spelling.
//!
//! Names are compared *folded*: lower case with every character outside `[a-z0-9]` left out.
//! CGI and PHP map `-`, `_`, `.` and space alike (`X.Forwarded.User` arrives as
//! `HTTP_X_FORWARDED_USER`), and other frameworks normalise in their own ways; folding is a
//! superset of all of them, so no spelling of a protected name gets through.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, UPGRADE};

pub use crate::header_policy::{
    check_keep_name, check_strip_name, fold, CANONICAL, FOREIGN, FORWARDING, HOP_BY_HOP, IDENTITY,
};

/// How a protected name is treated. Ordered: when two names fold alike, the stricter wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The exact spelling passes; any other spelling is removed.
    Canonical,
    /// The exact spelling passes from trusted proxies; otherwise it is removed like `Strip`.
    Forwarding,
    /// Removed in every spelling.
    Strip,
}

#[derive(Debug, Clone)]
struct Entry {
    folded: Box<[u8]>,
    /// The spelling that passes (`Canonical`, `Forwarding`).
    exact: Box<str>,
    kind: Kind,
}

/// Names the gateway protects, by folded form: the fixed lists, configured claim headers and
/// `server.strip_request_headers`, minus `server.keep_request_headers`.
#[derive(Debug, Clone)]
pub struct Protected {
    /// Entries by the length of their folded name, so a lookup compares a handful at most.
    by_len: Vec<Vec<Entry>>,
    /// Folded prefixes whose every name is removed (`x-ssl-client-*`).
    prefixes: Vec<Box<[u8]>>,
}

impl Default for Protected {
    fn default() -> Self {
        Protected::new(std::iter::empty())
    }
}

impl Protected {
    /// The built-in lists, plus `extra`: configured identity header names (claim mappings)
    /// to protect as well.
    pub fn new(extra: impl Iterator<Item = HeaderName>) -> Protected {
        Protected::configured(extra, &[], &[])
    }

    /// As [`Protected::new`], with `strip` (more names or `prefix*` patterns to remove) and
    /// `keep` (names from [`FOREIGN`] to pass through). Both are validated by the
    /// configuration ([`check_strip_name`], [`check_keep_name`]).
    pub fn configured(extra: impl Iterator<Item = HeaderName>, strip: &[String], keep: &[String]) -> Protected {
        let mut p = Protected { by_len: Vec::new(), prefixes: Vec::new() };
        let kept = |name: &str| keep.iter().any(|k| k.ends_with('*') == name.ends_with('*') && fold(k) == fold(name));
        for name in FOREIGN.iter().copied().chain(strip.iter().map(String::as_str)) {
            match name.strip_suffix('*') {
                Some(prefix) if !kept(name) => p.prefixes.push(fold(prefix).into_bytes().into()),
                Some(_) => {}
                None if kept(name) => p.add(name, Kind::Canonical),
                None => p.add(name, Kind::Strip),
            }
        }
        // A kept name under a removed prefix (`x-ssl-client-verify`) is looked up before prefixes.
        for name in keep.iter().filter(|k| !k.ends_with('*')) {
            p.add(name, Kind::Canonical);
        }
        for name in CANONICAL {
            p.add(name, Kind::Canonical);
        }
        for name in FORWARDING {
            p.add(name, Kind::Forwarding);
        }
        for name in HOP_BY_HOP.iter().chain(IDENTITY) {
            p.add(name, Kind::Strip);
        }
        for name in extra {
            p.add(name.as_str(), Kind::Strip);
        }
        p
    }

    /// `server.client_cert_header`: passes from trusted proxies in exactly its own spelling and
    /// is removed in every spelling from anyone else, as the forwarding headers are; by default
    /// it is one of the [`FOREIGN`] names, removed from everybody. Named (or matched by a
    /// prefix) in `strip`, it stays removed from everybody.
    pub fn forwarding_from_trusted(mut self, name: &HeaderName, strip: &[String]) -> Protected {
        let folded = fold(name.as_str());
        let stripped = strip.iter().any(|s| match s.strip_suffix('*') {
            Some(prefix) => folded.starts_with(&fold(prefix)),
            None => fold(s) == folded,
        });
        if stripped {
            return self;
        }
        let foreign = FOREIGN.iter().any(|f| !f.ends_with('*') && fold(f) == folded);
        let bucket =
            self.by_len.get_mut(folded.len()).and_then(|b| b.iter_mut().find(|e| *e.folded == *folded.as_bytes()));
        match bucket {
            Some(e) if e.kind == Kind::Strip && foreign => {
                e.kind = Kind::Forwarding;
                e.exact = name.as_str().into();
            }
            Some(_) => {}
            None => self.add(name.as_str(), Kind::Forwarding),
        }
        self
    }

    fn add(&mut self, name: &str, kind: Kind) {
        let folded = fold(name).into_bytes();
        if self.by_len.len() <= folded.len() {
            self.by_len.resize(folded.len() + 1, Vec::new());
        }
        let bucket = &mut self.by_len[folded.len()];
        match bucket.iter_mut().find(|e| *e.folded == *folded) {
            Some(e) if kind > e.kind => {
                e.kind = kind;
                e.exact = name.to_ascii_lowercase().into();
            }
            Some(_) => {}
            None => bucket.push(Entry { folded: folded.into(), exact: name.to_ascii_lowercase().into(), kind }),
        }
    }

    /// True when a client-sent header `name` (lower case, as `HeaderName` keeps it) must not
    /// reach the upstream.
    fn removes(&self, name: &str, trusted: bool) -> bool {
        let mut buf = [0u8; 64];
        let folded = fold_into(name.as_bytes(), &mut buf);
        let found = self.by_len.get(folded.len()).and_then(|b| b.iter().find(|e| *e.folded == *folded));
        match found {
            Some(e) => match e.kind {
                Kind::Strip => true,
                Kind::Forwarding => !(trusted && *e.exact == *name),
                Kind::Canonical => *e.exact != *name,
            },
            None => self.prefixes.iter().any(|p| folded.starts_with(p)),
        }
    }

    /// Cleans a client request's headers before they go upstream. Returns the `Upgrade` value
    /// when the client asked for a WebSocket upgrade (`Connection: upgrade`, `Upgrade:
    /// websocket`), which the caller forwards deliberately. Other upgrades (such as `h2c`) are
    /// dropped: a tunnel to the upstream would carry later requests past the route's checks.
    ///
    /// One pass over the names present (a request has a handful), each folded on the stack and
    /// looked up among the protected names of its folded length.
    pub fn clean_request(&self, headers: &mut HeaderMap, trusted_peer: bool) -> Option<HeaderValue> {
        let mut doomed = Doomed::default();
        for name in headers.keys() {
            if self.removes(name.as_str(), trusted_peer) {
                doomed.push(name.clone());
            }
        }
        let upgrade = match doomed.contains(&CONNECTION) {
            true => headers
                .get(UPGRADE)
                .filter(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket") && connection_has(headers, "upgrade"))
                .cloned(),
            false => None,
        };
        remove_all(headers, doomed);
        upgrade
    }
}

/// [`fold`] into `buf` without allocating; a name too long for it (rare, and only ever an
/// unknown name) is folded on the heap.
fn fold_into<'a>(name: &[u8], buf: &'a mut [u8; 64]) -> Cow<'a, [u8]> {
    let mut n = 0;
    for &b in name {
        if b.is_ascii_alphanumeric() {
            let Some(slot) = buf.get_mut(n) else {
                return Cow::Owned(
                    name.iter().filter(|b| b.is_ascii_alphanumeric()).map(u8::to_ascii_lowercase).collect(),
                );
            };
            *slot = b.to_ascii_lowercase();
            n += 1;
        }
    }
    Cow::Borrowed(&buf[..n])
}

/// A header value built from a list (groups, an array claim): items joined with `,`, and in
/// each item `%`, `,` and every byte outside visible ASCII (space, control characters, UTF-8)
/// percent-encoded. Plain names are unchanged; a group called `staff,admins` becomes
/// `staff%2Cadmins`, never two groups. Split on `,`, then percent-decode each item.
pub fn encode_list<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for &b in item.as_ref().as_bytes() {
            if b.is_ascii_graphic() && b != b'%' && b != b',' {
                out.push(char::from(b));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// Several `Cookie` fields (HTTP/2 sends each cookie in its own, RFC 9113 §8.2.3) become one
/// line joined with `; ` for an HTTP/1.1 upstream, which may read only the first. A request
/// with one `Cookie` line (the usual case) is left as it is.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut lines = headers.get_all(COOKIE).iter();
    if lines.next().is_none() || lines.next().is_none() {
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for line in headers.get_all(COOKIE).iter().filter(|l| !l.is_empty()) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    // The parts were valid values, and "; " is too.
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, v);
    }
}

/// Cleans an upstream response's headers before they go to the client (one pass, as above).
pub fn clean_response(headers: &mut HeaderMap) {
    let mut doomed = Doomed::default();
    for name in headers.keys().filter(|k| HOP_BY_HOP.contains(&k.as_str())) {
        doomed.push(name.clone());
    }
    remove_all(headers, doomed);
}

/// Names to remove: a few on the stack (the usual case), more on the heap.
#[derive(Default)]
struct Doomed {
    few: [Option<HeaderName>; 6],
    len: usize,
    more: Vec<HeaderName>,
}

impl Doomed {
    fn push(&mut self, name: HeaderName) {
        match self.few.get_mut(self.len) {
            Some(slot) => *slot = Some(name),
            None => self.more.push(name),
        }
        self.len += 1;
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.few.iter().flatten().chain(&self.more).any(|n| n == name)
    }
}

/// Removes `doomed` and, when `Connection` is among them, the names it lists (`close` and the
/// hop-by-hop names, already doomed, are not collected again).
fn remove_all(headers: &mut HeaderMap, mut doomed: Doomed) {
    // The usual `Connection: keep-alive` (or `close`) names no header: nothing to collect.
    if doomed.contains(&CONNECTION) && connection_lists_names(headers) {
        let listed: Vec<HeaderName> = connection_tokens(headers)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !HOP_BY_HOP.iter().any(|h| t.eq_ignore_ascii_case(h)))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in listed {
            doomed.push(name);
        }
    }
    // By reference: moving the slots through a flattening iterator cost more than removing.
    for name in doomed.few[..doomed.len.min(doomed.few.len())].iter().flatten().chain(&doomed.more) {
        headers.remove(name);
    }
}

/// The tokens the `Connection` fields list, trimmed, empty ones left out; a field that is not
/// visible ASCII lists none.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// `Connection` lists a token other than `close` and `keep-alive`: a header name to remove.
fn connection_lists_names(headers: &HeaderMap) -> bool {
    connection_tokens(headers).any(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// The names left, sorted (removal reorders a `HeaderMap`).
    fn left(h: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn removes_hop_by_hop_and_connection_listed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        assert!(Protected::default().clean_request(&mut h, false).is_none());
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn removes_identity_headers_in_every_spelling() {
        let mut h = map(&[
            ("X-Forwarded-User", "admin"),
            ("x_forwarded_user", "admin"),
            ("X.Forwarded.User", "admin"),
            ("x-forwarded.user", "admin"),
            ("x~forwarded~user", "admin"),
            ("xforwardeduser", "admin"),
            ("X_Forwarded_Email", "a@b"),
            ("x-auth-request-groups", "admins"),
            ("x!auth!request!email", "a@b"),
            ("x_custom_ok", "kept"),
            ("x-user-role", "admin"),
            ("x.user.role", "admin"),
        ]);
        let p = Protected::new([HeaderName::from_static("x-user-role")].into_iter());
        p.clean_request(&mut h, true);
        assert_eq!(left(&h), vec!["x_custom_ok"]);
    }

    #[test]
    fn headers_the_gateway_sets_pass_only_in_their_own_spelling() {
        let mut h = map(&[
            ("host", "a.example"),
            ("ho.st", "admin.example"),
            ("authorization", "Bearer t"),
            ("authorization_", "Bearer forged"),
            ("x-request-id", "abc"),
            ("x_request_id", "forged"),
            ("transfer_encoding", "chunked"),
        ]);
        Protected::default().clean_request(&mut h, false);
        assert_eq!(left(&h), vec!["authorization", "host", "x-request-id"]);
    }

    #[test]
    fn forwarding_headers_only_from_trusted_peers_in_their_own_spelling() {
        let pairs = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_proto", "https"),
            ("x.forwarded.host", "admin.example"),
            ("forwarded", "for=1.2.3.4"),
        ];
        let mut untrusted = map(&pairs);
        Protected::default().clean_request(&mut untrusted, false);
        assert!(untrusted.is_empty(), "{untrusted:?}");
        let mut trusted = map(&pairs);
        Protected::default().clean_request(&mut trusted, true);
        assert_eq!(left(&trusted), vec!["forwarded", "x-forwarded-for"]);
    }

    #[test]
    fn foreign_identity_headers_are_removed_unless_kept() {
        let names = [
            "remote-user",
            "remote_user",
            "x-remote-user",
            "x-remote-group",
            "x-userinfo",
            "x-jwt-payload",
            "x-webauth-user",
            "x-forwarded-client-cert",
            "x-ssl-client-s-dn",
            "x_ssl_client_verify",
            "ssl-client-cert",
            "client-ip",
            "true-client-ip",
            "x-client-ip",
            "x-forwarded-server",
            "x.host",
            "x-amzn-oidc-data",
            "x-ms-client-principal-name",
        ];
        let mut h = HeaderMap::new();
        for n in names.iter().chain(&["accept", "x-internal-debug", "x-debug"]) {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("v"));
        }
        let mut defaults = h.clone();
        Protected::default().clean_request(&mut defaults, true);
        assert_eq!(left(&defaults), vec!["accept", "x-debug", "x-internal-debug"]);

        let strip = ["X-Internal-*".to_string(), "X-Debug".to_string()];
        let keep = ["Remote-User".to_string(), "X-SSL-Client-Verify".to_string(), "x-amzn-oidc-*".to_string()];
        let p = Protected::configured(std::iter::empty(), &strip, &keep);
        p.clean_request(&mut h, false);
        assert_eq!(left(&h), vec!["accept", "remote-user", "x-amzn-oidc-data"], "kept only in their own spelling");
    }

    #[test]
    fn client_cert_header_passes_only_from_trusted_proxies_in_its_spelling() {
        let spellings =
            ["x-forwarded-client-cert", "x_forwarded_client_cert", "x.forwarded.client.cert", "xforwardedclientcert"];
        let mut h = HeaderMap::new();
        for n in spellings {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("Hash=00"));
        }
        let name = HeaderName::from_static("x-forwarded-client-cert");
        let p = Protected::default().forwarding_from_trusted(&name, &[]);
        let mut untrusted = h.clone();
        p.clean_request(&mut untrusted, false);
        assert!(untrusted.is_empty(), "{untrusted:?}");
        let mut trusted = h.clone();
        p.clean_request(&mut trusted, true);
        assert_eq!(left(&trusted), vec!["x-forwarded-client-cert"]);
        // By default (no client_cert_header) removed from everybody.
        let mut defaults = h.clone();
        Protected::default().clean_request(&mut defaults, true);
        assert!(defaults.is_empty());
        // Also a name outside the default list, and one under a removed prefix.
        for custom in ["x-client-cert-pem", "x-ssl-client-escaped-cert"] {
            let name = HeaderName::from_bytes(custom.as_bytes()).unwrap();
            let p = Protected::default().forwarding_from_trusted(&name, &[]);
            let mut h = map(&[(custom, "v"), (&custom.replace('-', "_"), "forged")]);
            p.clean_request(&mut h, true);
            assert_eq!(left(&h), vec![custom]);
            let mut h = map(&[(custom, "v"), (&custom.replace('-', "_"), "forged")]);
            p.clean_request(&mut h, false);
            assert!(h.is_empty(), "{h:?}");
        }
        // Named in strip_request_headers: removed from everybody.
        let p = Protected::default().forwarding_from_trusted(&name, &["x-forwarded-client-*".to_string()]);
        let mut h = map(&[("x-forwarded-client-cert", "v")]);
        p.clean_request(&mut h, true);
        assert!(h.is_empty());
    }

    #[test]
    fn configured_lists_are_checked() {
        for ok in ["X-Debug", "x-internal-*", "x-forwarded-user", "connection", "x-forwarded-*"] {
            assert_eq!(check_strip_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "*", "-*", "a b", "x-request-id", "Host", "x_forwarded_for", "x:y"] {
            assert!(check_strip_name(bad).is_err(), "{bad}");
        }
        for ok in ["X-Forwarded-Client-Cert", "remote_user", "x-ssl-client-*", "X-SSL-Client-Verify", "cf-access-*"] {
            assert_eq!(check_keep_name(ok), Ok(()), "{ok}");
        }
        for bad in ["X-Forwarded-User", "x.auth.request.email", "host", "x-forwarded-for", "x-custom", "x-ssl-*"] {
            assert!(check_keep_name(bad).is_err(), "{bad}");
        }
        assert!(check_keep_name("X-Forwarded-User").unwrap_err().contains("cannot be kept"));
    }

    #[test]
    fn folding() {
        assert_eq!(fold("X.Forwarded_User-1"), "xforwardeduser1");
        let long = format!("x-{}", "a-".repeat(80));
        let mut buf = [0u8; 64];
        assert_eq!(&*fold_into(long.as_bytes(), &mut buf), fold(&long).as_bytes());
        assert_eq!(&*fold_into(b"x-forwarded-user", &mut buf), b"xforwardeduser");
        let p = Protected::new(std::iter::empty());
        assert!(!p.removes(&long, false), "a long unknown name is not protected");
    }

    #[test]
    fn lists_are_unambiguous() {
        assert_eq!(encode_list(["staff", "admins"]), "staff,admins");
        assert_eq!(encode_list(["staff,admins"]), "staff%2Cadmins");
        assert_eq!(
            encode_list(["dev ops", "50%", "\u{e4}rzte", "a\r\nb", "x;y=\"z\""]),
            "dev%20ops,50%25,%C3%A4rzte,a%0D%0Ab,x;y=\"z\""
        );
        assert_eq!(encode_list(Vec::<String>::new()), "");
    }

    #[test]
    fn cookie_lines_are_joined() {
        let mut one = map(&[("cookie", "a=1; b=2")]);
        join_cookies(&mut one);
        assert_eq!(one.get_all(COOKIE).iter().collect::<Vec<_>>(), vec!["a=1; b=2"]);
        let mut h2 = map(&[("cookie", "a=1"), ("cookie", ""), ("cookie", "b=2; c=3"), ("accept", "*/*")]);
        join_cookies(&mut h2);
        assert_eq!(h2.get_all(COOKIE).iter().collect::<Vec<_>>(), vec!["a=1; b=2; c=3"]);
    }

    #[test]
    fn upgrade_is_reported_and_stripped() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-key", "k")]);
        let up = Protected::default().clean_request(&mut h, false);
        assert_eq!(up.unwrap(), "websocket");
        assert!(!h.contains_key("upgrade") && !h.contains_key("connection"));
        assert!(h.contains_key("sec-websocket-key"));
    }

    #[test]
    fn only_websocket_upgrades_are_kept() {
        let mut h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
        ]);
        assert!(Protected::default().clean_request(&mut h, false).is_none());
        assert!(h.is_empty(), "{h:?}");
        let mut h = map(&[("connection", "keep-alive"), ("upgrade", "websocket"), ("http2-settings", "x")]);
        assert!(Protected::default().clean_request(&mut h, false).is_none(), "no Connection: upgrade");
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn response_hop_by_hop_removed() {
        let mut h = map(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "text/plain"),
        ]);
        clean_response(&mut h);
        assert_eq!(h.len(), 1);
    }

    /// The usual response's lone `Connection: keep-alive` goes without anything collected from
    /// it; a `Connection` that names another header still takes that header with it.
    #[test]
    fn response_connection_alone_or_naming_others() {
        let mut h = map(&[("content-type", "text/plain"), ("connection", "keep-alive")]);
        clean_response(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["content-type"]);

        let mut h = map(&[("connection", "Keep-Alive, x-internal"), ("x-internal", "1"), ("x-kept", "1")]);
        clean_response(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);

        let mut h = map(&[("connection", "close"), ("keep-alive", "timeout=5"), ("x-kept", "1")]);
        clean_response(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }
}
