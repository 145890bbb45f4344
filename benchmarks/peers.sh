#!/usr/bin/env bash
# TokenRoute side by side with its peers, in one run on one machine: LiteLLM's proxy
# (from PyPI), Portkey's gateway (from npm) and TensorZero's gateway (the Rust gateway
# inside its PyPI package), installed into a cache outside the repository, measured
# the way the performance issue's table of peers was: each gateway pinned to CPU 0,
# the load generator and a fast fake provider on CPU 1, small non-streaming chat
# requests. The direct hop to the fake, nginx proxy_pass (when
# installed) and TokenRoute's full path are measured in the same run, the same way.
#
#   benchmarks/peers.sh
#
# Per system: saturation (wrk, closed loop) with its CPU per request from the
# process tree's own accounting, peak RSS, added p50 / p99 at a fixed open-loop rate
# (load-curve) and added time to the first streamed event (stream-probe), each against
# the direct hop. Writes benchmarks/results/peers-<date>.md. Everything from the
# installs to the last measurement holds /tmp/tokenroute-bench.lock (waiting for it if
# another run has it), so benchmark runs on the machine take turns.
#
# The whole script is one brace group, so bash parses all of it before running any of
# it: editing this file while a run is in progress cannot change or break that run.
{
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---- knobs ---------------------------------------------------------------------
BENCH_PEERS=${BENCH_PEERS:-"litellm portkey tensorzero"} # which peers to install and measure
BENCH_DURATION=${BENCH_DURATION:-10}              # seconds per measured run (wrk and load-curve)
BENCH_WARMUP=${BENCH_WARMUP:-3}                   # seconds of unmeasured wrk load before saturation
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-32}        # wrk connections (saturation)
BENCH_PEER_RATE=${BENCH_PEER_RATE:-500}           # open-loop rate for the added latency, req/s
BENCH_OPEN_CONNECTIONS=${BENCH_OPEN_CONNECTIONS:-64} # load-curve connections
BENCH_OPEN_MAX_SECS=${BENCH_OPEN_MAX_SECS:-150}   # skip the open-loop run when draining it would take longer
BENCH_STREAM_RUNS=${BENCH_STREAM_RUNS:-20}        # streamed requests per system (0: skip)
BENCH_STREAM_EVENTS=${BENCH_STREAM_EVENTS:-200}   # events per streamed answer
BENCH_EVENT_GAP_MS=${BENCH_EVENT_GAP_MS:-5}       # pause between streamed events
BENCH_NGINX=${BENCH_NGINX:-auto}                  # auto | 1 | 0
BENCH_PINGORA=${BENCH_PINGORA:-1}                 # measure Pingora's proxy with no logic (pingora-floor): 1 | 0
BENCH_GATEWAY_CPUS=${BENCH_GATEWAY_CPUS:-0}       # taskset CPU list: the gateway under test
BENCH_LOADGEN_CPUS=${BENCH_LOADGEN_CPUS:-1}       # taskset CPU list: load tools and fake providers
BENCH_PEERS_DIR=${BENCH_PEERS_DIR:-$HOME/.cache/tokenroute-peers}
BENCH_LITELLM_VERSION=${BENCH_LITELLM_VERSION:-1.108.7}
BENCH_PORTKEY_VERSION=${BENCH_PORTKEY_VERSION:-1.15.2}
BENCH_TENSORZERO_VERSION=${BENCH_TENSORZERO_VERSION:-2026.6.0}
# Portkey 1.15.2 with @hono/node-server 1.14 or later (what npm picks) answers every
# streamed request with HTTP 500 ("TypeError: immutable": it appends its headers to
# the provider's fetch response; Portkey-AI/gateway#1389): pinned to 1.13.8 (npm
# overrides). Empty: whatever npm resolves.
BENCH_PORTKEY_NODE_SERVER=${BENCH_PORTKEY_NODE_SERVER-1.13.8}
BENCH_START_TIMEOUT=${BENCH_START_TIMEOUT:-120}   # seconds a gateway may take to listen
BENCH_NOISE_LIMIT=${BENCH_NOISE_LIMIT:-10}        # % of a core used by other processes that flags a run
BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-120}         # seconds (whole run) to wait for other processes to calm down
BENCH_LOCK=${BENCH_LOCK:-/tmp/tokenroute-bench.lock}
BENCH_RESULTS=${BENCH_RESULTS:-} # empty: peers-<date>.md, or -2, -3, … when the day has one
BENCH_SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tokenroute-target}

COMMAND="benchmarks/peers.sh"
for v in BENCH_PEERS BENCH_DURATION BENCH_WARMUP BENCH_CONNECTIONS BENCH_PEER_RATE \
    BENCH_OPEN_CONNECTIONS BENCH_OPEN_MAX_SECS BENCH_STREAM_RUNS BENCH_STREAM_EVENTS \
    BENCH_EVENT_GAP_MS BENCH_NGINX BENCH_PINGORA BENCH_GATEWAY_CPUS BENCH_LOADGEN_CPUS BENCH_LITELLM_VERSION \
    BENCH_PORTKEY_VERSION BENCH_PORTKEY_NODE_SERVER BENCH_TENSORZERO_VERSION BENCH_NOISE_LIMIT BENCH_QUIET_WAIT BENCH_SKIP_BUILD; do
    # The knobs set explicitly, so that the command in the results reruns it.
    if printenv "$v" >/dev/null; then COMMAND="$v=\"${!v}\" $COMMAND"; fi
done

NAME=peers
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/benchmarks/lib.sh"
need wrk curl taskset flock python3
(($(nproc) >= 2)) || die "needs 2 CPUs (gateway on one, load and fake provider on the other)"
CLK_TCK=$(getconf CLK_TCK)
workspace

