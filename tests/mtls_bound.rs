//! Certificate-bound access tokens (RFC 8705 §3) through the real binary against the real
//! OpenID Provider: oidc-provider's `mTLS` feature issues tokens with `cnf["x5t#S256"]` of the
//! certificate a client presented on the provider's HTTPS listener; tollgate accepts them only
//! from a client presenting that certificate, on its own TLS connections
//! (`server.tls.client_ca_file`) or in a header from a trusted proxy
//! (`server.client_cert_header`, Envoy XFCC or nginx's URL-encoded PEM).
//!
//! The attacks a token thief would try: the token over a connection with another certificate
//! (same CA), with none, with a certificate from another CA (`client_auth = "required"`), and a
//! forged certificate header from a peer that is not a trusted proxy. Every certificate and CA is
//! made here with rcgen.
//!
//! Needs node and `cd tests/idp && npm ci`.

mod common;
#[path = "support/idp.rs"]
mod idp;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{check, echo, get, metric, parse_response, wait_ready, Gateway, RawResponse, TempDir, BASE};
use idp::{base64_encode, form_encode, jwt_parts, Idp, IdpOptions, API_RESOURCE};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;

// ---- certificates -------------------------------------------------------------------------------

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate with its key: PEM for files and headers, DER for TLS.
struct Identity {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for localhost and 127.0.0.1.
    fn server(&self, cn: &str) -> Identity {
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate (TLS client authentication).
    fn client(&self, cn: &str) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Identity {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

impl Identity {
    /// `cnf["x5t#S256"]` for this certificate: base64url SHA-256 of the DER.
    fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha256(&self.der))
    }

    /// Envoy's `Hash=`: hex SHA-256 of the DER.
    fn hash_hex(&self) -> String {
        sha256(&self.der).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The PEM URL-encoded, as nginx `$ssl_client_escaped_cert` and Envoy `Cert=` send it.
    fn escaped_pem(&self) -> String {
        let mut out = String::new();
        for b in self.cert_pem.bytes() {
            match b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                true => out.push(char::from(b)),
                false => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    fn write(&self, dir: &TempDir, name: &str) -> (String, String) {
        let (cert, key) = (dir.path(&format!("{name}.pem")), dir.path(&format!("{name}-key.pem")));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert.display().to_string(), key.display().to_string())
    }
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref().to_vec()
}

/// The test PKI: `ca` signs tollgate's server certificate and the clients alice and bob;
/// `other` is a CA tollgate does not trust (mallory's); the IdP's listener has its own.
struct Pki {
    ca: Ca,
    server: Identity,
    alice: Identity,
    bob: Identity,
    mallory: Identity,
    idp_ca: Ca,
    idp_server: Identity,
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca = Ca::new("tollgate client CA");
        let other = Ca::new("some other CA");
        let idp_ca = Ca::new("idp CA");
        let pki = Pki {
            server: ca.server("tollgate"),
            alice: ca.client("alice"),
            bob: ca.client("bob"),
            mallory: other.client("mallory"),
            idp_server: idp_ca.server("idp"),
            ca,
            idp_ca,
            dir: TempDir::new("mtls-pki"),
        };
        std::fs::write(pki.dir.path("ca.pem"), pki.ca.pem()).unwrap();
        pki
    }

    /// `[server] tls = {...}` with the client CA and `client_auth`.
    fn tls_line(&self, client_auth: &str) -> String {
        let (cert, key) = self.server.write(&self.dir, "server");
        format!(
            "tls = {{ cert_file = {cert:?}, key_file = {key:?}, client_ca_file = {:?}, client_auth = \"{client_auth}\" }}",
            self.dir.path("ca.pem").display().to_string()
        )
    }
}

// ---- the provider ----------------------------------------------------------------------------

/// A client whose tokens the provider binds to the certificate it presents.
const BOUND_CLIENT: &str = r#"[{"client_id":"m2m-mtls","client_secret":"m2m-mtls-secret","grant_types":["client_credentials"],"response_types":[],"redirect_uris":[],"scope":"api:read api:write","token_endpoint_auth_method":"client_secret_basic","tls_client_certificate_bound_access_tokens":true}]"#;

fn start_idp(pki: &Pki) -> Idp {
    let (cert, key) = pki.idp_server.write(&pki.dir, "idp");
    Idp::start(
        IdpOptions::default()
            .with_env("IDP_EXTRA_CLIENTS", BOUND_CLIENT)
            .with_env("IDP_MTLS_CERT_FILE", cert)
            .with_env("IDP_MTLS_KEY_FILE", key),
    )
}

/// A client-credentials token for `m2m-mtls`, requested over the provider's HTTPS listener
/// presenting `cert`: a JWT with `resource`, else an opaque token.
fn bound_token(idp: &Idp, pki: &Pki, cert: &Identity, resource: Option<&str>) -> String {
    let addr: SocketAddr =
        idp.mtls.as_deref().expect("the IdP has no mTLS listener").trim_start_matches("https://").parse().unwrap();
    let mut form = format!("grant_type=client_credentials&scope={}", form_encode("api:read"));
    if let Some(r) = resource {
        form.push_str(&format!("&resource={}", form_encode(r)));
    }
    let basic = base64_encode(b"m2m-mtls:m2m-mtls-secret");
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let resp = tls_request(addr, &pki.idp_ca, Some(cert), &[], request.as_bytes()).expect("token request over TLS");
    assert_eq!(resp.status, 200, "bound token request: {}", resp.body);
    resp.json()["access_token"].as_str().unwrap().to_string()
}

// ---- clients --------------------------------------------------------------------------------

/// A TLS client config trusting `ca`, presenting `cert` when given, offering `alpn`.
fn client_config(ca: &Ca, cert: Option<&Identity>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone()));
            builder.with_client_auth_cert(vec![c.der.clone()], key).unwrap()
        }
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg
}

