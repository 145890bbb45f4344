#!/usr/bin/env bash
# TokenRoute benchmark: one command, one machine, one run.
#
# Load-tests TokenRoute's full path (key check, credit reservation, forwarding,
# metering, usage writer) against a fast fake OpenAI upstream, and in the same run
# the direct hop to that upstream (and nginx proxy_pass as the floor of any proxy
# hop), then times streamed answers with spaced events through TokenRoute vs direct.
# Writes the figures, with the date, the machine and the commit, to
# benchmarks/RESULTS.md. See benchmarks/README.md for what is measured and the knobs.
#
#   benchmarks/run.sh
#
# The whole script is one brace group, so bash parses all of it before running any of
# it: editing this file while a run is in progress cannot change or break that run.
{
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/benchmarks

# ---- knobs -------------------------------------------------------------------
BENCH_DURATION=${BENCH_DURATION:-15}            # seconds per loaded run
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-32}      # concurrent connections, loaded runs
BENCH_WARMUP=${BENCH_WARMUP:-3}                 # seconds of unmeasured load before each run
BENCH_LIGHT_DURATION=${BENCH_LIGHT_DURATION:-5} # seconds per 1-connection run (0: skip)
BENCH_STREAM_RUNS=${BENCH_STREAM_RUNS:-50}      # streamed requests per path (0: skip)
BENCH_STREAM_EVENTS=${BENCH_STREAM_EVENTS:-200} # events per streamed answer
BENCH_EVENT_GAP_MS=${BENCH_EVENT_GAP_MS:-5}     # pause between streamed events
BENCH_DELAY_MS=${BENCH_DELAY_MS:-0}             # fake upstream's delay before answering
BENCH_NGINX=${BENCH_NGINX:-auto}                # auto | 1 | 0
BENCH_STORE_URL=${BENCH_STORE_URL:-}            # postgres://... (default: SQLite in a temp dir)
BENCH_PROXY_CPUS=${BENCH_PROXY_CPUS:-0}         # taskset CPU list: TokenRoute / nginx
BENCH_UPSTREAM_CPUS=${BENCH_UPSTREAM_CPUS:-0}   # taskset CPU list: fake upstreams
BENCH_LOADGEN_CPUS=${BENCH_LOADGEN_CPUS:-1}     # taskset CPU list: wrk / stream-probe
BENCH_UPSTREAM_THREADS=${BENCH_UPSTREAM_THREADS:-1}
BENCH_PROXY_THREADS=${BENCH_PROXY_THREADS:-1}   # [proxy] threads
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}
BENCH_SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
BENCH_REV=${BENCH_REV:-}                        # git revision to benchmark (default: working tree)
BENCH_KEEP_TMP=${BENCH_KEEP_TMP:-0}
BENCH_NOISE_LIMIT=${BENCH_NOISE_LIMIT:-10}      # % of a core used by other processes that flags a run
BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-60}        # seconds (whole run) to wait for other processes to calm down
BENCH_WRITER_PG=${BENCH_WRITER_PG:-postgres://postgres@127.0.0.1:5432/postgres} # Postgres for the usage writer run (a scratch database is made)
BENCH_WRITER_EVENTS=${BENCH_WRITER_EVENTS:-100000} # events the usage writer writes (0: skip)
BENCH_WRITER_BATCHES=${BENCH_WRITER_BATCHES:-"4096 1024"} # batch sizes the usage writer is measured at
BENCH_TRANSLATE=${BENCH_TRANSLATE:-1}             # criterion: translation + metering per streamed event (0: skip)
BENCH_DIALECTS=${BENCH_DIALECTS:-1}               # loaded runs OpenAI client -> Anthropic / Gemini upstream, and tokenroute-auto (0: skip)
BENCH_STORM_KEYS=${BENCH_STORM_KEYS:-2000}        # key-cache miss storm: new keys, one request each (0: skip)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tokenroute-target}

COMMAND="benchmarks/run.sh"
for v in BENCH_DURATION BENCH_CONNECTIONS BENCH_WARMUP BENCH_LIGHT_DURATION BENCH_STREAM_RUNS \
    BENCH_STREAM_EVENTS BENCH_EVENT_GAP_MS BENCH_DELAY_MS BENCH_NGINX BENCH_PROXY_CPUS \
    BENCH_UPSTREAM_CPUS BENCH_LOADGEN_CPUS BENCH_UPSTREAM_THREADS BENCH_PROXY_THREADS BENCH_REV \
    BENCH_QUIET_WAIT BENCH_NOISE_LIMIT BENCH_SKIP_BUILD BENCH_TRANSLATE BENCH_WRITER_EVENTS BENCH_WRITER_BATCHES \
    BENCH_DIALECTS BENCH_STORM_KEYS; do
    # Record the knobs that were set explicitly, so the command in RESULTS.md reruns it.
    if printenv "$v" >/dev/null; then COMMAND="$v=${!v} $COMMAND"; fi
done
[[ -n $BENCH_STORE_URL ]] && COMMAND="BENCH_STORE_URL=<postgres url> $COMMAND"

# nginx_config (and more) from the shared helpers; the helpers below are run.sh's own.
. "$ROOT/benchmarks/lib.sh"
log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed${2:+ ($2)}"; }

need wrk "apt-get install -y wrk"
need curl
need cargo
need awk

START_SECONDS=$SECONDS
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
START_MS=$(($(date +%s%N) / 1000000))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokenroute-bench.XXXXXX")
PIDS=()

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid alive
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((status != 0)); then
        log "failed (exit $status); logs:"
        for f in "$WORK"/*.log "$WORK"/nginx/error.log; do
            [[ -s $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    if [[ $BENCH_KEEP_TMP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers -------------------------------------------------------------------
CPUS=$(nproc)
PIN=0
if command -v taskset >/dev/null 2>&1 && ((CPUS >= 2)); then PIN=1; fi

# Runs a command pinned to a CPU list (in the foreground).
pinned() {
    local cpus=$1
    shift
    if ((PIN)); then taskset -c "$cpus" "$@"; else "$@"; fi
}
# Replaces the calling (background) subshell by a pinned command, so `$!` is its pid.
pinned_exec() {
    local cpus=$1
    shift
    if ((PIN)); then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! port_open "$p"; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

# wait_port PORT PID NAME: until PORT accepts connections (PID must stay alive).
wait_port() {
    for _ in $(seq 1 200); do
        port_open "$1" && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited during start-up (see $WORK/$3.log)"
        sleep 0.05
    done
    die "$3 did not listen on port $1"
}

# pid and its children (nginx master + worker).
family() {
    local pid=$1
    echo "$pid"
    cat /proc/"$pid"/task/*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d' || true
}

# CPU time (utime + stime, clock ticks) of the given pids, summed.
cpu_ticks() {
    local total=0 pid t
    for pid in "$@"; do
        t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' /proc/"$pid"/stat 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}

# Peak RSS (VmHWM) in KiB of the given pids, summed.
peak_rss_kb() {
    local total=0 pid k
    for pid in "$@"; do
        k=$(awk '/^VmHWM:/ { print $2 }' /proc/"$pid"/status 2>/dev/null || echo 0)
        total=$((total + ${k:-0}))
    done
    echo "$total"
}

# kv "k1=v1 k2=v2" k2 -> v2
kv() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n1; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

CLK_TCK=$(getconf CLK_TCK)

# ---- what is measured ----------------------------------------------------------
# Recorded before building: the tree may change while the run goes on.
COMMIT=$(git -C "$ROOT" rev-parse --short "${BENCH_REV:-HEAD}" 2>/dev/null || echo unknown)
DIRTY=""
CHANGED=""
if [[ -z $BENCH_REV ]]; then
    CHANGED=$(git -C "$ROOT" status --porcelain -- . ':!benchmarks' 2>/dev/null | awk '{ print $NF }' | paste -sd' ' || true)
fi
if [[ -n $CHANGED ]]; then
    read -ra CHANGED_FILES <<<"$CHANGED"
    MORE=""
    if ((${#CHANGED_FILES[@]} > 6)); then MORE=" ..."; fi
    DIRTY=" plus uncommitted changes to ${#CHANGED_FILES[@]} files (${CHANGED_FILES[*]:0:6}$MORE)"
fi
if [[ $BENCH_SKIP_BUILD == 1 ]]; then
    DIRTY+=" — binaries taken as found in \$CARGO_TARGET_DIR/release (BENCH_SKIP_BUILD=1), not necessarily built from this commit"
fi
COMMIT_SUBJECT=$(git -C "$ROOT" log -1 --format=%s "${BENCH_REV:-HEAD}" 2>/dev/null || true)

# ---- build ---------------------------------------------------------------------
# BENCH_REV: benchmark that git revision (exported to a temp dir and built there)
# instead of the working tree; the harness itself always comes from the working tree.
SRC=$ROOT
if [[ -n $BENCH_REV ]]; then
    git -C "$ROOT" rev-parse --verify --quiet "$BENCH_REV^{commit}" >/dev/null || die "BENCH_REV=$BENCH_REV is not a commit"
    SRC=$WORK/src
    mkdir -p "$SRC"
    git -C "$ROOT" archive "$BENCH_REV" | tar -x -C "$SRC"
fi
RELEASE=$CARGO_TARGET_DIR/release
if [[ $BENCH_SKIP_BUILD != 1 ]]; then
    log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR${BENCH_REV:+, TokenRoute at $BENCH_REV})"
    # Only the binaries the run uses (other tools in the benchmarks crate are not built).
    HARNESS=(-p tokenroute-benchmarks --bin fake-upstream --bin stream-probe --bin usage-writer-bench --bin key-storm)
    if [[ $SRC == "$ROOT" ]]; then
        (cd "$ROOT" && cargo build --release --quiet -p tokenroute --bin tokenroute "${HARNESS[@]}")
    else
        (cd "$SRC" && cargo build --release --quiet -p tokenroute --bin tokenroute)
        cp "$RELEASE/tokenroute" "$WORK/tokenroute.bin"
        (cd "$ROOT" && cargo build --release --quiet "${HARNESS[@]}")
    fi
fi
# Private copies: a build running elsewhere must not swap binaries under the run.
BIN=$WORK/bin
mkdir -p "$BIN"
for b in tokenroute fake-upstream stream-probe usage-writer-bench key-storm; do
    [[ -x $RELEASE/$b ]] || die "$RELEASE/$b is missing (build with cargo build --release -p tokenroute -p tokenroute-benchmarks)"
    cp "$RELEASE/$b" "$BIN/$b"
done
[[ -f $WORK/tokenroute.bin ]] && mv "$WORK/tokenroute.bin" "$BIN/tokenroute"

# ---- fake upstreams ------------------------------------------------------------
# start_fake NAME ARGS...: starts a fake upstream on a free port; sets FAKE_PID, FAKE_PORT.
start_fake() {
    local name=$1
    shift
    (pinned_exec "$BENCH_UPSTREAM_CPUS" "$BIN/fake-upstream" --listen 127.0.0.1:0 \
        --threads "$BENCH_UPSTREAM_THREADS" --delay-ms "$BENCH_DELAY_MS" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.log") &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
    FAKE_PORT=
    for _ in $(seq 1 200); do
        FAKE_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/$name.out")
        [[ -n $FAKE_PORT ]] && break
        kill -0 "$FAKE_PID" 2>/dev/null || die "$name exited during start-up"
        sleep 0.05
    done
    [[ -n $FAKE_PORT ]] || die "$name did not report its port"
}
start_fake upstream --stream-events 20
UP_PID=$FAKE_PID UP_PORT=$FAKE_PORT
start_fake upstream-stream --stream-events "$BENCH_STREAM_EVENTS" --event-gap-ms "$BENCH_EVENT_GAP_MS"
UPS_PID=$FAKE_PID UPS_PORT=$FAKE_PORT
log "fake upstreams on 127.0.0.1:$UP_PORT (fast) and 127.0.0.1:$UPS_PORT (${BENCH_STREAM_EVENTS} events, ${BENCH_EVENT_GAP_MS} ms apart)"

# ---- TokenRoute ----------------------------------------------------------------
TR_PORT=$(free_port)
CP_PORT=$(free_port)
if [[ -n $BENCH_STORE_URL ]]; then
    STORE_URL=$BENCH_STORE_URL
    STORE_KIND=postgres
else
    STORE_URL="sqlite://$WORK/store/tokenroute.db"
    STORE_KIND=sqlite
fi
# Versions with a usage spool get it in the temp dir, whatever the store.
USAGE_SECTION=""
if grep -q 'spool-dir' "$SRC/conf/tokenroute.toml" 2>/dev/null; then
    USAGE_SECTION=$'[usage]\nspool-dir = "'"$WORK/spool"$'"\n'
fi
CFG=$WORK/tokenroute.toml
cat >"$CFG" <<EOF
# Generated by benchmarks/run.sh.
[proxy]
listen = "127.0.0.1:$TR_PORT"
threads = $BENCH_PROXY_THREADS
grace-period-secs = 1

[control-plane]
listen = "127.0.0.1:$CP_PORT"

[store]
url = "$STORE_URL"

$USAGE_SECTION
[log]
level = "warn"

[[providers]]
id = "bench"
kind = "openai"
base-url = "http://127.0.0.1:$UP_PORT/v1"

[[providers]]
id = "bench-stream"
kind = "openai"
base-url = "http://127.0.0.1:$UPS_PORT/v1"

# The same fakes in Anthropic's and Gemini's dialects: an OpenAI client's request is
# translated on the way up and the answer (or stream) on the way back.
[[providers]]
id = "bench-anthropic"
kind = "anthropic"
base-url = "http://127.0.0.1:$UP_PORT/v1"

[[providers]]
id = "bench-stream-anthropic"
kind = "anthropic"
base-url = "http://127.0.0.1:$UPS_PORT/v1"

[[providers]]
id = "bench-gemini"
kind = "gemini"
base-url = "http://127.0.0.1:$UP_PORT/v1beta"

[[models]]
id = "bench/gpt-4o-mini"
upstream = "gpt-4o-mini"
input-usd-per-mtok = "0.15"
output-usd-per-mtok = "0.60"
context-window = 128000
max-output-tokens = 16384

[[models]]
id = "bench-stream/gpt-4o-mini"
upstream = "gpt-4o-mini"
input-usd-per-mtok = "0.15"
output-usd-per-mtok = "0.60"
context-window = 128000
max-output-tokens = 16384

[[models]]
id = "bench-anthropic/claude-3-5-haiku"
upstream = "claude-3-5-haiku-20241022"
input-usd-per-mtok = "0.80"
output-usd-per-mtok = "4.00"
context-window = 200000
max-output-tokens = 8192

[[models]]
id = "bench-stream-anthropic/claude-3-5-haiku"
upstream = "claude-3-5-haiku-20241022"
input-usd-per-mtok = "0.80"
output-usd-per-mtok = "4.00"
context-window = 200000
max-output-tokens = 8192

[[models]]
id = "bench-gemini/gemini-2.0-flash"
upstream = "gemini-2.0-flash"
input-usd-per-mtok = "0.10"
output-usd-per-mtok = "0.40"
context-window = 1048576
max-output-tokens = 8192

# tokenroute-auto over the three dialects: each request's fingerprint (here the same
# conversation every time, so the same target) orders the candidates.
[[routes]]
id = "tokenroute-auto"
candidates = [
  { model = "bench/gpt-4o-mini", weight = 2 },
  { model = "bench-anthropic/claude-3-5-haiku", weight = 1 },
  { model = "bench-gemini/gemini-2.0-flash", weight = 1 },
]
EOF

log "creating a key ($STORE_KIND store)"
# TokenRoute runs inside the temp dir, so any relative default path lands there too.
KEY=$(cd "$WORK" && "$BIN/tokenroute" --config "$CFG" keys create --email bench@example.com \
    --credits 1000000 2>"$WORK/keys.log" | tail -n1)
[[ $KEY == tr-* ]] || die "keys create did not print a key (got '$KEY')"

(cd "$WORK" && pinned_exec "$BENCH_PROXY_CPUS" "$BIN/tokenroute" --config "$CFG" proxy \
    >"$WORK/tokenroute.log" 2>&1) &
TR_PID=$!
PIDS+=("$TR_PID")
wait_port "$TR_PORT" "$TR_PID" tokenroute
log "TokenRoute (pid $TR_PID) on 127.0.0.1:$TR_PORT"

# ---- nginx (optional) ----------------------------------------------------------
NGINX_PID=
NGINX_NOTE=
if [[ $BENCH_NGINX != 0 ]]; then
    if ! command -v nginx >/dev/null 2>&1; then
        [[ $BENCH_NGINX == 1 ]] && die "nginx is not installed (apt-get install -y nginx-light)"
        NGINX_NOTE="nginx not installed: skipped"
    else
        NGINX_PORT=$(free_port)
        nginx_config "$WORK/nginx" "$NGINX_PORT"
        if nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" -t \
            >"$WORK/nginx-check.log" 2>&1; then
            (pinned_exec "$BENCH_PROXY_CPUS" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
                -e "$WORK/nginx/error.log" >"$WORK/nginx.log" 2>&1) &
            NGINX_PID=$!
            PIDS+=("$NGINX_PID")
            wait_port "$NGINX_PORT" "$NGINX_PID" nginx
            log "nginx (pid $NGINX_PID) on 127.0.0.1:$NGINX_PORT"
        else
            [[ $BENCH_NGINX == 1 ]] && die "nginx rejected its config: $(cat "$WORK/nginx-check.log")"
            NGINX_NOTE="nginx rejected the generated config: skipped"
        fi
    fi
fi

# ---- smoke checks --------------------------------------------------------------
BODY='{"model":"bench/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY='{"model":"bench-stream/gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}'
TR_EXTRA=0 # requests sent to TokenRoute outside wrk's counts
# The chat request of each TokenRoute scenario other than the OpenAI one.
declare -A SC_BODY=(
    [anthropic]='{"model":"bench-anthropic/claude-3-5-haiku","messages":[{"role":"user","content":"hi"}]}'
    [gemini]='{"model":"bench-gemini/gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}'
    [auto]='{"model":"tokenroute-auto","messages":[{"role":"user","content":"hi"}]}'
)
ANTHROPIC_STREAM_BODY='{"model":"bench-stream-anthropic/claude-3-5-haiku","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}'
smoke() { # smoke NAME URL KEY [BODY]
    local name=$1 url=$2 auth=$3 body=${4:-$BODY} code
    code=$(curl -sS -o "$WORK/smoke-$name.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        ${auth:+-H "Authorization: Bearer $auth"} --data "$body" "$url")
    [[ $code == 200 ]] || die "$name answered HTTP $code: $(cat "$WORK/smoke-$name.json")"
    grep -q '"usage"' "$WORK/smoke-$name.json" || die "$name's answer has no usage: $(cat "$WORK/smoke-$name.json")"
}
smoke direct "http://127.0.0.1:$UP_PORT/v1/chat/completions" ""
smoke tokenroute "http://127.0.0.1:$TR_PORT/v1/chat/completions" "$KEY"
TR_EXTRA=$((TR_EXTRA + 1))
DIALECT_SCENARIOS=()
if ((BENCH_DIALECTS)); then
    DIALECT_SCENARIOS=(anthropic gemini auto)
    for sc in "${DIALECT_SCENARIOS[@]}"; do
        smoke "$sc" "http://127.0.0.1:$TR_PORT/v1/chat/completions" "$KEY" "${SC_BODY[$sc]}"
        TR_EXTRA=$((TR_EXTRA + 1))
    done
fi
[[ -n $NGINX_PID ]] && smoke nginx "http://127.0.0.1:$NGINX_PORT/v1/chat/completions" ""

# ---- non-streaming load --------------------------------------------------------
declare -A R # results: R[scenario.metric]
NOISY=0
TR_WRK_REQUESTS=0

others_ticks() { proc_ticks others; }
machine_steal() { awk '/^cpu / { print $9; exit }' /proc/stat; }
store_ticks() { proc_ticks store; }

# What lib.sh's wait_quiet may wait, in seconds, over the whole run.
QUIET_BUDGET=$BENCH_QUIET_WAIT

# thread_snapshot PID: "tid<TAB>name<TAB>cpu ticks<TAB>context switches" per thread.
thread_snapshot() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s\t%s\t%s\t%s\n' "${t##*/}" "$(cat "$t/comm" 2>/dev/null)" \
            "$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "$t/stat" 2>/dev/null)" \
            "$(awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print s + 0 }' "$t/status" 2>/dev/null)"
    done
}

