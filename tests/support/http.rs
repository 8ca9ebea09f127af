//! The test suite's one HTTP/1.1 client: a request on a fresh connection with
//! `Connection: close`, read to EOF, parsed into [`Response`]. Every harness module
//! (`tests/common`, `support/idp.rs`, `support/login.rs`) sends through it, so there is one
//! parser of status lines, headers, `Content-Length` and chunked bodies.
//!
//! Only std: the tests often need to send what a well-behaved client library would refuse to
//! (duplicate `Host`, folded names, raw bytes), and `raw` takes the bytes as they are.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Socket read and write timeout for every request.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// A response read to EOF.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy UTF-8), what most assertions read.
    pub body: String,
    /// The body's bytes.
    pub bytes: Vec<u8>,
}

impl Response {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header named `name` (case-insensitive), in arrival order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        self.body.clone()
    }

    /// The body as JSON; panics with the status and body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("response ({}) is not JSON ({e}): {}", self.status, self.body))
    }
}

/// Splits `http://authority/target` into its authority and target (`/` when absent).
pub fn split_url(url: &str) -> (&str, &str) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("only http:// URLs are supported, got {url}"));
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

/// `METHOD url` with `Host` from the URL, the extra header lines, and `Content-Length` when
/// there is a body. Panics on I/O errors (naming the request), never on HTTP error statuses.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    let (authority, target) = split_url(url);
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    exchange(authority, &bytes, &format!("{method} {url}"))
}

/// Sends `request` as it is (it should say `Connection: close`) and reads the whole answer.
pub fn raw(addr: impl ToSocketAddrs + std::fmt::Debug, request: &[u8]) -> Response {
    let what = format!("raw request to {addr:?}");
    exchange(addr, request, &what)
}

fn exchange(addr: impl ToSocketAddrs, request: &[u8], what: &str) -> Response {
    let to_head = request.starts_with(b"HEAD ");
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap_or_else(|e| panic!("{what}: set timeout: {e}"));
    s.set_write_timeout(Some(TIMEOUT)).unwrap_or_else(|e| panic!("{what}: set timeout: {e}"));
    s.write_all(request).unwrap_or_else(|e| panic!("{what}: write: {e}"));
    let mut buf = Vec::new();
    // A server may reset after its answer (e.g. a refused request with unread body): keep
    // what arrived and let the parser judge it.
    let _ = s.read_to_end(&mut buf);
    parse_answer(&buf, to_head)
        .unwrap_or_else(|msg| panic!("{what}: bad response ({msg}): {:?}", String::from_utf8_lossy(&buf)))
}

/// Parses one HTTP/1.1 response: the status line, headers, and a body by `Content-Length`,
/// chunked encoding, or EOF.
pub fn parse(raw: &[u8]) -> Result<Response, String> {
    parse_answer(raw, false)
}

/// [`parse`] for the answer to a request whose method is `HEAD` when `to_head`: such an answer
/// (like a 1xx, 204 or 304) has no body whatever its `Content-Length` says (RFC 9112 §6.3).
pub fn parse_answer(raw: &[u8], to_head: bool) -> Result<Response, String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let bodiless = to_head || status < 200 || status == 204 || status == 304;
    let bytes = if bodiless {
        Vec::new()
    } else if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().map_err(|_| format!("bad content-length {len:?}"))?;
        rest.get(..len).ok_or("body shorter than content-length")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, headers, body: String::from_utf8_lossy(&bytes).into_owned(), bytes })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|e| e.to_string())?;
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;

    #[test]
    fn parses_lengths_chunks_and_eof() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhiEXTRA").unwrap();
        assert_eq!((r.status, r.body.as_str(), r.header("x-a")), (200, "hi", Some("1")));
        let r = parse(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nab\r\n1\r\nc\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, "abc");
        let r = parse(b"HTTP/1.1 500 x\r\nSet-Cookie: a\r\nset-cookie: b\r\n\r\nto the end").unwrap();
        assert_eq!(r.headers_named("Set-Cookie").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(r.body, "to the end");
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse(b"garbage").is_err());
        let head = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 269\r\n\r\n", true).unwrap();
        assert_eq!((head.status, head.body.as_str()), (200, ""));
    }
}
