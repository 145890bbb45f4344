#!/usr/bin/env bash
# What an open stream costs TokenRoute in memory, measured: N streamed chat completions
# held open at once through `tokenroute proxy` (embedded SQLite store, one data-plane
# thread) to a fake provider sending one event a second, for each N in BENCH_STREAMS.
# Reports the proxy's resident memory with nothing open and with N open, and what each
# open stream adds.
#
#   benchmarks/streams.sh
#
# Writes benchmarks/results/streams-<date>.md. Each stream holds two sockets in the
# proxy (client and provider), so N is bounded by the open-file limit (`ulimit -n`).
{
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_STREAMS=${BENCH_STREAMS:-"1000 9000"}
BENCH_SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
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

bins tokenroute fake-upstream open-streams
# CPU 0: the proxy; CPU 1: the fake provider and the clients.
start_fake_upstream 1 --stream-events 300 --event-gap-ms 1000
PORT=$(free_port)
bench_config "$WORK/tokenroute.toml" "$PORT" "sqlite://$WORK/tokenroute.db" "$WORK" </dev/null
KEY=$(bench_key "$WORK/tokenroute.toml")
(exec taskset -c 0 "$BIN/tokenroute" --config "$WORK/tokenroute.toml" proxy >"$WORK/proxy.log" 2>&1) &
PID=$!
PIDS+=("$PID")
wait_port "$PORT"
BODY='{"model":"bench/gpt-4o-mini","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"Count slowly."}]}'

# Warm up: a few whole requests, so that what is measured is what streams add.
for _ in $(seq 1 20); do
    curl -s -o /dev/null -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
        -d '{"model":"bench/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' \
        "http://127.0.0.1:$PORT/v1/chat/completions"
done
sleep 2
BASE=$(rss_kib "$PID")
log "proxy at rest: $((BASE / 1024)) MiB"

ROWS=""
for n in $BENCH_STREAMS; do
    log "$n streams"
    (exec taskset -c 1 "$BIN/open-streams" --addr "127.0.0.1:$PORT" --key "$KEY" --body "$BODY" \
        --streams "$n" >"$WORK/open-$n.out" 2>"$WORK/open-$n.log") &
    CLIENT=$!
    PIDS+=("$CLIENT")
    for _ in $(seq 1 1800); do
        grep -q '^ready=' "$WORK/open-$n.out" && break
        sleep 0.1
    done
    READY_LINE=$(grep '^ready=' "$WORK/open-$n.out") || die "open-streams did not report"
    sleep 2
    RSS=$(rss_kib "$PID")
    SOCKS=$(sockets "$PID")
    OPENED=$(sed 's/.*ready=\([0-9]*\).*/\1/' <<<"$READY_LINE")
    FAILED=$(sed 's/.*failed=\([0-9]*\).*/\1/' <<<"$READY_LINE")
    SECS=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$READY_LINE")
    PER=$(python3 -c "print(f'{($RSS - $BASE) / max($OPENED, 1):.1f}')")
    log "$OPENED open ($FAILED failed) in $SECS s: proxy RSS $((RSS / 1024)) MiB, $PER KiB per stream, $SOCKS sockets"
    ROWS+="| $n | $OPENED | $FAILED | $SECS | $SOCKS | $(python3 -c "print(f'{$RSS / 1024:.1f}')") | **$PER** |"$'\n'
    kill "$CLIENT" 2>/dev/null || true
    wait "$CLIENT" 2>/dev/null || true
    # Let the proxy see the clients go and close its provider connections.
    for _ in $(seq 1 100); do
        (($(sockets "$PID") < 100)) && break
        sleep 0.2
    done
    sleep 1
done
AFTER=$(rss_kib "$PID")

DATE=$(date -u +%Y-%m-%d)
OUT="$ROOT/benchmarks/results/streams-$DATE.md"
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
cat >"$OUT" <<EOF
# Open streams: memory per stream — $DATE

\`benchmarks/streams.sh\` (BENCH_STREAMS="$BENCH_STREAMS") at commit \`$COMMIT\`, $(date -u '+%H:%M UTC'),
on $(machine), open-file limit $LIMIT.

\`tokenroute proxy\` with one data-plane thread on CPU 0 (embedded SQLite store, usage
written as streams end); a fake OpenAI-compatible provider sending one
\`chat.completion.chunk\` a second for 300 s, and the clients (\`open-streams\`: one
HTTP/1.1 connection per stream, at most 2,000 new a second), on CPU 1. A stream counts
as open when its client has the first event. Memory is the proxy's resident set
(VmRSS) 2 s after the last stream opened, against $((BASE / 1024)) MiB at rest after 20
warm-up requests; each stream holds a client socket and a provider socket.

| streams asked | open | failed | seconds to open | proxy sockets | proxy RSS MiB | KiB per open stream |
|---:|---:|---:|---:|---:|---:|---:|
$ROWS
After the last run, with every stream closed: $((AFTER / 1024)) MiB resident (the
allocator keeps some of what the streams used).
EOF
log "wrote $OUT"
cat "$OUT"
}
