#!/usr/bin/env bash
# Reproduces the BENCHMARKS.md table: for each concurrency, a fresh receiver (so its peak RSS
# is that run's), `bench push` against it with the queue verified, then `bench broker` with
# the same load; finally `bench worker`. Only 127.0.0.1 is targeted; every step is bounded.
# Usage: bash bench/run.sh   (EVENTS, CONCURRENCY, OUT override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/weibo-relay
CONFIG=bench/receiver.toml
QUEUE=weibo-relay-bench.orders
URL=http://127.0.0.1:18080
EVENTS=${EVENTS:-20000}
CONCURRENCY=${CONCURRENCY:-"16 64 256"}
OUT=${OUT:-target/bench}
mkdir -p "$OUT"
[ -x "$BIN" ] || cargo build --release

for c in $CONCURRENCY; do
  rabbitmqctl -q delete_queue "$QUEUE" >/dev/null 2>&1 || true
  "$BIN" receiver --config "$CONFIG" >"$OUT/relay-$c.log" 2>&1 &
  relay=$!
  for _ in $(seq 100); do
    curl -fs "$URL/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  timeout 300 "$BIN" bench push --config "$CONFIG" --url "$URL/weibo/push" \
    --appid 100023 --sign-key bench-sign-key --concurrency "$c" --events "$EVENTS" \
    --verify-queue "$QUEUE" --json | tee "$OUT/push-$c.json"
  grep -E 'VmHWM|VmRSS' "/proc/$relay/status" | tee "$OUT/rss-$c.txt"
  kill -TERM "$relay"
  wait "$relay" || true
  rabbitmqctl -q delete_queue "$QUEUE" >/dev/null 2>&1 || true
  timeout 300 "$BIN" bench broker --concurrency "$c" --events "$EVENTS" --json \
    | tee "$OUT/broker-$c.json"
done

timeout 300 "$BIN" bench worker --latency-ms 50 --rate-limit 50 --concurrency 16 \
  --events 1000 --json | tee "$OUT/worker.json"
