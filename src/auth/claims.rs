//! One claims verifier for every token tollgate reads: access tokens (JWT), ID tokens, logout
//! tokens and introspection answers. One rule for time claims, one audience check, one leeway.
//!
//! Time claims are RFC 7519 NumericDates: a JSON number of seconds, fractions allowed. Anything
//! else (a string, a negative number, a number too large) is malformed, never "absent". A
//! fraction is rounded toward the stricter answer: `exp` down, `nbf` and `iat` up.

use serde_json::Value;

use super::Invalid;

/// Who the token must be meant for.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// Any of these API audiences (access tokens, introspection answers).
    AnyOf(&'a [String]),
    /// This OAuth client (ID and logout tokens, OIDC Core §3.1.3.7): `aud` contains it, and with
    /// several audiences `azp` must name it.
    Client(&'a str),
}

/// Whether a claim must be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Required,
    /// Checked when present (introspection answers, RFC 7662 §2.2: every member is optional).
    IfPresent,
}

/// What a token's claims must say.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The exact `iss`.
    pub issuer: &'a str,
    pub issuer_presence: Presence,
    pub audience: Audience<'a>,
    pub audience_presence: Presence,
    pub exp: Presence,
    pub iat: Presence,
    /// Seconds of clock skew allowed on every time claim.
    pub leeway: u64,
}

impl<'a> Expect<'a> {
    /// An access token (JWT) for one of `audiences`: `iss`, `aud` and `exp` required.
    pub fn access_token(issuer: &'a str, audiences: &'a [String], leeway: u64) -> Expect<'a> {
        Expect {
            issuer,
            issuer_presence: Presence::Required,
            audience: Audience::AnyOf(audiences),
            audience_presence: Presence::Required,
            exp: Presence::Required,
            iat: Presence::IfPresent,
            leeway,
        }
    }

    /// An ID token or logout token for `client_id`: `iss`, `aud`, `exp` and `iat` required.
    pub fn id_token(issuer: &'a str, client_id: &'a str, leeway: u64) -> Expect<'a> {
        Expect {
            issuer,
            issuer_presence: Presence::Required,
            audience: Audience::Client(client_id),
            audience_presence: Presence::Required,
            exp: Presence::Required,
            iat: Presence::Required,
            leeway,
        }
    }

    /// An active introspection answer: `iss`, `aud` and `exp` checked when present.
    pub fn introspection(issuer: &'a str, audiences: &'a [String], leeway: u64) -> Expect<'a> {
        Expect {
            issuer,
            issuer_presence: Presence::IfPresent,
            audience: Audience::AnyOf(audiences),
            audience_presence: Presence::IfPresent,
            exp: Presence::IfPresent,
            iat: Presence::IfPresent,
            leeway,
        }
    }
}

/// The time claims of a token that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// `exp`, rounded down; `None` only where `exp` may be absent.
    pub exp: Option<u64>,
}

/// Checks `iss`, `aud`, `exp`, `nbf` and `iat` of `claims` at `now` (Unix seconds).
pub fn verify(claims: &Value, expect: &Expect<'_>, now: u64) -> Result<Times, Invalid> {
    check_issuer(claims, expect)?;
    check_audience(claims, expect)?;
    let leeway = expect.leeway;
    let exp = numeric_date(claims, "exp", Round::Down)?;
    match (exp, expect.exp) {
        (None, Presence::Required) => return Err(Invalid::MissingClaim("exp")),
        (Some(exp), _) if now >= exp.saturating_add(leeway) => return Err(Invalid::Expired),
        _ => {}
    }
    if let Some(nbf) = numeric_date(claims, "nbf", Round::Up)? {
        if nbf > now.saturating_add(leeway) {
            return Err(Invalid::NotYetValid);
        }
    }
    match (numeric_date(claims, "iat", Round::Up)?, expect.iat) {
        (None, Presence::Required) => return Err(Invalid::MissingClaim("iat")),
        (Some(iat), _) if iat > now.saturating_add(leeway) => return Err(Invalid::IssuedInFuture),
        _ => {}
    }
    Ok(Times { exp })
}

fn check_issuer(claims: &Value, expect: &Expect<'_>) -> Result<(), Invalid> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == expect.issuer => Ok(()),
        Some(Value::String(_)) => Err(Invalid::UnknownIssuer),
        Some(_) => Err(Invalid::Malformed("iss must be a string")),
        None if expect.issuer_presence == Presence::IfPresent => Ok(()),
        None => Err(Invalid::MissingClaim("iss")),
    }
}

fn check_audience(claims: &Value, expect: &Expect<'_>) -> Result<(), Invalid> {
    let one;
    let auds: &[Value] = match claims.get("aud") {
        Some(Value::Array(items)) => items,
        Some(a @ Value::String(_)) => {
            one = [a.clone()];
            &one
        }
        Some(_) => return Err(Invalid::Malformed("aud must be a string or an array")),
        None if expect.audience_presence == Presence::IfPresent => return Ok(()),
        None => return Err(Invalid::MissingClaim("aud")),
    };
    let mut names = auds.iter().filter_map(Value::as_str);
    match expect.audience {
        Audience::AnyOf(accepted) if names.any(|a| accepted.iter().any(|w| w == a)) => Ok(()),
        Audience::AnyOf(_) => Err(Invalid::WrongAudience),
        Audience::Client(id) => {
            if !names.any(|a| a == id) {
                return Err(Invalid::WrongAudience);
            }
            let azp = claims.get("azp").and_then(Value::as_str);
            if (auds.len() > 1 && azp.is_none()) || azp.is_some_and(|a| a != id) {
                return Err(Invalid::WrongAudience);
            }
            Ok(())
        }
    }
}

