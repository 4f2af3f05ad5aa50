"""Summarises a bench/ab.sh run (its JSON reports in OUT): per build, the median and range of
CPU µs per push, rate, p99 and peak RSS over the rounds, and the rate's ratio to the broker
ceiling measured in the same round. Usage: python3 bench/ab-summary.py target/ab/run"""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
runs, broker = {}, {}
for path in glob.glob(os.path.join(out, "*.json")):
    name, rnd = re.match(r"(.+)-(\d+)\.json$", os.path.basename(path)).groups()
    r = json.load(open(path))
    (broker if name == "broker" else runs.setdefault(name, {}))[int(rnd)] = r


def span(xs, fmt="{:.1f}"):
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


print("build | rounds | CPU µs per push, median (range) | rate /s | ratio to broker | p99 ms")
for name, rounds in runs.items():
    cpu = [r["relay_cpu_us_per_push"] for r in rounds.values()]
    rate = [r["events_per_sec"] for r in rounds.values()]
    p99 = [r["latency"]["p99_ms"] for r in rounds.values()]
    ratio = [r["events_per_sec"] / broker[k]["events_per_sec"] for k, r in rounds.items() if k in broker]
    print(f"{name} | {len(cpu)} | {span(cpu)} | {span(rate, '{:.0f}')} | "
          f"{span(ratio, '{:.2f}') if ratio else '-'} | {span(p99)}")
if broker:
    print(f"broker | {len(broker)} | - | {span([b['events_per_sec'] for b in broker.values()], '{:.0f}')} | 1 | "
          f"{span([b['latency']['p99_ms'] for b in broker.values()])}")
