#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, then runs them.
#   bash tests/run.sh            # everything
#   bash tests/run.sh proxy      # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'tests/run.sh: %s\n' "$*" >&2; exit 1; }

# Debian packages the tests drive for real (a browser, Redis, nginx for forward-auth and load
# tests, wrk). Installed only when missing.
DEBIAN_PACKAGES=(chromium redis-server nginx wrk)

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing Debian packages ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
    sudo=(sudo)
  fi
  say "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed; install by hand: apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || die "could not install ${missing[*]}; install them by hand"
}

command -v cargo >/dev/null || die "cargo is required (https://rustup.rs)"
# node and npm may come from elsewhere than Debian (nodesource, nvm): only install when absent.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
apt_install "${DEBIAN_PACKAGES[@]}"
# (Tests start their own nginx and redis-server on free loopback ports; the packaged services,
#  if the package manager started them, are not used.)

# The real OpenID Provider (panva's oidc-provider, pinned in tests/idp/package-lock.json).
if [ ! -d tests/idp/node_modules ] || [ tests/idp/package-lock.json -nt tests/idp/node_modules/.package-lock.json ]; then
  say "installing the test OpenID Provider (npm ci in tests/idp)"
  (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in tests/idp failed"
fi

# Node packages for the browser tests (playwright-core drives Debian's chromium; no browser download).
if [ -f tests/browser/package-lock.json ] && { [ ! -d tests/browser/node_modules ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; }; then
  say "installing the browser test driver (npm ci in tests/browser)"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in tests/browser failed"
fi

# Python packages (a real gRPC server and client, an OTLP receiver), pinned in
# tests/py/requirements.txt, in a virtual environment the tests find at tests/py/.venv.
if [ ! -x tests/py/.venv/bin/python ] || [ tests/py/requirements.txt -nt tests/py/.venv/installed ]; then
  command -v python3 >/dev/null || apt_install python3 python3-venv
  say "installing the Python test parts (pip into tests/py/.venv)"
  python3 -m venv tests/py/.venv 2>/dev/null || { apt_install python3-venv; python3 -m venv tests/py/.venv; } \
    || die "could not create tests/py/.venv (python3 -m venv)"
  tests/py/.venv/bin/pip install -q --disable-pip-version-check -r tests/py/requirements.txt \
    || die "pip install -r tests/py/requirements.txt failed"
  touch tests/py/.venv/installed
fi

say "cargo test"
if [ $# -gt 0 ]; then
  exec cargo test --locked "$@"
fi
# The library's unit tests, the binary's, and every integration test in tests/ (the crate has no
# doc tests; naming the targets keeps an empty doc-test run from being the last word).
exec cargo test --locked --lib --bins --tests
