//! Validation of `[[client]]` (client-credentials token minting, or RFC 8693 token exchange of
//! the caller's token) and `[[egress]]` listeners.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, Uri};

use super::client_auth::client_auth;
use super::raw::{RawClient, RawEgress};
use super::validate::Check;
use super::*;

/// A named OAuth client whose tokens go to upstreams: its own (client credentials) or the
/// caller's, exchanged (RFC 8693).
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub grant: Grant,
    /// Where the token endpoint comes from.
    pub endpoint: TokenEndpoint,
    pub client_id: String,
    pub auth: ClientAuth,
    /// What identifies this client across reloads (its table, and its issuer's).
    pub fingerprint: super::Fingerprint,
    /// Extra form parameters: scope, resource (RFC 8707), audience, and any others.
    pub params: Vec<(String, String)>,
    /// A token is renewed this long before it expires (an exchanged one: no longer used).
    pub refresh_skew: Duration,
}

/// The token type URI of an access token (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// How a client gets the token the upstream receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Its own token (RFC 6749 §4.4), the same for every caller.
    ClientCredentials,
    /// The caller's token exchanged for one per caller (RFC 8693).
    TokenExchange(Exchange),
}

/// The token-exchange request's own parameters (`audience`, `resource` and `scope` are in
/// [`Client::params`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// `subject_token_type`: what the caller's token is to the provider.
    pub subject_token_type: String,
    /// `requested_token_type`, when configured; the answer's `issued_token_type` must match it.
    pub requested_token_type: Option<String>,
    /// `actor_token_type` when the client's own client-credentials token is sent as
    /// `actor_token` (delegation, RFC 8693 §1.1); `None`: no actor token.
    pub actor_token_type: Option<String>,
}

impl Client {
    /// True when the client exchanges the caller's token.
    pub fn exchanges(&self) -> bool {
        matches!(self.grant, Grant::TokenExchange(_))
    }

    /// True when the client needs its own client-credentials token: to send it upstream, or
    /// as the actor token of its exchanges.
    pub fn mints_own_token(&self) -> bool {
        match &self.grant {
            Grant::ClientCredentials => true,
            Grant::TokenExchange(e) => e.actor_token_type.is_some(),
        }
    }