/// Sends `request` (with `Connection: close`) over a new TLS connection and reads the whole
/// response; `Err` when the handshake or the exchange fails before any response.
fn tls_request(
    addr: SocketAddr,
    ca: &Ca,
    cert: Option<&Identity>,
    alpn: &[&[u8]],
    request: &[u8],
) -> Result<RawResponse, String> {
    let cfg = Arc::new(client_config(ca, cert, alpn));
    let conn = rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let read = tls.read_to_end(&mut buf);
    if buf.is_empty() {
        return Err(format!("no response: {read:?}"));
    }
    Ok(parse_response(&buf))
}

/// `GET path` with a bearer token over TLS, presenting `cert`.
fn call(gw: &Gateway, pki: &Pki, cert: Option<&Identity>, path: &str, token: &str) -> Result<RawResponse, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    tls_request(gw.addr, &pki.ca, cert, &[b"http/1.1"], request.as_bytes())
}

/// The same over HTTP/2 (ALPN h2): the status.
fn call_h2(gw: &Gateway, pki: &Pki, cert: Option<&Identity>, token: &str) -> u16 {
    let cfg = Arc::new(client_config(&pki.ca, cert, &[b"h2"]));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("https://gateway.test/api/h2")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.send_request(req).await.unwrap().status().as_u16()
    })
}

fn issuer(idp: &Idp) -> String {
    format!(
        "\n[[issuer]]\nname = \"idp\"\nurl = \"{}\"\naudiences = [\"{API_RESOURCE}\"]\n[issuer.introspection]\nclient_id = \"gateway\"\nclient_secret = \"gateway-secret\"\n",
        idp.issuer
    )
}

fn routes(up: SocketAddr) -> String {
    format!(
        "\n[[route]]\nauth = \"bearer\"\nname = \"api\"\npath = \"/api/\"\nupstream = \"http://{up}\"\n\n[[route]]\nauth = \"bearer\"\nname = \"fa\"\nhost = \"app.test\"\npath = \"/\"\nupstream = \"http://{up}\"\n"
    )
}

