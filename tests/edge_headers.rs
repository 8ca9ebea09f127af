//! "The edge", identity that did not come from a token: no spelling of a header tollgate sets
//! or removes reaches the upstream from a client, the headers other gateways use for identity
//! are removed by default, unverified addresses are not forwarded, headers built from lists
//! are unambiguous, and HTTP/2 cookie fields reach the HTTP/1.1 upstream as one line.
//!
//! The issuer is in-process (discovery and a fixed JWKS); tokens are signed here with the
//! test key `tests/idp/keys/rsa1.pem`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::wait_ready;
use common::{check, echo_upstream, full, get, raw, upstream, Gateway, RawResponse, TempDir, BASE};
use hyper::body::Incoming;
use hyper::{Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const RSA1_PEM: &[u8] = include_bytes!("idp/keys/rsa1.pem");
const RSA1_JWK: &str = include_str!("idp/keys/rsa1.json");
const KID: &str = "test-rsa-1";

struct Fixture {
    gw: Gateway,
    issuer: String,
    _rt: tokio::runtime::Runtime,
}

/// An issuer serving discovery and the rsa1 key set; returns its URL.
async fn issuer() -> String {
    let url = Arc::new(OnceLock::<String>::new());
    let u = url.clone();
    let doc: Value = serde_json::from_str(RSA1_JWK).unwrap();
    let k = &doc["keys"][0];
    let jwks = json!({"keys": [{"kty": "RSA", "n": k["n"], "e": k["e"], "kid": KID, "alg": "RS256"}]}).to_string();
    let addr = upstream(Arc::new(move |req: Request<Incoming>| {
        let iss = u.get().cloned().unwrap_or_default();
        let body = match req.uri().path() {
            "/.well-known/openid-configuration" => json!({
                "issuer": iss, "jwks_uri": format!("{iss}/jwks"),
                "authorization_endpoint": format!("{iss}/authorize"), "token_endpoint": format!("{iss}/token"),
            })
            .to_string(),
            _ => jwks.clone(),
        };
        Box::pin(
            async move { Response::builder().header("content-type", "application/json").body(full(body)).unwrap() },
        )
    }))
    .await;
    url.set(format!("http://{addr}")).unwrap();
    format!("http://{addr}")
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (up, iss) = rt.block_on(async { (echo_upstream().await, issuer().await) });
    let base = BASE.replace(
        "workers = 2",
        "workers = 2\nstrip_request_headers = [\"X-Internal-*\", \"X-Debug\"]\n\
         keep_request_headers = [\"X-Forwarded-Client-Cert\"]",
    );
    let config = format!(
        r#"{base}
[[issuer]]
name = "idp"
url = "{iss}"
audiences = ["api"]

[login]
client_id = "gateway"
client_secret = "gateway-secret"
public_url = "http://gateway.test"
cookie_secret = "0123456789abcdef0123456789abcdef"

[[route]]
name = "public"
auth = "none"
path = "/public/"
upstream = "http://{up}"

[[route]]
name = "api"
auth = "bearer"
path = "/api/"
upstream = "http://{up}"
claim_headers = {{ "X-Tenant" = "tenant", "X-Roles" = "realm_access.roles" }}

[[route]]
name = "insecure"
auth = "bearer"
path = "/insecure/"
upstream = "http://{up}"
insecure_forward_unverified_email = true
"#
    );
    let gw = Gateway::start(&config);
    wait_ready(&gw);
    Fixture { gw, issuer: iss, _rt: rt }
}

impl Fixture {
    /// A token for `sub` "alice" with `extra` claims.
    fn token(&self, extra: Value) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut claims = json!({"iss": self.issuer, "aud": "api", "sub": "alice", "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(RSA1_PEM).unwrap()).unwrap()
    }

    fn call(&self, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> RawResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            all.push(("Authorization", a));
        }
        get(self.gw.addr, path, &all)
    }
}

/// The headers the echo upstream received (name → values).
fn upstream_saw(r: &RawResponse) -> BTreeMap<String, Vec<String>> {
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_value(r.json()["headers"].clone()).unwrap()
}

/// `X.Forwarded.User` reached the upstream (the `_` spelling was removed, `.` was not); PHP and
/// CGI read it as `X-Forwarded-User`. Every spelling of every header tollgate sets or removes
/// (built-in identity headers, configured claim headers, forwarding headers, Host,
/// Authorization, X-Request-Id) is removed now.
#[test]
fn identity_headers_in_any_spelling_never_reach_the_upstream() {
    let fx = fixture();
    let spoofed = [
        "X.Forwarded.User",
        "x.forwarded.email",
        "X~Forwarded~Groups",
        "x!forwarded!preferred!username",
        "x+forwarded+access+token",
        "X.Auth.Request.User",
        "x_auth.request-email",
        "XForwardedUser",
        "X.Tenant",
        "x'roles",
        "X.Request.Id",
        "X.Forwarded.For",
        "x|forwarded|proto",
        "X.Forwarded.Host",
        "X.Real.IP",
        "Ho.st",
        "Authorization.",
        "Transfer.Encoding",
    ];
    let mut headers: Vec<(&str, &str)> = spoofed.iter().map(|n| (*n, "spoofed")).collect();
    headers.push(("X.Custom.Ok", "harmless"));
    let token = fx.token(json!({"tenant": "t1", "realm_access": {"roles": ["user"]}}));
    for (path, token) in [("/public/x", None), ("/api/x", Some(token.as_str()))] {
        let seen = upstream_saw(&fx.call(path, token, &headers));
        for (name, values) in &seen {
            assert!(!values.iter().any(|v| v.contains("spoofed")), "{path}: the upstream saw {name}: {values:?}");
        }
        assert_eq!(seen.get("x.custom.ok"), Some(&vec!["harmless".to_string()]), "{path}: other names pass");
        if token.is_some() {
            assert_eq!(seen["x-forwarded-user"], vec!["alice"]);
            assert_eq!(seen["x-tenant"], vec!["t1"]);
        }
    }
    // A name with a space is no header name at all: refused before any routing.
    let r = raw(
        fx.gw.addr,
        b"GET /public/x HTTP/1.1\r\nHost: gateway.test\r\nX Forwarded User: spoofed\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{r:?}");
}

/// Remote-User, X-Remote-User, X-SSL-Client-*, True-Client-IP and the rest reached the upstream;
/// the legacy apps behind tollgate trust exactly these. Removed by default in every spelling;
/// `strip_request_headers` adds names and prefixes, `keep_request_headers` keeps one (in its
/// own spelling only).
#[test]
fn foreign_identity_headers_are_removed_by_default() {
    let fx = fixture();
    let foreign = [
        "Remote-User",
        "Remote_User",
        "X-Remote-User",
        "X-Remote-Group",
        "X-Userinfo",
        "X-Jwt-Payload",
        "X-Webauth-User",
        "X-SSL-Client-S-DN",
        "X-SSL-Client-Verify",
        "x.ssl.client.cert",
        "Ssl-Client-Cert",
        "Client-IP",
        "True-Client-IP",
        "X-Client-IP",
        "X-Forwarded-Server",
        "X-Host",
        "X.Host",
        "x_forwarded_client_cert",
        "X-Amzn-Oidc-Identity",
        "Cf-Access-Authenticated-User-Email",
        "X-Goog-Authenticated-User-Email",
        "X-MS-Client-Principal-Name",
        "Client-Cert",
        // Configured: a prefix and a name.
        "X-Internal-Role",
        "x_internal_role",
        "X-Debug",
    ];
    let mut headers: Vec<(&str, &str)> = foreign.iter().map(|n| (*n, "spoofed")).collect();
    headers.push(("X-Forwarded-Client-Cert", "Hash=kept-on-purpose"));
    headers.push(("X-Internalx", "spoofed"));
    let seen = upstream_saw(&fx.call("/public/x", None, &headers));
    for (name, values) in &seen {
        assert!(!values.iter().any(|v| v.contains("spoofed")), "the upstream saw {name}: {values:?}");
    }
    assert_eq!(seen.get("x-forwarded-client-cert"), Some(&vec!["Hash=kept-on-purpose".to_string()]));
}

/// The lists are checked when the configuration is: an error names the field and the entry.
#[test]
fn header_list_errors_name_the_field() {
    let dir = TempDir::new("edge-headers");
    let file = dir.path("bad.toml");
    let config = r#"
[server]
strip_request_headers = ["*", "Host", "X-Fine-*"]
keep_request_headers = ["X-Forwarded-User", "X-Custom", "Remote-User"]
[[route]]
auth = "none"
upstream = "http://127.0.0.1:9"
"#;
    std::fs::write(&file, config).unwrap();
    let (code, out) = check(&file, &[]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "server.strip_request_headers[0]",
        "server.strip_request_headers[1]",
        "server.keep_request_headers[0]",
        "cannot be kept",
        "server.keep_request_headers[1]",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    for fine in ["server.strip_request_headers[2]", "server.keep_request_headers[2]"] {
        assert!(!out.contains(fine), "{fine} is valid:\n{out}");
    }
}

/// An address marked `email_verified: false` was forwarded as X-Forwarded-Email and
/// X-Auth-Request-Email, though the email rules ignore it. Now it is left out, unless the
/// route says `insecure_forward_unverified_email`.
#[test]
fn unverified_addresses_are_not_forwarded() {
    let fx = fixture();
    let email = |path: &str, claims: Value| {
        let seen =
            upstream_saw(&fx.call(path, Some(&fx.token(claims)), &[("X-Forwarded-Email", "spoofed@example.com")]));
        seen.get("x-forwarded-email").cloned()
    };
    let ann = Some(vec!["ann@example.com".to_string()]);
    assert_eq!(email("/api/x", json!({"email": "ann@example.com", "email_verified": false})), None);
    assert_eq!(email("/api/x", json!({"email": "ann@example.com", "email_verified": "false"})), None);
    assert_eq!(email("/api/x", json!({"email": "ann@example.com", "email_verified": true})), ann);
    assert_eq!(email("/api/x", json!({"email": "ann@example.com"})), ann, "no claim: as the email rules");
    assert_eq!(email("/insecure/x", json!({"email": "ann@example.com", "email_verified": false})), ann);
    // Forward-auth answers the same.
    let unverified = fx.token(json!({"email": "ann@example.com", "email_verified": false}));
    let r = fx.call("/oauth2/auth", Some(&unverified), &[("X-Forwarded-Uri", "/api/x")]);
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.header("x-auth-request-user"), Some("alice"));
    assert_eq!(r.header("x-auth-request-email"), None);
    let verified = fx.token(json!({"email": "ann@example.com", "email_verified": true}));
    let r = fx.call("/oauth2/auth", Some(&verified), &[("X-Forwarded-Uri", "/api/x")]);
    assert_eq!(r.header("x-auth-request-email"), Some("ann@example.com"), "{r:?}");
}

/// A group named `staff,admins` was indistinguishable from two groups. Items are now joined
/// with `,` with `%`, `,` and bytes outside visible ASCII percent-encoded: in X-Forwarded-Groups,
/// array claims in claim_headers and forward-auth's X-Auth-Request-Groups.
#[test]
fn headers_built_from_lists_are_unambiguous() {
    let fx = fixture();
    let token = fx.token(json!({
        "groups": ["staff,admins", "dev ops", "plain", "50%"],
        "realm_access": {"roles": ["a,b", "c", 7]},
    }));
    let seen = upstream_saw(&fx.call("/api/x", Some(&token), &[]));
    assert_eq!(seen["x-forwarded-groups"], vec!["staff%2Cadmins,dev%20ops,plain,50%25"]);
    assert_eq!(seen["x-roles"], vec!["a%2Cb,c,7"]);
    let r = fx.call("/oauth2/auth", Some(&token), &[("X-Forwarded-Uri", "/api/x")]);
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.header("x-auth-request-groups"), Some("staff%2Cadmins,dev%20ops,plain,50%25"));
    let plain = fx.token(json!({"groups": ["staff", "admins"]}));
    assert_eq!(upstream_saw(&fx.call("/api/x", Some(&plain), &[]))["x-forwarded-groups"], vec!["staff,admins"]);
}

/// HTTP/2 sends each cookie in its own field; they reached the HTTP/1.1 upstream as several
/// Cookie lines (RFC 9113 §8.2.3: join them with "; "). tollgate's own cookie is still removed.
#[test]
fn http2_cookie_fields_reach_the_upstream_as_one_line() {
    let fx = fixture();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cookies = |values: &'static [&'static str]| {
        rt.block_on(async {
            let j = h2_get(fx.gw.addr, "http://gateway.test/public/x", "cookie", values).await;
            j["headers"]["cookie"].clone()
        })
    };
    assert_eq!(cookies(&["a=1", "b=2", "c=3"]), json!(["a=1; b=2; c=3"]));
    assert_eq!(cookies(&["a=1"]), json!(["a=1"]));
    assert_eq!(cookies(&["a=1", "tollgate=sealed", "b=2"]), json!(["a=1; b=2"]));
}

/// One HTTP/2 request (prior knowledge) with `name` sent once per value; the echo's JSON.
async fn h2_get(addr: SocketAddr, uri: &str, name: &str, values: &[&str]) -> Value {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::get(uri);
    for v in values {
        req = req.header(name, *v);
    }
    let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("an answer").unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.data()).await.expect("the body") {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).unwrap()
}
