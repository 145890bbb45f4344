#!/usr/bin/env python3
"""Latency against offered load, as an SVG line plot (no dependencies).

    plot_curve.py CURVE.tsv OUT.svg "title"

CURVE.tsv: one line per measurement, tab-separated: system, offered rate (req/s),
p50 ms, p99 ms (a header line is skipped). Draws p50 (solid) and p99 (dashed) per
system on a logarithmic latency axis.
"""

import math
import sys

COLOURS = ["#1b6ac9", "#d1495b", "#2e933c", "#8f5db7", "#e08e0b"]
W, H = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 50


def main():
    src, out, title = sys.argv[1], sys.argv[2], sys.argv[3]
    series = {}
    with open(src) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4 or parts[0] == "system":
                continue
            try:
                rate, p50, p99 = float(parts[1]), float(parts[2]), float(parts[3])
            except ValueError:
                continue
            if math.isnan(p50) or math.isnan(p99):
                continue
            series.setdefault(parts[0], []).append((rate, p50, p99))
    points = [p for s in series.values() for p in s]
    if not points:
        sys.exit("no points to plot")
    x_max = max(p[0] for p in points)
    y_lo = min(min(p[1], p[2]) for p in points)
    y_hi = max(max(p[1], p[2]) for p in points)
    lo, hi = math.floor(math.log10(max(y_lo, 1e-3))), math.ceil(math.log10(y_hi))
    if hi == lo:
        hi += 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(v):
        return LEFT + pw * v / x_max

    def y(v):
        return TOP + ph * (hi - math.log10(max(v, 10.0**lo))) / (hi - lo)

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
    ]
    for e in range(lo, hi + 1):
        yy = y(10.0**e)
        svg.append(f'<line x1="{LEFT}" y1="{yy}" x2="{LEFT + pw}" y2="{yy}" stroke="#ddd"/>')
        label = f"{10.0**e:g} ms"
        svg.append(f'<text x="{LEFT - 6}" y="{yy + 4}" text-anchor="end">{label}</text>')
    steps = 5
    for i in range(steps + 1):
        v = x_max * i / steps
        xx = x(v)
        svg.append(f'<line x1="{xx}" y1="{TOP}" x2="{xx}" y2="{TOP + ph}" stroke="#eee"/>')
        svg.append(f'<text x="{xx}" y="{TOP + ph + 18}" text-anchor="middle">{v:.0f}</text>')
    svg.append(
        f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">offered load (requests/s)</text>'
    )
    svg.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        pts.sort()
        for idx, dash in ((1, ""), (2, ' stroke-dasharray="6 4"')):
            path = " ".join(f"{x(p[0]):.1f},{y(p[idx]):.1f}" for p in pts)
            svg.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
            )
            for p in pts:
                svg.append(f'<circle cx="{x(p[0]):.1f}" cy="{y(p[idx]):.1f}" r="2.5" fill="{colour}"/>')
        ly = TOP + 16 + i * 36
        lx = LEFT + pw + 14
        svg.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        svg.append(f'<text x="{lx + 30}" y="{ly + 4}">{name} p50</text>')
        svg.append(
            f'<line x1="{lx}" y1="{ly + 16}" x2="{lx + 24}" y2="{ly + 16}" stroke="{colour}" '
            'stroke-width="2" stroke-dasharray="6 4"/>'
        )
        svg.append(f'<text x="{lx + 30}" y="{ly + 20}">{name} p99</text>')
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