# thread_diff BEFORE AFTER SECONDS: "name NN%, ..." (share of one core, by thread name,
# busiest first) and, on a second line, the context switches in between.
thread_diff() {
    awk -F'\t' -v secs="$3" -v hz="$CLK_TCK" '
        NR == FNR { t[$1] = $3; c[$1] = $4; next }
        { T[$2] += $3 - t[$1]; C += $4 - c[$1] }
        END {
            for (k in T) if (T[k] > 0) printf "%.1f\t%s\n", T[k] / hz / secs * 100, k
            printf "ctx\t%d\n", C
        }' "$1" "$2" >"$1.diff"
    grep -v '^ctx' "$1.diff" | sort -t$'\t' -k1,1 -rn |
        awk -F'\t' '$1 >= 0.5 { printf "%s%s %.0f%%", (n++ ? ", " : ""), $2, $1 }'
    echo
    sed -n 's/^ctx\t//p' "$1.diff"
}

# Usage rows of this run in the store so far (empty when it cannot be read).
usage_rows() {
    local sql="SELECT count(*) FROM usage_events WHERE created_at >= $START_MS"
    if [[ $STORE_KIND == sqlite ]]; then
        if command -v sqlite3 >/dev/null 2>&1; then
            sqlite3 -readonly -cmd '.timeout 5000' "$WORK/store/tokenroute.db" "$sql" 2>/dev/null || true
        fi
    elif command -v psql >/dev/null 2>&1; then
        psql "$STORE_URL" -XAtc "$sql" 2>/dev/null || true
    fi
}

