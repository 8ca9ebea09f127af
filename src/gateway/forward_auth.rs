//! `/oauth2/auth`: forward authentication for nginx `auth_request`, ingress-nginx `auth-url` and
//! Traefik forwardAuth. Another proxy asks about a request it holds; tollgate finds that
//! request's route and runs the pipeline's own steps on it ([`Gateway::authenticate`] and
//! [`authorize`]), so a route's `auth`, issuers and rules hold behind a proxy exactly as they
//! hold when tollgate proxies itself.
//!
//! The original request is what the asking proxy says it was: the URL in `X-Original-URL`
//! (ingress-nginx, `scheme://host/path?query`, or just the path), the path in `X-Forwarded-Uri`
//! (Traefik) or `X-Original-URI` (nginx snippets), the host in `X-Forwarded-Host`, else `Host`.
//! Where several of them are present they must agree: proxies set their own and pass the client's
//! others through, so a disagreement is a client trying to pick another route. `?route=NAME`
//! names the route outright, for setups that cannot forward the URL. The method is in
//! `X-Forwarded-Method` (Traefik) or `X-Original-Method` (ingress-nginx, nginx snippets; nginx's
//! own subrequest is always a GET); without either, a path whose routes differ by `methods` is
//! refused rather than judged by a guess.
//!
//! Answers: 202 (with `X-Auth-Request-*` identity headers for a caller), 401 (with the route's
//! challenge and, for login routes, the sign-in URL), 403 for a caller the rules refuse and for
//! a request that names no route, a bad path or contradicting headers; 503 when the credential
//! cannot be checked now. Nothing else: nginx treats any other status as an error.
//!
//! CORS: with `server.forward_auth_preflight` (the proxy sets the original method itself), a
//! preflight the proxy asks about (original method `OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is judged as the gateway judges one, on the route of the
//! method asked about: from an origin its `cors` admits, 204 with the policy's headers and no
//! credential; without the setting it is a request like any other. Every answer about a route
//! with `cors` carries its CORS headers (`cors::respond`) for the proxy to copy to the browser.

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, HOST, ORIGIN};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use crate::auth::AuthError;
use crate::authority::Authority;
use crate::body::Body;
use crate::error::GatewayError;
use crate::gateway::{authorize, Caller, Conn, Gateway, Route};
use crate::login::{is_browser, LoginService};
use crate::oidc::http::form_encode;
use crate::path::normalize_path;
use crate::router::{Found, Router};
use crate::util::query_param;

/// The endpoint's path; the gateway hands requests for it here before any route.
pub const PATH: &str = "/oauth2/auth";

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_AUTH_REQUEST_REDIRECT: HeaderName = HeaderName::from_static("x-auth-request-redirect");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");

/// Why a request was refused before any credential was looked at (403, this text).
type Refusal = &'static str;

/// The original request as the asking proxy describes it, each part borrowed from its header.
#[derive(Debug, Default, PartialEq, Clone)]
struct Forwarded<'h> {
    /// `http` or `https`, when known.
    scheme: Option<&'h str>,
    /// `host[:port]` as sent.
    authority: Option<&'h str>,
    /// `/path?query` as sent.
    target: Option<&'h str>,
    /// The original request's method, when the proxy said.
    method: Option<Method>,
}

