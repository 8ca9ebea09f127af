//! Configuration: one TOML file, `${VAR}` substitution, `*_file` secrets, unknown keys refused,
//! then validated into the typed [`Config`] the rest of the gateway uses.

mod auth;
mod client_auth;
mod clients;
mod cors;
pub mod dpop;
mod login;
mod methods;
mod raw;
mod subst;
mod telemetry;
pub mod units;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};

pub use auth::{endpoint_url, is_loopback, parse_asymmetric_algorithm};
pub use clients::{
    Client, Egress, Exchange, Grant, IncomingAuthorization, TokenEndpoint, UpstreamToken, ACCESS_TOKEN_TYPE,
};
pub use cors::{AllowHeaders, Cors, OriginPattern, Origins};
pub use login::{ClientAuth, Login, PrivateKey, RedisStore, SessionStore, DEFAULT_LOGIN};
pub use methods::MethodSet;
pub use telemetry::Telemetry;
pub use units::IpRange;

use crate::authority::HostPattern;
pub use crate::client_cert::{CertHeader, ClientCertMode, HeaderFormat};

/// A digest of a configuration table after substitution: equal digests mean the same settings
/// (secrets included), so runtime state built from one may serve the other.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The digest of a table as written, and of what it depends on (another fingerprint).
    fn of(table: &toml::Value, depends_on: Option<Fingerprint>) -> Fingerprint {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(table.to_string().as_bytes());
        if let Some(Fingerprint(other)) = depends_on {
            ctx.update(&[0]);
            ctx.update(&other);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Fingerprint(out)
    }
}

/// Never printed: it is derived from secrets.
impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint(..)")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from, for messages.
    pub file: PathBuf,
    pub server: Server,
    pub admin: Admin,
    pub log: Log,
    pub upstream: UpstreamClient,
    pub issuers: Vec<Issuer>,
    /// Browser logins: `[login]` (named `default`) or each `[[login]]`, in the file's order.
    pub logins: Vec<Login>,
    pub clients: Vec<Client>,
    pub egress: Vec<Egress>,
    pub routes: Vec<Route>,
    /// `[telemetry]`: trace export; `None` makes no spans.
    pub telemetry: Option<Telemetry>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    /// Threads serving requests, each with its own runtime, listener and upstream pool.
    pub workers: usize,
    pub tls: Option<TlsFiles>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpRange>,
    /// More request headers to remove (lower case; a trailing `*` is a prefix).
    pub strip_request_headers: Vec<String>,
    /// Headers removed by default that are passed through on purpose (lower case).
    pub keep_request_headers: Vec<String>,
    /// A response with data for the client that makes no progress this long closes its connection.
    pub write_timeout: Duration,
    /// A WebSocket tunnel with no bytes either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// HTTP/2 streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// How often the file is read again to pick up changes (zero: only on SIGHUP).
    pub config_check_interval: Duration,
    /// The header a trusted proxy that terminated TLS passes the client certificate in.
    pub client_cert_header: Option<CertHeader>,
    /// Forward-auth answers CORS preflights it is asked about (the proxy sets the original
    /// method itself, so a client's own `X-Original-Method` never reaches tollgate).
    pub forward_auth_preflight: bool,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files are read again to pick up a renewed certificate.
    pub reload_interval: Duration,
    /// CA certificates (PEM) that verify client certificates; none: no certificates asked for.
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientCertMode,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Connections the admin listener serves at once; more wait in the kernel backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct Log {
    pub format: LogFormat,
    /// A tracing filter directive; `RUST_LOG` overrides it.
    pub level: String,
    pub access_log: bool,
}

