//! Header hygiene between client and upstream: hop-by-hop headers (including names listed in
//! `Connection`) never cross the gateway, and no client can send a header the gateway itself
//! sets, in any spelling (`X_Forwarded_User` reaches some frameworks as `X-Forwarded-User`).

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the usual non-standard ones).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // Only meaningful with `Upgrade: h2c`, which is never forwarded.
    "http2-settings",
];

/// Identity headers the gateway sets; any client-sent copy is always removed.
pub const IDENTITY: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
];

/// Forwarding headers: kept (and appended to) only when the peer is a trusted proxy.
/// Some frameworks take the request's path or scheme from the last few.
pub const FORWARDING: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-uri",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
];

/// Names the gateway protects: the fixed lists plus configured claim headers.
#[derive(Debug, Clone)]
pub struct Protected {
    identity: Vec<HeaderName>,
}

impl Default for Protected {
    fn default() -> Self {
        Protected::new(std::iter::empty())
    }
}

impl Protected {
    /// `extra`: configured identity header names (claim mappings) to protect as well.
    pub fn new(extra: impl Iterator<Item = HeaderName>) -> Protected {
        let mut identity: Vec<HeaderName> = IDENTITY.iter().map(|n| HeaderName::from_static(n)).collect();
        for name in extra {
            if !identity.contains(&name) {
                identity.push(name);
            }
        }
        Protected { identity }
    }

    fn is_protected(&self, lower_dashed: &str, trusted: bool) -> bool {
        HOP_BY_HOP.contains(&lower_dashed)
            || self.identity.iter().any(|n| n.as_str() == lower_dashed)
            || (!trusted && FORWARDING.contains(&lower_dashed))
    }

    /// Cleans a client request's headers before they go upstream. Returns the `Upgrade` value
    /// when the client asked for a WebSocket upgrade (`Connection: upgrade`, `Upgrade:
    /// websocket`), which the caller forwards deliberately. Other upgrades (such as `h2c`) are
    /// dropped: a tunnel to the upstream would carry later requests past the route's checks.
    ///
    /// One pass over the names present (a request has a handful), not a lookup per protected
    /// name (there are dozens): names with `_` are judged as their `-` spelling, since
    /// underscores and dashes are the same to CGI-style readers (`x_forwarded_user`).
    pub fn clean_request(&self, headers: &mut HeaderMap, trusted_peer: bool) -> Option<HeaderValue> {
        let mut doomed = Doomed::default();
        for name in headers.keys() {
            let n = name.as_str();
            let protected = if n.contains('_') {
                self.is_protected(&n.replace('_', "-"), trusted_peer)
            } else {
                self.is_protected(n, trusted_peer)
            };
            if protected {
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
/// hop-by-hop names, already doomed, need no parsing).
fn remove_all(headers: &mut HeaderMap, mut doomed: Doomed) {
    if doomed.contains(&CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !HOP_BY_HOP.iter().any(|h| t.eq_ignore_ascii_case(h)))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in listed {
            doomed.push(name);
        }
    }
    let Doomed { few, more, .. } = doomed;
    for name in few.into_iter().flatten().chain(more) {
        headers.remove(name);
    }
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
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
            ("X_Forwarded_Email", "a@b"),
            ("x-auth-request-groups", "admins"),
            ("x_custom_ok", "kept"),
            ("x-user-role", "admin"),
        ]);
        let p = Protected::new([HeaderName::from_static("x-user-role")].into_iter());
        p.clean_request(&mut h, true);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x_custom_ok"]);
    }

    #[test]
    fn forwarding_headers_only_from_trusted_peers() {
        let pairs = [("x-forwarded-for", "1.2.3.4"), ("x_forwarded_proto", "https"), ("forwarded", "for=1.2.3.4")];
        let mut untrusted = map(&pairs);
        Protected::default().clean_request(&mut untrusted, false);
        assert!(untrusted.is_empty(), "{untrusted:?}");
        let mut trusted = map(&pairs);
        Protected::default().clean_request(&mut trusted, true);
        assert_eq!(trusted.len(), 3);
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
}
