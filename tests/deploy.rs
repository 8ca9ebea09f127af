//! deploy/: the container image and Kubernetes examples.
//!
//! Runs `bash deploy/check.sh` (hadolint on the Dockerfile; strict, offline schema validation of
//! every manifest for the pinned Kubernetes versions; `kubectl kustomize` builds; hardening and
//! cross-reference checks; `tollgate check` on every TOML in a ConfigMap with the volumes and
//! environment its container gets) with this build's binary, once, and then asserts on the
//! manifests it parsed (the script's JSON dump), independently of the script's own policy code.
//! A second run on a deliberately broken copy of deploy/ must fail and name every breakage.
//!
//! The first run installs the pinned tools from PyPI into a venv under
//! `${XDG_CACHE_HOME:-$HOME/.cache}/tollgate-deploy-venv` (see deploy/check.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::TempDir;
use serde_json::Value;

struct CheckRun {
    code: i32,
    output: String,
    dump: Value,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `check.sh` from `deploy_dir` with this build's tollgate; returns code, output, dump.
fn run_check(deploy_dir: &Path, tag: &str) -> CheckRun {
    let tmp = TempDir::new(tag);
    let dump = tmp.path("dump.json");
    let out = Command::new("bash")
        .arg(deploy_dir.join("check.sh"))
        .env("TOLLGATE_BIN", env!("CARGO_BIN_EXE_tollgate"))
        .env("DEPLOY_CHECK_DUMP", &dump)
        .output()
        .expect("run bash deploy/check.sh");
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let dump = std::fs::read_to_string(&dump).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    CheckRun { code: out.status.code().unwrap_or(-1), output, dump }
}

/// The run on the repository's deploy/, shared by the tests below.
fn checked() -> &'static CheckRun {
    static RUN: OnceLock<CheckRun> = OnceLock::new();
    RUN.get_or_init(|| run_check(&repo().join("deploy"), "deploy-check"))
}

/// The parsed manifests; panics with the script's output when the dump is missing.
fn documents() -> Vec<(String, String, Value)> {
    let run = checked();
    let docs = run.dump["documents"].as_array().unwrap_or_else(|| panic!("no dump from check.sh:\n{}", run.output));
    docs.iter()
        .map(|d| {
            (d["example"].as_str().unwrap().to_string(), d["file"].as_str().unwrap().to_string(), d["doc"].clone())
        })
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(docs: &'a [(String, String, Value)], example: &str, k: &str, n: &str) -> &'a Value {
    docs.iter()
        .find(|(e, _, d)| e == example && kind(d) == k && name(d) == n)
        .map(|(_, _, d)| d)
        .unwrap_or_else(|| panic!("{example}: no {k}/{n}"))
}

/// (example, workload name, pod spec, pod metadata) of every Deployment.
fn deployments(docs: &[(String, String, Value)]) -> Vec<(String, String, Value, Value)> {
    docs.iter()
        .filter(|(_, _, d)| kind(d) == "Deployment")
        .map(|(e, _, d)| {
            (
                e.clone(),
                name(d).to_string(),
                d["spec"]["template"]["spec"].clone(),
                d["spec"]["template"]["metadata"].clone(),
            )
        })
        .collect()
}

fn containers(pod: &Value) -> Vec<Value> {
    let mut all = pod["initContainers"].as_array().cloned().unwrap_or_default();
    all.extend(pod["containers"].as_array().cloned().unwrap_or_default());
    all
}

const EXAMPLES: [&str; 4] = ["egress", "ingress-forward-auth", "scaled", "sidecar"];

#[test]
fn check_sh_passes() {
    let run = checked();
    assert_eq!(run.code, 0, "bash deploy/check.sh failed:\n{}", run.output);
    assert!(run.output.contains("deploy/check.sh: all checks passed"), "{}", run.output);
    assert!(run.output.contains("Dockerfile OK"), "hadolint did not run:\n{}", run.output);
    // Validated against pinned versions, strictly, for every example.
    assert!(run.output.contains("Kubernetes 1.30.0, 1.34.0 (strict)"), "{}", run.output);
    assert_eq!(run.dump["kubernetes_versions"], serde_json::json!(["1.30.0", "1.34.0"]));
    for ex in EXAMPLES {
        assert!(run.output.contains(&format!("== {ex}")), "example {ex} not checked:\n{}", run.output);
    }
}

#[test]
fn every_example_has_a_kustomization_listing_its_manifests() {
    let docs = documents();
    for ex in EXAMPLES {
        let dir = repo().join("deploy/kubernetes").join(ex);
        let k = docs
            .iter()
            .find(|(e, f, _)| e == ex && f == "kustomization.yaml")
            .map(|(_, _, d)| d)
            .unwrap_or_else(|| panic!("{ex}: no kustomization.yaml"));
        assert_eq!(kind(k), "Kustomization");
        assert!(k["namespace"].as_str().is_some_and(|n| n.starts_with("tollgate-")), "{ex}: namespace");
        let resources: Vec<&str> = k["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        for r in &resources {
            assert!(dir.join(r).is_file(), "{ex}: {r} listed but missing");
        }
        // Everything in the directory is listed, but for the optional Prometheus Operator file.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let f = entry.unwrap().file_name().into_string().unwrap();
            if f.ends_with(".yaml") && f != "kustomization.yaml" && f != "podmonitor.yaml" {
                assert!(resources.contains(&f.as_str()), "{ex}: {f} is not in kustomization.yaml");
            }
        }
    }
}

#[test]
fn every_container_is_hardened_and_has_resources() {
    let docs = documents();
    let deps = deployments(&docs);
    assert!(deps.len() >= 6, "expected the examples' Deployments, got {}", deps.len());
    for (ex, dep, pod, _) in &deps {
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{ex}/{dep}: pod runAsNonRoot");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{ex}/{dep}: seccomp");
        assert_eq!(pod["automountServiceAccountToken"], false, "{ex}/{dep}: service account token");
        for c in containers(pod) {
            let cn = c["name"].as_str().unwrap();
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{ex}/{dep}/{cn}: readOnlyRootFilesystem");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{ex}/{dep}/{cn}: allowPrivilegeEscalation");
            assert_eq!(sc["runAsNonRoot"], true, "{ex}/{dep}/{cn}: runAsNonRoot");
            assert!(
                sc["capabilities"]["drop"].as_array().is_some_and(|d| d.iter().any(|x| x == "ALL")),
                "{ex}/{dep}/{cn}: capabilities drop ALL"
            );
            for part in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    assert!(c["resources"][part][r].is_string(), "{ex}/{dep}/{cn}: resources.{part}.{r}");
                }
            }
            let image = c["image"].as_str().unwrap();
            assert!(image.contains(':') && !image.ends_with(":latest"), "{ex}/{dep}/{cn}: unpinned image {image}");
        }
    }
}

