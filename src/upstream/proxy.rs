//! Forwarding over one pooled client per worker: HTTP and HTTPS upstreams, streamed bodies,
//! timeouts mapped to 502/504, and WebSocket (HTTP/1.1 upgrade) tunnels.

use std::error::Error as _;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::{LimitedBody, RequestBodyError};
use crate::config;
use crate::error::GatewayError;

type HttpsClient = Client<HttpsConnector<HttpConnector>, LimitedBody>;

/// A pooled upstream client. Each worker thread owns one, so no pool lock is shared across cores.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: HttpsClient,
}

impl Proxy {
    pub fn new(cfg: &config::UpstreamClient, tls: rustls::ClientConfig) -> Proxy {
        let https = crate::tls::https_connector(tls, cfg.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // The gateway sets Host itself from a value prepared at start-up.
            .set_host(false)
            .build(https);
        Proxy { client }
    }

    /// Sends `req` and waits at most `timeout` for the response headers.
    pub async fn send(&self, req: Request<LimitedBody>, timeout: Duration) -> Result<Response<Incoming>, GatewayError> {
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(GatewayError::UpstreamTimeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if caused_by_body_limit(&e) => Err(GatewayError::PayloadTooLarge),
            Ok(Err(e)) if e.is_connect() => Err(GatewayError::UpstreamConnect(e)),
            Ok(Err(e)) => Err(GatewayError::Upstream(e)),
        }
    }
}

fn caused_by_body_limit(e: &hyper_util::client::legacy::Error) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if matches!(c.downcast_ref::<RequestBodyError>(), Some(RequestBodyError::TooLarge(_))) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Joins the client's and the upstream's upgraded connections and copies bytes both ways
/// until either side closes.
pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade, route: String) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(route, error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(route, error = %e, "tunnel closed with an error");
        }
    });
}
