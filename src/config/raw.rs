//! The configuration file as written. Every struct rejects unknown keys; values stay strings
//! until validation turns them into typed runtime values (see `validate.rs`).

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub upstream: RawUpstreamClient,
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<RawIssuer>,
    /// `[login]` (one table, the login named `default`) or `[[login]]` (each with a `name`):
    /// the loader turns a single table into a list of one and sets `single_login`.
    #[serde(default, rename = "login")]
    pub logins: Vec<RawLogin>,
    #[serde(skip)]
    pub single_login: bool,
    #[serde(default, rename = "client")]
    pub clients: Vec<RawClient>,
    #[serde(default, rename = "egress")]
    pub egress: Vec<RawEgress>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub telemetry: Option<super::telemetry::RawTelemetry>,
    /// `[dpop]`: server nonces for DPoP proofs (RFC 9449 §8).
    #[serde(default)]
    pub dpop: super::dpop::RawDpop,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub name: String,
    pub issuer: Option<String>,
    pub token_endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub auth_method: Option<String>,
    pub private_key_file: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub audience: Option<String>,
    #[serde(default)]
    pub extra_params: std::collections::BTreeMap<String, String>,
    pub refresh_skew: Option<String>,
    #[serde(default)]
    pub insecure_http: bool,
    /// `client_credentials` (default) or `token_exchange` (RFC 8693), and the latter's settings.
    pub grant: Option<String>,
    pub subject_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    #[serde(default)]
    pub actor_token: bool,
    pub actor_token_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    pub name: Option<String>,
    pub listen: String,
    pub upstream: String,
    pub client: Option<String>,
    pub timeout: Option<String>,
    pub max_body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub auth_method: Option<String>,
    pub private_key_file: Option<String>,
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub extra_params: std::collections::BTreeMap<String, String>,
    pub public_url: String,
    pub cookie_secret: Option<String>,
    pub cookie_name: Option<String>,
    pub session_store: Option<String>,
    pub redis_url: Option<String>,
    pub redis_ca_file: Option<String>,
    pub session_idle_timeout: Option<String>,
    pub session_lifetime: Option<String>,
    pub refresh_before: Option<String>,
    #[serde(default)]
    pub userinfo: bool,
    #[serde(default)]
    pub allowed_redirect_hosts: Vec<String>,
    pub post_logout_redirect: Option<String>,
    #[serde(default)]
    pub auth_request_access_token: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub name: Option<String>,
    pub url: String,
    pub jwks_uri: Option<String>,
    pub discovery: Option<bool>,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<String>,
    pub token_type: Option<String>,
    pub max_token_bytes: Option<String>,
    pub jwks_min_ttl: Option<String>,
    pub jwks_max_ttl: Option<String>,
    pub jwks_refetch_interval: Option<String>,
    #[serde(default)]
    pub insecure_http: bool,
    pub introspection: Option<RawIntrospection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub auth_method: Option<String>,
    pub private_key_file: Option<String>,
    pub cache_inactive: Option<String>,
    pub cache_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub email_domains: Vec<String>,
    #[serde(default)]
    pub claims: Vec<RawClaimRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimRule {
    pub claim: String,
    pub equals: Option<toml::Value>,
    pub contains: Option<toml::Value>,
    pub one_of: Option<Vec<toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub workers: Option<usize>,
    pub tls: Option<RawTls>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_header_bytes: Option<String>,
    pub max_connections: Option<usize>,
    pub drain_timeout: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub strip_request_headers: Vec<String>,
    #[serde(default)]
    pub keep_request_headers: Vec<String>,
    pub write_timeout: Option<String>,
    pub tunnel_idle_timeout: Option<String>,
    pub max_concurrent_streams: Option<u32>,
    pub config_check_interval: Option<String>,
    pub client_cert_header: Option<RawCertHeader>,
    #[serde(default)]
    pub forward_auth_preflight: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
    pub reload_interval: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertHeader {
    pub name: String,
    pub format: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamClient {
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<usize>,
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    pub max_connections_per_host: Option<usize>,
    pub pool_wait_timeout: Option<String>,
    pub h2_keepalive_interval: Option<String>,
    pub h2_keepalive_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub preserve_host: bool,
    pub max_body: Option<String>,
    pub timeout: Option<String>,
    /// `none` or `bearer` (required: no route is public by accident).
    pub auth: Option<String>,
    pub issuers: Option<Vec<String>>,
    pub token_sources: Option<Vec<String>>,
    pub forward_authorization: Option<bool>,
    #[serde(default)]
    pub pass_access_token: bool,
    #[serde(default)]
    pub pass_authorization_header: bool,
    pub realm: Option<String>,
    pub rules: Option<RawRules>,
    #[serde(default)]
    pub claim_headers: std::collections::BTreeMap<String, String>,
    pub upstream_token: Option<String>,
    pub incoming_authorization: Option<String>,
    #[serde(default)]
    pub insecure_forward_unverified_email: bool,
    /// The `[[login]]` of an `auth = "login"` / `"login_or_bearer"` route.
    pub login: Option<String>,
    /// The methods this route serves (`["GET", "HEAD"]`); any method when left out.
    pub methods: Option<Vec<String>>,
    pub cors: Option<RawCors>,
    /// `http1` (default), `h2c` or `h2`.
    pub upstream_protocol: Option<String>,
    /// DPoP (RFC 9449) on a bearer route: `allowed` (default), `required` or `disabled`.
    pub dpop: Option<String>,
    pub dpop_algorithms: Option<Vec<String>>,
    pub dpop_max_age: Option<String>,
    pub dpop_leeway: Option<String>,
    pub dpop_nonce: Option<bool>,
}

/// A route's `cors = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_methods: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub exposed_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    pub max_age: Option<String>,
}
