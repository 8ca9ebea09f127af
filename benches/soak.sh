#!/usr/bin/env bash
# Soak test with faults: tollgate under a steady mixed load on loopback for DURATION while its
# provider, session store, upstream and configuration misbehave on a schedule, every answer
# checked against what it should be.
#
#   benches/soak.sh            # 10 minutes (the README's figures)
#   benches/soak.sh 90s        # the short form: one cycle of every fault
#
# What runs (all on 127.0.0.1, all stopped on exit):
#   - the OpenID Provider: panva's oidc-provider (tests/idp, `npm ci` there first), restarted
#     on the same port with a rotated signing key (the previous key still published, the one
#     before retired)
#   - Redis (Debian redis-server) holding the browser sessions; restarted with its data kept
#     (SHUTDOWN SAVE, then the same dump file)
#   - the upstream: benches/soak/upstream.py (Python stdlib: JSON echo and WebSocket echo)
#   - tollgate (TOLLGATE_BIN, default target/release/tollgate): routes /api/ (bearer), /svc/
#     (bearer, the gateway's own client-credentials token upstream), /app/ (browser sign-in,
#     Redis sessions), /ws/ (bearer, WebSocket tunnels); header timeout 5 s
#   - the driver: benches/soak/driver.py (Python stdlib, ~RATE requests/s over 6 connections,
#     12 WebSocket tunnels, sign-ins through the provider's login form; see its docstring)
# Faults, every 90 s after the warm-up (the 90 s form has one cycle):
#   +0 provider restarted with a rotated key · +6 Redis down 2 s · +12 upstream killed 3 s
#   · +19 200 slow clients (a byte of request head a second) · +27 reload by SIGHUP · +31 an
#   invalid configuration for 3 s, then the good one back · +37 reload by a file change
#   · +42 provider down 30 s
# Every answer is classified (driver.py); those that are wrong and not explained by a fault
# window (a 5xx or a dropped connection while the upstream is down; a failed sign-in or its
# 503 while the provider is; a session 503 while Redis is) are misclassifications: a valid
# credential refused, an invalid one accepted, a lost session, a 5xx, a lost tunnel, a dropped
# connection. Target: zero of each, no panic in the log, RSS after the warm-up growing less than
# 5 %, descriptors back at their baseline once tollgate has closed idle connections.
# Output: docs/soak.md (summary table) and docs/soak.png (RPS, p99, RSS, descriptors over
# time, fault windows shaded; gnuplot), both also printed/kept in the work dir.
#
# Needs: node (with tests/idp/node_modules), python3, curl, openssl; redis-server and gnuplot
# are installed with apt-get when missing (sudo when not root).
# Knobs (environment): RATE=300 TOLLGATE_BIN=path OUT_DIR=docs (where soak.md/png go)
#   TOLLGATE_ENV="VAR=value ..." (environment for tollgate alone) KEEP=1 (keep the work dir)
#   CYCLE=90 (seconds between fault cycles) AT_TTL=300 (the provider's access-token lifetime;
#   the driver replaces its tokens at half of it)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE="$ROOT/benches/soak"
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
LOG_NAME=soak.sh

DURATION_ARG=${1:-10m}
case $DURATION_ARG in
    *m) DURATION=$((${DURATION_ARG%m} * 60)) ;;
    *s) DURATION=${DURATION_ARG%s} ;;
    *) DURATION=$DURATION_ARG ;;