    /// The form parameters of its client-credentials request: the configured ones, except for
    /// a token-exchange client, whose parameters are for the exchange (its actor token is
    /// requested without any).
    pub fn client_credentials_params(&self) -> &[(String, String)] {
        match self.grant {
            Grant::ClientCredentials => &self.params,
            Grant::TokenExchange(_) => &[],
        }
    }
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
    /// Index into `Config::clients` (the snapshot holds the client itself:
    /// `gateway::UpstreamToken`).
    pub client: usize,
    pub incoming: IncomingAuthorization,
    /// The client exchanges the caller's token (`grant = "token_exchange"`).
    pub exchange: bool,
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
        let grant = grant(c, &at, &r);
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
                || (matches!(grant, Grant::TokenExchange(_)) && EXCHANGE_PARAMS.contains(&k.as_str()))
            {
                c.err(format!("{at}.extra_params.{k}"), "set by tollgate itself");
            }
            params.push((k, v));
        }
        out.push(Client {
            name: r.name,
            grant,
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

/// The form parameters of a token exchange that tollgate sets.
const EXCHANGE_PARAMS: &[&str] =
    &["subject_token", "subject_token_type", "actor_token", "actor_token_type", "requested_token_type"];

/// `client[i].grant` and the token-exchange settings, which only it may use.
fn grant(c: &mut Check, at: &str, r: &RawClient) -> Grant {
    let exchange_only = [
        ("subject_token_type", r.subject_token_type.is_some()),
        ("requested_token_type", r.requested_token_type.is_some()),
        ("actor_token", r.actor_token),
        ("actor_token_type", r.actor_token_type.is_some()),
    ];
    match r.grant.as_deref() {
        None | Some("client_credentials") => {
            for (field, _) in exchange_only.iter().filter(|(_, set)| *set) {
                c.err(format!("{at}.{field}"), "only applies with grant = \"token_exchange\"");
            }
            Grant::ClientCredentials
        }
        Some("token_exchange") => {
            if r.actor_token_type.is_some() && !r.actor_token {
                c.err(format!("{at}.actor_token_type"), "only applies with actor_token = true");
            }
            let mut token_type = |field: &str, value: Option<&str>| {
                let v = value?;
                if !is_token_type(v) {
                    c.err(
                        format!("{at}.{field}"),
                        format!("{v:?} is not a token type URI (e.g. \"{ACCESS_TOKEN_TYPE}\")"),
                    );
                }
                Some(v.to_string())
            };
            let subject_token_type = token_type("subject_token_type", r.subject_token_type.as_deref());
            let requested_token_type = token_type("requested_token_type", r.requested_token_type.as_deref());
            let actor_token_type = token_type("actor_token_type", r.actor_token_type.as_deref());
            Grant::TokenExchange(Exchange {
                subject_token_type: subject_token_type.unwrap_or_else(|| ACCESS_TOKEN_TYPE.into()),
                requested_token_type,
                actor_token_type: r.actor_token.then(|| actor_token_type.unwrap_or_else(|| ACCESS_TOKEN_TYPE.into())),
            })
        }
        Some(other) => {
            c.err(format!("{at}.grant"), format!("{other:?}: \"client_credentials\" (default) or \"token_exchange\""));
            Grant::ClientCredentials
        }
    }
}

/// A URI as RFC 8693 §3 token types are: a scheme, a colon, no spaces or control characters.
fn is_token_type(v: &str) -> bool {
    let Some((scheme, rest)) = v.split_once(':') else { return false };
    !rest.is_empty()
        && scheme.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic())
        && scheme.chars().all(|ch| ch.is_ascii_alphanumeric() || "+-.".contains(ch))
        && v.bytes().all(|b| b.is_ascii_graphic())
}

/// A route whose `upstream_token` names a token-exchange client: there must be a caller whose
/// token is exchanged, and no copy of that token may reach the upstream beside the exchanged
/// one (the point of the exchange), so settings that would send it are errors.
/// `field` names the setting that chose the client (`upstream_token`, or an egress `client`).
pub(super) fn check_exchange_route(c: &mut Check, at: &str, field: &str, route: &Route, clients: &[Client]) {
    let Some(t) = route.upstream_token.as_ref().filter(|t| t.exchange) else { return };
    let name = clients.get(t.client).map_or("?", |cl| cl.name.as_str());
    let why = format!("client {name:?} exchanges the caller's token (grant = \"token_exchange\")");
    if matches!(route.auth, RouteAuth::None) {
        let fix = match field {
            "client" => "an egress listener authenticates no caller; use a client_credentials client",
            _ => "the route must authenticate a caller (auth = \"bearer\", \"login\" or \"login_or_bearer\")",
        };
        c.err(format!("{at}.{field}"), format!("{why}: {fix}"));
    }
    if matches!(t.incoming, IncomingAuthorization::MoveTo(_)) {
        c.err(
            format!("{at}.incoming_authorization"),
            format!("{why}: the caller's token must not reach the upstream; use \"drop\" (the default)"),
        );
    }
    if route.pass_access_token {
        c.err(
            format!("{at}.pass_access_token"),
            format!("{why}: X-Forwarded-Access-Token would send the caller's token to the upstream as well"),
        );
    }
    if route.pass_authorization_header {
        c.err(
            format!("{at}.pass_authorization_header"),
            format!("{why}: the upstream's Authorization carries the exchanged token"),
        );
    }
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
    Some(UpstreamToken { client: idx, incoming, exchange: clients[idx].exchanges() })
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
        check_exchange_route(c, &at, "client", &route, clients);
        out.push(Egress { name, listen, route });
    }
    out
}
