//! Validation of issuers and of routes' authentication and authorization settings.

use std::time::Duration;

use http::{HeaderName, Uri};
use jsonwebtoken::Algorithm;

use super::raw::{RawClaimRule, RawIssuer, RawRoute, RawRules};
use super::units::parse_size;
use super::validate::Check;
use super::*;

/// Algorithms a key without `alg` may verify unless the issuer lists its own. Symmetric ones
/// are never accepted from a key set.
const DEFAULT_ALGORITHMS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

pub(super) fn issuers(c: &mut Check, raw: Vec<RawIssuer>, base_dir: &Path) -> Vec<Issuer> {
    let mut out: Vec<Issuer> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("issuer[{i}].{f}");
        let name = r.name.clone().unwrap_or_else(|| if i == 0 { "default".into() } else { format!("issuer{i}") });
        if out.iter().any(|o| o.name == name) {
            c.err(at("name"), format!("duplicate issuer name {name:?}"));
        }
        if let Err(e) = endpoint_url(&r.url, r.insecure_http) {
            c.err(at("url"), e);
        }
        let jwks_uri = r.jwks_uri.as_deref().and_then(|u| match endpoint_url(u, r.insecure_http) {
            Ok(uri) => Some(uri),
            Err(e) => {
                c.err(at("jwks_uri"), e);
                None
            }
        });
        let discovery = r.discovery.unwrap_or(jwks_uri.is_none());
        if !discovery && jwks_uri.is_none() && r.introspection.as_ref().is_none_or(|i| i.endpoint.is_none()) {
            c.err(at("jwks_uri"), "required when discovery = false");
        }
        if r.audiences.is_empty() {
            c.err(
                at("audiences"),
                "list at least one accepted audience (the API's identifier): tokens for other audiences must not pass",
            );
        }
        let algorithms = match &r.algorithms {
            None => DEFAULT_ALGORITHMS.to_vec(),
            Some(list) => list
                .iter()
                .filter_map(|a| match parse_asymmetric_algorithm(a) {
                    Ok(alg) => Some(alg),
                    Err(e) => {
                        c.err(at("algorithms"), e);
                        None
                    }
                })
                .collect(),
        };
        let max_token_bytes = match r.max_token_bytes.as_deref().map(parse_size) {
            None => 16 * 1024,
            Some(Ok(n)) if (256..=1 << 20).contains(&n) => n as usize,
            Some(Ok(_)) => {
                c.err(at("max_token_bytes"), "must be between 256B and 1MiB");
                16 * 1024
            }
            Some(Err(e)) => {
                c.err(at("max_token_bytes"), e);
                16 * 1024
            }
        };
        let introspection = r.introspection.map(|ri| {
            let endpoint = ri.endpoint.as_deref().and_then(|u| match endpoint_url(u, r.insecure_http) {
                Ok(uri) => Some(uri),
                Err(e) => {
                    c.err(at("introspection.endpoint"), e);
                    None
                }
            });
            let auth = super::client_auth::client_auth(
                c,
                &at("introspection"),
                ri.auth_method.as_deref(),
                ri.client_secret,
                ri.private_key_file.as_deref(),
                base_dir,
            );
            Introspection {
                endpoint,
                client_id: ri.client_id,
                auth,
                cache_inactive: c.duration(
                    &at("introspection.cache_inactive"),
                    ri.cache_inactive.as_deref(),
                    Duration::from_secs(10),
                ),
                cache_max: c.duration(
                    &at("introspection.cache_max"),
                    ri.cache_max.as_deref(),
                    Duration::from_secs(300),
                ),
            }
        });
        if r.insecure_http {
            tracing::warn!(issuer = %name, "insecure_http: plain-HTTP issuer endpoints are allowed");
        }
        let jwks_min_ttl = c.duration(&at("jwks_min_ttl"), r.jwks_min_ttl.as_deref(), Duration::from_secs(60));
        let jwks_max_ttl = c.duration(&at("jwks_max_ttl"), r.jwks_max_ttl.as_deref(), Duration::from_secs(86_400));
        if jwks_min_ttl > jwks_max_ttl {
            c.err(at("jwks_min_ttl"), "must not exceed jwks_max_ttl");
        }
        out.push(Issuer {
            name,
            url: r.url,
            jwks_uri,
            discovery,
            audiences: r.audiences,
            algorithms,
            leeway: c.duration(&at("leeway"), r.leeway.as_deref(), Duration::from_secs(30)),
            token_type: r.token_type,
            max_token_bytes,
            jwks_min_ttl,
            jwks_max_ttl,
            jwks_refetch_interval: c.duration(
                &at("jwks_refetch_interval"),
                r.jwks_refetch_interval.as_deref(),
                Duration::from_secs(10),
            ),
            insecure_http: r.insecure_http,
            introspection,
            fingerprint: Fingerprint::default(),
        });
    }
    out
}

