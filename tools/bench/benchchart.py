#!/usr/bin/env python3
"""Draws the comparison chart from a tools/bench/compare results file.

  benchchart.py RESULTS_JSON OUTPUT_PNG

Left: scenario 1 throughput per server (sessions/s as run, and sessions per server core-second,
which does not depend on how busy the shared machine was). Right: server memory (PSS) per
idle logged-in session at each idle count measured. Both on log scales: the servers differ by
one to two orders of magnitude. Needs gnuplot (Debian gnuplot-nox).
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

SERVERS = ("dovecot", "posthaste")
COLOURS = {"dovecot": "#c0504d", "posthaste": "#4472c4"}


def median(results, server, variant, label):
    return (results["medians"].get(server, {}).get(variant, {}).get(label, {}) or {}).get("median")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    results = json.load(open(sys.argv[1]))
    png = os.path.abspath(sys.argv[2])
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        sys.exit("benchchart: gnuplot not found (apt-get install gnuplot-nox)")
    servers = [s for s in SERVERS if s in results["medians"]]
    idle_counts = sorted({int(v.split("-")[1]) for s in servers
                          for v in results["medians"][s] if v.startswith("idle-")})
    with tempfile.TemporaryDirectory() as tmp:
        rates = os.path.join(tmp, "rates.dat")
        with open(rates, "w") as f:
            for title, label in (("sessions/s", "sessions/s"),
                                 ("sessions/core-s", "sessions per server core-second")):
                row = [median(results, s, "sessions", label) for s in servers]
                f.write(f'"{title}" ' + " ".join(str(v) if v else "NaN" for v in row) + "\n")
        idle = os.path.join(tmp, "idle.dat")
        with open(idle, "w") as f:
            for n in idle_counts:
                row = [median(results, s, f"idle-{n}", "PSS per idle session") for s in servers]
                f.write(f'"{n:,}" ' + " ".join(str(v) if v else "NaN" for v in row) + "\n")

        def plot(path):
            parts = []
            for i, s in enumerate(servers):
                parts.append(f"'{path}' using {i + 2}:xtic(1) title '{s}' "
                             f"lc rgb '{COLOURS[s]}'")
            # the value above each bar (clustered histogram: bar i of a cluster at x + offset)
            width = 1.0 / (len(servers) + 1)
            for i, s in enumerate(servers):
                offset = (i - (len(servers) - 1) / 2) * width
                parts.append(f"'{path}' using ($0 + {offset}):{i + 2}:(${i + 2} >= 100 ? sprintf('%.0f', ${i + 2}) : sprintf('%.3g', ${i + 2}))"
                             f" with labels offset 0,0.7 notitle")
            return ", ".join(parts)

        def yrange(path):
            values = [float(x) for line in open(path) for x in line.split()[1:] if x != "NaN"]
            if not values:
                return "[1:10]"
            low = 10 ** math.floor(math.log10(max(min(values), 1e-3)))
            return f"[{low}:{max(values) * 8}]"

        repeats = results.get("repeats", "?")
        script = f"""
set terminal pngcairo size 1100,480 font 'Sans,10' noenhanced
set output '{png}'
set multiplot layout 1,2 title 'POP3 on loopback: server pinned to one core, load generator on the other (medians of {repeats} repeats)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set logscale y
set key top left
set title 'Scenario 1: login, STAT, UIDL, RETR x10 (20 KiB), QUIT'
set ylabel 'sessions (log scale)'
set xrange [-0.6:1.6]
set yrange {yrange(rates)}
plot {plot(rates)}
set title 'Scenario 3: server PSS per idle logged-in session'
set ylabel 'KiB per session (log scale)'
set xlabel 'idle sessions held (a missing bar: not run at that count)'
set xrange [-0.6:{len(idle_counts) - 0.4}]
set yrange {yrange(idle)}
plot {plot(idle)}
unset multiplot
"""
        subprocess.run([gnuplot], input=script, text=True, check=True)
    print(f"benchchart: wrote {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
