//! TLS termination through the real binary: a test CA made here with rcgen, HTTPS to an HTTP/1.1
//! upstream, ALPN (h2 and http/1.1), certificate reload without dropping open connections,
//! bad certificate files keeping the old certificate, and plain HTTP sent to the TLS port.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, as PEM, and the DER the server should present.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `localhost` and 127.0.0.1 with its own key, subject CN and serial.
    fn leaf(&self, cn: &str, serial: u64) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(serial.into());
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

impl Leaf {
    fn write(&self, dir: &TempDir) {
        std::fs::write(dir.path("cert.pem"), &self.cert_pem).unwrap();
        std::fs::write(dir.path("key.pem"), &self.key_pem).unwrap();
    }
}

/// A gateway serving TLS from `certs` (absolute paths), routing everything to `up`.
fn tls_config(certs: &TempDir, up: SocketAddr) -> String {
    let tls = format!(
        "tls = {{ cert_file = {:?}, key_file = {:?}, reload_interval = \"100ms\" }}",
        certs.path("cert.pem").display().to_string(),
        certs.path("key.pem").display().to_string()
    );
    let base = BASE.replace("workers = 2", &format!("workers = 2\n{tls}"));
    format!("{base}\n[[route]]\nauth = \"none\"\nname = \"app\"\npath = \"/\"\nupstream = \"http://{up}\"\n")
}

/// A client that trusts only `ca`, offering `alpn` (in order; empty offers none).
fn client(ca: CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    client_trusting(&[ca], alpn)
}

fn client_trusting(cas: &[CertificateDer<'static>], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every handshake is a full one, so the certificate seen is the one the server presents now
    // (a resumed TLS 1.3 session reports the certificate of the session it resumes).
    cfg.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(cfg))
}

