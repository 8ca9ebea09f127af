//! Small text helpers shared by the request path and the login endpoints: percent-decoding,
//! query parameters, and removing cookies or query parameters before a request goes upstream.

use http::header::{HeaderMap, HeaderValue, COOKIE};

/// Decodes `%XX` escapes; `plus_is_space` for `application/x-www-form-urlencoded`. `None` for
/// a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded value of `name` in a query string or form body (the first one).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v, true)).flatten()
    })
}

/// The request's cookies as (name, value) pairs.
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

/// Removes the cookies whose names `drop` selects, keeping the rest in one `Cookie` header.
pub fn strip_cookies(headers: &mut HeaderMap, drop: impl Fn(&str) -> bool) {
    if !cookies(headers).any(|(n, _)| drop(n)) {
        return;
    }
    let kept: Vec<String> = cookies(headers).filter(|(n, _)| !drop(n)).map(|(n, v)| format!("{n}={v}")).collect();
    headers.remove(COOKIE);
    if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
        if !kept.is_empty() {
            headers.insert(COOKIE, v);
        }
    }
}

/// `query` without the parameters named in `names` (`None` when nothing is left).
pub fn strip_query_params(query: &str, names: &[&str]) -> Option<String> {
    let kept: Vec<&str> =
        query.split('&').filter(|p| !names.contains(&p.split_once('=').map_or(*p, |(k, _)| k))).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_params() {
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%ff", false), None, "not UTF-8");
        assert_eq!(query_param(Some("x=1&rd=%2Fa%3Fb"), "rd").as_deref(), Some("/a?b"));
        assert_eq!(strip_query_params("a=1&access_token=t&b=2", &["access_token"]).as_deref(), Some("a=1&b=2"));
        assert_eq!(strip_query_params("access_token=t", &["access_token"]), None);
    }

    #[test]
    fn cookie_stripping() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; tollgate_0=x"));
        h.append(COOKIE, HeaderValue::from_static("tollgate_1=y; b=2"));
        strip_cookies(&mut h, |n| n.starts_with("tollgate"));
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), vec!["a=1; b=2"]);
        strip_cookies(&mut h, |_| true);
        assert!(h.get(COOKIE).is_none());
    }
}
