#!/usr/bin/env bash
# Load test on loopback: tollgate against nginx as a plain keep-alive reverse proxy, both in
# front of the same nginx upstream returning a small 200, measured by wrk in the same run.
#
#   benches/load.sh                 # about 4 minutes; prints one table and the notes below it
#
# What runs (all on 127.0.0.1, all stopped on exit):
#   - upstream: nginx, `return 200`, access_log off
#   - nginx proxy: WORKERS workers, SO_REUSEPORT listeners, upstream keepalive
#   - `tollgate dev`: used only for its development issuer (discovery, JWKS, tokens, sign-in)
#   - tollgate (release build): WORKERS workers, access log off, routes:
#       /public/ auth = "none" · /api/ auth = "bearer" · /wiki/ auth = "login" (the dev issuer's wiki client)
# Modes: direct to upstream (the load generator's ceiling, also with the token-cycling Lua
# script), nginx proxy, tollgate public, bearer with one token, bearer cycling through TOKENS
# distinct tokens (wrk Lua, round robin), session cookie (a real sign-in at the dev issuer) and
# public with the access log on, in ROUNDS interleaved rounds (best run shown: the machine may
# be shared); then bearer over BIG_TOKENS distinct RS256 tokens (mostly first uses: signature
# checks; the cost of a miss is printed under the table),
# peak RSS, and a fixed-rate pass (hey) for p50/p99 and CPU time per request of each proxy.
# The fixed rate defaults to a quarter of nginx's best, not half: hey itself costs ~50 us of CPU
# per request (wrk ~8), so at half the two cores saturate and latency measures the queue.
#
# Needs: cargo, wrk, nginx, curl; hey for the fixed-rate pass (skipped without it).
# Knobs (environment): WORKERS=2 CONNS=64 DURATION=5s WARMUP=1s ROUNDS=3 TOKENS=10000
#   BIG_TOKENS=100000 (0 skips) FIXED=8s (0 skips) FIXED_RATE=RPS (default nginx best / 4)
#   SKIP_BUILD=1 KEEP=1 (keep the work dir) TOLLGATE_BIN=path (another build of tollgate)
#   INSTRUCTIONS=1 (instead: user-space instructions per request under callgrind; needs valgrind)
#   PROFILE=1 (perf record tollgate during the public and bearer runs; reports in the work dir)
set -euo pipefail

