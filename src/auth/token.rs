//! Finding the access token in a request (RFC 6750 §2): the `Authorization` header (scheme
//! `Bearer`, or `DPoP` where the route accepts it, RFC 9449 §7.1), and the query or a cookie
//! only where a route opts in. A token in more than one place is refused.

use std::borrow::Cow;

use http::header::{HeaderMap, AUTHORIZATION};
use http::Uri;

use super::AuthError;
use crate::config::TokenSource;

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer`, a query parameter or a cookie: whoever holds it may use it.
    Bearer,
    /// `Authorization: DPoP`: the request must carry a proof of the token's key.
    Dpop,
}

/// The token a request carries and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'r> {
    pub token: Cow<'r, str>,
    pub scheme: Scheme,
    /// From the `Authorization` header (not the query or a cookie).
    pub in_header: bool,
}

/// The token, if the request carries one: borrowed from the `Authorization` header or a cookie,
/// owned when it had to be decoded from the query. The `DPoP` scheme counts only with `dpop`
/// (the route accepts it); otherwise it is another scheme, as `Basic` is.
pub fn extract<'r>(
    headers: &'r HeaderMap,
    uri: &Uri,
    sources: &[TokenSource],
    dpop: bool,
) -> Result<Option<Presented<'r>>, AuthError> {
    let mut found: Option<Presented<'r>> = None;
    for source in sources {
        let token = match source {
            TokenSource::Header => match from_header(headers, dpop)? {
                Some((token, scheme)) => {
                    if found.is_some() {
                        return Err(AuthError::InvalidRequest("the access token was sent in more than one way"));
                    }
                    found = Some(Presented { token: Cow::Borrowed(token), scheme, in_header: true });
                    continue;
                }
                None => None,
            },
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
            found = Some(Presented { token: t, scheme: Scheme::Bearer, in_header: false });
        }
    }
    Ok(found)
}

fn from_header(headers: &HeaderMap, dpop: bool) -> Result<Option<(&str, Scheme)>, AuthError> {
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
    let scheme = if scheme.eq_ignore_ascii_case(b"bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case(b"dpop") {
        Scheme::Dpop
    } else {
        // Another scheme (Basic, …) is not a bearer token: treated as no token.
        return Ok(None);
    };
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    let malformed = match scheme {
        Scheme::Bearer => "malformed Bearer credentials",
        Scheme::Dpop => "malformed DPoP credentials",
    };
    if !is_token68(token) {
        return Err(AuthError::InvalidRequest(malformed));
    }
    // token68 is ASCII, so this cannot fail.
    std::str::from_utf8(token).map(|t| Some((t, scheme))).map_err(|_| AuthError::InvalidRequest(malformed))
}

/// RFC 6750 `b64token`: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". A token
/// is a kilobyte, checked on every request: 64 bytes at a time, each byte's test plain byte
/// arithmetic that the compiler turns into vector compares, and the punctuation mostly one
/// range ('+' 2B, '-' 2D, '.' 2E and '/' 2F run into the digits 30-39, ',' 2C in between).
fn is_token68(s: &[u8]) -> bool {
    #[inline(always)]
    fn refused(b: u8) -> u8 {
        let plus_to_nine = (b.wrapping_sub(b'+') <= b'9' - b'+') & (b != b',');
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let other = (b == b'_') | (b == b'~');
        u8::from(!(plus_to_nine | letter | other))
    }
    let body = &s[..s.len() - s.iter().rev().take_while(|&&b| b == b'=').count()];
    let mut chunks = body.chunks_exact(64);
    for chunk in &mut chunks {
        if chunk.iter().fold(0, |acc, &b| acc | refused(b)) != 0 {
            return false;
        }
    }
    !body.is_empty() && chunks.remainder().iter().fold(0, |acc, &b| acc | refused(b)) == 0
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

    fn extract<'r>(
        headers: &'r HeaderMap,
        uri: &Uri,
        sources: &[TokenSource],
    ) -> Result<Option<Cow<'r, str>>, AuthError> {
        super::extract(headers, uri, sources, false).map(|p| p.map(|p| p.token))
    }

    #[test]
    fn dpop_scheme_only_where_accepted() {
        let uri: Uri = "/x".parse().unwrap();
        let src = [TokenSource::Header];
        let h = headers(&[("authorization", "DPoP abc.def")]);
        assert_eq!(super::extract(&h, &uri, &src, false), Ok(None), "another scheme where DPoP is off");
        let found = super::extract(&h, &uri, &src, true).unwrap().unwrap();
        assert_eq!((found.token.as_ref(), found.scheme), ("abc.def", Scheme::Dpop));
        let b = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(super::extract(&b, &uri, &src, true).unwrap().unwrap().scheme, Scheme::Bearer);
        let bad = headers(&[("authorization", "dpop a b")]);
        assert!(matches!(super::extract(&bad, &uri, &src, true), Err(AuthError::InvalidRequest(_))));
        // A DPoP token and a query token at once are two credentials.
        let uri: Uri = "/x?access_token=t".parse().unwrap();
        let both = [TokenSource::Header, TokenSource::Query("access_token".into())];
        assert!(matches!(super::extract(&h, &uri, &both, true), Err(AuthError::InvalidRequest(_))));
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
        // A refused byte anywhere in a long token (either side of each 64-byte chunk's edge).
        let long = [b'A'; 200];
        for at in 0..long.len() {
            for bad in [b',', b' ', b'=', 0x80, b'*', b'`', b'{'] {
                let mut t = long;
                t[at] = bad;
                if bad == b'=' && at == long.len() - 1 {
                    assert!(is_token68(&t), "padding at the end");
                    continue;
                }
                assert!(!is_token68(&t), "byte {bad:#04x} at {at}");
            }
        }
        assert!(is_token68(&long) && is_token68(&long[..64]) && is_token68(&long[..129]));
        assert!(is_token68(b"abc=="));
        assert!(!is_token68(b"=="));
        assert!(!is_token68(b"a=b"));
        assert!(!is_token68(b""));
    }
}
