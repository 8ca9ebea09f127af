//! The Redis URL forms tollgate reads, parsed once at configuration time:
//!
//! ```text
//! redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
//! rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB]                                 (TLS)
//! redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB][?QUERY]
//! rediss+sentinel://...                                                       (TLS to both)
//! ```
//!
//! Redis listens on 6379 and sentinels on 26379 unless a port is given. The user and password
//! (percent-encoded; '/', '?' and '@' may also stand as they are) authenticate to the data nodes; a password without a colon
//! (`redis://PASSWORD@HOST`) is accepted as before. Sentinels that require a password of their
//! own take it from the query: `?sentinel_password=...` (and `sentinel_username=...`).

/// What the URL should look like, for error messages.
pub const FORMS: &str = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS), \
    or redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER_NAME[/DB] \
    (rediss+sentinel:// for TLS)";

const REDIS_PORT: u16 = 6379;
const SENTINEL_PORT: u16 = 26379;
/// More sentinels than anyone runs; it bounds the lookup loop.
const MAX_SENTINELS: usize = 16;

/// A host and port; the host as written (a name, an IPv4 address, or an IPv6 one without brackets).
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: &str, port: u16) -> Endpoint {
        Endpoint { host: host.to_string(), port }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A username (optional) and password for `AUTH`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: String,
}

/// Passwords stay out of logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, [redacted])", self.username)
    }
}

/// Where the primary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server, used as it is.
    Direct(Endpoint),
    /// Asked of the sentinels, in this order, by the master's name.
    Sentinel { sentinels: Vec<Endpoint>, master: String, auth: Option<Credentials> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub target: Target,
    /// TLS to every server (data nodes and sentinels).
    pub tls: bool,
    pub auth: Option<Credentials>,
    pub db: u32,
}

/// Why a URL was refused (the caller adds the field name and [`FORMS`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

fn bad(why: impl Into<String>) -> UrlError {
    UrlError(why.into())
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (tls, sentinel) = match scheme {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+sentinel" => (false, true),
            "rediss+sentinel" => (true, true),
            other => return Err(bad(format!("unknown scheme {other:?}"))),
        };
        // Userinfo ends at the last '@' (hosts, master names and database numbers hold none), so
        // a password may hold '/', '?' and '@' unencoded, as earlier releases read it.
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (hosts, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
        let auth = userinfo.map(credentials).transpose()?.flatten();
        let (target, db) = if sentinel {
            let sentinels = endpoints(hosts, SENTINEL_PORT)?;
            let (master, db) = sentinel_path(path)?;
            let auth = sentinel_query(query)?;
            (Target::Sentinel { sentinels, master, auth }, db)
        } else {
            if hosts.contains(',') {
                return Err(bad("several hosts need redis+sentinel://"));
            }
            if query.is_some() {
                return Err(bad("query parameters are only for redis+sentinel://"));
            }
            (Target::Direct(endpoint(hosts, REDIS_PORT)?), db_number(path.unwrap_or(""))?)
        };
        Ok(RedisUrl { target, tls, auth, db })
    }
}

/// `USER:PASSWORD`, `:PASSWORD` or `PASSWORD`, percent-decoded; `None` when empty.
fn credentials(userinfo: &str) -> Result<Option<Credentials>, UrlError> {
    let decode = |s: &str| crate::util::percent_decode(s, false).ok_or_else(|| bad("bad percent-encoding in userinfo"));
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (Some(u), p),
        None => (None, userinfo),
    };
    if password.is_empty() {
        return match user {
            Some(u) if !u.is_empty() => Err(bad("a username needs a password (USER:PASSWORD@)")),
            _ => Ok(None),
        };
    }
    let username = user.filter(|u| !u.is_empty()).map(decode).transpose()?;
    Ok(Some(Credentials { username, password: decode(password)? }))
}

fn endpoints(hosts: &str, default_port: u16) -> Result<Vec<Endpoint>, UrlError> {
    let all = hosts.split(',').map(|h| endpoint(h, default_port)).collect::<Result<Vec<_>, _>>()?;
    if all.len() > MAX_SENTINELS {
        return Err(bad(format!("at most {MAX_SENTINELS} sentinels")));
    }
    Ok(all)
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
fn endpoint(raw: &str, default_port: u16) -> Result<Endpoint, UrlError> {
    let (host, port) = if let Some(v6) = raw.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad(format!("unclosed '[' in {raw:?}")))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad(format!("{host:?} is not an IPv6 address")));
        }
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(|| bad(format!("bad host {raw:?}")))?)),
        }
    } else {
        match raw.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        }
    };
    let name_ok = |h: &str| {
        !h.is_empty() && h.len() <= 253 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    if !raw.starts_with('[') && !name_ok(host) {
        return Err(bad(if host.is_empty() { "no host".to_string() } else { format!("bad host {host:?}") }));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(bad(format!("bad port {p:?}"))),
        },
    };
    Ok(Endpoint { host: host.to_ascii_lowercase(), port })
}

/// `MASTER` or `MASTER/DB` after the sentinels.
fn sentinel_path(path: Option<&str>) -> Result<(String, u32), UrlError> {
    let path = path.ok_or_else(|| bad("no master name: add /MASTER_NAME after the sentinels"))?;
    let (master, db) = match path.split_once('/') {
        Some((m, d)) => (m, db_number(d)?),
        None => (path, 0),
    };
    let valid = !master.is_empty()
        && master.len() <= 128
        && master.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err(bad(format!("bad master name {master:?}: letters, digits, '-', '_' and '.'")));
    }
    Ok((master.to_string(), db))
}

