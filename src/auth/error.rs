//! Why a caller was not let in: the token refused ([`Invalid`], with a metrics label and a
//! description each), or authentication and authorization failing as a whole ([`AuthError`]).

use super::dpop;

/// Why a token was not accepted; each has a metrics label and a description for
/// `error_description` (which never echoes the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Malformed(&'static str),
    TooLarge,
    /// A JWE (five parts): tollgate does not decrypt tokens.
    Encrypted,
    UnsupportedAlg,
    Crit,
    /// `jku`, `x5u` or an embedded `jwk`.
    ForbiddenHeader,
    UnknownIssuer,
    UnknownKid,
    AlgorithmMismatch,
    BadSignature,
    MissingClaim(&'static str),
    WrongAudience,
    WrongType,
    Expired,
    NotYetValid,
    IssuedInFuture,
    /// Introspection said the token is not active (or not for us).
    Inactive,
    /// RFC 8705 §3: the token is bound to a client certificate (`cnf["x5t#S256"]`) that this
    /// request did not present; the text says how.
    CertBinding(&'static str),
    /// The DPoP proof was refused (`invalid_dpop_proof`, or `use_dpop_nonce`).
    Dpop(dpop::ProofError),
    /// A DPoP-bound token (`cnf.jkt`) presented as a bearer token: the downgrade.
    DpopBound,
    /// The `DPoP` scheme with a token that is not bound to a key.
    DpopUnbound,
    /// A bearer token on a route with `dpop = "required"`.
    DpopRequired,
}

impl Invalid {
    pub fn label(&self) -> &'static str {
        match self {
            Invalid::Malformed(_) => "malformed",
            Invalid::TooLarge => "too_large",
            Invalid::Encrypted => "encrypted",
            Invalid::UnsupportedAlg => "unsupported_alg",
            Invalid::Crit => "crit",
            Invalid::ForbiddenHeader => "forbidden_header",
            Invalid::UnknownIssuer => "unknown_issuer",
            Invalid::UnknownKid => "unknown_kid",
            Invalid::AlgorithmMismatch => "alg_mismatch",
            Invalid::BadSignature => "bad_signature",
            Invalid::MissingClaim(_) => "missing_claim",
            Invalid::WrongAudience => "wrong_audience",
            Invalid::WrongType => "wrong_type",
            Invalid::Expired => "expired",
            Invalid::NotYetValid => "not_yet_valid",
            Invalid::IssuedInFuture => "issued_in_future",
            Invalid::Inactive => "inactive",
            Invalid::CertBinding(_) => "cert_binding",
            Invalid::Dpop(e) => e.label(),
            Invalid::DpopBound => "dpop_bound_as_bearer",
            Invalid::DpopUnbound => "dpop_unbound",
            Invalid::DpopRequired => "dpop_required",
        }
    }

    pub fn description(&self) -> String {
        match self {
            Invalid::Malformed(why) => format!("malformed token: {why}"),
            Invalid::TooLarge => "token too large".into(),
            Invalid::Encrypted => "encrypted tokens are not supported".into(),
            Invalid::UnsupportedAlg => "unsupported signing algorithm".into(),
            Invalid::Crit => "unsupported critical header".into(),
            Invalid::ForbiddenHeader => "token headers jku, x5u and jwk are not accepted".into(),
            Invalid::UnknownIssuer => "token issuer not accepted here".into(),
            Invalid::UnknownKid => "unknown signing key".into(),
            Invalid::AlgorithmMismatch => "signing algorithm not allowed for this key".into(),
            Invalid::BadSignature => "invalid signature".into(),
            Invalid::MissingClaim(c) => format!("missing claim {c}"),
            Invalid::WrongAudience => "token audience not accepted here".into(),
            Invalid::WrongType => "wrong token type".into(),
            Invalid::Expired => "token expired".into(),
            Invalid::NotYetValid => "token not yet valid".into(),
            Invalid::IssuedInFuture => "token issued in the future".into(),
            Invalid::Inactive => "token is not active".into(),
            Invalid::CertBinding(why) => format!("token is bound to a client certificate (cnf x5t#S256): {why}"),
            Invalid::Dpop(e) => e.description(),
            Invalid::DpopBound => "the token is bound to a DPoP key: send it with the DPoP scheme and a proof".into(),
            Invalid::DpopUnbound => "the token is not bound to a DPoP key".into(),
            Invalid::DpopRequired => "this route accepts DPoP-bound tokens with a DPoP proof only".into(),
        }
    }
}

/// Authentication and authorization failures; `error.rs` turns them into RFC 6750 responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all: 401 with a bare challenge.
    #[error("no access token")]
    MissingToken,
    /// A malformed request (bad `Authorization`, token in several places): 400.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// 401 `invalid_token`.
    #[error("invalid token: {}", .0.label())]
    InvalidToken(Invalid),
    /// 403 `insufficient_scope`, with the scopes needed.
    #[error("insufficient scope")]
    InsufficientScope { scope: String },
    /// 403: a rule other than scope failed.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 503: the token cannot be checked right now (keys not loaded, introspection failing).
    #[error("cannot check the token now: {0}")]
    Unavailable(&'static str),
}
