#!/usr/bin/env bash
# Reproduces the BENCHMARKS.md table: for each concurrency, a fresh receiver (so its peak RSS
# is that run's), `bench push` against it with the queue verified, then `bench broker` with
# the same load; finally `bench worker`. Only 127.0.0.1 is targeted; every step is bounded.
# Also prints the CPU seconds the relay, the broker (beam.smp) and the generator used.
# Usage: bash bench/run.sh   (EVENTS, CONCURRENCY, OUT override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/weibo-relay
CONFIG=bench/receiver.toml
QUEUE=weibo-relay-bench.orders
URL=http://127.0.0.1:18080
EVENTS=${EVENTS:-100000}
CONCURRENCY=${CONCURRENCY:-"16 64 256"}
OUT=${OUT:-target/bench}
HZ=$(getconf CLK_TCK)
BEAM=$(pgrep -o beam.smp || true)
mkdir -p "$OUT"
[ -x "$BIN" ] || cargo build --release

# CPU seconds (user + system) of a process so far; 0 when it is not there.
cpu() { awk -v hz="$HZ" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Runs a bench, timing its own CPU, and the broker's over the same span.
measure() {
  local name=$1; shift
  local beam0; beam0=$(cpu "${BEAM:-0}")
  /usr/bin/time -f "generator_cpu_secs %U %S" -o "$OUT/$name.time" timeout 300 "$@" \
    | tee "$OUT/$name.json"
  echo "beam_cpu_secs $(echo "$(cpu "${BEAM:-0}") - $beam0" | bc)" >> "$OUT/$name.time"
  cat "$OUT/$name.time"
}

for c in $CONCURRENCY; do
  rabbitmqctl -q delete_queue "$QUEUE" >/dev/null 2>&1 || true
  "$BIN" receiver --config "$CONFIG" >"$OUT/relay-$c.log" 2>&1 &
  relay=$!
  for _ in $(seq 100); do
    curl -fs "$URL/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  relay0=$(cpu "$relay")
  measure "push-$c" "$BIN" bench push --config "$CONFIG" --url "$URL/weibo/push" \
    --appid 100023 --sign-key bench-sign-key --concurrency "$c" --events "$EVENTS" \
    --verify-queue "$QUEUE" --json
  grep -E 'VmHWM|VmRSS' "/proc/$relay/status" | tee "$OUT/relay-$c.txt"
  echo "relay_cpu_secs $(echo "$(cpu "$relay") - $relay0" | bc)" | tee -a "$OUT/relay-$c.txt"
  kill -TERM "$relay"
  wait "$relay" || true
  rabbitmqctl -q delete_queue "$QUEUE" >/dev/null 2>&1 || true
  measure "broker-$c" "$BIN" bench broker --concurrency "$c" --events "$EVENTS" --json
done

timeout 300 "$BIN" bench worker --latency-ms 50 --rate-limit 50 --concurrency 16 \
  --events 1000 --json | tee "$OUT/worker.json"

# The receiver's exchange (durable) goes too; rabbitmqctl has no delete_exchange command.
rabbitmqctl -q eval 'rabbit_exchange:delete(rabbit_misc:r(<<"/">>, exchange,
  <<"weibo-relay-bench.events">>), false, <<"bench">>).' >/dev/null 2>&1 || true