#[test]
fn tollgate_containers_probe_the_admin_listener_and_are_scraped() {
    let docs = documents();
    let mut seen = 0;
    for (ex, dep, pod, meta) in deployments(&docs) {
        for c in containers(&pod).into_iter().filter(|c| c["name"] == "tollgate") {
            seen += 1;
            let admin = c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "admin")
                .unwrap_or_else(|| panic!("{ex}/{dep}: no admin port"))["containerPort"]
                .as_u64()
                .unwrap();
            assert_eq!(admin, 9090, "{ex}/{dep}: admin port");
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{ex}/{dep}: liveness");
            assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin", "{ex}/{dep}: liveness port");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{ex}/{dep}: readiness");
            assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin", "{ex}/{dep}: readiness port");
            assert_eq!(c["args"], serde_json::json!(["run", "--config", "/etc/tollgate/tollgate.toml"]), "{ex}/{dep}");
            let ann = &meta["annotations"];
            assert_eq!(ann["prometheus.io/scrape"], "true", "{ex}/{dep}");
            assert_eq!(ann["prometheus.io/port"], "9090", "{ex}/{dep}");
            assert_eq!(ann["prometheus.io/path"], "/metrics", "{ex}/{dep}");
            // Configuration and secrets come from one read-only projected volume.
            let mount =
                c["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == "/etc/tollgate").unwrap();
            assert_eq!(mount["readOnly"], true, "{ex}/{dep}");
        }
    }
    assert_eq!(seen, 4, "one tollgate container per example");
}

