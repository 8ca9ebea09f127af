//! Configuration changes without a restart, through the real binary and the real OpenID
//! Provider: a route added, a rule tightened and an issuer added take effect (by the file check
//! and by SIGHUP); an invalid file changes nothing and is reported; a request in flight during a
//! reload completes on the configuration it started with; cached keys and verified tokens of an
//! unchanged issuer survive (no new JWKS fetch, counted at the provider), and so do sessions.

mod common;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/login.rs"]
mod login;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::wait_ready;
use common::{admin, dead_port, echo, full, get, metric, upstream, wait_until, Gateway, BASE};
use idp::{Idp, IdpOptions, API_RESOURCE};

fn issuer(name: &str, url: &str) -> String {
    format!("\n[[issuer]]\nname = \"{name}\"\nurl = \"{url}\"\naudiences = [\"{API_RESOURCE}\"]\n")
}

fn public_route(name: &str, path: &str, up: SocketAddr) -> String {
    format!("\n[[route]]\nname = \"{name}\"\nauth = \"none\"\npath = \"{path}\"\nupstream = \"http://{up}\"\n")
}

fn bearer_route(name: &str, path: &str, up: SocketAddr, issuers: &str, rules: &str) -> String {
    let mut s = format!(
        "\n[[route]]\nname = \"{name}\"\nauth = \"bearer\"\npath = \"{path}\"\nissuers = [{issuers}]\nupstream = \"http://{up}\"\n"
    );
    if !rules.is_empty() {
        s.push_str(&format!("[route.rules]\n{rules}\n"));
    }
    s
}

/// `BASE` with the file checked every `interval` ("0" for SIGHUP only).
fn base(interval: &str) -> String {
    BASE.replacen("workers = 2", &format!("workers = 2\nconfig_check_interval = \"{interval}\""), 1)
}

fn rewrite(gw: &Gateway, config: &str) {
    // Written beside and renamed over, as a ConfigMap update does: never read half-written.
    let file = gw.dir.path("tollgate.toml");
    let tmp = gw.dir.path("tollgate.toml.new");
    std::fs::write(&tmp, config).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
}

fn reloads(gw: &Gateway, outcome: &str) -> f64 {
    metric(gw, "tollgate_config_reloads_total", &[("outcome", outcome)])
}

fn wait_reloads(gw: &Gateway, outcome: &str, n: f64) {
    wait_until(&format!("{n} reload(s) with outcome {outcome}"), Duration::from_secs(15), || {
        (reloads(gw, outcome) >= n).then_some(())
    });
}

fn bearer(gw: &Gateway, path: &str, token: &str) -> u16 {
    get(gw.addr, path, &[("Authorization", &format!("Bearer {token}"))]).status
}

#[test]
fn a_route_added_to_the_file_is_served_within_the_check_interval() {
    let up = echo();
    let before = base("200ms") + &public_route("a", "/a/", up.addr);
    let gw = Gateway::start(&before);
    assert_eq!(get(gw.addr, "/a/x", &[]).status, 200);
    assert_eq!(get(gw.addr, "/b/x", &[]).status, 404);
    let started = metric(&gw, "tollgate_config_last_reload_success_timestamp_seconds", &[]);
    assert!(started > 1.7e9, "the start counts as the first configuration: {started}");

    rewrite(&gw, &(before + &public_route("b", "/b/", up.addr)));
    wait_until("the new route to answer", Duration::from_secs(10), || {
        (get(gw.addr, "/b/x", &[]).status == 200).then_some(())
    });
    assert_eq!(get(gw.addr, "/a/x", &[]).status, 200, "the old route still serves");
    assert_eq!(reloads(&gw, "success"), 1.0);
    assert_eq!(reloads(&gw, "failure"), 0.0);
    gw.wait_log("configuration reloaded");
}

