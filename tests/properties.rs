//! The fuzz targets' properties (fuzz/src/props.rs, included here) checked with proptest on
//! stable, so CI runs them on every change. Inputs are generated from the pieces attacks are made
//! of (dot segments, escapes, look-alike header names, tampered seals); case counts are bounded
//! so the file runs in a few seconds. `cargo +nightly fuzz` explores further (fuzz/README.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/src/props.rs"]
mod props;

use proptest::prelude::*;
use serde_json::{json, Value};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() }
}

/// `name: value` lines.
fn lines(pairs: &[(String, String)]) -> Vec<u8> {
    pairs.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>().join("\n").into_bytes()
}

fn prefixed(flags: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![flags];
    v.extend_from_slice(body);
    v
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn paths(raw in "/?(/|[a-z]|\\.|\\.\\.|%2[eEfF]|%5[cC]|%00|%[0-9A-Fa-f]{2}|%|;|;x|\\\\|~|\u{e9}|\t){0,14}") {
        props::path(&raw);
    }

    #[test]
    fn authorities(raw in "(\\[[0-9a-fA-F:.%]{0,12}\\]|[a-zA-Z0-9._-]{0,14}|[0-9.]{0,15}|0[xX][0-9a-f]{1,8}|[#?/\\\\@ %:.,a-z~*]{0,6}){1,2}(:[0-9+]{0,6})?") {
        props::authority(raw.as_bytes());
    }

    #[test]
    fn request_ids(id in prop_oneof!["[A-Za-z0-9._:-]{0,130}", "[ -~\t]{0,20}"], raw in proptest::collection::vec(any::<u8>(), 0..40)) {
        props::request_id(id.as_bytes());
        props::request_id(&raw);
    }
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn requests_have_one_authority(
        version in any::<u8>(),
        target in "(/x|\\*|https?://[a-zA-Z0-9.:@_-]{0,14}/x|[a-z.:]{1,10})",
        hosts in proptest::collection::vec("[a-zA-Z0-9.:@_ -]{0,14}", 0..3),
    ) {
        let mut data = vec![version];
        data.extend_from_slice(target.as_bytes());
        for h in hosts {
            data.push(b'\n');
            data.extend_from_slice(h.as_bytes());
        }
        props::of_request(&data);
    }

    #[test]
    fn bearer_tokens(
        query in "(access_token=[a-z%.+]{0,5}|a=1)?(&access_token=[a-z]{0,3})?",
        auth in proptest::collection::vec("(Bearer|bearer|BEARER|Basic|DPoP|)( {0,3})[a-zA-Z0-9._~+/= \"-]{0,12}", 0..3),
        cookie in "(at=[a-z]{0,4})?(; ?x=1)?",
    ) {
        let mut pairs: Vec<(String, String)> = auth.into_iter().map(|a| ("authorization".to_string(), a)).collect();
        pairs.push(("cookie".into(), cookie));
        let mut data = format!("/x?{query}\n").into_bytes();
        data.extend(lines(&pairs));
        props::token(&data);
    }

    #[test]
    fn cookie_lines(pairs in proptest::collection::vec(
        ("(s|s_[0-9]{1,2}|s_0[0-9]|sx|s_\\+1|s_-1|other| s|s )", "[A-Za-z0-9._=-]{0,6}", "(; |;|;;| ; )"), 0..24)) {
        let mut line = String::new();
        for (n, v, sep) in pairs {
            line.push_str(&format!("{n}={v}{sep}"));
        }
        let half = line.len() / 2;
        let split = (half..line.len()).find(|&i| line.is_char_boundary(i)).unwrap_or(line.len());
        props::cookie(format!("{}\n{}", &line[..split], &line[split..]).as_bytes());
    }

    #[test]
    fn header_names(
        flags in any::<u8>(),
        names in proptest::collection::vec(
            "([xX][-_.]?)?(forwarded|Forwarded|FORWARDED|auth[-_]request)[-_.]?(user|for|host|proto|email|client[-_.]cert|groups)?|host|HOST|Host|x[-_.]request[-_.]id|authorization|connection|upgrade|keep-alive|te|x-internal-[a-z]{0,3}|x[-_.]internal|x-debug|x_tenant|cf-access-[a-z]{0,4}|x-ssl-client-[a-z]{0,4}|x-custom|[a-z_-]{1,8}",
            0..10),
        values in proptest::collection::vec("[ -~]{0,8}", 10),
    ) {
        let pairs: Vec<(String, String)> =
            names.into_iter().zip(values).map(|(n, v)| (n.to_lowercase(), v.trim().to_string())).collect();
        let mut pairs = pairs;
        pairs.push(("connection".into(), "upgrade, x-custom".into()));
        pairs.push(("upgrade".into(), "websocket".into()));
        props::header_names(&prefixed(flags, &lines(&pairs)));
    }

    #[test]
    fn forwarding(
        flags in any::<u8>(),
        headers in proptest::collection::vec((
            "(x-original-url|x-forwarded-uri|x-original-uri|x-forwarded-host|x-forwarded-proto|host|x-forwarded-for)",
            "((https?|HTTP|ftp)://)?([a-zA-Z.]{1,8}|app\\.example\\.com)(:[0-9]{1,5})?(/[a-z#?.]{0,6})?|/[a-z]{0,4}|https?|1\\.2\\.3\\.4",
        ), 0..6),
    ) {
        let pairs: Vec<(String, String)> = headers.into_iter().collect();
        props::forwarded(&prefixed(flags, &lines(&pairs)));
    }

    #[test]
    fn redirects(rd in "(/|//|/\\\\|\\\\|https?://|HTTPS://|%2[fF]|%5[cC]|%09|%0a|%40|@|app\\.example\\.com|evil\\.com|docs\\.example\\.com|a\\.trusted\\.example|:8443|:443|\\.|\\?|#|\u{e9}| |\t|[a-z]){0,10}") {
        props::redirect(&rd);
    }

    #[test]
    fn token_responses(
        status in any::<u8>(),
        access in proptest::option::of("[a-zA-Z0-9._-]{0,12}"),
        token_type in prop_oneof![Just(None), Just(Some("Bearer")), Just(Some("bearer")), Just(Some("")), Just(Some("DPoP")), Just(Some("mac"))],
        refresh in proptest::option::of("[a-zA-Z0-9]{0,12}"),
        error in proptest::option::of("[a-z_]{0,12}"),
        expires in prop_oneof![Just(json!(3600)), Just(json!(-1)), Just(json!("60")), Just(Value::Null)],
    ) {
        let mut body = json!({"expires_in": expires});
        if let Some(a) = access { body["access_token"] = a.into(); }
        if let Some(t) = token_type { body["token_type"] = t.into(); }
        if let Some(r) = refresh { body["refresh_token"] = r.into(); }
        if let Some(e) = error { body["error"] = e.into(); }
        props::token_response(&prefixed(status, body.to_string().as_bytes()));
    }

    #[test]
    fn discovery_documents(
        issuer in prop_oneof![Just(props::ISSUER.to_string()), Just(format!("{}/", props::ISSUER)), Just("https://evil.example".to_string())],
        endpoints in proptest::collection::vec(proptest::option::of(
            "(https?|HTTP|ftp)://([a-z]@)?(localhost|127\\.0\\.0\\.1|\\[::1\\]|idp\\.example\\.com|evil\\.com|127\\.0\\.0\\.1\\.evil\\.com|localhost\\.evil\\.com)(:[0-9]{1,4})?/[a-z]{0,3}"), 6),
    ) {
        let mut doc = json!({"issuer": issuer});
        for (name, e) in ["jwks_uri", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "introspection_endpoint", "end_session_endpoint"].iter().zip(endpoints) {
            if let Some(e) = e { doc[*name] = e.into(); }
        }
        props::discovery(doc.to_string().as_bytes());
    }

    #[test]
    fn configs(
        path in "(/|/[a-z]{0,3}|//a|/a/\\.\\./b|/%2e|/a%2fb|[a-z]{0,3}|/\\$\\{HOST\\}|/\\$\\$x)",
        url in "(https://idp\\.example\\.com|http://idp\\.example\\.com|\\$\\{ISSUER_URL\\}|\\$\\{NOPE\\}|\\$\\{NOPE:-https://d\\.example\\}|\\$\\{BAD NAME\\}|\\$\\{OPEN|\\$\\{EMPTY:-x\\}|ftp://x|)",
        upstream in "(http://127\\.0\\.0\\.1:9|\\$\\{UPSTREAM_URL\\}|http://\\[::1\\]:[0-9]{1,6}|https://a\\.example/base/|a\\.example|http://a@b)",
        duration in "([0-9]{0,4}(ms|s|m|h|d|x|)|\\$\\{PORT\\}s|-1s)",
        listen in "(127\\.0\\.0\\.1:[0-9]{1,6}|\\[::1\\]:0|:80|\\$\\{HOST\\}:\\$\\{PORT\\}|0\\.0\\.0\\.0)",
        host in "(a\\.example|\\*\\.example\\.com|\\*|A\\.EXAMPLE:80|a b|)",
        extra in "(|unknown = 1|\\[server\\]|auth = \"none\"|rules = \\{ scopes = \\[\"a\"\\] \\})",
    ) {
        let text = format!(
            "[server]\nlisten = \"{listen}\"\nidle_timeout = \"{duration}\"\n\n[[issuer]]\nname = \"idp\"\nurl = \"{url}\"\naudiences = [\"api\"]\nleeway = \"{duration}\"\n\n[[route]]\nname = \"r\"\nauth = \"bearer\"\nhost = \"{host}\"\npath = \"{path}\"\nupstream = \"{upstream}\"\n{extra}\n"
        );
        props::config(&text);
    }

    #[test]
    fn key_sets(keys in proptest::collection::vec((0u8..6, any::<u8>(), 0u8..4, proptest::option::of("[a-z0-9]{1,3}")), 0..5)) {
        let rsa: Value = serde_json::from_str(include_str!("idp/keys/rsa1.json")).unwrap();
        let rsa2: Value = serde_json::from_str(include_str!("idp/keys/rsa2.json")).unwrap();
        let ec: Value = serde_json::from_str(include_str!("idp/keys/ec1.json")).unwrap();
        let algs = [None, Some("RS256"), Some("ES256"), Some("HS256"), Some("PS512"), Some("none"), Some("ES384"), Some("EdDSA")];
        let uses = [None, Some("sig"), Some("enc"), Some("")];
        let list: Vec<Value> = keys.into_iter().map(|(kind, bits, u, kid)| {
            let mut k = match kind {
                0 => json!({"kty": "RSA", "n": rsa["keys"][0]["n"], "e": "AQAB"}),
                1 => json!({"kty": "RSA", "n": rsa2["keys"][0]["n"], "e": rsa2["keys"][0]["e"]}),
                2 => json!({"kty": "EC", "crv": "P-256", "x": ec["keys"][0]["x"], "y": ec["keys"][0]["y"]}),
                3 => json!({"kty": "EC", "crv": "P-384", "x": ec["keys"][0]["x"], "y": ec["keys"][0]["y"]}),
                4 => json!({"kty": "oct", "k": "c2VjcmV0"}),
                _ => json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            };
            if let Some(alg) = algs[usize::from(bits % 8)] { k["alg"] = alg.into(); }
            if let Some(u) = uses[usize::from(u)] { k["use"] = u.into(); }
            if bits & 0x40 != 0 { k["key_ops"] = json!(["encrypt"]); }
            if bits & 0x80 != 0 { k["key_ops"] = json!(["verify"]); }
            if let Some(kid) = kid { k["kid"] = kid.into(); }
            k
        }).collect();
        props::jwks(json!({"keys": list}).to_string().as_bytes());
    }

    #[test]
    fn unsigned_tokens(
        alg in "(RS256|ES256|PS256|HS256|none|NONE|RS512|EdDSA|)",
        header_extra in "(|,\"crit\":\\[\"exp\"\\]|,\"jku\":\"https://evil\"|,\"jwk\":\\{\\}|,\"kid\":\"rsa1\"|,\"kid\":\"ec1\"|,\"kid\":null|,\"typ\":\"at\\+jwt\")",
        sig in "[A-Za-z0-9_-]{0,12}",
        aud in "(\"api\"|\\[\"x\",\"api\"\\]|1|null)",
        shape in 0u8..4,
    ) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let header = format!("{{\"alg\":\"{alg}\"{header_extra}}}");
        let payload = format!("{{\"iss\":\"{}\",\"aud\":{aud},\"exp\":{},\"sub\":\"u\"}}", props::ISSUER, props::NOW + 60);
        let token = match shape {
            0 => format!("{}.{}.{sig}", b64(&header), b64(&payload)),
            1 => format!("{}.{}.", b64(&header), b64(&payload)),
            2 => format!("{}.{}", b64(&header), b64(&payload)),
            _ => format!("{}.{}.{sig}.x.y", b64(&header), b64(&payload)),
        };
        props::jwt_raw(&token);
    }
}

