//! Step 5's upstream call: the request head every attempt is built from (forwarding headers,
//! identity, the upstream token, `Host` or `:authority`), its sending under the route's or a
//! gRPC deadline, and the one retry after the upstream rejected the upstream token.

use http::header::{HeaderMap, HeaderValue, CONNECTION, HOST, TE, UPGRADE};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::identity::set_identity;
use super::request::set_forwarding;
use super::request_id::X_REQUEST_ID;
use super::{Caller, Conn, Gateway, Route, UpstreamToken};
use crate::authority::Authority;
use crate::body::LimitedBody;
use crate::config::IncomingAuthorization;
use crate::error::GatewayError;
use crate::telemetry::RequestSpan;
use crate::upstream::challenge;
use crate::upstream::proxy::{self, Proxy};

/// What every upstream request head of one client request is built from (see [`Head::build`]).
#[derive(Clone, Copy)]
pub(super) struct Head<'a> {
    pub route: &'a Route,
    pub conn: &'a Conn,
    pub authority: &'a Authority,
    pub request_id: &'a HeaderValue,
    pub caller: &'a Caller,
    /// The client asked for trailers (`te: trailers`) and the upstream speaks HTTP/2.
    pub te_trailers: bool,
}

/// The parts of a client request a retry is built from again.
pub(super) struct Replay {
    pub method: http::Method,
    /// The upstream target in origin form, hidden token parameters stripped.
    pub uri: http::Uri,
    /// The client's headers after cleaning (hop-by-hop, protected, hidden cookies removed).
    pub headers: HeaderMap,
}

impl Head<'_> {
    /// The upstream request's head from `parts` (the method and the cleaned client headers;
    /// their URI is replaced) and the origin-form target `uri`: forwarding headers, the request
    /// id, the caller's identity, the upstream token `minted` (when the route sends one),
    /// `:authority` or `Host`, and the upgrade asked for. The first attempt and a retry both go
    /// through here; `traceparent` is set after, by each attempt's own span.
    pub(super) fn build(
        &self,
        parts: &mut http::request::Parts,
        uri: http::Uri,
        minted: Option<&HeaderValue>,
        upgrade: Option<HeaderValue>,
    ) -> Result<(), GatewayError> {
        let route = self.route;
        let headers = &mut parts.headers;
        set_forwarding(headers, self.conn, self.authority.header_value());
        headers.insert(X_REQUEST_ID.clone(), self.request_id.clone());
        set_identity(headers, route, self.caller);
        if let (Some(t), Some(minted)) = (&route.upstream_token, minted) {
            // A token-exchange route sends only the exchanged token: the caller's Authorization
            // is dropped below, its other copies were refused by the configuration (moved
            // Authorization, X-Forwarded-Access-Token) or hidden with the query and cookies.
            // The caller's DPoP proof goes with the caller's token, or not at all: never beside
            // a token it does not prove.
            if !matches!(t.incoming, IncomingAuthorization::MoveTo(_)) {
                headers.remove(&crate::auth::dpop::DPOP);
            }
            if let Some(theirs) = headers.remove(http::header::AUTHORIZATION) {
                if let IncomingAuthorization::MoveTo(name) = &t.incoming {
                    headers.insert(name.clone(), theirs);
                }
            }
            headers.insert(http::header::AUTHORIZATION, minted.clone());
        }
        let (version, uri) = if route.upstream.protocol.is_http2() {
            if self.te_trailers {
                headers.insert(TE, HeaderValue::from_static("trailers"));
            }
            // The authority travels as `:authority`; an HTTP/1.1 client's `Host` must not
            // reach the upstream beside it.
            headers.remove(HOST);
            (Version::HTTP_2, http2_uri(route, self.authority, uri)?)
        } else {
            let host = match route.preserve_host {
                true => self.authority.header_value().clone(),
                false => route.upstream.host_header.clone(),
            };
            headers.insert(HOST, host);
            (Version::HTTP_11, uri)
        };
        if let Some(protocol) = upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, protocol);
        }
        parts.uri = uri;
        parts.version = version;
        Ok(())
    }
}

