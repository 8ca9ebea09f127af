//! Validation of `[login]` / `[[login]]`: the OIDC clients for browser login and their
//! sessions. `[login]` is the login named `default`; `[[login]]` tables each have a `name`, and
//! routes name theirs with `login = "NAME"`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use jsonwebtoken::{Algorithm, EncodingKey};

use super::raw::RawLogin;
use super::validate::Check;
use super::*;
use crate::secret::Secret;

/// Browser login settings.
#[derive(Debug, Clone)]
pub struct Login {
    /// What routes call it (`default` for a single `[login]` table).
    pub name: String,
    /// Index into `Config::issuers`.
    pub issuer: usize,
    pub client_id: String,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub extra_params: Vec<(String, String)>,
    /// What the browser uses, like `https://app.example.com` or `https://apps.example.com/wiki`
    /// (lower-case scheme and authority, no trailing slash).
    pub public_url: String,
    /// `public_url`'s scheme and authority alone.
    pub public_origin: String,
    pub public_host: String,
    /// `public_url`'s path: empty, or like `/wiki` (no trailing slash). The login's endpoints
    /// are under `{path}/oauth2/`, its cookies have this `Path`.
    pub path: String,
    /// Cookies get `Secure` and the `__Host-` prefix (`__Secure-` with a path) (PUBLIC_URL is https).
    pub secure: bool,
    /// Cookie keys: the first seals, all open.
    pub cookie_secrets: Vec<Secret>,
    /// The session cookie's name, prefix included.
    pub cookie_name: String,
    pub store: SessionStore,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    pub refresh_before: Duration,
    pub userinfo: bool,
    /// Hosts (exact, or `.suffix`) that `rd` may point to besides PUBLIC_URL's own.
    pub allowed_redirect_hosts: Vec<String>,
    pub post_logout_redirect: String,
    pub auth_request_access_token: bool,
}

impl Login {
    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth2/callback", self.public_url)
    }

    /// The path of endpoint `name` (`start`, `sign_out`, ...) on the login's host.
    pub fn endpoint_path(&self, name: &str) -> String {
        format!("{}/oauth2/{name}", self.path)
    }

    /// The `Path` of the login's cookies.
    pub fn cookie_path(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStore {
    Cookie,
    Redis(RedisStore),
}

/// `session_store = "redis"`: the URL (it may hold passwords) and, for `rediss://`, the CA
/// file's path and contents (read when the configuration is checked).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisStore {
    pub url: Secret,
    pub ca_file: Option<(std::path::PathBuf, Vec<u8>)>,
}

/// The CA file by its path, not its bytes.
impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file.as_ref().map(|c| &c.0))
            .finish()
    }
}

/// Client authentication at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    ClientSecretBasic(Secret),
    ClientSecretPost(Secret),
    PrivateKeyJwt(PrivateKey),
}

/// A private key for `private_key_jwt` (RFC 7523), read from a PEM file at start.
#[derive(Clone)]
pub struct PrivateKey {
    pub key: Arc<EncodingKey>,
    pub alg: Algorithm,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({:?}, [redacted])", self.alg)
    }
}

/// A single `[login]` table becomes a list of one, like `[[login]]`; true when it was one.
pub(super) fn single_table_as_list(tree: &mut toml::Value) -> bool {
    let Some(root) = tree.as_table_mut() else { return false };
    match root.remove("login") {
        Some(table @ toml::Value::Table(_)) => {
            root.insert("login".into(), toml::Value::Array(vec![table]));
            true
        }
        Some(other) => {
            root.insert("login".into(), other);
            false
        }
        None => false,
    }
}

/// A parse error's field as the file has it: `login.client_id` for a single `[login]` table
/// (which the parser saw as `login[0]`).
pub(super) fn single_table_field(field: String, single: bool) -> String {
    match field.strip_prefix("login[0]") {
        Some(rest) if single => format!("login{rest}"),
        _ => field,
    }
}