fn db_number(raw: &str) -> Result<u32, UrlError> {
    if raw.is_empty() {
        return Ok(0);
    }
    match raw.parse::<u32>() {
        Ok(n) if raw.bytes().all(|b| b.is_ascii_digit()) && n < 1 << 16 => Ok(n),
        _ => Err(bad(format!("bad database number {raw:?}"))),
    }
}

/// `sentinel_password=...&sentinel_username=...`; anything else is refused.
fn sentinel_query(query: Option<&str>) -> Result<Option<Credentials>, UrlError> {
    let (mut username, mut password) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::util::percent_decode(v, false).ok_or_else(|| bad(format!("bad percent-encoding in {k}")))?;
        match k {
            "sentinel_password" if password.is_none() && !v.is_empty() => password = Some(v),
            "sentinel_username" if username.is_none() && !v.is_empty() => username = Some(v),
            "sentinel_password" | "sentinel_username" => return Err(bad(format!("{k} is empty or repeated"))),
            other => {
                return Err(bad(format!("unknown parameter {other:?}: only sentinel_password and sentinel_username")))
            }
        }
    }
    match (username, password) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(bad("sentinel_username needs sentinel_password")),
        (username, Some(password)) => Ok(Some(Credentials { username, password })),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ep(h: &str, p: u16) -> Endpoint {
        Endpoint::new(h, p)
    }

    fn pw(user: Option<&str>, p: &str) -> Option<Credentials> {
        Some(Credentials { username: user.map(str::to_string), password: p.to_string() })
    }

    #[test]
    fn plain_forms() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(u, RedisUrl { target: Target::Direct(ep("127.0.0.1", 6380)), tls: false, auth: None, db: 2 });
        let u = RedisUrl::parse("redis://:s3cret%40x@Redis.Local").unwrap();
        assert_eq!((u.target, u.auth), (Target::Direct(ep("redis.local", 6379)), pw(None, "s3cret@x")));
        // A password alone, as earlier releases read it.
        assert_eq!(RedisUrl::parse("redis://s3cret@h").unwrap().auth, pw(None, "s3cret"));
        let u = RedisUrl::parse("rediss://app:p%3Aw@[::1]:6390/").unwrap();
        assert_eq!((u.tls, u.db), (true, 0));
        assert_eq!((u.target, u.auth), (Target::Direct(ep("::1", 6390)), pw(Some("app"), "p:w")));
        let u = RedisUrl::parse("redis://:a/b?c@d@h:1/4").unwrap();
        assert_eq!((u.target, u.auth, u.db), (Target::Direct(ep("h", 1)), pw(None, "a/b?c@d"), 4));
        assert_eq!(RedisUrl::parse("redis://h").unwrap().auth, None);
        assert_eq!(RedisUrl::parse("redis://:@h").unwrap().auth, None);
    }

    #[test]
    fn sentinel_forms() {
        let u = RedisUrl::parse("redis+sentinel://:pw@s1:26379,s2,10.0.0.3:5000/mymaster/3").unwrap();
        let sentinels = vec![ep("s1", 26379), ep("s2", 26379), ep("10.0.0.3", 5000)];
        assert_eq!(
            u,
            RedisUrl {
                target: Target::Sentinel { sentinels, master: "mymaster".into(), auth: None },
                tls: false,
                auth: pw(None, "pw"),
                db: 3,
            }
        );
        let u = RedisUrl::parse("rediss+sentinel://[::1]:26380/m-1.a_b?sentinel_password=s%26p").unwrap();
        assert!(u.tls);
        assert_eq!(
            u.target,
            Target::Sentinel { sentinels: vec![ep("::1", 26380)], master: "m-1.a_b".into(), auth: pw(None, "s&p") }
        );
        let u = RedisUrl::parse("redis+sentinel://h/m?sentinel_username=u&sentinel_password=p").unwrap();
        assert!(matches!(u.target, Target::Sentinel { auth, .. } if auth == pw(Some("u"), "p")));
    }

    #[test]
    fn bad_forms() {
        for bad in [
            "http://x",
            "redis://",
            "redis:/h",
            "h:6379",
            "redis://h:1/x",
            "redis://h:0",
            "redis://h:65536",
            "redis://h:+1",
            "redis://h:/0",
            "redis://h/-1",
            "redis://h/99999",
            "redis://a,b",
            "redis://h?sentinel_password=x",
            "redis://user:@h",
            "redis://:%zz@h",
            "redis://h_x",
            "redis://[::1",
            "redis://[nothost]:1",
            "redis://[::1]x",
            "redis+sentinel://h",
            "redis+sentinel://h/",
            "redis+sentinel://h/my master",
            "redis+sentinel://h/m/x",
            "redis+sentinel://h,,i/m",
            "redis+sentinel://h:99999/m",
            "redis+sentinel://h/m?other=1",
            "redis+sentinel://h/m?sentinel_username=u",
            "redis+sentinel://h/m?sentinel_password=",
            "redis+sentinel://h/m?sentinel_password=a&sentinel_password=b",
            "sentinel://h/m",
            "rediss+sentinel://",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad} was accepted");
        }
        let many = (0..17).map(|i| format!("s{i}")).collect::<Vec<_>>().join(",");
        assert!(RedisUrl::parse(&format!("redis+sentinel://{many}/m")).is_err());
    }

    #[test]
    fn debug_hides_passwords() {
        let u = RedisUrl::parse("redis+sentinel://u:hunter2@h/m?sentinel_password=swordfish").unwrap();
        let shown = format!("{u:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("swordfish"), "{shown}");
    }
}
