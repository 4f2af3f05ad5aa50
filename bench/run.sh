#!/usr/bin/env bash
# Reproduces the BENCHMARKS.md table: for each concurrency, a fresh receiver (so its peak RSS
# is that run's), `bench push` against it with the queue verified, then `bench broker` with
# the same load; finally `bench worker`. Only 127.0.0.1 is targeted; every step is bounded.
# Also prints the CPU seconds the relay, the broker (beam.smp) and the generator used, and runs
# the hand-written baseline (bench/baseline/receiver.py) and the floor (bench/floor: the least
# a receiver on the relay's own stack does) under the same load beside the relay.
# Usage: bash bench/run.sh   (EVENTS, CONCURRENCY, OUT override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/weibo-relay
# The load generators are the tooling's binary; the receiver under load is the one that ships.
TOOL=target/release/weibo-relay-tooling
CONFIG=bench/receiver.toml
QUEUE=weibo-relay-bench.orders
URL=http://127.0.0.1:18080
EVENTS=${EVENTS:-100000}
CONCURRENCY=${CONCURRENCY:-"16 64 256"}
OUT=${OUT:-target/bench}
HZ=$(getconf CLK_TCK)
BEAM=$(pgrep -o beam.smp || true)
mkdir -p "$OUT"
FLOOR=target/release/weibo-relay-floor
# One build of all three, so the floor's crates are built with the relay's features.
{ [ -x "$BIN" ] && [ -x "$TOOL" ] && [ -x "$FLOOR" ]; } || cargo build --release --locked \
  -p weibo-relay -p weibo-relay-tooling -p weibo-relay-floor \
  --bin weibo-relay --bin weibo-relay-tooling --bin weibo-relay-floor

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

# The hand-written baseline (bench/baseline): aiohttp + aio-pika, in a venv under target/.
VENV=target/bench-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/baseline/requirements.txt
fi
BASELINE_URL=http://127.0.0.1:18090
KEY=bench-sign-key-0123456789

# Deletes a receiver's queue and its event log stream, so every run starts empty.
fresh() { rabbitmqctl -q delete_queue "$1" >/dev/null 2>&1 || true
          rabbitmqctl -q delete_queue "$1.log" >/dev/null 2>&1 || true; }
# Waits for a receiver's /readyz.
ready() { for _ in $(seq 100); do curl -fs "$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done; }

for c in $CONCURRENCY; do
  # The relay.
  fresh "$QUEUE"
  "$BIN" receiver --config "$CONFIG" >"$OUT/relay-$c.log" 2>&1 &
  relay=$!
  ready "$URL"
  measure "push-$c" "$TOOL" bench push --config "$CONFIG" --url "$URL/weibo/push" \
    --appid 100023 --sign-key "$KEY" --concurrency "$c" --events "$EVENTS" \
    --verify-queue "$QUEUE" --relay-pid "$relay" --json
  grep -E 'VmHWM|VmRSS' "/proc/$relay/status" | tee "$OUT/relay-$c.txt"
  kill -TERM "$relay"
  wait "$relay" || true
  fresh "$QUEUE"

  # The baseline, same load, same generator.
  fresh weibo-relay-baseline.orders
  "$VENV/bin/python" bench/baseline/receiver.py --port 18090 --sign-key "$KEY" \
    >"$OUT/baseline-$c.log" 2>&1 &
  baseline=$!
  ready "$BASELINE_URL"
  measure "baseline-$c" "$TOOL" bench push --config "$CONFIG" --url "$BASELINE_URL/weibo/push" \
    --appid 100023 --sign-key "$KEY" --concurrency "$c" --events "$EVENTS" \
    --verify-queue weibo-relay-baseline.orders --relay-pid "$baseline" --json
  grep -E 'VmHWM|VmRSS' "/proc/$baseline/status" | tee "$OUT/baseline-$c.txt"
  kill -TERM "$baseline"
  wait "$baseline" || true
  fresh weibo-relay-baseline.orders

  # The floor (bench/floor), same load: what the stack costs with none of the relay's features.
  fresh weibo-relay-floor.orders
  "$FLOOR" 18070 "$KEY" >"$OUT/floor-$c.log" 2>&1 &
  floor=$!
  ready http://127.0.0.1:18070
  measure "floor-$c" "$TOOL" bench push --config "$CONFIG" --url http://127.0.0.1:18070/weibo/push \
    --appid 100023 --sign-key "$KEY" --concurrency "$c" --events "$EVENTS" \
    --verify-queue weibo-relay-floor.orders --relay-pid "$floor" --json
  grep -E 'VmHWM|VmRSS' "/proc/$floor/status" | tee "$OUT/floor-$c.txt"
  kill -TERM "$floor"
  wait "$floor" || true
  fresh weibo-relay-floor.orders

  # The broker alone.
  measure "broker-$c" "$TOOL" bench broker --concurrency "$c" --events "$EVENTS" --json
done

timeout 300 "$TOOL" bench worker --latency-ms 50 --rate-limit 50 --concurrency 16 \
  --events 1000 --json | tee "$OUT/worker.json"

# The receivers' exchanges (durable) go too; rabbitmqctl has no delete_exchange command.
for x in weibo-relay-bench.events weibo-relay-baseline.events weibo-relay-floor.events; do
  rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange,
    <<\"$x\">>), false, <<\"bench\">>)." >/dev/null 2>&1 || true
done
