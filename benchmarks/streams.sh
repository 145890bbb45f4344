#!/usr/bin/env bash
# What an open stream costs TokenRoute in memory, measured: N streamed chat completions
# held open at once through `tokenroute proxy` (embedded SQLite store, one data-plane
# thread) to a fake provider sending one event a second, for each N in BENCH_STREAMS.
# Reports the proxy's resident memory with nothing open and with N open, and what each
# open stream adds; then the same through Pingora with no logic (`pingora-floor`), the
# floor any proxy built on Pingora holds per stream.
#
#   benchmarks/streams.sh
#
# Writes benchmarks/results/streams-<date>.md (-2, -3, … for later runs the same day).
# Each stream holds two sockets in the proxy (client and provider), so N is bounded by
# the open-file limit (`ulimit -n`).
{
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_STREAMS=${BENCH_STREAMS:-"1000 9000"}
BENCH_SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
BENCH_FLOOR=${BENCH_FLOOR:-1} # 1: the same streams through Pingora with no logic (pingora-floor), after TokenRoute
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tokenroute-target}

NAME=streams
. "$ROOT/benchmarks/lib.sh"
need curl taskset python3
LIMIT=$(ulimit -n)
for n in $BENCH_STREAMS; do
    ((2 * n + 200 <= LIMIT)) || die "$n streams need $((2 * n + 200)) open files in the proxy; ulimit -n is $LIMIT"
done

workspace
sockets() { find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l; }

bins tokenroute fake-upstream open-streams pingora-floor
# CPU 0: the proxy; CPU 1: the fake provider and the clients.
start_fake_upstream 1 --stream-events 300 --event-gap-ms 1000
BODY='{"model":"bench/gpt-4o-mini","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"Count slowly."}]}'

# measure SYSTEM PID PORT KEY: holds each N of BENCH_STREAMS open through the proxy at
# PID (listening on PORT), one N after the other, and adds a row per N to ROWS.
measure() {
    local system=$1 pid=$2 port=$3 key=$4 base n client ready rss socks opened failed secs per
    # Warm up: a few whole requests, so that what is measured is what streams add.
    for _ in $(seq 1 20); do
        curl -s -o /dev/null -H "authorization: Bearer $key" -H 'content-type: application/json' \
            -d '{"model":"bench/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' \
            "http://127.0.0.1:$port/v1/chat/completions"
    done
    sleep 2
    base=$(rss_kib "$pid")
    log "$system at rest: $((base / 1024)) MiB"
    for n in $BENCH_STREAMS; do
        log "$system: $n streams"
        (exec taskset -c 1 "$BIN/open-streams" --addr "127.0.0.1:$port" ${key:+--key "$key"} --body "$BODY" \
            --streams "$n" >"$WORK/open-$system-$n.out" 2>"$WORK/open-$system-$n.log") &
        client=$!
        PIDS+=("$client")
        for _ in $(seq 1 1800); do
            grep -q '^ready=' "$WORK/open-$system-$n.out" && break
            sleep 0.1
        done
        ready=$(grep '^ready=' "$WORK/open-$system-$n.out") || die "open-streams did not report"
        sleep 2
        rss=$(rss_kib "$pid")
        socks=$(sockets "$pid")
        opened=$(sed 's/.*ready=\([0-9]*\).*/\1/' <<<"$ready")
        failed=$(sed 's/.*failed=\([0-9]*\).*/\1/' <<<"$ready")
        secs=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$ready")
        per=$(python3 -c "print(f'{($rss - $base) / max($opened, 1):.1f}')")
        log "$opened open ($failed failed) in $secs s: RSS $((rss / 1024)) MiB, $per KiB per stream, $socks sockets"
        ROWS+="| $system | $n | $opened | $failed | $secs | $socks | $(python3 -c "print(f'{$base / 1024:.1f}')") | $(python3 -c "print(f'{$rss / 1024:.1f}')") | **$per** |"$'\n'
        kill "$client" 2>/dev/null || true
        wait "$client" 2>/dev/null || true
        # Let the proxy see the clients go and close its provider connections.
        for _ in $(seq 1 100); do
            (($(sockets "$pid") < 100)) && break
            sleep 0.2
        done
        sleep 1
    done
    AFTER[$system]=$(rss_kib "$pid")
}
ROWS=""
declare -A AFTER

PORT=$(free_port)
bench_config "$WORK/tokenroute.toml" "$PORT" "sqlite://$WORK/tokenroute.db" "$WORK" </dev/null
KEY=$(bench_key "$WORK/tokenroute.toml")
(exec taskset -c 0 "$BIN/tokenroute" --config "$WORK/tokenroute.toml" proxy >"$WORK/proxy.log" 2>&1) &
PID=$!
PIDS+=("$PID")
wait_port "$PORT"
measure TokenRoute "$PID" "$PORT" "$KEY"
kill "$PID"
wait "$PID" 2>/dev/null || true

if [[ $BENCH_FLOOR == 1 ]]; then
    PORT=$(free_port)
    (exec taskset -c 0 "$BIN/pingora-floor" --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$UP_PORT" \
        >"$WORK/floor.log" 2>&1) &
    PID=$!
    PIDS+=("$PID")
    wait_port "$PORT"
    measure "Pingora (no logic)" "$PID" "$PORT" ""
fi

DATE=$(date -u +%Y-%m-%d)
OUT="$(result_stem streams).md"
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
FLOOR_TEXT=""
if [[ $BENCH_FLOOR == 1 ]]; then
    FLOOR_TEXT=", then, for the same streams, \`pingora-floor\` (Pingora 0.9's
proxy with no logic, run as TokenRoute runs it: one thread, no read buffer under
plain-text clients, mimalloc): the floor any Pingora-based proxy holds per stream"
fi
cat >"$OUT" <<EOF
# Open streams: memory per stream — $DATE

\`benchmarks/streams.sh\` (BENCH_STREAMS="$BENCH_STREAMS") at commit \`$COMMIT\`, $(date -u '+%H:%M UTC'),
on $(machine), open-file limit $LIMIT.

\`tokenroute proxy\` with one data-plane thread on CPU 0 (embedded SQLite store, usage
written as streams end)$FLOOR_TEXT;
a fake OpenAI-compatible provider sending one \`chat.completion.chunk\` a second for
300 s, and the clients (\`open-streams\`: one HTTP/1.1 connection per stream, at most
2,000 new a second), on CPU 1. A stream counts as open when its client has the first
event. Memory is the proxy's resident set (VmRSS) 2 s after the last stream opened,
against its resident set at rest after 20 warm-up requests; each stream holds a client
socket and a provider socket.

| proxy | streams asked | open | failed | seconds to open | proxy sockets | RSS at rest MiB | RSS MiB | KiB per open stream |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
$ROWS
After its last run, with every stream closed, TokenRoute held $((${AFTER[TokenRoute]} / 1024)) MiB
resident (the allocator keeps some of what the streams used).
EOF
log "wrote $OUT"
cat "$OUT"
}
