#!/usr/bin/env bash
# Instructions per push, repeatable whatever the machine's load (BENCHMARKS.md): a receiver
# under callgrind takes WARM pushes, its counters are zeroed, then it takes EVENTS pushes and
# the counters are dumped to $OUT/NAME.callgrind. Divide the total by EVENTS.
# Usage: bash bench/callgrind.sh NAME BINARY [CONFIG]   (a NAME starting with "floor" runs
#        bench/floor's binary; EVENTS, WARM, CONCURRENCY, OUT override)
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 bin=$2 config=${3:-bench/receiver.toml}
TOOL=target/release/weibo-relay-tooling
EVENTS=${EVENTS:-2000} WARM=${WARM:-300} CONCURRENCY=${CONCURRENCY:-16} OUT=${OUT:-target/cg}
KEY=bench-sign-key-0123456789
mkdir -p "$OUT"
if [[ $name == floor* ]]; then
  queue=weibo-relay-floor.orders url=http://127.0.0.1:18070; args=(18070 "$KEY")
else
  queue=weibo-relay-bench.orders url=http://127.0.0.1:18080; args=(receiver --config "$config")
fi
for q in "$queue" "$queue.log"; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.callgrind" "$bin" "${args[@]}" \
  >"$OUT/$name.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -fs "$url/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
push() { timeout 300 "$TOOL" bench push --config bench/receiver.toml --url "$url/weibo/push" \
  --appid 100023 --sign-key "$KEY" --concurrency "$CONCURRENCY" --events "$1" --json >/dev/null; }
push "$WARM"
callgrind_control -z "$pid" >/dev/null
push "$EVENTS"
callgrind_control -d "$pid" >/dev/null
kill -TERM "$pid"; wait "$pid" || true
for q in "$queue" "$queue.log"; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
# The dump after the load is the second file (.1); the first is the total at exit.
total=$(grep -h '^totals:\|^summary:' "$OUT/$name.callgrind.1" 2>/dev/null | head -1 | awk '{print $2}')
echo "$name instructions_per_push $(( total / EVENTS ))  ($total over $EVENTS pushes)"
