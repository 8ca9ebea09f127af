//! What a token is bound to, checked on every request whichever cache answered for it (the
//! caches hold principals, not requests): a token bound to a client certificate (RFC 8705 §3)
//! passes only with that certificate; a DPoP-bound token (RFC 9449) only with the `DPoP` scheme
//! and a fresh proof from its key, remembered so that it is used once.

use std::sync::Arc;
use std::time::Duration;

use super::{dpop, token, unix_now, AuthError, Authenticator, CertBinding, Invalid, Principal, RouteBearer};
use crate::client_cert::{HeaderError, Presented};
use crate::config::dpop::DpopMode;
use crate::config::{Config, SessionStore};
use crate::store::redis::Redis;

/// RFC 8705 §3.2: a token bound to a certificate passes only when the request's client
/// certificate has that thumbprint. Unbound tokens cost one comparison here.
pub fn check_cert_binding(p: &Principal, cert: &Presented<'_>) -> Result<(), AuthError> {
    let refused = |why| Err(AuthError::InvalidToken(Invalid::CertBinding(why)));
    let expected = match p.cert_binding {
        CertBinding::Unbound => return Ok(()),
        CertBinding::To(t) => t,
        CertBinding::Unreadable => return refused("the binding is not a SHA-256 thumbprint"),
    };
    match cert.thumbprint() {
        Ok(Some(t)) if t == expected => Ok(()),
        Ok(Some(_)) => refused("the client certificate presented is another one"),
        Ok(None) => refused("no client certificate was presented"),
        Err(e) => {
            tracing::debug!(error = %e, "the trusted proxy's client certificate header is unreadable");
            match e {
                HeaderError::Malformed(_) => refused("the proxy's client certificate header is malformed"),
                HeaderError::Ambiguous(_) => refused("the proxy's client certificate header is ambiguous"),
            }
        }
    }
}

/// The first login's Redis session store, if any (plain, TLS or through Sentinel, as its
/// sessions reach it): DPoP proofs are remembered there too, so that a proof used at one replica
/// is refused at the others. The URL and CA were validated with the configuration.
pub(super) fn dpop_redis(config: &Config) -> Option<Arc<Redis>> {
    config.logins.iter().find_map(|l| match &l.store {
        SessionStore::Redis(store) => {
            let ca = store.ca_file.as_ref().map(|(_, pem)| pem.as_slice());
            match Redis::new(store.url.expose(), ca, None) {
                Ok(redis) => Some(Arc::new(redis)),
                Err(e) => {
                    tracing::error!(login = %l.name, error = %e, "DPoP replay checks cannot use the session store");
                    None
                }
            }
        }
        SessionStore::Cookie => None,
    })
}

impl Authenticator {
    pub(super) async fn authenticate_bound(
        &self,
        route: &RouteBearer,
        presented: &token::Presented<'_>,
        req: &dpop::Request<'_>,
    ) -> Result<Arc<Principal>, AuthError> {
        let dpop = presented.scheme == token::Scheme::Dpop;
        if !dpop && route.dpop.mode == DpopMode::Required {
            return Err(AuthError::InvalidToken(Invalid::DpopRequired));
        }
        let principal = self.authenticate_inner(route, &presented.token).await?;
        check_cert_binding(&principal, &req.cert)?;
        match (dpop, principal.cnf_jkt.as_deref()) {
            (false, None) => Ok(principal),
            (false, Some(_)) => Err(AuthError::InvalidToken(Invalid::DpopBound)),
            (true, None) => Err(AuthError::InvalidToken(Invalid::DpopUnbound)),
            (true, Some(jkt)) => {
                // Boxed like a miss: the Redis call's state stays out of the request future.
                Box::pin(self.check_proof(route, &presented.token, jkt, req)).await?;
                Ok(principal)
            }
        }
    }

    /// The request's proof, for `token` bound to `jkt`: valid, from that key, and first seen.
    async fn check_proof(
        &self,
        route: &RouteBearer,
        token: &str,
        jkt: &str,
        req: &dpop::Request<'_>,
    ) -> Result<(), AuthError> {
        let invalid = |e| AuthError::InvalidToken(Invalid::Dpop(e));
        let now = unix_now();
        let checked = dpop::check_proof(&route.dpop, req, token, now).map_err(invalid)?;
        if checked.jkt != jkt {
            return Err(invalid(dpop::ProofError::KeyMismatch));
        }
        // Every `iat` the route accepts, and once more the leeway: replicas sharing the Redis
        // store may disagree on the time by that much.
        let window = route.dpop.window() + route.dpop.leeway;
        match self.caches.dpop_seen.first_use(checked.replay_key, &checked.jkt, now + window + 1, now) {
            Ok(true) => {}
            Ok(false) => return Err(invalid(dpop::ProofError::Replayed)),
            Err(dpop::Full::KeyShare) => return Err(invalid(dpop::ProofError::TooMany)),
            Err(dpop::Full::Memory) => {
                return Err(AuthError::Unavailable("too many DPoP proofs in flight to remember"))
            }
        }
        let Some(redis) = &self.dpop_redis else { return Ok(()) };
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut key = String::with_capacity(46);
        key.push_str("tollgate:dpop:");
        for b in checked.replay_key {
            key.push(HEX[usize::from(b >> 4)] as char);
            key.push(HEX[usize::from(b & 15)] as char);
        }
        match redis.lock(&key, Duration::from_secs(window + 1)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(invalid(dpop::ProofError::Replayed)),
            Err(e) => {
                tracing::warn!(error = %e, "DPoP replay check at the session store failed");
                Err(AuthError::Unavailable("DPoP proofs cannot be checked for replay now"))
            }
        }
    }
}
