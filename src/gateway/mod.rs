//! The request pipeline, top to bottom:
//!
//! 0. authority = the one host of the request (Host, target, :authority agree) → 400
//! 1. route     = router.find(host, method, normalised path)  → 400 bad path, 404 no route, 405
//!    a CORS preflight from an allowed origin is answered here  → 204 (`cors.rs`)
//! 2. caller    = authenticate(route, request)                 → 401 (RFC 6750), 400, 503
//! 3. permitted = authorize(route, caller)                     → 403
//! 4. upstream request: hop-by-hop and client-sent gateway headers dropped, forwarding headers set
//! 5. forward over the worker's pooled client, bodies streamed, upgrades tunnelled
//!
//! Errors from any step become responses in one place, [`GatewayError::into_response`].

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Instant;

use http::header::{HeaderMap, HeaderValue, CONNECTION, HOST, UPGRADE};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::auth::dpop::{self, Origin};
use crate::auth::{rules, token, AuthError, Authenticator, Principal};
use crate::authority::{self, Authority};
use crate::body::{Body, LimitedBody};
use crate::config::dpop::DpopMode;
use crate::config::{Bearer, Config, IncomingAuthorization, IpRange, Route, RouteAuth};
use crate::error::GatewayError;
use crate::login::{is_browser, page, Logins};
use crate::metrics::{Metrics, RouteMetrics};
use crate::path::normalize_path;
use crate::router::{Found, Router};
use crate::upstream::credentials::Credentials;
use crate::upstream::headers::{clean_response, join_cookies, Protected};
use crate::upstream::proxy::{self, Proxy};

pub mod forward_auth;
mod identity;
pub mod request;
pub mod request_id;

use identity::set_identity;
use request::{content_length, hidden_token_sources, set_forwarding, upstream_uri};
use request_id::{RequestIds, X_REQUEST_ID};

/// What the gateway knows about one client connection, computed once per connection.
#[derive(Debug)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer is a configured trusted proxy: its `X-Forwarded-*` headers are believed.
    pub trusted: bool,
    /// The peer address as a header value, ready for `X-Forwarded-For`.
    peer_header: HeaderValue,
}

impl Conn {
    pub fn new(peer: SocketAddr, tls: bool, trusted_proxies: &[IpRange]) -> Conn {
        let ip = peer.ip();
        let trusted = trusted_proxies.iter().any(|r| r.contains(ip));
        let peer_header = HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"));
        Conn { peer, tls, trusted, peer_header }
    }
}

/// Who called, as far as the route cares: nobody in particular (public routes) or a principal
/// with the credential it presented.
pub enum Caller {
    Anonymous,
    /// `in_header`: the token came in `Authorization` (not a query parameter or cookie).
    Bearer {
        principal: Arc<Principal>,
        token: String,
        in_header: bool,
    },
    /// A browser session; its access token may be passed upstream when the route asks.
    Session {
        principal: Arc<Principal>,
        access_token: Arc<str>,
    },
}

impl Caller {
    fn principal(&self) -> Option<&Arc<Principal>> {
        match self {
            Caller::Anonymous => None,
            Caller::Bearer { principal, .. } | Caller::Session { principal, .. } => Some(principal),
        }
    }
}

/// Proof that a request passed authorization for a route; only [`authorize`] builds it, and
/// forwarding requires it, so an unchecked request cannot reach an upstream.
pub struct Permitted<'r> {
    route: &'r Route,
    caller: Caller,
}

impl Permitted<'_> {
    pub(crate) fn caller(&self) -> &Caller {
        &self.caller
    }
}

/// Step 3: the route's rules over the caller. Public routes have no rules (config refuses them).
/// A signed-in browser that fails them gets a page, never a redirect back to sign-in (a loop).
pub(crate) fn authorize<'r>(
    route: &'r Route,
    caller: Caller,
    headers: &HeaderMap,
) -> Result<Permitted<'r>, GatewayError> {
    if let Some(principal) = caller.principal() {
        if let Err(e) = rules::check(&route.rules, principal) {
            if matches!(caller, Caller::Session { .. }) && is_browser(headers) {
                let who = principal.email.as_deref().unwrap_or(&principal.subject);
                let msg = format!("You are signed in as {who}, but this page needs more: {e}.");
                return Err(GatewayError::Respond(Box::new(page(StatusCode::FORBIDDEN, "Access denied", &msg))));
            }
            return Err(e.into());
        }
    }
    Ok(Permitted { route, caller })
}

