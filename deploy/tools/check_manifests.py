#!/usr/bin/env python3
"""Offline checks of deploy/kubernetes/, run by deploy/check.sh with the venv's python.

For every example directory (one kustomization.yaml each):

  1. every YAML file parses; kustomization.yaml lists every manifest in the directory (files
     holding only Prometheus Operator resources may stay out, see OPTIONAL_CRD_KINDS) and
     nothing that is missing;
  2. every document validates against the Kubernetes OpenAPI schemas of each pinned version,
     strictly (unknown fields are errors), with kubernetes-validate; kinds without a schema fail,
     except the CRD kinds in OPTIONAL_CRD_KINDS, which are skipped with a message and checked
     structurally below;
  3. `kubectl kustomize DIR` builds (when kubectl is installed) and its output validates too;
  4. policy: every Pod template is hardened (runAsNonRoot, seccomp RuntimeDefault,
     allowPrivilegeEscalation false, readOnlyRootFilesystem, capabilities drop ALL, no service
     account token), every container has resource requests and limits and a pinned image, every
     container with ports has liveness and readiness probes; tollgate containers probe /healthz
     and /readyz on the admin port and their Pods carry the prometheus.io annotations; Secrets
     hold only placeholders (stringData containing "REPLACE");
  5. references: Services, Ingresses, PodDisruptionBudgets, NetworkPolicies and PodMonitors
     select Pods that exist and name ports those Pods have; volumes and env refer to ConfigMap
     and Secret keys that exist;
  6. every tollgate.toml in a ConfigMap is checked with the real binary, as the container would
     load it: the container's volumes (ConfigMaps, Secrets, projected, emptyDir) are written
     under a scratch root, absolute `*_file` paths in the TOML are re-rooted there (so a secret
     file that no volume provides fails), and `tollgate check --config ROOT/<--config path>`
     runs with exactly the container's environment (literal values and Secret/ConfigMap keys),
     nothing from this machine's. The TOML's listen ports must match the container's ports.

Prints one line per problem and exits 1 if there is any. --dump FILE writes every parsed
document and every checked TOML as JSON (for tests/deploy.rs).
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

try:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError
except ImportError:  # pragma: no cover - check.sh installs it
    kubernetes_validate = None

# Custom resources the examples may ship in files left out of kustomization.yaml (applied only
# where the Prometheus Operator is installed). No schema for them is available offline.
OPTIONAL_CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "ServiceMonitor")}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}

problems = []


def fail(where, msg):
    problems.append(f"{where}: {msg}")
    print(f"FAIL {where}: {msg}", flush=True)


def info(msg):
    print(f"  {msg}", flush=True)


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def pod_template(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return doc.get("metadata") or {}, spec
    if kind == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    else:
        t = spec.get("template") or {}
    return t.get("metadata") or {}, t.get("spec") or {}


def all_containers(pod_spec):
    """(kind, container) for init containers and containers."""
    out = [("initContainer", c) for c in pod_spec.get("initContainers") or []]
    out += [("container", c) for c in pod_spec.get("containers") or []]
    return out


def is_tollgate(container):
    image = container.get("image", "")
    return container.get("name") == "tollgate" or re.search(r"(^|/)tollgate(:|@|$)", image) is not None


def name_of(doc):
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def selects(selector, labels):
    """A label selector (matchLabels only, or a plain map for Services) against labels."""
    if selector is None:
        return False
    match = selector.get("matchLabels", selector) if isinstance(selector, dict) else {}
    if "matchExpressions" in selector:
        return False  # not used by the examples; refuse rather than guess
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def port_number(port, containers):
    """A containerPort number from a number or a port name among containers, else None."""
    if isinstance(port, int):
        return port
    for c in containers:
        for p in c.get("ports") or []:
            if p.get("name") == port:
                return p.get("containerPort")
    return None


def expand_vars(s, env):
    """tollgate's ${VAR} / ${VAR:-default} / $$ substitution, for reading listen addresses."""
    out, i = [], 0
    while i < len(s):
        if s.startswith("$$", i):
            out.append("$")
            i += 2
        elif s.startswith("${", i):
            end = s.index("}", i)
            inner = s[i + 2:end]
            name, _, default = inner.partition(":-")
            value = env.get(name)
            out.append(value if value else (default if ":-" in inner else (value or "")))
            i = end + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def listen_port(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


# ---- per-directory checks -----------------------------------------------------------------------


class Example:
    def __init__(self, root, path):
        self.path = path
        self.name = os.path.relpath(path, root)
        self.docs = []  # (file, doc)
        self.kustomization = None

    def objects(self, kind):
        return [d for _, d in self.docs if d.get("kind") == kind]

    def find(self, kind, name):
        for d in self.objects(kind):
            if (d.get("metadata") or {}).get("name") == name:
                return d
        return None

    def workloads(self):
        return [(f, d) for f, d in self.docs if d.get("kind") in WORKLOAD_KINDS]


def load_example(root, path):
    ex = Example(root, path)
    print(f"== {ex.name}", flush=True)
    files = sorted(f for f in os.listdir(path) if f.endswith((".yaml", ".yml")))
    listed = set()
    kfile = next((f for f in ("kustomization.yaml", "kustomization.yml") if f in files), None)
    if kfile is None:
        fail(ex.name, "no kustomization.yaml")
    for f in files:
        where = f"{ex.name}/{f}"
        try:
            docs = load_yaml_docs(os.path.join(path, f))
        except yaml.YAMLError as e:
            fail(where, f"invalid YAML: {e}")
            continue
        if f == kfile:
            if len(docs) != 1 or docs[0].get("kind") != "Kustomization":
                fail(where, "expected one Kustomization document")
                continue
            ex.kustomization = docs[0]
            continue
        for d in docs:
            if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
                fail(where, "a document without apiVersion and kind")
                continue
            ex.docs.append((f, d))
    if ex.kustomization is not None:
        for r in ex.kustomization.get("resources") or []:
            listed.add(r)
            if not os.path.isfile(os.path.join(path, r)):
                fail(f"{ex.name}/{kfile}", f"resource {r} does not exist")
        for f in files:
            if f == kfile or f in listed:
                continue
            kinds = {(d.get("apiVersion"), d.get("kind")) for ff, d in ex.docs if ff == f}
            if kinds and kinds <= OPTIONAL_CRD_KINDS:
                info(f"{ex.name}/{f}: optional ({', '.join(k for _, k in sorted(kinds))}), not in kustomization.yaml")
            else:
                fail(f"{ex.name}/{f}", "not listed in kustomization.yaml resources")
    return ex


def schema_validate(where, doc, versions):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in OPTIONAL_CRD_KINDS:
        info(f"SKIP schema of {where} {name_of(doc)}: custom resource {key[0]}, no offline schema (checked structurally)")
        return
    for v in versions:
        try:
            kubernetes_validate.validate(doc, v, strict=True)
        except SchemaNotFoundError as e:
            fail(where, f"{name_of(doc)}: {e.message}")
            return
        except ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            fail(where, f"{name_of(doc)} against Kubernetes {v} (strict): {path}: {e.message}")
        except Exception as e:  # noqa: BLE001 - report anything the validator raises
            fail(where, f"{name_of(doc)} against Kubernetes {v}: {type(e).__name__}: {e}")


def check_policy(ex):
    for f, doc in ex.workloads():
        where = f"{ex.name}/{f} {name_of(doc)}"
        meta, pod = pod_template(doc)
        psc = pod.get("securityContext") or {}
        if pod.get("automountServiceAccountToken") is not False:
            fail(where, "automountServiceAccountToken must be false (nothing here talks to the API server)")
        if psc.get("runAsNonRoot") is not True:
            fail(where, "pod securityContext.runAsNonRoot must be true")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            fail(where, "pod securityContext.seccompProfile.type must be RuntimeDefault")
        for ctype, c in all_containers(pod):
            cw = f"{where} {ctype} {c.get('name')}"
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(cw, "securityContext.allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(cw, "securityContext.readOnlyRootFilesystem must be true")
            if sc.get("privileged"):
                fail(cw, "must not be privileged")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                fail(cw, "securityContext.capabilities.drop must include ALL")
            if (sc.get("capabilities") or {}).get("add"):
                fail(cw, "must not add capabilities")
            if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
                fail(cw, "runAsNonRoot must be true")
            if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                fail(cw, "must not run as uid 0")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if not (res.get(part) or {}).get(r):
                        fail(cw, f"resources.{part}.{r} missing")
            image = c.get("image", "")
            last = image.rsplit("/", 1)[-1]
            if "@" not in image and (":" not in last or last.endswith(":latest")):
                fail(cw, f"image {image!r} must be pinned to a tag other than latest")
            long_running = ctype == "container" or c.get("restartPolicy") == "Always"
            if long_running and (c.get("ports") or is_tollgate(c)):
                for probe in ("livenessProbe", "readinessProbe"):
                    if not c.get(probe):
                        fail(cw, f"{probe} missing")
            if is_tollgate(c):
                check_tollgate_container(cw, meta, c)


def check_tollgate_container(cw, meta, c):
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    if "admin" not in ports:
        fail(cw, "tollgate needs a container port named admin (probes and metrics)")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or port_number(get.get("port"), [c]) != ports.get("admin"):
            fail(cw, f"{probe} must be httpGet {path} on the admin port")
    args = c.get("args") or []
    if len(args) != 3 or args[0] != "run" or args[1] != "--config":
        fail(cw, 'args must be ["run", "--config", FILE] (explicit, so the checked file is the one run)')
    ann = meta.get("annotations") or {}
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics":
        fail(cw, "the Pod needs prometheus.io/scrape: \"true\" and prometheus.io/path: /metrics")
    if ann.get("prometheus.io/port") != str(ports.get("admin")):
        fail(cw, f"prometheus.io/port must be the admin port {ports.get('admin')}")


def check_secrets(ex):
    for f, doc in ex.docs:
        if doc.get("kind") != "Secret":
            continue
        where = f"{ex.name}/{f} {name_of(doc)}"
        if doc.get("data"):
            fail(where, "use stringData with visible placeholders, not base64 data")
        for k, v in (doc.get("stringData") or {}).items():
            if "REPLACE" not in str(v):
                fail(where, f"stringData.{k} must be a placeholder containing REPLACE (no real secrets in the repository)")


def check_references(ex):
    pods = []  # (labels, pod_spec, workload name)
    for _, doc in ex.workloads():
        meta, pod = pod_template(doc)
        pods.append((meta.get("labels") or {}, pod, name_of(doc)))
        if doc.get("kind") != "Pod":
            sel = (doc.get("spec") or {}).get("selector")
            if doc.get("kind") != "CronJob" and not selects(sel, meta.get("labels") or {}):
                fail(f"{ex.name} {name_of(doc)}", "spec.selector does not match the Pod template's labels")

    def matching(selector):
        return [p for p in pods if selects(selector, p[0])]

    def containers_of(matches):
        return [c for _, pod, _ in matches for _, c in all_containers(pod)]

    for f, doc in ex.docs:
        where = f"{ex.name}/{f} {name_of(doc)}"
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        if kind == "Service":
            m = matching(spec.get("selector"))
            if not m:
                fail(where, "selects no Pod in this example")
            for p in spec.get("ports") or []:
                tp = p.get("targetPort", p.get("port"))
                if port_number(tp, containers_of(m)) is None:
                    fail(where, f"targetPort {tp!r} is not a port of the selected Pods")
        elif kind == "Ingress":
            for rule in spec.get("rules") or []:
                for path in (rule.get("http") or {}).get("paths") or []:
                    svc = ((path.get("backend") or {}).get("service")) or {}
                    s = ex.find("Service", svc.get("name"))
                    if s is None:
                        fail(where, f"backend Service {svc.get('name')!r} is not in this example")
                        continue
                    want = svc.get("port") or {}
                    names = {p.get("name") for p in s["spec"].get("ports") or []}
                    numbers = {p.get("port") for p in s["spec"].get("ports") or []}
                    if want.get("name") not in names and want.get("number") not in numbers:
                        fail(where, f"backend port {want} is not a port of Service {svc.get('name')}")
        elif kind == "PodDisruptionBudget":
            if not matching(spec.get("selector")):
                fail(where, "selects no Pod in this example")
        elif kind == "NetworkPolicy":
            if not matching(spec.get("podSelector")):
                fail(where, "podSelector selects no Pod in this example")
        elif kind == "PodMonitor":
            m = matching(spec.get("selector"))
            if not m:
                fail(where, "selects no Pod in this example")
            for ep in spec.get("podMetricsEndpoints") or []:
                if port_number(ep.get("port"), containers_of(m)) is None:
                    fail(where, f"port {ep.get('port')!r} is not a port of the selected Pods")

    for labels, pod, wname in pods:
        where = f"{ex.name} {wname}"
        for vol in pod.get("volumes") or []:
            for kind, ref, items in volume_sources(vol):
                obj = ex.find(kind, ref.get("name") or ref.get("secretName"))
                if obj is None:
                    if not ref.get("optional"):
                        fail(where, f"volume {vol.get('name')}: {kind} {ref.get('name') or ref.get('secretName')!r} is not in this example")
                    continue
                keys = object_data(obj)
                for it in items or []:
                    if it.get("key") not in keys:
                        fail(where, f"volume {vol.get('name')}: {kind} {name_of(obj)} has no key {it.get('key')!r}")
        for _, c in all_containers(pod):
            try:
                container_env(ex, c)
            except ValueError as e:
                fail(f"{where} container {c.get('name')}", str(e))
            mounts = {m.get("name") for m in c.get("volumeMounts") or []}
            vols = {v.get("name") for v in pod.get("volumes") or []}
            for m in sorted(mounts - vols):
                fail(f"{where} container {c.get('name')}", f"volumeMount {m!r} has no volume")


def volume_sources(vol):
    """(kind, reference, items) for the ConfigMaps and Secrets a volume draws on."""
    if "configMap" in vol:
        return [("ConfigMap", vol["configMap"], vol["configMap"].get("items"))]
    if "secret" in vol:
        return [("Secret", vol["secret"], vol["secret"].get("items"))]
    if "projected" in vol:
        out = []
        for s in vol["projected"].get("sources") or []:
            if "configMap" in s:
                out.append(("ConfigMap", s["configMap"], s["configMap"].get("items")))
            if "secret" in s:
                out.append(("Secret", s["secret"], s["secret"].get("items")))
        return out
    return []


def object_data(obj):
    """key -> bytes of a ConfigMap or Secret as the kubelet would write them."""
    out = {}
    if obj.get("kind") == "Secret":
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v)
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v).encode()
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = str(v).encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v)
    return out


