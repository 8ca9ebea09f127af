//! `tollgate dev`: a development issuer and a demo app on loopback, with the gateway in front,
//! so tollgate can be seen working with nothing else installed. The issuer follows the
//! standards the gateway relies on (discovery, JWKS, authorization code with PKCE S256, refresh
//! tokens with rotation, client credentials, userinfo, RP-initiated logout), so the gateway
//! uses its ordinary code paths against it. Tokens are signed ES256; a token request with
//! `alg=RS256` gets them signed with the issuer's RSA 2048 key instead (both keys are in the
//! JWKS), for measuring the gateway on the most common algorithm. Tests reuse [`DevIssuer`] as a fast in-process
//! issuer.
//!
//! Never for production: any user name signs in, and keys live only in memory.
mod app;
mod issuer;
mod setup;

pub use app::start_demo_app;
pub use issuer::{DevClient, DevIssuer, DevIssuerOptions};
pub use setup::{setup, DevSetup};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::login::escape;

pub(crate) fn refuse_non_loopback(addr: SocketAddr) -> std::io::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr}: tollgate dev listens on loopback only"),
        ))
    }
}

pub(crate) type Resp = Response<Full<Bytes>>;

pub(crate) async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

pub(crate) fn json_resp(status: StatusCode, v: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn html(status: StatusCode, title: &str, body: &str) -> Resp {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:44em;margin:3em auto}}td{{padding:.2em 1em}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>\n",
        t = escape(title)
    );
    let mut r = Response::new(Full::new(Bytes::from(page)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

pub(crate) fn redirect(location: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}