/// A gateway with `server_lines` in `[server]`, the provider's issuer and the routes.
fn start_gateway(server_lines: &str, idp: &Idp, up: SocketAddr) -> Gateway {
    let base = BASE.replace("workers = 2", &format!("workers = 2\n{server_lines}"));
    let gw = Gateway::start(&format!("{base}{}{}", issuer(idp), routes(up)));
    wait_ready(&gw);
    gw
}

fn assert_bound_refusal(resp: &RawResponse, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {}", resp.body);
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
    assert!(challenge.contains("bound to a client certificate"), "{what}: {challenge}");
}

fn refused_binding(gw: &Gateway) -> f64 {
    metric(gw, "tollgate_token_validations_total", &[("outcome", "invalid"), ("reason", "cert_binding")])
}

// ---- tests ----------------------------------------------------------------------------------

/// The provider binds the token to alice's certificate; tollgate accepts it over a TLS connection
/// presenting that certificate (HTTP/1.1 and HTTP/2, repeatedly: cache hits are checked too) and
/// refuses it over one presenting bob's (same CA) or none. Unbound tokens are unaffected.
#[test]
fn bound_jwt_passes_only_with_its_certificate() {
    let pki = Pki::new();
    let idp = start_idp(&pki);
    let up = echo();
    let gw = start_gateway(&pki.tls_line("optional"), &idp, up.addr);

    let token = bound_token(&idp, &pki, &pki.alice, Some(API_RESOURCE));
    let (_, claims) = jwt_parts(&token);
    assert_eq!(claims["cnf"]["x5t#S256"], Value::String(pki.alice.x5t()), "the provider bound it to alice: {claims}");

    for round in 0..3 {
        let resp = call(&gw, &pki, Some(&pki.alice), "/api/x", &token).unwrap();
        assert_eq!(resp.status, 200, "round {round}: {}", resp.body);
    }
    assert_eq!(call_h2(&gw, &pki, Some(&pki.alice), &token), 200, "HTTP/2 with alice's certificate");

    let before = refused_binding(&gw);
    assert_bound_refusal(&call(&gw, &pki, Some(&pki.bob), "/api/x", &token).unwrap(), "bob's certificate");
    assert_bound_refusal(&call(&gw, &pki, None, "/api/x", &token).unwrap(), "no certificate");
    assert_eq!(call_h2(&gw, &pki, Some(&pki.bob), &token), 401, "HTTP/2 with bob's certificate");
    assert_eq!(refused_binding(&gw) - before, 3.0);
    assert_eq!(call(&gw, &pki, Some(&pki.alice), "/api/x", &token).unwrap().status, 200, "still alice's");

    // An unbound token passes with any certificate or none.
    let unbound = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    for cert in [None, Some(&pki.bob), Some(&pki.alice)] {
        assert_eq!(call(&gw, &pki, cert, "/api/x", &unbound).unwrap().status, 200);
    }
    // The provider itself refuses to issue a bound token without a certificate (plain HTTP).
    let form = [("grant_type", "client_credentials"), ("resource", API_RESOURCE)];
    let (status, body) = idp.token_request(&form, Some(("m2m-mtls", "m2m-mtls-secret")));
    assert_eq!(status, 400, "{body}");
}

/// An opaque bound token: the binding comes from the introspection answer's `cnf`.
#[test]
fn introspected_bound_token_passes_only_with_its_certificate() {
    let pki = Pki::new();
    let idp = start_idp(&pki);
    let up = echo();
    let gw = start_gateway(&pki.tls_line("optional"), &idp, up.addr);
    let token = bound_token(&idp, &pki, &pki.alice, None);
    assert!(!token.contains('.'), "opaque: {token}");
    assert_eq!(idp.introspect("gateway", "gateway-secret", &token)["cnf"]["x5t#S256"], Value::String(pki.alice.x5t()));

    assert_eq!(call(&gw, &pki, Some(&pki.alice), "/api/x", &token).unwrap().status, 200);
    assert_bound_refusal(&call(&gw, &pki, Some(&pki.bob), "/api/x", &token).unwrap(), "bob's certificate");
    assert_bound_refusal(&call(&gw, &pki, None, "/api/x", &token).unwrap(), "no certificate");
    assert_eq!(call(&gw, &pki, Some(&pki.alice), "/api/x", &token).unwrap().status, 200, "cached answer");
}