/// The name of a single `[login]` table.
/// The name of the login a single `[login]` table makes.
pub const DEFAULT_LOGIN: &str = "default";

/// Every login, then the checks across them: names, cookie names and endpoints each once.
/// `single`: the file has one `[login]` table (fields are named `login.x`, not `login[0].x`).
pub(super) fn logins(
    c: &mut Check,
    raw: Vec<RawLogin>,
    single: bool,
    issuers: &[Issuer],
    base_dir: &Path,
) -> Vec<Login> {
    let out: Vec<Login> = raw
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = if single { "login".to_string() } else { format!("login[{i}]") };
            login(c, &at, r, single, issuers, base_dir)
        })
        .collect();
    let at = |i: usize| if single { "login".to_string() } else { format!("login[{i}]") };
    for (i, l) in out.iter().enumerate() {
        for (j, earlier) in out[..i].iter().enumerate() {
            if l.name == earlier.name {
                c.err(format!("{}.name", at(i)), format!("{:?} is also {}'s name", l.name, at(j)));
            }
            if cookie_names_clash(&l.cookie_name, &earlier.cookie_name) {
                c.err(
                    format!("{}.cookie_name", at(i)),
                    format!(
                        "{:?} clashes with {}'s cookie {:?}: each login needs its own cookie name, and none may be \
                         another's followed by `_` and digits or `_flow` (its chunks and sign-in cookies)",
                        l.cookie_name,
                        at(j),
                        earlier.cookie_name
                    ),
                );
            }
            if l.public_host == earlier.public_host && l.path == earlier.path && !l.public_host.is_empty() {
                c.err(
                    format!("{}.public_url", at(i)),
                    format!("{}'s endpoints are already there: give each login its own host or path", at(j)),
                );
            }
        }
    }
    out
}

/// Whether a request could carry cookies of both: the same name, or one is the other's chunk
/// (`NAME_3`) or sign-in cookie (`NAME_flow_HEX`), as [`crate::login`] tells its own apart.
fn cookie_names_clash(a: &str, b: &str) -> bool {
    let family = |base: &str, other: &str| {
        other
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix('_'))
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()) || rest == "flow" || rest.starts_with("flow_"))
    };
    a == b || family(a, b) || family(b, a)
}

