//! Raw file structs → typed runtime config. Every check records its error and goes on, so
//! `tollgate check` can list all problems at once.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;

use super::raw::*;
use super::units::{parse_duration, parse_size, IpRange};
use super::*;
use crate::authority::HostPattern;
use crate::path::normalize_path;

pub(super) struct Check {
    pub(super) errors: Vec<ConfigError>,
}

impl Check {
    pub(super) fn err(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError::field(field, reason));
    }

    pub(super) fn duration(&mut self, field: &str, raw: Option<&str>, default: Duration) -> Duration {
        match raw.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(field, e);
                default
            }
        }
    }

    fn addr(&mut self, field: &str, raw: Option<&str>, default: &str) -> SocketAddr {
        let s = raw.unwrap_or(default);
        s.parse().unwrap_or_else(|_| {
            self.err(field, format!("invalid listen address {s:?}: expected IP:PORT like \"0.0.0.0:8080\""));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    fn path(&self, base_dir: &Path, raw: &str) -> PathBuf {
        base_dir.join(raw)
    }
}

pub(super) fn validate(raw: RawConfig, file: &Path, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut c = Check { errors: Vec::new() };
    let server = server(&mut c, raw.server, base_dir);
    let admin = Admin {
        listen: c.addr("admin.listen", raw.admin.listen.as_deref(), "127.0.0.1:9090"),
        max_connections: at_least_one(&mut c, "admin.max_connections", raw.admin.max_connections, 64),
    };
    if admin.listen == server.listen && server.listen.port() != 0 {
        c.err("admin.listen", "must differ from server.listen");
    }
    let log = log(&mut c, raw.log);
    let upstream = upstream_client(&mut c, raw.upstream, base_dir);
    let issuers = super::auth::issuers(&mut c, raw.issuers, base_dir);
    let logins = super::login::logins(&mut c, raw.logins, raw.single_login, &issuers, base_dir);
    let clients = super::clients::clients(&mut c, raw.clients, &issuers, base_dir);
    let egress = super::clients::egress(&mut c, raw.egress, &clients, upstream.timeout);
    listeners_apart(&mut c, &server, &admin, &egress);
    if raw.routes.is_empty() && egress.is_empty() {
        c.err("route", "no routes: add at least one [[route]] with a path and an upstream (or an [[egress]] listener)");
    }
    let mut dpop = super::dpop::global(&mut c, raw.dpop);
    let routes = routes(&mut c, raw.routes, &upstream, &issuers, &logins, &clients, &mut dpop);
    let telemetry = raw.telemetry.and_then(|t| super::telemetry::telemetry(&mut c, t));
    if c.errors.is_empty() {
        let config = Config {
            file: file.to_path_buf(),
            server,
            admin,
            log,
            upstream,
            issuers,
            logins,
            clients,
            egress,
            routes,
            telemetry,
        };
        Ok(config)
    } else {
        Err(c.errors)
    }
}

/// No two listeners on one port where their addresses meet (the same IP, or either the
/// wildcard): with SO_REUSEPORT both would bind, and the kernel would hand some connections for
/// one to the other (an egress listener's attach a client's token).
fn listeners_apart(c: &mut Check, server: &Server, admin: &Admin, egress: &[super::clients::Egress]) {
    let meet = |a: SocketAddr, b: SocketAddr| {
        a.port() != 0
            && a.port() == b.port()
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    };
    let mut named = vec![("server.listen".to_string(), server.listen), ("admin.listen".to_string(), admin.listen)];
    named.extend(egress.iter().enumerate().map(|(i, e)| (format!("egress[{i}].listen"), e.listen)));
    // admin against server is checked (and said) where admin is read.
    for j in 2..named.len() {
        if let Some((other, _)) = named[..j].iter().find(|(_, a)| meet(*a, named[j].1)) {
            c.err(named[j].0.clone(), format!("{} is also {other}'s port: each listener needs its own", named[j].1));
        }
    }
}

fn server(c: &mut Check, raw: RawServer, base_dir: &Path) -> Server {
    let workers = match raw.workers {
        Some(0) => {
            c.err("server.workers", "must be at least 1");
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };
    let max_header_bytes = match raw.max_header_bytes.as_deref().map(parse_size) {
        None => 16 * 1024,
        Some(Ok(n)) if (8192..=1 << 20).contains(&n) => n as usize,
        Some(Ok(_)) => {
            c.err("server.max_header_bytes", "must be between 8KiB and 1MiB");
            16 * 1024
        }
        Some(Err(e)) => {
            c.err("server.max_header_bytes", e);
            16 * 1024
        }
    };
    let tls = raw.tls.map(|t| TlsFiles {
        cert_file: c.path(base_dir, &t.cert_file),
        key_file: c.path(base_dir, &t.key_file),
        reload_interval: c.duration(
            "server.tls.reload_interval",
            t.reload_interval.as_deref(),
            Duration::from_secs(10),
        ),
        client_auth: client_cert_mode(c, &t),
        client_ca_file: t.client_ca_file.as_deref().map(|f| c.path(base_dir, f)),
    });
    if let Some(t) = &tls {
        for (field, p) in [("server.tls.cert_file", &t.cert_file), ("server.tls.key_file", &t.key_file)] {
            if let Err(e) = std::fs::metadata(p) {
                c.err(field, format!("cannot read {}: {e}", p.display()));
            }
        }
        if t.reload_interval.is_zero() {
            c.err("server.tls.reload_interval", "must be more than 0");
        }
        if let Some(ca) = &t.client_ca_file {
            // Parsed as at start, so `tollgate check` fails on a file rustls would refuse.
            if let Err(e) = crate::client_cert::verifier(ca, t.client_auth) {
                c.err("server.tls.client_ca_file", e);
            }
        }
    }
    let mut trusted_proxies = Vec::new();
    for (i, r) in raw.trusted_proxies.iter().enumerate() {
        match IpRange::parse(r) {
            Ok(range) => trusted_proxies.push(range),
            Err(e) => c.err(format!("server.trusted_proxies[{i}]"), e),
        }
    }
    let (strip_request_headers, keep_request_headers) =
        request_header_lists(c, raw.strip_request_headers, raw.keep_request_headers);
    let client_cert_header = raw
        .client_cert_header
        .and_then(|h| client_cert_header(c, h, trusted_proxies.is_empty(), &keep_request_headers));
    let max_connections = raw.max_connections.unwrap_or(10_000);
    if max_connections == 0 {
        c.err("server.max_connections", "must be at least 1");
    }
    Server {
        listen: c.addr("server.listen", raw.listen.as_deref(), "127.0.0.1:8080"),
        workers,
        tls,
        header_read_timeout: c.duration(
            "server.header_read_timeout",
            raw.header_read_timeout.as_deref(),
            Duration::from_secs(10),
        ),
        idle_timeout: c.duration("server.idle_timeout", raw.idle_timeout.as_deref(), Duration::from_secs(60)),
        max_header_bytes,
        max_connections: max_connections.max(1),
        drain_timeout: c.duration("server.drain_timeout", raw.drain_timeout.as_deref(), Duration::from_secs(30)),
        trusted_proxies,
        strip_request_headers,
        keep_request_headers,
        write_timeout: positive(c, "server.write_timeout", raw.write_timeout.as_deref(), Duration::from_secs(60)),
        tunnel_idle_timeout: positive(
            c,
            "server.tunnel_idle_timeout",
            raw.tunnel_idle_timeout.as_deref(),
            Duration::from_secs(300),
        ),
        max_concurrent_streams: at_least_one(c, "server.max_concurrent_streams", raw.max_concurrent_streams, 100),
        config_check_interval: c.duration(
            "server.config_check_interval",
            raw.config_check_interval.as_deref(),
            Duration::from_secs(5),
        ),
        client_cert_header,
        forward_auth_preflight: raw.forward_auth_preflight,
    }
}

/// `server.tls.client_auth`: `optional` (the default) or `required`, only with a CA to verify by.
fn client_cert_mode(c: &mut Check, t: &RawTls) -> ClientCertMode {
    let mode = match t.client_auth.as_deref() {
        None | Some("optional") => ClientCertMode::Optional,
        Some("required") => ClientCertMode::Required,
        Some(other) => {
            c.err("server.tls.client_auth", format!("{other:?} is not \"optional\" or \"required\""));
            ClientCertMode::Optional
        }
    };
    if t.client_auth.is_some() && t.client_ca_file.is_none() {
        c.err("server.tls.client_auth", "needs server.tls.client_ca_file, the CA that verifies client certificates");
    }
    mode
}

/// `server.client_cert_header = { name, format }`: believed only from trusted proxies, so
/// without any it could never be used; a name tollgate sets or forwards itself, or one kept
/// for every peer, would let an untrusted client's copy through.
fn client_cert_header(c: &mut Check, raw: RawCertHeader, untrusted: bool, keep: &[String]) -> Option<CertHeader> {
    use crate::header_policy::{check_cert_header_name, fold};
    let format = match raw.format.as_str() {
        "xfcc" => Some(HeaderFormat::Xfcc),
        "pem" => Some(HeaderFormat::Pem),
        other => {
            c.err("server.client_cert_header.format", format!("{other:?} is not \"xfcc\" or \"pem\""));
            None
        }
    };
    let name = match check_cert_header_name(&raw.name) {
        Ok(name) => Some(name),
        Err(e) => {
            c.err("server.client_cert_header.name", e);
            None
        }
    };
    let kept = keep.iter().any(|k| match k.strip_suffix('*') {
        Some(prefix) => fold(&raw.name).starts_with(&fold(prefix)),
        None => fold(k) == fold(&raw.name),
    });
    if kept {
        c.err(
            "server.client_cert_header.name",
            "is also in server.keep_request_headers, which would pass any client's copy: remove it there",
        );
    }
    if untrusted {
        c.err(
            "server.client_cert_header",
            "is believed only from server.trusted_proxies, and there are none: add the proxy's address",
        );
    }
    Some(CertHeader { name: name?, format: format? })
}

/// `server.strip_request_headers` and `server.keep_request_headers`, lower-cased; a name may
/// not be in both.
fn request_header_lists(c: &mut Check, strip: Vec<String>, keep: Vec<String>) -> (Vec<String>, Vec<String>) {
    use crate::header_policy::{check_keep_name, check_strip_name, fold};
    let mut lower = |field: &str, names: Vec<String>, check: fn(&str) -> Result<(), String>| -> Vec<String> {
        let mut out = Vec::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            match check(&name) {
                Ok(()) => out.push(name.to_ascii_lowercase()),
                Err(e) => c.err(format!("server.{field}[{i}]"), e),
            }
        }
        out
    };
    let strip = lower("strip_request_headers", strip, check_strip_name);
    let keep = lower("keep_request_headers", keep, check_keep_name);
    for (i, k) in keep.iter().enumerate() {
        if strip.iter().any(|s| s.ends_with('*') == k.ends_with('*') && fold(s) == fold(k)) {
            c.err(
                format!("server.keep_request_headers[{i}]"),
                format!("{k:?} is also in server.strip_request_headers"),
            );
        }
    }
    (strip, keep)
}

/// A count that must be at least 1.
fn at_least_one<N: Copy + PartialOrd + From<u8>>(c: &mut Check, field: &str, raw: Option<N>, default: N) -> N {
    match raw {
        None => default,
        Some(n) if n >= N::from(1) => n,
        Some(_) => {
            c.err(field, "must be at least 1");
            default
        }
    }
}

/// A duration that must be more than 0.
fn positive(c: &mut Check, field: &str, raw: Option<&str>, default: Duration) -> Duration {
    let d = c.duration(field, raw, default);
    if d.is_zero() {
        c.err(field, "must be more than 0");
        return default;
    }
    d
}

fn log(c: &mut Check, raw: RawLog) -> Log {
    let format = match raw.format.as_deref() {
        None | Some("pretty") => LogFormat::Pretty,
        Some("json") => LogFormat::Json,
        Some(other) => {
            c.err("log.format", format!("unknown format {other:?}: use \"pretty\" or \"json\""));
            LogFormat::Pretty
        }
    };
    let level = raw.level.unwrap_or_else(|| "info".into());
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
        c.err("log.level", format!("invalid filter {level:?}: {e}"));
    }
    Log { format, level, access_log: raw.access_log.unwrap_or(true) }
}

fn upstream_client(c: &mut Check, raw: RawUpstreamClient, base_dir: &Path) -> UpstreamClient {
    let client_cert = match (raw.client_cert_file, raw.client_key_file) {
        (Some(cert), Some(key)) => Some((c.path(base_dir, &cert), c.path(base_dir, &key))),
        (None, None) => None,
        (Some(_), None) => {
            c.err("upstream.client_key_file", "required when upstream.client_cert_file is set");
            None
        }
        (None, Some(_)) => {
            c.err("upstream.client_cert_file", "required when upstream.client_key_file is set");
            None
        }
    };
    UpstreamClient {
        connect_timeout: c.duration("upstream.connect_timeout", raw.connect_timeout.as_deref(), Duration::from_secs(5)),
        timeout: c.duration("upstream.timeout", raw.timeout.as_deref(), Duration::from_secs(60)),
        pool_idle_timeout: c.duration(
            "upstream.pool_idle_timeout",
            raw.pool_idle_timeout.as_deref(),
            Duration::from_secs(90),
        ),
        pool_max_idle_per_host: raw.pool_max_idle_per_host.unwrap_or(256),
        ca_file: raw.ca_file.map(|p| c.path(base_dir, &p)),
        client_cert,
        max_connections_per_host: at_least_one(
            c,
            "upstream.max_connections_per_host",
            raw.max_connections_per_host,
            256,
        ),
        pool_wait_timeout: c.duration(
            "upstream.pool_wait_timeout",
            raw.pool_wait_timeout.as_deref(),
            Duration::from_secs(1),
        ),
        h2_keepalive_interval: Some(c.duration(
            "upstream.h2_keepalive_interval",
            raw.h2_keepalive_interval.as_deref(),
            Duration::from_secs(300),
        ))
        .filter(|d| !d.is_zero()),
        h2_keepalive_timeout: h2_keepalive_timeout(c, raw.h2_keepalive_timeout.as_deref()),
    }
}

/// `upstream.h2_keepalive_timeout`: more than zero (a PING cannot be answered in no time).
fn h2_keepalive_timeout(c: &mut Check, raw: Option<&str>) -> Duration {
    const FIELD: &str = "upstream.h2_keepalive_timeout";
    let default = Duration::from_secs(20);
    let d = c.duration(FIELD, raw, default);
    if d.is_zero() {
        c.err(FIELD, "must be more than 0 (the time a PING's answer may take); turn pings off with h2_keepalive_interval = \"0\"");
        return default;
    }
    d
}

fn routes(
    c: &mut Check,
    raw: Vec<RawRoute>,
    client: &UpstreamClient,
    issuers: &[Issuer],
    logins: &[Login],
    clients: &[super::Client],
    dpop: &mut super::dpop::Global,
) -> Vec<Route> {
    let mut names = HashSet::new();
    let mut keys = RouteKeys::default();
    let mut out = Vec::with_capacity(raw.len());
    for (i, mut r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("route[{i}].{f}");
        let parts = super::auth::route_auth(c, i, &mut r, issuers, !logins.is_empty(), dpop);
        let login = super::login::route_login(c, i, r.login.take(), &parts.auth, logins);
        let path = r.path.unwrap_or_else(|| "/".into());
        match normalize_path(&path) {
            Ok(n) if n == path => {}
            Ok(n) => c.err(at("path"), format!("{path:?} is not in normal form; write {n:?}")),
            Err(e) => c.err(at("path"), format!("{path:?}: {e}")),
        }
        let host = r.host.as_deref().map(HostPattern::parse).transpose().unwrap_or_else(|e| {
            c.err(at("host"), e);
            None
        });
        let name = r.name.unwrap_or_else(|| path.clone());
        if !names.insert(name.clone()) {
            c.err(at("name"), format!("duplicate route name {name:?}"));
        }
        let methods = r.methods.as_deref().and_then(|m| route_methods(c, &at("methods"), m));
        keys.check(c, i, (r.host.as_deref().map(|h| h.trim().to_ascii_lowercase()), path.clone()), methods);
        let dpop = parts.auth.bearer().is_some_and(|b| b.dpop.mode != super::dpop::DpopMode::Disabled);
        let cors = r.cors.take().and_then(|raw| super::cors::cors(c, &format!("route[{i}]"), raw, methods, dpop));
        let mut upstream = parse_upstream(&r.upstream).unwrap_or_else(|e| {
            c.err(at("upstream"), e);
            Upstream {
                scheme: Scheme::HTTP,
                authority: Authority::from_static("invalid"),
                base_path: String::new(),
                host_header: http::HeaderValue::from_static("invalid"),
                protocol: UpstreamProtocol::Http1,
            }
        });
        upstream.protocol = upstream_protocol(c, &at("upstream_protocol"), r.upstream_protocol.as_deref(), &upstream);
        let max_body = match r.max_body.as_deref() {
            None => Some(10 << 20),
            Some("unlimited") => None,
            Some(s) => parse_size(s).map(Some).unwrap_or_else(|e| {
                c.err(at("max_body"), format!("{e} (or \"unlimited\")"));
                None
            }),
        };
        let timeout = c.duration(&at("timeout"), r.timeout.as_deref(), client.timeout);
        out.push(Route {
            name,
            host,
            path,
            upstream,
            strip_prefix: r.strip_prefix,
            preserve_host: r.preserve_host,
            max_body,
            timeout,
            auth: parts.auth,
            rules: parts.rules,
            pass_access_token: parts.pass_access_token,
            pass_authorization_header: parts.pass_authorization_header,
            claim_headers: parts.claim_headers,
            upstream_token: super::clients::upstream_token(
                c,
                &format!("route[{i}]"),
                r.upstream_token.as_deref(),
                r.incoming_authorization.as_deref(),
                clients,
            ),
            insecure_forward_unverified_email: r.insecure_forward_unverified_email,
            login,
            methods,
            cors,
        });
        if let Some(route) = out.last() {
            super::clients::check_exchange_route(c, &format!("route[{i}]"), "upstream_token", route, clients);
        }
    }
    out
}

/// `route[i].methods`, each error naming its item.
fn route_methods(c: &mut Check, field: &str, raw: &[String]) -> Option<MethodSet> {
    MethodSet::parse(raw)
        .map_err(|errors| {
            for (i, e) in errors {
                c.err(if i == usize::MAX { field.to_string() } else { format!("{field}[{i}]") }, e);
            }
        })
        .ok()
}

/// Routes sharing a host and path: at most one without `methods`, and no method listed twice
/// (which route would serve it?).
#[derive(Default)]
struct RouteKeys(HashMap<(Option<String>, String), SharedKey>);

/// The route without `methods` and the routes with them, by index, of one host and path.
type SharedKey = (Option<usize>, Vec<(usize, MethodSet)>);

impl RouteKeys {
    fn check(&mut self, c: &mut Check, i: usize, key: (Option<String>, String), methods: Option<MethodSet>) {
        let what = format!("host {:?} and path {:?}", key.0, key.1);
        let (any, listed) = self.0.entry(key).or_default();
        match methods {
            None => {
                if let Some(other) = any.replace(i) {
                    c.err(
                        format!("route[{i}].path"),
                        format!(
                            "route[{other}] already has {what} (give one of them `methods` to split them by method)"
                        ),
                    );
                }
            }
            Some(m) => {
                if let Some((other, theirs)) = listed.iter().find(|(_, o)| o.intersects(m)) {
                    let both: Vec<&str> = theirs.names().into_iter().filter(|n| m.names().contains(n)).collect();
                    c.err(
                        format!("route[{i}].methods"),
                        format!("route[{other}] with {what} already serves {}", both.join(", ")),
                    );
                }
                listed.push((i, m));
            }
        }
    }
}

/// Parses an upstream URL: http or https, a host, an optional base path, nothing else.
pub(super) fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err(format!("invalid URL {s:?}: the scheme must be http or https")),
    };
    let authority = uri.authority().cloned().ok_or_else(|| format!("invalid URL {s:?}: no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("invalid URL {s:?}: credentials in the URL are not allowed"));
    }
    if authority.host().is_empty() {
        return Err(format!("invalid URL {s:?}: no host"));
    }
    match authority.port_u16() {
        Some(0) => return Err(format!("invalid URL {s:?}: port 0 is not a port to connect to")),
        // `host:` with nothing after the colon, or a port that is no number of 1 to 65535.
        None if authority.as_str() != authority.host() => {
            return Err(match authority.as_str().ends_with(':') {
                true => format!("invalid URL {s:?}: empty port (leave out the `:` for the scheme's default)"),
                false => format!("invalid URL {s:?}: the port is not a number from 1 to 65535"),
            });
        }
        _ => {}
    }
    if uri.query().is_some() {
        return Err(format!("invalid URL {s:?}: a query string is not allowed"));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    // Like the authority, minus a port that is the scheme's default.
    let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = match authority.port_u16() {
        Some(p) if p != default_port => authority.as_str(),
        _ => authority.host(),
    };
    let host_header = http::HeaderValue::from_str(host).map_err(|_| format!("invalid URL {s:?}: bad host"))?;
    Ok(Upstream { scheme, authority, base_path, host_header, protocol: UpstreamProtocol::Http1 })
}

/// `route[i].upstream_protocol`, which must fit the upstream URL's scheme.
fn upstream_protocol(c: &mut Check, field: &str, raw: Option<&str>, upstream: &Upstream) -> UpstreamProtocol {
    let https = upstream.scheme == Scheme::HTTPS;
    match raw {
        None | Some("http1") => UpstreamProtocol::Http1,
        Some("h2c") if !https => UpstreamProtocol::H2c,
        Some("h2") if https => UpstreamProtocol::H2,
        Some("h2c") => {
            c.err(field, "\"h2c\" is HTTP/2 without TLS and needs an http:// upstream (for https:// use \"h2\")");
            UpstreamProtocol::Http1
        }
        Some("h2") => {
            c.err(field, "\"h2\" is HTTP/2 over TLS and needs an https:// upstream (for http:// use \"h2c\")");
            UpstreamProtocol::Http1
        }
        Some(other) => {
            c.err(field, format!("unknown protocol {other:?}: use \"http1\", \"h2c\" or \"h2\""));
            UpstreamProtocol::Http1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = parse_upstream("http://127.0.0.1:3000/base/").unwrap();
        assert_eq!(u.authority.as_str(), "127.0.0.1:3000");
        assert_eq!(u.base_path, "/base");
        assert_eq!(parse_upstream("https://api.example.com").unwrap().base_path, "");
        for bad in ["ftp://x", "not a url", "http://user:pw@x/", "http://x/?q=1", "/relative"] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_ports_are_real_ports() {
        for bad in
            ["http://127.0.0.1:", "http://127.0.0.1:/base", "http://127.0.0.1:0", "https://[::1]:0/", "http://x:00"]
        {
            let e = parse_upstream(bad).map(|_| ()).unwrap_err();
            assert!(e.contains("port"), "{bad}: {e}");
        }
        let two = "[[client]]\nname = \"c\"\ntoken_endpoint = \"http://127.0.0.1:9/t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
                   [server]\nlisten = \"0.0.0.0:15001\"\n\
                   [[egress]]\nname = \"e\"\nlisten = \"127.0.0.1:15001\"\nupstream = \"http://127.0.0.1:9\"\nclient = \"c\"\n\
                   [[egress]]\nname = \"f\"\nlisten = \"127.0.0.1:15002\"\nupstream = \"http://127.0.0.1:9\"\nclient = \"c\"\n";
        let e = crate::config::Config::from_str(two, Path::new("/etc/t.toml"), &|_| None).unwrap_err().to_string();
        assert!(e.contains("egress[0].listen: 127.0.0.1:15001 is also server.listen's port"), "{e}");
        assert!(!e.contains("egress[1].listen"), "{e}");
        for (bad, says) in
            [("http://h:99999", "not a number"), ("http://h:8a", "not a number"), ("http://h:", "empty port")]
        {
            let e = parse_upstream(bad).map(|_| ()).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(parse_upstream("http://[::1]:8080").unwrap().authority.port_u16(), Some(8080));
        assert_eq!(parse_upstream("http://[::1]").unwrap().authority.port_u16(), None);
        let text = "[[route]]\nauth = \"none\"\nupstream = \"http://127.0.0.1:\"\n\
                    [[client]]\nname = \"c\"\ntoken_endpoint = \"http://127.0.0.1:9/t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
                    [[egress]]\nname = \"e\"\nlisten = \"127.0.0.1:15001\"\nupstream = \"http://127.0.0.1:0\"\nclient = \"c\"\n";
        let e = crate::config::Config::from_str(text, Path::new("/etc/t.toml"), &|_| None).unwrap_err().to_string();
        assert!(e.contains("/etc/t.toml: route[0].upstream: ") && e.contains("port"), "{e}");
        assert!(e.contains("/etc/t.toml: egress[0].upstream: ") && e.contains("port 0"), "{e}");
    }
}
