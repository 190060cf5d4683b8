"""Turns bench/run.sh's results.tsv into the markdown table of docs/performance.md.

Usage: report.py RESULTS_TSV DURATION CLK_TCK
Columns: scenario target round units p99_ms cpu_ticks wall_s (g: units = bytes per tunnel).
"""
import statistics
import sys
from collections import defaultdict

NAMES = {
    "a": ("HTTP/1.1 keep-alive, 13 B body, wrk -c64", "req/s", "CPU µs/req"),
    "b": ("same over TLS 1.3", "req/s", "CPU µs/req"),
    "c": ("TLS 1.3, new connection per request, -c16", "handshakes/s", "CPU µs/handshake"),
    "d": ("HTTP/2 over TLS, h2load -c16 -m16", "req/s", "CPU µs/req"),
    "e": ("1 MiB responses, wrk -c16", "MiB/s", "CPU µs/MiB"),
    "f": ("WebSocket echo, 64 B, 64 conns", "msgs/s", "CPU µs/msg"),
    "g": ("idle WebSockets", "", "bytes RSS/tunnel"),
}
TARGETS = {"a": 0.7, "b": 0.7, "c": 0.6, "d": 0.7, "e": 0.8, "f": 0.8}


def main():
    path, duration, tck = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    rows = defaultdict(list)
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 7:
            continue
        s, t, _r, units, p99, ticks, wall = parts
        p99v = p99.replace("mean:", "")
        try:
            rows[(s, t)].append((float(units or 0), float(p99v or 0), float(ticks), float(wall)))
        except ValueError:
            continue
    print("| scenario | target | rate | p99 ms | CPU per unit | CPU vs nginx | CPU vs HAProxy | runs |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = []
    for s in "abcdefg":
        name, rate_unit, cpu_unit = NAMES[s]
        med = {}
        for t in ["direct", "portico", "nginx", "haproxy"]:
            runs = rows.get((s, t))
            if not runs:
                continue
            if s == "g":
                med[t] = (0, 0, statistics.median(r[0] for r in runs))
                continue
            rate = statistics.median(r[0] / duration for r in runs)
            p99 = statistics.median(r[1] for r in runs)
            cpu = statistics.median(r[2] * 1e6 / tck / r[0] for r in runs if r[0] > 0) if any(r[0] > 0 for r in runs) else 0
            med[t] = (rate, p99, cpu)
        for t, (rate, p99, cpu) in med.items():
            ratio = lambda peer: (f"{cpu / med[peer][2]:.2f}×" if t == "portico" and peer in med and med[peer][2] else "")
            if s == "g":
                print(f"| {s} {name} | {t} | | | {cpu:,.0f} {cpu_unit} | {ratio('nginx')} | {ratio('haproxy')} | 1 |")
            else:
                cpu_cell = f"{cpu:,.1f} {cpu_unit}" if t != "direct" else "(origin only)"
                p99_label = "mean " if s == "d" else ""
                print(f"| {s} {name} | {t} | {rate:,.0f} {rate_unit} | {p99_label}{p99:.2f} | {cpu_cell} | {ratio('nginx')} | {ratio('haproxy')} | {len(rows[(s, t)])} |")
        peers = [med[p] for p in ("nginx", "haproxy") if p in med]
        if "portico" in med and peers:
            if s == "g":
                ok = med["portico"][2] < 4096
                verdicts.append(f"- g: {med['portico'][2]:,.0f} B/tunnel, target < 4 KiB: {'met' if ok else 'not met'}")
                continue
            best_cpu = min(p[2] for p in peers if p[2] > 0)
            best_p99 = min(p[1] for p in peers)
            r = med["portico"][2] / best_cpu
            ok_cpu = r <= TARGETS[s]
            ok_p99 = med["portico"][1] <= best_p99
            extra = ""
            if s == "e":
                ok_tp = med["portico"][0] >= max(p[0] for p in peers)
                extra = f"; throughput ≥ best peer: {'met' if ok_tp else 'not met'}"
            verdicts.append(
                f"- {s}: CPU {r:.2f}× best peer (target ≤ {TARGETS[s]}×): {'met' if ok_cpu else 'not met'};"
                f" p99 no worse than best peer: {'met' if ok_p99 else 'not met'}{extra}")
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
