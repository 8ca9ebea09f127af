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
//! Errors from any step become responses in one place, [`GatewayError::respond`] (in gRPC's
//! form for gRPC requests).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Instant;

use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::dpop::{self, Origin};
use crate::auth::{token, AuthError, Authenticator, RouteBearer};
use crate::authority::{self, Authority};
use crate::body::{Body, LimitedBody};
use crate::client_cert::{CertHeader, Presented, Thumbprint};
use crate::config::dpop::DpopMode;
use crate::config::{Config, IncomingAuthorization, IpRange};
use crate::error::GatewayError;
use crate::login::{is_browser, Logins};
use crate::metrics::{Metrics, RouteMetrics};
use crate::path::normalize_path;
use crate::router::{Found, Router};
use crate::telemetry::{RequestSpan, Telemetry};
use crate::upstream::credentials::Credentials;
use crate::upstream::headers::{clean_response, join_cookies, Protected};
use crate::upstream::proxy::Proxy;
use crate::upstream::{challenge, grpc};

mod caller;
pub mod forward_auth;
mod identity;
pub mod request;
pub mod request_id;
mod route;
mod upstream;

pub(crate) use caller::authorize;
pub use caller::{Caller, Permitted};
use request::{content_length, hidden_token_sources, upstream_uri};
use request_id::{RequestIds, X_REQUEST_ID};
pub use route::{Auth, Route, UpstreamToken};
use upstream::{send, Head, Replay, RetryCtx};

/// What the gateway knows about one client connection, computed once per connection.
#[derive(Debug)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer is a configured trusted proxy: its `X-Forwarded-*` headers are believed.
    pub trusted: bool,
    /// The peer address as a header value, ready for `X-Forwarded-For`.
    peer_header: HeaderValue,
    /// The SHA-256 of the client certificate presented in the TLS handshake (computed once,
    /// after it), for certificate-bound tokens.
    pub client_cert: Option<Thumbprint>,
    /// The connection's first `Host`, checked once.
    host: authority::Remembered,
}

impl Conn {
    pub fn new(peer: SocketAddr, tls: bool, trusted_proxies: &[IpRange]) -> Conn {
        let ip = peer.ip();
        let trusted = trusted_proxies.iter().any(|r| r.contains(ip));
        let peer_header = HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"));
        Conn { peer, tls, trusted, peer_header, client_cert: None, host: authority::Remembered::default() }
    }

    /// The connection's client certificate, from its TLS handshake.
    pub fn with_client_cert(mut self, cert: Option<Thumbprint>) -> Conn {
        self.client_cert = cert;
        self
    }
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
    /// The live routes, each with handles to what it refers to.
    router: Arc<Router<Route>>,
    auth: Arc<Authenticator>,
    logins: Arc<Logins>,
    credentials: Arc<Credentials>,
    trusted_proxies: Vec<IpRange>,
    /// `server.client_cert_header`, read only from trusted proxies.
    cert_header: Option<CertHeader>,
    /// `server.forward_auth_preflight`: forward-auth answers CORS preflights.
    forward_auth_preflight: bool,
    protected: Protected,
    metrics: Metrics,
    /// For requests no route took (each route has its own, `Route::metrics`).
    no_route_metrics: RouteMetrics,
    access_log: bool,
    /// `[telemetry]`: a span per request; `None` costs nothing.
    telemetry: Option<Telemetry>,
}

