//! The demo app behind the gateway: it has no login code and shows the identity headers it gets.

use std::net::SocketAddr;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::login::escape;

use super::setup::APPS;
use super::{html, json_resp, refuse_non_loopback, serve, Resp};

/// The demo apps: an index at `/`, and under `/wiki/` and `/blog/` (see
/// [`super::setup::APPS`]) an HTML page and a JSON endpoint showing the identity headers
/// received; `/api/` (bearer) and `/public/` answer for any app.
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
    let app = APPS.iter().map(|(a, _)| *a).find(|a| {
        path.strip_prefix('/').and_then(|p| p.strip_prefix(a)).is_some_and(|r| r.is_empty() || r.starts_with('/'))
    });
    let rest = app.map_or(path, |a| &path[a.len() + 1..]);
    if rest.starts_with("/api/") {
        let headers: serde_json::Map<String, Value> = seen.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        return json_resp(
            StatusCode::OK,
            json!({"app": app.unwrap_or("tollgate demo"), "path": path, "identity_headers": headers}),
        );
    }
    if path.starts_with("/public/") {
        return html(
            StatusCode::OK,
            "A public page",
            "<p>No sign-in needed here. <a href=\"/\">Go to the demo apps</a></p>",
        );
    }
    match app {
        Some(app) => app_page(app, &seen),
        None => index_page(),
    }
}

/// `/`: the two apps.
fn index_page() -> Resp {
    let links: String =
        APPS.iter().map(|(a, id)| format!("<li><a href=\"/{a}/\">{a}</a> (client <code>{id}</code>)</li>")).collect();
    html(
        StatusCode::OK,
        "tollgate demo apps",
        &format!(
            "<p>Two apps behind one gateway, each signing in with its own client and keeping its own \
             session; sign out of one and the other stays signed in.</p><ul id=\"apps\">{links}</ul>\
             <p><a href=\"/public/\">A public page</a></p>"
        ),
    )
}

/// One app's page: who the gateway says is signed in, and the headers that said it.
fn app_page(app: &str, seen: &[(String, String)]) -> Resp {
    let rows: String = seen
        .iter()
        .map(|(k, v)| format!("<tr><td><code>{}</code></td><td>{}</td></tr>", escape(k), escape(v)))
        .collect();
    let user = seen.iter().find(|(k, _)| k == "x-forwarded-preferred-username").map_or("someone", |(_, v)| v.as_str());
    let other = APPS.iter().map(|(a, _)| *a).find(|a| *a != app).unwrap_or(app);
    let body = format!(
        "<p id=\"welcome\">Signed in to <strong id=\"app\">{app}</strong> as <strong>{}</strong>. This app has no login \
         code: tollgate signed you in with the <code>{app}</code> client and told it who you are in these headers:</p>\
         <table id=\"headers\">{rows}</table>\
         <p><a href=\"/{app}/api/whoami\">JSON</a> · <a href=\"/{other}/\">the {other} app</a> · \
         <a href=\"/public/\">public page</a> · <a href=\"/{app}/oauth2/sign_out\">sign out of {app}</a></p>",
        escape(user)
    );
    html(StatusCode::OK, &format!("tollgate demo: {app}"), &body)
}

/// Starts the demo app on `listen` (loopback) on the current runtime.
pub async fn start_demo_app(listen: SocketAddr) -> std::io::Result<SocketAddr> {
    refuse_non_loopback(listen)?;
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, demo_route));
    Ok(addr)
}
