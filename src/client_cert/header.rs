//! The client certificate as a TLS-terminating proxy passes it on: Envoy's
//! `x-forwarded-client-cert` (XFCC) or a URL-encoded PEM certificate (nginx
//! `$ssl_client_escaped_cert`). Only ever read from a trusted proxy (see the parent module).
//!
//! XFCC (Envoy's `config/http/http_conn_man/headers`): comma-separated elements, one per proxy
//! that added one; each element `;`-separated `Key=Value` pairs, keys case-insensitive, values
//! double-quoted when they hold `,`, `;` or `=`, with `\"` for a quote inside. `Hash` is the
//! hex SHA-256 of the client certificate's DER, `Cert` the URL-encoded PEM certificate.
//!
//! **The client's element is the first**: the edge proxy, the one the client's TLS connection
//! ended at, writes it; proxies after it append their own after a comma. So the edge proxy must
//! replace whatever XFCC the client sent (Envoy `forward_client_cert_details: SANITIZE_SET`),
//! or a client could put its own first element in front.
//!
//! Fail closed: anything this parser cannot read with certainty (a syntax error anywhere in the
//! header, `Hash` or `Cert` twice in the client's element, `Hash` and `Cert` naming different
//! certificates, a first element with neither, a PEM value that is not exactly one
//! certificate, a PEM header repeated) is an error, and a certificate-bound token never passes
//! on it. A header that is absent or empty is no certificate.

use http::header::{HeaderMap, HeaderValue};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{CertHeader, HeaderFormat, Thumbprint};

/// Why a client certificate header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header does not follow its format.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The header could mean more than one certificate.
    #[error("ambiguous: {0}")]
    Ambiguous(&'static str),
}

/// The thumbprint in `h`'s header of `headers`: `Ok(None)` when absent or empty.
pub fn read(headers: &HeaderMap, h: &CertHeader) -> Result<Option<Thumbprint>, HeaderError> {
    let mut lines = headers.get_all(&h.name).iter();
    let Some(first) = lines.next() else { return Ok(None) };
    match h.format {
        HeaderFormat::Pem => {
            if lines.next().is_some() {
                return Err(HeaderError::Ambiguous("the certificate header is repeated"));
            }
            pem(first.as_bytes())
        }
        HeaderFormat::Xfcc => xfcc(headers.get_all(&h.name).iter()),
    }
}

/// A URL-encoded PEM certificate (`+` is a literal plus: base64 has it, and nginx does not
/// escape it as a form encoder would).
pub fn pem(value: &[u8]) -> Result<Option<Thumbprint>, HeaderError> {
    let text = std::str::from_utf8(value).map_err(|_| HeaderError::Malformed("not ASCII"))?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let decoded = crate::util::percent_decode(text, false).ok_or(HeaderError::Malformed("invalid percent-encoding"))?;
    // Exactly one PEM block: the PEM reader skips other sections, and reads a BEGIN line inside
    // an open section as a restart that keeps the lines before it (found by the
    // `client_cert_header` fuzz target).
    if decoded.split(['\n', '\r']).filter(|l| l.starts_with("-----BEGIN ")).count() > 1 {
        return Err(HeaderError::Ambiguous("more than one PEM block"));
    }
    let mut certs = CertificateDer::pem_slice_iter(decoded.as_bytes());
    let cert = match certs.next() {
        Some(Ok(c)) => c,
        Some(Err(_)) => return Err(HeaderError::Malformed("invalid PEM")),
        None => return Err(HeaderError::Malformed("no PEM CERTIFICATE block")),
    };
    if certs.next().is_some() {
        return Err(HeaderError::Ambiguous("more than one certificate"));
    }
    Ok(Some(Thumbprint::of_der(&cert)))
}

/// Every line of an XFCC header (several lines are one list, as HTTP joins them with commas).
pub fn xfcc<'a>(lines: impl Iterator<Item = &'a HeaderValue>) -> Result<Option<Thumbprint>, HeaderError> {
    let mut client: Option<Element> = None;
    let mut any = false;
    for line in lines {
        let mut s = Scan { s: line.as_bytes(), i: 0 };
        s.skip_ows();
        if s.done() {
            continue;
        }
        loop {
            let element = s.element(client.is_none())?;
            any = true;
            client.get_or_insert(element);
            s.skip_ows();
            if s.done() {
                break;
            }
            s.expect(b',')?;
            s.skip_ows();
        }
    }
    match client {
        None if !any => Ok(None),
        None => Err(HeaderError::Malformed("no element")),
        Some(e) => e.thumbprint(),
    }
}

/// The parts of the client's element that name its certificate.
#[derive(Default)]
struct Element {
    hash: Option<Thumbprint>,
    cert: Option<Thumbprint>,
}

impl Element {
    fn thumbprint(self) -> Result<Option<Thumbprint>, HeaderError> {
        match (self.hash, self.cert) {
            (Some(h), Some(c)) if h != c => Err(HeaderError::Ambiguous("Hash and Cert name different certificates")),
            (Some(t), _) | (None, Some(t)) => Ok(Some(t)),
            (None, None) => Err(HeaderError::Malformed("the first element has neither Hash nor Cert")),
        }
    }
}

