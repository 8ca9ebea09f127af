//! The demo app behind the gateway: it has no login code and shows the identity headers it gets.

use std::net::SocketAddr;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::login::escape;

use super::{html, json_resp, refuse_non_loopback, serve, Resp};

/// The demo app: an HTML page and a JSON endpoint showing the identity headers it received.
async fn demo_route(req: Request<Incoming>) -> Resp {
    let seen: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| {
            k.as_str().starts_with("x-forwarded-")
                || k.as_str().starts_with("x-auth-request-")
                || k.as_str() == "x-request-id"
        })
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let path = req.uri().path();
    if path.starts_with("/api/") {
        let headers: serde_json::Map<String, Value> = seen.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        return json_resp(StatusCode::OK, json!({"app": "tollgate demo", "path": path, "identity_headers": headers}));
    }
    if path.starts_with("/public/") {
        return html(
            StatusCode::OK,
            "A public page",
            "<p>No sign-in needed here. <a href=\"/\">Go to the protected page</a></p>",
        );
    }
    let rows: String = seen
        .iter()
        .map(|(k, v)| format!("<tr><td><code>{}</code></td><td>{}</td></tr>", escape(k), escape(v)))
        .collect();
    let user = seen.iter().find(|(k, _)| k == "x-forwarded-preferred-username").map_or("someone", |(_, v)| v.as_str());
    let body = format!(
        "<p id=\"welcome\">Signed in as <strong>{}</strong>. This app has no login code: tollgate signed you in and \
         told it who you are in these headers:</p><table id=\"headers\">{rows}</table>\
         <p><a href=\"/api/whoami\">JSON</a> · <a href=\"/public/\">public page</a> · <a href=\"/oauth2/sign_out\">sign out</a></p>",
        escape(user)
    );
    html(StatusCode::OK, "tollgate demo app", &body)
}

/// Starts the demo app on `listen` (loopback) on the current runtime.
pub async fn start_demo_app(listen: SocketAddr) -> std::io::Result<SocketAddr> {
    refuse_non_loopback(listen)?;
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, demo_route));
    Ok(addr)
}