#[derive(Debug, Clone)]
pub struct UpstreamClient {
    pub connect_timeout: Duration,
    /// Default time to wait for an upstream's response headers (a route may override it).
    pub timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Connections one worker keeps open to one upstream (busy and idle; tunnels not counted).
    pub max_connections_per_host: usize,
    /// How long a request waits for a connection when `max_connections_per_host` are busy.
    pub pool_wait_timeout: Duration,
    /// HTTP/2 upstream connections: a PING after this long without a frame from the upstream
    /// (`None`: never, `h2_keepalive_interval = "0"`).
    pub h2_keepalive_interval: Option<Duration>,
    /// How long the PING's answer may take before the connection is dropped.
    pub h2_keepalive_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub host: Option<HostPattern>,
    /// Normalised path prefix, starting with `/`.
    pub path: String,
    pub upstream: Upstream,
    pub strip_prefix: bool,
    /// Send the client's `Host` upstream instead of the upstream's authority.
    pub preserve_host: bool,
    /// Largest request body accepted; `None` for no limit.
    pub max_body: Option<u64>,
    pub timeout: Duration,
    pub auth: RouteAuth,
    pub rules: Rules,
    /// Send the caller's access token upstream in `X-Forwarded-Access-Token`.
    pub pass_access_token: bool,
    /// For session callers, send the session's access token as `Authorization: Bearer`.
    pub pass_authorization_header: bool,
    /// Extra identity headers: header name → claim path.
    pub claim_headers: Vec<(http::HeaderName, Vec<String>)>,
    /// A client-credentials token to send upstream instead of the caller's credential.
    pub upstream_token: Option<UpstreamToken>,
    /// Forward an email address the issuer marked `email_verified: false` (off: such an
    /// address is left out of `X-Forwarded-Email`).
    pub insecure_forward_unverified_email: bool,
    /// The name of the route's login (`auth = "login"` or `"login_or_bearer"` only).
    pub login: Option<String>,
    /// The methods the route serves; `None`: any method (see `router.rs` for the matching).
    pub methods: Option<MethodSet>,
    /// Cross-origin requests from browsers (`src/cors.rs`); `None`: no CORS headers are added
    /// and the upstream's pass through.
    pub cors: Option<Cors>,
}

/// A token issuer (an OpenID Provider or any OAuth 2.0 authorization server).
#[derive(Debug, Clone)]
pub struct Issuer {
    pub name: String,
    /// The issuer identifier, compared exactly with `iss` and the discovery document's `issuer`.
    pub url: String,
    /// Explicit key set location; without it, discovery finds one.
    pub jwks_uri: Option<http::Uri>,
    /// Fetch `/.well-known/openid-configuration` at start.
    pub discovery: bool,
    /// Accepted `aud` values for access tokens: a token must name at least one.
    pub audiences: Vec<String>,
    /// Algorithms a key without its own `alg` may verify (a key's `alg` always pins it).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Required JOSE `typ`, such as `at+jwt` (RFC 9068).
    pub token_type: Option<String>,
    pub max_token_bytes: usize,
    pub jwks_min_ttl: Duration,
    pub jwks_max_ttl: Duration,
    /// Least time between two key-set fetches caused by an unknown `kid`.
    pub jwks_refetch_interval: Duration,
    /// Plain-HTTP endpoints on a non-loopback host were allowed explicitly.
    pub insecure_http: bool,
    pub introspection: Option<Introspection>,
    /// What identifies this issuer across reloads: its table as written (after substitution).
    /// Keys, verified tokens and introspection answers carry over only to an identical issuer.
    pub fingerprint: Fingerprint,
}

/// RFC 7662 token introspection, used for tokens that are not JWTs.
#[derive(Debug, Clone)]
pub struct Introspection {
    /// Explicit endpoint; without it, the discovery document's `introspection_endpoint`.
    pub endpoint: Option<http::Uri>,
    pub client_id: String,
    /// How tollgate authenticates to the endpoint (the same methods as for token requests).
    pub auth: ClientAuth,
    /// How long an inactive answer is remembered.
    pub cache_inactive: Duration,
    /// Upper bound on how long an active answer is remembered (never past the token's `exp`).
    pub cache_max: Duration,
}