# ---- helpers -------------------------------------------------------------------
kv() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n1; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
# PID and all its descendants (LiteLLM or nginx may fork).
tree() {
    local c kids
    echo "$1"
    kids=$(cat /proc/"$1"/task/*/children 2>/dev/null) || true
    for c in $kids; do tree "$c"; done
}
tree_ticks() { # utime + stime of the tree, clock ticks
    local total=0 p t
    for p in $(tree "$1"); do
        t=$(ticks "$p" 2>/dev/null) || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
tree_hwm_kib() { # peak RSS (VmHWM) of the tree, summed
    local total=0 p k
    for p in $(tree "$1"); do
        k=$(awk '/^VmHWM:/ { print $2 }' /proc/"$p"/status 2>/dev/null) || k=0
        total=$((total + ${k:-0}))
    done
    echo "$total"
}
# CPU ticks of every process outside this script's tree (lib.sh's proc_ticks), plus the
# machine's steal time: other jobs on the machine, i.e. noise.
others_ticks() {
    echo $(($(proc_ticks others) + $(awk '/^cpu / { print $9; exit }' /proc/stat)))
}
# What lib.sh's wait_quiet may wait, in seconds, over the whole run.
QUIET_BUDGET=$BENCH_QUIET_WAIT
# up PORT PID SECONDS: until PORT accepts connections; fails if PID exits or time runs out.
up() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
# launch NAME CPUS COMMAND...: starts a server in the background, pinned, logging to
# $WORK/NAME.log, without the lock's file descriptor; sets LAUNCHED.
launch() {
    local name=$1 cpus=$2
    shift 2
    (exec 9>&- && exec taskset -c "$cpus" "$@" >"$WORK/$name.log" 2>&1) &
    LAUNCHED=$!
    PIDS+=("$LAUNCHED")
}
# halt PID: stops the process and its descendants (TERM, then KILL after 10 s).
halt() {
    local pids p keep=()
    mapfile -t pids < <(tree "$1")
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
        any_alive "${pids[@]}" || break
        sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
any_alive() {
    local p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done
    return 1
}
# Clean-up on exit (after lib.sh's on_exit has signalled PIDS): whatever the gateways
# forked and left behind.
tidy() { for p in "${ORPHANS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
ORPHANS=()

# ---- the peers: install (cached) ---------------------------------------------------
LITELLM_DIR=$BENCH_PEERS_DIR/litellm-$BENCH_LITELLM_VERSION
PORTKEY_DIR=$BENCH_PEERS_DIR/portkey-$BENCH_PORTKEY_VERSION${BENCH_PORTKEY_NODE_SERVER:+-node-server-$BENCH_PORTKEY_NODE_SERVER}
TENSORZERO_DIR=$BENCH_PEERS_DIR/tensorzero-$BENCH_TENSORZERO_VERSION
peer_dir() {
    case $1 in
        litellm) echo "$LITELLM_DIR" ;;
        portkey) echo "$PORTKEY_DIR" ;;
        tensorzero) echo "$TENSORZERO_DIR" ;;
    esac
}
peer_label() {
    case $1 in
        litellm) echo LiteLLM ;;
        portkey) echo Portkey ;;
        tensorzero) echo TensorZero ;;
    esac
}
# A peer's folder counts as installed only once its `.installed` marker is written.
# install_venv DIR REQUIREMENT CHECK...: REQUIREMENT from PyPI into a venv in DIR, then
# CHECK (a command line run in DIR/venv/bin) must succeed.
install_venv() {
    local dir=$1 requirement=$2
    shift 2
    [[ -f $dir/.installed ]] && return 0
    rm -rf "$dir"
    mkdir -p "$dir" &&
        python3 -m venv "$dir/venv" &&
        "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "$requirement" &&
        "$dir/venv/bin/$1" "${@:2}" >/dev/null &&
        touch "$dir/.installed"
}
install_litellm() {
    install_venv "$LITELLM_DIR" "litellm[proxy]==$BENCH_LITELLM_VERSION" litellm --version
}
install_portkey() {
    [[ -f $PORTKEY_DIR/.installed ]] && return 0
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "node / npm not installed"
        return 1
    fi
    rm -rf "$PORTKEY_DIR"
    mkdir -p "$PORTKEY_DIR" || return 1
    local overrides=""
    [[ -n $BENCH_PORTKEY_NODE_SERVER ]] && overrides=", \"overrides\": { \"@hono/node-server\": \"$BENCH_PORTKEY_NODE_SERVER\" }"
    echo "{ \"private\": true, \"dependencies\": { \"@portkey-ai/gateway\": \"$BENCH_PORTKEY_VERSION\" }$overrides }" \
        >"$PORTKEY_DIR/package.json"
    (cd "$PORTKEY_DIR" && npm install --no-audit --no-fund --omit=dev --loglevel=error) &&
        [[ -f $PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js ]] &&
        touch "$PORTKEY_DIR/.installed"
}
# TensorZero publishes its gateway as a Docker image and as the Rust core of its Python
# package (the wheel's native module); only the second comes from a registry this
# machine reaches. The package starts that same gateway as an HTTP server in-process
# (`_start_http_gateway`, what its `patch_openai_client` uses): the Python thread only
# waits while the gateway's own threads serve.
install_tensorzero() {
    install_venv "$TENSORZERO_DIR" "tensorzero==$BENCH_TENSORZERO_VERSION" \
        python -c 'from tensorzero import _start_http_gateway'
}
peer_version() {
    case $1 in
        litellm) "$LITELLM_DIR/venv/bin/python" -c 'import importlib.metadata as m; print("litellm " + m.version("litellm"))' 2>/dev/null &&
            "$LITELLM_DIR/venv/bin/python" --version 2>&1 | sed 's/^Python/on Python/' ;;
        portkey) python3 -c 'import json, sys; v = [json.load(open(f))["version"] for f in sys.argv[1:]]; print(f"@portkey-ai/gateway {v[0]} (with @hono/node-server {v[1]})")' \
            "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/package.json" \
            "$PORTKEY_DIR/node_modules/@hono/node-server/package.json" && echo "on Node.js $(node --version)" ;;
        tensorzero) "$TENSORZERO_DIR/venv/bin/python" -c 'import importlib.metadata as m; print("tensorzero " + m.version("tensorzero") + " (its gateway, from the Python package)")' 2>/dev/null ;;
    esac | paste -sd' '
}

# ---- the lock: one benchmark at a time on this machine ------------------------------
# Installs and builds load the machine as much as a measurement, so they hold it too.
exec 9>"$BENCH_LOCK"
if ! flock -n 9; then
    log "waiting for $BENCH_LOCK (another benchmark is running)"
    flock 9
fi
log "holding $BENCH_LOCK"
T0=$(date +%s)
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(cd "$ROOT" && git status --porcelain -- . ':!benchmarks/results' 2>/dev/null) ]] && COMMIT+=" (with uncommitted changes)"

declare -A STATUS VERSION
for peer in $BENCH_PEERS; do
    case $peer in
        litellm | portkey | tensorzero) ;;
        *) die "unknown peer '$peer' in BENCH_PEERS (litellm, portkey, tensorzero)" ;;
    esac
    dir=$(peer_dir "$peer")
    [[ -f $dir/.installed ]] || log "$peer: installing into $dir"
    if (exec 9>&- && "install_$peer") >"$WORK/install-$peer.log" 2>&1; then
        VERSION[$peer]=$(peer_version "$peer")
        log "$peer: ${VERSION[$peer]}"
    else
        STATUS[$peer]="failed to install: $({ grep -m1 -i error "$WORK/install-$peer.log" || tail -n 1 "$WORK/install-$peer.log"; } | cut -c1-200)"
        log "$peer ${STATUS[$peer]}"
    fi
done

bins tokenroute fake-upstream load-curve stream-probe pingora-floor

# ---- fake providers (CPU 1, with the load tools) -----------------------------------------
start_fake_upstream "$BENCH_LOADGEN_CPUS" --stream-events "$BENCH_STREAM_EVENTS" --event-gap-ms "$BENCH_EVENT_GAP_MS"
UPS_PORT=$UP_PORT
start_fake_upstream "$BENCH_LOADGEN_CPUS" --stream-events 20
log "fake providers on 127.0.0.1:$UP_PORT (fast) and 127.0.0.1:$UPS_PORT ($BENCH_STREAM_EVENTS events, $BENCH_EVENT_GAP_MS ms apart)"

# The requests, as `body MODEL_PREFIX` writes them; a system that names its models
# differently sets BODY and STREAM_BODY itself (measure() resets them).
body() { echo "{\"model\":\"$1bench/gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"; }
stream_body() { echo "{\"model\":\"$1bench-stream/gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,\"stream_options\":{\"include_usage\":true}}"; }
BODY=$(body "") STREAM_BODY=$(stream_body "")

# The gateways reach the fake providers directly, whatever proxy the environment names.
NO_PROXIES=(-u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY -u all_proxy)

# ---- the systems -----------------------------------------------------------------
# Each start_SYSTEM starts it on BENCH_GATEWAY_CPUS and sets:
#   PID                 the process to account (with its descendants; 0 for the direct hop)
#   URL / STREAM_URL    where the chat requests and the streamed ones go
#   KEY                 the bearer key (empty: none)
#   HEADERS             more request headers ("name: value" each)
#   STREAM_HEADERS      the same for the streamed requests
start_direct() {
    PID=0 KEY="" HEADERS=() STREAM_HEADERS=()
    URL="http://127.0.0.1:$UP_PORT/v1/chat/completions"
    STREAM_URL="http://127.0.0.1:$UPS_PORT/v1/chat/completions"
}
start_nginx() {
    local port
    port=$(free_port)
    nginx_config "$WORK/nginx" "$port"
    # Streams go to the spaced fake on their own path.
    sed -i "s|^        location / {|        location /stream/ { proxy_pass http://127.0.0.1:$UPS_PORT/; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }\n&|" \
        "$WORK/nginx/nginx.conf"
    launch nginx "$BENCH_GATEWAY_CPUS" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
    PID=$LAUNCHED KEY="" HEADERS=() STREAM_HEADERS=()
    URL="http://127.0.0.1:$port/v1/chat/completions"
    STREAM_URL="http://127.0.0.1:$port/stream/v1/chat/completions"
    up "$port" "$PID" 20
}
# Pingora 0.9's proxy with no logic (`pingora-floor`): what any Pingora-based proxy pays.
start_pingora() {
    local port
    port=$(free_port)
    launch pingora "$BENCH_GATEWAY_CPUS" "$BIN/pingora-floor" --listen "127.0.0.1:$port" \
        --upstream "127.0.0.1:$UP_PORT" --stream-upstream "127.0.0.1:$UPS_PORT"
    PID=$LAUNCHED KEY="" HEADERS=() STREAM_HEADERS=()
    URL="http://127.0.0.1:$port/v1/chat/completions"
    STREAM_URL="http://127.0.0.1:$port/stream/v1/chat/completions"
    up "$port" "$PID" 20
}
start_tokenroute() {
    local port
    port=$(free_port)
    bench_config "$WORK/tokenroute.toml" "$port" "sqlite://$WORK/tokenroute.db" "$WORK" </dev/null
    bench_model "$WORK/tokenroute.toml" bench-stream "$UPS_PORT"
    KEY=$(bench_key "$WORK/tokenroute.toml")
    [[ -n $KEY ]] || return 1
    launch tokenroute "$BENCH_GATEWAY_CPUS" "$BIN/tokenroute" --config "$WORK/tokenroute.toml" proxy
    PID=$LAUNCHED HEADERS=() STREAM_HEADERS=()
    URL="http://127.0.0.1:$port/v1/chat/completions"
    STREAM_URL=$URL
    up "$port" "$PID" 30
}
start_litellm() {
    local port
    port=$(free_port)
    cat >"$WORK/litellm.yaml" <<EOF
# Generated by benchmarks/peers.sh: two models on the fake providers, no database,
# no callbacks; a master key (LiteLLM refuses to start without one).
model_list:
  - model_name: bench/gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$UP_PORT/v1
      api_key: dummy
  - model_name: bench-stream/gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$UPS_PORT/v1
      api_key: dummy
litellm_settings:
  telemetry: false
  callbacks: []
  success_callback: []
  failure_callback: []
general_settings:
  master_key: sk-bench-peers
  disable_spend_logs: true
EOF
    # LITELLM_LOCAL_MODEL_COST_MAP: the bundled price list instead of fetching it at
    # start-up; no DATABASE_URL: no database (the master key is checked in memory).
    launch litellm "$BENCH_GATEWAY_CPUS" env "${NO_PROXIES[@]}" -u DATABASE_URL -u LITELLM_MASTER_KEY \
        LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False HF_HUB_OFFLINE=1 \
        "$LITELLM_DIR/venv/bin/litellm" --config "$WORK/litellm.yaml" \
        --host 127.0.0.1 --port "$port" --num_workers 1
    PID=$LAUNCHED KEY=sk-bench-peers HEADERS=() STREAM_HEADERS=()
    URL="http://127.0.0.1:$port/v1/chat/completions"
    STREAM_URL=$URL
    up "$port" "$PID" "$BENCH_START_TIMEOUT"
}
start_portkey() {
    local port
    port=$(free_port)
    # The provider and its base URL travel in headers (x-portkey-provider,
    # x-portkey-custom-host; 127.0.0.1 is a trusted custom host by default).
    launch portkey "$BENCH_GATEWAY_CPUS" env "${NO_PROXIES[@]}" NODE_ENV=production \
        node "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js" \
        --port="$port" --headless
    PID=$LAUNCHED KEY=dummy
    HEADERS=("x-portkey-provider: openai" "x-portkey-custom-host: http://127.0.0.1:$UP_PORT/v1")
    STREAM_HEADERS=("x-portkey-provider: openai" "x-portkey-custom-host: http://127.0.0.1:$UPS_PORT/v1")
    URL="http://127.0.0.1:$port/v1/chat/completions"
    STREAM_URL=$URL
    up "$port" "$PID" "$BENCH_START_TIMEOUT"
}
tensorzero_model() { # tensorzero_model NAME PORT: model NAME/gpt-4o-mini on the fake at PORT
    cat <<EOF

[models."$1/gpt-4o-mini"]
routing = ["fake"]

[models."$1/gpt-4o-mini".providers.fake]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "http://127.0.0.1:$2/v1/"
api_key_location = "none"
EOF
}
start_tensorzero() {
    local i base
    {
        echo "# Generated by benchmarks/peers.sh: two models on the fake providers, no"
        echo "# observability database (ClickHouse / Postgres), no key."
        tensorzero_model bench "$UP_PORT"
        tensorzero_model bench-stream "$UPS_PORT"
    } >"$WORK/tensorzero.toml"
    # (Not named tensorzero.py: Python would import the script itself as the package.)
    cat >"$WORK/start-tensorzero.py" <<'EOF'
# Starts TensorZero's gateway as an HTTP server (its own threads) and writes where it listens.
import os, sys, time, tensorzero
gateway = tensorzero._start_http_gateway(config_file=sys.argv[1], clickhouse_url=None,
    postgres_url=None, valkey_url=None, async_setup=False)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(gateway.base_url)
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
while True:
    time.sleep(3600)
EOF
    rm -f "$WORK/tensorzero.url"
    launch tensorzero "$BENCH_GATEWAY_CPUS" env "${NO_PROXIES[@]}" -u TENSORZERO_CLICKHOUSE_URL -u TENSORZERO_POSTGRES_URL \
        "$TENSORZERO_DIR/venv/bin/python" "$WORK/start-tensorzero.py" "$WORK/tensorzero.toml" "$WORK/tensorzero.url"
    PID=$LAUNCHED KEY="" HEADERS=() STREAM_HEADERS=()
    for ((i = 0; i < BENCH_START_TIMEOUT * 10; i++)); do
        [[ -f $WORK/tensorzero.url ]] && break
        kill -0 "$PID" 2>/dev/null || return 1
        sleep 0.1
    done
    base=$(cat "$WORK/tensorzero.url") || return 1 # http://127.0.0.1:PORT/openai/v1
    URL="$base/chat/completions"
    STREAM_URL=$URL
    BODY=$(body tensorzero::model_name::) STREAM_BODY=$(stream_body tensorzero::model_name::)
}

# load-curve and stream-probe arguments for KEY and the extra HEADERs.
tool_args() { # tool_args KEY HEADER... (one argument per line)
    [[ -n $1 ]] && printf '%s\n' --key "$1"
    shift
    local h
    for h in "$@"; do printf '%s\n' --header "$h"; done
}
curl_args() { # curl -H arguments for KEY and HEADER...
    local k=$1
    shift
    [[ -n $k ]] && printf '%s\0' -H "Authorization: Bearer $k"
    for h in "$@"; do printf '%s\0' -H "$h"; done
}

# smoke NAME: one chat request and one streamed request must answer 200 with usage.
smoke() {
    local name=$1 args code
    mapfile -d '' -t args < <(curl_args "$KEY" "${HEADERS[@]}")
    code=$(curl -sS -m 60 --noproxy '*' -o "$WORK/smoke-$name.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        "${args[@]}" --data "$BODY" "$URL" 2>&1) || true
    [[ $code == 200 ]] || { echo "chat request answered HTTP $code: $(head -c 300 "$WORK/smoke-$name.json" 2>/dev/null)"; return 1; }
    grep -q '"usage"' "$WORK/smoke-$name.json" || { echo "answer without usage: $(head -c 300 "$WORK/smoke-$name.json")"; return 1; }
    mapfile -d '' -t args < <(curl_args "$KEY" "${STREAM_HEADERS[@]}")
    code=$(curl -sS -m 60 -N --noproxy '*' -o "$WORK/smoke-$name-stream.txt" -w '%{http_code}' -H 'Content-Type: application/json' \
        "${args[@]}" --data "$STREAM_BODY" "$STREAM_URL" 2>&1) || true
    [[ $code == 200 ]] || { echo "streamed request answered HTTP $code: $(head -c 300 "$WORK/smoke-$name-stream.txt" 2>/dev/null)"; return 1; }
    grep -q 'data: \[DONE\]' "$WORK/smoke-$name-stream.txt" || { echo "stream without [DONE]: $(head -c 300 "$WORK/smoke-$name-stream.txt")"; return 1; }
}

# ---- measuring one system ----------------------------------------------------------
TSV=$WORK/peers.tsv
COLS=(system status cpu_us rps cpu_util rss_mib wrk_p50 wrk_p99 errors other open_p50 open_p99 open_achieved open_errors open_secs open_note ttfb first_event stream_usage stream_other)
(IFS=$'\t'; echo "${COLS[*]}") >"$TSV"
declare -A M

# saturation NAME: wrk warm-up, then the measured run; CPU of the tree from /proc.
saturation() {
    local name=$1 out line before after o_before o_after n secs attempt wrk_h=()
    for h in "${HEADERS[@]}"; do wrk_h+=(-H "$h"); done
    export BENCH_BODY=$BODY BENCH_AUTH=$KEY
    if ((BENCH_WARMUP > 0)); then
        taskset -c "$BENCH_LOADGEN_CPUS" wrk -t1 -c"$BENCH_CONNECTIONS" -d"${BENCH_WARMUP}s" --timeout 10s \
            "${wrk_h[@]}" -s "$ROOT/benchmarks/wrk/post.lua" "$URL" >/dev/null
    fi
    # Measured once more if other processes disturbed it (and the quiet budget allows).
    for attempt in 1 2; do
        wait_quiet
        log "$name: saturation, $BENCH_CONNECTIONS connections, ${BENCH_DURATION}s"
        ((PID)) && before=$(tree_ticks "$PID")
        o_before=$(others_ticks)
        out=$(taskset -c "$BENCH_LOADGEN_CPUS" wrk -t1 -c"$BENCH_CONNECTIONS" -d"${BENCH_DURATION}s" --timeout 10s \
            "${wrk_h[@]}" -s "$ROOT/benchmarks/wrk/post.lua" "$URL")
        o_after=$(others_ticks)
        ((PID)) && after=$(tree_ticks "$PID")
        echo "$out" >"$WORK/wrk-$name.txt"
        line=$(grep '^WRK ' <<<"$out") || die "wrk printed no summary: $out"
        n=$(kv "$line" requests)
        secs=$(calc %.6f "$(kv "$line" duration_us) / 1e6")
        M[rps]=$(calc %.0f "$n / $secs")
        M[wrk_p50]=$(calc %.2f "$(kv "$line" p50_us) / 1000")
        M[wrk_p99]=$(calc %.2f "$(kv "$line" p99_us) / 1000")
        M[errors]=$(($(kv "$line" err_connect) + $(kv "$line" err_read) + $(kv "$line" err_write) + $(kv "$line" err_status) + $(kv "$line" err_timeout)))
        M[other]=$(calc %.0f "($o_after - $o_before) / $CLK_TCK / $secs * 100")
        [[ ${M[other]} == -* ]] && M[other]=0 # a reaped process can make the sum dip
        if ((PID)); then
            ((n > 0)) && M[cpu_us]=$(calc %.0f "($after - $before) / $CLK_TCK / $n * 1e6")
            M[cpu_util]=$(calc %.0f "($after - $before) / $CLK_TCK / $secs * 100")
            M[rss_mib]=$(calc %.1f "$(tree_hwm_kib "$PID") / 1024")
        fi
        log "$name: ${M[rps]} req/s, CPU ${M[cpu_us]:-—} µs/request (${M[cpu_util]:-—}% of a core), p50 ${M[wrk_p50]} ms, p99 ${M[wrk_p99]} ms, errors ${M[errors]}; other processes ${M[other]}% of a core"
        if ((attempt == 1 && M[other] > BENCH_NOISE_LIMIT && QUIET_BUDGET > 0)); then
            log "$name: disturbed by other processes; measuring again"
            continue
        fi
        break
    done
}

# open_loop NAME: load-curve at BENCH_PEER_RATE. A system slower than the rate falls
# behind and load-curve sends every scheduled request anyway: what it served is
# then the scheduled requests over the time they took.
open_loop() {
    local name=$1 out t0 t1 wall expect
    expect=$(calc %.0f "$BENCH_PEER_RATE * ($BENCH_DURATION + 1) / (${M[rps]} + 0.001)")
    if ((expect > BENCH_OPEN_MAX_SECS)); then
        M[open_note]="not run: at ${M[rps]} req/s it would take about $expect s to serve $BENCH_PEER_RATE req/s for $((BENCH_DURATION + 1)) s"
        log "$name: open loop ${M[open_note]}"
        return
    fi
    wait_quiet
    log "$name: open loop at $BENCH_PEER_RATE req/s, ${BENCH_DURATION}s"
    t0=$(date +%s%N)
    local key=() addr=${URL#http://}
    mapfile -t key < <(tool_args "$KEY" "${HEADERS[@]}")
    out=$(taskset -c "$BENCH_LOADGEN_CPUS" "$BIN/load-curve" --addr "${addr%%/*}" --path "/${addr#*/}" \
        "${key[@]}" --body "$BODY" --rates "$BENCH_PEER_RATE" \
        --duration-secs "$BENCH_DURATION" --connections "$BENCH_OPEN_CONNECTIONS" 2>"$WORK/load-curve-$name.log")
    t1=$(date +%s%N)
    wall=$(calc %.1f "($t1 - $t0) / 1e9")
    M[open_p50]=$(kv "$out" p50) M[open_p99]=$(kv "$out" p99) M[open_errors]=$(kv "$out" errors) M[open_secs]=$wall
    # load-curve's own `achieved` divides by the scheduled seconds, however long they took.
    M[open_achieved]=$(calc %.0f "$BENCH_PEER_RATE * ($BENCH_DURATION + 1) / $wall")
    if (($(calc %.0f "$wall * 10") > (BENCH_DURATION + 1) * 11 + 20)); then
        M[open_note]="fell behind"
    else
        M[open_achieved]=$(kv "$out" achieved)
    fi
    log "$name: $out; ${wall} s in all${M[open_note]:+ (${M[open_note]}: served about ${M[open_achieved]} req/s)}"
}