async fn connect(connector: &TlsConnector, addr: SocketAddr, name: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// The leaf certificate the server presented on `tls`.
fn presented(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().expect("server presented no certificate")[0].clone().into_owned()
}

type H1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// An HTTP/1.1 client connection over `tls`; the connection task runs until it closes.
async fn h1(tls: TlsStream<TcpStream>) -> H1 {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// GET `path` on an HTTP/1.1 connection; returns status, version and the echoed JSON.
async fn get_h1(sender: &mut H1, path: &str) -> (StatusCode, Version, serde_json::Value) {
    sender.ready().await.expect("connection closed");
    let req = Request::get(path).header("host", "localhost").body(Empty::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("no response in 10 s")
        .expect("request failed");
    let (status, version) = (resp.status(), resp.version());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, version, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

/// The value of a counter line (`name{labels} value`) in the admin `/metrics`, 0 when absent.
fn counter(gw: &Gateway, series: &str) -> f64 {
    let body = tokio::task::block_in_place(|| admin(gw, "/metrics").body);
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

const RELOAD_OK: &str = r#"tollgate_tls_reloads_total{outcome="ok"}"#;
const RELOAD_ERR: &str = r#"tollgate_tls_reloads_total{outcome="error"}"#;

/// HTTPS is terminated with the configured certificate: a client trusting only the test CA
/// verifies it by DNS name and by IP SAN, gets 200 from the upstream, and the upstream sees
/// `X-Forwarded-Proto: https`. A client that does not trust the CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_terminated_with_the_configured_certificate() {
    let ca = Ca::new("tollgate test CA");
    let leaf = ca.leaf("tollgate-a", 1);
    let certs = TempDir::new("tls-certs");
    leaf.write(&certs);
    let up = echo_upstream().await;
    let gw = Gateway::start(&tls_config(&certs, up));
    let connector = client(ca.der(), &[b"http/1.1"]);

    for name in ["localhost", "127.0.0.1"] {
        let tls = connect(&connector, gw.addr, name).await.unwrap_or_else(|e| panic!("handshake as {name}: {e}"));
        assert_eq!(presented(&tls), leaf.der, "{name}");
        let mut sender = h1(tls).await;
        let (status, version, j) = get_h1(&mut sender, "/secure?x=1").await;
        assert_eq!(status, 200, "{name}: {j}");
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(j["uri"], "/secure?x=1");
        assert_eq!(j["headers"]["x-forwarded-proto"], serde_json::json!(["https"]), "{j}");
    }

    // a client trusting another CA fails the handshake
    let stranger = client(Ca::new("some other CA").der(), &[]);
    let Err(err) = connect(&stranger, gw.addr, "localhost").await else { panic!("untrusted certificate was accepted") };
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// A client offering `suites` (in its order), TLS `versions`, session resumption on (its own
/// in-memory cache, so its next handshake to the same name resumes).
fn client_offering(
    ca: CertificateDer<'static>,
    suites: &[rustls::SupportedCipherSuite],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = suites.to_vec();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(cfg))
}

/// The cipher suite is the server's choice, AES-128-GCM first, whatever AES order the client
/// offers (TLS 1.3 and 1.2); a client that puts ChaCha20-Poly1305 first keeps it; a client
/// offering only AES-256-GCM gets it. Sessions resume across the two orders (one cache): a
/// second connection is resumed, and a request goes through on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_suites_prefer_aes128_unless_the_client_prefers_chacha20() {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    use rustls::CipherSuite as S;
    let ca = Ca::new("tollgate test CA");
    let certs = TempDir::new("tls-certs");
    ca.leaf("tollgate-a", 1).write(&certs);
    let up = echo_upstream().await;
    let gw = Gateway::start(&tls_config(&certs, up));
    let (v13, v12): (&[&'static rustls::SupportedProtocolVersion], _) =
        (&[&rustls::version::TLS13], &[&rustls::version::TLS12]);
    let cases = [
        (
            vec![cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_CHACHA20_POLY1305_SHA256],
            v13,
            S::TLS13_AES_128_GCM_SHA256,
        ),
        (
            vec![cs::TLS13_CHACHA20_POLY1305_SHA256, cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256],
            v13,
            S::TLS13_CHACHA20_POLY1305_SHA256,
        ),
        (vec![cs::TLS13_AES_256_GCM_SHA384], v13, S::TLS13_AES_256_GCM_SHA384),
        (
            vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
            v12,
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            vec![cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
            v12,
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ];
    for (suites, versions, want) in cases {
        let connector = client_offering(ca.der(), &suites, versions);
        for round in ["first", "resumed"] {
            let tls = connect(&connector, gw.addr, "localhost").await.unwrap();
            let session = tls.get_ref().1;
            let got = session.negotiated_cipher_suite().map(|s| s.suite());
            assert_eq!(got, Some(want), "offered {suites:?}, {round} connection");
            let kind = session.handshake_kind();
            let resumed = kind == Some(rustls::HandshakeKind::Resumed);
            assert_eq!(resumed, round == "resumed", "offered {suites:?}: {round} connection was {kind:?}");
            let mut sender = h1(tls).await;
            assert_eq!(get_h1(&mut sender, "/s").await.0, 200, "{want:?}");
        }
    }
}

/// ALPN: offering h2 negotiates HTTP/2, and an HTTP/2 request over TLS reaches the HTTP/1.1
/// upstream; offering only http/1.1 (or no ALPN at all) gets HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_selects_http2_or_http1() {
    let ca = Ca::new("tollgate test CA");
    let certs = TempDir::new("tls-certs");
    ca.leaf("tollgate-a", 1).write(&certs);
    let up = echo_upstream().await;
    let gw = Gateway::start(&tls_config(&certs, up));

    let tls = connect(&client(ca.der(), &[b"h2", b"http/1.1"]), gw.addr, "localhost").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    for i in 0..2 {
        let req = Request::post(format!("https://localhost/over-h2?i={i}"))
            .body(http_body_util::Full::new(Bytes::from_static(b"h2 body")))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), Version::HTTP_2);
        let j: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(j["version"], "HTTP/1.1", "the upstream speaks HTTP/1.1: {j}");
        assert_eq!(j["uri"], format!("/over-h2?i={i}"));
        assert_eq!(j["body"], "h2 body");
        assert_eq!(j["headers"]["x-forwarded-proto"][0], "https");
        assert_eq!(j["headers"]["x-forwarded-host"][0], "localhost");
    }

    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let tls = connect(&client(ca.der(), alpn), gw.addr, "localhost").await.unwrap();
        let want = if alpn.is_empty() { None } else { Some(&b"http/1.1"[..]) };
        assert_eq!(tls.get_ref().1.alpn_protocol(), want);
        let mut sender = h1(tls).await;
        let (status, version, j) = get_h1(&mut sender, "/over-h1").await;
        assert_eq!((status, version), (StatusCode::OK, Version::HTTP_11), "{j}");
        assert_eq!(j["headers"]["x-forwarded-proto"][0], "https");
    }
}

/// Polls new handshakes (bounded) until the server presents `want`.
async fn wait_for_certificate(connector: &TlsConnector, addr: SocketAddr, want: &CertificateDer<'_>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tls = connect(connector, addr, "localhost").await.expect("handshake during reload");
        if presented(&tls) == *want {
            return;
        }
        assert!(Instant::now() < deadline, "the new certificate was not presented within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/metrics` (bounded) until `series` exceeds `above`; returns its value.
async fn wait_for_counter(gw: &Gateway, series: &str, above: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = counter(gw, series);
        if v > above {
            return v;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {v} for 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replacing the certificate files is picked up by new handshakes while an open keep-alive
/// connection keeps working; the reload is counted. Garbage in the certificate file is
/// refused: the previous certificate keeps serving and the failure is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reloads_without_dropping_connections() {
    let ca = Ca::new("tollgate test CA");
    let first = ca.leaf("tollgate-first", 1);
    let certs = TempDir::new("tls-certs");
    first.write(&certs);
    let up = echo_upstream().await;
    let gw = Gateway::start(&tls_config(&certs, up));
    let connector = client(ca.der(), &[b"http/1.1"]);

    let old = connect(&connector, gw.addr, "localhost").await.unwrap();
    assert_eq!(presented(&old), first.der);
    let mut old = h1(old).await;
    assert_eq!(get_h1(&mut old, "/before").await.0, 200);
    assert_eq!(counter(&gw, RELOAD_OK), 0.0, "nothing changed yet");

    // a new certificate from a new CA, with a new key, subject and serial
    let ca2 = Ca::new("tollgate second CA");
    let second = ca2.leaf("tollgate-second", 2);
    second.write(&certs);
    let both = client_trusting(&[ca.der(), ca2.der()], &[b"http/1.1"]);
    wait_for_certificate(&both, gw.addr, &second.der).await;
    // only the new CA verifies new handshakes now
    let connector2 = client(ca2.der(), &[b"http/1.1"]);
    assert!(connect(&connector, gw.addr, "localhost").await.is_err(), "old certificate still presented");
    assert_eq!(presented(&connect(&connector2, gw.addr, "localhost").await.unwrap()), second.der);

    let (status, _, j) = get_h1(&mut old, "/after").await;
    assert_eq!(status, 200, "the connection opened before the reload must still work");
    assert_eq!(j["uri"], "/after");
    assert!(counter(&gw, RELOAD_OK) >= 1.0);

    // garbage: counted as an error, and the second certificate keeps serving
    let errors_before = counter(&gw, RELOAD_ERR);
    let ok_before = counter(&gw, RELOAD_OK);
    std::fs::write(certs.path("cert.pem"), "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n").unwrap();
    wait_for_counter(&gw, RELOAD_ERR, errors_before).await;
    for _ in 0..3 {
        let tls = connect(&connector2, gw.addr, "localhost").await.expect("handshake after a bad reload");
        assert_eq!(presented(&tls), second.der);
        let mut s = h1(tls).await;
        assert_eq!(get_h1(&mut s, "/still-serving").await.0, 200);
    }
    assert_eq!(counter(&gw, RELOAD_OK), ok_before, "garbage must not count as a reload");
    assert_eq!(get_h1(&mut old, "/after-garbage").await.0, 200);
    gw.wait_log("TLS certificate reload failed");

    // fixing the files recovers
    first.write(&certs);
    wait_for_certificate(&both, gw.addr, &first.der).await;
    wait_for_counter(&gw, RELOAD_OK, ok_before).await;
}

/// Reads until EOF or error, bounded; returns what arrived, or None when the deadline passed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    read.ok().map(|_| buf)
}

/// Plain HTTP sent to the TLS port gets no HTTP response: the connection is closed promptly,
/// the process keeps running, and TLS clients are still served afterwards. A connection that
/// never sends a ClientHello is closed at the header read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_closed() {
    let ca = Ca::new("tollgate test CA");
    let certs = TempDir::new("tls-certs");
    ca.leaf("tollgate-a", 1).write(&certs);
    let up = echo_upstream().await;
    let cfg = tls_config(&certs, up).replace("workers = 2", "workers = 2\nheader_read_timeout = \"1s\"");
    let mut gw = Gateway::start(&cfg);

    for _ in 0..3 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let got = read_until_closed(&mut s, Duration::from_secs(5)).await.expect("connection left open for 5 s");
        assert!(!got.starts_with(b"HTTP/"), "plain HTTP answered: {:?}", String::from_utf8_lossy(&got));
    }
    assert!(gw.child.try_wait().unwrap().is_none(), "the gateway exited");

    // a client that connects and never starts the handshake is cut at the header read timeout
    let started = Instant::now();
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let got = read_until_closed(&mut silent, Duration::from_secs(5)).await.expect("silent connection left open");
    assert!(got.is_empty());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(4), "closed after {took:?}");

    let tls = connect(&client(ca.der(), &[]), gw.addr, "localhost").await.unwrap();
    let mut sender = h1(tls).await;
    let (status, _, j) = get_h1(&mut sender, "/after-plain").await;
    assert_eq!(status, 200);
    assert_eq!(j["headers"]["x-forwarded-proto"][0], "https");
}

/// An HTTPS upstream that only a client certificate from `client_ca` may reach, trusted
/// through a CA that is not in the webpki roots. Returns its address.
async fn mtls_upstream(server: &Leaf, client_ca: &Ca) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.der()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(full("hello over mutual TLS")))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    addr
}

