//! The little of gRPC a gateway must speak itself: recognising a gRPC request, answering one it
//! refuses in gRPC's own terms (a trailers-only response: HTTP 200 with `grpc-status` and
//! `grpc-message` in the only HEADERS frame), and reading the caller's deadline
//! (`grpc-timeout`). See <https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md>.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, TE};
use http::{Response, StatusCode};

use crate::body::Body;

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The gRPC status codes tollgate answers with (`grpc/status.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl Code {
    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Code::InvalidArgument => "3",
            Code::DeadlineExceeded => "4",
            Code::PermissionDenied => "7",
            Code::ResourceExhausted => "8",
            Code::Unimplemented => "12",
            Code::Internal => "13",
            Code::Unavailable => "14",
            Code::Unauthenticated => "16",
        })
    }
}

/// A gRPC request: `content-type` is `application/grpc` or `application/grpc+{format}` (or
/// `;params`). No allocation: one header lookup and a prefix comparison.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(CONTENT_TYPE) else { return false };
    let v = v.as_bytes();
    let prefix = b"application/grpc";
    v.len() >= prefix.len()
        && v[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(v.get(prefix.len()), None | Some(b'+' | b';'))
}

/// The client sent `te: trailers` (gRPC requires it; it is hop-by-hop, so the header cleaner
/// removes it and the HTTP/2 forwarder puts it back).
pub fn asks_for_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers")))
        })
    })
}

/// The request's `grpc-timeout`: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
/// `None` when absent or malformed: a malformed one is forwarded as it came and left to the
/// upstream's gRPC library to judge, and the route's timeout applies.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    parse_timeout(headers.get(&GRPC_TIMEOUT)?.as_bytes())
}

fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 99 999 999: no overflow in any unit below (hours: 3.6e11 s).
    let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A trailers-only response: HTTP 200, `content-type: application/grpc`, `grpc-status` and
/// `grpc-message`, no body (so the one HEADERS frame ends the stream).
pub fn trailers_only(code: Code, message: &str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS.clone(), code.header_value());
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE.clone(), v);
    }
    resp
}

/// `grpc-message` encoding: every byte outside printable ASCII (0x20..=0x7E), and `%`, as
/// `%XX` (upper-case hex), over the message's UTF-8 bytes.
fn percent_encode(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn recognises_grpc_content_types() {
        for yes in ["application/grpc", "application/grpc+proto", "Application/GRPC+json", "application/grpc;x=1"] {
            assert!(is_grpc(&headers(&[("content-type", yes)])), "{yes}");
        }
        for no in ["application/grpc-web", "application/grpcx", "application/json", "text/plain", "application/grp"] {
            assert!(!is_grpc(&headers(&[("content-type", no)])), "{no}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn finds_te_trailers_in_lists() {
        assert!(asks_for_trailers(&headers(&[("te", "trailers")])));
        assert!(asks_for_trailers(&headers(&[("te", "gzip, Trailers")])));
        assert!(asks_for_trailers(&headers(&[("te", "gzip"), ("te", "trailers;q=1")])));
        assert!(!asks_for_trailers(&headers(&[("te", "gzip")])));
        assert!(!asks_for_trailers(&headers(&[("te", "trailersx")])));
        assert!(!asks_for_trailers(&HeaderMap::new()));
    }

    #[test]
    fn parses_every_timeout_unit_and_bounds_digits() {
        let t = |s: &str| parse_timeout(s.as_bytes());
        assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("10S"), Some(Duration::from_secs(10)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("7u"), Some(Duration::from_micros(7)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(t("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)), "the largest value fits");
        assert_eq!(t("0m"), Some(Duration::ZERO));
        for bad in ["", "S", "123456789S", "10s", "10", "-1S", "1.5S", " 1S", "1 S", "1SS", "+1S", "١S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn trailers_only_answers_percent_encode_the_message() {
        let resp = trailers_only(Code::Unauthenticated, "no token: 100% café\n");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert_eq!(resp.headers()["grpc-status"], "16");
        assert_eq!(resp.headers()["grpc-message"], "no token: 100%25 caf%C3%A9%0A");
        assert!(http_body::Body::is_end_stream(resp.body()), "no body: the HEADERS frame ends the stream");
    }
}