# streaming NAME: stream-probe, each stream on a new connection.
streaming() {
    local name=$1 out o_before o_after t0 t1
    ((BENCH_STREAM_RUNS > 0)) || return 0
    wait_quiet
    log "$name: $BENCH_STREAM_RUNS streams of $BENCH_STREAM_EVENTS events, ${BENCH_EVENT_GAP_MS} ms apart"
    o_before=$(others_ticks)
    t0=$(date +%s%N)
    local key=()
    mapfile -t key < <(tool_args "$KEY" "${STREAM_HEADERS[@]}")
    if out=$(taskset -c "$BENCH_LOADGEN_CPUS" "$BIN/stream-probe" --url "$STREAM_URL" "${key[@]}" --body "$STREAM_BODY" \
        --runs "$BENCH_STREAM_RUNS" --warmup 2 2>"$WORK/stream-probe-$name.log"); then
        t1=$(date +%s%N)
        o_after=$(others_ticks)
        M[ttfb]=$(kv "$out" ttfb_ms_p50) M[first_event]=$(kv "$out" first_event_ms_p50) M[stream_usage]=$(kv "$out" usage)
        M[stream_other]=$(calc %.0f "($o_after - $o_before) / $CLK_TCK / (($t1 - $t0) / 1e9) * 100")
        log "$name: $out"
    else
        M[stream_other]="failed: $(tail -n 2 "$WORK/stream-probe-$name.log" | tr '\n' ' ' | cut -c1-200)"
        log "$name: stream-probe ${M[stream_other]}"
    fi
}

