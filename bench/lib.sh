# bench/lib.sh — shell shared by bench/run, bench/run-tcp, bench/run-tls and bench/run-http.
# Sourced, never run. The sourcing script runs under `set -euo pipefail` and sets, before
# sourcing: BENCH_NAME (the prefix of its messages), ROOT (the repository), HERE (bench/).
# shellcheck shell=bash

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
log() { echo "$BENCH_NAME: $*" >&2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# install_missing CMD:PACKAGE... — when any CMD is missing: `apt-get update` once, then
# `apt-get install` of the packages of the missing commands. Nothing is touched otherwise.
install_missing() {
    local need=() pair cmd pkg
    for pair in "$@"; do
        cmd=${pair%%:*}
        pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || need+=("$pkg")
    done
    if ((${#need[@]})); then
        log "installing ${need[*]} (apt-get update once, then install)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
}

# smartproxy_binary — sets SP_BIN. SMARTPROXY_BIN=PATH runs that binary (no build); otherwise
# target/release/smartproxy under $CARGO_TARGET_DIR (or ROOT/target), built first with
# `cargo build --release` unless NO_BUILD=1. Does nothing useful unless SMARTPROXY=1.
smartproxy_binary() {
    local target_dir
    if [[ -n ${SMARTPROXY_BIN:-} ]]; then
        SP_BIN=$SMARTPROXY_BIN
    else
        target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
        [[ $target_dir == /* ]] || target_dir="$ROOT/$target_dir" # cargo runs in $ROOT below
        SP_BIN="$target_dir/release/smartproxy"
    fi
    ((SMARTPROXY)) || return 0
    if ((NO_BUILD == 0)) && [[ -z ${SMARTPROXY_BIN:-} ]]; then
        log "cargo build --release"
        (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed (SMARTPROXY=0 skips smartproxy)"
    fi
    [[ -x $SP_BIN ]] || die "$SP_BIN not found (SMARTPROXY=0 skips smartproxy)"
}

# raise_nofile — sets hard (the hard open-files limit) and nofile (what the soft limit is raised
# to: the hard limit, at most 65536). Every process started afterwards inherits it.
raise_nofile() {
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited ]] || ((hard > 65536)); then nofile=65536; else nofile=$hard; fi
    ulimit -n "$nofile"
}

# make_dirs NAME — WORK: a new /tmp/NAME-work.* dir for configs, removed on exit; RESULTS: where
# raw output is kept ($RESULTS when set, else a new /tmp/NAME.* dir).
make_dirs() {
    WORK=$(mktemp -d "/tmp/$1-work.XXXXXX")
    chmod 755 "$WORK"
    RESULTS=${RESULTS:-$(mktemp -d "/tmp/$1.XXXXXX")}
    mkdir -p "$RESULTS"
}

# Every process started in the background is added to PIDS; on exit (also on failure, Ctrl-C or
# the watchdog) each gets SIGTERM, then SIGKILL after 3 s, and so do its direct children (nginx
# workers, the watchdog's sleep), looked up before their parents go.
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p kids=()
    for p in "${PIDS[@]}"; do
        # shellcheck disable=SC2207 # pids are single words
        kids+=($(pgrep -P "$p" 2>/dev/null || true))
    done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 30); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${kids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    [[ -n ${WORK:-} ]] && rm -rf "$WORK"
    exit "$rc"
}
install_cleanup() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# start_watchdog SECONDS — SIGTERM to this script after SECONDS (its trap then cleans up).
start_watchdog() {
    (
        sleep "$1"
        echo "$BENCH_NAME: watchdog: still running after ${1}s, stopping" >&2
        kill -TERM $$
    ) &
    PIDS+=($!)
}

free_ports() { # N -> N free loopback TCP ports
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_port() { # port pid name [stderr file] — until 127.0.0.1:port accepts (10 s at most)
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        if ! kill -0 "$2" 2>/dev/null; then
            [[ -n ${4:-} && -s ${4:-} ]] && cat "$4" >&2
            die "$3 exited during startup (see above)"
        fi
        sleep 0.1
    done
    die "$3 did not listen on 127.0.0.1:$1 within 10s"
}

# shellcheck disable=SC2034 # used by the sourcing scripts
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # pid -> utime + stime of it and its children (all threads), in clock ticks
    local total=0 p v
    for p in "$1" $(pgrep -P "$1" || true); do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
rss_kib() { # pid -> VmRSS of it and its children, KiB
    local total=0 p v
    for p in "$1" $(pgrep -P "$1" || true); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

fmt() { awk -v v="$1" -v f="$2" 'BEGIN {printf f, v}'; }
ratio() { # a b -> a / b as "1.23x", or n/a
    [[ -n $1 && -n $2 ]] || { echo "n/a"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx\n", a / b }'
}
cell() { [[ -n $1 ]] && fmt "$1" "$2" || echo "n/a"; }
median() { # numbers as arguments -> median (mean of the middle two for an even count)
    (($#)) || return 0
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
to_ms() { # "812.00us" / "2.14ms" / "1.02s" / "1.00m" (wrk's units) -> ms, or empty
    awk -v v="$1" 'BEGIN {
        u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        if (f < 0 || v == "") print ""; else printf "%.3f\n", v * f
    }'
}
reverse_words() { # words -> the same words, last first
    local _rev=() i
    for ((i = $#; i >= 1; i--)); do _rev+=("${!i}"); done
    echo "${_rev[*]}"
}

# make_cert DIR NAME — a self-signed ECDSA P-256 certificate for NAME: DIR/cert.pem, DIR/key.pem
# and DIR/cert-key.pem (both in one file, as HAProxy wants them).
make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
        -keyout "$1/key.pem" -out "$1/cert.pem" -subj "/CN=$2" \
        -addext "subjectAltName=DNS:$2" 2>"$1/openssl.err" || { cat "$1/openssl.err" >&2; die "openssl req failed"; }
    cat "$1/cert.pem" "$1/key.pem" >"$1/cert-key.pem"
    chmod 644 "$1/cert.pem" "$1/key.pem" "$1/cert-key.pem"
}

nginx_temp_paths() { # DIR -> the *_temp_path lines of an nginx http block, under DIR
    cat <<EOF
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

# small_file DIR — DIR/small, 100 bytes
small_file() {
    { head -c 99 /dev/zero | tr '\0' 'x'; echo; } >"$1/small"
    chmod 644 "$1/small"
}
