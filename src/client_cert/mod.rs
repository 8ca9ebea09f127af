//! Client certificates for certificate-bound access tokens (RFC 8705 §3): the SHA-256
//! thumbprint of the client's end-entity certificate, where it comes from (the TLS connection,
//! or a header set by a trusted proxy that terminated TLS), and the client CA that verifies
//! certificates presented to tollgate itself.
//!
//! A leaf module (rustls, http and aws-lc-rs only), so configuration checks and the request
//! path both use it without depending on each other.
//!
//! Where a request's certificate comes from, in order:
//! 1. the certificate the client presented in tollgate's own TLS handshake (first-hand: it was
//!    verified against `server.tls.client_ca_file` and the client proved it holds the key);
//! 2. otherwise, when the peer is one of `server.trusted_proxies` and `server.client_cert_header`
//!    is configured, that header ([`header`]); a malformed header is no certificate at all,
//!    never a fallback to something else;
//! 3. otherwise none.
//!
//! The thumbprint is computed once per connection; the header is read only when a token bound
//! to a certificate is presented, so requests with unbound tokens never pay for it.

pub mod header;

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderMap, HeaderName};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use header::HeaderError;

/// The SHA-256 of a certificate's DER encoding: what `cnf["x5t#S256"]` carries (base64url).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thumbprint([u8; 32]);

impl Thumbprint {
    pub fn of_der(der: &[u8]) -> Thumbprint {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Thumbprint(out)
    }

    /// From `x5t#S256`: base64url without padding of exactly 32 bytes (RFC 8705 §3.1). Padded
    /// or standard-alphabet forms are refused: the claim has one spelling.
    pub fn from_base64url(s: &str) -> Option<Thumbprint> {
        if s.len() != 43 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(Thumbprint(bytes.try_into().ok()?))
    }

    /// From Envoy's `Hash=`: 64 hex digits, either case.
    pub fn from_hex(s: &str) -> Option<Thumbprint> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Thumbprint(out))
    }

    pub fn to_base64url(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl std::fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Thumbprint({})", self.to_base64url())
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The thumbprint of the end-entity certificate a TLS client presented (the first of its
/// chain), if any. Called once per connection, after the handshake.
pub fn of_chain(chain: Option<&[CertificateDer<'_>]>) -> Option<Thumbprint> {
    chain?.first().map(|c| Thumbprint::of_der(c))
}

/// How a proxy encodes the client certificate in `server.client_cert_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFormat {
    /// Envoy's `x-forwarded-client-cert`: the first element's `Hash=` or `Cert=`.
    Xfcc,
    /// A URL-encoded PEM certificate (nginx `$ssl_client_escaped_cert`).
    Pem,
}

/// `server.client_cert_header`: the header a trusted proxy passes the client certificate in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertHeader {
    pub name: HeaderName,
    pub format: HeaderFormat,
}

/// What a request says about its client certificate, built per request from what the
/// connection already knows; nothing is parsed until [`Presented::thumbprint`] is asked.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'r> {
    /// By reference: this travels in every bearer request's future, so it stays three words.
    conn: Option<&'r Thumbprint>,
    /// The configured header and the request's headers, only when the peer is a trusted proxy.
    header: Option<(&'r CertHeader, &'r HeaderMap)>,
}

impl<'r> Presented<'r> {
    /// No certificate can be known (a caller without a connection, such as a test).
    pub const NONE: Presented<'static> = Presented { conn: None, header: None };

    /// `trusted_header`: the configured header and the request's headers, given only when the
    /// peer is a trusted proxy.
    pub fn new(conn: Option<&'r Thumbprint>, trusted_header: Option<(&'r CertHeader, &'r HeaderMap)>) -> Presented<'r> {
        Presented { conn, header: trusted_header }
    }

    /// The request's client certificate: the connection's when it has one, else the trusted
    /// proxy's header. `Ok(None)`: no certificate; `Err`: a header that cannot be read, which
    /// a bound token must never pass on.
    pub fn thumbprint(&self) -> Result<Option<Thumbprint>, HeaderError> {
        if let Some(t) = self.conn {
            return Ok(Some(*t));
        }
        match self.header {
            Some((h, headers)) => header::read(headers, h),
            None => Ok(None),
        }
    }
}

/// `server.tls.client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    /// Clients may connect without a certificate; one they present must verify.
    Optional,
    /// A handshake without a verifying certificate fails.
    Required,
}

/// The verifier for client certificates from the CA certificates in `ca_file` (PEM). Used at
/// start and by `tollgate check`, so a file rustls would refuse fails the check.
pub fn verifier(ca_file: &Path, mode: ClientCertMode) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| format!("{}: invalid PEM: {e}", ca_file.display()))?;
        roots.add(cert).map_err(|e| format!("{}: certificate {} is not a usable CA: {e}", ca_file.display(), i + 1))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CERTIFICATE block found", ca_file.display()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match mode {
        ClientCertMode::Optional => builder.allow_unauthenticated(),
        ClientCertMode::Required => builder,
    };
    builder.build().map_err(|e| format!("{}: {e}", ca_file.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_encodings() {
        let t = Thumbprint::of_der(b"certificate");
        let b64 = t.to_base64url();
        assert_eq!(b64.len(), 43);
        assert_eq!(Thumbprint::from_base64url(&b64), Some(t));
        assert_eq!(Thumbprint::from_base64url(&format!("{b64}=")), None, "padding");
        assert_eq!(Thumbprint::from_base64url(&b64.replace(['-', '_'], "+")), None, "standard alphabet");
        assert_eq!(Thumbprint::from_base64url(&b64[..42]), None);
        let hex = crate::util::hex(&t.0);
        assert_eq!(Thumbprint::from_hex(&hex), Some(t));
        assert_eq!(Thumbprint::from_hex(&hex.to_ascii_uppercase()), Some(t));
        assert_eq!(Thumbprint::from_hex(&hex[..62]), None);
        assert_eq!(Thumbprint::from_hex(&format!("{}zz", &hex[..62])), None);
        assert_eq!(Thumbprint::from_hex(&format!("+{}", &hex[1..])), None);
    }

    #[test]
    fn connection_wins_over_the_header() {
        let conn = Thumbprint::of_der(b"conn");
        let header = Thumbprint::of_der(b"header");
        let h = CertHeader { name: HeaderName::from_static("x-forwarded-client-cert"), format: HeaderFormat::Xfcc };
        let mut headers = HeaderMap::new();
        let value = format!("Hash={}", crate::util::hex(&header.0));
        headers.insert(h.name.clone(), value.parse().unwrap());
        assert_eq!(Presented::new(Some(&conn), Some((&h, &headers))).thumbprint(), Ok(Some(conn)));
        assert_eq!(Presented::new(None, Some((&h, &headers))).thumbprint(), Ok(Some(header)));
        assert_eq!(Presented::new(None, None).thumbprint(), Ok(None), "an untrusted peer's header is never read");
        assert_eq!(Presented::NONE.thumbprint(), Ok(None));
    }
}
