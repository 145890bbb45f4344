"""Reads `perf sched timehist` output (stdin) and summarises, for one thread (the data
plane), how long it waited runnable before it ran (its scheduling delays), and which
threads held its CPU during the delays over 0.3 ms; and the longest runs of the usage
writer's threads. One line of `key=value` fields on stdout, read by sched_delays.sh.

    perf sched timehist -i perf.data | python3 sched_delays.py DATA_PLANE_TID CPU
"""

import collections
import re
import sys

LONG_MS = 0.3
WRITERS = ("tokenroute-usag", "sqlx-sqlite-wor", "tokenroute-prez")


def main():
    tid, cpu = sys.argv[1], f"[{int(sys.argv[2]):04d}]"
    runs = []  # (end time s, cpu, thread name, delay ms, run ms)
    for line in sys.stdin:
        fields = line.split()
        if len(fields) < 6 or not fields[0][0].isdigit():
            continue
        try:
            end = float(fields[0])
            wait_delay_run = [float(f) for f in fields[-3:]]
        except ValueError:
            continue
        runs.append((end, fields[1], " ".join(fields[2:-3]), wait_delay_run[1], wait_delay_run[2]))
    ours = [r for r in runs if f"[{tid}/" in r[2]]
    delays = sorted(r[3] for r in ours)
    if not delays:
        print("runs=0")
        return
    n = len(delays)

    def pct(p):
        return delays[min(n - 1, int(p * n))]

    # Who ran on the data plane's CPU while it waited (over LONG_MS).
    held = collections.Counter()
    on_cpu = [r for r in runs if r[1] == cpu]
    for end, _, _, delay, run in ours:
        if delay <= LONG_MS:
            continue
        start, stop = end - (run + delay) / 1000, end - run / 1000
        for other_end, _, name, _, other_run in on_cpu:
            overlap = min(other_end, stop) - max(other_end - other_run / 1000, start)
            if overlap > 0:
                held[re.sub(r"\[.*", "", name)] += overlap * 1000
    fields = {
        "runs": n,
        "p99_ms": f"{pct(0.99):.3f}",
        "p999_ms": f"{pct(0.999):.3f}",
        "max_ms": f"{delays[-1]:.3f}",
        "over_0.3ms": sum(d > 0.3 for d in delays),
        "over_1ms": sum(d > 1 for d in delays),
        "sum_over_0.3ms": f"{sum(d for d in delays if d > 0.3):.1f}",
        "held_by": ",".join(f"{k.replace(' ', '_')}:{v:.1f}" for k, v in held.most_common(4)),
    }
    for writer in WRITERS:
        longest = sorted((r[4] for r in runs if r[2].startswith(writer)), reverse=True)
        fields[f"{writer}_10th_longest_ms"] = f"{longest[9] if len(longest) > 9 else 0:.3f}"
    print(" ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
