//! The one identity every authentication source produces, whatever it came from.

use http::HeaderValue;
use serde_json::Value;

use super::issuer::IssuerId;
use crate::client_cert::Thumbprint;

/// Who the caller is. Authorization and header injection read only this.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The issuer that vouched for it (stable across reloads; see `IssuerState::id`).
    pub issuer: IssuerId,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub username: Option<String>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    /// Unix seconds after which the credential is no longer valid.
    pub expires_at: u64,
    /// RFC 8705 §3: `cnf["x5t#S256"]`, the client certificate the token is bound to.
    pub cert_binding: CertBinding,
    /// `cnf.jkt` (RFC 9449 §6): the thumbprint of the DPoP key the token is bound to. A `cnf.jkt`
    /// that is not a string is kept as an empty one, which no key has: bound, never usable.
    pub cnf_jkt: Option<String>,
    pub claims: Value,
    /// The identity headers' values, made once when the token is verified rather than on every
    /// request that presents it (the principal is cached with the token).
    pub headers: IdentityValues,
}

/// [`Principal`]'s subject, email, username and groups as header values; `None` where the claim
/// is absent or cannot be a header (control characters): such a header is left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityValues {
    pub subject: Option<HeaderValue>,
    pub email: Option<HeaderValue>,
    pub username: Option<HeaderValue>,
    /// Percent-encoded and comma-joined (`encode_list`); `None` without groups.
    pub groups: Option<HeaderValue>,
}

impl IdentityValues {
    fn of(subject: &str, email: Option<&str>, username: Option<&str>, groups: &[String]) -> IdentityValues {
        let value = |name: &str, v: &str| match HeaderValue::from_str(v) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::debug!(claim = name, "identity value not valid in a header; omitted");
                None
            }
        };
        IdentityValues {
            subject: value("subject", subject),
            email: email.and_then(|e| value("email", e)),
            username: username.and_then(|u| value("username", u)),
            groups: match groups.is_empty() {
                true => None,
                false => value("groups", &crate::upstream::headers::encode_list(groups)),
            },
        }
    }

    fn len(&self) -> usize {
        [&self.subject, &self.email, &self.username, &self.groups]
            .iter()
            .filter_map(|v| v.as_ref())
            .map(|v| v.len() + 40)
            .sum()
    }
}

/// What a token's `cnf` says about a client certificate (RFC 8705 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertBinding {
    /// No `cnf["x5t#S256"]`: the token is not bound to a certificate.
    Unbound,
    /// Usable only with the client certificate of this thumbprint.
    To(Thumbprint),
    /// A `cnf` that is not an object, or an `x5t#S256` that is not a SHA-256 thumbprint: the
    /// binding cannot be checked, so the token never passes.
    Unreadable,
}

impl Principal {
    /// Builds a principal from verified claims. `sub` is required; a client-credentials token
    /// without one is identified by `client_id`.
    pub fn from_claims(issuer: IssuerId, claims: Value, expires_at: u64) -> Option<Principal> {
        let subject = str_claim(&claims, "sub").or_else(|| str_claim(&claims, "client_id"))?.to_string();
        let email = str_claim(&claims, "email").map(str::to_string);
        let username =
            str_claim(&claims, "preferred_username").or_else(|| str_claim(&claims, "username")).map(str::to_string);
        let groups = strings(claims.get("groups"));
        let headers = IdentityValues::of(&subject, email.as_deref(), username.as_deref(), &groups);
        Some(Principal {
            issuer,
            email,
            email_verified: email_verified(&claims),
            username,
            groups,
            headers,
            scopes: scopes(&claims),
            subject,
            expires_at,
            cert_binding: cert_binding(&claims),
            cnf_jkt: cnf_jkt(&claims),
            claims,
        })
    }

    /// The claim at a dotted path (`realm_access.roles`).
    pub fn claim(&self, path: &[String]) -> Option<&Value> {
        let mut v = &self.claims;
        for key in path {
            v = v.get(key)?;
        }
        Some(v)
    }