esac
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 60)) || die "DURATION must be at least 60s, like 90s or 10m (got $DURATION_ARG)"
RATE=${RATE:-300}
CYCLE=${CYCLE:-90}
# Access-token lifetime at the provider (its default): the verified-token cache (an entry per
# token until its exp) is in its steady state after one lifetime, so a long run's RSS baseline
# is taken then (the faults start after a short warm-up regardless).
AT_TTL=${AT_TTL:-300}
OUT_DIR=${OUT_DIR:-$ROOT/docs}
BIN="${TOLLGATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate}"
[[ $BIN = /* ]] || BIN="$ROOT/$BIN"
[[ -x $BIN ]] || die "no tollgate binary at $BIN (cargo build --release, or set TOLLGATE_BIN)"
# The warm-up: load without faults. The RSS and descriptor baseline: a token lifetime + 30 s
# into the load when the run is long enough (as many cache entries expire as are added), else
# the end of the warm-up (the 90 s form: its RSS figure includes the cache filling).
if ((DURATION >= 300)); then WARMUP=30; else WARMUP=10; fi
BASELINE_AT=$WARMUP
((DURATION >= AT_TTL + 150)) && BASELINE_AT=$((AT_TTL + 30))
HEADER_TIMEOUT=5
IDLE_TIMEOUT=15

W=$(mktemp -d /tmp/tollgate-soak.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v curl >/dev/null || die "curl is required"
command -v openssl >/dev/null || die "openssl is required"
command -v python3 >/dev/null || die "python3 is required"
command -v node >/dev/null || die "node is required (the test provider, tests/idp)"
[[ -d $ROOT/tests/idp/node_modules/oidc-provider ]] || die "tests/idp/node_modules is missing: (cd tests/idp && npm ci)"
want redis-server redis-server
want redis-cli redis-tools
want gnuplot gnuplot-nox
install_wanted

UP=$(free_port); RD=$(free_port); IDP_PORT=$(free_port); TG=$(free_port); ADMIN=$(free_port)
ISSUER="http://127.0.0.1:$IDP_PORT"
mkdir -p "$W/redis" "$W/keysets"
FAULTS="$W/faults.log"; : >"$FAULTS"
now() { date +%s.%N | cut -c1-14; }
# A fault window: kind, start, end (epoch seconds); the report shades and excuses them.
window() { echo "$1 $2 $3" >>"$FAULTS"; }

# ---------------------------------------------------------------- key files
# Signing keys in turn: rsa1, ec1, rsa2, ec1, rsa1, ... (RSA and EC alternate, so the one key
# of the signing algorithm is unambiguous), each published with the previous one; the one
# before that is retired. KEYSETS[i] = the file, KIDS[i] = its kids.
python3 - "$ROOT/tests/idp/keys" "$W/keysets" <<'EOF'
import json, sys
src, dst = sys.argv[1], sys.argv[2]
key = {n: json.load(open(f"{src}/{n}.json"))["keys"][0] for n in ("rsa1", "rsa2", "ec1")}
order = ["rsa1", "ec1", "rsa2", "ec1"]
for i in range(4):
    cur, prev = order[i], order[i - 1]
    keys = [key[cur]] + ([key[prev]] if i > 0 else [])
    json.dump({"keys": keys}, open(f"{dst}/set{i}.json", "w"))
    open(f"{dst}/set{i}.kids", "w").write(",".join(k["kid"] for k in keys))
# After the first turn, set0 again is rsa1 with ec1 (its predecessor) kept.
json.dump({"keys": [key["rsa1"], key["ec1"]]}, open(f"{dst}/set4.json", "w"))
open(f"{dst}/set4.kids", "w").write("test-rsa-1,test-ec-1")
EOF
KEYSET=0
keyset_file() { echo "$W/keysets/set$1.json"; }
next_keyset() { if ((KEYSET == 4)); then KEYSET=1; else KEYSET=$((KEYSET + 1)); fi; }

# ---------------------------------------------------------------- services
start_upstream() {
    spawn python3 "$HERE/upstream.py" "$UP" >>"$W/upstream.out" 2>&1
    UP_PID=$SPAWNED
    wait_port "$UP" 10 || die "the upstream did not start: $(tail -5 "$W/upstream.out")"
}
start_redis() {
    spawn redis-server --port "$RD" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
        --dir "$W/redis" --dbfilename dump.rdb --logfile "$W/redis/redis.log"
    RD_PID=$SPAWNED
    local deadline=$(($(date +%s) + 10))
    until [[ $(redis-cli -p "$RD" ping 2>/dev/null) = PONG ]]; do
        (($(date +%s) < deadline)) || die "redis-server did not start: $(tail -5 "$W/redis/redis.log")"
        sleep 0.02
    done
}
start_idp() {
    cp "$W/keysets/set$KEYSET.kids" "$W/keys.next"; mv "$W/keys.next" "$W/keys"
    : >"$W/idp.ready"
    IDP_PORT=$IDP_PORT IDP_JWKS_FILE=$(keyset_file "$KEYSET") IDP_AT_TTL=$AT_TTL IDP_LOG_REQUESTS=0 \
        IDP_RESOURCES="https://api.tollgate.test,https://other.tollgate.test" \
        IDP_WEB_REDIRECT_URIS="http://127.0.0.1:$TG/app/oauth2/callback" \
        IDP_WEB_POST_LOGOUT_URIS="http://127.0.0.1:$TG/app/" \
        spawn node "$ROOT/tests/idp/server.mjs" >"$W/idp.ready" 2>>"$W/idp.err"
    IDP_PID=$SPAWNED
    local deadline=$(($(date +%s) + 20))
    until grep -q '^IDP_READY' "$W/idp.ready"; do
        kill -0 "$IDP_PID" 2>/dev/null || die "the provider exited: $(tail -5 "$W/idp.err")"
        (($(date +%s) < deadline)) || die "the provider was not ready within 20 s: $(tail -5 "$W/idp.err")"
        sleep 0.02
    done
}
stop_pid() { # pid [signal]: stops it and waits (bounded) for it to go
    kill -"${2:-TERM}" "$1" 2>/dev/null || true
    wait_gone "$1" 10 || { kill -KILL "$1" 2>/dev/null || true; wait_gone "$1" 5 || true; }
    { wait "$1"; } 2>/dev/null || true
}

# ---------------------------------------------------------------- tollgate
COOKIE_SECRET=$(openssl rand -base64 32)
tollgate_conf() { # generation comment
    cat <<EOF
# soak test configuration, generation $1
[server]
listen = "127.0.0.1:$TG"
workers = 2
header_read_timeout = "${HEADER_TIMEOUT}s"
idle_timeout = "${IDLE_TIMEOUT}s"
config_check_interval = "1s"

[admin]
listen = "127.0.0.1:$ADMIN"

[upstream]
pool_idle_timeout = "${IDLE_TIMEOUT}s"
connect_timeout = "1s"
timeout = "10s"

[log]
format = "json"
level = "info"
access_log = false

[[issuer]]
name = "idp"
url = "$ISSUER"
audiences = ["https://api.tollgate.test"]
token_type = "at+jwt"

[[login]]
name = "app"
client_id = "web"
client_secret = "web-secret"
public_url = "http://127.0.0.1:$TG/app"
cookie_secret = "$COOKIE_SECRET"
scopes = ["openid", "email", "profile"]
session_store = "redis"
redis_url = "redis://127.0.0.1:$RD"

[[client]]
name = "svc"
issuer = "idp"
client_id = "m2m"
client_secret = "m2m-secret"
scope = "api:read"
resource = "https://api.tollgate.test"

[[route]]
name = "api"
auth = "bearer"
path = "/api/"
upstream = "http://127.0.0.1:$UP"

[[route]]
name = "svc"
auth = "bearer"
path = "/svc/"
upstream = "http://127.0.0.1:$UP"
upstream_token = "svc"

[[route]]
name = "ws"
auth = "bearer"
path = "/ws/"
upstream = "http://127.0.0.1:$UP"

[[route]]
name = "app"
auth = "login"
login = "app"
path = "/app/"
upstream = "http://127.0.0.1:$UP"
EOF
}
CONF="$W/tollgate.toml"
GENERATION=0
write_conf() { # [invalid]
    local tmp="$CONF.tmp"
    tollgate_conf "$GENERATION" >"$tmp"
    # Invalid: a route whose upstream is no URL (a validation error naming the field).
    [[ ${1:-} = invalid ]] && sed -i 's|^upstream = "http://127.0.0.1:'"$UP"'"$|upstream = "not a url"|' "$tmp"
    mv "$tmp" "$CONF"
}
metric() { # name{labels} → value (0 when absent)
    curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" '$1 == m {v = $2} END {print v + 0}'
}
RELOAD_OK='tollgate_config_reloads_total{outcome="success"}'
RELOAD_FAIL='tollgate_config_reloads_total{outcome="failure"}'
# Waits (bounded) until metric $1 exceeds $2.
wait_metric_above() {
    local deadline=$(($(date +%s) + ${3:-10}))
    while (($(date +%s) < deadline)); do
        awk -v a="$(metric "$1")" -v b="$2" 'BEGIN {exit !(a > b)}' && return 0
        sleep 0.05
    done
    log "$1 did not rise above $2 within ${3:-10} s"
    return 1
}

start_upstream
start_redis
start_idp
write_conf
# TOLLGATE_ENV: more environment for tollgate alone, e.g. GLIBC_TUNABLES=glibc.malloc.mmap_threshold=8192
# shellcheck disable=SC2086
spawn env ${TOLLGATE_ENV:-} "$BIN" run --config "$CONF" 2>"$W/tollgate.log"
TG_PID=$SPAWNED
wait_200 "http://127.0.0.1:$ADMIN/readyz" 30 || die "tollgate was not ready: $(tail -5 "$W/tollgate.log")"
IDLE_RSS=$(mem_kib "$TG_PID" VmRSS); IDLE_FDS=$(ls "/proc/$TG_PID/fd" | wc -l)
# What the descriptors are (kinds, and the TCP peers of the sockets), for the report's notes.
fd_list() {
    local f
    for f in "/proc/$TG_PID/fd"/*; do readlink "$f"; done | sed 's/:\[[0-9]*\]//' | sort | uniq -c
    ss -tanp 2>/dev/null | awk -v p="pid=$TG_PID," 'index($0, p) {print $1, $4, $5}' | sort | uniq -c
}
fd_list >"$W/fds-idle-before.txt"
log "tollgate $BIN (pid $TG_PID) ready: RSS $IDLE_RSS KiB, $IDLE_FDS descriptors; load for ${DURATION}s at $RATE/s"

# ---------------------------------------------------------------- load
spawn python3 "$HERE/driver.py" run --gw "$TG" --idp "$ISSUER" --pid "$TG_PID" --duration "$DURATION" \
    --out "$W" --rate "$RATE" --token-age "$((AT_TTL / 2))" 2>"$W/driver.err"
DRIVER_PID=$SPAWNED
deadline=$(($(date +%s) + 200))
until [[ -s $W/ready ]]; do
    kill -0 "$DRIVER_PID" 2>/dev/null || die "the driver exited: $(tail -5 "$W/driver.err")"
    (($(date +%s) < deadline)) || die "the driver was not ready within 200 s: $(tail -5 "$W/driver.err")"
    sleep 0.1
done
T0=$(cat "$W/ready")
log "load started (the driver minted its token pool and signed in its first sessions)"

# Sleeps until T0 + $1 seconds (scheduling, not synchronisation); false when past the end.
at() {
    local wait
    wait=$(awk -v t0="$T0" -v o="$1" -v now="$(now)" 'BEGIN {printf "%.3f", t0 + o - now}')
    awk -v w="$wait" 'BEGIN {exit !(w > 0)}' && sleep "$wait"
    return 0
}
fits() { awk -v o="$1" -v d="$DURATION" 'BEGIN {exit !(o < d - 5)}'; }

fault_provider_restart() {
    local t; t=$(now)
    next_keyset
    stop_pid "$IDP_PID"
    start_idp
    window provider_restart "$t" "$(now)"
    log "provider restarted with key set $KEYSET ($(cat "$W/keys"))"
}
fault_provider_down() {
    local t; t=$(now)
    stop_pid "$IDP_PID"
    at "$1"
    start_idp
    window provider_down "$t" "$(now)"
    log "provider down $(awk -v a="$t" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}') s"
}
fault_redis() {
    local t; t=$(now)
    redis-cli -p "$RD" shutdown save >/dev/null 2>&1 || true
    wait_gone "$RD_PID" 10 || die "redis-server did not stop"
    wait "$RD_PID" 2>/dev/null || true
    at "$1"
    start_redis
    window redis_down "$t" "$(now)"
    log "Redis restarted ($(redis-cli -p "$RD" dbsize) keys kept)"
}
fault_upstream() {
    local t; t=$(now)
    stop_pid "$UP_PID" KILL
    at "$1"
    start_upstream
    window upstream_down "$t" "$(now)"
    log "upstream killed and restarted"
}
fault_slow() {
    local t; t=$(now)
    python3 "$HERE/driver.py" slow --gw "$TG" --count 200 --limit "$HEADER_TIMEOUT" --out "$W/slow.jsonl"
    window slow_clients "$t" "$(now)"
    log "slow clients: $(tail -1 "$W/slow.jsonl")"
}
fault_sighup() {
    local t before; t=$(now); before=$(metric "$RELOAD_OK")
    kill -HUP "$TG_PID"
    wait_metric_above "$RELOAD_OK" "$before" || echo "sighup" >>"$W/reload-missed"
    window reload_sighup "$t" "$(now)"
}
fault_invalid() {
    local t before; t=$(now); before=$(metric "$RELOAD_FAIL")
    GENERATION=$((GENERATION + 1)); write_conf invalid
    wait_metric_above "$RELOAD_FAIL" "$before" || echo "invalid" >>"$W/reload-missed"
    at "$1"
    before=$(metric "$RELOAD_OK")
    GENERATION=$((GENERATION + 1)); write_conf
    wait_metric_above "$RELOAD_OK" "$before" || echo "restore" >>"$W/reload-missed"
    window invalid_config "$t" "$(now)"
}
fault_file_change() {
    local t before; t=$(now); before=$(metric "$RELOAD_OK")
    GENERATION=$((GENERATION + 1)); write_conf
    wait_metric_above "$RELOAD_OK" "$before" || echo "file" >>"$W/reload-missed"
    window reload_file "$t" "$(now)"
}

EXPECT_OK=0 EXPECT_FAIL=0
for ((c = WARMUP; c + 42 < DURATION; c += CYCLE)); do
    log "fault cycle at +${c}s"
    at "$c"; fits "$c" && fault_provider_restart
    at $((c + 6)); fits $((c + 6)) && fault_redis $((c + 8))
    at $((c + 12)); fits $((c + 12)) && fault_upstream $((c + 15))
    at $((c + 19)); fits $((c + 19)) && fault_slow
    at $((c + 27)); fits $((c + 27)) && { fault_sighup; EXPECT_OK=$((EXPECT_OK + 1)); }
    at $((c + 31)); fits $((c + 34)) && { fault_invalid $((c + 34)); EXPECT_FAIL=$((EXPECT_FAIL + 1)); EXPECT_OK=$((EXPECT_OK + 1)); }
    at $((c + 37)); fits $((c + 37)) && { fault_file_change; EXPECT_OK=$((EXPECT_OK + 1)); }
    at $((c + 42)); fits $((c + 72)) && fault_provider_down $((c + 72))
done

# ---------------------------------------------------------------- end
deadline=$(($(date +%s) + DURATION + 120))
while kill -0 "$DRIVER_PID" 2>/dev/null; do
    (($(date +%s) < deadline)) || die "the driver did not finish"
    sleep 0.2
done
wait "$DRIVER_PID" || die "the driver failed: $(tail -5 "$W/driver.err")"
END_RSS=$(mem_kib "$TG_PID" VmRSS); END_FDS=$(ls "/proc/$TG_PID/fd" | wc -l)
# Descriptors once tollgate has closed idle connections (client keep-alive and the upstream
# pool both time out after IDLE_TIMEOUT): polled until back at the idle count, bounded.
deadline=$(($(date +%s) + 2 * IDLE_TIMEOUT + 10))
while :; do
    AFTER_FDS=$(ls "/proc/$TG_PID/fd" | wc -l)
    ((AFTER_FDS <= IDLE_FDS)) && break
    (($(date +%s) < deadline)) || break
    sleep 0.5
done
AFTER_RSS=$(mem_kib "$TG_PID" VmRSS); HWM=$(mem_kib "$TG_PID" VmHWM)
fd_list >"$W/fds-idle-after.txt"
# How much of the RSS is memory malloc holds free: glibc's malloc_trim(0), called in tollgate
# through gdb (when gdb is there), returns it to the kernel.
TRIMMED_RSS=0
if command -v gdb >/dev/null; then
    gdb -p "$TG_PID" -batch -ex 'call (int) malloc_trim(0)' >"$W/gdb.log" 2>&1 && TRIMMED_RSS=$(mem_kib "$TG_PID" VmRSS)
fi
curl -s "http://127.0.0.1:$ADMIN/metrics" >"$W/metrics.txt"
cat >"$W/process.json" <<EOF
{"idle_rss_kib": $IDLE_RSS, "idle_fds": $IDLE_FDS, "end_rss_kib": $END_RSS, "end_fds": $END_FDS,
 "after_idle_rss_kib": $AFTER_RSS, "trimmed_rss_kib": $TRIMMED_RSS, "tollgate_env": "${TOLLGATE_ENV:-}", "after_idle_fds": $AFTER_FDS, "hwm_kib": $HWM, "warmup": $WARMUP, "baseline_at": $BASELINE_AT,
 "expect_reload_ok": $EXPECT_OK, "expect_reload_fail": $EXPECT_FAIL,
 "reload_missed": "$(cat "$W/reload-missed" 2>/dev/null | tr "\n" " " || true)",
 "command": "benches/soak.sh $DURATION_ARG", "rate": $RATE, "cores": $(nproc),
 "binary": "$BIN", "load": "$(cut -d' ' -f1-3 /proc/loadavg)"}
EOF
mkdir -p "$OUT_DIR"
python3 "$HERE/report.py" "$W" "$OUT_DIR" || die "the report failed"
cat "$OUT_DIR/soak.md"
log "plot: $OUT_DIR/soak.png; work dir $W"