/// Answers one forward-auth request; never fails, every refusal is a response.
/// `conn` is the asking proxy's connection: its client certificate, or (from a trusted proxy)
/// the configured certificate header, is what certificate-bound tokens are checked against.
pub async fn answer(gw: &Gateway, req: Request<Incoming>, authority: &Authority, conn: &Conn) -> Response<Body> {
    let (parts, _) = req.into_parts();
    // Only a route with `cors` needs it afterwards; a reference count, not a copy.
    let origin = parts.headers.get(ORIGIN).cloned();
    let mut route = None;
    let judged = judge(gw, parts, authority, conn, &mut route).await;
    let mut resp = match judged {
        Ok(resp) => resp,
        Err(why) => GatewayError::from(AuthError::Forbidden(why)).into_response(None),
    };
    // The route's CORS headers on every answer about it, for the proxy to pass on to the
    // browser (nginx: `auth_request_set` + `add_header`): a browser app reads a 401 or 403
    // only with them.
    if let Some(route) = route {
        crate::cors::respond(route, origin.as_ref(), resp.headers_mut());
    }
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Finds the route, rebuilds the original request (its URI and the headers as they came) and
/// runs the pipeline's authentication and authorization on it. The route, once found, is put
/// in `found`, also when the request is refused after that.
async fn judge<'g>(
    gw: &'g Gateway,
    mut parts: http::request::Parts,
    own: &Authority,
    conn: &Conn,
    found: &mut Option<&'g Route>,
) -> Result<Response<Body>, Refusal> {
    let forwarded = Forwarded::read(&parts.headers, Some(own.as_str()))?;
    // A CORS preflight (the original method said, OPTIONS with Origin and
    // Access-Control-Request-Method) is judged on the route of the method it asks about, as
    // the gateway does; from an origin that route's policy admits it is allowed without
    // credentials, which a browser never sends on one. Only where the configuration says the
    // proxy sets the original method itself: nginx's `auth_request` passes the client's headers
    // on, so a client's own `X-Original-Method: OPTIONS` on a GET would otherwise pass for a
    // preflight and the GET reach the upstream without a credential. Anything else goes on as
    // any request.
    let preflight = gw.forward_auth_preflight().then_some(forwarded.method.as_ref()).flatten();
    if let Some(asked) = preflight.and_then(|m| crate::cors::preflight_method(m, &parts.headers)) {
        let asking = Forwarded { method: Some(asked), ..forwarded.clone() };
        if let Ok(route) = find_route(gw.router(), &asking, parts.uri.query()) {
            if let Some(resp) = crate::cors::preflight_answer(route, &parts.headers) {
                *found = Some(route);
                return Ok(resp);
            }
        }
    }
    let route = find_route(gw.router(), &forwarded, parts.uri.query())?;
    *found = Some(route);
    let uri = forwarded.uri()?;
    match &forwarded.method {
        Some(m) => parts.method = m.clone(),
        // A DPoP proof names the method it was made for (`htm`); without being told the
        // original method, the subrequest's own (nginx's is always GET) would be checked, so a
        // captured GET proof would pass for a POST.
        None if uses_dpop_scheme(&parts.headers) => return Err(DPOP_METHOD_UNKNOWN),
        None => {}
    }
    // Traefik (the one that sets X-Forwarded-Uri) hands the answer to the browser: a redirect to
    // sign in works there. nginx accepts only 2xx, 401 and 403 from here.
    let traefik = parts.headers.contains_key(&X_FORWARDED_URI);
    parts.uri = uri;
    let req = Request::from_parts(parts, ());
    let return_to = (traefik && is_browser(req.headers())).then(|| req.uri().to_string());
    let mut set_cookie = HeaderMap::new();
    // The login of this route, not of the host tollgate was asked on: each app its own.
    let login = route.auth.login().map(|l| &**l);
    // A DPoP proof names the original request's URI, as the proxy reported it.
    let origin = crate::auth::dpop::Origin {
        tls: req.uri().scheme_str() == Some("https"),
        trusted_proxy: false,
        authority: req.uri().authority().map_or(own.as_str(), |a| a.as_str()),
    };
    let outcome = match gw.authenticate(route, &req, conn, origin, return_to.as_deref(), &mut set_cookie).await {
        Ok(caller) => authorize(route, caller, req.headers()).map(|p| accepted(route, p.caller(), login)),
        Err(e) => Err(e),
    };
    let mut resp = match outcome {
        Ok(resp) => resp,
        Err(e) => {
            let mut resp = e.into_response(Some(route));
            if resp.status() == StatusCode::UNAUTHORIZED {
                sign_in_hint(&mut resp, route, req.uri());
            }
            resp
        }
    };
    // A session refreshed during the check: the proxy may pass its cookies to the browser.
    resp.headers_mut().extend(set_cookie);
    Ok(resp)
}