fn login(c: &mut Check, at: &str, r: RawLogin, single: bool, issuers: &[Issuer], base_dir: &Path) -> Login {
    let f = |field: &str| format!("{at}.{field}");
    let name = login_name(c, &f("name"), r.name, single);
    let issuer = match &r.issuer {
        Some(name) => issuers.iter().position(|i| &i.name == name).or_else(|| {
            c.err(f("issuer"), format!("no issuer named {name:?}"));
            None
        }),
        None if issuers.len() == 1 => Some(0),
        None => {
            c.err(f("issuer"), "name the [[issuer]] used for login (there is not exactly one)");
            None
        }
    };
    let url = public_url(&r.public_url).unwrap_or_else(|e| {
        c.err(f("public_url"), e);
        PublicUrl::default()
    });
    let client_auth = super::client_auth::client_auth(
        c,
        at,
        r.auth_method.as_deref(),
        r.client_secret,
        r.private_key_file.as_deref(),
        base_dir,
    );
    let cookie_secrets: Vec<Secret> = match &r.cookie_secret {
        None => {
            c.err(f("cookie_secret"), "required (32 or more random bytes, e.g. `openssl rand -base64 32`); several, comma-separated, rotate keys: the first seals, all open");
            Vec::new()
        }
        Some(s) => s.split(',').map(str::trim).filter(|k| !k.is_empty()).map(Secret::new).collect(),
    };
    if r.cookie_secret.is_some() && (cookie_secrets.is_empty() || cookie_secrets.iter().any(|k| k.expose().len() < 32))
    {
        c.err(f("cookie_secret"), "every key must be at least 32 characters (e.g. `openssl rand -base64 32`)");
    }
    let base_name = r.cookie_name.unwrap_or_else(|| default_cookie_name(&name));
    if base_name.is_empty() || !base_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        c.err(f("cookie_name"), "use letters, digits, '-' and '_' only");
    }
    let store = session_store(c, at, r.session_store.as_deref(), r.redis_url, r.redis_ca_file, base_dir);
    let mut scopes = r.scopes.unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let reserved = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ];
    for k in r.extra_params.keys() {
        if reserved.contains(&k.as_str()) {
            c.err(f(&format!("extra_params.{k}")), "set by tollgate itself");
        }
    }
    let post_logout_redirect = r.post_logout_redirect.unwrap_or_else(|| format!("{}/", url.url));
    // `__Host-` needs `Path=/`; a login on a path gets the other prefix browsers protect.
    let cookie_name = match (url.secure, url.path.is_empty()) {
        (true, true) => format!("__Host-{base_name}"),
        (true, false) => format!("__Secure-{base_name}"),
        (false, _) => base_name,
    };
    Login {
        name,
        issuer: issuer.unwrap_or(0),
        client_id: r.client_id,
        client_auth,
        scopes,
        extra_params: r.extra_params.into_iter().collect(),
        cookie_name,
        public_url: url.url,
        public_origin: url.origin,
        public_host: url.host,
        path: url.path,
        secure: url.secure,
        cookie_secrets,
        store,
        idle_timeout: c.duration(
            &f("session_idle_timeout"),
            r.session_idle_timeout.as_deref(),
            Duration::from_secs(8 * 3600),
        ),
        lifetime: c.duration(&f("session_lifetime"), r.session_lifetime.as_deref(), Duration::from_secs(7 * 86_400)),
        refresh_before: c.duration(&f("refresh_before"), r.refresh_before.as_deref(), Duration::from_secs(60)),
        userinfo: r.userinfo,
        allowed_redirect_hosts: r.allowed_redirect_hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        post_logout_redirect,
        auth_request_access_token: r.auth_request_access_token,
    }
}

/// `name`: required in `[[login]]` tables, `default` for `[login]`. Lower-case letters, digits
/// and `-`: it becomes part of cookie names and Redis keys.
fn login_name(c: &mut Check, at: &str, raw: Option<String>, single: bool) -> String {
    let Some(name) = raw else {
        if !single {
            c.err(at, "required in [[login]] tables: the name routes give in `login = \"NAME\"`");
        }
        return DEFAULT_LOGIN.to_string();
    };
    let valid = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        c.err(at, format!("{name:?}: use 1 to 32 lower-case letters, digits and '-'"));
    }
    name
}

/// `tollgate` for the `default` login (as with a single `[login]`), `tollgate_NAME` otherwise.
fn default_cookie_name(login: &str) -> String {
    match login {
        DEFAULT_LOGIN => "tollgate".into(),
        name => format!("tollgate_{name}"),
    }
}

fn session_store(
    c: &mut Check,
    at: &str,
    store: Option<&str>,
    redis_url: Option<String>,
    ca_file: Option<String>,
    base_dir: &Path,
) -> SessionStore {
    match store {
        // The Redis settings are ignored, so one file (config/web.toml) serves both stores.
        None | Some("cookie") => SessionStore::Cookie,
        Some("redis") => match redis_url {
            Some(u) => redis_store(c, at, u, ca_file, base_dir),
            None => {
                c.err(
                    format!("{at}.redis_url"),
                    format!("required with session_store = \"redis\": {}", crate::store::url::FORMS),
                );
                SessionStore::Cookie
            }
        },
        Some(other) => {
            c.err(format!("{at}.session_store"), format!("unknown store {other:?}: use \"cookie\" or \"redis\""));
            SessionStore::Cookie
        }
    }
}

