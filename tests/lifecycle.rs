//! The binary's life: configuration errors named by file and field, `check` on the shipped
//! examples, `--version`, and graceful shutdown on SIGTERM.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hyper::Response;

fn write(dir: &TempDir, text: &str) -> std::path::PathBuf {
    let f = dir.path("tollgate.toml");
    std::fs::write(&f, text).unwrap();
    f
}

const ROUTE: &str = "\n[[route]]\nauth = \"none\"\npath = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n";

#[test]
fn config_errors_name_file_and_field() {
    let dir = TempDir::new("cfg");
    let cases: &[(&str, &[&str])] = &[
        ("[server]\nbogus = 1\n", &["server.bogus", "unknown field"]),
        ("[[route]]\nauth = \"none\"\nupstream = \"ftp://example.com\"\n", &["route[0].upstream", "http or https"]),
        ("[[route]]\nauth = \"none\"\nupstream = \"not a url\"\n", &["route[0].upstream", "invalid URL"]),
        (
            "[[route]]\nauth = \"none\"\nupstream = \"${TOLLGATE_TEST_UNSET_VAR}\"\n",
            &["route[0].upstream", "TOLLGATE_TEST_UNSET_VAR"],
        ),
        ("[server]\nidle_timeout = \"5 minutes\"\n", &["server.idle_timeout", "invalid duration"]),
        ("[server]\nlisten = \"localhost\"\n", &["server.listen", "IP:PORT"]),
        ("[log]\nformat = \"xml\"\n", &["log.format"]),
        ("[server]\ntrusted_proxies = [\"10.0.0.0/99\"]\n", &["server.trusted_proxies[0]"]),
        ("[server\n", &["invalid TOML"]),
        ("[[route]]\nupstream = \"http://127.0.0.1:3000\"\n", &["route[0].auth", "required"]),
        ("[[route]]\nauth = \"bearer\"\nupstream = \"http://127.0.0.1:3000\"\n", &["route[0].auth", "issuer"]),
        ("[[issuer]]\nurl = \"https://idp.test\"\n", &["issuer[0].audiences"]),
        (
            "[[issuer]]\nurl = \"https://idp.test\"\naudiences = [\"a\"]\nalgorithms = [\"HS256\"]\n",
            &["issuer[0].algorithms"],
        ),
    ];
    for (body, wants) in cases {
        let text = if body.contains("[[route]]") { body.to_string() } else { format!("{body}{ROUTE}") };
        let file = write(&dir, &text);
        let (code, out) = check(&file, &[]);
        assert_eq!(code, 1, "{body}: {out}");
        assert!(out.contains(&file.display().to_string()), "{body}: the file is not named: {out}");
        for want in *wants {
            assert!(out.contains(want), "{body}: expected {want:?} in: {out}");
        }
    }
}

#[test]
fn check_lists_every_error_at_once() {
    let dir = TempDir::new("cfg-all");
    let file = write(
        &dir,
        "[server]\nidle_timeout = \"soon\"\n[[route]]\nauth = \"none\"\nupstream = \"${TOLLGATE_TEST_UNSET_VAR}\"\n[[route]]\nauth = \"none\"\npath = \"/b\"\nupstream = \"ftp://x\"\n",
    );
    let (code, out) = check(&file, &[]);
    assert_eq!(code, 1);
    for want in ["server.idle_timeout", "route[0].upstream", "route[1].upstream"] {
        assert!(out.contains(want), "missing {want} in: {out}");
    }
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn run_refuses_a_bad_config_before_listening() {
    let dir = TempDir::new("cfg-run");
    let file = write(&dir, "[server]\nbogus = true\n");
    let out = std::process::Command::new(bin()).arg("run").arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.bogus"));
}

#[test]
fn shipped_examples_pass_check_with_their_variables() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = [
        ("TOLLGATE_LISTEN", "127.0.0.1:8080"),
        ("TOLLGATE_ADMIN_LISTEN", "127.0.0.1:9090"),
        ("UPSTREAM_URL", "http://127.0.0.1:3000"),
        ("ISSUER_URL", "https://idp.example.com"),
        ("AUDIENCE", "https://api.example.com"),
        ("PUBLIC_URL", "https://app.example.com"),
        ("CLIENT_ID", "app"),
        ("CLIENT_SECRET", "app-secret"),
        ("COOKIE_SECRET", "0123456789abcdef0123456789abcdef"),
        ("TOKEN_RESOURCE", "https://inventory.example.com"),
    ];
    for name in ["api.toml", "web.toml", "sidecar.toml"] {
        let (code, out) = check(&root.join("config").join(name), &env);
        assert_eq!(code, 0, "{name}: {out}");
    }
    let cmd = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(root.join("config/api.toml"))
        .env_remove("UPSTREAM_URL")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cmd.stderr);
    assert_eq!(cmd.status.code(), Some(1));
    assert!(out.contains("config/api.toml") && out.contains("UPSTREAM_URL"), "{out}");
    // an issuer on plain HTTP off loopback is refused, naming the field
    let (code, out) = check(
        &root.join("config/api.toml"),
        &[("UPSTREAM_URL", "http://127.0.0.1:3000"), ("ISSUER_URL", "http://idp.example.com"), ("AUDIENCE", "api")],
    );
    assert_eq!(code, 1);
    assert!(out.contains("issuer[0].url") && out.contains("https"), "{out}");
}

