# Shell helpers shared by the benchmark scripts (benches/load.sh, benches/soak.sh). Sourced, not
# run. The sourcing script sets W (its work directory) before calling apt_install, and
# LOG_NAME (the prefix of log lines, default the script's name).

log() { echo "${LOG_NAME:-$(basename "$0")}: $*" >&2; }
die() { log "$*"; exit 1; }

# Debian packages for the commands (or files) a run needs, installed when missing.
apt_install() {
    (($# > 0)) || return 0
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "needs the Debian packages $*: install them, or run as root or with sudo"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null || die "needs the packages $* and there is no apt-get here: install them"
    log "installing $* (apt-get install)"
    local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
    if ! "${install[@]}" >"$W/apt.log" 2>&1; then
        # A stale or missing package list is the usual cause: refresh it once and retry.
        "${sudo[@]}" apt-get update -q >>"$W/apt.log" 2>&1 || true
        "${install[@]}" >>"$W/apt.log" 2>&1 || die "apt-get install $* failed: $(tail -3 "$W/apt.log")"
    fi
}
need=() wanted=()
have() { if [[ $1 = /* ]]; then [[ -e $1 ]]; else command -v "$1" >/dev/null; fi; }
want() { # command-or-path package
    wanted+=("$1:$2")
    have "$1" || need+=("$2")
}
# Installs what want() found missing, then checks that it is there.
install_wanted() {
    apt_install "${need[@]}"
    local w
    for w in "${wanted[@]}"; do
        have "${w%%:*}" || die "${w%%:*} is still missing after installing the Debian package ${w#*:}"
    done
}

# A free port on 127.0.0.1, below the ephemeral range (32768+), never the same one twice.
USED=" "
free_port() {
    local p _
    for _ in $(seq 1 500); do
        p=$((10000 + RANDOM % 22000))
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

# Waits (at most $2 seconds, default 10) until URL $1 answers 200.
wait_200() {
    local deadline=$(($(date +%s%N) + ${2:-10} * 1000000000))
    while (($(date +%s%N) < deadline)); do
        [[ $(curl -sk -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) = 200 ]] && return 0
        sleep 0.005
    done
    echo "timed out waiting for $1" >&2
    return 1
}

# Waits (at most $2 seconds, default 10) until 127.0.0.1:$1 accepts a TCP connection.
wait_port() {
    local deadline=$(($(date +%s%N) + ${2:-10} * 1000000000))
    while (($(date +%s%N) < deadline)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.01
    done
    echo "timed out waiting for 127.0.0.1:$1" >&2
    return 1
}

# Waits (at most $2 seconds, default 10) until process $1 has exited (it must be our child,
# or any process: kill -0 is used).
wait_gone() {
    local deadline=$(($(date +%s%N) + ${2:-10} * 1000000000))
    while (($(date +%s%N) < deadline)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.01
    done
    return 1
}

mem_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# spawn CMD...: starts a server in the background; its pid in SPAWNED (and in PIDS, which the
# cleanup trap stops).
PIDS=()
spawn() {
    "$@" &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

# Stops every spawned process (each by its own pid), then removes W unless KEEP=1.
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n ${W:-} && -d $W ]]; then
        if [[ ${KEEP:-0} = 1 ]]; then echo "work dir kept: $W" >&2; else rm -rf "$W"; fi
    fi
}
