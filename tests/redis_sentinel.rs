//! Sessions in Redis that survive losing the primary, and Redis over TLS, through the real
//! binary, the real OpenID Provider (`tests/idp`) and Debian's redis-server 7 as primary,
//! replica and three sentinels (`redis-server sentinel.conf --sentinel`), all on free loopback
//! ports. Sign-in is the scripted browser of `tests/support/login.rs`.
//!
//! Covered: the primary killed (requests fail closed with 503 while no primary can be found; the
//! same session cookie and new sign-ins work once the sentinels promote the replica; the
//! failover counted in the metrics); `SENTINEL FAILOVER` with both servers alive (the demoted
//! primary's connections are dropped, writes go to the new one); `rediss://` with a CA file, a
//! wrong CA refused with a clear log line, `tollgate check` reading the CA file;
//! a back-channel logout token spent once across replicas (its `jti` in Redis);
//! `rediss+sentinel://` with TLS to sentinels and data nodes, an ACL user for the data nodes and
//! another for the sentinels, wrong passwords refused.
//!
//! Needs node with `cd tests/idp && npm ci` and redis-server (`bash tests/run.sh`).

mod common;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/login.rs"]
mod login;
#[path = "support/services.rs"]
mod services;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{dead_port, echo, get, metric, wait_ready, wait_until, Echo, Gateway, RawResponse, TempDir, BASE};
use idp::{Idp, IdpOptions, API_RESOURCE};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use services::{Redis, Resp, Sentinel};

const MASTER: &str = "mymaster";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const JSON: (&str, &str) = ("Accept", "application/json");
/// Small, so a failover takes a second or two rather than the default half minute.
const SENTINEL_TIMING: &str = "sentinel down-after-milliseconds mymaster 400\n\
                               sentinel failover-timeout mymaster 1000\n\
                               sentinel parallel-syncs mymaster 1\n";

// ---- harness ------------------------------------------------------------------------------------

/// A primary, its replica and three sentinels (quorum 2).
struct Cluster {
    primary: Option<Redis>,
    replica: Redis,
    sentinels: Vec<Sentinel>,
}