/// Which way a fractional NumericDate is rounded.
#[derive(Debug, Clone, Copy)]
pub enum Round {
    Down,
    Up,
}

/// A NumericDate claim: absent, or a non-negative finite number of seconds.
pub fn numeric_date(claims: &Value, name: &'static str, round: Round) -> Result<Option<u64>, Invalid> {
    let n = match claims.get(name) {
        None => return Ok(None),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(Invalid::Malformed("a time claim is not a number")),
    };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    // 2^63 seconds is far past any real date; larger values (and negatives) are refused.
    match n.as_f64() {
        Some(f) if f.is_finite() && (0.0..9.2e18).contains(&f) => Ok(Some(match round {
            Round::Down => f.floor() as u64,
            Round::Up => f.ceil() as u64,
        })),
        _ => Err(Invalid::Malformed("a time claim is negative or too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_000_000;

    fn auds() -> Vec<String> {
        vec!["api".to_string()]
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"iss": "https://idp", "aud": "api", "exp": NOW + 60, "iat": NOW - 1});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn one_time_rule_for_every_kind_of_token() {
        let a = auds();
        let kinds = [
            Expect::access_token("https://idp", &a, 0),
            Expect::introspection("https://idp", &a, 0),
            Expect { audience: Audience::Client("api"), ..Expect::id_token("https://idp", "api", 0) },
        ];
        for expect in &kinds {
            let ok = |c: Value| verify(&c, expect, NOW);
            // Fractions are NumericDates: accepted everywhere, rounded toward the stricter side.
            assert_eq!(ok(claims(json!({"exp": NOW as f64 + 1.5}))).unwrap().exp, Some(NOW + 1), "{expect:?}");
            assert_eq!(ok(claims(json!({"exp": NOW as f64 + 0.5}))), Err(Invalid::Expired), "{expect:?}");
            assert_eq!(ok(claims(json!({"nbf": NOW as f64 + 0.1}))), Err(Invalid::NotYetValid));
            assert_eq!(ok(claims(json!({"iat": NOW as f64 + 0.1}))), Err(Invalid::IssuedInFuture));
            // Malformed is never "absent".
            for bad in [json!("123"), json!(-1), json!(1e300), json!(null), json!([1])] {
                assert!(matches!(ok(claims(json!({"exp": bad.clone()}))), Err(Invalid::Malformed(_))), "{bad}");
                assert!(matches!(ok(claims(json!({"iat": bad.clone()}))), Err(Invalid::Malformed(_))), "{bad}");
            }
        }
    }

    #[test]
    fn leeway_applies_to_every_time_claim() {
        let a = auds();
        let e = Expect::access_token("https://idp", &a, 30);
        assert!(verify(&claims(json!({"exp": NOW - 29})), &e, NOW).is_ok());
        assert_eq!(verify(&claims(json!({"exp": NOW - 30})), &e, NOW), Err(Invalid::Expired));
        assert!(verify(&claims(json!({"nbf": NOW + 30, "iat": NOW + 30})), &e, NOW).is_ok());
        assert_eq!(verify(&claims(json!({"nbf": NOW + 31})), &e, NOW), Err(Invalid::NotYetValid));
    }

    #[test]
    fn presence_differs_by_kind_but_values_do_not() {
        let a = auds();
        let bare = json!({"active": true});
        assert_eq!(verify(&bare, &Expect::introspection("https://idp", &a, 0), NOW), Ok(Times { exp: None }));
        assert_eq!(verify(&bare, &Expect::access_token("https://idp", &a, 0), NOW), Err(Invalid::MissingClaim("iss")));
        let no_iat = json!({"iss": "https://idp", "aud": "c", "exp": NOW + 5});
        assert_eq!(verify(&no_iat, &Expect::id_token("https://idp", "c", 0), NOW), Err(Invalid::MissingClaim("iat")));
        let intro = Expect::introspection("https://idp", &a, 0);
        assert_eq!(verify(&json!({"iss": "https://other"}), &intro, NOW), Err(Invalid::UnknownIssuer));
        assert_eq!(verify(&json!({"aud": ["x", "y"]}), &intro, NOW), Err(Invalid::WrongAudience));
        assert_eq!(verify(&json!({"exp": NOW}), &intro, NOW), Err(Invalid::Expired));
        assert!(matches!(verify(&json!({"aud": 5}), &intro, NOW), Err(Invalid::Malformed(_))));
    }

    #[test]
    fn audiences() {
        let a = auds();
        let at = Expect::access_token("https://idp", &a, 0);
        assert!(verify(&claims(json!({"aud": ["other", "api"]})), &at, NOW).is_ok());
        assert_eq!(verify(&claims(json!({"aud": ["other"]})), &at, NOW), Err(Invalid::WrongAudience));
        assert_eq!(verify(&claims(json!({"aud": []})), &at, NOW), Err(Invalid::WrongAudience));
        let id = Expect::id_token("https://idp", "web", 0);
        assert!(verify(&claims(json!({"aud": "web"})), &id, NOW).is_ok());
        assert_eq!(verify(&claims(json!({"aud": ["web", "x"]})), &id, NOW), Err(Invalid::WrongAudience), "no azp");
        assert!(verify(&claims(json!({"aud": ["web", "x"], "azp": "web"})), &id, NOW).is_ok());
        assert_eq!(verify(&claims(json!({"aud": "web", "azp": "x"})), &id, NOW), Err(Invalid::WrongAudience));
    }
}