/// `client_auth = "required"`: a handshake without a certificate, or with one from a CA tollgate
/// does not trust, gets no HTTP response at all; a trusted certificate is served.
#[test]
fn required_client_auth_refuses_handshakes_without_a_trusted_certificate() {
    let pki = Pki::new();
    let idp = start_idp(&pki);
    let up = echo();
    let gw = start_gateway(&pki.tls_line("required"), &idp, up.addr);
    let unbound = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));

    let none = call(&gw, &pki, None, "/api/x", &unbound);
    assert!(none.is_err(), "served without a certificate: {none:?}");
    let stranger = call(&gw, &pki, Some(&pki.mallory), "/api/x", &unbound);
    assert!(stranger.is_err(), "served with another CA's certificate: {stranger:?}");
    assert_eq!(call(&gw, &pki, Some(&pki.bob), "/api/x", &unbound).unwrap().status, 200);

    // In optional mode another CA's certificate fails the handshake as well: a certificate
    // presented is always verified.
    let gw = start_gateway(&pki.tls_line("optional"), &idp, up.addr);
    assert!(call(&gw, &pki, Some(&pki.mallory), "/api/x", &unbound).is_err());
    assert_eq!(call(&gw, &pki, None, "/api/x", &unbound).unwrap().status, 200);
}