/// What a retry after a rejected upstream token needs of the first attempt.
pub(super) struct RetryCtx<'a> {
    pub head: Head<'a>,
    pub proxy: &'a Proxy,
    pub deadline: Option<std::time::Duration>,
    pub trace: Option<&'a RequestSpan<'a>>,
}

impl Gateway {
    /// The upstream answered `401 invalid_token` to the token tollgate sent (`used`): that
    /// token is dropped (when still held, see `Credentials::rejected`) and a request that can
    /// be sent again (`again`: bodiless, idempotent, no upgrade) goes once more with the new
    /// token, its head built anew from the client's request as the first attempt's was, under
    /// its own upstream span (`http.request.resend_count` 1, its own `traceparent`). Otherwise,
    /// or when no other token is to be had, the upstream's 401 is the answer and the next
    /// request gets the new token. Never more than one retry.
    pub(super) async fn upstream_token_rejected(
        &self,
        t: &UpstreamToken,
        used: &HeaderValue,
        again: Option<Replay>,
        first: Response<Incoming>,
        ctx: RetryCtx<'_>,
    ) -> Result<Response<Incoming>, GatewayError> {
        let subject = ctx.head.caller.subject();
        let renewed = self.credentials.rejected(&t.client, t.exchange, subject, used).await;
        let Some(replay) = again.filter(|_| renewed) else { return Ok(first) };
        let minted = match t.exchange {
            false => self.credentials.authorization(&t.client).await,
            true => self.credentials.exchanged(&t.client, subject).await,
        };
        let Some(minted) = minted.ok().filter(|m| m != used) else { return Ok(first) };
        drop(first);
        self.credentials.retried(&t.client);
        let route = ctx.head.route;
        // A request of its own, as `proxy::replayable` makes for a failed reused connection.
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = replay.method;
        parts.headers = replay.headers;
        ctx.head.build(&mut parts, replay.uri, Some(&minted), None)?;
        let call = ctx.trace.and_then(|tr| tr.upstream(route, &mut parts.headers, 1));
        let req = Request::from_parts(parts, LimitedBody::empty());
        let sent = send(ctx.proxy, route, req, ctx.deadline).await;
        // Its own span has its time; the request span's `tollgate.upstream.duration_ms` stays
        // the first attempt's (set once: a span keeps every value set, duplicates included).
        if let Some(call) = call {
            call.finish(sent.as_ref().map(Response::status).map_err(GatewayError::kind));
        }
        let resp = sent?;
        if resp.status() == StatusCode::UNAUTHORIZED && challenge::invalid_token(resp.headers()) {
            // Counted, and dropped when the floor allows; not retried again.
            self.credentials.rejected(&t.client, t.exchange, subject, &minted).await;
        }
        Ok(resp)
    }
}

/// Step 5's call, its timeout the route's or a shorter gRPC deadline.
pub(super) async fn send(
    proxy: &Proxy,
    route: &Route,
    req: Request<LimitedBody>,
    deadline: Option<std::time::Duration>,
) -> Result<Response<Incoming>, GatewayError> {
    match proxy.send(&route.upstream, req, deadline.unwrap_or(route.timeout)).await {
        Ok(resp) => Ok(resp),
        Err(proxy::ProxyError::Timeout) if deadline.is_some() => Err(GatewayError::DeadlineExceeded),
        Err(e) => Err(GatewayError::from(e)),
    }
}

/// The absolute-form target of an HTTP/2 upstream request: its authority becomes `:authority`
/// (RFC 9113 §8.3.1: no `Host`), the upstream's own or, with `preserve_host`, the client's.
fn http2_uri(route: &Route, authority: &Authority, uri: http::Uri) -> Result<http::Uri, GatewayError> {
    let mut parts = uri.into_parts();
    parts.scheme = Some(route.upstream.scheme.clone());
    parts.authority = Some(match route.preserve_host {
        false => route.upstream.authority.clone(),
        true => {
            http::uri::Authority::try_from(authority.as_str()).map_err(|_| GatewayError::BadRequest("invalid host"))?
        }
    });
    http::Uri::from_parts(parts).map_err(|_| GatewayError::BadRequest("invalid request target"))
}
