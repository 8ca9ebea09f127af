//! Validation of `[[client]]` (client-credentials token minting) and `[[egress]]` listeners.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, Uri};

use super::client_auth::client_auth;
use super::raw::{RawClient, RawEgress};
use super::validate::Check;
use super::*;

/// A named OAuth client whose client-credentials tokens go to upstreams.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    /// Where the token endpoint comes from.
    pub endpoint: TokenEndpoint,
    pub client_id: String,
    pub auth: ClientAuth,
    /// What identifies this client across reloads (its table, and its issuer's).
    pub fingerprint: super::Fingerprint,
    /// Extra form parameters: scope, resource (RFC 8707), audience, and any others.
    pub params: Vec<(String, String)>,
    /// A token is renewed this long before it expires.
    pub refresh_skew: Duration,
}

#[derive(Debug, Clone)]
pub enum TokenEndpoint {
    /// From the named issuer's discovery document (index into `Config::issuers`).
    Issuer(usize),
    Url(Uri),
}

/// What happens to the caller's own `Authorization` when a minted token replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingAuthorization {
    Drop,
    MoveTo(HeaderName),
}

/// A route's upstream credential: a client's token, and the fate of the caller's.
#[derive(Debug, Clone)]
pub struct UpstreamToken {
    /// Index into `Config::clients`.
    pub client: usize,
    pub incoming: IncomingAuthorization,
}

/// A loopback listener for an app's outgoing calls (sidecar egress).
#[derive(Debug, Clone)]
pub struct Egress {
    pub name: String,
    pub listen: SocketAddr,
    /// The route it serves (every path, forwarded with the client's token).
    pub route: Route,
}

pub(super) fn clients(c: &mut Check, raw: Vec<RawClient>, issuers: &[Issuer], base_dir: &Path) -> Vec<Client> {
    let mut out: Vec<Client> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("client[{i}]");
        if out.iter().any(|o| o.name == r.name) {
            c.err(format!("{at}.name"), format!("duplicate client name {:?}", r.name));
        }
        let endpoint = match (&r.issuer, &r.token_endpoint) {
            (Some(name), None) => match issuers.iter().position(|iss| &iss.name == name) {
                Some(idx) => TokenEndpoint::Issuer(idx),
                None => {
                    c.err(format!("{at}.issuer"), format!("no issuer named {name:?}"));
                    TokenEndpoint::Issuer(0)
                }
            },
            (None, Some(url)) => match endpoint_url(url, r.insecure_http) {
                Ok(u) => TokenEndpoint::Url(u),
                Err(e) => {
                    c.err(format!("{at}.token_endpoint"), e);
                    TokenEndpoint::Issuer(0)
                }
            },
            _ => {
                c.err(
                    format!("{at}.issuer"),
                    "give either issuer (its token endpoint is discovered) or token_endpoint",
                );
                TokenEndpoint::Issuer(0)
            }
        };
        let auth =
            client_auth(c, &at, r.auth_method.as_deref(), r.client_secret, r.private_key_file.as_deref(), base_dir);
        let mut params = Vec::new();
        for (key, value) in [("scope", r.scope), ("resource", r.resource), ("audience", r.audience)] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                params.push((key.to_string(), v));
            }
        }
        for (k, v) in r.extra_params {
            if ["grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type"]
                .contains(&k.as_str())
            {
                c.err(format!("{at}.extra_params.{k}"), "set by tollgate itself");
            }
            params.push((k, v));
        }
        out.push(Client {
            name: r.name,
            endpoint,
            client_id: r.client_id,
            auth,
            params,
            refresh_skew: c.duration(&format!("{at}.refresh_skew"), r.refresh_skew.as_deref(), Duration::from_secs(30)),
            fingerprint: super::Fingerprint::default(),
        });
    }
    out
}

/// A route's `upstream_token` and `incoming_authorization`.
pub(super) fn upstream_token(
    c: &mut Check,
    at: &str,
    client: Option<&str>,
    incoming: Option<&str>,
    clients: &[Client],
) -> Option<UpstreamToken> {
    let Some(name) = client else {
        if incoming.is_some() {
            c.err(format!("{at}.incoming_authorization"), "only applies with upstream_token");
        }
        return None;
    };
    let Some(idx) = clients.iter().position(|cl| cl.name == name) else {
        c.err(format!("{at}.upstream_token"), format!("no [[client]] named {name:?}"));
        return None;
    };
    let incoming = match incoming {
        None | Some("drop") => IncomingAuthorization::Drop,
        Some(h) => match HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) if name != http::header::AUTHORIZATION => IncomingAuthorization::MoveTo(name),
            _ => {
                c.err(
                    format!("{at}.incoming_authorization"),
                    "\"drop\", or the header name to move the caller's Authorization to",
                );
                IncomingAuthorization::Drop
            }
        },
    };
    Some(UpstreamToken { client: idx, incoming })
}

pub(super) fn egress(c: &mut Check, raw: Vec<RawEgress>, clients: &[Client], default_timeout: Duration) -> Vec<Egress> {
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("egress[{i}]");
        let listen: SocketAddr = match r.listen.parse() {
            Ok(a) => a,
            Err(_) => {
                c.err(format!("{at}.listen"), format!("invalid address {:?}: expected 127.0.0.1:PORT", r.listen));
                continue;
            }
        };
        if !listen.ip().is_loopback() {
            c.err(
                format!("{at}.listen"),
                "egress listeners take plain HTTP from the app: they must listen on loopback (127.0.0.1 or ::1)",
            );
        }
        let upstream = match super::validate::parse_upstream(&r.upstream) {
            Ok(u) => u,
            Err(e) => {
                c.err(format!("{at}.upstream"), e);
                continue;
            }
        };
        let upstream_token = upstream_token(c, &at, r.client.as_deref(), None, clients);
        let name = r.name.unwrap_or_else(|| format!("egress{i}"));
        let max_body = match r.max_body.as_deref() {
            None => Some(10 << 20),
            Some("unlimited") => None,
            Some(s) => super::units::parse_size(s).map(Some).unwrap_or_else(|e| {
                c.err(format!("{at}.max_body"), e);
                None
            }),
        };
        let route = Route {
            // The only route of its listener's own route table.
            id: 0,
            name: name.clone(),
            host: None,
            path: "/".into(),
            upstream,
            strip_prefix: false,
            preserve_host: false,
            max_body,
            timeout: c.duration(&format!("{at}.timeout"), r.timeout.as_deref(), default_timeout),
            auth: RouteAuth::None,
            rules: Rules::default(),
            pass_access_token: false,
            pass_authorization_header: false,
            claim_headers: Vec::new(),
            upstream_token,
            insecure_forward_unverified_email: false,
            login: None,
            methods: None,
            cors: None,
        };
        out.push(Egress { name, listen, route });
    }
    out
}
