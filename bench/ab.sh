#!/usr/bin/env bash
# Side-by-side rounds for A/B and bisection (BENCHMARKS.md): several receiver builds under the
# same `bench push` load, alternating within each round so drift in the machine's load hits
# every build alike. Prints one line per run and keeps the JSON reports in $OUT.
# Usage: bash bench/ab.sh NAME=BINARY[@CONFIG] ...   (a NAME starting with "floor" runs
#        bench/floor's binary; ROUNDS, EVENTS, CONCURRENCY, OUT, BROKER=1 override)
set -euo pipefail
cd "$(dirname "$0")/.."
TOOL=target/release/weibo-relay-tooling
ROUNDS=${ROUNDS:-3}
EVENTS=${EVENTS:-20000}
CONCURRENCY=${CONCURRENCY:-64}
OUT=${OUT:-target/ab}
KEY=bench-sign-key-0123456789
mkdir -p "$OUT"

fresh() { rabbitmqctl -q delete_queue "$1" >/dev/null 2>&1 || true
          rabbitmqctl -q delete_queue "$1.log" >/dev/null 2>&1 || true; }
ready() { for _ in $(seq 100); do curl -fs "$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done; }
# name cpu µs per push, rate, p50, p99, peak RSS MiB, 200s, queue difference
summary() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
name, path, hwm = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.load(open(path))
q = r.get("queue") or {}
print(f"{name:<14} cpu_us {r.get('relay_cpu_us_per_push', 0):6.1f}  rate {r['events_per_sec']:7.0f}/s"
      f"  p50 {r['latency']['p50_ms']:6.2f}  p99 {r['latency']['p99_ms']:6.2f} ms"
      f"  hwm {hwm / 1024:5.1f} MiB  200s {r['answers'].get('200', 0)}  diff {q.get('difference')}")
PY
}

echo "# $(date -u +%FT%TZ) $(uptime)"
for round in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    name=${spec%%=*}; rest=${spec#*=}; bin=${rest%%@*}
    config=bench/receiver.toml; [[ $rest == *@* ]] && config=${rest#*@}
    if [[ $name == floor* ]]; then
      queue=weibo-relay-floor.orders; url=http://127.0.0.1:18070
      fresh "$queue"; "$bin" 18070 "$KEY" >"$OUT/$name.log" 2>&1 &
    else
      queue=weibo-relay-bench.orders; url=http://127.0.0.1:18080
      fresh "$queue"; "$bin" receiver --config "$config" >"$OUT/$name.log" 2>&1 &
    fi
    pid=$!
    ready "$url"
    timeout 300 "$TOOL" bench push --config bench/receiver.toml --url "$url/weibo/push" \
      --appid 100023 --sign-key "$KEY" --concurrency "$CONCURRENCY" --events "$EVENTS" \
      --verify-queue "$queue" --relay-pid "$pid" --json >"$OUT/$name-$round.json"
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"; wait "$pid" || true
    fresh "$queue"
    summary "$name" "$OUT/$name-$round.json" "$hwm"
  done
  if [ "${BROKER:-0}" = 1 ]; then
    timeout 300 "$TOOL" bench broker --concurrency "$CONCURRENCY" --events "$EVENTS" --json \
      >"$OUT/broker-$round.json"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"broker         rate {r['events_per_sec']:7.0f}/s  p99 {r['latency']['p99_ms']:6.2f} ms\")" "$OUT/broker-$round.json"
  fi
  echo "# round $round done $(uptime)"
done