/// Behind a trusted proxy (plain HTTP from 127.0.0.1), the certificate comes from
/// `client_cert_header`: Envoy's XFCC (`Hash=` or `Cert=`) or nginx's escaped PEM. The right
/// certificate passes and the header reaches the upstream; another, a malformed or ambiguous
/// header, or none is refused; forward-auth judges the same way; unbound tokens are unaffected.
#[test]
fn certificate_header_from_a_trusted_proxy() {
    let pki = Pki::new();
    let idp = start_idp(&pki);
    let up = echo();
    let token = bound_token(&idp, &pki, &pki.alice, Some(API_RESOURCE));
    let unbound = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let (alice, bob) = (&pki.alice, &pki.bob);

    let xfcc = "trusted_proxies = [\"127.0.0.1/32\"]\nclient_cert_header = { name = \"x-forwarded-client-cert\", format = \"xfcc\" }";
    let gw = start_gateway(xfcc, &idp, up.addr);
    let bearer = format!("Bearer {token}");
    let ask = |value: Option<&str>| {
        let mut headers = vec![("Authorization", bearer.as_str())];
        if let Some(v) = value {
            headers.push(("X-Forwarded-Client-Cert", v));
        }
        get(gw.addr, "/api/x", &headers)
    };
    let by_hash =
        format!("By=spiffe://proxy.test;Hash={};Subject=\"/CN=alice\";URI=spiffe://client.test", alice.hash_hex());
    let resp = ask(Some(&by_hash));
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["headers"]["x-forwarded-client-cert"], serde_json::json!([by_hash]), "passed upstream");
    let by_cert = format!("By=spiffe://proxy.test;Cert=\"{}\"", alice.escaped_pem());
    assert_eq!(ask(Some(&by_cert)).status, 200, "Cert=");
    let chain = format!("Hash={},By=spiffe://next.test;Hash={}", alice.hash_hex(), bob.hash_hex());
    assert_eq!(ask(Some(&chain)).status, 200, "the first element is the client's");

    let refused = [
        ("bob's certificate", format!("Hash={}", bob.hash_hex())),
        ("bob first", format!("Hash={},Hash={}", bob.hash_hex(), alice.hash_hex())),
        ("two hashes", format!("Hash={};Hash={}", alice.hash_hex(), bob.hash_hex())),
        ("hash and cert disagree", format!("Hash={};Cert={}", alice.hash_hex(), bob.escaped_pem())),
        ("short hash", format!("Hash={}", &alice.hash_hex()[..60])),
        ("unterminated quote", format!("Hash={};Subject=\"/CN=alice", alice.hash_hex())),
        ("no hash or cert", "By=spiffe://proxy.test;URI=spiffe://client.test".to_string()),
        ("bad cert", "Cert=%2D%2D%2D%2Dnot-a-certificate".to_string()),
    ];
    for (what, value) in &refused {
        assert_bound_refusal(&ask(Some(value)), what);
        let resp = get(
            gw.addr,
            "/api/x",
            &[("Authorization", &format!("Bearer {unbound}")), ("X-Forwarded-Client-Cert", value)],
        );
        assert_eq!(resp.status, 200, "unbound token with {what}: {}", resp.body);
    }
    assert_bound_refusal(&ask(None), "no header");

    // Forward-auth: the asking proxy passes the certificate the same way.
    let fa = |value: &str| {
        get(
            gw.addr,
            "/oauth2/auth",
            &[
                ("Authorization", &bearer),
                ("X-Forwarded-Host", "app.test"),
                ("X-Forwarded-Uri", "/x"),
                ("X-Forwarded-Client-Cert", value),
            ],
        )
    };
    assert_eq!(fa(&by_hash).status, 202, "forward-auth with alice's certificate");
    assert_bound_refusal(&fa(&format!("Hash={}", bob.hash_hex())), "forward-auth with bob's");

    // nginx: `proxy_set_header X-Client-Cert $ssl_client_escaped_cert;`
    let pem =
        "trusted_proxies = [\"127.0.0.1/32\"]\nclient_cert_header = { name = \"x-client-cert\", format = \"pem\" }";
    let gw = start_gateway(pem, &idp, up.addr);
    let ask = |value: &str| get(gw.addr, "/api/x", &[("Authorization", &bearer), ("X-Client-Cert", value)]);
    assert_eq!(ask(&alice.escaped_pem()).status, 200);
    assert_bound_refusal(&ask(&bob.escaped_pem()), "bob's PEM");
    assert_bound_refusal(&ask("%zz"), "bad percent-encoding");
    assert_bound_refusal(&ask(&format!("{}{}", alice.escaped_pem(), bob.escaped_pem())), "two certificates");
    let twice = get(
        gw.addr,
        "/api/x",
        &[("Authorization", &bearer), ("X-Client-Cert", &alice.escaped_pem()), ("X-Client-Cert", &alice.escaped_pem())],
    );
    assert_bound_refusal(&twice, "the header twice");
}

/// From a peer that is not a trusted proxy, the certificate header is never believed (the right
/// hash does not make a bound token pass) and never reaches the upstream, in any spelling.
#[test]
fn forged_certificate_header_from_an_untrusted_peer() {
    let pki = Pki::new();
    let idp = start_idp(&pki);
    let up = echo();
    let token = bound_token(&idp, &pki, &pki.alice, Some(API_RESOURCE));
    let unbound = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let lines = "trusted_proxies = [\"192.0.2.0/24\"]\nclient_cert_header = { name = \"x-forwarded-client-cert\", format = \"xfcc\" }";
    let gw = start_gateway(lines, &idp, up.addr);
    let forged = format!("Hash={}", pki.alice.hash_hex());
    let resp =
        get(gw.addr, "/api/x", &[("Authorization", &format!("Bearer {token}")), ("X-Forwarded-Client-Cert", &forged)]);
    assert_bound_refusal(&resp, "forged header");
    let fa = get(
        gw.addr,
        "/oauth2/auth",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("X-Forwarded-Host", "app.test"),
            ("X-Forwarded-Uri", "/x"),
            ("X-Forwarded-Client-Cert", &forged),
        ],
    );
    assert_bound_refusal(&fa, "forged header at forward-auth");

    let spellings =
        ["X-Forwarded-Client-Cert", "X_Forwarded_Client_Cert", "x.forwarded.client.cert", "XForwardedClientCert"];
    let mut headers = vec![("Authorization".to_string(), format!("Bearer {unbound}"))];
    headers.extend(spellings.iter().map(|s| (s.to_string(), forged.clone())));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let resp = get(gw.addr, "/api/x", &headers);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = resp.json()["headers"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert!(!seen.iter().any(|k| k.replace(['-', '_', '.'], "").contains("forwardedclientcert")), "{seen:?}");

    // Over TLS with a certificate the connection's wins, and a header cannot change it.
    let tls = format!("{}\n{lines}", pki.tls_line("optional"));
    let gw = start_gateway(&tls.replace("192.0.2.0/24", "127.0.0.1/32"), &idp, up.addr);
    let request = format!(
        "GET /api/x HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\nX-Forwarded-Client-Cert: Hash={}\r\nConnection: close\r\n\r\n",
        pki.alice.hash_hex()
    );
    let resp = tls_request(gw.addr, &pki.ca, Some(&pki.bob), &[], request.as_bytes()).unwrap();
    assert_bound_refusal(&resp, "bob's connection with alice's hash in the header");
}