/// The keys that name the certificate (keys are case-insensitive).
enum Key {
    Hash,
    Cert,
    Other,
}

struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), HeaderError> {
        match self.peek() {
            Some(c) if c == b => {
                self.i += 1;
                Ok(())
            }
            _ => Err(HeaderError::Malformed("expected a separator")),
        }
    }

    /// One element; `keep`: this is the client's, so its `Hash` and `Cert` are read.
    fn element(&mut self, keep: bool) -> Result<Element, HeaderError> {
        let mut e = Element::default();
        loop {
            self.skip_ows();
            let key = self.key()?;
            self.expect(b'=')?;
            let value = self.value()?;
            match key {
                _ if !keep => {}
                Key::Hash => {
                    let t = Thumbprint::from_hex(&value).ok_or(HeaderError::Malformed("Hash is not 64 hex digits"))?;
                    set_once(&mut e.hash, t, "Hash appears twice")?;
                }
                Key::Cert => {
                    let t = pem(value.as_bytes())?.ok_or(HeaderError::Malformed("Cert is empty"))?;
                    set_once(&mut e.cert, t, "Cert appears twice")?;
                }
                Key::Other => {}
            }
            self.skip_ows();
            match self.peek() {
                Some(b';') => self.i += 1,
                _ => return Ok(e),
            }
        }
    }

    fn key(&mut self) -> Result<Key, HeaderError> {
        let start = self.i;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            self.i += 1;
        }
        let key = &self.s[start..self.i];
        Ok(match key {
            [] => return Err(HeaderError::Malformed("expected a key")),
            k if k.eq_ignore_ascii_case(b"hash") => Key::Hash,
            k if k.eq_ignore_ascii_case(b"cert") => Key::Cert,
            _ => Key::Other,
        })
    }

    /// A plain value (up to `,` or `;`, no `=`, `"` or `\`) or a quoted one with `\` escapes.
    fn value(&mut self) -> Result<String, HeaderError> {
        let mut out = Vec::new();
        if self.peek() == Some(b'"') {
            self.i += 1;
            loop {
                match self.peek() {
                    None => return Err(HeaderError::Malformed("unterminated quoted value")),
                    Some(b'"') => {
                        self.i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let escaped = self.s.get(self.i + 1).ok_or(HeaderError::Malformed("dangling escape"))?;
                        out.push(*escaped);
                        self.i += 2;
                    }
                    Some(b) => {
                        out.push(b);
                        self.i += 1;
                    }
                }
            }
        } else {
            while let Some(b) = self.peek().filter(|b| !matches!(b, b',' | b';')) {
                if matches!(b, b'=' | b'"' | b'\\') {
                    return Err(HeaderError::Malformed("'=', '\"' or '\\' in an unquoted value"));
                }
                out.push(b);
                self.i += 1;
            }
            while out.last().is_some_and(|b| matches!(b, b' ' | b'\t')) {
                out.pop();
            }
        }
        String::from_utf8(out).map_err(|_| HeaderError::Malformed("not UTF-8"))
    }
}