proptest! {
    // Sealing, chunking and signing cost more per case.
    #![proptest_config(cases(100))]

    #[test]
    fn sealed_cookies(op in any::<u8>(), pos in any::<u16>(), xor in any::<u8>(), len in 0u8..48, claims in "(\\{\"sub\":\"[a-z]{0,8}\"\\}|[a-z]{0,10}|\\[1\\])") {
        let mut data = vec![op];
        data.extend_from_slice(&pos.to_le_bytes());
        data.extend_from_slice(&[xor, len]);
        data.extend_from_slice(claims.as_bytes());
        props::cookie_sealed(&data);
    }

    #[test]
    fn signed_tokens(
        op in any::<u8>(),
        pos in any::<u16>(),
        xor in any::<u8>(),
        extra in "(|\\{\\}|\\{\"alg\":\"RS384\"\\}|\\{\"alg\":\"none\"\\}|\\{\"kid\":\"rsa1\"\\}|\\{\"kid\":\"ec1\"\\}|\\{\"crit\":\\[\\]\\}|\\{\"jwk\":null\\}|\\{\"typ\":\"JWT\"\\})",
        claims in "(|\\{\\}|\\{\"iss\":\"https://idp\\.example\\.com\",\"aud\":\"api\",\"sub\":\"u\",\"exp\":1800000100\\}|\\{\"iss\":\"https://idp\\.example\\.com\",\"aud\":\\[\"api\"\\],\"sub\":\"u\",\"exp\":1799999000\\})",
    ) {
        // RSA signing is the slow part: most cases take the ES256 key.
        let op = if op & 6 == 0 && pos % 4 != 0 { op | 2 } else { op };
        let mut data = vec![op];
        data.extend_from_slice(&pos.to_le_bytes());
        data.push(xor);
        if !extra.is_empty() || !claims.is_empty() {
            data.extend_from_slice(extra.as_bytes());
            data.push(0);
            data.extend_from_slice(claims.as_bytes());
        }
        props::jwt_signed(&data);
    }
}