record() { # record NAME: one TSV row from M
    local row=() c
    M[system]=$1
    for c in "${COLS[@]}"; do row+=("${M[$c]:-}"); done
    (IFS=$'\t'; echo "${row[*]}") >>"$TSV"
}

# measure NAME START_FUNCTION: start, check, measure, stop.
measure() {
    local name=$1 why short
    short=${name%% *} short=${short,,} # its log: $WORK/$short.log
    M=() PID=0 BODY=$(body "") STREAM_BODY=$(stream_body "")
    log "$name: starting"
    if ! "$2" 2>>"$WORK/start-$name.log"; then
        M[status]="did not start (see its log: $({ tail -n 3 "$WORK/$short.log" 2>/dev/null || true; } | tr '\n' ' ' | cut -c1-200))"
        log "$name ${M[status]}"
        ((PID)) && halt "$PID"
        record "$name"
        return
    fi
    if ! why=$(smoke "$name"); then
        M[status]="failed its smoke test: $why"
        log "$name ${M[status]}"
        ((PID)) && halt "$PID"
        record "$name"
        return
    fi
    ((PID)) && mapfile -t -O "${#ORPHANS[@]}" ORPHANS < <(tree "$PID" | tail -n +2)
    M[status]=ok
    saturation "$name"
    open_loop "$name"
    streaming "$name"
    if ((PID)); then
        M[rss_mib]=$(calc %.1f "$(tree_hwm_kib "$PID") / 1024")
        halt "$PID"
    fi
    record "$name"
}