fn set_once(slot: &mut Option<Thumbprint>, t: Thumbprint, twice: &'static str) -> Result<(), HeaderError> {
    match slot {
        Some(_) => Err(HeaderError::Ambiguous(twice)),
        None => {
            *slot = Some(t);
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A real certificate (made with rcgen), its PEM URL-encoded as nginx and Envoy do.
    fn cert() -> (Thumbprint, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["client.test".into()]).unwrap().self_signed(&key).unwrap();
        (Thumbprint::of_der(c.der()), url_encode(&c.pem()))
    }

    fn url_encode(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    fn x(lines: &[&str]) -> Result<Option<Thumbprint>, HeaderError> {
        let values: Vec<HeaderValue> = lines.iter().map(|l| HeaderValue::from_str(l).unwrap()).collect();
        xfcc(values.iter())
    }

    fn hex(t: Thumbprint) -> String {
        crate::util::hex(&t.0)
    }

    #[test]
    fn xfcc_reads_the_first_elements_hash_or_cert() {
        let (t, pem) = cert();
        let (other, other_pem) = cert();
        let h = hex(t);
        assert_eq!(x(&[&format!("Hash={h}")]), Ok(Some(t)));
        assert_eq!(x(&[&format!("hash={}", h.to_uppercase())]), Ok(Some(t)), "keys and hex are case-insensitive");
        // Envoy's documented shape: By, Hash, a quoted Subject with , ; = inside, URI, DNS twice.
        let envoy = format!(
            "By=spiffe://lyft.com/frontend;Hash={h};Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft,x;y=z/CN=\\\"Test\\\" Client\";URI=spiffe://lyft.com/test;DNS=a.test;DNS=b.test"
        );
        assert_eq!(x(&[&envoy]), Ok(Some(t)));
        assert_eq!(x(&[&format!("By=x;Cert=\"{pem}\"")]), Ok(Some(t)), "quoted Cert");
        assert_eq!(x(&[&format!("Cert={pem};Hash={h}")]), Ok(Some(t)), "Cert and Hash agreeing");
        // The first element is the client's; later ones (proxies after the edge) are checked
        // for syntax only.
        assert_eq!(x(&[&format!("Hash={h},By=proxy;Hash={}", hex(other))]), Ok(Some(t)));
        assert_eq!(x(&[&format!("Hash={h}, Hash={}", hex(other))]), Ok(Some(t)), "space after the comma");
        assert_eq!(x(&[&format!("Hash={h}"), &format!("Hash={}", hex(other))]), Ok(Some(t)), "two lines are one list");
        assert_eq!(x(&[&format!("Cert={other_pem}")]), Ok(Some(other)));
        assert_eq!(x(&[]), Ok(None));
        assert_eq!(x(&[""]), Ok(None));
    }

    #[test]
    fn xfcc_refuses_what_it_cannot_read_with_certainty() {
        let (t, pem) = cert();
        let (other, _) = cert();
        let h = hex(t);
        let bad = [
            format!("Hash={h};Hash={}", hex(other)),
            format!("Hash={h};hash={h}"),
            format!("Hash={};Cert={pem}", hex(other)),
            format!("Cert={pem};Cert={pem}"),
            "By=spiffe://x;URI=spiffe://y".to_string(),
            format!("Hash={}", &h[..63]),
            format!("Hash={h}0"),
            format!("Hash=\"{h}"),
            format!("Hash={h}\\"),
            format!("Hash={h}=x"),
            format!("Hash={h},"),
            format!(",Hash={h}"),
            format!("Hash={h};"),
            format!("Hash={h},,Hash={h}"),
            format!("=Hash{h}"),
            format!("Hash {h}"),
            format!("Hash={h}\"x\""),
            format!("Hash={h},By=x;Subject=\"unterminated"),
            format!("Hash={h},garbage"),
            "Cert=notapem".to_string(),
            "Cert=%zz".to_string(),
            "Cert=\"\"".to_string(),
            format!("Cert={pem}{pem}"),
        ];
        for value in &bad {
            assert!(x(&[value]).is_err(), "accepted {value:?}: {:?}", x(&[value]));
        }
        assert!(x(&[&format!("Hash={h}"), "By=\"x"]).is_err(), "a bad second line");
        assert!(x(&[&format!("Hash={h}"), "By=x;Hash=zz"]).is_ok(), "later elements: syntax only");
    }

    #[test]
    fn pem_header_is_one_url_encoded_certificate() {
        let (t, pem_value) = cert();
        assert_eq!(pem(pem_value.as_bytes()), Ok(Some(t)));
        assert_eq!(pem(b""), Ok(None));
        assert_eq!(pem(b"  "), Ok(None));
        // Another block before the certificate, closed or not, or a BEGIN inside the block (the
        // PEM reader joined both bodies into one "certificate").
        let unknown = format!("-----BEGIN%20OTHER-----%0AAAAA%0A{pem_value}");
        let inner = format!("-----BEGIN%20CERTIFICATE-----%0AAAAA%0A{pem_value}");
        let other = format!("-----BEGIN%20X-----%0AAAAA%0A-----END%20X-----%0A{pem_value}");
        for bad in [
            "%zz",
            "-----BEGIN CERTIFICATE-----",
            "hello",
            &format!("{pem_value}{pem_value}"),
            &unknown,
            &inner,
            &other,
        ] {
            assert!(pem(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
        let h = CertHeader { name: http::header::HeaderName::from_static("x-client-cert"), format: HeaderFormat::Pem };
        let mut headers = HeaderMap::new();
        headers.append(h.name.clone(), HeaderValue::from_str(&pem_value).unwrap());
        assert_eq!(read(&headers, &h), Ok(Some(t)));
        headers.append(h.name.clone(), HeaderValue::from_str(&pem_value).unwrap());
        assert_eq!(read(&headers, &h), Err(HeaderError::Ambiguous("the certificate header is repeated")));
        assert_eq!(read(&HeaderMap::new(), &h), Ok(None));
    }

    proptest::proptest! {
        /// Any header bytes: an answer, never a panic; and a first element's `Hash` always
        /// wins whatever follows it, or the whole header is refused.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), digest in proptest::prelude::any::<[u8; 32]>()) {
            let _ = pem(&bytes);
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let _ = xfcc(std::iter::once(&v));
                let t = Thumbprint(digest);
                let mut line = format!("Hash={}", hex(t)).into_bytes();
                line.push(b',');
                line.extend_from_slice(&bytes);
                if let Ok(v) = HeaderValue::from_bytes(&line) {
                    let got = xfcc(std::iter::once(&v));
                    proptest::prop_assert!(got.is_err() || got == Ok(Some(t)), "{got:?}");
                }
            }
        }
    }
}
