# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run): logging, the temp folder and
# clean-up, ports, process figures, the fake provider, and the configs of the hops
# under test. Each script sets NAME (for its log lines and temp folder), calls
# `workspace`, and adds the pids it starts to PIDS.

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$NAME" -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
need() { for tool in "$@"; do command -v "$tool" >/dev/null || die "$tool is not installed"; done; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; die "nothing on port $1"; }
# CPU ticks (utime + stime) of a process; field positions counted after its name.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
machine() { # "2 CPUs (AMD EPYC), 23.5 GiB RAM"
    printf '%s CPUs (%s), %s RAM' "$(nproc)" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
        "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
}

# The path, without its extension, of today's result of benchmark $1:
# benchmarks/results/$1-<date>, or -2, -3, … when the day already has one (.md), so
# that a later run never overwrites an earlier run's figures.
result_stem() {
    local first stem n=2
    first=$ROOT/benchmarks/results/$1-$(date -u +%Y-%m-%d)
    stem=$first
    while [[ -e $stem.md ]]; do
        stem=$first-$n
        n=$((n + 1))
    done
    printf '%s\n' "$stem"
}

# Makes the script's temp folder WORK and, when the script exits, stops what it
# started (PIDS), runs its own `tidy` if it defines one, shows the end of its logs if
# it failed, and removes WORK.
workspace() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokenroute-$NAME.XXXXXX")
    PIDS=()
    trap on_exit EXIT
}
on_exit() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if declare -F tidy >/dev/null; then tidy; fi
    ((status == 0)) || { for f in "$WORK"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done; }
    rm -rf "$WORK"
}

# Builds (unless BENCH_SKIP_BUILD=1) and copies release binaries into $WORK/bin, so a
# build running meanwhile cannot swap them: bins tokenroute fake-upstream ...
bins() {
    if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
        log "building (release)"
        local args=()
        for b in "$@"; do
            case $b in
                tokenroute) args+=(-p tokenroute --bin tokenroute) ;;
                *) args+=(-p tokenroute-benchmarks --bin "$b") ;;
            esac
        done
        (cd "$ROOT" && cargo build --release --quiet "${args[@]}")
    fi
    BIN=$WORK/bin
    mkdir -p "$BIN"
    for b in "$@"; do cp "$CARGO_TARGET_DIR/release/$b" "$BIN/"; done
}

# build_rev NAME REV: builds `tokenroute` at git revision REV into $WORK/NAME/tokenroute.
# Each revision is checked out fresh (a worktree at $WORK/src-NAME) and built there.
# Both builds share the target folder, where cargo decides what to rebuild by comparing
# file times: a fresh checkout is newer than anything built before, so each build
# compiles its own sources (building the working tree after another checkout could
# reuse the other's libraries). Call remove_rev_checkouts from the script's `tidy`.
build_rev() {
    local name=$1 rev=$2 src=$WORK/src-$1
    git -C "$ROOT" worktree add --detach --quiet "$src" "$rev"
    log "building $name ($rev) in release"
    (cd "$src" && cargo build --release --quiet -p tokenroute --bin tokenroute)
    mkdir -p "$WORK/$name"
    cp "$CARGO_TARGET_DIR/release/tokenroute" "$WORK/$name/"
}

# build_base_and_after BASE AFTER: tokenroute at both revisions into $WORK/base and
# $WORK/after (see build_rev); sets BASE_SHORT and AFTER_SHORT. Dies when both built
# the same binary: there would be nothing to compare.
build_base_and_after() {
    BASE_SHORT=$(git -C "$ROOT" rev-parse --short "$1")
    AFTER_SHORT=$(git -C "$ROOT" rev-parse --short "$2")
    build_rev base "$1"
    build_rev after "$2"
    if cmp -s "$WORK/base/tokenroute" "$WORK/after/tokenroute"; then
        die "both revisions built the same binary"
    fi
}

remove_rev_checkouts() {
    local src
    for src in "$WORK"/src-*; do
        [[ -d $src ]] && git -C "$ROOT" worktree remove --force "$src" >/dev/null 2>&1
    done
    return 0
}

# Starts the fake provider pinned to CPU list $1 (more arguments go to it); sets UP_PORT.
start_fake_upstream() {
    local cpus=$1 out
    shift
    # A file of its own (made empty now): a second fake must not read the first's port.
    out=$(mktemp "$WORK/up.XXXXXX.out")
    # (Without descriptor 9: a benchmark lock held there stays the script's own.)
    (exec taskset -c "$cpus" "$BIN/fake-upstream" --listen 127.0.0.1:0 "$@" \
        >"$out" 2>"${out%.out}.log" 9>&-) &
    PIDS+=($!)
    UP_PORT=
    for _ in $(seq 1 100); do
        UP_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
        [[ -n $UP_PORT ]] && return
        sleep 0.05
    done
    die "the fake provider did not start"
}

