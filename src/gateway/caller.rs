//! Steps 2 and 3 of the pipeline: who called ([`Caller`]) and the proof that the route's rules
//! let them through ([`Permitted`], made only by [`authorize`]).

use std::sync::Arc;

use http::{HeaderMap, StatusCode};

use super::Route;
use crate::auth::{rules, Principal};
use crate::error::GatewayError;
use crate::login::{is_browser, page};
use crate::upstream::exchange::Subject;

/// Who called, as far as the route cares: nobody in particular (public routes) or a principal
/// with the credential it presented.
pub enum Caller {
    Anonymous,
    /// `in_header`: the token came in `Authorization` (not a query parameter or cookie).
    Bearer {
        principal: Arc<Principal>,
        token: String,
        in_header: bool,
    },
    /// A browser session; its access token may be passed upstream when the route asks.
    Session {
        principal: Arc<Principal>,
        access_token: Arc<str>,
    },
}

impl Caller {
    pub(super) fn principal(&self) -> Option<&Arc<Principal>> {
        match self {
            Caller::Anonymous => None,
            Caller::Bearer { principal, .. } | Caller::Session { principal, .. } => Some(principal),
        }
    }

    /// The token to exchange for the upstream, and when it expires: a bearer token's own
    /// expiry; a session's access token's (its JWT `exp`, read only on a cache miss), never
    /// past the session's end. An opaque session token is refreshed before it expires, and a
    /// refreshed one is another cache key.
    pub(super) fn subject(&self) -> Option<Subject<'_>> {
        match self {
            Caller::Anonymous => None,
            Caller::Bearer { principal, token, .. } => {
                Some(Subject { token, expires_at: principal.expires_at, session: false })
            }
            Caller::Session { principal, access_token } => {
                Some(Subject { token: access_token, expires_at: principal.expires_at, session: true })
            }
        }
    }
}

/// Proof that a request passed authorization for a route; only [`authorize`] builds it, and
/// forwarding requires it, so an unchecked request cannot reach an upstream.
pub struct Permitted<'r> {
    pub(super) route: &'r Route,
    pub(super) caller: Caller,
}

impl Permitted<'_> {
    pub(crate) fn caller(&self) -> &Caller {
        &self.caller
    }
}

/// Step 3: the route's rules over the caller. Public routes have no rules (config refuses them).
/// A signed-in browser that fails them gets a page, never a redirect back to sign-in (a loop).
pub(crate) fn authorize<'r>(
    route: &'r Route,
    caller: Caller,
    headers: &HeaderMap,
) -> Result<Permitted<'r>, GatewayError> {
    if let Some(principal) = caller.principal() {
        if let Err(e) = rules::check(&route.rules, principal) {
            if matches!(caller, Caller::Session { .. }) && is_browser(headers) {
                let who = principal.email.as_deref().unwrap_or(&principal.subject);
                let msg = format!("You are signed in as {who}, but this page needs more: {e}.");
                return Err(GatewayError::Respond(Box::new(page(StatusCode::FORBIDDEN, "Access denied", &msg))));
            }
            return Err(e.into());
        }
    }
    Ok(Permitted { route, caller })
}
