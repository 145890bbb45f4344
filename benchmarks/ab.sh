#!/usr/bin/env bash
# Before and after, in one run: TokenRoute built at two revisions, measured in
# alternating rounds under the same load (wrk, closed loop, non-streaming chat; then
# streamed answers one after another, as a client calling now and then does; then
# open loop at a fixed rate), so that a change's effect is not mistaken for the
# machine's mood.
#
#   benchmarks/ab.sh BASE [AFTER]     # AFTER defaults to HEAD (commit what you measure)
#
# Per round and revision: requests/s, the proxy's CPU milliseconds per request
# (utime + stime from /proc), the streams' time to the first event (median), and the
# p50 / p99 latency at BENCH_AB_RATE requests/s, open loop (load-curve); and whether the
# usage writer kept up with wrk: the events not yet in the store when wrk stops
# (tokenroute_usage_spool_pending_events) and how long they take to get there.
# Writes benchmarks/results/ab-<date>-<base>-<after>.md.
{
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${1:?usage: benchmarks/ab.sh BASE [AFTER]}
AFTER=${2:-HEAD}
BENCH_ROUNDS=${BENCH_ROUNDS:-5}
BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-32}
BENCH_AB_STREAMS=${BENCH_AB_STREAMS:-15} # streams per round (200 events 5 ms apart; 0: none)
BENCH_AB_RATE=${BENCH_AB_RATE:-3000}     # open-loop rate per round, req/s (0: none)
BENCH_AB_RATE_SECS=${BENCH_AB_RATE_SECS:-8}
BENCH_AB_USAGE=${BENCH_AB_USAGE:-}       # [usage] lines for both, e.g. 'fsync = "periodic"'
BENCH_AB_TAG=${BENCH_AB_TAG:-}           # appended to the result's file name
BENCH_AB_ANSWER_TOKENS=${BENCH_AB_ANSWER_TOKENS:-0} # tokens in each whole answer (0: 8, 626 bytes)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tokenroute-target}

NAME=ab
. "$ROOT/benchmarks/lib.sh"
need wrk taskset python3 git curl

workspace
tidy() { remove_rev_checkouts; }

build_base_and_after "$BASE" "$AFTER"
BENCH_SKIP_BUILD=0 bins fake-upstream stream-probe load-curve
start_fake_upstream 0 --stream-events 200 --event-gap-ms 5
SPACED_PORT=$UP_PORT
start_fake_upstream 0 --answer-tokens "$BENCH_AB_ANSWER_TOKENS"

# The usage the proxy on metrics port $1 has not yet committed to its store.
pending_usage() {
    curl -s "http://127.0.0.1:$1/metrics" | awk '/^tokenroute_usage_spool_pending_events / { print $2 }'
}