impl<'h> Forwarded<'h> {
    /// Reads the forwarding headers; `authority` is the request's own (HTTP/2 `:authority`),
    /// the last resort after `Host`. Repeated or contradicting headers are refused.
    fn read(headers: &'h HeaderMap, authority: Option<&'h str>) -> Result<Forwarded<'h>, Refusal> {
        let url = match single(headers, &X_ORIGINAL_URL)? {
            Some(u) => split_url(u)?,
            None => Forwarded::default(),
        };
        let forwarded_uri = single(headers, &X_FORWARDED_URI)?.map(target).transpose()?;
        let original_uri = single(headers, &X_ORIGINAL_URI)?.map(target).transpose()?;
        let target = [url.target, forwarded_uri, original_uri].into_iter().flatten().try_fold(
            None,
            |found: Option<&str>, t| match found {
                Some(f) if f != t => Err("the forwarded URI headers disagree"),
                _ => Ok(Some(t)),
            },
        )?;
        let forwarded_host = single(headers, &X_FORWARDED_HOST)?;
        let authority = match (url.authority, forwarded_host) {
            (Some(a), Some(h)) if route_host(a) != route_host(h) => {
                return Err("X-Forwarded-Host and X-Original-URL name different hosts")
            }
            (Some(a), _) | (None, Some(a)) => Some(a),
            (None, None) => single(headers, &HOST)?.or(authority),
        };
        let proto = single(headers, &X_FORWARDED_PROTO)?.filter(|p| matches!(*p, "http" | "https"));
        let method = match (single(headers, &X_FORWARDED_METHOD)?, single(headers, &X_ORIGINAL_METHOD)?) {
            (Some(a), Some(b)) if a != b => return Err("X-Forwarded-Method and X-Original-Method disagree"),
            (Some(m), _) | (None, Some(m)) => {
                Some(Method::from_bytes(m.as_bytes()).map_err(|_| "the forwarded method is not a method")?)
            }
            (None, None) => None,
        };
        Ok(Forwarded { scheme: url.scheme.or(proto), authority, target, method })
    }

    /// The original request's URI: absolute when scheme and host are known (the sign-in return
    /// address then names the app's host), else the path and query alone.
    fn uri(&self) -> Result<Uri, Refusal> {
        let target = self.target.unwrap_or("/");
        let uri = match (self.scheme, self.authority.filter(|a| route_host(a).is_some())) {
            (Some(scheme), Some(authority)) => Uri::try_from(format!("{scheme}://{authority}{target}")),
            _ => Uri::try_from(target),
        };
        uri.map_err(|_| "the forwarded URI is not a valid request target")
    }
}

/// What [`Forwarded::read`] makes of a forward-auth request's headers: the original request's
/// scheme, authority and target, and the URI rebuilt from them. For the fuzz targets.
#[doc(hidden)]
pub fn read_forwarded<'h>(headers: &'h HeaderMap, authority: Option<&'h str>) -> Result<ReadForwarded<'h>, Refusal> {
    let f = Forwarded::read(headers, authority)?;
    Ok((f.scheme, f.authority, f.target, f.uri()))
}

/// Scheme, authority, target and the rebuilt URI (see [`read_forwarded`]).
#[doc(hidden)]
pub type ReadForwarded<'h> = (Option<&'h str>, Option<&'h str>, Option<&'h str>, Result<Uri, Refusal>);

/// `?route=NAME` when given, else the route for the forwarded host and normalised path.
fn find_route<'r>(router: &'r Router<Route>, fwd: &Forwarded<'_>, query: Option<&str>) -> Result<&'r Route, Refusal> {
    if let Some(name) = query_param(query, "route") {
        let route = router.routes().iter().find(|r| r.name == name).ok_or("no route has the name given in ?route=")?;
        return match (route.methods, &fwd.method) {
            (None, _) => Ok(route),
            (Some(m), Some(method)) if m.serves(method) => Ok(route),
            (Some(_), Some(_)) => Err("the route named in ?route= does not serve the forwarded method"),
            (Some(_), None) => Err(METHOD_UNKNOWN),
        };
    }
    let target = fwd.target.ok_or("the original URI is unknown: set X-Forwarded-Uri or X-Original-URL")?;
    let host = fwd.authority.and_then(route_host).ok_or("the original host is missing or not a plain host name")?;
    let path = target.split('?').next().unwrap_or(target);
    let path = normalize_path(path).map_err(|_| "the original path is malformed or ambiguous")?;
    let found = match &fwd.method {
        Some(method) => router.find(&host, method, &path),
        None => router.find_any_method(&host, &path),
    };
    match found {
        Found::Route(route) => Ok(route),
        Found::MethodNotAllowed { .. } => Err("no route for this method on this host and path"),
        Found::MethodUnknown => Err(METHOD_UNKNOWN),
        Found::NoRoute => Err("no route for this host and path"),
    }
}

