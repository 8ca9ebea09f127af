//! TLS with rustls and the aws-lc-rs provider: server certificates that reload when their files
//! change (without touching open connections), and the client configuration for HTTPS upstreams.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsFiles, UpstreamClient};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    /// rustls refused the key or configuration.
    #[error("{context}: {source}")]
    Rustls {
        context: String,
        #[source]
        source: rustls::Error,
    },
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The serving certificate, swapped atomically on reload; handshakes read it without locks.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
    files: TlsFiles,
    /// The file contents last loaded, to notice changes whatever the file system's mtime says.
    loaded: std::sync::Mutex<(Vec<u8>, Vec<u8>)>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ReloadingCert {
    pub fn load(files: &TlsFiles) -> Result<Arc<ReloadingCert>, TlsError> {
        let (cert_pem, key_pem) = read_pair(&files.cert_file, &files.key_file)?;
        let key = certified_key(&cert_pem, &key_pem, files)?;
        Ok(Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(key),
            files: files.clone(),
            loaded: std::sync::Mutex::new((cert_pem, key_pem)),
        }))
    }

    /// Reads the files again; swaps in the new pair when they changed and parse. Returns
    /// `Ok(true)` on a swap. A bad new pair keeps the old certificate serving.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = read_pair(&self.files.cert_file, &self.files.key_file)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(false);
        }
        let key = certified_key(&cert_pem, &key_pem, &self.files)?;
        self.current.store(Arc::new(key));
        *loaded = (cert_pem, key_pem);
        Ok(true)
    }

    /// Polls the files every `reload_interval` until the runtime stops.
    pub async fn watch(self: Arc<Self>, metrics: Metrics) {
        let mut tick = tokio::time::interval(self.files.reload_interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.reload() {
                Ok(false) => {}
                Ok(true) => {
                    metrics.tls_reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    metrics.tls_reloads.with_label_values(&["error"]).inc();
                    tracing::warn!(error = %e, "TLS certificate reload failed; still serving the previous certificate");
                }
            }
        }
    }
}

/// Idle time before TCP keepalive probes on outgoing connections (identity providers and
/// upstreams), so that a peer that vanished is noticed.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The connector for calls to identity providers (upstreams have their own pool, see
/// `upstream::proxy`): rustls
/// with `tls`, HTTP/1.1, Nagle off, TCP keepalive, a connect timeout.
pub fn https_connector(
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
) -> hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(TCP_KEEPALIVE));
    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http)
}

/// The server's TLS, one configuration per connection chosen from its ClientHello: HTTP/2 and
/// HTTP/1.1 by ALPN; with `server.tls.client_ca_file`, client certificates asked for and
/// verified (read once, at start).
///
/// The cipher suite is the server's choice, AES-128-GCM first (as Go and BoringSSL do on a
/// machine with AES instructions): a TLS 1.3 handshake runs its key schedule with the suite's
/// hash, and SHA-256, which x86 and ARM CPUs compute in hardware, costs a fraction of
/// SHA-384 (about 14 % of a resumed handshake's CPU here; README "Performance"). A client
/// whose first choice is ChaCha20-Poly1305, the mark of a device without AES hardware, keeps
/// its own order. Both configurations share one session cache, so a session resumes whichever
/// serves the next connection.
#[derive(Clone)]
pub struct ServerTls {
    /// The server's order.
    ours: Arc<rustls::ServerConfig>,
    /// The client's order.
    theirs: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    pub fn new(resolver: Arc<ReloadingCert>) -> Result<ServerTls, TlsError> {
        let mut theirs = server_config(resolver)?;
        let mut ours = theirs.clone();
        ours.ignore_client_order = true;
        theirs.ignore_client_order = false;
        Ok(ServerTls { ours: Arc::new(ours), theirs: Arc::new(theirs) })
    }

    /// The TLS handshake on `stream` (not bounded here: the caller times it).
    pub async fn accept<IO>(&self, stream: IO) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        let config = self.for_suites(start.client_hello().cipher_suites());
        start.into_stream(config).await
    }

    /// The configuration for a client offering `suites`, in its order of preference.
    fn for_suites(&self, suites: &[rustls::CipherSuite]) -> Arc<rustls::ServerConfig> {
        let supported = &self.ours.crypto_provider().cipher_suites;
        let first = suites.iter().find(|s| supported.iter().any(|ours| ours.suite() == **s));
        use rustls::CipherSuite as S;
        match first {
            Some(
                S::TLS13_CHACHA20_POLY1305_SHA256
                | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ) => self.theirs.clone(),
            _ => self.ours.clone(),
        }
    }
}

/// The server configuration both of [`ServerTls`]'s share (the client's suite order).
fn server_config(resolver: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(server_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls { context: "TLS server protocol versions".into(), source })?;
    let builder = match &resolver.files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = crate::client_cert::verifier(ca, resolver.files.client_auth)
                .map_err(|what| TlsError::Pem { path: ca.clone(), what })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// aws-lc-rs's default suites with the AES-128-GCM ones moved first (a stable sort: the rest
/// keep their order). A handshake only ever chooses among the suites of its TLS version and
/// its certificate's key type, so within each of those it is AES-128, AES-256, ChaCha20.
fn server_provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite as S;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            S::TLS13_AES_128_GCM_SHA256
                | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// The client config for HTTPS upstreams: webpki roots plus an optional CA file, and an
/// optional client certificate.
pub fn client_config(cfg: &UpstreamClient) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(ca) = &cfg.ca_file {
        let pem = read(ca)?;
        let certs = certs(&pem, ca)?;
        for cert in certs {
            roots.add(cert).map_err(|source| TlsError::Rustls {
                context: format!("CA certificate in {}", ca.display()),
                source,
            })?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls { context: "TLS client protocol versions".into(), source })?
        .with_root_certificates(roots);
    match &cfg.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_file, key_file)) => {
            let (cert_pem, key_pem) = read_pair(cert_file, key_file)?;
            let chain = certs(&cert_pem, cert_file)?;
            let key = private_key(&key_pem, key_file)?;
            builder.with_client_auth_cert(chain, key).map_err(|source| TlsError::Rustls {
                context: format!("client certificate {}", cert_file.display()),
                source,
            })
        }
    }
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8], files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = certs(cert_pem, &files.cert_file)?;
    let key = private_key(key_pem, &files.key_file)?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::Rustls { context: format!("private key {}", files.key_file.display()), source })?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|source| TlsError::Rustls {
        context: format!("{} and {}", files.cert_file.display(), files.key_file.display()),
        source,
    })?;
    Ok(certified)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    Ok((read(cert)?, read(key)?))
}

fn certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), what: format!("invalid PEM: {e}") })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_path_buf(), what: "no CERTIFICATE block found".into() });
    }
    Ok(certs)
}

fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), what: format!("no usable private key: {e}") })
}