/// One worker's front door: the current configuration's [`Gateway`] (read once per request;
/// a reload replaces it while requests in flight finish on the one they started with) and
/// this worker's own upstream pool and request ids.
pub struct Worker {
    current: Arc<ArcSwap<Gateway>>,
    proxy: Proxy,
    ids: RequestIds,
}

impl Worker {
    pub fn new(current: Arc<ArcSwap<Gateway>>, proxy: Proxy) -> Worker {
        Worker { current, proxy, ids: RequestIds::new() }
    }

    /// The configuration a new connection starts with (for its trusted-proxy check).
    pub fn current(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Handles one request end to end; never fails, every error is a response.
    pub async fn handle(&self, req: Request<Incoming>, conn: &Conn) -> Response<Body> {
        let gateway = self.current.load_full();
        gateway.handle(req, conn, &self.proxy, &self.ids).await
    }
}

/// One configuration's pipeline for one listener: its routes and everything they refer to,
/// shared by every worker and replaced as a whole on reload.
pub struct Gateway {
    router: Arc<Router>,
    auth: Arc<Authenticator>,
    logins: Arc<Logins>,
    credentials: Arc<Credentials>,
    trusted_proxies: Vec<IpRange>,
    protected: Protected,
    metrics: Metrics,
    /// Per-route handles by `Route::id` (its position in the route table), and one for "no route".
    route_metrics: Vec<RouteMetrics>,
    no_route_metrics: RouteMetrics,
    access_log: bool,
}

impl Gateway {
    pub fn new(
        config: &Config,
        router: Arc<Router>,
        auth: Arc<Authenticator>,
        logins: Arc<Logins>,
        credentials: Arc<Credentials>,
        metrics: Metrics,
    ) -> Gateway {
        // Every header the gateway sets from configuration is protected from client copies.
        let claim_headers = config.routes.iter().flat_map(|r| {
            let moved = r.upstream_token.as_ref().and_then(|t| match &t.incoming {
                IncomingAuthorization::MoveTo(h) => Some(h.clone()),
                IncomingAuthorization::Drop => None,
            });
            r.claim_headers.iter().map(|(h, _)| h.clone()).chain(moved)
        });
        let route_metrics = router.routes().iter().map(|r| RouteMetrics::new(&metrics, &r.name)).collect();
        let no_route_metrics = RouteMetrics::new(&metrics, "-");
        Gateway {
            route_metrics,
            no_route_metrics,
            router,
            auth,
            logins,
            credentials,
            protected: Protected::configured(
                claim_headers.collect::<Vec<_>>().into_iter(),
                &config.server.strip_request_headers,
                &config.server.keep_request_headers,
            ),
            metrics,
            access_log: config.log.access_log,
            trusted_proxies: config.server.trusted_proxies.clone(),
        }
    }

    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    pub fn trusted_proxies(&self) -> &[IpRange] {
        &self.trusted_proxies
    }