proptest! {
    // The parsers this session added: DPoP proofs, client certificate headers, trace context,
    // gRPC deadlines, Redis replies and URLs, token exchange answers.
    #![proptest_config(cases(300))]

    #[test]
    fn dpop_proofs(
        op in any::<u8>(),
        pos in any::<u16>(),
        xor in any::<u8>(),
        extra in "(|\\{\\}|\\{\"typ\":\"JWT\"\\}|\\{\"kid\":\"k\"\\}|\\{\"alg\":\"RS256\"\\}|\\{\"jku\":\"https://e\"\\}|\\{\"typ\":\"application/DPoP\\+jwt\"\\})",
        claims in "(|\\{\\}|\\{\"htm\":\"GET\"\\}|\\{\"htu\":\"HTTPS://API\\.example\\.com:443/r/%78\\?q\"\\}|\\{\"htu\":\"https://api\\.example\\.com/r%2Fx\"\\}|\\{\"iat\":1799999900\\}|\\{\"iat\":1800000005\\.5\\}|\\{\"ath\":\"x\"\\}|\\{\"jti\":\"\"\\}|\\{\"nonce\":\"n\"\\})",
    ) {
        let mut data = vec![op & !1];
        data.extend_from_slice(&pos.to_le_bytes());
        data.push(xor);
        if !extra.is_empty() || !claims.is_empty() {
            data.extend_from_slice(extra.as_bytes());
            data.push(0);
            data.extend_from_slice(claims.as_bytes());
        }
        props::dpop_proof(&data);
    }

    #[test]
    fn dpop_headers(raw in "[A-Za-z0-9_.=, -]{0,40}") {
        let mut data = vec![1, 0, 0, 0];
        data.extend_from_slice(raw.as_bytes());
        props::dpop_proof(&data);
    }

    #[test]
    fn client_cert_headers(op in any::<u8>(), pieces in proptest::collection::vec(any::<u8>(), 0..7), raw in "(Hash|Cert|By|[;,=\" \\\\%a-f0-9]){0,12}") {
        let mut data = vec![op & !1];
        data.extend_from_slice(&pieces);
        props::client_cert_header(&data);
        props::client_cert_header(format!("\u{1}{raw}").as_bytes());
    }

    #[test]
    fn trace_contexts(
        version in "(00|01|ff|0)",
        trace in "[0-9a-fA-F]{32}|0{32}|[0-9a-f]{31}",
        span in "[0-9a-f]{16}|0{16}|[0-9a-fA-F]{16}",
        flags in "[0-9a-f]{2}|0g|1",
        twice in any::<bool>(),
        states in proptest::collection::vec("(( ?[a-z][a-z0-9_*/-]{0,5}(@[a-z]{1,3})?|[0-9]{1,2}@[a-z]{1,3}|Up|k|,)=[ -~]{0,6},?){0,3}", 0..3),
    ) {
        let parent = format!("{version}-{trace}-{span}-{flags}");
        let mut pairs = vec![("traceparent".to_string(), parent.clone())];
        if twice { pairs.push(("traceparent".into(), parent)); }
        pairs.extend(states.into_iter().map(|s| ("tracestate".to_string(), s)));
        props::traceparent(&lines(&pairs));
    }

    #[test]
    fn grpc_timeouts(v in "[0-9]{0,10}[HMSmunsh ]?|[+ -]?[0-9]{1,3}[HMS]|[0-9]{1,8}\u{661}") {
        props::grpc_timeout(v.as_bytes());
    }

    #[test]
    fn redis_replies(parts in proptest::collection::vec(
        "\\+OK|\\+[a-z]{0,4}|-ERR [a-z]{0,4}|:-?[0-9]{1,20}|\\$-1|\\$[0-9]{1,2}|\\$17000000|\\$16777216|\\*[0-9]|\\*-1|\\*100001|\\*99999|[a-z]{0,6}|\u{e9}", 0..12),
        ends in proptest::collection::vec(0u8..4, 12),
    ) {
        let mut data = Vec::new();
        for (p, e) in parts.iter().zip(ends) {
            data.extend_from_slice(p.as_bytes());
            data.extend_from_slice([&b"\r\n"[..], b"\n", b"", b"\r\n"][usize::from(e)]);
        }
        props::redis_reply(&data);
    }

    #[test]
    fn redis_urls(
        scheme in "(redis|rediss|redis\\+sentinel|rediss\\+sentinel|http|REDIS)",
        userinfo in "(|:pw@|u:p%40ss@|pass@|u:@|:a/b\\?c@d@|:%zz@|:p%3Aw@)",
        hosts in "([a-zA-Z0-9.-]{0,6}|\\[::1\\]|\\[nothost\\]|\\[::1)(:[0-9+]{0,6})?(,[a-z]{1,3}(:[0-9]{1,5})?){0,2}",
        path in "(|/|/[0-9]{1,6}|/[a-z_.-]{1,5}|/[a-z]{1,3}/[0-9]{1,3}|/m y|/-1)",
        query in "(|\\?sentinel_password=[a-z%0-9]{0,4}|\\?sentinel_username=u&sentinel_password=p|\\?other=1|\\?sentinel_password=a&sentinel_password=b)",
    ) {
        props::redis_url(&format!("{scheme}://{userinfo}{hosts}{path}{query}"));
    }

    #[test]
    fn exchange_answers(
        status in any::<u8>(),
        requested in any::<u8>(),
        access in proptest::option::of("[a-zA-Z0-9._\n-]{0,10}"),
        token_type in prop_oneof![Just(Value::Null), Just(json!("Bearer")), Just(json!("bEaReR")), Just(json!("DPoP")), Just(json!(1))],
        issued in prop_oneof![Just(Value::Null), Just(json!("urn:ietf:params:oauth:token-type:access_token")), Just(json!("urn:ietf:params:oauth:token-type:jwt")), Just(json!("urn:example:t")), Just(json!("urn:ietf:params:oauth:token-type:id_token"))],
        expires in prop_oneof![Just(Value::Null), Just(json!(60)), Just(json!(-1)), Just(json!(1.5)), Just(json!("60"))],
        error in proptest::option::of(prop_oneof![Just(json!("invalid_grant")), Just(json!("invalid_client")), Just(json!("has \"q\"")), Just(json!("")), Just(json!(7))]),
        description in proptest::option::of("[a-z\u{7}\n ]{0,8}"),
        shape in 0u8..4,
    ) {
        let mut body = json!({});
        if let Some(a) = access { body["access_token"] = a.into(); }
        if !token_type.is_null() { body["token_type"] = token_type; }
        if !issued.is_null() { body["issued_token_type"] = issued; }
        if !expires.is_null() { body["expires_in"] = expires; }
        if let Some(e) = error { body["error"] = e; }
        if let Some(d) = description { body["error_description"] = d.into(); }
        let text = match shape {
            0 | 1 => body.to_string(),
            2 => serde_json::to_string_pretty(&body).unwrap(),
            _ => "<html>bad gateway</html>".to_string(),
        };
        let mut data = vec![status, requested];
        data.extend_from_slice(text.as_bytes());
        props::exchange_answer(&data);
    }
}