#[test]
fn every_configmap_toml_passed_tollgate_check_in_its_container() {
    let run = checked();
    let docs = documents();
    let configs = run.dump["tollgate_configs"].as_array().unwrap_or_else(|| panic!("no dump:\n{}", run.output));
    // Every *.toml key of every ConfigMap is the --config of a checked container.
    for (ex, _, d) in docs.iter().filter(|(_, _, d)| kind(d) == "ConfigMap") {
        for key in d["data"].as_object().unwrap().keys().filter(|k| k.ends_with(".toml")) {
            assert!(
                configs.iter().any(|c| c["example"] == ex.as_str() && c["source"] == serde_json::json!([name(d), key])),
                "{ex}: ConfigMap {}/{key} was not checked",
                name(d)
            );
        }
    }
    assert_eq!(configs.len(), 4, "{configs:?}");
    // `tollgate check` said OK for each (lines like "tollgate check sidecar ...: OK (2 routes)").
    let oks = run.output.lines().filter(|l| l.contains("tollgate check ") && l.contains(": OK (")).count();
    assert_eq!(oks, 4, "{}", run.output);
    // Secrets are read from the mounted Secret, never written into the ConfigMap.
    for c in configs {
        let toml = &c["toml"];
        for section in [&toml["login"], &toml["client"][0]] {
            if section.is_object() {
                assert!(section.get("client_secret").is_none(), "{}: client_secret inline", c["example"]);
                assert!(section.get("cookie_secret").is_none(), "{}: cookie_secret inline", c["example"]);
                assert!(section["client_secret_file"].as_str().unwrap().starts_with("/etc/tollgate/secrets/"));
            }
        }
    }
}