run() { # run NAME ROUND -> "req/s cpu_ms_per_request first_event_ms p50_ms p99_ms backlog drain_s"
    local name=$1 round=$2 port dir metrics_port
    port=$(free_port)
    metrics_port=$(free_port)
    dir=$WORK/run-$name-$round
    mkdir -p "$dir"
    bench_config "$dir/t.toml" "$port" "sqlite://$dir/t.db" "$dir" "$BENCH_AB_USAGE" </dev/null
    sed -i "s/^enabled = false$/enabled = true\nlisten = \"127.0.0.1:$metrics_port\"/" "$dir/t.toml"
    bench_model "$dir/t.toml" spaced "$SPACED_PORT"
    local key pid t0 t1 out
    key=$(BIN=$WORK/$name bench_key "$dir/t.toml")
    (exec taskset -c 0 "$WORK/$name/tokenroute" --config "$dir/t.toml" proxy >"$WORK/$name-$round.log" 2>&1) &
    pid=$!
    wait_port "$port"
    local url="http://127.0.0.1:$port/v1/chat/completions"
    BENCH_AUTH=$key taskset -c 1 wrk -t1 -c"$BENCH_CONNECTIONS" -d2s -s "$ROOT/benchmarks/wrk/post.lua" "$url" >/dev/null
    t0=$(ticks "$pid")
    out=$(BENCH_AUTH=$key taskset -c 1 wrk -t1 -c"$BENCH_CONNECTIONS" -d"${BENCH_DURATION}s" \
        -s "$ROOT/benchmarks/wrk/post.lua" "$url" | grep '^WRK ')
    t1=$(ticks "$pid")
    local backlog drained_at drain
    backlog=$(pending_usage "$metrics_port")
    [ -n "$backlog" ] || die "$name serves no tokenroute_usage_spool_pending_events on port $metrics_port"
    drained_at=$(date +%s.%N)
    for _ in $(seq 1 2400); do # 2 min at most
        [ "$(pending_usage "$metrics_port")" = 0 ] && break
        sleep 0.05
    done
    [ "$(pending_usage "$metrics_port")" = 0 ] || die "$name kept usage uncommitted for 2 minutes after wrk"
    drain=$(python3 -c "import time; print(f'{time.time() - $drained_at:.2f}')")
    ((backlog == 0)) && drain=0
    local first_event=—
    if ((BENCH_AB_STREAMS > 0)); then
        first_event=$(taskset -c 1 "$BIN/stream-probe" --url "$url" --key "$key" --runs "$BENCH_AB_STREAMS" --warmup 1 \
            --body '{"model":"spaced/gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}' \
            2>/dev/null | sed -n 's/.*first_event_ms_p50=\([0-9.]*\).*/\1/p')
    fi
    local p50=— p99=—
    if ((BENCH_AB_RATE > 0)); then
        local line
        line=$(taskset -c 1 "$BIN/load-curve" --addr "127.0.0.1:$port" --path /v1/chat/completions \
            --key "$key" --body '{"model":"bench/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' \
            --rates "$BENCH_AB_RATE" --duration-secs "$BENCH_AB_RATE_SECS" --connections 64 2>/dev/null | tail -n 1)
        p50=$(sed -n 's/.* p50=\([0-9.]*\).*/\1/p' <<<"$line")
        p99=$(sed -n 's/.* p99=\([0-9.]*\).*/\1/p' <<<"$line")
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local requests
    requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$out")
    python3 -c "import os; hz=os.sysconf('SC_CLK_TCK'); r=$requests; print(f'{r/$BENCH_DURATION:.0f} {($t1-$t0)/hz*1000/max(r,1):.4f} ${first_event:-—} ${p50:-—} ${p99:-—} $backlog $drain')"
}

RESULTS=$WORK/results.tsv
for round in $(seq 1 "$BENCH_ROUNDS"); do
    # Alternate which goes first, so neither always runs on a warmer machine.
    order=(base after)
    ((round % 2 == 0)) && order=(after base)
    for name in "${order[@]}"; do
        read -r rps cpu first p50 p99 backlog drain <<<"$(run "$name" "$round")"
        log "round $round $name: $rps req/s, $cpu ms CPU per request, $backlog events left to store (in $drain s), first event $first ms, p50 / p99 $p50 / $p99 ms at $BENCH_AB_RATE req/s"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$cpu" "$first" "$p50" "$p99" "$backlog" "$drain" >>"$RESULTS"
    done
done

DATE=$(date -u +%Y-%m-%d)
OUT="$ROOT/benchmarks/results/ab-$DATE-$BASE_SHORT-$AFTER_SHORT${BENCH_AB_TAG:+-$BENCH_AB_TAG}.md"
python3 - "$RESULTS" "$OUT" "$DATE" "$BASE_SHORT" "$AFTER_SHORT" "$(machine)" \
    "$BENCH_DURATION" "$BENCH_CONNECTIONS" "$BENCH_AB_STREAMS" "$BENCH_AB_RATE" "$BENCH_AB_RATE_SECS" \
    "$BENCH_AB_USAGE" "$BENCH_AB_ANSWER_TOKENS" <<'EOF'
import statistics, sys
tsv, out, date, base, after, machine, secs, conns, streams, rate, rate_secs, usage, answer_tokens = sys.argv[1:]
rows = [l.split("\t") for l in open(tsv).read().splitlines()]
by = {"base": [], "after": []}
for r in rows:
    by[r[1]].append((float(r[2]), float(r[3])))
