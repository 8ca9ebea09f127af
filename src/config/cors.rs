//! A route's `cors = { ... }` validated into a [`Cors`] policy whose header values are built
//! once here, so that answering a request copies prepared values (see `src/cors.rs`).

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

use super::methods::MethodSet;
use super::raw::RawCors;
use super::units::parse_duration;
use super::validate::Check;

/// Methods allowed when `allowed_methods` is left out and the route has no `methods`: what a
/// browser app usually sends (the Express `cors` package's default).
const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// A route's CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: Origins,
    /// `Access-Control-Allow-Methods` for preflights.
    pub allow_methods: HeaderValue,
    pub allow_headers: AllowHeaders,
    /// `Access-Control-Expose-Headers` (WWW-Authenticate always among them).
    pub expose_headers: HeaderValue,
    pub allow_credentials: bool,
    /// `Access-Control-Max-Age` in seconds, when configured.
    pub max_age: Option<HeaderValue>,
}

/// Which origins the policy admits.
#[derive(Debug, Clone)]
pub enum Origins {
    /// `"*"`: every origin (only without credentials); answered with `*`.
    Any,
    List(Vec<OriginPattern>),
}

/// One allowed origin in the form browsers serialise it: lower case, no default port, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `https://app.example.com:8443`
    Exact(String),
    /// `https://*.example.com`: the scheme part (`https://`) and what follows the `*`
    /// (`.example.com`, with the port when one was given); one or more labels in between.
    Subdomains { scheme: String, suffix: String },
}

/// `Access-Control-Allow-Headers` for preflights.
#[derive(Debug, Clone)]
pub enum AllowHeaders {
    /// Nothing configured: only the CORS-safelisted request headers.
    None,
    List(HeaderValue),
    /// `"*"`: the names the preflight asks for, echoed (also `Authorization`, which a literal
    /// `*` never covers, and with credentials, where a literal `*` means nothing).
    Echo,
}

impl OriginPattern {
    /// Does the `Origin` header value `origin` fall under this pattern? Bytes are compared as
    /// sent: browsers send origins in the normal form the patterns are stored in.
    pub fn matches(&self, origin: &[u8]) -> bool {
        match self {
            OriginPattern::Exact(o) => o.as_bytes() == origin,
            OriginPattern::Subdomains { scheme, suffix } => {
                let Some(rest) = origin.strip_prefix(scheme.as_bytes()) else { return false };
                let Some(labels) = rest.strip_suffix(suffix.as_bytes()) else { return false };
                // One or more labels of a host name, nothing that could end the host early.
                !labels.is_empty()
                    && labels.split(|b| *b == b'.').all(|l| {
                        !l.is_empty() && l.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                    })
            }
        }
    }
}

impl Origins {
    pub fn allows(&self, origin: &[u8]) -> bool {
        match self {
            Origins::Any => true,
            Origins::List(list) => list.iter().any(|p| p.matches(origin)),
        }
    }
}

/// Validates `route[i].cors`; `route_methods` is the route's `methods` (the default for
/// `allowed_methods`); `dpop`: the route accepts DPoP proofs, so a browser app must be able to
/// send the `DPoP` header and read `DPoP-Nonce` (and `WWW-Authenticate`), listed or not. Errors
/// name the field; the policy is left out when any is found.
pub(super) fn cors(
    c: &mut Check,
    at: &str,
    raw: RawCors,
    route_methods: Option<MethodSet>,
    dpop: bool,
) -> Option<Cors> {
    let before = c.errors.len();
    let field = |f: &str| format!("{at}.cors.{f}");
    let origins = origins(c, &field("allowed_origins"), raw.allowed_origins, raw.allow_credentials);
    let methods = match raw.allowed_methods {
        Some(list) => MethodSet::parse(&list).unwrap_or_else(|errors| {
            for (i, e) in errors {
                c.err(indexed(&field("allowed_methods"), i), e);
            }
            MethodSet::default()
        }),
        None => {
            route_methods.unwrap_or_else(|| MethodSet::parse(&DEFAULT_METHODS.map(String::from)).unwrap_or_default())
        }
    };
    let allow_headers = allow_headers(c, &field("allowed_headers"), raw.allowed_headers, dpop);
    let expose_headers = expose_headers(c, &field("exposed_headers"), raw.exposed_headers, raw.allow_credentials, dpop);
    let max_age = raw.max_age.as_deref().and_then(|s| max_age(c, &field("max_age"), s));
    if c.errors.len() > before {
        return None;
    }
    Some(Cors {
        origins,
        allow_methods: header_value(&methods.header_text()),
        allow_headers,
        expose_headers,
        allow_credentials: raw.allow_credentials,
        max_age,
    })
}

fn indexed(field: &str, i: usize) -> String {
    if i == usize::MAX {
        field.to_string()
    } else {
        format!("{field}[{i}]")
    }
}

fn origins(c: &mut Check, field: &str, raw: Option<Vec<String>>, credentials: bool) -> Origins {
    let Some(raw) = raw.filter(|l| !l.is_empty()) else {
        c.err(field, "required: the origins browser apps call from, like [\"https://app.example.com\"]");
        return Origins::List(Vec::new());
    };
    if raw.iter().any(|o| o.trim() == "*") {
        if raw.len() > 1 {
            c.err(field, "\"*\" admits every origin; list no others beside it");
        }
        if credentials {
            c.err(
                field,
                "\"*\" cannot be used with allow_credentials = true (browsers refuse it, and it would let any \
                 site act with the user's cookies): list the origins",
            );
        }
        return Origins::Any;
    }
    let mut list = Vec::with_capacity(raw.len());
    for (i, o) in raw.iter().enumerate() {
        match origin(o) {
            Ok(p) => list.push(p),
            Err(e) => c.err(format!("{field}[{i}]"), e),
        }
    }
    Origins::List(list)
}