/// The open-redirect corpora of oauth2-proxy and mod_auth_openidc, line by line.
#[test]
fn public_redirect_corpora() {
    for corpus in
        [include_str!("data/open-redirects-oauth2-proxy.txt"), include_str!("data/open-redirects-mod-auth-openidc.txt")]
    {
        for line in corpus.lines() {
            props::redirect(line);
        }
    }
}

/// Every seed file of the fuzz corpora passes its target's properties (the seeds are regression
/// inputs too: crashes found by fuzzing are kept there and here).
#[test]
fn fuzz_corpora() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 23] = [
        ("authority", |d| drop(props::authority(d))),
        ("config", |d| {
            if let Ok(s) = std::str::from_utf8(d) {
                props::config(s)
            }
        }),
        ("cookie", props::cookie),
        ("cookie_sealed", props::cookie_sealed),
        ("discovery", |d| drop(props::discovery(d))),
        ("forwarded", props::forwarded),
        ("header_names", props::header_names),
        ("host_request", props::of_request),
        ("jwks", props::jwks),
        ("jwt", |d| {
            if let Ok(s) = std::str::from_utf8(d) {
                props::jwt_raw(s)
            }
        }),
        ("jwt_signed", props::jwt_signed),
        ("path", |d| {
            if let Ok(s) = std::str::from_utf8(d) {
                props::path(s)
            }
        }),
        ("redirect", |d| {
            if let Ok(s) = std::str::from_utf8(d) {
                drop(props::redirect(s))
            }
        }),
        ("request_id", props::request_id),
        ("token", props::token),
        ("token_response", props::token_response),
        ("dpop_proof", props::dpop_proof),
        ("client_cert_header", props::client_cert_header),
        ("traceparent", props::traceparent),
        ("grpc_timeout", props::grpc_timeout),
        ("redis_reply", props::redis_reply),
        ("redis_url", |d| {
            if let Ok(s) = std::str::from_utf8(d) {
                props::redis_url(s)
            }
        }),
        ("exchange_answer", props::exchange_answer),
    ];
    let mut seen = 0;
    for (name, check) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(name)) else { panic!("no corpus for {name}") };
        for file in dir {
            let path = file.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its properties", path.display());
            seen += 1;
        }
    }
    assert!(seen > 100, "only {seen} seed files");
}