med = {k: (statistics.median(v[0] for v in vs), statistics.median(v[1] for v in vs)) for k, vs in by.items()}
lines = [f"# Before and after — {date}", "",
    f"`benchmarks/ab.sh {base}` — base `{base}`, after `{after}`; {machine}. "
    f"Each round runs both builds in turn (alternating which goes first): `tokenroute proxy` "
    f"with one data-plane thread and an embedded SQLite store"
    + (f" (`[usage]` {', '.join(f'`{l.strip()}`' for l in usage.splitlines() if l.strip())})" if usage.strip() else "")
    + f", and a fast fake provider"
    + (f" (each whole answer {answer_tokens} tokens, `--answer-tokens`)" if answer_tokens != "0" else "")
    + f", on "
    f"CPU 0; wrk (1 thread, {conns} connections, {secs} s after 2 s of warm-up, small "
    f"non-streaming chat requests) on CPU 1. CPU per request is the proxy's utime + stime. "
    f"When wrk stops, the usage events not yet committed to the store (the usage writer's "
    f"backlog) and the seconds until they are. "
    f"Then {streams} streamed chat completions one after another, each on a new connection "
    f"(200 events 5 ms apart from a second fake, so each stream lasts about 1.2 s: a client "
    f"calling now and then), timed by `stream-probe`: the median time to the first event. "
    f"Then open loop (`load-curve`, 64 connections, {rate_secs} s after 1 s of warm-up) at "
    f"{rate} requests/s: p50 and p99 latency from each request's scheduled time.",
    "", "| round | base req/s | after req/s | base CPU ms/req | after CPU ms/req | base backlog (drain s) | after backlog (drain s) "
    "| base first event ms | after first event ms "
    f"| base p50 / p99 ms @{rate} | after p50 / p99 ms @{rate} |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
rounds = sorted({int(r[0]) for r in rows})
for n in rounds:
    b = [r for r in rows if int(r[0]) == n and r[1] == "base"][0]
    a = [r for r in rows if int(r[0]) == n and r[1] == "after"][0]
    lines.append(f"| {n} | {b[2]} | {a[2]} | {b[3]} | {a[3]} | {b[7]} ({b[8]}) | {a[7]} ({a[8]}) "
        f"| {b[4]} | {a[4]} | {b[5]} / {b[6]} | {a[5]} / {a[6]} |")
(brps, bcpu), (arps, acpu) = med["base"], med["after"]
def median_of(name, column):
    values = [float(r[column]) for r in rows if r[1] == name and r[column] not in ("", "—")]
    return statistics.median(values) if values else None
bfe, afe = median_of("base", 4), median_of("after", 4)
b50, a50, b99, a99 = median_of("base", 5), median_of("after", 5), median_of("base", 6), median_of("after", 6)
max_of = lambda name, column: max(float(r[column]) for r in rows if r[1] == name)
fe = lambda v: "—" if v is None else f"{v:.2f}"
lines += [f"| **median** | **{brps:.0f}** | **{arps:.0f}** | **{bcpu:.4f}** | **{acpu:.4f}** | | | **{fe(bfe)}** | **{fe(afe)}** "
    f"| **{fe(b50)} / {fe(b99)}** | **{fe(a50)} / {fe(a99)}** |", "",
    f"After / base: {arps / brps:.2f}× the requests per second, {acpu / bcpu:.2f}× the CPU per request"
    + (f", first event {afe - bfe:+.2f} ms" if bfe is not None and afe is not None else "")
    + (f", at {rate} req/s p50 {a50 - b50:+.2f} ms and p99 {a99 - b99:+.2f} ms" if None not in (b50, a50, b99, a99) else "")
    + f"; the writer's backlog when wrk stopped: at most {max_of('base', 7):.0f} events (base), "
    + f"{max_of('after', 7):.0f} (after), stored within {max_of('base', 8):.2f} / {max_of('after', 8):.2f} s."]
open(out, "w").write("\n".join(lines) + "\n")
EOF
log "wrote $OUT"
cat "$OUT"
}