/// True when `Authorization` uses the `DPoP` scheme (RFC 9449 §7.1; scheme names are
/// case-insensitive).
fn uses_dpop_scheme(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| v.as_bytes().get(..5).is_some_and(|s| s.eq_ignore_ascii_case(b"dpop ")))
}

const DPOP_METHOD_UNKNOWN: Refusal =
    "a DPoP proof is checked against the original method, which is unknown: set X-Forwarded-Method or X-Original-Method";

const METHOD_UNKNOWN: Refusal =
    "the route depends on the method, which is unknown: set X-Forwarded-Method or X-Original-Method";

/// 202 with the caller's identity; none for a public route's anonymous caller. The access
/// token only for a session and only with the route's login's `auth_request_access_token`.
fn accepted(route: &Route, caller: &Caller, login: Option<&LoginService>) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    let (p, token) = match caller {
        Caller::Anonymous => return resp,
        Caller::Bearer { principal, .. } => (principal, None),
        Caller::Session { principal, access_token } => (principal, Some(access_token)),
    };
    let h = resp.headers_mut();
    let v = &p.headers;
    let email = p.forwardable_email(route.insecure_forward_unverified_email);
    for (name, value) in [
        ("x-auth-request-user", v.subject.as_ref()),
        ("x-auth-request-email", email),
        ("x-auth-request-preferred-username", v.username.as_ref()),
        ("x-auth-request-groups", v.groups.as_ref()),
    ] {
        if let Some(value) = value {
            h.insert(HeaderName::from_static(name), value.clone());
        }
    }
    if let (Some(t), true) = (token, login.is_some_and(|l| l.config().auth_request_access_token)) {
        // A token with control characters cannot be a header; leaving it out is safe.
        if let Ok(v) = HeaderValue::from_str(t) {
            h.insert(HeaderName::from_static("x-auth-request-access-token"), v);
        }
    }
    resp
}

/// On a 401 for a login route: where to send the browser to sign in and come back to
/// `original`, the start endpoint of the route's login (under its `public_url` path).
fn sign_in_hint(resp: &mut Response<Body>, route: &Route, original: &Uri) {
    let Some(login) = route.auth.login() else { return };
    let rd = original.to_string();
    let start = login.config().endpoint_path("start");
    if let Ok(v) = HeaderValue::from_str(&format!("{start}?rd={}", form_encode(&rd))) {
        resp.headers_mut().insert(X_AUTH_REQUEST_REDIRECT.clone(), v);
    }
}

/// The one value of header `name`: `None` when absent; refused when repeated or not text (which
/// copy would the proxy have meant?).
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Refusal> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else { return Ok(None) };
    if all.next().is_some() {
        return Err("a forwarding header is repeated");
    }
    first.to_str().map(Some).map_err(|_| "a forwarding header is not plain text")
}

/// `X-Original-URL`: `http(s)://authority/path?query`, or a bare `/path?query`.
fn split_url(url: &str) -> Result<Forwarded<'_>, Refusal> {
    if url.starts_with('/') {
        return Ok(Forwarded { target: Some(target(url)?), ..Forwarded::default() });
    }
    let bad = "X-Original-URL is not an http(s) URL";
    let (scheme, rest) = url.split_once("://").ok_or(bad)?;
    let scheme = ["http", "https"].into_iter().find(|s| s.eq_ignore_ascii_case(scheme)).ok_or(bad)?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], target(&rest[i..])?),
        Some(_) => return Err(bad),
        None => (rest, "/"),
    };
    Ok(Forwarded { scheme: Some(scheme), authority: Some(authority), target: Some(path), method: None })
}