measure direct start_direct
if [[ $BENCH_NGINX != 0 ]] && command -v nginx >/dev/null; then
    measure nginx start_nginx
elif [[ $BENCH_NGINX == 1 ]]; then
    die "nginx is not installed (apt-get install -y nginx-light)"
elif [[ $BENCH_NGINX != 0 ]]; then
    log "nginx is not installed (apt-get install -y nginx-light): measured without it"
fi
if [[ $BENCH_PINGORA != 0 ]]; then measure "Pingora (no logic)" start_pingora; fi
measure TokenRoute start_tokenroute
for peer in $BENCH_PEERS; do
    label=$(peer_label "$peer")
    if [[ -n ${STATUS[$peer]:-} ]]; then
        M=([status]="${STATUS[$peer]}")
        record "$label"
    else
        measure "$label" "start_$peer"
    fi
done
SECS=$(($(date +%s) - T0))
flock -u 9
exec 9>&-
log "measured in $SECS s; released $BENCH_LOCK"

# ---- the report ------------------------------------------------------------------
DATE=$(date -u +%Y-%m-%d)
OUT=${BENCH_RESULTS:-$(result_stem peers).md}
VERSIONS=""
for peer in $BENCH_PEERS; do VERSIONS+="$peer=${VERSION[$peer]:-not installed}"$'\n'; done
R_DATE=$DATE R_COMMIT=$COMMIT R_MACHINE=$(machine) R_COMMAND=$COMMAND R_VERSIONS=$VERSIONS R_TOOK=$SECS \
R_WRK=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2 }') \
R_NGINX=$({ nginx -v 2>&1 || true; } | sed -n 's|.*nginx/||p') \
R_RATE=$BENCH_PEER_RATE R_SECS=$BENCH_DURATION R_CONNS=$BENCH_CONNECTIONS R_WARM=$BENCH_WARMUP \
R_OCONNS=$BENCH_OPEN_CONNECTIONS R_RUNS=$BENCH_STREAM_RUNS R_EVENTS=$BENCH_STREAM_EVENTS R_GAP=$BENCH_EVENT_GAP_MS \
R_GCPUS=$BENCH_GATEWAY_CPUS R_LCPUS=$BENCH_LOADGEN_CPUS R_NOISE=$BENCH_NOISE_LIMIT \
    python3 - "$TSV" "$OUT" <<'EOF'
