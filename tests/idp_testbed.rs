//! Smoke tests of the real-IdP test bed itself (tests/idp/server.mjs + tests/support/idp.rs):
//! if these fail, every gateway test that relies on the IdP is suspect.
//! Needs node and `cd tests/idp && npm ci`.

#[path = "support/idp.rs"]
mod idp;

use idp::{http_get, jwt_parts, key_file, kid_of, Idp, IdpOptions, API_RESOURCE};

fn is_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[test]
fn discovery_names_the_issuer_and_endpoints() {
    let idp = Idp::start(IdpOptions::default());
    assert!(idp.issuer.starts_with("http://127.0.0.1:"), "issuer {}", idp.issuer);
    assert_ne!(idp.port, 0);

    let doc = idp.discovery();
    assert_eq!(doc["issuer"], idp.issuer.as_str());
    for (field, path) in [
        ("authorization_endpoint", "/auth"),
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("userinfo_endpoint", "/userinfo"),
        ("introspection_endpoint", "/introspection"),
        ("revocation_endpoint", "/revocation"),
        ("end_session_endpoint", "/end_session"),
    ] {
        assert_eq!(doc[field], idp.url(path).as_str(), "{field} in {doc}");
    }
    let grants = doc["grant_types_supported"].to_string();
    assert!(grants.contains("client_credentials"), "{grants}");
    assert_eq!(doc["backchannel_logout_supported"], true);

    let jwks = idp.jwks();
    assert_eq!(jwks["keys"][0]["kid"], kid_of(&key_file("rsa1.json")).as_str());
    assert!(jwks["keys"][0].get("d").is_none(), "private key material served at /jwks: {jwks}");
}

#[test]
fn client_credentials_with_resource_is_an_rfc9068_jwt() {
    let idp = Idp::start(IdpOptions::default());
    let body = idp.client_credentials_token("m2m", "m2m-secret", Some("api:read api:write"), Some(API_RESOURCE));
    let token = body["access_token"].as_str().unwrap_or_default();
    assert!(is_jwt(token), "not a JWT: {body}");
    assert_eq!(body["expires_in"], 300);

    let (header, claims) = jwt_parts(token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], kid_of(&key_file("rsa1.json")).as_str());
    assert_eq!(claims["iss"], idp.issuer.as_str());
    assert_eq!(claims["aud"], API_RESOURCE);
    assert_eq!(claims["client_id"], "m2m");
    assert_eq!(claims["sub"], "m2m");
    assert_eq!(claims["scope"], "api:read api:write");
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    assert_eq!(exp.zip(iat).map(|(e, i)| e - i), Some(300), "{claims}");

    // client_secret_post client, and an unknown resource is refused.
    let (status, body) = idp.token_request(
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "m2m-post"),
            ("client_secret", "m2m-post-secret"),
            ("scope", "api:read"),
            ("resource", API_RESOURCE),
        ],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap_or_default());
    assert_eq!(claims["client_id"], "m2m-post");
    assert_eq!(claims["scope"], "api:read");

    let (status, body) = idp.token_request(
        &[("grant_type", "client_credentials"), ("resource", "https://unknown.test")],
        Some(("m2m", "m2m-secret")),
    );
    assert_eq!((status, &body["error"]), (400, &"invalid_target".into()), "{body}");
}

#[test]
fn access_token_ttl_and_ec_keys_are_configurable() {
    let idp =
        Idp::start(IdpOptions { jwks_file: Some(key_file("ec1.json")), at_ttl: Some(60), ..IdpOptions::default() });
    let body = idp.client_credentials_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    assert_eq!(body["expires_in"], 60);
    let (header, _) = jwt_parts(body["access_token"].as_str().unwrap_or_default());
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], kid_of(&key_file("ec1.json")).as_str());
}

