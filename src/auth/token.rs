//! Finding the bearer token in a request (RFC 6750 §2): the `Authorization` header, and the
//! query or a cookie only where a route opts in. A token in more than one place is refused.

use std::borrow::Cow;

use http::header::{HeaderMap, AUTHORIZATION};
use http::Uri;

use super::AuthError;
use crate::config::TokenSource;

/// The token, if the request carries one: borrowed from the `Authorization` header or a cookie,
/// owned when it had to be decoded from the query.
pub fn extract<'r>(
    headers: &'r HeaderMap,
    uri: &Uri,
    sources: &[TokenSource],
) -> Result<Option<Cow<'r, str>>, AuthError> {
    let mut found: Option<Cow<'r, str>> = None;
    for source in sources {
        let token = match source {
            TokenSource::Header => from_header(headers)?.map(Cow::Borrowed),
            TokenSource::Query(name) => {
                crate::util::query_param(uri.query(), name).filter(|t| !t.is_empty()).map(Cow::Owned)
            }
            TokenSource::Cookie(name) => crate::util::cookies(headers)
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .filter(|t| !t.is_empty())
                .map(Cow::Borrowed),
        };
        if let Some(t) = token {
            if found.is_some() {
                return Err(AuthError::InvalidRequest("the access token was sent in more than one way"));
            }
            found = Some(t);
        }
    }
    Ok(found)
}

fn from_header(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest("more than one Authorization header"));
    }
    let value = value.as_bytes();
    let (scheme, rest) = match memchr::memchr(b' ', value) {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another scheme (Basic, …) is not a bearer token: treated as no token.
        return Ok(None);
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if !is_token68(token) {
        return Err(AuthError::InvalidRequest("malformed Bearer credentials"));
    }
    // token68 is ASCII, so this cannot fail.
    std::str::from_utf8(token).map(Some).map_err(|_| AuthError::InvalidRequest("malformed Bearer credentials"))
}

/// RFC 6750 `b64token`: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". A token
/// is a kilobyte, checked on every request: the test is branch-free per byte so that the
/// compiler checks 16 or 32 bytes at a time.
fn is_token68(s: &[u8]) -> bool {
    fn allowed(b: u8) -> bool {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        letter | digit | (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/')
    }
    let body_len = s.len() - s.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0 && s[..body_len].chunks(64).all(|chunk| chunk.iter().fold(true, |ok, &b| ok & allowed(b)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn header_tokens() {
        let uri: Uri = "/x".parse().unwrap();
        let src = [TokenSource::Header];
        assert_eq!(
            extract(&headers(&[("authorization", "Bearer abc.def-_~+/==")]), &uri, &src),
            Ok(Some("abc.def-_~+/==".into()))
        );
        assert_eq!(extract(&headers(&[("authorization", "bearer  abc")]), &uri, &src), Ok(Some("abc".into())));
        assert_eq!(extract(&headers(&[("authorization", "Basic Zm9v")]), &uri, &src), Ok(None));
        assert_eq!(extract(&HeaderMap::new(), &uri, &src), Ok(None));
        for bad in ["Bearer", "Bearer ", "Bearer a b", "Bearer a\"b", "Bearer ==="] {
            assert!(
                matches!(extract(&headers(&[("authorization", bad)]), &uri, &src), Err(AuthError::InvalidRequest(_))),
                "{bad}"
            );
        }
        let two = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(matches!(extract(&two, &uri, &src), Err(AuthError::InvalidRequest(_))));
    }

    #[test]
    fn other_sources_only_when_opted_in() {
        let uri: Uri = "/x?a=1&access_token=q%2Et".parse().unwrap();
        let h = headers(&[("cookie", "a=1; at=cookie-token")]);
        assert_eq!(extract(&h, &uri, &[TokenSource::Header]), Ok(None));
        assert_eq!(extract(&h, &uri, &[TokenSource::Query("access_token".into())]), Ok(Some("q.t".into())));
        assert_eq!(extract(&h, &uri, &[TokenSource::Cookie("at".into())]), Ok(Some("cookie-token".into())));
        let both = [TokenSource::Query("access_token".into()), TokenSource::Cookie("at".into())];
        assert!(matches!(extract(&h, &uri, &both), Err(AuthError::InvalidRequest(_))));
    }

    #[test]
    fn token68_accepts_exactly_the_b64token_bytes() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            let token = [b'a', b, b'z'];
            assert_eq!(is_token68(&token), want, "byte {b:#04x}");
        }
        assert!(is_token68(b"abc=="));
        assert!(!is_token68(b"=="));
        assert!(!is_token68(b"a=b"));
        assert!(!is_token68(b""));
    }
}
