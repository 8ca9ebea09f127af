//! The identity headers an upstream gets from the caller the gateway verified.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::Caller;
use crate::config::Route;
use crate::upstream::headers::encode_list;

static X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
static X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
static X_FORWARDED_PREFERRED_USERNAME: HeaderName = HeaderName::from_static("x-forwarded-preferred-username");
static X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
static X_FORWARDED_ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-forwarded-access-token");

/// Identity headers for the upstream (client-sent copies were removed by `clean_request`).
/// `Authorization` goes upstream only when it is the credential the gateway verified (or, on a
/// login route that asks for it, the session's own access token): an unchecked header must not
/// reach an upstream that trusts its gateway.
pub(super) fn set_identity(headers: &mut HeaderMap, route: &Route, caller: &Caller) {
    let (p, token) = match caller {
        Caller::Anonymous => return,
        Caller::Bearer { principal, token, in_header } => {
            if !in_header || route.auth.bearer().is_some_and(|b| !b.forward_authorization) {
                headers.remove(http::header::AUTHORIZATION);
                // The DPoP proof goes with the token it proves, or not at all.
                headers.remove(&crate::auth::dpop::DPOP);
            }
            (principal, token.as_str())
        }
        Caller::Session { principal, access_token } => {
            headers.remove(http::header::AUTHORIZATION);
            headers.remove(&crate::auth::dpop::DPOP);
            if route.pass_authorization_header {
                if let Ok(v) = HeaderValue::from_str(&format!("Bearer {access_token}")) {
                    headers.insert(http::header::AUTHORIZATION, v);
                }
            }
            (principal, &**access_token)
        }
    };
    // The values were made when the token was verified (see `IdentityValues`): a cached
    // caller costs a clone (a reference count) and an insert per header.
    let v = &p.headers;
    let mut set = |name: &HeaderName, value: Option<&HeaderValue>| {
        if let Some(value) = value {
            headers.insert(name.clone(), value.clone());
        }
    };
    set(&X_FORWARDED_USER, v.subject.as_ref());
    set(&X_FORWARDED_EMAIL, p.forwardable_email(route.insecure_forward_unverified_email));
    set(&X_FORWARDED_PREFERRED_USERNAME, v.username.as_ref());
    set(&X_FORWARDED_GROUPS, v.groups.as_ref());
    if route.pass_access_token {
        match HeaderValue::from_str(token) {
            Ok(t) => set(&X_FORWARDED_ACCESS_TOKEN, Some(&t)),
            Err(_) => tracing::debug!("access token not valid in a header; omitted"),
        }
    }
    for (name, path) in &route.claim_headers {
        let value = match p.claim(path) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(items)) => {
                encode_list(items.iter().map(|v| v.as_str().map_or_else(|| Cow::Owned(v.to_string()), Cow::Borrowed)))
            }
            Some(other) => other.to_string(),
        };
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            headers.insert(name.clone(), v);
        }
    }
}