/// A request target in origin form. A fragment never belongs to one, and servers disagree on
/// where a `#` ends the path: refused.
fn target(t: &str) -> Result<&str, Refusal> {
    if !t.starts_with('/') || t.contains('#') {
        return Err("the forwarded URI is not a path");
    }
    Ok(t)
}

/// The host of an authority for routing, by the gateway's one authority parser: lower case,
/// without port and one trailing dot; `None` for anything that is not a host (RFC 3986).
fn route_host(authority: &str) -> Option<String> {
    crate::authority::parse(authority.as_bytes()).ok().map(|a| a.host().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hosts_only() {
        for (raw, host) in [
            ("app.example.com", "app.example.com"),
            ("App.Example.COM:8443", "app.example.com"),
            ("app.example.com.", "app.example.com"),
            ("app.example.com.:443", "app.example.com"),
            ("127.0.0.1:8080", "127.0.0.1"),
            ("[::1]:80", "[::1]"),
            ("[::FFFF:127.0.0.1]", "[::ffff:127.0.0.1]"),
            ("my_host", "my_host"),
        ] {
            assert_eq!(route_host(raw).as_deref(), Some(host), "{raw}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "app.example.com..",
            "admin.example.com#.example.com",
            "admin.example.com?.example.com",
            "admin.example.com/.example.com",
            "admin.example.com\\.example.com",
            "user@admin.example.com",
            "admin.example.com .example.com",
            "admin.example.com%00.example.com",
            "a.example.com, b.example.com",
            "a.com:",
            "a.com:80:80",
            "a.com:123456",
            "a.com:8o",
            "[]",
            "[::1",
            "[::1]x",
            "[::g]",
        ] {
            assert_eq!(route_host(bad), None, "{bad:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// Scheme, authority and target, owned.
    type Parts = (Option<String>, Option<String>, Option<String>);

    fn read(pairs: &[(&'static str, &'static str)]) -> Result<Parts, Refusal> {
        let h = headers(pairs);
        let f = Forwarded::read(&h, None)?;
        Ok((f.scheme.map(str::to_string), f.authority.map(str::to_string), f.target.map(str::to_string)))
    }

    #[test]
    fn forwarded_headers_agree_or_are_refused() {
        let s = |v: &str| Some(v.to_string());
        // ingress-nginx: the absolute URL; its own Host is the auth service's.
        assert_eq!(
            read(&[("x-original-url", "https://App.example.com/a?b=1"), ("host", "tollgate.svc")]),
            Ok((s("https"), s("App.example.com"), s("/a?b=1")))
        );
        // Traefik.
        assert_eq!(
            read(&[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-uri", "/a"),
                ("host", "tollgate")
            ]),
            Ok((s("https"), s("app.example.com"), s("/a")))
        );
        // A path alone, the host from Host.
        assert_eq!(read(&[("x-original-uri", "/a"), ("host", "h:1")]), Ok((None, s("h:1"), s("/a"))));
        assert_eq!(read(&[("x-original-url", "http://h")]), Ok((s("http"), s("h"), s("/"))));
        // Agreeing copies are fine; a client's contradicting copy is not.
        assert!(read(&[("x-original-url", "https://h/a"), ("x-forwarded-uri", "/a"), ("x-forwarded-host", "H:443")])
            .is_ok());
        for bad in [
            &[("x-original-url", "https://app.example.com/private"), ("x-forwarded-uri", "/public/x")][..],
            &[("x-forwarded-uri", "/private"), ("x-original-uri", "/public")],
            &[("x-original-url", "https://app.example.com/"), ("x-forwarded-host", "public.example.com")],
            &[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")],
            &[("x-forwarded-host", "a"), ("x-forwarded-host", "a")],
            &[("x-original-url", "ftp://h/")],
            &[("x-original-url", "https://h?x")],
            &[("x-original-url", "h/x")],
            &[("x-forwarded-uri", "x")],
            &[("x-forwarded-uri", "/public#/../admin")],
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
    }
}