#[test]
fn token_without_resource_is_opaque_and_introspectable_by_the_gateway() {
    let idp = Idp::start(IdpOptions::default());
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read api:write"), None);
    assert!(!token.contains('.'), "expected an opaque token, got {token}");

    let info = idp.introspect("gateway", "gateway-secret", &token);
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "m2m");
    assert_eq!(info["scope"], "api:read api:write");
    assert_eq!(info["iss"], idp.issuer.as_str());

    // Other clients may not introspect tokens that are not theirs; garbage is inactive.
    assert_eq!(idp.introspect("m2m-post", "m2m-post-secret", &token)["active"], false);
    assert_eq!(idp.introspect("gateway", "gateway-secret", "no-such-token")["active"], false);
}

#[test]
fn counters_count_requests_per_endpoint_and_reset() {
    let idp = Idp::start(IdpOptions::default());
    idp.reset_counters();
    assert_eq!(idp.count("token"), 0);

    idp.client_credentials_token("m2m", "m2m-secret", None, Some(API_RESOURCE));
    let token = idp.access_token("m2m", "m2m-secret", None, None);
    idp.introspect("gateway", "gateway-secret", &token);
    idp.jwks();
    idp.discovery();

    let counters = idp.counters();
    assert_eq!(counters["token"], 2, "{counters}");
    assert_eq!(counters["introspection"], 1, "{counters}");
    assert_eq!(counters["jwks"], 1, "{counters}");
    assert_eq!(counters[".well-known/openid-configuration"], 1, "{counters}");
    assert!(counters.get("__test").is_none(), "test endpoints must not count: {counters}");

    idp.reset_counters();
    assert_eq!(idp.counters(), serde_json::json!({}));
}

#[test]
fn injected_failures_and_delays() {
    let idp = Idp::start(IdpOptions::default());
    idp.set_failure("jwks", 503);
    assert_eq!(http_get(&idp.url("/jwks")).status, 503);
    idp.set_failure("jwks", 0);
    assert_eq!(http_get(&idp.url("/jwks")).status, 200);
    assert_eq!(idp.count("jwks"), 2, "failed requests are counted too");

    idp.set_delay("jwks", 300);
    let started = std::time::Instant::now();
    assert_eq!(http_get(&idp.url("/jwks")).status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    idp.set_delay("jwks", 0);
}

#[test]
fn restart_on_the_same_port_with_another_key_rotates_the_kid() {
    let mut idp = Idp::start(IdpOptions::default());
    let (port, issuer) = (idp.port, idp.issuer.clone());
    let old_kid = kid_of(&key_file("rsa1.json"));
    assert_eq!(idp.jwks()["keys"][0]["kid"], old_kid.as_str());
    idp.stop();

    let idp = Idp::start(IdpOptions { port, jwks_file: Some(key_file("rsa2.json")), ..IdpOptions::default() });
    assert_eq!(idp.issuer, issuer);
    let new_kid = kid_of(&key_file("rsa2.json"));
    assert_ne!(new_kid, old_kid);
    let jwks = idp.jwks();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    assert_eq!(jwks["keys"][0]["kid"], new_kid.as_str());

    let token = idp.access_token("m2m", "m2m-secret", None, Some(API_RESOURCE));
    assert_eq!(jwt_parts(&token).0["kid"], new_kid.as_str());
}

#[test]
fn extra_clients_come_from_the_environment() {
    let extra = r#"[{"client_id":"extra","client_secret":"extra-secret",
        "grant_types":["client_credentials"],"response_types":[],"redirect_uris":[],"scope":"api:read"}]"#;
    let idp = Idp::start(IdpOptions::default().with_env("IDP_EXTRA_CLIENTS", extra));
    let token = idp.access_token("extra", "extra-secret", Some("api:read"), Some(API_RESOURCE));
    assert_eq!(jwt_parts(&token).1["client_id"], "extra");
}

#[test]
#[should_panic(expected = "exited before it was ready")]
fn a_broken_configuration_fails_the_start_loudly() {
    // A client without its mandatory secret: the IdP validates clients at start and exits.
    Idp::start(IdpOptions::default().with_env("IDP_EXTRA_CLIENTS", r#"[{"client_id":"no-secret"}]"#));
}