    /// Roughly how many bytes this principal holds, for caches bounded by memory.
    pub fn approx_size(&self) -> u32 {
        // Heap cost, not JSON length: a `Value` is 32 bytes, each string a separate allocation
        // (16 bytes of allocator header, rounded up), each map entry a key string plus a share
        // of a B-tree node. Calibrated against the measured RSS of 100,000 cached tokens.
        fn walk(v: &Value) -> usize {
            32 + match v {
                Value::String(s) => 32 + s.len(),
                Value::Array(items) => 32 + items.iter().map(walk).sum::<usize>(),
                Value::Object(map) => 64 + map.iter().map(|(k, v)| 96 + k.len() + walk(v)).sum::<usize>(),
                _ => 0,
            }
        }
        let strings: usize = self.groups.iter().chain(&self.scopes).chain(&self.cnf_jkt).map(|s| s.len() + 56).sum();
        // The struct, the cache's own entry and the Arc come to about 500 bytes.
        let total = 500 + self.subject.len() + strings + walk(&self.claims) + self.headers.len();
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// The email address to pass upstream (`X-Forwarded-Email`, `X-Auth-Request-Email`), as its
    /// header value: none when the issuer marked it unverified, unless `allow_unverified`. An
    /// address without `email_verified` is passed, as the email rules accept it (access tokens
    /// rarely carry the claim).
    pub fn forwardable_email(&self, allow_unverified: bool) -> Option<&HeaderValue> {
        self.headers.email.as_ref().filter(|_| allow_unverified || self.email_verified != Some(false))
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// `cnf["x5t#S256"]` from verified claims (a JWT's or an introspection answer's).
fn cert_binding(claims: &Value) -> CertBinding {
    let Some(cnf) = claims.get("cnf") else { return CertBinding::Unbound };
    let Some(cnf) = cnf.as_object() else { return CertBinding::Unreadable };
    // A confirmation method tollgate cannot check (RFC 7800 `jwk`, `kid`, `jku`, RFC 8705's
    // SHA-1 `x5t`, ...), or none at all, binds the token to something no request here can
    // prove: refused, never taken for an unbound bearer token.
    if cnf.is_empty() || cnf.keys().any(|k| k != "x5t#S256" && k != "jkt") {
        return CertBinding::Unreadable;
    }
    match cnf.get("x5t#S256") {
        None => CertBinding::Unbound,
        Some(v) => v.as_str().and_then(Thumbprint::from_base64url).map_or(CertBinding::Unreadable, CertBinding::To),
    }
}

/// `email_verified`: a boolean, or the strings `"true"` / `"false"` some providers send. Any
/// other value present counts as unverified (fail closed); absent is `None`.
fn email_verified(claims: &Value) -> Option<bool> {
    match claims.get("email_verified")? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::Null => None,
        _ => Some(false),
    }
}

fn cnf_jkt(claims: &Value) -> Option<String> {
    let jkt = claims.get("cnf")?.get("jkt")?;
    Some(jkt.as_str().unwrap_or("").to_string())
}

fn str_claim<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `scope` (space-separated string, RFC 9068) or `scp` (array or string, common elsewhere).
fn scopes(claims: &Value) -> Vec<String> {
    match claims.get("scope") {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => match claims.get("scp") {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            other => strings(other),
        },
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_standard_claims() {
        let p = Principal::from_claims(
            0,
            json!({"sub": "u1", "email": "a@b.c", "preferred_username": "ann", "groups": ["g1", 2, "g2"], "scope": "a b  c", "realm_access": {"roles": ["admin"]}}),
            10,
        )
        .unwrap();
        assert_eq!(p.subject, "u1");
        assert_eq!(p.groups, vec!["g1", "g2"]);
        assert_eq!(p.scopes, vec!["a", "b", "c"]);
        assert_eq!(p.claim(&["realm_access".into(), "roles".into()]), Some(&json!(["admin"])));
        let scp = Principal::from_claims(0, json!({"client_id": "svc", "scp": ["x", "y"]}), 10).unwrap();
        assert_eq!(scp.subject, "svc");
        assert_eq!(scp.scopes, vec!["x", "y"]);
        assert!(Principal::from_claims(0, json!({"scope": "a"}), 10).is_none());
    }

    #[test]
    fn reads_the_certificate_binding() {
        let bound = |cnf: Value| Principal::from_claims(0, json!({"sub": "u", "cnf": cnf}), 10).unwrap().cert_binding;
        let t = Thumbprint::of_der(b"cert");
        assert_eq!(bound(json!({"x5t#S256": t.to_base64url()})), CertBinding::To(t));
        assert_eq!(bound(json!({"jkt": "abc"})), CertBinding::Unbound, "another kind of binding");
        assert_eq!(bound(json!({"jkt": "abc", "x5t#S256": t.to_base64url()})), CertBinding::To(t), "both kinds");
        // Confirmation methods nobody here can check are refusals, not bearer tokens.
        let unknown = [json!({"jwk": {"kty": "EC"}}), json!({"x5t": "sha1"}), json!({"kid": "k"}), json!({})];
        let mixed = [json!({"jkt": "abc", "jku": "https://x"})];
        for unreadable in [json!({"x5t#S256": "abc"}), json!({"x5t#S256": 1}), json!("x5t"), json!(null)]
            .into_iter()
            .chain(unknown)
            .chain(mixed)
        {
            assert_eq!(bound(unreadable.clone()), CertBinding::Unreadable, "{unreadable}");
        }
        assert_eq!(Principal::from_claims(0, json!({"sub": "u"}), 10).unwrap().cert_binding, CertBinding::Unbound);
    }

    #[test]
    fn unverified_addresses_are_not_forwarded() {
        let email = |verified: Value| {
            let mut claims = json!({"sub": "u", "email": "a@b.c"});
            if !verified.is_null() {
                claims["email_verified"] = verified;
            }
            let p = Principal::from_claims(0, claims, 10).unwrap();
            let text = |v: Option<&HeaderValue>| v.map(|v| v.to_str().unwrap().to_string());
            (text(p.forwardable_email(false)), text(p.forwardable_email(true)))
        };
        let some = Some("a@b.c".to_string());
        assert_eq!(email(json!(true)), (some.clone(), some.clone()));
        assert_eq!(email(json!("true")), (some.clone(), some.clone()));
        assert_eq!(email(Value::Null), (some.clone(), some.clone()), "absent: as the email rules");
        for unverified in [json!(false), json!("false"), json!("no"), json!(0), json!({})] {
            assert_eq!(email(unverified.clone()), (None, some.clone()), "{unverified}");
        }
    }

    /// The identity headers' values are made with the principal: a claim that cannot be a
    /// header is left out, groups are one encoded list.
    #[test]
    fn identity_values_are_made_once() {
        let claims = json!({"sub": "u\u{1}x", "email": "a@b.c", "preferred_username": "ann", "groups": ["a,b", "c"]});
        let v = Principal::from_claims(0, claims, 10).unwrap().headers;
        assert_eq!(v.subject, None, "a control character: no header");
        assert_eq!(v.email.as_ref().map(|v| v.as_bytes()), Some(&b"a@b.c"[..]));
        assert_eq!(v.username.as_ref().map(|v| v.as_bytes()), Some(&b"ann"[..]));
        assert_eq!(v.groups.as_ref().map(|v| v.as_bytes()), Some(&b"a%2Cb,c"[..]));
        assert_eq!(Principal::from_claims(0, json!({"sub": "u"}), 10).unwrap().headers.groups, None);
    }
}
