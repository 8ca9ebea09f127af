//! The admin listener: `/healthz` (the process serves), `/readyz` (ready for traffic) and
//! `/metrics` (Prometheus text format). Kept off the traffic listener so it is never exposed
//! by a route, and bounded (connections, timers) so that it cannot starve that listener.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::accept::{Backoff, LogLimit};
use super::conn::{self, Activity, Sending, Timeouts, Tracked};
use crate::body::Body;
use crate::error::plain;
use crate::metrics::Metrics;

/// Whether the gateway is ready for traffic: listeners bound, every issuer's keys loaded.
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// What bounds the admin listener, so that clients of it cannot take resources the traffic
/// listener needs: a few connections at a time, the traffic listener's timers.
pub struct AdminLimits {
    pub max_connections: usize,
    pub timeouts: Timeouts,
    pub accept_log: LogLimit,
    pub shutdown: watch::Receiver<bool>,
}

pub async fn serve(listener: TcpListener, metrics: Metrics, ready: Readiness, limits: AdminLimits) {
    let AdminLimits { max_connections, timeouts, accept_log, shutdown } = limits;
    let connections = Arc::new(Semaphore::new(max_connections));
    let errors = metrics.accept_errors.with_label_values(&["admin"]);
    let mut backoff = Backoff::new("admin", errors, accept_log);
    loop {
        // The place first: beyond the limit, connections wait in the kernel backlog.
        let Ok(permit) = connections.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        backoff.succeeded();
        let (metrics, ready, shutdown) = (metrics.clone(), ready.clone(), shutdown.clone());
        tokio::spawn(async move {
            let activity = Arc::new(Activity::new(false));
            let service = {
                let (metrics, activity) = (metrics.clone(), activity.clone());
                service_fn(move |req| {
                    let resp = respond(&req, &metrics, &ready).map(|b| Sending::new(b, activity.request()));
                    async move { Ok::<_, Infallible>(resp) }
                })
            };
            let io = TokioIo::new(Tracked::new(stream, activity.clone(), permit));
            // Our timers (server/conn.rs) instead of hyper's, as on the traffic listener.
            let conn =
                hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(io, service);
            tokio::pin!(conn);
            conn::drive(conn, &activity, &timeouts, shutdown).await.record(&metrics);
        });
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics, ready: &Readiness) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/healthz" => plain(StatusCode::OK, "ok\n".into()),
        "/readyz" if ready() => plain(StatusCode::OK, "ready\n".into()),
        "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        "/metrics" => {
            let mut resp = Response::new(Body::text(metrics.render()));
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            resp
        }
        _ => plain(StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n".into()),
    }
}
