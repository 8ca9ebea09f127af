#!/usr/bin/env bash
# CI checks for deploy/: runnable on a fresh machine, offline apart from one pip install.
#
#   bash deploy/check.sh                         # uses target/debug/tollgate (built if missing)
#   TOLLGATE_BIN=/path/to/tollgate bash deploy/check.sh
#
# 1. Installs the pinned tools from deploy/tools/requirements.txt (kubernetes-validate, which
#    ships the Kubernetes OpenAPI schemas; hadolint; shellcheck) into a venv under
#    ${XDG_CACHE_HOME:-$HOME/.cache}/tollgate-deploy-venv, once (again when the pins change).
# 2. hadolint on deploy/Dockerfile (no ignored rules); shellcheck on this script.
# 3. deploy/tools/check_manifests.py on deploy/kubernetes/: strict schema validation of every
#    manifest against each version in KUBE_VERSIONS, `kubectl kustomize` of each example when
#    kubectl is installed, hardening policy, cross-references, and `tollgate check` of every
#    TOML in a ConfigMap with the volumes and environment its container gets.
#
# Exits non-zero if anything failed, after running every check and listing every failure.
#
# Environment:
#   TOLLGATE_BIN         the tollgate binary for `tollgate check`
#   KUBE_VERSIONS        Kubernetes versions to validate against (default below)
#   TOLLGATE_DEPLOY_VENV where the tools' venv lives
#   KUBECTL              kubectl for the kustomize build check; KUBECTL=none skips it
#   DEPLOY_CHECK_DUMP    write the parsed manifests and checked TOMLs there as JSON
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

# The oldest version the manifests must work on (native sidecars, preStop sleep: 1.30) and a
# recent one (catches removed APIs). Both pinned: the schemas come with kubernetes-validate.
KUBE_VERSIONS="${KUBE_VERSIONS:-1.30.0,1.34.0}"
venv="${TOLLGATE_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate-deploy-venv}"
requirements="$here/tools/requirements.txt"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
failures=()
failed() { failures+=("$1"); printf 'FAILED: %s\n' "$1"; }

# ---- tools ----------------------------------------------------------------------------------------
install_tools() {
  mkdir -p "$(dirname "$venv")"
  local stamp="$venv/.requirements"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$requirements"; then
    return 0
  fi
  say "installing the pinned check tools into $venv"
  command -v python3 >/dev/null || { echo "python3 is required" >&2; return 1; }
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
  cp "$requirements" "$stamp"
}
# Several checks may start at once (cargo runs tests in parallel): one installs, the others wait.
lock="$(dirname "$venv")/.tollgate-deploy-venv.lock"
mkdir -p "$(dirname "$venv")"
if command -v flock >/dev/null; then
  exec 9>"$lock"
  flock 9
  install_tools || { echo "could not install the check tools (pip install -r $requirements)" >&2; exit 1; }
  flock -u 9
  exec 9>&-
else
  install_tools || { echo "could not install the check tools (pip install -r $requirements)" >&2; exit 1; }
fi

tollgate="${TOLLGATE_BIN:-$repo/target/debug/tollgate}"
if [ -z "${TOLLGATE_BIN:-}" ] && [ ! -x "$tollgate" ]; then
  say "building tollgate (cargo build --locked --bin tollgate)"
  (cd "$repo" && cargo build --locked --quiet --bin tollgate)
fi
[ -x "$tollgate" ] || { echo "tollgate binary not found at $tollgate (set TOLLGATE_BIN)" >&2; exit 1; }

kubectl="${KUBECTL:-$(command -v kubectl || true)}"
[ "$kubectl" = none ] && kubectl=""

# ---- Dockerfile -----------------------------------------------------------------------------------
say "hadolint deploy/Dockerfile"
if "$venv/bin/hadolint" --failure-threshold info "$here/Dockerfile"; then
  echo "  Dockerfile OK ($("$venv/bin/hadolint" --version))"
else
  failed "hadolint deploy/Dockerfile"
fi
# The build context must keep what the Dockerfile copies.
for path in Cargo.toml Cargo.lock src benches config; do
  grep -qx "!$path/\?" "$here/Dockerfile.dockerignore" || failed "deploy/Dockerfile.dockerignore excludes $path, which the Dockerfile copies"
done

say "shellcheck deploy/check.sh"
if "$venv/bin/shellcheck" "$here/check.sh"; then echo "  check.sh OK"; else failed "shellcheck deploy/check.sh"; fi

# ---- manifests and embedded configurations --------------------------------------------------------
say "manifests in deploy/kubernetes (Kubernetes ${KUBE_VERSIONS//,/, }, strict)"
if [ -z "$kubectl" ]; then
  echo "  SKIP kubectl kustomize: kubectl not found (each kustomization's resource list is still checked)"
fi
if ! "$venv/bin/python" "$here/tools/check_manifests.py" \
  --kubernetes-dir "$here/kubernetes" \
  --tollgate "$tollgate" \
  --k8s-versions "$KUBE_VERSIONS" \
  --kubectl "$kubectl" \
  --dump "${DEPLOY_CHECK_DUMP:-}"; then
  failed "deploy/kubernetes manifests (see FAIL lines above)"
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
  printf 'deploy/check.sh: %d check(s) failed:\n' "${#failures[@]}"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
echo "deploy/check.sh: all checks passed"