/// `scheme://host[:port]` (or `scheme://*.domain[:port]`) in browser form: lower case, a
/// default port dropped.
fn origin(raw: &str) -> Result<OriginPattern, String> {
    let bad = |why: &str| {
        format!("invalid origin {raw:?}: {why}; write scheme://host[:port], like \"https://app.example.com\"")
    };
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err(bad("the scheme must be http or https")),
    };
    if rest.contains(['/', '?', '#']) {
        return Err(bad("an origin has no path, query or fragment (not even a trailing /)"));
    }
    let (wild, authority) = match rest.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let a = crate::authority::parse(authority.as_bytes()).map_err(|e| bad(e.reason()))?;
    if authority.contains('@') {
        return Err(bad("no user name"));
    }
    if wild && (a.host().starts_with('[') || a.host().bytes().all(|b| b.is_ascii_digit() || b == b'.')) {
        return Err(bad("a wildcard needs a domain name after \"*.\""));
    }
    let port = a.port().filter(|p| *p != default_port).map(|p| format!(":{p}")).unwrap_or_default();
    Ok(if wild {
        OriginPattern::Subdomains { scheme: format!("{scheme}://"), suffix: format!(".{}{port}", a.host()) }
    } else {
        OriginPattern::Exact(format!("{scheme}://{}{port}", a.host()))
    })
}

fn header_names(c: &mut Check, field: &str, raw: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, name) in raw.iter().enumerate() {
        match HeaderName::from_bytes(name.trim().as_bytes()) {
            Ok(n) if !out.iter().any(|o| o == n.as_str()) => out.push(n.as_str().to_string()),
            Ok(_) => {}
            Err(_) => c.err(format!("{field}[{i}]"), format!("{name:?} is not a header name")),
        }
    }
    out
}

fn allow_headers(c: &mut Check, field: &str, raw: Vec<String>, dpop: bool) -> AllowHeaders {
    if raw.iter().any(|h| h.trim() == "*") {
        if raw.len() > 1 {
            c.err(field, "\"*\" admits every header; list no others beside it");
        }
        // Whatever is asked for, `DPoP` included.
        return AllowHeaders::Echo;
    }
    let mut names = header_names(c, field, &raw);
    // The proof of a DPoP request (RFC 9449 §4.1) is a request header of its own.
    if dpop && !names.iter().any(|n| n == "dpop") {
        names.push("dpop".into());
    }
    match names {
        names if names.is_empty() => AllowHeaders::None,
        names => AllowHeaders::List(header_value(&names.join(", "))),
    }
}

fn expose_headers(c: &mut Check, field: &str, raw: Vec<String>, credentials: bool, dpop: bool) -> HeaderValue {
    let star = raw.iter().any(|h| h.trim() == "*");
    if star && credentials {
        c.err(field, "\"*\" means every header only without credentials; with allow_credentials list them");
    }
    let named: Vec<String> = raw.into_iter().filter(|h| h.trim() != "*").collect();
    let mut names = header_names(c, field, &named);
    // So that a browser app can read why it was refused (RFC 6750 challenges).
    if !names.iter().any(|n| n == "www-authenticate") {
        names.insert(0, "www-authenticate".into());
    }
    // The server nonce a DPoP client must put in its next proof (RFC 9449 §8).
    if dpop && !names.iter().any(|n| n == "dpop-nonce") {
        names.insert(1, "dpop-nonce".into());
    }
    if star {
        names.insert(0, "*".into());
    }
    header_value(&names.join(", "))
}

fn max_age(c: &mut Check, field: &str, raw: &str) -> Option<HeaderValue> {
    match parse_duration(raw) {
        Ok(d) if d.subsec_nanos() != 0 => {
            c.err(field, format!("{raw:?}: browsers take whole seconds"));
            None
        }
        Ok(d) if d > Duration::from_secs(86_400) => {
            c.err(field, format!("{raw:?}: at most \"1d\" (Chromium caps it at 2h, Firefox at 1d)"));
            None
        }
        Ok(d) => Some(header_value(&d.as_secs().to_string())),
        Err(e) => {
            c.err(field, e);
            None
        }
    }
}

/// Built from validated names and digits only; the fallback is never reached.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_in_browser_form() {
        let exact = |s: &str| match origin(s).unwrap() {
            OriginPattern::Exact(o) => o,
            other => panic!("{other:?}"),
        };
        assert_eq!(exact("https://App.Example.com"), "https://app.example.com");
        assert_eq!(exact("HTTPS://app.example.com:443"), "https://app.example.com");
        assert_eq!(exact("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(exact("http://[::1]:3000"), "http://[::1]:3000");
        for bad in [
            "app.example.com",
            "ftp://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x",
            "https://user@app.example.com",
            "https://",
            "https://a..b",
            "https://*.1.2.3",
            "null",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcard_origins_match_subdomains_only() {
        let p = origin("https://*.example.com").unwrap();
        assert!(p.matches(b"https://app.example.com"));
        assert!(p.matches(b"https://a.b.example.com"));
        for no in [
            "https://example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://evil-example.com",
            "https://app.example.com.evil.com",
            "https://.example.com",
            "https://a..example.com",
            "https://evil.com/.example.com",
            "https://evil.com#.example.com",
            "https://APP.example.com",
        ] {
            assert!(!p.matches(no.as_bytes()), "{no}");
        }
        let with_port = origin("https://*.example.com:8443").unwrap();
        assert!(with_port.matches(b"https://app.example.com:8443"));
        assert!(!with_port.matches(b"https://app.example.com"));
    }
}
