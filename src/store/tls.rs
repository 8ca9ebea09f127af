//! The client TLS settings for `rediss://`: the CA file's certificates when one is set (a
//! private Redis is trusted through its own CA alone), the webpki roots otherwise. Server names
//! are always verified: the certificate must name the host tollgate connects to (for a primary
//! found through Sentinel, the address the sentinels give).

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The certificates in a PEM file's contents; an error names what is wrong.
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> =
        CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(certs)
}

/// The rustls client configuration; `ca_pem` is the CA file's contents.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = match ca_pem {
        None => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in ca_certificates(pem)? {
                roots.add(cert).map_err(|e| format!("CA certificate: {e}"))?;
            }
            roots
        }
    };
    let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
