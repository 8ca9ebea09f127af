//! What a DPoP proof's `htu` must name: the request's URI as the client addressed it (the
//! scheme of the connection or of a trusted proxy, the routed authority, the path as sent),
//! both sides compared in RFC 3986 normal form.

use http::header::HeaderName;

use super::Request;

pub(super) fn htu_matches(htu: &str, req: &Request<'_>) -> bool {
    let Some(scheme) = request_scheme(req) else { return false };
    let expected = format!("{scheme}://{}{}", req.origin.authority, req.path);
    match (normalize_uri(htu), normalize_uri(&expected)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The scheme the client used: the connection's, or a trusted proxy's single
/// `X-Forwarded-Proto` (anything else from it is a mismatch, never a guess).
fn request_scheme(req: &Request<'_>) -> Option<&'static str> {
    static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let own = if req.origin.tls { "https" } else { "http" };
    if !req.origin.trusted_proxy {
        return Some(own);
    }
    let mut values = req.headers.get_all(&X_FORWARDED_PROTO).iter();
    match (values.next(), values.next()) {
        (None, _) => Some(own),
        (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"https") => Some("https"),
        (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"http") => Some("http"),
        _ => None,
    }
}

/// An `http(s)` URI without query and fragment, in RFC 3986 §6.2.2 / §6.2.3 normal form:
/// scheme and host in lower case, the scheme's default port dropped, an empty path as `/`,
/// percent-encodings in upper case and those of unreserved characters decoded. Nothing else:
/// `%2F` stays distinct from `/`, and dot segments are left as they are. `None` when it is not
/// such a URI (user information is refused too).
pub fn normalize_uri(uri: &str) -> Option<String> {
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let uri = &uri[..end];
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    if authority.is_empty() || authority.contains('@') || authority.contains('%') {
        return None;
    }
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], &authority[i + 1..]),
        _ => (authority, ""),
    };
    // An empty port is the default one (RFC 3986 §6.2.3).
    let port = match port {
        "" => None,
        p if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        _ => return None,
    };
    if host.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(uri.len());
    out.push_str(&scheme);
    out.push_str("://");
    out.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    if let Some(port) = port.filter(|&p| p != default_port) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    normalize_path(path, &mut out)?;
    Some(out)
}

fn normalize_path(path: &str, out: &mut String) -> Option<()> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(hex[0].to_ascii_uppercase() as char);
                out.push(hex[1].to_ascii_uppercase() as char);
            }
            i += 3;
        } else if b.is_ascii() && !b.is_ascii_control() && b != b' ' {
            out.push(b as char);
            i += 1;
        } else {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::dpop::Origin;
    use http::{HeaderMap, Method};

    #[test]
    fn htu_normal_form() {
        let n = |s: &str| normalize_uri(s);
        assert_eq!(n("HTTPS://Api.Example.COM:443/a?x=1#f").as_deref(), Some("https://api.example.com/a"));
        assert_eq!(n("http://h:80").as_deref(), Some("http://h/"));
        assert_eq!(n("http://h:8080/a").as_deref(), Some("http://h:8080/a"));
        assert_eq!(n("http://h:/a").as_deref(), Some("http://h/a"));
        assert_eq!(n("https://h:80/a").as_deref(), Some("https://h:80/a"), "80 is not https's default");
        assert_eq!(n("http://h/a%2fb").as_deref(), Some("http://h/a%2Fb"), "hex case only");
        assert_eq!(n("http://h/%7Euser%41").as_deref(), Some("http://h/~userA"), "unreserved decoded");
        assert_eq!(n("http://[::1]:8080/x").as_deref(), Some("http://[::1]:8080/x"));
        assert_eq!(n("http://[::1]/x").as_deref(), Some("http://[::1]/x"));
        assert_ne!(n("http://h/a%2Fb"), n("http://h/a/b"), "an encoded slash is another path");
        assert_ne!(n("http://h/a"), n("https://h/a"));
        assert_ne!(n("http://h/a"), n("http://h/a/"));
        for bad in ["ftp://h/a", "http:///a", "http://u@h/a", "http://h/a%2", "http://h/a%zz", "//h/a", "http://h:x/a"]
        {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_scheme_is_a_trusted_proxys_single_forwarded_proto() {
        let scheme = |tls: bool, trusted: bool, protos: &[&str]| {
            let mut headers = HeaderMap::new();
            for p in protos {
                headers.append("x-forwarded-proto", http::HeaderValue::from_str(p).unwrap());
            }
            let origin = Origin { tls, trusted_proxy: trusted, authority: "h" };
            let cert = crate::client_cert::Presented::NONE;
            request_scheme(&Request { headers: &headers, method: &Method::GET, path: "/", origin, cert })
        };
        assert_eq!(scheme(false, false, &["https"]), Some("http"), "an untrusted peer's header is ignored");
        assert_eq!(scheme(true, false, &[]), Some("https"));
        assert_eq!(scheme(false, true, &["HTTPS"]), Some("https"));
        assert_eq!(scheme(true, true, &["http"]), Some("http"));
        assert_eq!(scheme(true, true, &[]), Some("https"), "no header: the connection's");
        assert_eq!(scheme(false, true, &["https", "http"]), None, "two values: no scheme, so no match");
        assert_eq!(scheme(false, true, &["https, http"]), None);
        assert_eq!(scheme(false, true, &["ftp"]), None);
    }
}