WORKERS=${WORKERS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
TOKENS=${TOKENS:-10000}
BIG_TOKENS=${BIG_TOKENS:-100000}
FIXED=${FIXED:-8s}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE="$ROOT/benches/load"
BIN="${TOLLGATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate}"
[[ $BIN = /* ]] || BIN="$ROOT/$BIN"

for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { echo "load.sh: $tool is required (apt-get install $tool)" >&2; exit 1; }
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --locked)
fi

[[ ${PROFILE:-0} = 1 ]] && KEEP=1
W=$(mktemp -d /tmp/tollgate-load.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ ${KEEP:-0} = 1 ]]; then echo "work dir kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "load.sh: $*" >&2; }

USED=" "
free_port() {
    local p _
    for _ in $(seq 1 500); do
        p=$((10000 + RANDOM % 22000))  # below the ephemeral range (32768+)
        [[ $USED = *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED="$USED$p "
            echo "$p"
            return
        fi
    done
    echo "no free port" >&2
    return 1
}

# Waits (at most $2 seconds) until URL $1 answers 200.
wait_200() {
    local deadline=$(($(date +%s%N) + ${2:-10} * 1000000000))
    while (($(date +%s%N) < deadline)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) = 200 ]] && return 0
        sleep 0.005
    done
    echo "timed out waiting for $1" >&2
    return 1
}

# CPU seconds (user + system) of a process and its children threads; children processes too
# (nginx workers) when $2 is "tree".
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

mem_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# wrk latency "1.23ms" / "850.00us" / "1.02s" → milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

# ---------------------------------------------------------------- upstream and nginx proxy
UP=$(free_port); NGX=$(free_port); TG=$(free_port); ADMIN=$(free_port)
TG_LOG=$(free_port); ADMIN_LOG=$(free_port); DEV=$(free_port)

nginx_conf() { # name workers server-block
    mkdir -p "$W/$1/logs"
    cat >"$W/$1/nginx.conf" <<EOF
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
nginx_conf upstream 1 "server {
        listen 127.0.0.1:$UP backlog=4096;
        location / { default_type text/plain; return 200 'hello from upstream\n'; }
    }"
# The plain keep-alive reverse proxy tollgate is compared with, listening on $1 (options $2).
proxy_block() {
    cat <<EOF
upstream app { server 127.0.0.1:$UP; keepalive 256; }
    server {
        listen 127.0.0.1:$1 $2;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}
nginx_conf proxy "$WORKERS" "$(proxy_block "$NGX" "reuseport backlog=4096")"
for n in upstream proxy; do
    nginx -e "$W/$n/logs/error.log" -p "$W/$n" -c "$W/$n/nginx.conf" &
    PIDS+=($!)
done
UP_PID=${PIDS[0]}; NGX_PID=${PIDS[1]}
wait_200 "http://127.0.0.1:$UP/"
wait_200 "http://127.0.0.1:$NGX/"

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

# ---------------------------------------------------------------- tollgate
tollgate_conf() { # file listen admin access_log level
    cat >"$1" <<EOF
[server]
listen = "127.0.0.1:$2"
workers = $WORKERS

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
public_url = "http://127.0.0.1:$2/wiki"
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

[[route]]
name = "app"
auth = "login"
login = "wiki"
path = "/wiki/"
upstream = "http://127.0.0.1:$UP"
EOF
}
tollgate_conf "$W/tollgate.toml" "$TG" "$ADMIN" false warn
# The access log is on by default; its lines go to stderr (here /dev/null) at level info.
tollgate_conf "$W/tollgate-log.toml" "$TG_LOG" "$ADMIN_LOG" true info
T0=$(date +%s%N)
"$BIN" run --config "$W/tollgate.toml" 2>"$W/tollgate.err" &
TG_PID=$!; PIDS+=($TG_PID)
wait_200 "http://127.0.0.1:$ADMIN/readyz" 20
READY_MS=$(( ($(date +%s%N) - T0) / 1000000 ))
RSS_START=$(mem_kib "$TG_PID" VmRSS)

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

# ---------------------------------------------------------------- measurements
# This machine may be shared (other builds come and go), so every mode runs ROUNDS times,
# interleaved, and the table shows the best run of each (interference only ever slows a run
# down), all runs' RPS, and how much CPU other processes took during the best run.
declare -A BEST ALL
MODES=()

busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat; } # user nice system steal
# CPU of everything this script runs: the servers, and (through `times`, which has to run in
# this shell, not a subshell) wrk, hey, curl and the helpers it has waited for.
ours_ticks() {
    times >"$W/times"
    local kids; kids=$(awk -v hz="$HZ" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%d", t * hz }' "$W/times")
    local total=$kids p
    for p in "$TG_PID" "${TG_LOG_PID:-}" "$DEV_PID"; do [[ -n $p ]] && total=$((total + $(cpu_ticks "$p"))); done
    for p in "$UP_PID" "$NGX_PID"; do total=$((total + $(cpu_ticks "$p" tree))); done
    echo "$total"
}

metric() { # name{labels} → value, from the benchmarked tollgate
    curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $2}'
}

# run_wrk MODE URL PID PIDKIND [wrk options...]: a warm-up, then the measured run.
run_wrk() {
    local mode=$1 url=$2 pid=$3 kind=$4; shift 4
    local out="$W/wrk.txt" m0="" m1="" verified="-" perf_pid=""
    [[ -v "ALL[$mode]" ]] || MODES+=("$mode")
    # The URL before the options: GNU getopt still parses them, and a script's `-- ARGS` stay last.
    wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" "$@" >/dev/null
    [[ $pid = "$TG_PID" ]] && m0=$(metric 'tollgate_verified_cache_total{result="miss"}')
    if [[ ${PROFILE:-0} = 1 && $pid = "$TG_PID" && $mode =~ ^tollgate\ (public|bearer,\ 1\ ) ]]; then
        perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$TG_PID" -o "$W/perf-${mode//[ ,]/_}.data" \
            -- sleep "${DURATION%s}" 2>/dev/null &
        perf_pid=$!
    fi
    local c0 b0 o0 c1 b1 o1
    c0=$(cpu_ticks "$pid" "$kind"); ours_ticks >"$W/o0"; o0=$(<"$W/o0"); b0=$(busy_ticks)
    wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url" "$@" >"$out"
    b1=$(busy_ticks); ours_ticks >"$W/o1"; o1=$(<"$W/o1"); c1=$(cpu_ticks "$pid" "$kind")
    [[ -n $perf_pid ]] && wait "$perf_pid"
    [[ $pid = "$TG_PID" ]] && m1=$(metric 'tollgate_verified_cache_total{result="miss"}') && verified=$((${m1:-0} - ${m0:-0}))
    local rps p50 p99 reqs errs cpu="-" other
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    reqs=$(awk '/requests in/ {print $1}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    errs=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/[^0-9 ]/, " "); n += $1 + $2 + $3 + $4} END {print n + 0}' "$out")
    [[ $pid != - ]] && cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v r="$reqs" 'BEGIN {printf "%.1f", d / hz / r * 1e6}')
    other=$(awk -v d=$(((b1 - b0) - (o1 - o0))) -v hz="$HZ" -v s="${DURATION%s}" -v n="$(nproc)" \
        'BEGIN {v = d / (s * hz * n) * 100; printf "%.0f", v < 0 ? 0 : v}')
    ALL[$mode]="${ALL[$mode]:-}${ALL[$mode]:+ }$rps"
    local best=${BEST[$mode]:-}; local best_rps=${best%%|*}
    if [[ -z ${BEST[$mode]:-} ]] || ((rps > best_rps)); then
        BEST[$mode]="$rps|$p50|$p99|$cpu|$errs|$verified|$other"
    fi
    [[ $errs != 0 ]] && log "$mode: $errs errors (non-2xx or socket errors)"
    log "$(printf '%-34s %8s RPS  p50 %6s ms  p99 %7s ms  errors %s  other CPU %s%%' "$mode" "$rps" "$p50" "$p99" "$errs" "$other")"
}

check_200() { # url [curl options]
    local url=$1; shift
    local code; code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")
    [[ $code = 200 ]] || { log "$url answered $code, expected 200"; exit 1; }
}

"$BIN" run --config "$W/tollgate-log.toml" 2>/dev/null &
TG_LOG_PID=$!; PIDS+=($TG_LOG_PID)
wait_200 "http://127.0.0.1:$ADMIN_LOG/readyz" 20

log "tollgate ready in ${READY_MS} ms; issuer $ISSUER; workers $WORKERS; wrk -t1 -c$CONNS -d$DURATION x $ROUNDS rounds"
mint 1 "$W/one-token.txt"
ONE_TOKEN=$(<"$W/one-token.txt")
mint "$TOKENS" "$W/tokens.txt"
SESSION=$(sign_in)
check_200 "http://127.0.0.1:$TG/public/x"
check_200 "http://127.0.0.1:$TG/api/x" -H "Authorization: Bearer $ONE_TOKEN"
check_200 "http://127.0.0.1:$TG/wiki/x" -H "Cookie: $SESSION"

# ---------------------------------------------------------------- instructions per request
# INSTRUCTIONS=1: instead of the timed runs, count the user-space instructions each proxy
# executes per request under callgrind (one worker each). Repeatable on a busy machine, unlike
# RPS; the kernel's share (the same for both, see README) is not counted.
if [[ ${INSTRUCTIONS:-0} = 1 ]]; then
    command -v valgrind >/dev/null || { log "INSTRUCTIONS=1 needs valgrind (apt-get install valgrind)"; exit 1; }
    NGX_CG=$(free_port); TG_CG=$(free_port); ADMIN_CG=$(free_port)
    nginx_conf proxy-cg 1 "$(proxy_block "$NGX_CG" "")"
    valgrind --tool=callgrind --callgrind-out-file="$W/cg-nginx.out" \
        nginx -g 'master_process off;' -e "$W/proxy-cg/logs/error.log" -p "$W/proxy-cg" -c "$W/proxy-cg/nginx.conf" \
        2>"$W/cg-nginx.err" &
    NGX_CG_PID=$!; PIDS+=($NGX_CG_PID)
    WORKERS=1 tollgate_conf "$W/tollgate-cg.toml" "$TG_CG" "$ADMIN_CG" false warn
    valgrind --tool=callgrind --callgrind-out-file="$W/cg-tollgate.out" "$BIN" run --config "$W/tollgate-cg.toml" \
        2>"$W/cg-tollgate.err" &
    TG_CG_PID=$!; PIDS+=($TG_CG_PID)
    wait_200 "http://127.0.0.1:$NGX_CG/public/x" 60
    wait_200 "http://127.0.0.1:$ADMIN_CG/readyz" 60
    # instr LABEL URL PID OUT [wrk options]: warm up, zero the counters, run, dump, divide.
    instr() {
        local label=$1 url=$2 pid=$3 out=$4; shift 4
        wrk -t1 -c8 -d2s "$url" "$@" >/dev/null
        callgrind_control -z "$pid" >/dev/null 2>&1
        wrk -t1 -c8 -d"${IDURATION:-4s}" "$url" "$@" >"$W/wrk-cg.txt"
        callgrind_control -d "$pid" >/dev/null 2>&1
        local dump reqs ir
        dump=$(ls -t "$out".* | head -1)
        reqs=$(awk '/requests in/ {print $1}' "$W/wrk-cg.txt")
        ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
        printf '| %-34s | %8s | %12s |\n' "$label" "$reqs" "$(awk -v i="$ir" -v r="$reqs" 'BEGIN {printf "%.0f", i / r}')"
    }
    echo
    echo "user-space instructions per request (callgrind, one worker each, wrk -t1 -c8)"
    echo
    printf '| %-34s | %8s | %12s |\n|%s|%s|%s|\n' mode requests "instr/req" "$(printf -- '-%.0s' {1..36})" \
        ---------- --------------
    instr "nginx proxy" "http://127.0.0.1:$NGX_CG/public/x" "$NGX_CG_PID" "$W/cg-nginx.out"
    instr "tollgate public" "http://127.0.0.1:$TG_CG/public/x" "$TG_CG_PID" "$W/cg-tollgate.out"
    instr "tollgate bearer, 1 token" "http://127.0.0.1:$TG_CG/api/x" "$TG_CG_PID" "$W/cg-tollgate.out" \
        -H "Authorization: Bearer $ONE_TOKEN"
    instr "tollgate session cookie" "http://127.0.0.1:$TG_CG/wiki/x" "$TG_CG_PID" "$W/cg-tollgate.out" \
        -H "Cookie: $SESSION"
    instr "tollgate bearer, $TOKENS tokens" "http://127.0.0.1:$TG_CG/api/x" "$TG_CG_PID" "$W/cg-tollgate.out" \
        -s "$HERE/tokens.lua" -- "$W/tokens.txt"
    exit 0
fi

for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    run_wrk "direct upstream" "http://127.0.0.1:$UP/public/x" - -
    run_wrk "nginx proxy" "http://127.0.0.1:$NGX/public/x" "$NGX_PID" tree
    run_wrk "tollgate public" "http://127.0.0.1:$TG/public/x" "$TG_PID" -
    run_wrk "tollgate bearer, 1 token" "http://127.0.0.1:$TG/api/x" "$TG_PID" - -H "Authorization: Bearer $ONE_TOKEN"
    run_wrk "tollgate session cookie" "http://127.0.0.1:$TG/wiki/x" "$TG_PID" - -H "Cookie: $SESSION"
    run_wrk "direct upstream, token-cycling Lua" "http://127.0.0.1:$UP/api/x" - - -s "$HERE/tokens.lua" -- "$W/tokens.txt"
    run_wrk "tollgate bearer, $TOKENS tokens" "http://127.0.0.1:$TG/api/x" "$TG_PID" - -s "$HERE/tokens.lua" -- "$W/tokens.txt"
    run_wrk "tollgate public, access log on" "http://127.0.0.1:$TG_LOG/public/x" "$TG_LOG_PID" -
done
HWM_10K=$(mem_kib "$TG_PID" VmHWM); RSS_10K=$(mem_kib "$TG_PID" VmRSS)
MISS='tollgate_verified_cache_total{result="miss"}'
VERIFIED_10K=$(metric "$MISS")
kill "$TG_LOG_PID"; wait "$TG_LOG_PID" 2>/dev/null || true; TG_LOG_PID=""

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
if [[ $FIXED != 0 ]] && command -v hey >/dev/null; then
    RATE=${FIXED_RATE:-$((NGINX_RPS / 4))}
    # Fresh credentials: the dev issuer's tokens live 5 minutes.
    mint 1 "$W/one-token.txt"; ONE_TOKEN=$(<"$W/one-token.txt"); SESSION=$(sign_in)
    run_hey "direct upstream" "http://127.0.0.1:$UP/public/x" - - "$RATE"
    run_hey "nginx proxy" "http://127.0.0.1:$NGX/public/x" "$NGX_PID" tree "$RATE"
    run_hey "tollgate public" "http://127.0.0.1:$TG/public/x" "$TG_PID" - "$RATE"
    run_hey "tollgate bearer, 1 token" "http://127.0.0.1:$TG/api/x" "$TG_PID" - "$RATE" -H "Authorization: Bearer $ONE_TOKEN"
    run_hey "tollgate session cookie" "http://127.0.0.1:$TG/wiki/x" "$TG_PID" - "$RATE" -H "Cookie: $SESSION"
elif [[ $FIXED != 0 ]]; then
    log "hey not found: fixed-rate pass skipped (apt-get install hey)"
fi

# ---------------------------------------------------------------- report
echo
echo "tollgate load test, $(nproc) cores: tollgate and the nginx proxy $WORKERS workers each, upstream nginx 1 worker."
echo "wrk -t1 -c$CONNS -d$DURATION after a $WARMUP warm-up, best of $ROUNDS interleaved rounds; ratio = RPS / nginx proxy RPS."
echo "CPU us/req: the proxy's own user+system CPU per request. other CPU: share of the machine used by processes"
echo "outside this benchmark during that run. verified: cache misses (signature checks) in the measured run."
echo
printf '| %-34s | %7s | %6s | %7s | %6s | %10s | %6s | %8s | %-23s | %5s |\n' \
    mode RPS "p50 ms" "p99 ms" ratio "CPU us/req" errors verified "RPS of every round" other
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" --------- -------- --------- -------- \
    ------------ -------- ---------- "$(printf -- '-%.0s' {1..25})" -------
for mode in "${MODES[@]}"; do
    IFS='|' read -r rps p50 p99 cpu errs verified other <<<"${BEST[$mode]}"
    ratio=$(awk -v a="$rps" -v b="$NGINX_RPS" 'BEGIN {printf "%.2f", a / b}')
    printf '| %-34s | %7s | %6s | %7s | %6s | %10s | %6s | %8s | %-23s | %4s%% |\n' \
        "$mode" "$rps" "$p50" "$p99" "$ratio" "$cpu" "$errs" "$verified" "${ALL[$mode]}" "$other"
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
