//! Which request headers are tollgate's own, which it strips, and how names are compared:
//! the policy shared by configuration checks and the request path (a leaf module, so both may
//! use it without depending on each other).
//!
//! Names are compared *folded*: lower case with every character outside `[a-z0-9]` left out
//! (CGI and PHP map `-`, `_`, `.` and space alike).

use http::header::HeaderName;

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

/// Headers the gateway passes or sets in exactly this spelling: any other spelling of them is
/// removed (an `X_Request_Id` next to the gateway's `X-Request-Id` would be a second opinion).
pub const CANONICAL: &[&str] = &["host", "authorization", "x-request-id"];

/// Headers other gateways and load balancers use to carry an identity, a client certificate or
/// the client's address. Applications that used to sit behind them trust these, so they are
/// removed by default (`server.keep_request_headers` keeps one on purpose). A trailing `*`
/// is a prefix.
pub const FOREIGN: &[&str] = &[
    // Identity (Apache, nginx auth modules, Grafana, Kong, Keycloak gatekeepers, ...).
    "remote-user",
    "x-remote-user",
    "x-remote-group",
    "x-userinfo",
    "x-jwt-payload",
    "x-webauth-user",
    "x-amzn-oidc-*",
    "x-goog-authenticated-user-*",
    "x-goog-iap-jwt-assertion",
    "x-ms-client-principal*",
    "cf-access-*",
    // Client certificates (Envoy, nginx/Apache, Traefik, RFC 9440).
    "x-forwarded-client-cert",
    "x-ssl-client-*",
    "ssl-client-cert",
    "x-client-cert",
    "client-cert",
    "client-cert-chain",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    // The client's address and the host as another proxy saw them.
    "client-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-forwarded-server",
    "x-host",
];

/// `name` lower-cased with every character outside `[a-z0-9]` left out: the form in which two
/// header names are the same header to some reader.
pub fn fold(name: &str) -> String {
    name.bytes().filter(u8::is_ascii_alphanumeric).map(|b| char::from(b.to_ascii_lowercase())).collect()
}

/// Checks a `server.strip_request_headers` entry: a header name, or a prefix ending in `*`.
pub fn check_strip_name(name: &str) -> Result<(), String> {
    let plain = name.strip_suffix('*').unwrap_or(name);
    if HeaderName::from_bytes(plain.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a header name (a trailing * makes it a prefix)"));
    }
    if fold(plain).is_empty() {
        return Err(format!("{name:?} has no letters or digits; it would match too much"));
    }
    if let Some(own) = own_header(plain).filter(|_| !name.ends_with('*')) {
        if !IDENTITY.contains(&own) && !HOP_BY_HOP.contains(&own) {
            return Err(format!("{name:?} is a header tollgate sets or forwards itself ({own}); it cannot be removed"));
        }
    }
    Ok(())
}

/// Checks a `server.keep_request_headers` entry: it must be one of the names (or prefixes)
/// removed by default ([`FOREIGN`]); tollgate's own headers can never be kept.
pub fn check_keep_name(name: &str) -> Result<(), String> {
    if let Some(own) = own_header(name.strip_suffix('*').unwrap_or(name)) {
        return Err(format!("{name:?} is a header tollgate sets or removes itself ({own}); it cannot be kept"));
    }
    let folded = fold(name);
    let listed = FOREIGN.iter().any(|f| match (f.strip_suffix('*'), name.ends_with('*')) {
        (Some(prefix), true) => fold(prefix) == folded,
        (Some(prefix), false) => folded.starts_with(&fold(prefix)),
        (None, false) => fold(f) == folded,
        (None, true) => false,
    });
    if !listed {
        return Err(format!(
            "{name:?} is not removed by default, so there is nothing to keep; the defaults are: {}",
            FOREIGN.join(", ")
        ));
    }
    Ok(())
}

/// Checks `server.client_cert_header.name` and returns it as a header name (lower case). It
/// is passed to the upstream only from trusted proxies and in exactly this spelling, like the
/// forwarding headers, and removed in every spelling from anyone else; a header tollgate sets,
/// forwards or removes by itself cannot be it.
pub fn check_cert_header_name(name: &str) -> Result<HeaderName, String> {
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
    if fold(name).is_empty() {
        return Err(format!("{name:?} has no letters or digits"));
    }
    if let Some(own) = own_header(name) {
        return Err(format!("{name:?} is a header tollgate sets or forwards itself ({own})"));
    }
    Ok(header)
}

/// The built-in name (hop-by-hop, identity, forwarding or canonical) that `name` folds to.
fn own_header(name: &str) -> Option<&'static str> {
    let folded = fold(name);
    HOP_BY_HOP.iter().chain(IDENTITY).chain(FORWARDING).chain(CANONICAL).find(|n| fold(n) == folded).copied()
}