import os, sys
tsv, out = sys.argv[1:]
E = os.environ
versions = dict(l.split("=", 1) for l in E["R_VERSIONS"].splitlines() if l)
date, commit, machine, command, took = E["R_DATE"], E["R_COMMIT"], E["R_MACHINE"], E["R_COMMAND"], E["R_TOOK"]
rate, secs, conns, warm = E["R_RATE"], E["R_SECS"], E["R_CONNS"], E["R_WARM"]
oconns, runs, events, gap = E["R_OCONNS"], E["R_RUNS"], E["R_EVENTS"], E["R_GAP"]
gcpus, lcpus, noise = E["R_GCPUS"], E["R_LCPUS"], float(E["R_NOISE"])
wrk_version, nginx_version = E["R_WRK"], E["R_NGINX"]

lines = open(tsv).read().splitlines()
cols = lines[0].split("\t")
rows = [dict(zip(cols, l.split("\t"))) for l in lines[1:]]
by = {r["system"]: r for r in rows}
def num(r, k):
    try:
        return float(r.get(k, ""))
    except ValueError:
        return None
d = by.get("direct", {})
def added(r, k):
    a, b = num(r, k), num(d, k)
    return None if a is None or b is None else a - b

out_lines = [f"# TokenRoute and its peers, side by side — {date}", "",
    f"`{command}` at commit `{commit}`, on {machine}; {took} s of measuring.", "",
    "Versions: " + "; ".join([f"TokenRoute `{commit}` (release build)"]
        + [versions[p] if versions[p] != "not installed" else f"{p}: not installed" for p in versions]
        + ([f"nginx {nginx_version}"] if "nginx" in by else []) + [f"wrk {wrk_version}"]) + ".", "",
    f"Set-up, as for the performance issue's table of peers: each gateway alone on CPU {gcpus} "
    f"(`taskset`, started for its own measurement and stopped after it); the load tools and "
    f"two fake OpenAI-compatible providers (`fake-upstream`: one fast, one sending {events} "
    f"events {gap} ms apart) on CPU {lcpus}; all on 127.0.0.1, plain HTTP/1.1. "
    "The request: a small non-streaming chat completion "
    "(`{\"model\":\"bench/gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}`); "
    "each system's answer was checked (HTTP 200 with `usage`; the stream ends in `[DONE]`) before measuring. "
    + " ".join(text for s, text in [
        ("TokenRoute", "TokenRoute: `tokenroute proxy`, one data-plane thread, SQLite store and usage spool in a temp "
            "folder, the full path (key check, reservation, metering with the usage writer)."),
        ("LiteLLM", "LiteLLM: `litellm --num_workers 1` (uvicorn), no database, a master key in its config (it "
            "refuses to start without one), no callbacks, the bundled price list (`LITELLM_LOCAL_MODEL_COST_MAP=True`), "
            "the models as `openai/gpt-4o-mini` with the fake as `api_base`."),
        ("Portkey", "Portkey: `node build/start-server.js --headless` with `NODE_ENV=production`, provider `openai` "
            "and the fake as `x-portkey-custom-host`."),
        ("TensorZero", "TensorZero: its gateway from the `tensorzero` Python package, started as an HTTP server in "
            "the Python process (`_start_http_gateway`; the Python thread only sleeps), no observability database, "
            "the models as `openai` providers with the fake as `api_base`, requested on its OpenAI-compatible "
            "endpoint as `tensorzero::model_name::bench/gpt-4o-mini`."),
        ("nginx", "nginx: `proxy_pass` with upstream keep-alive, 1 worker."),
        ("Pingora (no logic)", "Pingora (no logic): `pingora-floor`, Pingora 0.9's own HTTP proxy forwarding every "
            "request to the fake over its keep-alive pool, run as `tokenroute proxy` runs it (one thread, no read buffer "
            "under plain-text clients): the floor of any proxy built on Pingora.")] if s in by), "",
    "| system | CPU µs per request | saturation req/s (1 core) | CPU use | peak RSS MiB | "
    f"added p50 / p99 ms at {rate} req/s | added first event ms |",
    "|---|---:|---:|---:|---:|---:|---:|"]