    async fn handle(&self, req: Request<Incoming>, conn: &Conn, proxy: &Proxy, ids: &RequestIds) -> Response<Body> {
        let started = Instant::now();
        // Decremented on drop too: a request whose client went away still leaves the gauge.
        let _in_flight = InFlight::new(&self.metrics.in_flight);
        let request_id = ids.accept_or_generate(req.headers());
        let method = self.access_log.then(|| req.method().clone());
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        // Step 0, before anything reads a host: the one authority of this request.
        let authority = authority::of_request(&req);
        let (route, result) = match &authority {
            Ok(a) => self.pipeline(req, a, conn, proxy, &request_id).await,
            Err(e) => (None, Err(GatewayError::BadRequest(e.reason()))),
        };
        let route_name = route.map_or("-", |r| r.name.as_str());
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                if matches!(e.status(), StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT) {
                    self.metrics.upstream_errors.with_label_values(&[route_name, e.kind()]).inc();
                    tracing::warn!(route = route_name, request_id = ?request_id, error = %e, cause = ?std::error::Error::source(&e), "upstream failure");
                }
                e.into_response(route)
            }
        };
        if let Some(r) = route {
            crate::cors::respond(r, origin.as_ref(), resp.headers_mut());
        }
        resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id.clone());
        let elapsed = started.elapsed();
        let stats = route.and_then(|r| self.route_metrics.get(r.id)).unwrap_or(&self.no_route_metrics);
        stats.record(&self.metrics, resp.status(), elapsed.as_secs_f64());
        if let Some(method) = method {
            tracing::info!(
                target: "tollgate::access",
                route = route_name,
                host = authority.as_ref().map_or("-", Authority::as_str),
                method = %method,
                status = resp.status().as_u16(),
                latency_ms = elapsed.as_secs_f64() * 1e3,
                peer = %conn.peer,
                request_id = request_id.to_str().unwrap_or("-"),
                "request"
            );
        }
        resp
    }

    async fn pipeline(
        &self,
        req: Request<Incoming>,
        authority: &Authority,
        conn: &Conn,
        proxy: &Proxy,
        request_id: &HeaderValue,
    ) -> (Option<&Route>, Result<Response<Body>, GatewayError>) {
        // Forward-auth judges another proxy's request by its route, with or without [login].
        if req.uri().path() == forward_auth::PATH {
            return (None, Ok(Box::pin(forward_auth::answer(self, req, authority)).await));
        }
        // Built-in endpoints under a login's `{public_url path}/oauth2/` come before any route.
        let req = match self.logins.owner(authority, req.uri().path()) {
            // Boxed, as the other rare or large steps below: the request future stays small,
            // and it is moved on every request (it was 12 KB with these inline).
            Some(login) => match Box::pin(login.endpoint(req)).await {
                Ok(resp) => return (None, Ok(resp)),
                Err(req) => req,
            },
            None => req,
        };
        // The URI is cloned (reference counts) so that the normalised path may borrow from it
        // while the request moves on.
        let uri = req.uri().clone();
        let path = match normalize_path(uri.path()) {
            Ok(p) => p,
            Err(e) => return (None, Err(e.into())),
        };
        // Before authentication: a preflight never carries credentials.
        if let Some((route, resp)) =
            crate::cors::preflight(&self.router, authority.host(), &path, req.method(), req.headers())
        {
            return (Some(route), Ok(resp));
        }
        let route = match self.router.find(authority.host(), req.method(), &path) {
            Found::Route(route) => route,
            Found::MethodNotAllowed { allow, route } => {
                return (Some(route), Err(GatewayError::MethodNotAllowed(allow.clone())))
            }
            Found::NoRoute | Found::MethodUnknown => return (None, Err(GatewayError::NoRoute)),
        };
        let mut set_cookie = HeaderMap::new();
        let result = async {
            let own = uri.path_and_query().map_or("/", |pq| pq.as_str());
            let origin = Origin { tls: conn.tls, trusted_proxy: conn.trusted, authority: authority.as_str() };
            let caller = self.authenticate(route, &req, origin, Some(own), &mut set_cookie).await?;
            let permitted = authorize(route, caller, req.headers())?;
            self.forward(req, permitted, &path, authority, conn, proxy, request_id).await
        }
        .await;
        // Cookies from a refresh must reach the browser whatever happened next.
        let result = match result {
            Ok(mut resp) => {
                crate::cors::strip_upstream(route, resp.headers_mut());
                resp.headers_mut().extend(set_cookie);
                Ok(resp)
            }
            Err(e) if !set_cookie.is_empty() => {
                let mut resp = e.into_response(Some(route));
                resp.headers_mut().extend(set_cookie);
                Ok(resp)
            }
            Err(e) => Err(e),
        };
        (Some(route), result)
    }

    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    pub(crate) fn logins(&self) -> &Logins {
        &self.logins
    }

    /// Step 2: the caller's identity, from the credential the route accepts. A browser without
    /// one is sent to sign in and come back to `sign_in`; with `None` it gets 401 like an API.
    /// `origin`: the scheme and authority the client addressed (what a DPoP proof names).
    pub(crate) async fn authenticate<B>(
        &self,
        route: &Route,
        req: &Request<B>,
        origin: Origin<'_>,
        sign_in: Option<&str>,
        set_cookie: &mut HeaderMap,
    ) -> Result<Caller, GatewayError> {
        match &route.auth {
            RouteAuth::None => Ok(Caller::Anonymous),
            RouteAuth::Bearer(b) => self.bearer(b, req, origin).await,
            RouteAuth::Login | RouteAuth::LoginOrBearer(_) => {
                let login = self.logins.for_route(route).ok_or(AuthError::Unavailable("login is not configured"))?;
                if let Some(s) = login.session(req.headers()).await? {
                    set_cookie.extend(s.set_cookie);
                    return Ok(Caller::Session { principal: s.principal, access_token: s.access_token });
                }
                if let RouteAuth::LoginOrBearer(b) = &route.auth {
                    if token::extract(req.headers(), req.uri(), &b.sources, b.dpop.mode != DpopMode::Disabled)?
                        .is_some()
                    {
                        return self.bearer(b, req, origin).await;
                    }
                }
                if let Some(rd) = sign_in.filter(|_| is_browser(req.headers())) {
                    return Err(GatewayError::Respond(Box::new(login.begin_login(req.headers(), rd))));
                }
                Err(AuthError::MissingToken.into())
            }
        }
    }

    async fn bearer<B>(&self, bearer: &Bearer, req: &Request<B>, origin: Origin<'_>) -> Result<Caller, GatewayError> {
        let dpop = bearer.dpop.mode != DpopMode::Disabled;
        let presented =
            token::extract(req.headers(), req.uri(), &bearer.sources, dpop)?.ok_or(AuthError::MissingToken)?;
        let request = dpop::Request { headers: req.headers(), method: req.method(), path: req.uri().path(), origin };
        let principal = self.auth.authenticate_request(bearer, &presented, &request).await?;
        let token = presented.token;
        let in_header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.ends_with(&*token));
        Ok(Caller::Bearer { principal, token: token.into_owned(), in_header })
    }

    /// Steps 4 and 5.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        permitted: Permitted<'_>,
        path: &str,
        authority: &Authority,
        conn: &Conn,
        proxy: &Proxy,
        request_id: &HeaderValue,
    ) -> Result<Response<Body>, GatewayError> {
        let Permitted { route, caller } = permitted;
        if let (Some(limit), Some(len)) = (route.max_body, content_length(req.headers())) {
            if len > limit {
                return Err(GatewayError::PayloadTooLarge);
            }
        }
        let upgrade = self.protected.clean_request(req.headers_mut(), conn.trusted);
        join_cookies(req.headers_mut());
        self.logins.strip_cookies(req.headers_mut());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // A bearer token the route must not forward leaves with its query parameter or cookie.
        let hidden = hidden_token_sources(route, &caller);
        let stripped;
        let query = match (parts.uri.query(), hidden.queries.is_empty()) {
            (Some(q), false) => {
                stripped = crate::util::strip_query_params(q, &hidden.queries);
                stripped.as_deref()
            }
            (q, _) => q,
        };
        let uri = upstream_uri(route, path, &parts.uri, query)?;
        if !hidden.cookies.is_empty() {
            crate::util::strip_cookies(&mut parts.headers, |n| hidden.cookies.contains(&n));
        }
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        let headers = &mut parts.headers;
        set_forwarding(headers, conn, authority.header_value());
        headers.insert(X_REQUEST_ID.clone(), request_id.clone());
        set_identity(headers, route, &caller);
        if let Some(t) = &route.upstream_token {
            let minted = self.credentials.authorization(t.client).await.map_err(GatewayError::UpstreamToken)?;
            if let Some(theirs) = headers.remove(http::header::AUTHORIZATION) {
                if let IncomingAuthorization::MoveTo(name) = &t.incoming {
                    headers.insert(name.clone(), theirs);
                }
            }
            headers.insert(http::header::AUTHORIZATION, minted);
        }
        let host = match route.preserve_host {
            true => authority.header_value().clone(),
            false => route.upstream.host_header.clone(),
        };
        headers.insert(HOST, host);
        if let Some(protocol) = upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, protocol);
        }
        let upstream_req = Request::from_parts(parts, LimitedBody::new(body, route.max_body));
        let mut resp = proxy.send(&route.upstream, upstream_req, route.timeout).await?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(GatewayError::BadRequest("upstream switched protocols unasked"));
            };
            let protocol = resp.headers().get(UPGRADE).cloned();
            proxy::tunnel(client_upgrade, hyper::upgrade::on(&mut resp), route.name.clone());
            clean_response(resp.headers_mut());
            if let Some(p) = protocol {
                resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("upgrade"));
                resp.headers_mut().insert(UPGRADE, p);
            }
        } else {
            clean_response(resp.headers_mut());
        }
        Ok(resp.map(Body::Stream))
    }
}

struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> InFlight<'a> {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