/// With the file check off, a tightened rule waits for SIGHUP; then it applies at once, while
/// the issuer (unchanged) keeps its keys: the provider sees no second JWKS fetch, and the
/// token verified before the reload is answered from the carried-over cache.
#[test]
fn sighup_applies_a_tightened_rule_and_keeps_the_unchanged_issuers_keys() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let head = base("0") + &issuer("idp", &idp.issuer);
    let gw = Gateway::start(&(head.clone() + &bearer_route("api", "/api/", up.addr, "\"idp\"", "")));
    wait_ready(&gw);
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    assert_eq!(bearer(&gw, "/api/x", &token), 200);
    let fetches = idp.count("jwks");
    assert!(fetches >= 1, "{}", idp.counters());
    let misses = metric(&gw, "tollgate_verified_cache_total", &[("result", "miss")]);

    let tightened = head + &bearer_route("api", "/api/", up.addr, "\"idp\"", "scopes = [\"api:write\"]");
    rewrite(&gw, &tightened);
    // The file check is off: still the old rule (a reload would have been counted by now if the
    // check ran, since SIGHUP below is observed through the same counter).
    assert_eq!(bearer(&gw, "/api/x", &token), 200);
    assert_eq!(reloads(&gw, "success"), 0.0);

    gw.signal("HUP");
    wait_reloads(&gw, "success", 1.0);
    assert_eq!(bearer(&gw, "/api/x", &token), 403, "the tightened rule applies");
    assert_eq!(idp.count("jwks"), fetches, "no new JWKS fetch for an unchanged issuer: {}", idp.counters());
    assert_eq!(
        metric(&gw, "tollgate_verified_cache_total", &[("result", "miss")]),
        misses,
        "the token verified before the reload was not verified again"
    );
    assert_eq!(admin(&gw, "/readyz").status, 200);
}

#[test]
fn an_issuer_added_by_a_reload_is_discovered_and_trusted() {
    let (a, b) = (Idp::start(IdpOptions::default()), Idp::start(IdpOptions::default()));
    let up = echo();
    let head = base("200ms") + &issuer("a", &a.issuer);
    let gw = Gateway::start(&(head.clone() + &bearer_route("api", "/api/", up.addr, "\"a\"", "")));
    wait_ready(&gw);
    let token_b = b.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    assert_eq!(bearer(&gw, "/api/x", &token_b), 401, "issuer b is not trusted yet");

    rewrite(&gw, &(head + &issuer("b", &b.issuer) + &bearer_route("api", "/api/", up.addr, "\"a\", \"b\"", "")));
    wait_until("issuer b's token to be accepted", Duration::from_secs(15), || {
        (bearer(&gw, "/api/x", &token_b) == 200).then_some(())
    });
    assert_eq!(metric(&gw, "tollgate_issuer_ready", &[("issuer", "b")]), 1.0);
    let token_a = a.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    assert_eq!(bearer(&gw, "/api/x", &token_a), 200);
}

#[test]
fn an_invalid_file_changes_nothing_and_is_reported_with_file_and_field() {
    let up = echo();
    let good = base("200ms") + &public_route("a", "/a/", up.addr);
    let gw = Gateway::start(&good);
    let bad = good.clone()
        + &public_route("b", "/b/", up.addr)
        + "\n[[route]]\nname = \"c\"\nauth = \"none\"\npath = \"/c/\"\nupstream = \"http://127.0.0.1:1\"\ntimeout = \"soon\"\n";
    rewrite(&gw, &bad);
    wait_reloads(&gw, "failure", 1.0);
    assert_eq!(get(gw.addr, "/a/x", &[]).status, 200, "the running configuration stays");
    assert_eq!(get(gw.addr, "/b/x", &[]).status, 404, "nothing from the invalid file applies");
    let logs = wait_until("the refusal in the log", Duration::from_secs(5), || {
        let logs = gw.logs();
        logs.contains("configuration reload refused").then_some(logs)
    });
    let line = logs.lines().find(|l| l.contains("configuration reload refused")).unwrap();
    assert!(line.contains("tollgate.toml") && line.contains("route[2].timeout"), "file and field named: {line}");
    // Reported once, not at every check.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(reloads(&gw, "failure"), 1.0);
    // Fixed: applied.
    rewrite(&gw, &(good + &public_route("b", "/b/", up.addr)));
    wait_reloads(&gw, "success", 1.0);
    assert_eq!(get(gw.addr, "/b/x", &[]).status, 200);
}