def f0(v):
    return "—" if v is None else f"{v:,.0f}"
notes = []
for r in rows:
    s = r["system"]
    if r["status"] != "ok":
        out_lines.append(f"| {s} | {r['status']} | | | | | |")
        continue
    cpu = num(r, "cpu_us")
    util = num(r, "cpu_util")
    rss = num(r, "rss_mib")
    if s == "direct":
        op = f"{num(r, 'open_p50'):.2f} / {num(r, 'open_p99'):.2f} (the baseline)" if num(r, "open_p50") is not None else "—"
        fe = f"{num(r, 'first_event'):.2f} (the baseline)" if num(r, "first_event") is not None else "—"
        out_lines.append(f"| direct (no gateway: the load side alone) | — | {f0(num(r, 'rps'))} | — | — | {op} | {fe} |")
        continue
    if r["open_note"].startswith("not run"):
        op = r["open_note"]
    elif num(r, "open_p50") is None:
        op = "—"
    else:
        op = f"{added(r, 'open_p50'):+.2f} / {added(r, 'open_p99'):+.2f}"
        if r["open_note"]:
            op += f" ({r['open_note']}: served ≈ {f0(num(r, 'open_achieved'))} req/s)"
        elif num(r, "open_errors"):
            op += f" ({r['open_errors']} errors)"
    fe = added(r, "first_event")
    fe = "—" if fe is None else f"{fe:+.2f}"
    out_lines.append(f"| {s} | **{f0(cpu)}** | **{f0(num(r, 'rps'))}** | "
        f"{'—' if util is None else f'{util:.0f}%'} | {'—' if rss is None else f'{rss:.1f}'} | {op} | {fe} |")
