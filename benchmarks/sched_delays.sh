#!/usr/bin/env bash
# How long the data plane waits for its core, before and after, in one run: TokenRoute
# built at two revisions, each with its own SQLite store and `usage.fsync =
# "periodic"`, both proxies and the fake provider on CPU 0, `load-curve` at a fixed
# rate (open loop) on CPU 1, rounds alternating. In each round `perf sched record`
# traces the machine for BENCH_SCHED_TRACE_SECS in the middle of the load, and
# `sched_delays.py` reads the data-plane thread's scheduling delays (runnable, not
# running) out of the trace, which threads held CPU 0 during those over 0.3 ms, and
# the longest runs of the usage writer's threads.
#
# The client's p99 on a shared VM is mostly the machine's; these delays are what the
# proxy's own threads cost its data plane, and they compare across revisions when the
# client's latency cannot.
#
#   benchmarks/sched_delays.sh BASE [AFTER]     # AFTER defaults to HEAD
#
# Needs perf (Debian's linux-perf) and the right to trace the scheduler (root, or
# kernel.perf_event_paranoid at -1). Writes
# benchmarks/results/sched-<date>-<base>-<after>.md.
{
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${1:?usage: benchmarks/sched_delays.sh BASE [AFTER]}
AFTER=${2:-HEAD}
BENCH_ROUNDS=${BENCH_ROUNDS:-4}
BENCH_SCHED_RATE=${BENCH_SCHED_RATE:-3000}      # req/s, open loop
BENCH_SCHED_LOAD_SECS=${BENCH_SCHED_LOAD_SECS:-8} # load per round and revision
BENCH_SCHED_TRACE_SECS=${BENCH_SCHED_TRACE_SECS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tokenroute-target}

NAME=sched
. "$ROOT/benchmarks/lib.sh"
need perf taskset python3 git
((BENCH_SCHED_LOAD_SECS >= BENCH_SCHED_TRACE_SECS + 3)) ||
    die "BENCH_SCHED_LOAD_SECS must leave 2 s before the trace and 1 s after it"

workspace
tidy() { remove_rev_checkouts; }

build_base_and_after "$BASE" "$AFTER"
BENCH_SKIP_BUILD=0 bins fake-upstream load-curve
start_fake_upstream 0
perf sched record -o "$WORK/probe.data" -- true >/dev/null 2>&1 ||
    die "perf cannot trace the scheduler here (run as root, or sysctl kernel.perf_event_paranoid=-1)"

BODY='{"model":"bench/gpt-4o-mini","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}'
declare -A PORT PID KEY
for name in base after; do
    PORT[$name]=$(free_port)
    mkdir -p "$WORK/run-$name"
    bench_config "$WORK/run-$name/t.toml" "${PORT[$name]}" "sqlite://$WORK/run-$name/t.db" \
        "$WORK/run-$name" 'fsync = "periodic"' </dev/null
    KEY[$name]=$(BIN=$WORK/$name bench_key "$WORK/run-$name/t.toml")
    (exec taskset -c 0 "$WORK/$name/tokenroute" --config "$WORK/run-$name/t.toml" proxy \
        >"$WORK/$name.log" 2>&1) &
    PID[$name]=$!
    PIDS+=("${PID[$name]}")
    wait_port "${PORT[$name]}"
done

# The data-plane thread of proxy $1 (named by Pingora's server after the service).
data_plane() {
    local t
    for t in /proc/"$1"/task/*; do
        [[ $(cat "$t/comm") == "TokenRoute data" ]] && { basename "$t"; return; }
    done
    die "no data-plane thread in process $1"
}

load() { # load NAME SECS -> load-curve's line
    taskset -c 1 "$BIN/load-curve" --addr "127.0.0.1:${PORT[$1]}" --path /v1/chat/completions \
        --key "${KEY[$1]}" --body "$BODY" --rates "$BENCH_SCHED_RATE" --duration-secs "$2" \
        --connections 64 2>/dev/null
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
for name in base after; do load "$name" 2 >/dev/null; done # warm: keys cached, writer connected
for round in $(seq 1 "$BENCH_ROUNDS"); do
    order=(base after)
    ((round % 2 == 0)) && order=(after base)
    for name in "${order[@]}"; do
        load "$name" "$BENCH_SCHED_LOAD_SECS" >"$WORK/load.out" &
        loader=$!
        sleep 2
        perf sched record -a -o "$WORK/sched.data" -- sleep "$BENCH_SCHED_TRACE_SECS" >/dev/null 2>&1
        wait "$loader"
        client=$(sed -n 's/.*\(p50=[0-9.]*\) p90=[0-9.]* \(p99=[0-9.]*\).*/\1 \2/p' "$WORK/load.out")
        tid=$(data_plane "${PID[$name]}")
        trace=$(perf sched timehist -i "$WORK/sched.data" 2>/dev/null |
            python3 "$ROOT/benchmarks/sched_delays.py" "$tid" 0)
        log "round $round, $name: client $client; data plane $trace"
        printf '%s\t%s\t%s %s\n' "$round" "$name" "$client" "$trace" >>"$RESULTS"
    done
done

DATE=$(date -u +%Y-%m-%d)
OUT="$ROOT/benchmarks/results/sched-$DATE-$BASE_SHORT-$AFTER_SHORT.md"
python3 - "$RESULTS" "$OUT" "$DATE" "$BASE_SHORT" "$AFTER_SHORT" "$(machine)" \
    "$BENCH_SCHED_RATE" "$BENCH_SCHED_LOAD_SECS" "$BENCH_SCHED_TRACE_SECS" <<'EOF'
import sys
tsv, out, date, base, after, machine, rate, load_secs, trace_secs = sys.argv[1:]
rows = []
for line in open(tsv).read().splitlines():
    rnd, name, fields = line.split("\t")
    kv = dict(f.split("=", 1) for f in fields.split())
    rows.append((int(rnd), name, kv))
cols = [("over_1ms", "delays > 1 ms"), ("over_0.3ms", "delays > 0.3 ms"),
        ("sum_over_0.3ms", "sum of those, ms"), ("p999_ms", "p99.9 delay ms"),
        ("max_ms", "longest delay ms"), ("tokenroute-usag_10th_longest_ms", "writer thread's 10th-longest run ms"),
        ("sqlx-sqlite-wor_10th_longest_ms", "SQLite threads' 10th-longest run ms"),
        ("p50", "client p50 ms"), ("p99", "client p99 ms")]
lines = [f"# The data plane's waits for its core — {date}", "",
    f"`benchmarks/sched_delays.sh {base} {after}` on {machine}. Two builds side by side, "
    f"each its own SQLite store, `usage.fsync = \"periodic\"`; both proxies and the fake provider on CPU 0, "
    f"`load-curve` at {rate} req/s open loop on CPU 1, {load_secs} s per round and build, rounds alternating; "
    f"`perf sched` traced {trace_secs} s in the middle of each. A delay is the time the data-plane thread "
    f"was runnable and not running.", "",
    "| round | build | " + " | ".join(c[1] for c in cols) + " | CPU 0 held during its delays > 0.3 ms (ms) |",
    "|---:|---|" + "---:|" * len(cols) + "---|"]
for rnd, name, kv in rows:
    label = f"{name} `{base if name == 'base' else after}`"
    lines.append(f"| {rnd} | {label} | " + " | ".join(kv.get(c[0], "—") for c in cols)
        + f" | {kv.get('held_by', '').replace(',', ', ')} |")
def median(name, key):
    vals = sorted(float(kv[key]) for _, n, kv in rows if n == name and key in kv)
    return vals[len(vals) // 2] if vals else float("nan")
lines += ["", "Medians over the rounds (base → after):", ""]
for key, label in cols:
    lines.append(f"- {label}: {median('base', key):g} → {median('after', key):g}")
fewer = sum(1 for r in {r for r, _, _ in rows}
    if float(next(kv for rr, n, kv in rows if rr == r and n == "after")["over_1ms"])
    < float(next(kv for rr, n, kv in rows if rr == r and n == "base")["over_1ms"]))
lines.append(f"- rounds where the data plane waited over 1 ms less often after: {fewer} of {len({r for r, _, _ in rows})}")
open(out, "w").write("\n".join(lines) + "\n")
EOF
log "wrote $OUT"
cat "$OUT"
}