/// The parts of a route beyond forwarding: authentication, rules and identity headers.
pub(super) struct RouteAuthParts {
    pub auth: RouteAuth,
    pub rules: Rules,
    pub pass_access_token: bool,
    pub pass_authorization_header: bool,
    pub claim_headers: Vec<(HeaderName, Vec<String>)>,
}

pub(super) fn route_auth(
    c: &mut Check,
    i: usize,
    r: &mut RawRoute,
    issuers: &[Issuer],
    login: bool,
    dpop: &mut super::dpop::Global,
) -> RouteAuthParts {
    let at = |f: &str| format!("route[{i}].{f}");
    let auth = match r.auth.as_deref() {
        None => {
            c.err(at("auth"), "required: \"bearer\" (access token), \"login\" (browser session), \"login_or_bearer\", or \"none\" (public)");
            RouteAuth::None
        }
        Some("none") => {
            for (set, key) in [
                (r.issuers.is_some(), "issuers"),
                (r.token_sources.is_some(), "token_sources"),
                (r.rules.is_some(), "rules"),
                (r.dpop.is_some() || r.dpop_algorithms.is_some() || r.dpop_nonce.is_some(), "dpop"),
            ] {
                if set {
                    c.err(at(key), "has no effect with auth = \"none\"");
                }
            }
            RouteAuth::None
        }
        Some("bearer") => RouteAuth::Bearer(bearer(c, i, r, issuers, dpop)),
        Some(mode @ ("login" | "login_or_bearer")) => {
            if !login {
                c.err(at("auth"), format!("auth = {mode:?} needs a [login] section (or [[login]] tables)"));
            }
            if mode == "login" {
                RouteAuth::Login
            } else {
                RouteAuth::LoginOrBearer(bearer(c, i, r, issuers, dpop))
            }
        }
        Some(other) => {
            c.err(
                at("auth"),
                format!("unknown value {other:?}: use \"bearer\", \"login\", \"login_or_bearer\" or \"none\""),
            );
            RouteAuth::None
        }
    };
    let rules = rules(c, i, r.rules.take().unwrap_or_default());
    let mut claim_headers = Vec::new();
    for (name, claim) in &r.claim_headers {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => claim_headers.push((h, claim_path(claim))),
            Err(_) => c.err(at(&format!("claim_headers.{name}")), "invalid header name"),
        }
    }
    if r.pass_authorization_header && !matches!(auth, RouteAuth::Login | RouteAuth::LoginOrBearer(_)) {
        c.err(
            at("pass_authorization_header"),
            "only applies to login routes (a bearer caller's own header is forwarded as is)",
        );
    }
    RouteAuthParts {
        auth,
        rules,
        pass_access_token: r.pass_access_token,
        pass_authorization_header: r.pass_authorization_header,
        claim_headers,
    }
}

fn bearer(c: &mut Check, i: usize, r: &RawRoute, issuers: &[Issuer], dpop: &mut super::dpop::Global) -> Bearer {
    let at = |f: &str| format!("route[{i}].{f}");
    if issuers.is_empty() {
        c.err(at("auth"), "bearer tokens need at least one [[issuer]]");
    }
    let accepted = match &r.issuers {
        None => (0..issuers.len()).collect(),
        Some(names) => names
            .iter()
            .filter_map(|n| {
                let found = issuers.iter().position(|iss| &iss.name == n);
                if found.is_none() {
                    c.err(at("issuers"), format!("no issuer named {n:?}"));
                }
                found
            })
            .collect(),
    };
    let sources = match &r.token_sources {
        None => vec![TokenSource::Header],
        Some(list) => list
            .iter()
            .filter_map(|s| match token_source(s) {
                Ok(src) => Some(src),
                Err(e) => {
                    c.err(at("token_sources"), e);
                    None
                }
            })
            .collect(),
    };
    if sources.is_empty() {
        c.err(at("token_sources"), "must list at least one source");
    }
    let realm = r.realm.clone().unwrap_or_else(|| "tollgate".into());
    if realm.contains('"') || realm.contains('\\') || realm.chars().any(|ch| ch.is_control()) {
        c.err(at("realm"), "must not contain quotes, backslashes or control characters");
    }
    let dpop = super::dpop::route(c, i, r, dpop);
    Bearer { issuers: accepted, sources, forward_authorization: r.forward_authorization.unwrap_or(true), realm, dpop }
}