# Writes a `tokenroute proxy` config to $1: listening on port $2, store $3, its files
# under folder $4, one data-plane thread, the fake provider at UP_PORT as model
# `bench/gpt-4o-mini`; more TOML for [proxy] on stdin, and for [usage] in $5 (optional).
# Every request of a benchmark comes from 127.0.0.1 and one account, so the per-client
# limits are lifted.
bench_config() {
    local file=$1 port=$2 store=$3 dir=$4 usage=${5:-} extra
    extra=$(cat)
    cat >"$file" <<EOF
[proxy]
listen = "127.0.0.1:$port"
threads = 1
max-connections-per-client = 100000
max-concurrent-requests-per-client = 100000
max-concurrent-requests-per-account = 100000
$extra
[store]
url = "$store"
[usage]
spool-dir = "$dir/spool"
$usage
[log]
level = "warn"
access-log-dir = "$dir/access"
[backup]
dir = "$dir/backups"
[metrics]
enabled = false
EOF
    bench_model "$file" bench "$UP_PORT"
}

# Appends to config $1 an OpenAI-compatible provider $2 at 127.0.0.1:$3 (a fake) and
# its model `$2/gpt-4o-mini` (0.15 / 0.60 USD per Mtok).
bench_model() {
    cat >>"$1" <<EOF
[[providers]]
id = "$2"
kind = "openai"
base-url = "http://127.0.0.1:$3/v1"
[[models]]
id = "$2/gpt-4o-mini"
upstream = "gpt-4o-mini"
input-usd-per-mtok = "0.15"
output-usd-per-mtok = "0.60"
context-window = 128000
max-output-tokens = 16384
EOF
}

# A key with 1,000,000 USD of credit for the store of config $1 (prints it).
bench_key() {
    "$BIN/tokenroute" --config "$1" keys create --email "${2:-bench@example.com}" \
        --credits 1000000 2>/dev/null | tail -n 1
}

# Writes nginx.conf into folder $1 for a plain keep-alive reverse proxy on port $2 to
# the fake provider at UP_PORT: 1 worker, no access log, no buffering.
nginx_config() {
    local dir=$1 port=$2 user=
    mkdir -p "$dir/tmp"
    [[ $(id -u) == 0 ]] && user="user root;"
    cat >"$dir/nginx.conf" <<EOF
# Generated by the TokenRoute benchmarks: a plain keep-alive reverse proxy, 1 worker.
$user
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    upstream fake { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$port;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
}

# CPU ticks (utime + stime + cutime + cstime) of every process outside this script's
# process tree: other jobs on the machine, i.e. noise. Children that exit in between are
# counted through their parent's cutime/cstime. With a Postgres store, the `postgres`
# processes are part of the system under test: their ticks are left out here and
# counted by store_ticks (when STORE_KIND is postgres).
proc_ticks() { # proc_ticks others|store
    # (cat fails when a process exits between the glob and the read: that is expected.)
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root=$$ -v want="$1" -v pg="${STORE_KIND:-}" '
        {
            pid = $1
            line = $0
            sub(/^.*\) /, "", line)
            split(line, f, " ")
            ppid[pid] = f[2]
            t[pid] = f[12] + f[13] + f[14] + f[15]
            store[pid] = (pg == "postgres" && $2 == "(postgres)")
        }
        END {
            mine[root] = 1
            do {
                changed = 0
                for (p in ppid) if (!(p in mine) && (ppid[p] in mine)) { mine[p] = 1; changed = 1 }
            } while (changed)
            for (p in t) if (!(p in mine) && store[p] == (want == "store")) s += t[p]
            print s + 0
        }'
}
# Before a measured run: waits (1 s at a time, from a budget of QUIET_BUDGET seconds for
# the whole run, which the caller sets) while other processes use more than
# BENCH_NOISE_LIMIT % of a core, as the caller's `others_ticks` counts them.
wait_quiet() {
    local a b pct waited=0
    while :; do
        a=$(others_ticks)
        sleep 1
        b=$(others_ticks)
        pct=$(((b - a) * 100 / CLK_TCK))
        ((pct <= BENCH_NOISE_LIMIT || QUIET_BUDGET <= 0)) && break
        if ((waited == 0)); then
            log "other processes use ${pct}% of a core; waiting for quiet (${QUIET_BUDGET} s left to wait)"
        fi
        QUIET_BUDGET=$((QUIET_BUDGET - 1))
        waited=$((waited + 1))
    done
    if ((waited > 0)); then log "waited ${waited} s; other processes now at ${pct}% of a core"; fi
}