/// The URL parsed and the CA file read and parsed now, so `tollgate check` reports either.
fn redis_store(c: &mut Check, at: &str, url: String, ca_file: Option<String>, base_dir: &Path) -> SessionStore {
    use crate::store::url::{RedisUrl, FORMS};
    let tls = match RedisUrl::parse(&url) {
        Ok(u) => u.tls,
        Err(e) => {
            c.err(format!("{at}.redis_url"), format!("{e}: expected {FORMS}"));
            return SessionStore::Cookie;
        }
    };
    let ca_file = ca_file.and_then(|raw| {
        let field = format!("{at}.redis_ca_file");
        if !tls {
            c.err(&field, "needs a rediss:// or rediss+sentinel:// redis_url (TLS)");
            return None;
        }
        let path = base_dir.join(raw);
        let pem = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display())).and_then(|pem| {
            crate::store::tls::ca_certificates(&pem).map(|_| pem).map_err(|e| format!("{}: {e}", path.display()))
        });
        match pem {
            Ok(pem) => Some((path, pem)),
            Err(e) => {
                c.err(&field, e);
                None
            }
        }
    });
    SessionStore::Redis(RedisStore { url: Secret::new(url), ca_file })
}

/// The login a route with `auth = "login"` or `"login_or_bearer"` uses: the one it names, or
/// the only one. Other routes name none.
pub(super) fn route_login(
    c: &mut Check,
    i: usize,
    raw: Option<String>,
    auth: &RouteAuth,
    logins: &[Login],
) -> Option<String> {
    let at = format!("route[{i}].login");
    if !matches!(auth, RouteAuth::Login | RouteAuth::LoginOrBearer(_)) {
        if raw.is_some() {
            c.err(at, "only applies to routes with auth = \"login\" or \"login_or_bearer\"");
        }
        return None;
    }
    match raw {
        Some(name) if logins.iter().any(|l| l.name == name) => Some(name),
        Some(name) => {
            let known: Vec<&str> = logins.iter().map(|l| l.name.as_str()).collect();
            c.err(at, format!("no login named {name:?} (there are: {})", known.join(", ")));
            None
        }
        None if logins.len() == 1 => Some(logins[0].name.clone()),
        // No login at all is reported at `auth`.
        None if logins.is_empty() => None,
        None => {
            let known: Vec<String> = logins.iter().map(|l| format!("{:?}", l.name)).collect();
            c.err(at, format!("required: there are several logins, name one of {}", known.join(", ")));
            None
        }
    }
}

/// PUBLIC_URL, taken apart.
#[derive(Debug, Default, PartialEq)]
struct PublicUrl {
    /// Origin and path, no trailing slash.
    url: String,
    origin: String,
    host: String,
    /// Empty or `/a/b`.
    path: String,
    secure: bool,
}