fn rules(c: &mut Check, i: usize, raw: RawRules) -> Rules {
    let claims = raw
        .claims
        .into_iter()
        .enumerate()
        .filter_map(|(j, rule)| claim_rule(c, &format!("route[{i}].rules.claims[{j}]"), rule))
        .collect();
    Rules {
        scopes: raw.scopes,
        groups: raw.groups,
        emails: raw.emails.into_iter().map(|e| e.to_ascii_lowercase()).collect(),
        email_domains: raw.email_domains.into_iter().map(|d| d.trim_start_matches('@').to_ascii_lowercase()).collect(),
        claims,
    }
}

fn claim_rule(c: &mut Check, at: &str, r: RawClaimRule) -> Option<ClaimRule> {
    let json = |v: toml::Value| serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    let test = match (r.equals, r.contains, r.one_of) {
        (Some(v), None, None) => ClaimTest::Equals(json(v)),
        (None, Some(v), None) => ClaimTest::Contains(json(v)),
        (None, None, Some(vs)) if !vs.is_empty() => ClaimTest::OneOf(vs.into_iter().map(json).collect()),
        _ => {
            c.err(at, "give exactly one of equals, contains or one_of (non-empty)");
            return None;
        }
    };
    if r.claim.is_empty() || r.claim.split('.').any(str::is_empty) {
        c.err(format!("{at}.claim"), "must be a claim name or a dotted path like realm_access.roles");
        return None;
    }
    Some(ClaimRule { path: claim_path(&r.claim), test })
}

fn claim_path(s: &str) -> Vec<String> {
    s.split('.').map(str::to_string).collect()
}

fn token_source(s: &str) -> Result<TokenSource, String> {
    match s.split_once(':') {
        None if s == "header" => Ok(TokenSource::Header),
        Some(("query", name)) if !name.is_empty() => Ok(TokenSource::Query(name.to_string())),
        Some(("cookie", name)) if !name.is_empty() => Ok(TokenSource::Cookie(name.to_string())),
        _ => Err(format!("unknown source {s:?}: use \"header\", \"query:NAME\" or \"cookie:NAME\"")),
    }
}

pub fn parse_asymmetric_algorithm(s: &str) -> Result<Algorithm, String> {
    match s {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(format!("unsupported algorithm {other:?}: use RS256/384/512, PS256/384/512, ES256/384 or EdDSA")),
    }
}

/// An issuer endpoint: HTTPS, or plain HTTP on a loopback host, or with `insecure_http`.
pub fn endpoint_url(s: &str, insecure_http: bool) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("invalid URL {s:?}: no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if insecure_http || is_loopback(host) => Ok(uri),
        Some("http") => Err(format!("{s:?} is plain HTTP: issuers must use https (loopback hosts excepted; set insecure_http = true to override)")),
        _ => Err(format!("invalid URL {s:?}: the scheme must be https")),
    }
}

pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_urls_must_be_https_except_loopback() {
        assert!(endpoint_url("https://idp.example.com", false).is_ok());
        assert!(endpoint_url("http://127.0.0.1:8080", false).is_ok());
        assert!(endpoint_url("http://[::1]:8080/x", false).is_ok());
        assert!(endpoint_url("http://localhost", false).is_ok());
        assert!(endpoint_url("http://idp.example.com", false).is_err());
        assert!(endpoint_url("http://127.0.0.1.evil.com", false).is_err());
        assert!(endpoint_url("http://idp.example.com", true).is_ok());
        assert!(endpoint_url("ftp://idp.example.com", true).is_err());
    }

    #[test]
    fn token_sources() {
        assert_eq!(token_source("header"), Ok(TokenSource::Header));
        assert_eq!(token_source("query:access_token"), Ok(TokenSource::Query("access_token".into())));
        assert!(token_source("query:").is_err());
        assert!(token_source("body").is_err());
    }

    #[test]
    fn only_asymmetric_algorithms() {
        assert!(parse_asymmetric_algorithm("HS256").is_err());
        assert!(parse_asymmetric_algorithm("none").is_err());
        assert!(parse_asymmetric_algorithm("rs256").is_err());
        assert_eq!(parse_asymmetric_algorithm("ES256"), Ok(Algorithm::ES256));
    }
}