impl Cluster {
    /// `replica_priority` 0 keeps the sentinels from promoting the replica until it is raised.
    fn start(replica_priority: u32) -> Cluster {
        let primary = Redis::start();
        let replica = Redis::start_with(&args(&[
            "--replicaof",
            "127.0.0.1",
            &primary.port.to_string(),
            "--replica-priority",
            &replica_priority.to_string(),
        ]));
        wait_until("the replica to sync", Duration::from_secs(20), || {
            info(&replica, "replication").contains("master_link_status:up").then_some(())
        });
        let sentinels: Vec<Sentinel> =
            (0..3).map(|_| Sentinel::start(MASTER, primary.port, 2, SENTINEL_TIMING)).collect();
        // A failover needs every sentinel to know the replica and a majority of the others.
        wait_until("the sentinels to find each other and the replica", Duration::from_secs(30), || {
            sentinels.iter().all(|s| s.known(MASTER) == (2, 1)).then_some(())
        });
        Cluster { primary: Some(primary), replica, sentinels }
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    fn primary(&self) -> &Redis {
        self.primary.as_ref().expect("the primary is running")
    }

    /// Waits until every sentinel names `port` as the primary.
    fn wait_primary(&self, port: u16, limit: Duration) {
        wait_until(&format!("the sentinels to name 127.0.0.1:{port}"), limit, || {
            self.sentinels.iter().all(|s| s.primary_port(MASTER) == Some(port)).then_some(())
        });
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn info(redis: &Redis, section: &str) -> String {
    match redis.cmd(&["INFO", section]) {
        Resp::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("INFO: {other:?}"),
    }
}

/// The provider, an echo upstream and a gateway whose login keeps sessions where `store` says.
struct World {
    idp: Idp,
    echo: Echo,
    gw: Gateway,
    public: String,
}

impl World {
    fn start(store: &str) -> World {
        let port = dead_port().port();
        let public = format!("http://127.0.0.1:{port}");
        let idp = Idp::start(
            IdpOptions::default()
                .with_env("IDP_WEB_REDIRECT_URIS", format!("{public}/oauth2/callback"))
                .with_env("IDP_WEB_POST_LOGOUT_URIS", format!("{public}/")),
        );
        let echo = echo();
        let gw = Gateway::start(&config(port, &public, &idp.issuer, echo.addr, store));
        wait_ready(&gw);
        World { idp, echo, gw, public }
    }
}

fn config(port: u16, public: &str, issuer: &str, echo: SocketAddr, store: &str) -> String {
    let base = BASE.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
    format!(
        r#"{base}
[[issuer]]
name = "idp"
url = "{issuer}"
audiences = ["{API_RESOURCE}"]

[login]
client_id = "web"
client_secret = "web-secret"
public_url = "{public}"
cookie_secret = "{SECRET}"
session_store = "redis"
{store}

[[route]]
auth = "login"
name = "app"
path = "/"
upstream = "http://{echo}"
"#
    )
}

fn redis_url(url: &str) -> String {
    format!("redis_url = \"{url}\"\n")
}

fn whoami(gw: &Gateway, cookie: &str) -> RawResponse {
    get(gw.addr, "/whoami", &[("Cookie", cookie), JSON])
}

/// The user the upstream saw, `None` for a 401; panics on anything else.
fn works(gw: &Gateway, cookie: &str) -> Option<String> {
    let resp = whoami(gw, cookie);
    match resp.status {
        200 => {
            resp.json()["headers"]["x-forwarded-user"].as_array().and_then(|v| v.first()?.as_str().map(String::from))
        }
        401 => None,
        other => panic!("unexpected {other}: {}\nlogs:\n{}", resp.body, gw.logs()),
    }
}

/// Signs in as `user`; several requests afterwards, so every worker has opened the session.
fn sign_in(w: &World, user: &str) -> String {
    let cookie = login::login(&w.public, "/r", user).cookie_header();
    for _ in 0..4 {
        assert_eq!(works(&w.gw, &cookie).as_deref(), Some(user));
    }
    cookie
}

fn session_keys(redis: &Redis) -> usize {
    redis.keys("tollgate:session:*").len()
}

// ---- 1. the primary dies ------------------------------------------------------------------------

#[test]
fn a_session_survives_losing_the_primary_and_requests_fail_closed_until_a_replica_is_promoted() {
    let mut cluster = Cluster::start(0);
    let w = World::start(&redis_url(&cluster.url()));
    let cookie = sign_in(&w, "dave");
    // Replicated before the primary goes: WAIT returns how many replicas acknowledged.
    assert_eq!(cluster.primary().cmd(&["WAIT", "1", "2000"]), Resp::Int(1));
    assert_eq!(session_keys(&cluster.replica), 1, "the replica holds the session");

    drop(cluster.primary.take());
    // No replica may be promoted yet (priority 0): the sentinels still name the dead primary,
    // and the gateway must neither serve from its cache nor read the replica.
    let first = whoami(&w.gw, &cookie);
    assert_eq!(first.status, 503, "with the primary down: {} {}", first.status, first.body);
    for _ in 0..5 {
        let resp = whoami(&w.gw, &cookie);
        assert_eq!(resp.status, 503, "fail closed while there is no primary: {}", resp.body);
        assert!(resp.header("set-cookie").is_none(), "{:?}", resp.headers);
    }
    assert!(
        w.gw.logs().contains("session store failed") && w.gw.logs().contains("no primary for \\\"mymaster\\\""),
        "the log says why:\n{}",
        w.gw.logs()
    );

    // Let the sentinels promote the replica; the gateway follows on its own.
    assert_eq!(cluster.replica.cmd(&["CONFIG", "SET", "replica-priority", "100"]), Resp::Simple("OK".into()));
    cluster.wait_primary(cluster.replica.port, Duration::from_secs(60));
    let promoted = Instant::now();
    let (mut refused, mut polls) = (0, 0);
    let back = wait_until("the session to work again", Duration::from_secs(30), || {
        polls += 1;
        let resp = whoami(&w.gw, &cookie);
        match resp.status {
            200 => Some(resp.json()),
            503 => {
                refused += 1;
                None
            }
            other => panic!("during the failover only 200 or 503: got {other} {}", resp.body),
        }
    });
    assert_eq!(back["headers"]["x-forwarded-user"][0], Value::from("dave"), "the same cookie, the same user");
    eprintln!(
        "after the sentinels named the new primary: {refused} of {polls} requests 503, working again after {:?}",
        promoted.elapsed()
    );
    for _ in 0..4 {
        assert_eq!(works(&w.gw, &cookie).as_deref(), Some("dave"));
    }
    // New sign-ins write to the new primary.
    let erin = sign_in(&w, "erin");
    assert_eq!(session_keys(&cluster.replica), 2);
    assert_eq!(works(&w.gw, &erin).as_deref(), Some("erin"));

    let login = [("login", "default")];
    assert_eq!(metric(&w.gw, "tollgate_redis_failovers_total", &login), 1.0);
    assert!(metric(&w.gw, "tollgate_redis_reconnects_total", &login) >= 1.0);
    assert!(metric(&w.gw, "tollgate_redis_retries_total", &login) >= 1.0);
    assert!(
        metric(&w.gw, "tollgate_redis_command_errors_total", &[("login", "default"), ("kind", "no_primary")]) >= 1.0
    );
}

/// Four clients keep requesting with their sessions while the primary is killed: every answer is
/// the right user or a 503, never another status or user, and after the failover every session
/// works again. Prints how long requests failed and how many.
#[test]
fn under_load_a_failover_costs_a_bounded_window_of_503s_and_no_session() {
    let mut cluster = Cluster::start(100);
    let w = std::sync::Arc::new(World::start(&redis_url(&cluster.url())));
    let users = ["ann", "bob", "cat", "dan"];
    let cookies: Vec<String> = users.iter().map(|u| sign_in(&w, u)).collect();
    assert_eq!(cluster.primary().cmd(&["WAIT", "1", "2000"]), Resp::Int(1));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = users
        .iter()
        .zip(cookies)
        .map(|(user, cookie)| {
            let (w, stop, user) = (w.clone(), stop.clone(), user.to_string());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                // Bounded: the main thread stops it, and at worst the deadline does.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < Duration::from_secs(90) {
                    let resp = whoami(&w.gw, &cookie);
                    let who = (resp.status == 200)
                        .then(|| resp.json()["headers"]["x-forwarded-user"][0].as_str().map(String::from))
                        .flatten();
                    assert!(
                        resp.status == 503 || (resp.status == 200 && who.as_deref() == Some(user.as_str())),
                        "{user}: {} {:?} {}",
                        resp.status,
                        who,
                        resp.body
                    );
                    seen.push((started.elapsed(), resp.status));
                }
                seen
            })
        })
        .collect();
    wait_until("load to run", Duration::from_secs(10), || {
        (started.elapsed() > Duration::from_millis(500)).then_some(())
    });
    let killed = started.elapsed();
    drop(cluster.primary.take());
    cluster.wait_primary(cluster.replica.port, Duration::from_secs(60));
    let switched = started.elapsed();
    // Run on until well after the switch, then stop.
    wait_until("load after the switch", Duration::from_secs(30), || {
        (started.elapsed() > switched + Duration::from_secs(2)).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<(Duration, u16)> = clients.into_iter().flat_map(|c| c.join().expect("client thread")).collect();
    let failed: Vec<&(Duration, u16)> = seen.iter().filter(|(_, s)| *s != 200).collect();
    let first = failed.iter().map(|(t, _)| *t).min().unwrap_or(killed);
    let last = failed.iter().map(|(t, _)| *t).max().unwrap_or(killed);
    eprintln!(
        "failover under load: {} requests, {} answered 503 between {:?} and {:?} after the kill (sentinels \
         switched {:?} after it); no other status, no lost session",
        seen.len(),
        failed.len(),
        first.saturating_sub(killed),
        last.saturating_sub(killed),
        switched - killed
    );
    assert!(failed.iter().all(|(t, _)| *t >= killed), "503s before the kill: {failed:?}");
    assert!(last <= switched + Duration::from_secs(1), "503s long after the switch: {failed:?}");
    let after: Vec<_> = seen.iter().filter(|(t, _)| *t > switched + Duration::from_secs(1)).collect();
    assert!(!after.is_empty() && after.iter().all(|(_, s)| *s == 200), "every session works after the failover");
    assert_eq!(metric(&w.gw, "tollgate_redis_failovers_total", &[("login", "default")]), 1.0);
}

// ---- 2. a planned failover ----------------------------------------------------------------------

#[test]
fn sentinel_failover_with_both_servers_alive_moves_reads_and_writes_to_the_new_primary() {
    let cluster = Cluster::start(100);
    let w = World::start(&redis_url(&cluster.url()));
    let dave = sign_in(&w, "dave");
    assert_eq!(cluster.primary().cmd(&["WAIT", "1", "2000"]), Resp::Int(1));

    assert_eq!(cluster.sentinels[0].cmd(&["SENTINEL", "FAILOVER", MASTER]), Resp::Simple("OK".into()));
    cluster.wait_primary(cluster.replica.port, Duration::from_secs(60));
    wait_until("the old primary to become a replica", Duration::from_secs(30), || {
        info(cluster.primary(), "replication").contains("role:slave").then_some(())
    });
    let mut statuses = Vec::new();
    wait_until("the session to work after the failover", Duration::from_secs(30), || {
        let resp = whoami(&w.gw, &dave);
        statuses.push(resp.status);
        (resp.status == 200).then_some(())
    });
    assert!(statuses.iter().all(|s| [200, 503].contains(s)), "{statuses:?}");
    eprintln!("SENTINEL FAILOVER: {} of {} requests after the switch were 503", statuses.len() - 1, statuses.len());
    // A write now goes to the new primary (the old one, a replica, would refuse it).
    let erin = sign_in(&w, "erin");
    assert_eq!(session_keys(&cluster.replica), 2);
    assert_eq!(works(&w.gw, &dave).as_deref(), Some("dave"));
    assert_eq!(works(&w.gw, &erin).as_deref(), Some("erin"));
    // Sign-out deletes on the new primary.
    let out = get(w.gw.addr, "/oauth2/sign_out", &[("Cookie", &erin), ("Accept", "text/html")]);
    assert_eq!(out.status, 302);
    assert_eq!(session_keys(&cluster.replica), 1);
    assert_eq!(works(&w.gw, &erin), None);
    assert_eq!(metric(&w.gw, "tollgate_redis_failovers_total", &[("login", "default")]), 1.0);
}

// ---- 3. state replicas agree on ----------------------------------------------------------------

fn logout_token(issuer: &str, sub: &str, jti: &str) -> String {
    let pem = std::fs::read(idp::key_file("rsa1.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    header.typ = Some("logout+jwt".into());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "iss": issuer, "aud": "web", "iat": now, "exp": now + 120, "jti": jti, "sub": sub,
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn post_logout(gw: &Gateway, token: &str) -> login::Response {
    let body = format!("logout_token={}", login::encode(token));
    login::http(
        "POST",
        &gw.url("/oauth2/backchannel_logout"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    )
}

/// A logout token used at one replica is refused at another: the `jti` is remembered in Redis,
/// not per process (on the old code the second replica accepted it).
#[test]
fn a_back_channel_logout_token_is_spent_once_across_replicas() {
    let redis = Redis::start();
    let w = World::start(&redis_url(&redis.url()));
    let port = dead_port().port();
    let replica = Gateway::start(&config(port, &w.public, &w.idp.issuer, w.echo.addr, &redis_url(&redis.url())));
    wait_ready(&replica);
    let dave = sign_in(&w, "dave");
    let token = logout_token(&w.idp.issuer, "dave", "jti-shared-1");
    let first = post_logout(&w.gw, &token);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(works(&w.gw, &dave), None, "the logout ended the session");
    let again = post_logout(&replica, &token);
    assert_eq!(again.status, 400, "a replay at another replica: {}", again.text());
    assert!(again.text().contains("already used"), "{}", again.text());
    assert_eq!(redis.keys("tollgate:logout-jti:*").len(), 1, "{:?}", redis.keys("*"));
    // Another token for the same user still works at the replica.
    let second = logout_token(&w.idp.issuer, "dave", "jti-shared-2");
    assert_eq!(post_logout(&replica, &second).status, 200);
}

// ---- 4. TLS -------------------------------------------------------------------------------------

/// A CA and a server certificate for 127.0.0.1 and localhost, written to `dir`.
fn certificates(dir: &TempDir, ca_name: &str) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, ca_name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let leaf_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.path("key.pem"), key.serialize_pem()).unwrap();
}

/// Server-side TLS arguments; clients need no certificate. `port` is the TLS port.
fn tls_args(dir: &TempDir, port: u16) -> Vec<String> {
    let p = |f: &str| dir.path(f).display().to_string();
    args(&[
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &p("cert.pem"),
        "--tls-key-file",
        &p("key.pem"),
        "--tls-ca-cert-file",
        &p("ca.pem"),
        "--tls-auth-clients",
        "no",
    ])
}

fn ca_line(dir: &TempDir) -> String {
    format!("redis_ca_file = \"{}\"\n", dir.path("ca.pem").display())
}

#[test]
fn rediss_sessions_work_with_the_ca_file_and_a_wrong_ca_is_refused() {
    let certs = TempDir::new("redis-tls");
    certificates(&certs, "redis test CA");
    let tls_port = services::free_port();
    let redis = Redis::start_with(&tls_args(&certs, tls_port));
    let store = format!("{}{}", redis_url(&format!("rediss://127.0.0.1:{tls_port}")), ca_line(&certs));
    let w = World::start(&store);
    let cookie = sign_in(&w, "dave");
    assert_eq!(session_keys(&redis), 1, "stored over TLS");

    // Another CA: the server's certificate is not trusted, so no session opens, and the log says why.
    let other = TempDir::new("redis-other-ca");
    certificates(&other, "someone else's CA");
    let port = dead_port().port();
    let public = format!("http://127.0.0.1:{port}");
    let wrong = Gateway::start(&config(
        port,
        &public,
        &w.idp.issuer,
        w.echo.addr,
        &format!("{}{}", redis_url(&format!("rediss://127.0.0.1:{tls_port}")), ca_line(&other)),
    ));
    wait_ready(&wrong);
    let resp = whoami(&wrong, &cookie);
    assert_eq!(resp.status, 503, "{}", resp.body);
    wait_until("the TLS error in the log", Duration::from_secs(5), || {
        let logs = wrong.logs();
        (logs.contains("session store failed") && logs.contains("TLS") && logs.contains("UnknownIssuer")).then_some(())
    });
    assert_eq!(metric(&wrong, "tollgate_redis_command_errors_total", &[("kind", "tls")]), 1.0);

    // `tollgate check` reads the CA file.
    let dir = TempDir::new("redis-check");
    let file = dir.path("t.toml");
    let missing = format!("redis_url = \"rediss://127.0.0.1:{tls_port}\"\nredis_ca_file = \"/nonexistent/ca.pem\"\n");
    std::fs::write(&file, config(port, &public, &w.idp.issuer, w.echo.addr, &missing)).unwrap();
    let (code, out) = common::check(&file, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("login.redis_ca_file: cannot read /nonexistent/ca.pem"), "{out}");
    let plain = format!("redis_url = \"redis://127.0.0.1:{tls_port}\"\n{}", ca_line(&certs));
    std::fs::write(&file, config(port, &public, &w.idp.issuer, w.echo.addr, &plain)).unwrap();
    let (code, out) = common::check(&file, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("login.redis_ca_file: needs a rediss://"), "{out}");
    let bad_url = "redis_url = \"redis+sentinel://127.0.0.1:1\"\n";
    std::fs::write(&file, config(port, &public, &w.idp.issuer, w.echo.addr, bad_url)).unwrap();
    let (code, out) = common::check(&file, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("login.redis_url: no master name") && out.contains("expected redis://"), "{out}");
}

#[test]
fn rediss_sentinel_reaches_sentinels_and_primary_over_tls_with_their_own_credentials() {
    let certs = TempDir::new("redis-sentinel-tls");
    certificates(&certs, "redis test CA");
    let tls_port = services::free_port();
    // Data nodes with an ACL user for tollgate, sentinels with one of their own; the default
    // users stay open for replication, the sentinels' own links and this test's commands.
    let app_user = ["--user", "app", "on", ">app-pw", "~*", "+@all"];
    let mut primary_args = tls_args(&certs, tls_port);
    primary_args.extend(args(&["--tls-replication", "yes"]));
    primary_args.extend(args(&app_user));
    let primary = Redis::start_with(&primary_args);
    let replica_tls = services::free_port();
    let mut replica_args = tls_args(&certs, replica_tls);
    replica_args.extend(args(&["--tls-replication", "yes", "--replicaof", "127.0.0.1", &tls_port.to_string()]));
    replica_args.extend(args(&app_user));
    let replica = Redis::start_with(&replica_args);
    wait_until("the replica to sync over TLS", Duration::from_secs(20), || {
        info(&replica, "replication").contains("master_link_status:up").then_some(())
    });
    let p = |f: &str| certs.path(f).display().to_string();
    let sentinel_tls: Vec<u16> = (0..3).map(|_| services::free_port()).collect();
    let sentinels: Vec<Sentinel> = sentinel_tls
        .iter()
        .map(|port| {
            let conf = format!(
                "{SENTINEL_TIMING}tls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\nuser watcher on >sentinel-pw +@all\n",
                p("cert.pem"),
                p("key.pem"),
                p("ca.pem")
            );
            Sentinel::start(MASTER, tls_port, 2, &conf)
        })
        .collect();
    wait_until("the sentinels to see the primary", Duration::from_secs(20), || {
        sentinels.iter().all(|s| s.primary_port(MASTER) == Some(tls_port)).then_some(())
    });
    let hosts: Vec<String> = sentinel_tls.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let url = |data_pw: &str, sentinel_pw: &str| {
        format!(
            "rediss+sentinel://app:{data_pw}@{}/{MASTER}?sentinel_username=watcher&sentinel_password={sentinel_pw}",
            hosts.join(",")
        )
    };
    let w = World::start(&format!("{}{}", redis_url(&url("app-pw", "sentinel-pw")), ca_line(&certs)));
    let cookie = sign_in(&w, "dave");
    assert_eq!(session_keys(&primary), 1);
    assert_eq!(works(&w.gw, &cookie).as_deref(), Some("dave"));
    drop(replica);

    // A wrong password, for the data nodes or for the sentinels, is refused: the credentials are sent.
    for (data_pw, sentinel_pw) in [("bad-pw-x91", "sentinel-pw"), ("app-pw", "bad-pw-x91")] {
        let port = dead_port().port();
        let public = format!("http://127.0.0.1:{port}");
        let store = format!("{}{}", redis_url(&url(data_pw, sentinel_pw)), ca_line(&certs));
        let gw = Gateway::start(&config(port, &public, &w.idp.issuer, w.echo.addr, &store));
        wait_ready(&gw);
        assert_eq!(whoami(&gw, &cookie).status, 503);
        wait_until("WRONGPASS in the log", Duration::from_secs(5), || gw.logs().contains("WRONGPASS").then_some(()));
        assert!(!gw.logs().contains("bad-pw-x91"), "no password in the log:\n{}", gw.logs());
    }
}