/// How a route authenticates callers.
#[derive(Debug, Clone)]
pub enum RouteAuth {
    /// Public: anyone passes (identity headers from clients are still removed).
    None,
    Bearer(Bearer),
    /// A browser session of the route's login; browsers without one are sent to sign in.
    Login,
    /// A session, or else a bearer token.
    LoginOrBearer(Bearer),
}

impl RouteAuth {
    /// The bearer settings, when the route accepts bearer tokens.
    pub fn bearer(&self) -> Option<&Bearer> {
        match self {
            RouteAuth::Bearer(b) | RouteAuth::LoginOrBearer(b) => Some(b),
            RouteAuth::None | RouteAuth::Login => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Bearer {
    /// Indexes into `Config::issuers` of the issuers whose tokens this route accepts (the
    /// snapshot holds their states instead: `auth::RouteBearer`).
    pub issuers: Vec<usize>,
    pub sources: Vec<TokenSource>,
    /// Pass the client's `Authorization` header upstream.
    pub forward_authorization: bool,
    pub realm: String,
    pub dpop: dpop::Dpop,
}

/// Where a bearer token may come from. Only the header unless a route opts in to others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Query(String),
    Cookie(String),
}

/// Authorization rules; all listed kinds must hold (within a list: all scopes, any group,
/// any email, any domain, every claim rule).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    pub email_domains: Vec<String>,
    pub claims: Vec<ClaimRule>,
}

#[derive(Debug, Clone)]
pub struct ClaimRule {
    /// Dotted path split into keys: `realm_access.roles` → [realm_access, roles].
    pub path: Vec<String>,
    pub test: ClaimTest,
}

#[derive(Debug, Clone)]
pub enum ClaimTest {
    Equals(serde_json::Value),
    /// The claim is an array holding the value, or a string holding it as a space-separated word.
    Contains(serde_json::Value),
    OneOf(Vec<serde_json::Value>),
}

#[cfg(test)]
impl Route {
    /// A public route on `path` to `http://127.0.0.1:9`, for unit tests to adjust.
    pub(crate) fn for_tests(name: &str, path: &str) -> Route {
        Route {
            name: name.into(),
            host: None,
            path: path.into(),
            upstream: Upstream {
                scheme: Scheme::HTTP,
                authority: Authority::from_static("127.0.0.1:9"),
                base_path: String::new(),
                host_header: http::HeaderValue::from_static("127.0.0.1:9"),
                protocol: UpstreamProtocol::Http1,
            },
            strip_prefix: false,
            preserve_host: false,
            max_body: None,
            timeout: Duration::from_secs(1),
            auth: RouteAuth::None,
            rules: Rules::default(),
            pass_access_token: false,
            pass_authorization_header: false,
            claim_headers: Vec::new(),
            upstream_token: None,
            insecure_forward_unverified_email: false,
            login: None,
            methods: None,
            cors: None,
        }
    }
}

/// Where a route forwards to: scheme, authority and a base path prepended to the request path.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Empty or starting with `/`, never ending with `/`.
    pub base_path: String,
    /// The `Host` header for this upstream, prepared once.
    pub host_header: http::HeaderValue,
    /// How requests travel to it (`route.upstream_protocol`).
    pub protocol: UpstreamProtocol,
}

/// A route's `upstream_protocol`: HTTP/1.1 (pooled connections, WebSocket upgrades), or
/// HTTP/2 multiplexed on one connection per upstream and worker, in clear text (`h2c`, prior
/// knowledge) or over TLS with ALPN `h2` (`h2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    H2c,
    H2,
}

impl UpstreamProtocol {
    pub fn is_http2(self) -> bool {
        self != UpstreamProtocol::Http1
    }
}

/// One problem in the configuration: the field path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn at(path: &[String], reason: String) -> ConfigError {
        ConfigError { field: join_path(path), reason }
    }
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