/// A request that started before a reload finishes on the configuration it started with, even
/// when the reload removes its route; new requests see the new configuration.
#[test]
fn a_request_in_flight_during_a_reload_completes() {
    let (arrived_tx, arrived) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let arrived_tx = Arc::new(Mutex::new(arrived_tx));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let slow = rt.block_on(upstream(Arc::new(move |_req| {
        let (arrived_tx, release_rx) = (arrived_tx.clone(), release_rx.clone());
        Box::pin(async move {
            let _ = arrived_tx.lock().unwrap().send(());
            let rx = release_rx.clone();
            let _ = tokio::task::spawn_blocking(move || rx.lock().unwrap().recv_timeout(Duration::from_secs(20))).await;
            hyper::Response::new(full("finished"))
        })
    })));
    let up = echo();
    let with_slow = base("200ms") + &public_route("a", "/a/", up.addr) + &public_route("slow", "/slow/", slow);
    let gw = Gateway::start(&with_slow);
    let addr = gw.addr;
    let in_flight = std::thread::spawn(move || get(addr, "/slow/x", &[]));
    arrived.recv_timeout(Duration::from_secs(10)).expect("the slow request reached its upstream");

    rewrite(&gw, &(base("200ms") + &public_route("a", "/a/", up.addr)));
    wait_reloads(&gw, "success", 1.0);
    assert_eq!(get(gw.addr, "/slow/x", &[]).status, 404, "new requests see the new configuration");
    release.send(()).unwrap();
    let r = in_flight.join().unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "finished"), "{r:?}");
}

/// A signed-in session survives a reload that changes routes (cookie sessions are sealed with
/// the same secret), and a restart-only change is named in the log rather than applied.
#[test]
fn sessions_survive_a_reload_and_restart_only_changes_are_named() {
    let port = dead_port().port();
    let public = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(
        IdpOptions::default()
            .with_env("IDP_WEB_REDIRECT_URIS", format!("{public}/oauth2/callback"))
            .with_env("IDP_WEB_POST_LOGOUT_URIS", format!("{public}/")),
    );
    let up = echo();
    let config = |extra: &str, idle: &str| {
        let head = base("200ms").replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
        let head = head.replacen("workers = 2", &format!("workers = 2\nidle_timeout = \"{idle}\""), 1);
        format!(
            "{head}{}\n[login]\nclient_id = \"web\"\nclient_secret = \"web-secret\"\npublic_url = \"{public}\"\n\
             cookie_secret = \"0123456789abcdef0123456789abcdef\"\nscopes = [\"openid\", \"email\", \"profile\"]\n\
             {extra}\n[[route]]\nname = \"app\"\nauth = \"login\"\npath = \"/\"\nupstream = \"http://{}\"\n",
            issuer("idp", &idp.issuer),
            up.addr
        )
    };
    let gw = Gateway::start(&config("", "60s"));
    wait_ready(&gw);
    let done = login::login(&public, "/app", "alice");
    let cookie = done.cookie_header();
    let whoami = |path: &str| get(gw.addr, path, &[("Cookie", &cookie), ("Accept", "application/json")]);
    let r = whoami("/app");
    assert_eq!(r.status, 200, "{r:?}");

    rewrite(&gw, &(config("", "30s") + &public_route("public", "/public/", up.addr)));
    wait_reloads(&gw, "success", 1.0);
    assert_eq!(get(gw.addr, "/public/x", &[]).status, 200, "the reload applied");
    let r = whoami("/app");
    assert_eq!(r.status, 200, "the session survived: {r:?}");
    assert_eq!(r.json()["headers"]["x-forwarded-preferred-username"], serde_json::json!(["alice"]), "{r:?}");
    let logs = wait_until("the restart-only warning", Duration::from_secs(5), || {
        let logs = gw.logs();
        logs.contains("takes effect only after a restart").then_some(logs)
    });
    assert!(logs.contains("server.idle_timeout"), "{logs}");
}