/// `tollgate check` names the field of every mistake in the new settings, and reads the CA file.
#[test]
fn check_names_the_fields() {
    let pki = Pki::new();
    let (cert, key) = pki.server.write(&pki.dir, "server");
    let junk = pki.dir.path("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.display().to_string();
    let route = "\n[[route]]\nauth = \"none\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n";
    let cases = [
        (format!("tls = {{ cert_file = {cert:?}, key_file = {key:?}, client_ca_file = \"/nonexistent/ca.pem\" }}"), "server.tls.client_ca_file"),
        (format!("tls = {{ cert_file = {cert:?}, key_file = {key:?}, client_ca_file = {junk:?} }}"), "server.tls.client_ca_file"),
        (format!("tls = {{ cert_file = {cert:?}, key_file = {key:?}, client_auth = \"required\" }}"), "server.tls.client_auth"),
        (
            format!("tls = {{ cert_file = {cert:?}, key_file = {key:?}, client_ca_file = {:?}, client_auth = \"sometimes\" }}", pki.dir.path("ca.pem").display().to_string()),
            "server.tls.client_auth",
        ),
        ("client_cert_header = { name = \"x-forwarded-client-cert\", format = \"xfcc\" }".to_string(), "server.client_cert_header"),
        ("trusted_proxies = [\"10.0.0.0/8\"]\nclient_cert_header = { name = \"x-client-cert\", format = \"der\" }".to_string(), "server.client_cert_header.format"),
        ("trusted_proxies = [\"10.0.0.0/8\"]\nclient_cert_header = { name = \"x-forwarded-for\", format = \"pem\" }".to_string(), "server.client_cert_header.name"),
        (
            "trusted_proxies = [\"10.0.0.0/8\"]\nkeep_request_headers = [\"x-forwarded-client-cert\"]\nclient_cert_header = { name = \"x-forwarded-client-cert\", format = \"xfcc\" }".to_string(),
            "server.client_cert_header.name",
        ),
    ];
    for (lines, field) in &cases {
        let file = pki.dir.path("check.toml");
        std::fs::write(&file, format!("{}{route}", BASE.replace("workers = 2", &format!("workers = 2\n{lines}"))))
            .unwrap();
        let (code, text) = check(&file, &[]);
        assert_ne!(code, 0, "accepted {lines}");
        assert!(text.contains(field), "{lines}: expected {field} in {text}");
    }
    let file = pki.dir.path("ok.toml");
    std::fs::write(
        &file,
        format!("{}{route}", BASE.replace("workers = 2", &format!("workers = 2\n{}", pki.tls_line("required")))),
    )
    .unwrap();
    let (code, text) = check(&file, &[]);
    assert_eq!(code, 0, "{text}");
}