/// PUBLIC_URL: `https://host[:port]` with an optional path `/app` (plain http allowed, without
/// secure cookies). The path is plain: letters, digits, `-._~` between single slashes, so it can
/// go into a cookie's `Path` and be compared with request paths as it is.
fn public_url(s: &str) -> Result<PublicUrl, String> {
    let uri: Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    let secure = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("invalid URL {s:?}: the scheme must be https (or http)")),
    };
    let authority = uri.authority().ok_or_else(|| format!("invalid URL {s:?}: no host"))?;
    if authority.as_str().contains('@') || uri.query().is_some() || s.contains('#') {
        return Err(format!("{s:?}: give scheme, host and at most a path, like https://app.example.com/wiki"));
    }
    let path = uri.path().trim_end_matches('/');
    let plain = |seg: &str| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    if !path.is_empty() && !path.strip_prefix('/').is_some_and(|p| p.split('/').all(plain)) {
        return Err(format!("{s:?}: the path may hold letters, digits and -._~ between single slashes"));
    }
    let scheme = if secure { "https" } else { "http" };
    let origin = format!("{scheme}://{}", authority.as_str().to_ascii_lowercase());
    Ok(PublicUrl {
        url: format!("{origin}{path}"),
        origin,
        // As the request's authority has it: lower case, no trailing dot.
        host: authority.host().trim_end_matches('.').to_ascii_lowercase(),
        path: path.to_string(),
        secure,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        let root = public_url("https://App.example.com/").unwrap();
        assert_eq!(
            (root.url.as_str(), root.host.as_str(), root.path.as_str()),
            ("https://app.example.com", "app.example.com", "")
        );
        assert!(root.secure);
        assert!(!public_url("http://127.0.0.1:8080").unwrap().secure);
        let wiki = public_url("https://Apps.example.com:8443/wiki/").unwrap();
        assert_eq!(wiki.url, "https://apps.example.com:8443/wiki");
        assert_eq!(wiki.origin, "https://apps.example.com:8443");
        assert_eq!(wiki.path, "/wiki");
        assert_eq!(public_url("http://h/a/b.c").unwrap().path, "/a/b.c");
        for bad in [
            "app.example.com",
            "https://u@a",
            "ftp://a",
            "https://a/?x=1",
            "https://a/x#y",
            "https://a//x",
            "https://a/x/../y",
            "https://a/./y",
            "https://a/x%2fy",
            "https://a/x;y",
            "https://a/x y",
        ] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cookie_names_that_would_read_each_other() {
        for (a, b) in
            [("tollgate", "tollgate"), ("tollgate", "tollgate_3"), ("tollgate", "tollgate_flow"), ("s_flow_ab", "s")]
        {
            assert!(cookie_names_clash(a, b) && cookie_names_clash(b, a), "{a} {b}");
        }
        for (a, b) in [
            ("tollgate", "tollgate_wiki"),
            ("tollgate", "tollgatex"),
            ("tollgate_wiki", "tollgate_blog"),
            ("a", "a_flowers"),
        ] {
            assert!(!cookie_names_clash(a, b), "{a} {b}");
        }
    }

    const ISSUERS: &str = "[[issuer]]\nname = \"a\"\nurl = \"https://a.example\"\naudiences = [\"api\"]\n\n\
                           [[issuer]]\nname = \"b\"\nurl = \"https://b.example\"\naudiences = [\"api\"]\n\n";
    const SECRET: &str = "a-cookie-secret-of-at-least-32-bytes!!";

    fn load(text: &str) -> Result<Config, Vec<String>> {
        Config::from_str(text, Path::new("t.toml"), &|_| None)
            .map_err(|e| e.errors.iter().map(|e| e.to_string()).collect())
    }

    fn login(name: Option<&str>, issuer: &str, url: &str, extra: &str) -> String {
        let name = name.map(|n| format!("name = \"{n}\"\n")).unwrap_or_default();
        format!(
            "[[login]]\n{name}issuer = \"{issuer}\"\nclient_id = \"c-{issuer}\"\nclient_secret = \"s\"\n\
             public_url = \"{url}\"\ncookie_secret = \"{SECRET}\"\n{extra}\n"
        )
    }

    fn route(path: &str, extra: &str) -> String {
        format!("[[route]]\npath = \"{path}\"\nauth = \"login\"\nupstream = \"http://127.0.0.1:9\"\n{extra}\n")
    }

    #[test]
    fn several_logins_by_name_with_their_own_cookies_and_endpoints() {
        let text = format!(
            "{ISSUERS}{}{}{}{}{}",
            login(Some("wiki"), "a", "https://apps.example.com/wiki/", ""),
            login(Some("blog"), "b", "https://apps.example.com/blog", ""),
            login(Some("default"), "a", "http://wiki.example.com", ""),
            route("/wiki/", "login = \"wiki\""),
            route("/blog/", "login = \"blog\""),
        );
        let c = load(&text).unwrap();
        let names: Vec<(&str, &str, &str, usize)> =
            c.logins.iter().map(|l| (l.name.as_str(), l.cookie_name.as_str(), l.cookie_path(), l.issuer)).collect();
        assert_eq!(
            names,
            [
                ("wiki", "__Secure-tollgate_wiki", "/wiki", 0),
                ("blog", "__Secure-tollgate_blog", "/blog", 1),
                ("default", "tollgate", "/", 0)
            ]
        );
        assert_eq!(c.logins[0].redirect_uri(), "https://apps.example.com/wiki/oauth2/callback");
        assert_eq!(c.logins[0].endpoint_path("start"), "/wiki/oauth2/start");
        assert_eq!(c.logins[0].post_logout_redirect, "https://apps.example.com/wiki/");
        assert_eq!(c.logins[0].public_origin, "https://apps.example.com");
        assert_eq!(c.logins[2].redirect_uri(), "http://wiki.example.com/oauth2/callback");
        assert_eq!(c.routes[0].login.as_deref(), Some("wiki"));
        assert_eq!(c.routes[1].login.as_deref(), Some("blog"));
    }

    #[test]
    fn a_single_login_table_is_the_default_login_and_errors_name_its_fields() {
        let single = format!(
            "{ISSUERS}[login]\nissuer = \"a\"\nclient_id = \"web\"\nclient_secret = \"s\"\n\
             public_url = \"https://app.example.com\"\ncookie_secret = \"{SECRET}\"\n\n{}",
            route("/", "")
        );
        let c = load(&single).unwrap();
        assert_eq!((c.logins.len(), c.logins[0].name.as_str()), (1, "default"));
        assert_eq!(c.logins[0].cookie_name, "__Host-tollgate");
        assert_eq!(c.routes[0].login.as_deref(), Some("default"), "the only login, unnamed");
        let errors = load(&single.replace("client_id = \"web\"\n", "")).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("login.client_id")), "{errors:?}");
        let errors = load(&single.replace("cookie_secret", "cookie_secrett")).unwrap_err();
        assert!(errors.iter().any(|e| e.starts_with("login.cookie_secrett: unknown field")), "{errors:?}");
        let errors =
            load(&single.replace("public_url = \"https://app.example.com\"", "public_url = \"x\"")).unwrap_err();
        assert!(errors.iter().any(|e| e.starts_with("login.public_url:")), "{errors:?}");
        // In arrays, fields are named by position.
        let two = format!(
            "{ISSUERS}{}{}{}",
            login(Some("a"), "a", "https://a.example.com", ""),
            login(Some("b"), "b", "https://b.example.com", "").replace("client_id = \"c-b\"\n", ""),
            route("/", "login = \"a\"")
        );
        let errors = load(&two).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("login[1].client_id")), "{errors:?}");
    }

    #[test]
    fn check_says_which_login_to_name_and_refuses_clashes() {
        let two = |a: &str, b: &str, routes: &str| {
            format!(
                "{ISSUERS}{}{}{routes}",
                login(Some("wiki"), "a", "https://apps.example.com/wiki", a),
                login(Some("blog"), "a", "https://apps.example.com/blog", b),
            )
        };
        let has = |errors: &[String], want: &str| errors.iter().any(|e| e.contains(want));
        let e = load(&two("", "", &route("/", ""))).unwrap_err();
        assert!(has(&e, "route[0].login: required: there are several logins, name one of \"wiki\", \"blog\""), "{e:?}");
        let e = load(&two("", "", &route("/", "login = \"shop\""))).unwrap_err();
        assert!(has(&e, "route[0].login: no login named \"shop\""), "{e:?}");
        let bearer = "[[route]]\npath = \"/\"\nauth = \"none\"\nlogin = \"wiki\"\nupstream = \"http://127.0.0.1:9\"\n";
        let e = load(&two("", "", bearer)).unwrap_err();
        assert!(has(&e, "route[0].login: only applies"), "{e:?}");
        let ok = route("/", "login = \"wiki\"");
        let e = load(&two("cookie_name = \"app\"", "cookie_name = \"app\"", &ok)).unwrap_err();
        assert!(has(&e, "login[1].cookie_name: \"__Secure-app\" clashes with login[0]"), "{e:?}");
        let e = load(&two("cookie_name = \"app\"", "cookie_name = \"app_2\"", &ok)).unwrap_err();
        assert!(has(&e, "login[1].cookie_name"), "a chunk name of the other: {e:?}");
        let e = load(&two("", "", &ok).replace("/blog", "/wiki/")).unwrap_err();
        assert!(has(&e, "login[1].public_url: login[0]'s endpoints are already there"), "{e:?}");
        let e = load(&two("", "", &ok).replace("name = \"blog\"", "name = \"wiki\"")).unwrap_err();
        assert!(has(&e, "login[1].name: \"wiki\" is also login[0]'s name"), "{e:?}");
        let e = load(&two("", "", &ok).replace("name = \"blog\"\n", "")).unwrap_err();
        assert!(has(&e, "login[1].name: required in [[login]] tables"), "{e:?}");
        let e = load(&two("", "", &ok).replace("name = \"blog\"", "name = \"Blog_1\"")).unwrap_err();
        assert!(has(&e, "login[1].name: \"Blog_1\": use 1 to 32 lower-case letters"), "{e:?}");
        assert!(load(&two("", "", &ok)).is_ok());
    }

    #[test]
    fn redis_urls_and_the_ca_file_are_checked() {
        let dir = std::env::temp_dir().join(format!("tollgate-redis-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["redis.test".into()]).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(dir.join("empty.pem"), "").unwrap();
        let with = |store: &str| {
            format!("{ISSUERS}{}{}", login(Some("a"), "a", "https://a.example.com", store), route("/", "login = \"a\""))
        };
        let redis = |url: &str, ca: Option<&str>| {
            let ca = ca.map(|f| format!("redis_ca_file = \"{}\"\n", dir.join(f).display())).unwrap_or_default();
            with(&format!("session_store = \"redis\"\nredis_url = \"{url}\"\n{ca}"))
        };
        let c = load(&redis("rediss+sentinel://s1,s2:26380/mymaster/1", Some("ca.pem"))).unwrap();
        let SessionStore::Redis(store) = &c.logins[0].store else { panic!("not redis") };
        assert_eq!(store.ca_file.as_ref().map(|(_, pem)| pem.as_slice()), Some(ca.cert.pem().as_bytes()));
        for url in ["redis://h", "rediss://:p@h:6380/2", "redis+sentinel://h/m"] {
            assert!(load(&redis(url, None)).is_ok(), "{url}");
        }
        let error_of = |text: String| load(&text).unwrap_err().join("\n");
        for url in ["redis+sentinel://h", "redis://h:x", "http://h", "redis+sentinel://h/m?x=1"] {
            let e = error_of(redis(url, None));
            assert!(e.starts_with("login[0].redis_url: "), "{e}");
            assert!(e.contains("expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"), "{e}");
            assert!(e.contains("redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER_NAME"), "{e}");
        }
        let e = error_of(redis("redis://h", Some("ca.pem")));
        assert!(e.starts_with("login[0].redis_ca_file: needs a rediss://"), "{e}");
        let e = error_of(redis("rediss://h", Some("missing.pem")));
        assert!(e.starts_with("login[0].redis_ca_file: cannot read ") && e.contains("missing.pem"), "{e}");
        let e = error_of(redis("rediss://h", Some("empty.pem")));
        assert!(e.starts_with("login[0].redis_ca_file: ") && e.contains("no CERTIFICATE"), "{e}");
        let e = error_of(with("session_store = \"redis\"\n"));
        assert!(e.starts_with("login[0].redis_url: required") && e.contains("redis+sentinel://"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