/// HTTPS upstreams: a private CA from `[upstream] ca_file`, and a client certificate from
/// `client_cert_file`/`client_key_file` for upstreams that require one. Without either, 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_a_private_ca_and_a_client_certificate() {
    let server_ca = Ca::new("upstream CA");
    let client_ca = Ca::new("client CA");
    let up = mtls_upstream(&server_ca.leaf("upstream", 10), &client_ca).await;
    let files = TempDir::new("mtls");
    let client = client_ca.leaf("tollgate", 11);
    std::fs::write(files.path("ca.pem"), server_ca.issuer.pem()).unwrap();
    std::fs::write(files.path("client.pem"), &client.cert_pem).unwrap();
    std::fs::write(files.path("client.key"), &client.key_pem).unwrap();
    let path = |name: &str| files.path(name).display().to_string();
    let gateway = |upstream_section: &str| {
        Gateway::start(&format!(
            "{BASE}\n{upstream_section}\n[[route]]\nauth = \"none\"\nname = \"secure\"\npath = \"/\"\nupstream = \"https://localhost:{}\"\n",
            up.port()
        ))
    };

    let full_setup = gateway(&format!(
        "[upstream]\nca_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}",
        path("ca.pem"),
        path("client.pem"),
        path("client.key")
    ));
    let r = get(full_setup.addr, "/", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "hello over mutual TLS");

    let no_client_cert = gateway(&format!("[upstream]\nca_file = {:?}", path("ca.pem")));
    let r = get(no_client_cert.addr, "/", &[]);
    assert_eq!(r.status, 502, "the upstream requires a client certificate: {r:?}");
    assert!(r.body.contains("route secure"), "{}", r.body);

    let untrusted = gateway("");
    let r = get(untrusted.addr, "/", &[]);
    assert_eq!(r.status, 502, "the private CA is not in the webpki roots: {r:?}");
}
