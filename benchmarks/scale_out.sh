#!/usr/bin/env bash
# What a node of a fleet costs, measured: one `tokenroute proxy` on Postgres, first
# alone, then sharing state through Redis — the same load, one run, one machine.
# Reports per node: requests/s, latency, CPU seconds per 1,000 requests; per request:
# Redis commands, Redis CPU, Postgres transactions and rows written. docs/scale-out.md
# turns them into what a fleet needs.
#
#   benchmarks/scale_out.sh
#
# Writes benchmarks/results/scale-out-<date>.md (-2, -3… when the day has one already).
# Needs wrk, redis-server, redis-cli, psql and a Postgres at BENCH_PG (a scratch database is made and dropped).
{
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DURATION=${BENCH_DURATION:-15}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-32}
BENCH_WARMUP=${BENCH_WARMUP:-3}
BENCH_PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tokenroute-target}

NAME=scale-out
. "$ROOT/benchmarks/lib.sh"
need wrk redis-server redis-cli psql curl taskset

workspace
DB="tokenroute_bench_$$"
tidy() { psql "$BENCH_PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; }

bins tokenroute fake-upstream
# CPU 0: the node and the fake provider; CPU 1: wrk, Redis, Postgres.
start_fake_upstream 0
REDIS_PORT=$(free_port)
(exec taskset -c 1 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    >"$WORK/redis.log" 2>&1) &
PIDS+=($!)
REDIS_PID=$!
wait_port "$REDIS_PORT"
psql "$BENCH_PG" -qc "CREATE DATABASE $DB" >/dev/null
STORE="${BENCH_PG%/*}/$DB"

config() { # config NAME PORT [REDIS]
    echo "key-cache-ttl-ms = ${KEY_TTL:-1000}" |
        bench_config "$WORK/$1.toml" "$2" "$STORE" "$WORK/$1"
    if [[ ${3:-} == redis ]]; then
        printf '[redis]\nurl = "redis://127.0.0.1:%s"\n' "$REDIS_PORT" >>"$WORK/$1.toml"
    fi
}

config alone 0
KEY=$(bench_key "$WORK/alone.toml")
ID=$("$BIN/tokenroute" --config "$WORK/alone.toml" keys list --email bench@example.com 2>/dev/null \
    | tail -n 1 | cut -d' ' -f1)
# A rate limit high enough never to refuse, so that the limit's script work is measured.
"$BIN/tokenroute" --config "$WORK/alone.toml" keys set-limits "$ID" --rpm 100000000 \
    --tpm 100000000000 >/dev/null 2>&1
PLAIN=$(bench_key "$WORK/alone.toml" plain@example.com)
export BENCH_AUTH=$KEY

redis_stat() { # round trips (what nodes send: scripts, PUBLISH), all commands (scripts' inner calls included), used CPU seconds
    redis-cli -p "$REDIS_PORT" info commandstats | awk -F'[:=,]' '
        /^cmdstat_/ { all += $3 }
        /^cmdstat_(evalsha|eval|publish|script\|load):/ { trips += $3 }
        END { printf "%d %d ", trips, all }'
    redis-cli -p "$REDIS_PORT" info cpu | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.3f\n", s }'
}
pg_stat() { # transactions committed, rows inserted + updated
    psql "$STORE" -Atc "SELECT xact_commit, tup_inserted + tup_updated FROM pg_stat_database WHERE datname = '$DB'" | tr '|' ' '
}

ROWS=()
run() { # run NAME [redis] [key-cache-ttl]
    local name=$1 port
    port=$(free_port)
    KEY_TTL=${3:-1000} config "$name" "$port" "${2:-}"
    (exec taskset -c 0 "$BIN/tokenroute" --config "$WORK/$name.toml" proxy >"$WORK/$name.log" 2>&1) &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    local url="http://127.0.0.1:$port/v1/chat/completions"
    taskset -c 1 wrk -t1 -c"$BENCH_CONNECTIONS" -d"${BENCH_WARMUP}s" -s "$ROOT/benchmarks/wrk/post.lua" "$url" >/dev/null
    sleep 1
    local t0 r0 p0 out t1 r1 p1
    t0=$(ticks "$pid"); r0=$(redis_stat); p0=$(pg_stat)
    out=$(taskset -c 1 wrk -t1 -c"$BENCH_CONNECTIONS" -d"${BENCH_DURATION}s" --timeout 10s \
        -s "$ROOT/benchmarks/wrk/post.lua" "$url")
    sleep 2 # the writer commits what the run queued
    t1=$(ticks "$pid"); r1=$(redis_stat); p1=$(pg_stat)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local line
    line=$(grep '^WRK ' <<<"$out") || die "wrk: $out"
    ROWS+=("$(awk -v name="$name" -v line="$line" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
        -v r0="$r0" -v r1="$r1" -v p0="$p0" -v p1="$p1" -v dur="$BENCH_DURATION" 'BEGIN {
        n = split(line, f, /[ =]/); for (i = 2; i < n; i += 2) w[f[i]] = f[i + 1]
        req = w["requests"]; errs = w["err_status"] + w["err_connect"] + w["err_read"] + w["err_timeout"]
        split(r0, a, " "); split(r1, b, " "); split(p0, c, " "); split(p1, d, " ")
        printf "| %s | %.0f | %.2f / %.2f | %.3f | %.2f | %.1f | %.3f | %.3f | %.2f | %d |", name,
            req / (w["duration_us"] / 1e6), w["p50_us"] / 1000, w["p99_us"] / 1000,
            (t1 - t0) / hz / req * 1000, (b[1] - a[1]) / req, (b[2] - a[2]) / req,
            (b[3] - a[3]) / req * 1000, (d[1] - c[1]) / req, (d[2] - c[2]) / req, errs }')")
    redis-cli -p "$REDIS_PORT" info commandstats | grep -E '^cmdstat_(evalsha|eval):' >>"$WORK/redis-commandstats-$name.txt" || true
    log "${ROWS[-1]}"
}

log "node alone (no Redis)"
run alone
log "node sharing state in Redis (key cache 1 s)"
run shared redis
log "node sharing state in Redis (key cache 60 s: changes are broadcast)"
run shared-ttl60 redis 60000
log "the same, a key without rate limits"
BENCH_AUTH=$PLAIN run shared-ttl60-no-limits redis 60000

mkdir -p "$ROOT/benchmarks/results"
OUT="$(result_stem scale-out).md"
{
    echo "# Scale-out: one node's cost, alone and sharing state in Redis"
    echo
    echo "- Date: $(date -u '+%F %H:%M UTC'); commit $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet -- . ':!benchmarks/results' || echo ' (with uncommitted changes)')"
    echo "- Machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); Redis $(redis-server --version | awk '{ print $3 }'), $(psql --version | awk '{ print $1, $3 }')"
    echo "- Command: \`benchmarks/scale_out.sh\` (BENCH_DURATION=$BENCH_DURATION s, $BENCH_CONNECTIONS connections, ${BENCH_WARMUP} s warm-up)."
    echo "- Node and fake provider pinned to CPU 0; wrk, Redis and Postgres on CPU 1 (so Postgres and Redis compete with the load generator: latency tails there are this machine's, not the node's). Small non-streaming chat requests; a key with rate limits (requests and tokens per minute, so the windows' script work runs) except in the last row; usage written to Postgres."
    echo
    echo "| node | requests/s | p50 / p99 ms | node CPU s per 1k req | Redis round trips per req | Redis commands per req (inside scripts too) | Redis CPU s per 1k req | Postgres commits per req | Postgres rows written per req | errors |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Redis's own accounting of the scripts at the end of the run (cumulative):"
    echo
    echo '```'
    cat "$WORK"/redis-commandstats-shared-ttl60.txt 2>/dev/null || true
    echo '```'
} >"$OUT"
cat "$OUT"
log "wrote $OUT"
exit 0
}