#[test]
fn version_is_printed() {
    let out = std::process::Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("tollgate {}", env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    let (arrived_tx, arrived_rx) = std::sync::mpsc::channel::<()>();
    let arrived_tx = Arc::new(std::sync::Mutex::new(arrived_tx));
    let up = upstream(Arc::new(move |_req| {
        let tx = arrived_tx.clone();
        Box::pin(async move {
            let _ = tx.lock().unwrap().send(());
            // The slow request the shutdown must wait for.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Response::new(full("finished"))
        })
    }))
    .await;
    let mut gw =
        Gateway::start(&format!("{BASE}\n[[route]]\nauth = \"none\"\npath = \"/\"\nupstream = \"http://{up}\"\n"));
    let addr = gw.addr;
    let client = std::thread::spawn(move || get(addr, "/slow", &[]));
    arrived_rx.recv_timeout(Duration::from_secs(10)).expect("request never reached the upstream");
    gw.signal("TERM");
    let resp = client.join().unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, "finished");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0), "logs:\n{}", gw.logs());
    assert!(gw.logs().contains("shutting down"));
    assert!(std::net::TcpStream::connect(addr).is_err(), "still accepting after exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_shutdown() {
    let up = upstream(Arc::new(|_req| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Response::new(full("too late"))
        })
    }))
    .await;
    let cfg = format!("{BASE}\n[[route]]\nauth = \"none\"\npath = \"/\"\nupstream = \"http://{up}\"\n")
        .replace("workers = 2", "workers = 2\ndrain_timeout = \"500ms\"");
    let mut gw = Gateway::start(&cfg);
    let addr = gw.addr;
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s
    });
    let _conn = client.join().unwrap();
    // Wait until the request is in flight, as the gateway itself reports it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !admin(&gw, "/metrics").body.contains("tollgate_requests_in_flight 1") {
        assert!(std::time::Instant::now() < deadline, "request never in flight");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5), "drain took {:?}", started.elapsed());
}

/// A second tollgate on a port another one serves is refused at start, naming the address:
/// SO_REUSEPORT (one listener per worker) would otherwise let the two split the traffic.
/// Likewise an egress listener's address.
#[test]
fn a_listen_address_in_use_is_refused() {
    let port = free_port();
    let egress = free_port();
    let config = |listen: u16, egress_listen: u16| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\nworkers = 2\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [log]\nformat = \"json\"\n\
             [[client]]\nname = \"c\"\ntoken_endpoint = \"http://127.0.0.1:9/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
             [[egress]]\nname = \"out\"\nlisten = \"127.0.0.1:{egress_listen}\"\nupstream = \"http://127.0.0.1:9\"\nclient = \"c\"\n{ROUTE}"
        )
    };
    let first = Gateway::start(&config(port, egress));
    assert_eq!(first.addr.port(), port);
    let dir = TempDir::new("in-use");
    for (listen, egress_listen, want) in [
        (port, free_port(), format!("address 127.0.0.1:{port} is in use")),
        (free_port(), egress, format!("address 127.0.0.1:{egress} is in use (egress)")),
    ] {
        let file = write(&dir, &config(listen, egress_listen));
        let log = dir.path("stderr");
        let mut second = std::process::Command::new(bin())
            .arg("run")
            .arg("--config")
            .arg(&file)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Bounded: on the old code the second one started and served until killed.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let code = loop {
            match second.try_wait().unwrap() {
                Some(status) => break status.code(),
                None if std::time::Instant::now() > deadline => {
                    let _ = second.kill();
                    let _ = second.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(25)),
            }
        };
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert_eq!(code, Some(1), "the second tollgate must not start: {stderr}");
        assert!(stderr.contains(&want), "want {want:?} in: {stderr}");
    }
}
