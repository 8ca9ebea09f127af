//! The upstream request: its target (origin form, prefix stripped, base path added, hidden
//! token parameters removed) and the forwarding headers.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};
use http::uri::PathAndQuery;
use http::Uri;

use super::Conn;
use crate::config::Route;
use crate::error::GatewayError;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Query parameters and cookies that carried a bearer token the route does not forward.
#[derive(Default)]
pub(super) struct Hidden<'r> {
    pub queries: Vec<&'r str>,
    pub cookies: Vec<&'r str>,
}

pub(super) fn hidden_token_sources(route: &Route) -> Hidden<'_> {
    let mut hidden = Hidden::default();
    // A token-exchange route never forwards the caller's token, whatever forward_authorization says.
    let exchanges = route.upstream_token.as_ref().is_some_and(|t| t.exchange);
    let Some(b) = route.auth.bearer().filter(|b| !b.forward_authorization || exchanges) else { return hidden };
    // Whoever the caller turned out to be: a browser with a session on a login_or_bearer route
    // may send a token in the query or a cookie too, which was never checked.
    for source in &b.sources {
        match source {
            crate::config::TokenSource::Query(name) => hidden.queries.push(name),
            crate::config::TokenSource::Cookie(name) => hidden.cookies.push(name),
            crate::config::TokenSource::Header => {}
        }
    }
    hidden
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The upstream request target, in origin form (the proxy connects to the route's upstream):
/// base path, the normalised path (its route prefix stripped when configured) and `query` (the
/// client's, or what is left of it). When that is the client's own target, it is shared, not
/// copied.
pub(super) fn upstream_uri(route: &Route, path: &str, client: &Uri, query: Option<&str>) -> Result<Uri, GatewayError> {
    if !route.strip_prefix && route.upstream.base_path.is_empty() && path == client.path() && query == client.query() {
        if let Some(pq) = client.path_and_query() {
            return Ok(Uri::from(pq.clone()));
        }
    }
    let rest = if route.strip_prefix {
        let prefix = route.path.trim_end_matches('/');
        match &path[prefix.len().min(path.len())..] {
            "" => "/",
            rest => rest,
        }
    } else {
        path
    };
    let base = &route.upstream.base_path;
    let mut pq = String::with_capacity(base.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(base);
    pq.push_str(rest);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let pq = PathAndQuery::from_maybe_shared(bytes::Bytes::from(pq))
        .map_err(|_| GatewayError::BadRequest("invalid query string"))?;
    Ok(Uri::from(pq))
}

/// `X-Forwarded-For/Proto/Host`: appended to (For) or kept (Proto) when the peer is a trusted
/// proxy, otherwise set from this connection; Host is the request's authority.
pub fn set_forwarding(headers: &mut HeaderMap, conn: &Conn, host: &HeaderValue) {
    let prior = match conn.trusted {
        true => headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
        false => None,
    };
    let xff = match prior {
        Some(prior) => {
            HeaderValue::from_str(&format!("{prior}, {}", conn.peer.ip())).unwrap_or_else(|_| conn.peer_header.clone())
        }
        None => conn.peer_header.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    if !(conn.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if conn.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    // Always the authority the request was routed by, also behind a trusted proxy: another
    // host here would be judged by the upstream but never by tollgate.
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, strip: bool, base: &str) -> Route {
        let mut r = Route { strip_prefix: strip, ..Route::for_tests("r", path) };
        r.upstream.base_path = base.into();
        r
    }

    #[test]
    fn upstream_uris() {
        let client = Uri::from_static("http://client.test/api/x?a=1");
        let uri = |r: &Route, p: &str, q: Option<&str>| upstream_uri(r, p, &client, q).unwrap().to_string();
        assert_eq!(uri(&route("/api/", false, ""), "/api/x", None), "/api/x", "query removed");
        assert_eq!(uri(&route("/api/", false, ""), "/api//x", Some("a=1")), "/api//x?a=1", "path normalised");
        assert_eq!(uri(&route("/api/", false, ""), "/api/x", Some("a=1")), "/api/x?a=1");
        assert_eq!(uri(&route("/api/", true, ""), "/api/x", None), "/x");
        assert_eq!(uri(&route("/api", true, ""), "/api", None), "/");
        assert_eq!(uri(&route("/api", true, "/base"), "/api/x/y", None), "/base/x/y");
        assert_eq!(uri(&route("/", true, "/base"), "/x", None), "/base/x");
    }
}