fn config_of<'a>(example: &str) -> &'a Value {
    let run = checked();
    run.dump["tollgate_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["example"] == example)
        .map(|c| &c["toml"])
        .unwrap_or_else(|| panic!("no checked config for {example}"))
}

#[test]
fn sidecar_app_listens_on_loopback_behind_a_browser_login() {
    let docs = documents();
    let toml = config_of("sidecar");
    assert_eq!(toml["login"]["cookie_secret_file"], "/etc/tollgate/secrets/cookie-secret");
    for r in toml["route"].as_array().unwrap() {
        assert_eq!(r["upstream"], "http://127.0.0.1:3000", "routes go to the app on the Pod's loopback");
    }
    let nginx = find(&docs, "sidecar", "ConfigMap", "legacy-app-nginx");
    assert!(nginx["data"]["default.conf"].as_str().unwrap().contains("listen 127.0.0.1:3000;"));
    // The Service exposes tollgate only.
    let svc = find(&docs, "sidecar", "Service", "legacy-app");
    assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn ingress_forward_auth_annotations() {
    let docs = documents();
    let app = find(&docs, "ingress-forward-auth", "Ingress", "app");
    let ann = &app["metadata"]["annotations"];
    assert_eq!(
        ann["nginx.ingress.kubernetes.io/auth-url"],
        "http://tollgate.tollgate-auth.svc.cluster.local:8080/oauth2/auth"
    );
    assert_eq!(ann["nginx.ingress.kubernetes.io/auth-signin"], "https://$host/oauth2/start?rd=$escaped_request_uri");
    assert_eq!(
        ann["nginx.ingress.kubernetes.io/auth-response-headers"],
        "X-Auth-Request-User,X-Auth-Request-Email,X-Auth-Request-Groups"
    );
    // The auth-url names the Service, its namespace and port.
    let k = docs.iter().find(|(e, f, _)| e == "ingress-forward-auth" && f == "kustomization.yaml").unwrap();
    assert_eq!(k.2["namespace"], "tollgate-auth");
    let svc = find(&docs, "ingress-forward-auth", "Service", "tollgate");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    // /oauth2/ on the app's host goes to tollgate, without auth annotations.
    let oauth = find(&docs, "ingress-forward-auth", "Ingress", "tollgate-oauth2");
    assert!(oauth["metadata"]["annotations"].is_null());
    let rule = &oauth["spec"]["rules"][0];
    assert_eq!(rule["host"], app["spec"]["rules"][0]["host"]);
    assert_eq!(rule["http"]["paths"][0]["path"], "/oauth2/");
    assert_eq!(rule["http"]["paths"][0]["backend"]["service"]["name"], "tollgate");
    let toml = config_of("ingress-forward-auth");
    assert_eq!(toml["login"]["public_url"], format!("https://{}", rule["host"].as_str().unwrap()));
}

#[test]
fn egress_sidecar_mints_client_credentials_tokens() {
    let docs = documents();
    let toml = config_of("egress");
    let egress = &toml["egress"][0];
    assert_eq!(egress["listen"], "127.0.0.1:15001");
    assert!(egress["upstream"].as_str().unwrap().starts_with("https://"));
    assert_eq!(egress["client"], toml["client"][0]["name"]);
    // A native sidecar: tollgate starts before the app.
    let dep = find(&docs, "egress", "Deployment", "orders");
    let init = &dep["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "tollgate");
    assert_eq!(init["restartPolicy"], "Always");
    assert!(init["startupProbe"].is_object());
}

#[test]
fn scaled_replicas_share_redis_sessions() {
    let docs = documents();
    let toml = config_of("scaled");
    assert_eq!(toml["login"]["session_store"], "redis");
    assert!(toml["login"]["redis_url"].as_str().unwrap().contains("@redis.tollgate-scaled.svc.cluster.local:6379"));
    let dep = find(&docs, "scaled", "Deployment", "web");
    assert_eq!(dep["spec"]["replicas"], 3);
    let pdb = find(&docs, "scaled", "PodDisruptionBudget", "web");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"]);
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    find(&docs, "scaled", "Deployment", "redis");
    find(&docs, "scaled", "Service", "redis");
}

#[test]
fn secrets_hold_only_placeholders() {
    let docs = documents();
    let secrets: Vec<_> = docs.iter().filter(|(_, _, d)| kind(d) == "Secret").collect();
    assert_eq!(secrets.len(), 4);
    for (ex, f, d) in secrets {
        assert!(d["data"].is_null(), "{ex}/{f}: base64 data hides what it holds");
        for (k, v) in d["stringData"].as_object().unwrap() {
            assert!(v.as_str().unwrap().contains("REPLACE"), "{ex}/{f}: {k} is not a placeholder");
        }
    }
}

#[test]
fn dockerfile_shape() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let has = |p: &str| lines.iter().any(|l| l.contains(p));
    assert!(has("FROM rust:1-bookworm AS build"));
    assert!(has("cargo build --release --locked"));
    assert!(has("FROM gcr.io/distroless/cc-debian12:nonroot"));
    assert!(has("USER 65532:65532"));
    assert!(has("EXPOSE 8080 9090"));
    assert!(has("HEALTHCHECK") && has("http://127.0.0.1:9090/healthz"));
    assert!(has(r#"ENTRYPOINT ["tollgate"]"#));
    assert!(has(r#"CMD ["run", "--config", "/etc/tollgate/tollgate.toml"]"#));
    assert!(!text.contains("hadolint ignore"), "no hadolint rule is ignored");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{}: {from:?} not found", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// The checks are not vacuous: a copy of deploy/ with one breakage of each kind fails, and
/// the output names each one.
#[test]
fn check_sh_fails_on_each_kind_of_breakage() {
    let tmp = TempDir::new("deploy-broken");
    let dir = tmp.path("deploy");
    copy_dir(&repo().join("deploy"), &dir);
    let k = dir.join("kubernetes");
    // A Dockerfile that runs as root.
    edit(&dir.join("Dockerfile"), "USER 65532:65532", "USER 0");
    // An unknown field (strict schema validation).
    edit(
        &k.join("ingress-forward-auth/tollgate.yaml"),
        "  minAvailable: 1\n",
        "  minAvailable: 1\n  maxUnavailabel: 1\n",
    );
    // A key tollgate does not know, in a ConfigMap's TOML.
    edit(
        &k.join("scaled/configmap.yaml"),
        "    session_store = \"redis\"\n",
        "    session_store = \"redis\"\n    sesion_lifetime = \"1h\"\n",
    );
    // A secret file that no volume provides.
    edit(
        &k.join("sidecar/configmap.yaml"),
        "/etc/tollgate/secrets/cookie-secret",
        "/etc/tollgate/secret/cookie-secret",
    );
    // A writable root filesystem.
    edit(&k.join("egress/deployment.yaml"), "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false");
    // A Service port that no container has.
    edit(&k.join("sidecar/service.yaml"), "targetPort: http", "targetPort: web");

    let run = run_check(&dir, "deploy-broken-check");
    assert_ne!(run.code, 0, "check.sh passed a broken deploy/:\n{}", run.output);
    for expected in [
        "DL3002",                                                  // hadolint: last USER root
        "'maxUnavailabel' was unexpected",                         // schema, strict
        "sesion_lifetime",                                         // tollgate check: unknown key
        "no volume mounted into the container provides this file", // secret file path
        "egress/deployment.yaml Deployment/orders initContainer tollgate: securityContext.readOnlyRootFilesystem",
        "targetPort 'web' is not a port of the selected Pods",
        "FAILED: hadolint deploy/Dockerfile",
        "FAILED: deploy/kubernetes manifests",
    ] {
        assert!(run.output.contains(expected), "check.sh output lacks {expected:?}:\n{}", run.output);
    }
}
