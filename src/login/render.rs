//! What the login shows a browser: small HTML pages, JSON answers and redirects, and how to
//! tell a browser navigation from a script.

use http::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};
use serde_json::Value;

use crate::body::Body;

/// Browsers (navigations) get redirects and pages; scripts and API clients get status codes.
pub fn is_browser(headers: &HeaderMap) -> bool {
    let xhr = header_str(headers, "x-requested-with").is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    !xhr && headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/html"))
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

pub(super) fn json(status: StatusCode, v: Value) -> Response<Body> {
    let mut resp = Response::new(Body::text(v.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A sign-in that cannot go on: why, and a link to start again at `start` (the login's own
/// `.../oauth2/start`).
pub(super) fn restart_page(why: &str, start: &str) -> Response<Body> {
    let message = format!("{} <a href=\"{}\">Sign in again</a>.", escape(why), escape(start));
    page_html(StatusCode::BAD_REQUEST, "Sign-in could not be completed", &message)
}

/// A small HTML page; `message` is text (escaped here).
pub fn page(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    page_html(status, title, &escape(message))
}

/// A small HTML page around `message`, which is markup already.
fn page_html(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{message}</p></body></html>\n",
        t = escape(title),
    );
    let mut resp = Response::new(Body::text(html));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(resp: Response<Body>) -> String {
        let Body::Full(Some(b)) = resp.into_body() else { panic!("not a full body") };
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn pages_escape_provider_text() {
        let text =
            html(page(StatusCode::BAD_REQUEST, "x", "<script>alert(1)</script> <a href=\"/oauth2/start\">x</a>"));
        assert!(!text.contains("<script>") && !text.contains("<a href"), "{text}");
        let restart = html(restart_page("<b>late</b>", "/wiki/oauth2/start"));
        assert!(
            restart.contains("&lt;b&gt;late&lt;/b&gt; <a href=\"/wiki/oauth2/start\">Sign in again</a>"),
            "{restart}"
        );
        assert!(html(restart_page("x", "/\"><script>")).contains("href=\"/&quot;&gt;&lt;script&gt;\""));
    }

    #[test]
    fn browsers_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml"));
        assert!(is_browser(&h));
        h.insert("x-requested-with", HeaderValue::from_static("XMLHttpRequest"));
        assert!(!is_browser(&h));
        let mut api = HeaderMap::new();
        api.insert(ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!is_browser(&api));
    }
}
