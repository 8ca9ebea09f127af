//! Harness for the browser tests: runs `tests/browser/driver.mjs` under node, which drives
//! Debian's headless Chromium (`/usr/bin/chromium`) through npm `playwright-core`, and returns
//! the JSON observations it prints.
//!
//! ```ignore
//! #[path = "support/browser.rs"]
//! mod browser;
//! let seen = browser::run(&serde_json::json!({"scenario": "login", "url": "...", ...}));
//! ```
//!
//! No browser is ever downloaded: the driver launches the Chromium at `TOLLGATE_CHROMIUM`
//! (default `/usr/bin/chromium`). When Chromium, node or `tests/browser/node_modules` is missing
//! the test panics with how to install them (`bash tests/run.sh`); it never skips.
#![allow(dead_code)] // each test crate uses a different subset of this module

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one driver run (a browser launch and one scenario) may take before it is killed.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(150);
/// Lines of the driver's stderr kept for panic messages.
const STDERR_TAIL: usize = 80;
const RESULT_PREFIX: &str = "BROWSER_RESULT ";

const HOW: &str = "install them with `bash tests/run.sh` (it apt-installs Debian's `chromium` and runs \
                   `npm ci` in tests/browser with PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1), or by hand: \
                   `apt-get install chromium` and `cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci`. \
                   Never `npx playwright install`: the tests use the system Chromium";

/// `tests/browser` inside this crate.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("browser")
}

/// The Chromium the driver launches: `TOLLGATE_CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium() -> PathBuf {
    std::env::var_os("TOLLGATE_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Panics with install instructions unless node, Chromium and the pinned playwright-core are there.
pub fn check_prerequisites() {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`node --version` failed ({}): {HOW}", out.status),
        Err(e) => panic!("Node.js (`node`) is not runnable ({e}): {HOW}"),
    }
    let chromium = chromium();
    if !chromium.is_file() {
        panic!("Chromium is missing at {}: {HOW}", chromium.display());
    }
    let pinned = read_json(&browser_dir().join("package.json"))["dependencies"]["playwright-core"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("tests/browser/package.json does not pin playwright-core"));
    let installed = browser_dir().join("node_modules").join("playwright-core").join("package.json");
    if !installed.is_file() {
        panic!("{} is missing: {HOW}", installed.display());
    }
    let version = read_json(&installed)["version"].as_str().unwrap_or("?").to_owned();
    if version != pinned {
        panic!("tests/browser/node_modules has playwright-core {version}, package.json pins {pinned}: {HOW}");
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Runs one driver scenario; panics (with the driver's error, the page it was on and its trace)
/// unless the driver reports success. Returns the scenario's `result` object.
pub fn run(input: &Value) -> Value {
    match try_run(input) {
        Ok(v) => v,
        Err(e) => panic!("browser scenario {} failed: {e}", input["scenario"]),
    }
}

/// Like [`run`], but a failed scenario is an `Err` with the driver's explanation.
pub fn try_run(input: &Value) -> Result<Value, String> {
    check_prerequisites();
    let mut child = Command::new("node")
        .arg(browser_dir().join("driver.mjs"))
        .current_dir(browser_dir())
        .env("TOLLGATE_CHROMIUM", chromium())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn node tests/browser/driver.mjs: {e}"));

    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.to_string().as_bytes()).expect("write the scenario to the driver");
    drop(stdin);

    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = tail.clone();
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
            if t.len() == STDERR_TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
                let _ = tx.send(json.to_owned());
            } else {
                eprintln!("browser (stdout): {line}");
            }
        }
    });

    let deadline = Instant::now() + RUN_TIMEOUT;
    let line = rx.recv_timeout(RUN_TIMEOUT);
    // The driver exits right after its result line; wait (bounded) for it, then make sure.
    let mut exited = false;
    while Instant::now() < deadline + Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = err_thread.join();
    let tail = tail.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>().join("\n");
    let line = match line {
        Ok(line) => line,
        Err(_) => {
            return Err(format!(
                "no result from the driver within {RUN_TIMEOUT:?} (killed: {})\n--- driver stderr ---\n{tail}",
                !exited
            ))
        }
    };
    let out: Value = serde_json::from_str(&line).map_err(|e| format!("driver printed bad JSON ({e}): {line}"))?;
    if out["ok"] == true {
        return Ok(out["result"].clone());
    }
    let trace = out["trace"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"));
    Err(format!(
        "{}\n  page: {}\n  blocked non-loopback requests: {}\n--- trace ---\n{}\n--- driver stderr ---\n{tail}",
        out["error"].as_str().unwrap_or("?"),
        out["where"].as_str().unwrap_or(""),
        out["blocked"],
        trace.unwrap_or_default(),
    ))
}