/// Every problem found in one configuration file.
#[derive(Debug)]
pub struct LoadError {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {}", self.file.display(), e)?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

impl Config {
    /// Gives issuers and clients the digests of their tables; a client's includes its issuer's,
    /// since its token endpoint comes from there.
    fn fingerprint(&mut self, issuers: &[toml::Value], clients: &[toml::Value]) {
        for (issuer, table) in self.issuers.iter_mut().zip(issuers) {
            issuer.fingerprint = Fingerprint::of(table, None);
        }
        for (client, table) in self.clients.iter_mut().zip(clients) {
            let issuer = match client.endpoint {
                TokenEndpoint::Issuer(i) => self.issuers.get(i).map(|i| i.fingerprint),
                TokenEndpoint::Url(_) => None,
            };
            client.fingerprint = Fingerprint::of(table, issuer);
        }
    }

    /// Reads, substitutes and validates `file`, reporting every problem found.
    pub fn load(file: &Path) -> Result<Config, LoadError> {
        let bytes = std::fs::read(file).map_err(|e| LoadError {
            file: file.to_path_buf(),
            errors: vec![ConfigError::field("", format!("cannot read file: {e}"))],
        })?;
        Config::from_file_bytes(file, &bytes)
    }

    /// The contents of `file`, already read (the reloader compares the bytes first), with the
    /// process environment for `${VAR}`.
    pub fn from_file_bytes(file: &Path, bytes: &[u8]) -> Result<Config, LoadError> {
        let text = std::str::from_utf8(bytes).map_err(|e| LoadError {
            file: file.to_path_buf(),
            errors: vec![ConfigError::field("", format!("cannot read file: not UTF-8 ({e})"))],
        })?;
        Config::from_str(text, file, &|name| std::env::var(name).ok())
    }

    /// Parses configuration text; `file` names it in messages and anchors relative paths.
    pub fn from_str(text: &str, file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, LoadError> {
        let fail = |errors| LoadError { file: file.to_path_buf(), errors };
        let mut tree: toml::Value =
            toml::from_str(text).map_err(|e| fail(vec![ConfigError::field("", format!("invalid TOML: {e}"))]))?;
        let mut errors = Vec::new();
        subst::substitute(&mut tree, &mut Vec::new(), env, &mut errors);
        let base_dir = file.parent().unwrap_or(Path::new("."));
        subst::load_secret_files(&mut tree, &mut Vec::new(), base_dir, &mut errors);
        let single_login = login::single_table_as_list(&mut tree);
        // Keep going after substitution errors so one run lists every problem; a field whose
        // variable was missing is not reported a second time by validation.
        let tables = |key: &str| tree.get(key).and_then(toml::Value::as_array).cloned().unwrap_or_default();
        let (issuer_tables, client_tables) = (tables("issuer"), tables("client"));
        let raw: raw::RawConfig = match serde_path_to_error::deserialize(tree) {
            Ok(raw) => raw::RawConfig { single_login, ..raw },
            Err(e) => {
                let field = login::single_table_field(e.path().to_string(), single_login);
                let field = if field == "." { String::new() } else { field };
                // toml appends "in `table`" on a second line; the path already says where.
                let reason = e.into_inner().to_string();
                let reason = reason.lines().next().unwrap_or_default().to_string();
                errors.push(ConfigError::field(missing_field(field, &reason), reason));
                return Err(fail(errors));
            }
        };
        match validate::validate(raw, file, base_dir) {
            Ok(mut config) if errors.is_empty() => {
                config.fingerprint(&issuer_tables, &client_tables);
                Ok(config)
            }
            Ok(_) => Err(fail(errors)),
            Err(more) => {
                let reported: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
                errors.extend(more.into_iter().filter(|e| !reported.contains(&e.field)));
                Err(fail(errors))
            }
        }
    }
}

/// serde names the table that lacks a field (`login[1]: missing field `client_id``): name the
/// field itself (`login[1].client_id`).
fn missing_field(table: String, reason: &str) -> String {
    let Some(name) = reason.strip_prefix("missing field `").and_then(|r| r.split('`').next()) else { return table };
    if table.is_empty() {
        name.to_string()
    } else {
        format!("{table}.{name}")
    }
}

fn join_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !out.is_empty() && !part.starts_with('[') {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}