impl Gateway {
    pub fn new(
        config: &Config,
        router: Arc<Router<Route>>,
        auth: Arc<Authenticator>,
        logins: Arc<Logins>,
        credentials: Arc<Credentials>,
        metrics: Metrics,
        telemetry: Option<Telemetry>,
    ) -> Gateway {
        // Every header the gateway sets from configuration is protected from client copies.
        let claim_headers = config.routes.iter().flat_map(|r| {
            let moved = r.upstream_token.as_ref().and_then(|t| match &t.incoming {
                IncomingAuthorization::MoveTo(h) => Some(h.clone()),
                IncomingAuthorization::Drop => None,
            });
            r.claim_headers.iter().map(|(h, _)| h.clone()).chain(moved)
        });
        let no_route_metrics = RouteMetrics::new(&metrics, "-");
        let mut protected = Protected::configured(
            claim_headers.collect::<Vec<_>>().into_iter(),
            &config.server.strip_request_headers,
            &config.server.keep_request_headers,
        );
        let cert_header = config.server.client_cert_header.clone();
        if let Some(h) = &cert_header {
            protected = protected.forwarding_from_trusted(&h.name, &config.server.strip_request_headers);
        }
        Gateway {
            no_route_metrics,
            router,
            auth,
            logins,
            credentials,
            protected,
            cert_header,
            forward_auth_preflight: config.server.forward_auth_preflight,
            metrics,
            access_log: config.log.access_log,
            telemetry,
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

    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.telemetry.as_ref()
    }

    async fn handle(&self, req: Request<Incoming>, conn: &Conn, proxy: &Proxy, ids: &RequestIds) -> Response<Body> {
        let started = Instant::now();
        // Decremented on drop too: a request whose client went away still leaves the gauge.
        let _in_flight = InFlight::new(&self.metrics.in_flight);
        let request_id = ids.accept_or_generate(req.headers());
        let method = self.access_log.then(|| req.method().clone());
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        let grpc = grpc::is_grpc(req.headers());
        let trace = self.telemetry.as_ref().map(|t| t.request(req.headers(), req.method(), req.uri().path()));
        // Step 0, before anything reads a host: the one authority of this request.
        let authority = conn.host.of_request(&req);
        let (route, result) = match (&authority, &trace) {
            (Ok(a), None) => self.pipeline(req, a, conn, proxy, &request_id, None).await,
            // Identity-provider calls made on the way find the request's span in the context.
            (Ok(a), Some(t)) => {
                use opentelemetry::context::FutureExt;
                let work = self.pipeline(req, a, conn, proxy, &request_id, Some(t));
                work.with_context(t.context().clone()).await
            }
            (Err(e), _) => (None, Err(GatewayError::BadRequest(e.reason()))),
        };
        let route_name = route.map_or("-", |r| r.name.as_str());
        // A gRPC refusal goes out as HTTP 200; metrics and the access log keep the HTTP status
        // it stands for.
        let mut refused = None;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                if matches!(e.status(), StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT) {
                    self.metrics.upstream_errors.with_label_values(&[route_name, e.kind()]).inc();
                    tracing::warn!(route = route_name, request_id = request_id.to_str().unwrap_or("-"), error = %e, cause = ?std::error::Error::source(&e), "upstream failure");
                }
                refused = Some(e.status());
                e.respond(route.map(|r| &**r), grpc)
            }
        };
        let status = refused.unwrap_or(resp.status());
        if let Some(r) = route {
            crate::cors::respond(r, origin.as_ref(), resp.headers_mut());
        }
        resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id.clone());
        let elapsed = started.elapsed();
        let stats = route.map_or(&self.no_route_metrics, |r| &r.metrics);
        stats.record(&self.metrics, status, elapsed.as_secs_f64());
        let mut trace_hex = [0u8; 32];
        // Written only for the access log.
        let trace_id = match (&method, &trace) {
            (Some(_), Some(t)) => Some(crate::telemetry::traceparent::trace_id_hex(t.trace_id(), &mut trace_hex)),
            _ => None,
        };
        if let Some(method) = method {
            tracing::info!(
                target: "tollgate::access",
                route = route_name,
                host = authority.as_ref().map_or("-", Authority::as_str),
                method = %method,
                status = status.as_u16(),
                latency_ms = elapsed.as_secs_f64() * 1e3,
                peer = %conn.peer,
                request_id = request_id.to_str().unwrap_or("-"),
                trace_id = trace_id.unwrap_or("-"),
                "request"
            );
        }
        if let Some(t) = trace {
            t.finish(route.map(|r| r.name.as_str()), authority.as_ref().ok(), status);
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
        trace: Option<&RequestSpan<'_>>,
    ) -> (Option<&Route>, Result<Response<Body>, GatewayError>) {
        // Forward-auth judges another proxy's request by its route, with or without [login].
        if req.uri().path() == forward_auth::PATH {
            return (None, Ok(Box::pin(forward_auth::answer(self, req, authority, conn)).await));
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
            let caller = self.authenticate(route, &req, conn, origin, Some(own), &mut set_cookie).await;
            let permitted = caller.and_then(|c| authorize(route, c, req.headers()));
            if let Some(t) = trace {
                t.auth_outcome(auth_outcome(&permitted));
            }
            self.forward(req, permitted?, &path, authority, conn, proxy, request_id, trace).await
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

    pub(crate) fn forward_auth_preflight(&self) -> bool {
        self.forward_auth_preflight
    }

    pub(crate) fn router(&self) -> &Router<Route> {
        &self.router
    }

    /// Step 2: the caller's identity, from the credential the route accepts. A browser without
    /// one is sent to sign in and come back to `sign_in`; with `None` it gets 401 like an API.
    /// `origin`: the scheme and authority the client addressed (what a DPoP proof names).
    pub(crate) async fn authenticate<B>(
        &self,
        route: &Route,
        req: &Request<B>,
        conn: &Conn,
        origin: Origin<'_>,
        sign_in: Option<&str>,
        set_cookie: &mut HeaderMap,
    ) -> Result<Caller, GatewayError> {
        match &route.auth {
            Auth::None => Ok(Caller::Anonymous),
            Auth::Bearer(b) => self.bearer(b, req, conn, origin).await,
            Auth::Login(login) | Auth::LoginOrBearer(login, _) => {
                if let Some(s) = login.session(req.headers()).await? {
                    set_cookie.extend(s.set_cookie);
                    return Ok(Caller::Session { principal: s.principal, access_token: s.access_token });
                }
                if let Auth::LoginOrBearer(_, b) = &route.auth {
                    if token::extract(req.headers(), req.uri(), &b.sources, b.dpop.mode != DpopMode::Disabled)?
                        .is_some()
                    {
                        return self.bearer(b, req, conn, origin).await;
                    }
                }
                if let Some(rd) = sign_in.filter(|_| is_browser(req.headers())) {
                    return Err(GatewayError::Respond(Box::new(login.begin_login(req.headers(), rd))));
                }
                Err(AuthError::MissingToken.into())
            }
        }
    }

    async fn bearer<B>(
        &self,
        bearer: &RouteBearer,
        req: &Request<B>,
        conn: &Conn,
        origin: Origin<'_>,
    ) -> Result<Caller, GatewayError> {
        let dpop = bearer.dpop.mode != DpopMode::Disabled;
        let presented =
            token::extract(req.headers(), req.uri(), &bearer.sources, dpop)?.ok_or(AuthError::MissingToken)?;
        let request = dpop::Request {
            headers: req.headers(),
            method: req.method(),
            path: req.uri().path(),
            origin,
            cert: self.presented_cert(conn, req.headers()),
        };
        let principal = self.auth.authenticate_request(bearer, &presented, &request).await?;
        Ok(Caller::Bearer { principal, token: presented.token.into_owned(), in_header: presented.in_header })
    }

    /// The request's client certificate, as far as it can be known: the connection's, or the
    /// configured header when the peer is a trusted proxy (read only if a bound token needs it).
    pub(crate) fn presented_cert<'r>(&'r self, conn: &'r Conn, headers: &'r HeaderMap) -> Presented<'r> {
        let header = self.cert_header.as_ref().filter(|_| conn.trusted).map(|h| (h, headers));
        Presented::new(conn.client_cert.as_ref(), header)
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
        trace: Option<&RequestSpan<'_>>,
    ) -> Result<Response<Body>, GatewayError> {
        let Permitted { route, caller } = permitted;
        if let (Some(limit), Some(len)) = (route.max_body, content_length(req.headers())) {
            if len > limit {
                return Err(GatewayError::PayloadTooLarge);
            }
        }
        let http2 = route.upstream.protocol.is_http2();
        // Hop-by-hop, so cleaned away below; an HTTP/2 upstream gets it back (gRPC needs it).
        let te_trailers = http2 && grpc::asks_for_trailers(req.headers());
        let deadline = match http2 && grpc::is_grpc(req.headers()) {
            true => grpc::timeout(req.headers()).filter(|t| *t < route.timeout),
            false => None,
        };
        let upgrade = self.protected.clean_request(req.headers_mut(), conn.trusted);
        if upgrade.is_some() && http2 {
            return Err(GatewayError::BadRequest(
                "WebSocket upgrades need an HTTP/1.1 upstream; this route's upstream_protocol is HTTP/2",
            ));
        }
        join_cookies(req.headers_mut());
        self.logins.strip_cookies(req.headers_mut());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // A bearer token the route must not forward leaves with its query parameter or cookie.
        let hidden = hidden_token_sources(route);
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
        // The token sent, for a rejection of it to be recognised.
        let sent_token = match &route.upstream_token {
            Some(t) => Some(
                match t.exchange {
                    false => self.credentials.authorization(&t.client).await,
                    true => self.credentials.exchanged(&t.client, caller.subject()).await,
                }
                .map_err(GatewayError::UpstreamToken)?,
            ),
            None => None,
        };
        // What a retry with a new token needs (see `upstream_token_rejected`): the method, the
        // target and the cleaned client headers, from which it builds its own head as this
        // attempt does below. Only where one may happen: bodiless, idempotent, no upgrade.
        let again = match (&sent_token, client_upgrade.is_none()) {
            (Some(_), true) if parts.method.is_idempotent() && http_body::Body::is_end_stream(&body) => {
                Some(Replay { method: parts.method.clone(), uri: uri.clone(), headers: parts.headers.clone() })
            }
            _ => None,
        };
        let head = Head { route, conn, authority, request_id, caller: &caller, te_trailers };
        head.build(&mut parts, uri, sent_token.as_ref(), upgrade)?;
        let call = trace.and_then(|t| t.upstream(route, &mut parts.headers, 0));
        let upstream_req = Request::from_parts(parts, LimitedBody::new(body, route.max_body));
        let sent = send(proxy, route, upstream_req, deadline).await;
        if let (Some(t), Some(call)) = (trace, call) {
            t.upstream_done(call, sent.as_ref().map(Response::status).map_err(GatewayError::kind));
        }
        let mut resp = sent?;
        if let (Some(t), Some(used)) = (&route.upstream_token, &sent_token) {
            if resp.status() == StatusCode::UNAUTHORIZED && challenge::invalid_token(resp.headers()) {
                let retry = RetryCtx { head, proxy, deadline, trace };
                resp = Box::pin(self.upstream_token_rejected(t, used, again, resp, retry)).await?;
            }
        }
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(GatewayError::BadRequest("upstream switched protocols unasked"));
            };
            let protocol = resp.headers().get(UPGRADE).cloned();
            crate::upstream::tunnel::open(client_upgrade, hyper::upgrade::on(&mut resp), route.name.clone());
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

/// The `tollgate.auth.outcome` of a request that reached authentication.
fn auth_outcome(permitted: &Result<Permitted<'_>, GatewayError>) -> &'static str {
    match permitted {
        Ok(p) => match p.caller {
            Caller::Anonymous => "anonymous",
            Caller::Bearer { .. } => "bearer",
            Caller::Session { .. } => "session",
        },
        Err(GatewayError::Respond(r)) if r.status().is_redirection() => "login_redirect",
        Err(e) => match e.status() {
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::BAD_REQUEST => "invalid_request",
            _ => "unavailable",
        },
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