out_lines.append("")

t = by.get("TokenRoute")
floor = [by.get(s) for s in ("nginx", "Pingora (no logic)")]
if t and t["status"] == "ok" and all(f and f["status"] == "ok" and num(f, "cpu_us") for f in floor):
    n, p, tc = num(floor[0], "cpu_us"), num(floor[1], "cpu_us"), num(t, "cpu_us")
    out_lines.append(f"**CPU per request against the floors:** Pingora with no logic {p / n:.1f}× nginx; TokenRoute "
        f"{tc / n:.1f}× nginx and {tc / p:.1f}× Pingora with no logic — of TokenRoute's {tc:.0f} µs, {p:.0f} are "
        f"the framework's floor and {tc - p:.0f} its own path (key check, reservation, routing, metering, usage writer).")
    out_lines.append("")
ratios = []
if t and t["status"] == "ok" and num(t, "cpu_us"):
    for s in ("LiteLLM", "Portkey", "TensorZero"):
        p = by.get(s)
        if p and p["status"] == "ok" and num(p, "cpu_us"):
            ratios.append((s, num(p, "cpu_us") / num(t, "cpu_us"), num(t, "rps") / num(p, "rps")))
if ratios:
    cpu_part = " / ".join(f"{s}" for s, _, _ in ratios)
    out_lines.append(f"**TokenRoute uses {' / '.join(f'{c:.1f}×' for _, c, _ in ratios)} less CPU per request "
        f"than {cpu_part}; {' / '.join(f'{x:.1f}×' for _, _, x in ratios)} {'their' if len(ratios) > 1 else 'its'} saturation rate** "
        "(same run, same machine, same fake provider).")
    out_lines.append("")
    if num(t, "cpu_util") is not None and num(t, "cpu_util") < 90:
        out_lines.append(f"TokenRoute used {num(t, 'cpu_util'):.0f}% of its core at saturation: something other than "
            f"its CPU bounded its rate (wrk and the fake provider on CPU {lcpus}, the disk's fsync under its usage spool, "
            "or other processes: see the noise column below), so the ratio of rates understates it; the CPU per request "
            "is the fairer ratio.")
        out_lines.append("")

out_lines += ["How each figure is taken:", "",
    f"- **CPU µs per request**: utime + stime of the gateway's whole process tree (`/proc/PID/stat` of "
    f"it and its descendants) over the measured wrk run, divided by the requests wrk completed. "
    f"**Saturation**: wrk, 1 thread, {conns} connections, closed loop, {secs} s after {warm} s of warm-up. "
    "**CPU use**: the same CPU time as a share of one core. **Peak RSS**: VmHWM of the tree, summed, at the end.",
    f"- **Added p50 / p99**: `load-curve` (open loop, latency from each request's scheduled time, "
    f"{oconns} connections, 1 s warm-up) at {rate} req/s for {secs} s, minus the direct hop's. A system "
    "slower than the rate falls behind: its latencies are then queueing, and it served the scheduled "
    "requests over the longer time shown.",
    f"- **Added first event**: `stream-probe`, {runs} streams (after 2 unmeasured), each on a new "
    f"connection, {events} events {gap} ms apart with `stream_options.include_usage`; median time to the first complete SSE "
    "event, minus the direct hop's.", "",
    "| system | wrk p50 / p99 ms | wrk errors | open loop: p50 / p99 ms, errors, seconds taken | TTFB / first event ms (p50) | usage in the stream | other processes, % of a core (load / streams) |",
    "|---|---:|---:|---:|---:|:---:|---:|"]
flag = False
for r in rows:
    if r["status"] != "ok":
        continue
    o = num(r, "other") or 0
    so = num(r, "stream_other")
    flag = flag or o > noise or (so is not None and so > noise)
    openl = "—" if num(r, "open_p50") is None else f"{num(r, 'open_p50'):.2f} / {num(r, 'open_p99'):.2f}, {r['open_errors']}, {r['open_secs']} s"
    st = "—" if num(r, "first_event") is None else f"{num(r, 'ttfb'):.2f} / {num(r, 'first_event'):.2f}"
    out_lines.append(f"| {r['system']} | {r['wrk_p50']} / {r['wrk_p99']} | {r['errors']} | {openl} | {st} | {r['stream_usage'] or '—'} | "
        f"{r['other']} / {r['stream_other'] or '—'} |")
out_lines.append("")
if flag:
    out_lines += [f"**Disturbed:** other processes (or steal) took more than {noise}% of a core during "
        "at least one measured run above; compare with care.", ""]
out_lines += ["For reference, the issue's table (measured elsewhere, with oha): nginx 23 µs per request; "
    "Helicone 540–630 µs; TensorZero 440–520 µs; Portkey 1,330 µs (≈ 740 req/s, +1.3 / +69.5 ms at 500 req/s, "
    "+27.7 ms first event); LiteLLM (1 worker, no DB) 11,600 µs (≈ 86 req/s, > 1 s, +184 ms first event).", ""]
open(out, "w").write("\n".join(out_lines))
EOF
log "wrote $OUT"
cat "$OUT"
}