def container_env(ex, c):
    """The container's environment as the kubelet would set it (literal values and keys of
    Secrets and ConfigMaps in this example). Raises ValueError for what cannot be resolved."""
    if c.get("envFrom"):
        raise ValueError("envFrom is not supported by deploy/check.sh: list variables in env")
    env = {}
    for e in c.get("env") or []:
        name = e.get("name")
        if "value" in e:
            # $(VAR) refers to a variable defined earlier in the list.
            env[name] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
            continue
        vf = e.get("valueFrom") or {}
        for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            if key in vf:
                ref = vf[key]
                obj = ex.find(kind, ref.get("name"))
                data = object_data(obj) if obj else {}
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        break
                    raise ValueError(f"env {name}: {kind} {ref.get('name')!r} key {ref.get('key')!r} is not in this example")
                env[name] = data[ref["key"]].decode()
                break
        else:
            raise ValueError(f"env {name}: only value, secretKeyRef and configMapKeyRef can be checked offline")
    return env


# ---- tollgate check, as the container would load its configuration -----------------------------


def materialize(ex, pod, c, root):
    """Writes the container's mounted volumes under root. Returns the mount paths."""
    vols = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts = []
    for m in c.get("volumeMounts") or []:
        vol = vols.get(m.get("name"))
        if vol is None:
            continue
        if m.get("subPath"):
            raise ValueError(f"volumeMount {m.get('name')}: subPath is not supported by the check (and misses ConfigMap updates)")
        dest = os.path.join(root, m["mountPath"].lstrip("/"))
        os.makedirs(dest, exist_ok=True)
        mounts.append(m["mountPath"])
        if "emptyDir" in vol:
            continue
        sources = volume_sources(vol)
        if not sources:
            raise ValueError(f"volume {vol.get('name')}: only configMap, secret, projected and emptyDir volumes can be checked")
        for kind, ref, items in sources:
            obj = ex.find(kind, ref.get("name") or ref.get("secretName"))
            if obj is None:
                continue  # reported by check_references (or optional)
            data = object_data(obj)
            mapping = [(it["key"], it.get("path", it["key"])) for it in items] if items else [(k, k) for k in data]
            for key, rel in mapping:
                if key not in data:
                    continue
                path = os.path.join(dest, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as fh:
                    fh.write(data[key])
    return mounts


def file_keys(value, path=""):
    """(field path, value) of every string under a key ending in _file."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            p = f"{path}.{k}" if path else k
            if k.endswith("_file") and isinstance(v, str):
                out.append((p, v))
            else:
                out.extend(file_keys(v, p))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(file_keys(v, f"{path}[{i}]"))
    return out


def check_tollgate_configs(ex, tollgate_bin, dump):
    used = set()
    for f, doc in ex.workloads():
        meta, pod = pod_template(doc)
        for ctype, c in all_containers(pod):
            if not is_tollgate(c):
                continue
            where = f"{ex.name}/{f} {name_of(doc)} {ctype} {c.get('name')}"
            args = c.get("args") or []
            if len(args) != 3 or args[1] != "--config":
                continue  # reported by the policy check
            cfg_path = args[2]
            # Which ConfigMap key is it? (for the dump and the "every TOML is checked" rule)
            source = config_source(ex, pod, c, cfg_path)
            if source:
                used.add(source)
            try:
                env = container_env(ex, c)
            except ValueError:
                fail(where, f"tollgate check --config {cfg_path} not run: the container's environment is incomplete")
                continue
            scratch = tempfile.mkdtemp(prefix="tollgate-deploy-check-")
            try:
                root = os.path.join(scratch, "root")
                try:
                    mounts = materialize(ex, pod, c, root)
                except ValueError as e:
                    fail(where, str(e))
                    continue
                local_cfg = os.path.join(root, cfg_path.lstrip("/"))
                if not any(cfg_path.startswith(m.rstrip("/") + "/") for m in mounts) or not os.path.isfile(local_cfg):
                    fail(where, f"--config {cfg_path} is not provided by any volume mounted into the container")
                    continue
                with open(local_cfg, encoding="utf-8") as fh:
                    text = fh.read()
                try:
                    tree = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    fail(where, f"{cfg_path}: invalid TOML: {e}")
                    continue
                # Re-root absolute file paths; relative ones already resolve against the config's
                # directory under root, as tollgate does.
                for field, value in file_keys(tree):
                    if "$" in value:
                        fail(where, f"{field} = {value!r}: write file paths literally (the check cannot follow variables)")
                        continue
                    target = os.path.join(root, value.lstrip("/")) if value.startswith("/") else os.path.join(os.path.dirname(local_cfg), value)
                    if not os.path.isfile(target):
                        fail(where, f"{field} = {value!r}: no volume mounted into the container provides this file")
                    if value.startswith("/"):
                        for q in ('"', "'"):
                            text = text.replace(f"{q}{value}{q}", f"{q}{target}{q}")
                with open(local_cfg, "w", encoding="utf-8") as fh:
                    fh.write(text)
                # Exactly the container's environment.
                proc = subprocess.run([tollgate_bin, "check", "--config", local_cfg], env=env, capture_output=True, text=True)
                output = (proc.stdout + proc.stderr).strip().replace(scratch + "/root", "")
                if proc.returncode != 0:
                    fail(where, f"tollgate check --config {cfg_path} failed:\n    " + output.replace("\n", "\n    "))
                else:
                    info(f"tollgate check {ex.name} {name_of(doc)}/{c.get('name')}: {output}")
                check_listen_ports(where, tree, env, c)
                dump.append({
                    "example": ex.name,
                    "workload": name_of(doc),
                    "container": c.get("name"),
                    "config_path": cfg_path,
                    "source": list(source) if source else None,
                    "env": sorted(env),
                    "toml": tree,
                })
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    for f, doc in ex.docs:
        if doc.get("kind") != "ConfigMap":
            continue
        for key in (doc.get("data") or {}):
            if key.endswith(".toml") and (doc["metadata"]["name"], key) not in used:
                fail(f"{ex.name}/{f} {name_of(doc)}", f"{key} is not the --config of any tollgate container, so it was not checked")


def config_source(ex, pod, c, cfg_path):
    """(ConfigMap name, key) that provides cfg_path in the container, if any."""
    vols = {v.get("name"): v for v in pod.get("volumes") or []}
    for m in c.get("volumeMounts") or []:
        mp = m["mountPath"].rstrip("/") + "/"
        if not cfg_path.startswith(mp):
            continue
        rel = cfg_path[len(mp):]
        for kind, ref, items in volume_sources(vols.get(m.get("name"), {})):
            if kind != "ConfigMap":
                continue
            for it in items or [{"key": k, "path": k} for k in ((ex.find("ConfigMap", ref.get("name")) or {}).get("data") or {})]:
                if it.get("path", it.get("key")) == rel:
                    return (ref.get("name"), it.get("key"))
    return None


def check_listen_ports(where, tree, env, c):
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    server = expand_vars((tree.get("server") or {}).get("listen", "127.0.0.1:8080"), env)
    admin = expand_vars((tree.get("admin") or {}).get("listen", "127.0.0.1:9090"), env)
    host, port = listen_port(admin)
    if host not in ("0.0.0.0", "::"):
        fail(where, f"admin.listen = {admin}: the kubelet's probes reach the Pod IP, listen on 0.0.0.0")
    if ports.get("admin") != port:
        fail(where, f"admin.listen port {port} differs from the container port named admin ({ports.get('admin')})")
    host, port = listen_port(server)
    if host in ("127.0.0.1", "::1", "localhost"):
        if "http" in ports:
            fail(where, f"server.listen = {server} is loopback but the container declares an http port")
    elif ports.get("http") != port:
        fail(where, f"server.listen port {port} differs from the container port named http ({ports.get('http')})")


# ---- kustomize build ----------------------------------------------------------------------------


def check_build(ex, kubectl, versions, built):
    proc = subprocess.run([kubectl, "kustomize", ex.path], capture_output=True, text=True)
    if proc.returncode != 0:
        fail(ex.name, f"kubectl kustomize failed: {proc.stderr.strip()}")
        return
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    ns = (ex.kustomization or {}).get("namespace")
    for d in docs:
        schema_validate(f"{ex.name} (kustomize build)", d, versions)
        if d.get("kind") != "Namespace" and ns and (d.get("metadata") or {}).get("namespace") != ns:
            fail(f"{ex.name} (kustomize build)", f"{name_of(d)} is not in namespace {ns}")
    built[ex.name] = docs
    info(f"kubectl kustomize {ex.name}: {len(docs)} resources")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubernetes-dir", required=True)
    ap.add_argument("--tollgate", required=True)
    ap.add_argument("--k8s-versions", required=True, help="comma-separated, e.g. 1.30.0,1.34.0")
    ap.add_argument("--kubectl", default="", help="kubectl for `kubectl kustomize`; empty skips the build check")
    ap.add_argument("--dump", default="")
    a = ap.parse_args()
    versions = [v for v in a.k8s_versions.split(",") if v]
    root = a.kubernetes_dir

    examples, stray = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        yamls = [f for f in filenames if f.endswith((".yaml", ".yml"))]
        if "kustomization.yaml" in filenames or "kustomization.yml" in filenames:
            examples.append(dirpath)
        elif yamls:
            stray.extend(os.path.join(dirpath, f) for f in yamls)
    for s in stray:
        fail(os.path.relpath(s, root), "manifest outside an example directory with a kustomization.yaml")
    if not examples:
        fail(root, "no example directories found")

    dump = {"kubernetes_versions": versions, "documents": [], "tollgate_configs": [], "built": {}}
    for path in examples:
        ex = load_example(root, path)
        info(f"{len(ex.docs)} documents")
        for f, d in ex.docs:
            schema_validate(f"{ex.name}/{f}", d, versions)
            dump["documents"].append({"example": ex.name, "file": f, "doc": d})
        check_policy(ex)
        check_secrets(ex)
        check_references(ex)
        check_tollgate_configs(ex, a.tollgate, dump["tollgate_configs"])
        if a.kubectl:
            check_build(ex, a.kubectl, versions, dump["built"])
        if ex.kustomization is not None:
            dump["documents"].append({"example": ex.name, "file": "kustomization.yaml", "doc": ex.kustomization})

    if a.dump:
        with open(a.dump, "w", encoding="utf-8") as fh:
            json.dump(dump, fh, indent=1, default=str)
    if problems:
        print(f"\n{len(problems)} problem(s) in {root}", flush=True)
        return 1
    print(f"manifests OK: {len(examples)} examples, Kubernetes {', '.join(versions)} (strict)", flush=True)
    return 0


if __name__ == "__main__":
    if kubernetes_validate is None:
        print("kubernetes-validate is not installed (run deploy/check.sh)", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