# settle SCENARIO PIDS...: after a measured run, wait (up to 60 s) until the proxy is idle
# (under 5 % of a core for 0.5 s), so work it still does — e.g. writing queued usage —
# does not leak into the next run; R[SCENARIO.settle] = seconds it stayed busy.
settle() {
    local sc=$1 t0 a b
    shift
    t0=$(date +%s%N)
    for _ in $(seq 1 120); do
        a=$(cpu_ticks "$@")
        sleep 0.5
        b=$(cpu_ticks "$@")
        (((b - a) * 200 <= 5 * CLK_TCK)) && break
    done
    R[$sc.settle]=$(calc %.1f "($(date +%s%N) - $t0) / 1e9 - 0.5")
    log "$sc: the proxy stayed busy ${R[$sc.settle]} s after the load"
}

# load SCENARIO URL KEY CONNECTIONS DURATION [PIDS...]: warm-up, then the measured run
# (measured again once if other processes disturbed it and the quiet budget allows).
load() {
    local sc=$1 url=$2 key=$3 conns=$4 dur=$5 out line attempt
    export BENCH_BODY=${SC_BODY[${sc%%.*}]:-$BODY} BENCH_AUTH=$key
    if ((BENCH_WARMUP > 0)); then
        out=$(pinned "$BENCH_LOADGEN_CPUS" wrk -t1 -c"$conns" -d"${BENCH_WARMUP}s" --timeout 10s \
            -s "$BENCH_DIR/wrk/post.lua" "$url")
        line=$(grep '^WRK ' <<<"$out") || die "wrk printed no summary: $out"
        [[ $key ]] && TR_WRK_REQUESTS=$((TR_WRK_REQUESTS + $(kv "$line" requests)))
    fi
    for attempt in 1 2; do
        wait_quiet
        measure "$@"
        (($# > 5)) && settle "$sc" "${@:6}"
        if ((attempt == 1 && ${R[$sc.other]} + ${R[$sc.steal]} > BENCH_NOISE_LIMIT && QUIET_BUDGET > 0)); then
            log "$sc: disturbed by other processes; measuring again"
            continue
        fi
        break
    done
}

# measure SCENARIO URL KEY CONNECTIONS DURATION [PIDS...]: one measured wrk run.
measure() {
    local sc=$1 url=$2 key=$3 conns=$4 dur=$5
    shift 5
    local pids=("$@") out line before after ticks up_before up_after others_before others_after
    local store_before store_after
    local steal_before steal_after secs p
    log "$sc: $conns connections, ${dur}s"
    for p in "${pids[@]}"; do thread_snapshot "$p"; done >"$WORK/threads-$sc.before"
    before=$(cpu_ticks "${pids[@]}")
    up_before=$(cpu_ticks "$UP_PID" "$UPS_PID")
    others_before=$(others_ticks)
    store_before=$(store_ticks)
    steal_before=$(machine_steal)
    out=$(pinned "$BENCH_LOADGEN_CPUS" wrk -t1 -c"$conns" -d"${dur}s" --timeout 10s \
        -s "$BENCH_DIR/wrk/post.lua" "$url")
    others_after=$(others_ticks)
    store_after=$(store_ticks)
    steal_after=$(machine_steal)
    after=$(cpu_ticks "${pids[@]}")
    up_after=$(cpu_ticks "$UP_PID" "$UPS_PID")
    for p in "${pids[@]}"; do thread_snapshot "$p"; done >"$WORK/threads-$sc.after"
    echo "$out" >"$WORK/wrk-$sc.txt"
    line=$(grep '^WRK ' <<<"$out") || die "wrk printed no summary: $out"
    local n us
    n=$(kv "$line" requests)
    us=$(kv "$line" duration_us)
    secs=$(calc %.6f "$us / 1e6")
    if [[ $key ]]; then
        TR_WRK_REQUESTS=$((TR_WRK_REQUESTS + n))
        # How far metering lags: usage rows stored vs requests answered, when the load stops.
        R[$sc.rows_at_end]=$(usage_rows)
        R[$sc.sent_at_end]=$((TR_WRK_REQUESTS + TR_EXTRA))
    fi
    R[$sc.requests]=$n
    R[$sc.rps]=$(calc %.0f "$n / $secs")
    R[$sc.p50]=$(calc %.3f "$(kv "$line" p50_us) / 1000")
    R[$sc.p90]=$(calc %.3f "$(kv "$line" p90_us) / 1000")
    R[$sc.p99]=$(calc %.3f "$(kv "$line" p99_us) / 1000")
    R[$sc.errors]=$(($(kv "$line" err_connect) + $(kv "$line" err_read) + $(kv "$line" err_write) + $(kv "$line" err_status) + $(kv "$line" err_timeout)))
    R[$sc.up_util]=$(calc %.0f "($up_after - $up_before) / $CLK_TCK / $secs * 100")
    if ((${#pids[@]})); then
        ticks=$((after - before))
        R[$sc.cpu]=$(calc %.3f "$ticks / $CLK_TCK / $n * 1000")
        R[$sc.cpu_util]=$(calc %.0f "$ticks / $CLK_TCK / $secs * 100")
        R[$sc.rss]=$(calc %.1f "$(peak_rss_kb "${pids[@]}") / 1024")
        local td
        td=$(thread_diff "$WORK/threads-$sc.before" "$WORK/threads-$sc.after" "$secs")
        R[$sc.threads]=$(head -n1 <<<"$td")
        R[$sc.ctxsw]=$(calc %.1f "$(tail -n1 <<<"$td") / $n")
    else
        R[$sc.cpu]="—" R[$sc.cpu_util]="—" R[$sc.rss]="—"
    fi
    # CPU the machine spent outside this benchmark's processes (other jobs: noise).
    R[$sc.other]=$(calc %.0f "($others_after - $others_before) / $CLK_TCK / $secs * 100")
    if [[ ${R[$sc.other]} == -* ]]; then R[$sc.other]=0; fi # a reaped process can make the sum dip
    R[$sc.store_util]=$(calc %.0f "($store_after - $store_before) / $CLK_TCK / $secs * 100")
    R[$sc.store_cpu]=$(calc %.3f "($store_after - $store_before) / $CLK_TCK / $n * 1000")
    R[$sc.steal]=$(calc %.0f "($steal_after - $steal_before) / $CLK_TCK / $secs * 100")
    log "$sc: ${R[$sc.rps]} req/s, p50 ${R[$sc.p50]} ms, p99 ${R[$sc.p99]} ms, errors ${R[$sc.errors]}, hop CPU ${R[$sc.cpu]} s/1k req; other processes ${R[$sc.other]}% of a core${R[$sc.threads]:+; threads: ${R[$sc.threads]}}"
}

DIRECT_URL="http://127.0.0.1:$UP_PORT/v1/chat/completions"
TR_URL="http://127.0.0.1:$TR_PORT/v1/chat/completions"
NGINX_URL=${NGINX_PORT:+http://127.0.0.1:$NGINX_PORT/v1/chat/completions}

LEVELS=(loaded)
((BENCH_LIGHT_DURATION > 0)) && LEVELS+=(light)
for level in "${LEVELS[@]}"; do
    if [[ $level == loaded ]]; then c=$BENCH_CONNECTIONS d=$BENCH_DURATION; else c=1 d=$BENCH_LIGHT_DURATION; fi
    load "direct.$level" "$DIRECT_URL" "" "$c" "$d"
    if [[ -n $NGINX_PID ]]; then
        mapfile -t NGINX_PIDS < <(family "$NGINX_PID")
        load "nginx.$level" "$NGINX_URL" "" "$c" "$d" "${NGINX_PIDS[@]}"
    fi
    load "tokenroute.$level" "$TR_URL" "$KEY" "$c" "$d" "$TR_PID"
    if [[ $level == loaded ]]; then
        for sc in "${DIALECT_SCENARIOS[@]}"; do
            load "$sc.$level" "$TR_URL" "$KEY" "$c" "$d" "$TR_PID"
        done
    fi
done

# ---- key-cache miss storm ------------------------------------------------------
# BENCH_STORM_KEYS keys TokenRoute has never seen, made in its store while it runs: one
# request each (every key read from the store), then the same keys again (cached).
if ((BENCH_STORM_KEYS > 0)); then
    wait_quiet
    log "key-cache miss storm: $BENCH_STORM_KEYS new keys, $BENCH_CONNECTIONS connections"
    STORM_BEFORE=$(cpu_ticks "$TR_PID")
    STORM_OUT=$(pinned "$BENCH_LOADGEN_CPUS" "$BIN/key-storm" --addr "127.0.0.1:$TR_PORT" --body "$BODY" \
        --store-url "$STORE_URL" --keys "$BENCH_STORM_KEYS" --connections "$BENCH_CONNECTIONS" \
        2>"$WORK/key-storm.log") || die "key-storm failed: $(cat "$WORK/key-storm.log")"
    STORM_AFTER=$(cpu_ticks "$TR_PID")
    for pass in cold warm; do
        R[storm.$pass]=$(grep "^pass=$pass " <<<"$STORM_OUT")
        TR_EXTRA=$((TR_EXTRA + $(kv "${R[storm.$pass]}" ok)))
    done
    # Both passes' CPU together (the key creation happens before either, outside the proxy).
    R[storm.cpu]=$(calc %.3f "($STORM_AFTER - $STORM_BEFORE) / $CLK_TCK / ($(kv "${R[storm.cold]}" ok) + $(kv "${R[storm.warm]}" ok)) * 1000")
    log "key storm: ${R[storm.cold]} | ${R[storm.warm]}"
fi

# ---- streaming -----------------------------------------------------------------
probe() {
    local sc=$1 url=$2 key=$3 out others_before others_after t0 t1
    wait_quiet
    log "$sc: $BENCH_STREAM_RUNS streams of $BENCH_STREAM_EVENTS events, ${BENCH_EVENT_GAP_MS} ms apart"
    others_before=$(others_ticks)
    t0=$(date +%s%N)
    out=$(pinned "$BENCH_LOADGEN_CPUS" "$BIN/stream-probe" --url "$url" ${key:+--key "$key"} \
        --body "$STREAM_BODY" --runs "$BENCH_STREAM_RUNS" --warmup 2 2>"$WORK/probe-$sc.log") ||
        die "stream-probe failed for $sc: $(cat "$WORK/probe-$sc.log")"
    t1=$(date +%s%N)
    others_after=$(others_ticks)
    R[$sc]=$out
    R[$sc.other]=$(calc %.0f "($others_after - $others_before) / $CLK_TCK / (($t1 - $t0) / 1e9) * 100")
    if [[ ${R[$sc.other]} == -* ]]; then R[$sc.other]=0; fi
    log "$sc: $out; other processes ${R[$sc.other]}% of a core"
}
if ((BENCH_STREAM_RUNS > 0)); then
    probe stream.direct "http://127.0.0.1:$UPS_PORT/v1/chat/completions" ""
    probe stream.tokenroute "$TR_URL" "$KEY"
    TR_EXTRA=$((TR_EXTRA + BENCH_STREAM_RUNS + 2))
    if ((BENCH_DIALECTS)); then
        STREAM_BODY=$ANTHROPIC_STREAM_BODY probe stream.anthropic "$TR_URL" "$KEY"
        TR_EXTRA=$((TR_EXTRA + BENCH_STREAM_RUNS + 2))
    fi
fi
TR_RSS_FINAL=$(calc %.1f "$(peak_rss_kb "$TR_PID") / 1024")
TR_LOG_WARNINGS=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/tokenroute.log" | grep -c -E ' (WARN|ERROR) ' || true)
# The most frequent one, e.g. sqlx's "slow statement" warnings from the usage writer.
TR_LOG_TOP=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/tokenroute.log" | grep -E ' (WARN|ERROR) ' |
    sed -E 's/^.* (WARN|ERROR) +//; s/ [a-z_.]+=.*$//' | cut -c1-90 | sort | uniq -c | sort -rn | head -n1 |
    awk '{ n = $1; $1 = ""; sub(/^ /, ""); printf "%d× \"%s\"", n, $0 }' || true)
TR_LOG_NOTE=$TR_LOG_WARNINGS
[[ -n $TR_LOG_TOP ]] && TR_LOG_NOTE+=" (most frequent: $TR_LOG_TOP)"

for k in "${!R[@]}"; do
    if [[ $k == *.other ]] && ((${R[$k]} + ${R[${k%.other}.steal]:-0} > BENCH_NOISE_LIMIT)); then NOISY=1; fi
done

# ---- metering check ------------------------------------------------------------
# Stop TokenRoute gracefully: it writes every queued usage event before exiting.
log "stopping TokenRoute (drains the usage writer)"
kill -TERM "$TR_PID"
for _ in $(seq 1 300); do
    kill -0 "$TR_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$TR_PID" 2>/dev/null && die "TokenRoute did not stop within 30 s of SIGTERM"
wait "$TR_PID" || true

TR_SENT=$((TR_WRK_REQUESTS + TR_EXTRA))
USAGE_SQL="SELECT count(*), coalesce(sum(streamed), 0), coalesce(sum(estimated), 0), coalesce(sum(CASE WHEN status = 200 THEN 1 ELSE 0 END), 0), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost_nanos), 0) FROM usage_events WHERE created_at >= $START_MS AND (model LIKE 'bench%' OR model = 'tokenroute-auto')"
LEDGER_SQL="SELECT count(*) FROM ledger_entries WHERE kind = 'usage' AND created_at >= $START_MS"
USAGE_ROW=
LEDGER_ROWS=
if [[ $STORE_KIND == sqlite ]]; then
    if command -v sqlite3 >/dev/null 2>&1; then
        USAGE_ROW=$(sqlite3 -separator ' ' "$WORK/store/tokenroute.db" "$USAGE_SQL")
        LEDGER_ROWS=$(sqlite3 "$WORK/store/tokenroute.db" "$LEDGER_SQL")
    else
        METER_NOTE="sqlite3 is not installed (apt-get install -y sqlite3): usage rows not checked"
    fi
else
    if command -v psql >/dev/null 2>&1; then
        USAGE_ROW=$(psql "$STORE_URL" -XAt -F ' ' -c "$USAGE_SQL")
        LEDGER_ROWS=$(psql "$STORE_URL" -XAt -c "$LEDGER_SQL")
    else
        METER_NOTE="psql is not installed: usage rows not checked"
    fi
fi
if [[ -n $USAGE_ROW ]]; then
    read -r U_ROWS U_STREAMED U_ESTIMATED U_OK U_IN U_OUT U_COST <<<"$USAGE_ROW"
    # wrk counts completed responses; requests cut off when it stops may be metered too.
    if ((U_ROWS >= TR_SENT)); then
        METER_VERDICT="ok"
    else
        METER_VERDICT="MISSING $((TR_SENT - U_ROWS)) rows"
    fi
    METER_NOTE="$U_ROWS usage rows recorded for $TR_SENT requests completed through TokenRoute ($METER_VERDICT): $U_OK with status 200, $U_STREAMED streamed, $U_ESTIMATED estimated; $U_IN input + $U_OUT output tokens, cost \$$(calc %.6f "$U_COST / 1e9"); $LEDGER_ROWS usage ledger entries."
    log "metering: $METER_NOTE"
fi

# ---- usage writer --------------------------------------------------------------
# The usage writer alone: BENCH_WRITER_EVENTS events in batches of each size of
# BENCH_WRITER_BATCHES (one transaction each, with their ledger debits), each size into
# a fresh Postgres database.
WRITER_NOTE="not measured (needs psql and Postgres at $BENCH_WRITER_PG)"
if ((BENCH_WRITER_EVENTS > 0)) && command -v psql >/dev/null 2>&1 && psql "$BENCH_WRITER_PG" -XAtqc 'select 1' >/dev/null 2>&1; then
    WRITER_DB=tokenroute_bench_writer_$$
    WRITER_URL="${BENCH_WRITER_PG%/*}/$WRITER_DB"
    WRITER_NOTE=""
    for batch in $BENCH_WRITER_BATCHES; do
        PGOPTIONS='--client-min-messages=warning' psql "$BENCH_WRITER_PG" -XAtqc "DROP DATABASE IF EXISTS $WRITER_DB" -c "CREATE DATABASE $WRITER_DB" >/dev/null
        log "usage writer: $BENCH_WRITER_EVENTS events into Postgres, batches of $batch"
        if WRITER_LINE=$(pinned 0 "$BIN/usage-writer-bench" --store-url "$WRITER_URL" --events "$BENCH_WRITER_EVENTS" --batch "$batch"); then
            WRITER_NOTE+="- batches of $batch: $(kv "$WRITER_LINE" events) events in $(kv "$WRITER_LINE" seconds) s: **$(kv "$WRITER_LINE" events_per_second) events/s**"$'\n'
        else
            WRITER_NOTE+="- batches of $batch: usage-writer-bench failed (see the log)"$'\n'
        fi
        psql "$BENCH_WRITER_PG" -XAtqc "DROP DATABASE IF EXISTS $WRITER_DB WITH (FORCE)" >/dev/null || true
    done
    WRITER_NOTE+=$'\n'"Each batch one transaction with its usage rows, one ledger debit per account, the balance projection and the keys' last use, exactly as the proxy's writer commits it (\`usage.batch-size\` defaults to 4,096); the events are spread over 100 accounts; \`ledger verify\` clean afterwards. Postgres $(psql "$BENCH_WRITER_PG" -XAtc 'show server_version' | cut -d' ' -f1) on this machine, \`synchronous_commit = $(psql "$BENCH_WRITER_PG" -XAtc 'show synchronous_commit')\`."
    log "usage writer: $WRITER_NOTE"
fi

# ---- translation + metering per streamed event (criterion) ---------------------
TRANSLATE_ROWS=""
if ((BENCH_TRANSLATE)); then
    log "translation + metering per streamed event (criterion)"
    export TOKENROUTE_FIXTURES="$ROOT/fixtures/providers"
    if BENCHER=$(cd "$SRC" && pinned "$BENCH_PROXY_CPUS" cargo bench --quiet -p tokenroute-proxy --bench stream_event -- \
        --output-format bencher --warm-up-time 1 --measurement-time 3 2>>"$WORK/criterion.log" | grep '^test ' || true); then
        # test stream_event/<dialect>/<events> ... bench: <ns> ns/iter (+/- <ns>)
        TRANSLATE_ROWS=$(awk '{
            split($2, id, "/"); ns = $5; gsub(",", "", ns); dev = $8; gsub(/[,)]/, "", dev)
            printf "| %s | %d | %.1f | %.2f | ±%.1f |\n", id[2], id[3], ns / 1000, ns / 1000 / id[3], dev / 1000
        }' <<<"$BENCHER")
    fi
fi

# ---- RESULTS.md ----------------------------------------------------------------
FILES=()
[[ $STORE_KIND == sqlite ]] && FILES+=("SQLite store")
[[ -n $USAGE_SECTION ]] && FILES+=("usage spool")
FILES_DESC=""
if ((${#FILES[@]})); then
    joined=${FILES[0]}
    ((${#FILES[@]} > 1)) && joined+=" and ${FILES[1]}"
    FILES_DESC="; its $joined on $(df -PT "$WORK" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
fi
DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
[[ -n $CPU_MODEL ]] || CPU_MODEL=$(lscpu 2>/dev/null | awk -F': +' '/Model name/ { print $2; exit }')
KERNEL=$(uname -r)
WRK_VERSION=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2 }')
ELAPSED=$((SECONDS - START_SECONDS))
TOKENROUTE_VERSION=$("$BIN/tokenroute" --version 2>/dev/null || echo tokenroute)

added() { # added SC LEVEL METRIC
    local v=${R[$1.$2.$3]:-} d=${R[direct.$2.$3]:-}
    [[ -n $v && -n $d ]] || {
        echo "—"
        return
    }
    calc %+.3f "$v - $d"
}
row() { # row SC LEVEL LABEL
    local k=$1.$2
    [[ -n ${R[$k.rps]:-} ]] || return 0
    local a50="—" a99="—" ratio
    if [[ $1 != direct ]]; then a50=$(added "$1" "$2" p50) a99=$(added "$1" "$2" p99); fi
    ratio=$(calc %.0f "${R[$k.rps]} / ${R[direct.$2.rps]} * 100")
    echo "| $3 | ${R[$k.rps]} | ${ratio}% | ${R[$k.p50]} | ${R[$k.p99]} | $a50 | $a99 | ${R[$k.cpu]} | ${R[$k.cpu_util]}% | ${R[$k.rss]} | ${R[$k.up_util]}% | ${R[$k.errors]} |" |
        sed 's/| —% |/| — |/g'
}
table() { # table LEVEL
    echo "| Path | req/s | vs direct | p50 ms | p99 ms | added p50 ms | added p99 ms | hop CPU s / 1k req | hop CPU use | hop peak RSS MiB | upstream CPU use | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    row direct "$1" "direct to the fake upstream"
    row nginx "$1" "nginx proxy_pass (floor of any proxy hop)"
    row tokenroute "$1" "**TokenRoute** (full path)"
    row anthropic "$1" "TokenRoute, OpenAI client → Anthropic upstream (translated both ways)"
    row gemini "$1" "TokenRoute, OpenAI client → Gemini upstream (translated both ways)"
    row auto "$1" "TokenRoute, model tokenroute-auto (route decision, then OpenAI)"
    echo
    if [[ -n ${R[tokenroute.$1.threads]:-} ]]; then
        echo "TokenRoute's threads during its run (share of one core): ${R[tokenroute.$1.threads]};" \
            "${R[tokenroute.$1.ctxsw]} context switches per request (nginx: ${R[nginx.$1.ctxsw]:-—})." \
            "After the load stopped, TokenRoute stayed busy for ${R[tokenroute.$1.settle]} s (nginx: ${R[nginx.$1.settle]:-—} s)."
        if [[ -n ${R[tokenroute.$1.rows_at_end]:-} ]]; then
            local rows=${R[tokenroute.$1.rows_at_end]} sent=${R[tokenroute.$1.sent_at_end]}
            if ((rows >= sent)); then
                echo "Metering lag: none; when the load stopped, the store already held $rows usage rows for the $sent requests TokenRoute had answered (requests cut off by wrk's stop are metered too)."
            else
                echo "Metering lag: when the load stopped, the store held $rows usage rows for $sent requests answered by TokenRoute so far: $((sent - rows)) not yet written, $(calc %.1f "($sent - $rows) / ${R[tokenroute.$1.rps]}") s of traffic at the measured rate."
            fi
        fi
        if [[ $STORE_KIND == postgres ]]; then
            echo "Postgres server processes (the store; not in the hop CPU above) during TokenRoute's run:" \
                "${R[tokenroute.$1.store_util]}% of a core, ${R[tokenroute.$1.store_cpu]} CPU s / 1k requests."
        fi
    fi
    local sc noise="" steal=""
    for sc in direct nginx tokenroute "${DIALECT_SCENARIOS[@]}"; do
        [[ -n ${R[$sc.$1.other]:-} ]] || continue
        noise+="${noise:+, }$sc ${R[$sc.$1.other]}%"
        steal+="${steal:+, }$sc ${R[$sc.$1.steal]}%"
    done
    echo "CPU used by other processes on the machine during these runs (share of one core; noise): $noise. Steal: $steal."
    for sc in direct nginx tokenroute "${DIALECT_SCENARIOS[@]}"; do
        if ((${R[$sc.$1.other]:-0} + ${R[$sc.$1.steal]:-0} > BENCH_NOISE_LIMIT)); then
            echo
            echo "**Warning: other processes used more than ${BENCH_NOISE_LIMIT}% of a core during at least one run; these figures are disturbed. Run again on a quiet machine.**"
            break
        fi
    done
}
storm_rows() {
    local pass l
    for pass in cold warm; do
        l=${R[storm.$pass]}
        echo "| $pass | $(kv "$l" requests) | $(kv "$l" ok) | $(kv "$l" rps) | $(kv "$l" p50) | $(kv "$l" p90) | $(kv "$l" p99) | $(kv "$l" max) |"
    done
}
stream_row() { # stream_row SC LABEL
    local out=${R[$1]:-}
    [[ -n $out ]] || return 0
    local d=${R[stream.direct]} fe tt
    fe=$(calc %+.2f "$(kv "$out" first_event_ms_p50) - $(kv "$d" first_event_ms_p50)")
    tt=$(calc %+.2f "$(kv "$out" total_ms_p50) - $(kv "$d" total_ms_p50)")
    [[ $1 == stream.direct ]] && fe="—" tt="—"
    echo "| $2 | $(kv "$out" ttfb_ms_p50) | $(kv "$out" first_event_ms_p50) | $(kv "$out" first_event_ms_p90) | $(kv "$out" done_ms_p50) | $(kv "$out" total_ms_p50) | $(kv "$out" total_ms_p90) | $fe | $tt | $(kv "$out" events) | $(kv "$out" usage) |"
}

# Built here, not inline in the heredoc below: an apostrophe inside ${VAR:+...} there
# breaks bash's parsing of the rest of the document.
TRANSLATE_SECTION=""
if [[ -n $TRANSLATE_ROWS ]]; then
    TRANSLATE_SECTION=$(
        cat <<'SECTION'

### Translation + metering per streamed event

A provider's whole stream (the transcripts in `fixtures/providers/`, read in
512-byte pieces) through the dialect adapter into OpenAI events, the SSE reader and
the meter — the synchronous work the data plane does for every event
(`cargo bench -p tokenroute-proxy --bench stream_event`, criterion, release build).

| Provider stream | events | µs per stream | µs per event | spread µs |
|---|---:|---:|---:|---:|
SECTION
        printf '%s\n' "$TRANSLATE_ROWS"
    )
fi
NOISY_MARK=""
if ((NOISY)); then NOISY_MARK=" (noisy)"; fi
HISTORY_ROW="| $DATE | $COMMIT${CHANGED:+ (dirty)}$NOISY_MARK | $STORE_KIND | ${R[direct.loaded.rps]} | ${R[nginx.loaded.rps]:-—} | ${R[tokenroute.loaded.rps]} | $(added tokenroute loaded p50) | $(added tokenroute loaded p99) | $(added tokenroute light p50) | ${R[tokenroute.loaded.cpu]} | $(if [[ -n ${R[stream.tokenroute]:-} ]]; then calc %+.2f "$(kv "${R[stream.tokenroute]}" first_event_ms_p50) - $(kv "${R[stream.direct]}" first_event_ms_p50)"; else echo —; fi) |"
OLD_HISTORY=
if [[ -f $BENCH_RESULTS ]]; then
    OLD_HISTORY=$(sed -n '/<!-- history:start -->/,/<!-- history:end -->/p' "$BENCH_RESULTS" | grep '^| 20' || true)
fi

{
    cat <<EOF
# TokenRoute benchmark results

Written by \`benchmarks/run.sh\` (see [README.md](README.md) for what is measured and how).
Every figure below comes from one run on one machine; compare rows within a run, not
across machines.

## Latest run

- **Date:** $DATE
- **Commit:** \`$COMMIT\` ($COMMIT_SUBJECT)$DIRTY; binary: $TOKENROUTE_VERSION
- **Machine:** $CPUS CPUs ($CPU_MODEL), $MEM RAM, Linux $KERNEL; load average at start: $LOADAVG_START
- **Command:** \`$COMMAND\` (took ${ELAPSED} s including the build)
- **Set-up:** all traffic on 127.0.0.1. $(if ((PIN)); then echo "CPU pinning with taskset: TokenRoute / nginx on CPU $BENCH_PROXY_CPUS, fake upstreams on CPU $BENCH_UPSTREAM_CPUS, wrk / stream-probe on CPU $BENCH_LOADGEN_CPUS."; else echo "No CPU pinning (taskset missing or fewer than 2 CPUs)."; fi)
  TokenRoute: \`[proxy] threads = $BENCH_PROXY_THREADS\`, store $STORE_KIND, log level warn, data plane only (\`tokenroute proxy\`)$FILES_DESC.
  nginx: 1 worker, upstream keep-alive, \`proxy_buffering off\`. Fake upstream: $BENCH_UPSTREAM_THREADS tokio worker(s), delay $BENCH_DELAY_MS ms.
  Load generator: wrk $WRK_VERSION, 1 thread, POST of a $(printf %s "$BODY" | wc -c)-byte chat request, ${BENCH_WARMUP} s warm-up before each measured run.

### Non-streaming, $BENCH_CONNECTIONS connections, ${BENCH_DURATION} s

$(table loaded)
EOF
    if [[ -n ${R[direct.light.rps]:-} ]]; then
        cat <<EOF

### Non-streaming, 1 connection (no queueing: per-request overhead), ${BENCH_LIGHT_DURATION} s

$(table light)
EOF
    fi
    if [[ -n ${R[stream.tokenroute]:-} ]]; then
        cat <<EOF

### Streaming: $BENCH_STREAM_EVENTS events ${BENCH_EVENT_GAP_MS} ms apart, $BENCH_STREAM_RUNS sequential requests per path (new connection each)

| Path | TTFB p50 ms | first event p50 ms | first event p90 ms | [DONE] p50 ms | total p50 ms | total p90 ms | added first event p50 ms | added total p50 ms | events | usage chunk |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
$(stream_row stream.direct "direct to the fake upstream")
$(stream_row stream.tokenroute "**TokenRoute**")
$(stream_row stream.anthropic "TokenRoute, OpenAI client → Anthropic stream (translated)")

CPU used by other processes during these runs (share of one core; noise): direct ${R[stream.direct.other]}%, TokenRoute ${R[stream.tokenroute.other]}%${R[stream.anthropic.other]:+, Anthropic ${R[stream.anthropic.other]}%}.$(
            if ((${R[stream.direct.other]} > BENCH_NOISE_LIMIT || ${R[stream.tokenroute.other]} > BENCH_NOISE_LIMIT)); then
                printf '\n\n**Warning: other processes used more than %s%% of a core during these runs; the figures are disturbed.**' "$BENCH_NOISE_LIMIT"
            fi
        )
EOF
    fi
    if [[ -n ${R[storm.cold]:-} ]]; then
        cat <<EOF

### Key-cache miss storm: $BENCH_STORM_KEYS keys TokenRoute has never seen, $BENCH_CONNECTIONS connections

\`key-storm\` makes the keys in TokenRoute's store ($STORE_KIND) while it runs, then sends one
request per key as fast as the connections carry them (*cold*: every key read from the
store, single-flighted per key), then the same keys again (*warm*: every key cached).

| Pass | requests | ok | req/s | p50 ms | p90 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|---:|---:|---:|
$(storm_rows)

TokenRoute's CPU over both passes: ${R[storm.cpu]} s / 1k requests (the OpenAI runs above: ${R[tokenroute.loaded.cpu]:-—}).
EOF
    fi
    cat <<EOF

### Metering check

${METER_NOTE:-not checked}
TokenRoute peak RSS over the whole run (streams included): $TR_RSS_FINAL MiB; warnings/errors in its log: $TR_LOG_NOTE.
${NGINX_NOTE:+
$NGINX_NOTE
}
### Usage writer alone (into Postgres)

$WRITER_NOTE
$TRANSLATE_SECTION

Columns: *req/s* completed responses per second; *p50/p99* wrk's latency percentiles;
*added* = the path's percentile minus the direct hop's, same run; *hop CPU s / 1k req* =
the proxy process's utime + stime (from /proc/PID/stat) during the measured run per
1,000 requests; *hop CPU use* = the same as a share of one core; *hop peak RSS* = VmHWM
(lifetime peak) after the run; *upstream CPU use* = the fast fake upstream's CPU
as a share of one core during the run; *errors* = wrk's connect/read/write/timeout errors plus
non-2xx responses. Streaming: *TTFB* = first response byte (the head); *first event* =
first complete SSE event; *total* = end of the body; medians and p90 over the runs.

## History

One line per run of \`benchmarks/run.sh\` (newest first; loaded = $BENCH_CONNECTIONS connections by default;
*noisy*: other processes took more than $BENCH_NOISE_LIMIT % of a core during a measured run).

<!-- history:start -->
| Date | Commit | store | direct req/s | nginx req/s | TokenRoute req/s | added p50 ms (loaded) | added p99 ms (loaded) | added p50 ms (1 conn) | TokenRoute CPU s / 1k req | added first event ms (stream) |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
$HISTORY_ROW
EOF
    [[ -n $OLD_HISTORY ]] && echo "$OLD_HISTORY"
    echo "<!-- history:end -->"
} >"$BENCH_RESULTS"

log "done in ${ELAPSED} s; results in ${BENCH_RESULTS#"$ROOT"/}"
if ((NOISY)); then
    log "warning: other processes used more than ${BENCH_NOISE_LIMIT}% of a core during a measured run (see RESULTS.md)"
fi
if [[ -n ${METER_VERDICT:-} && $METER_VERDICT != ok ]]; then
    die "metering check failed: $METER_NOTE"
fi
exit 0
}
