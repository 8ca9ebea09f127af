//! Per-route authorization rules over a [`Principal`].

use serde_json::Value;

use super::principal::Principal;
use super::AuthError;
use crate::config::{ClaimTest, Rules};

/// Checks every configured rule. Scope failures name the scopes needed (RFC 6750
/// `insufficient_scope`); other failures say which rule failed, never the caller's claims.
pub fn check(rules: &Rules, p: &Principal) -> Result<(), AuthError> {
    if !rules.scopes.iter().all(|s| p.has_scope(s)) {
        return Err(AuthError::InsufficientScope { scope: rules.scopes.join(" ") });
    }
    if !rules.groups.is_empty() && !p.groups.iter().any(|g| rules.groups.contains(g)) {
        return Err(AuthError::Forbidden("not in an allowed group"));
    }
    if !rules.emails.is_empty() || !rules.email_domains.is_empty() {
        // An address the issuer says is unverified proves nothing about who holds it.
        let email = p.email.as_deref().filter(|_| p.email_verified != Some(false)).map(str::to_ascii_lowercase);
        let Some(email) = email else { return Err(AuthError::Forbidden("no verified email address")) };
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let allowed = rules.emails.contains(&email) || rules.email_domains.iter().any(|d| d == domain);
        if !allowed {
            return Err(AuthError::Forbidden("email address not allowed"));
        }
    }
    for rule in &rules.claims {
        let value = p.claim(&rule.path);
        let ok = match (&rule.test, value) {
            (_, None) => false,
            (ClaimTest::Equals(want), Some(v)) => v == want,
            (ClaimTest::OneOf(options), Some(v)) => options.contains(v),
            (ClaimTest::Contains(want), Some(Value::Array(items))) => items.contains(want),
            (ClaimTest::Contains(Value::String(want)), Some(Value::String(s))) => {
                s.split_whitespace().any(|w| w == want)
            }
            (ClaimTest::Contains(_), Some(_)) => false,
        };
        if !ok {
            return Err(AuthError::Forbidden("a required claim does not match"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClaimRule;
    use serde_json::json;

    fn principal(claims: Value) -> Principal {
        Principal::from_claims(0, claims, u64::MAX).unwrap()
    }

    fn rule(path: &str, test: ClaimTest) -> ClaimRule {
        ClaimRule { path: path.split('.').map(str::to_string).collect(), test }
    }

    #[test]
    fn scopes_all_required() {
        let rules = Rules { scopes: vec!["read".into(), "write".into()], ..Default::default() };
        assert!(check(&rules, &principal(json!({"sub": "a", "scope": "write read"}))).is_ok());
        match check(&rules, &principal(json!({"sub": "a", "scope": "read"}))) {
            Err(AuthError::InsufficientScope { scope }) => assert_eq!(scope, "read write"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn claims_groups_and_emails() {
        let p = principal(json!({
            "sub": "a", "email": "Ann@Example.com", "groups": ["staff"], "tier": "gold",
            "realm_access": {"roles": ["admin", "user"]}, "amr": "pwd otp"
        }));
        let ok = Rules {
            groups: vec!["staff".into(), "x".into()],
            email_domains: vec!["example.com".into()],
            claims: vec![
                rule("realm_access.roles", ClaimTest::Contains(json!("admin"))),
                rule("tier", ClaimTest::OneOf(vec![json!("gold"), json!("silver")])),
                rule("tier", ClaimTest::Equals(json!("gold"))),
                rule("amr", ClaimTest::Contains(json!("otp"))),
            ],
            ..Default::default()
        };
        assert!(check(&ok, &p).is_ok());
        for bad in [
            Rules { groups: vec!["admins".into()], ..Default::default() },
            Rules { emails: vec!["bob@example.com".into()], ..Default::default() },
            Rules { email_domains: vec!["example.org".into()], ..Default::default() },
            Rules {
                claims: vec![rule("realm_access.roles", ClaimTest::Contains(json!("root")))],
                ..Default::default()
            },
            Rules { claims: vec![rule("missing.path", ClaimTest::Equals(json!(1)))], ..Default::default() },
            Rules { claims: vec![rule("tier", ClaimTest::Equals(json!(["gold"])))], ..Default::default() },
        ] {
            assert!(matches!(check(&bad, &p), Err(AuthError::Forbidden(_))), "{bad:?}");
        }
        let unverified = principal(json!({"sub": "a", "email": "a@example.com", "email_verified": false}));
        let by_domain = Rules { email_domains: vec!["example.com".into()], ..Default::default() };
        assert!(check(&by_domain, &unverified).is_err());
    }
}
