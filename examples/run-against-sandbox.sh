#!/usr/bin/env bash
# Proves the consumer examples against a real relay: for each example, starts the sandbox
# platform and `weibo-relay serve` on the local RabbitMQ, runs the example, creates orders
# through the sandbox, and checks that every order ended finished (301) or closed (302).
#
#   examples/run-against-sandbox.sh RELAY_BINARY [python|node|both] [ORDERS]
#
# KEEP_LOGS=1 keeps the logs (relay, sandbox, example) of a successful run too.
# Needs: RabbitMQ on 127.0.0.1:5672 (guest/guest) with rabbitmqctl, curl, and python3 (with
# venv) / node with npm for the examples. The Python example runs in target/examples-venv and
# the Node one with examples/node/node_modules, as `cargo test` sets them up (both ignored by git). Each run gets a vhost of its own, so its queues and exchange
# go away with it (rabbitmqctl delete_vhost) and nothing touches other users of the broker.
set -euo pipefail

usage() { echo "usage: $0 RELAY_BINARY [python|node|both] [ORDERS]" >&2; exit 2; }
[[ $# -ge 1 && -x "$1" ]] || usage
bin=$(realpath "$1")
which=${2:-both}
orders=${3:-50}
here=$(cd "$(dirname "$0")" && pwd)
venv=$here/../target/examples-venv
appid=100023

work=$(mktemp -d)
vhost=""
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  if [[ -n "$vhost" ]]; then rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true; vhost=""; fi
  if [[ $status -ne 0 || -n "${KEEP_LOGS:-}" ]]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

say() { echo "[$(date +%T)] $*"; }
die() { echo "FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
random_hex() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
# A port nobody listens on (a race with another process is possible, and harmless here).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
# wait_for SECONDS CONDITION...: polls CONDITION every 0.1 s.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < deadline)) || return 1; sleep 0.1; done
}

setup_python() {
  if [[ ! -x "$venv/bin/python" ]]; then python3 -m venv "$venv"; fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/python/requirements.txt"
  consumer=("$venv/bin/python" "$here/python/consumer.py")
}
setup_node() {
  local nd="$here/node"
  if [[ ! -d "$nd/node_modules" || "$nd/package-lock.json" -nt "$nd/node_modules" ]]; then
    (cd "$nd" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  consumer=(node "$nd/consumer.js")
}

# The relay (serve) against the sandbox, on a vhost of its own; returns once it is ready.
start_relay() {
  local dir=$1 port=$2
  {
    echo "[http]"; echo "bind = \"127.0.0.1:$port\""
    echo "[amqp]"
    echo "url = \"amqp://guest:guest@127.0.0.1:5672/$vhost\""
    echo "events_exchange = \"$run.events\""
    echo "events_queue = \"$run.orders\""
    echo "fulfilment_queue = \"$run.fulfilment\""
    echo "[weibo]"; echo "api_base = \"$api_base\""; echo "oauth_base = \"$oauth_base\""
    cat "$dir/merchants.toml"
  } > "$dir/relay.toml"
  "$bin" serve --config "$dir/relay.toml" > "$dir/relay.log" 2>&1 &
  relay_pid=$!
  pids+=("$relay_pid")
  ready() { curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || ! kill -0 "$relay_pid" 2>/dev/null; }
  wait_for 30 ready || die "relay not ready within 30 s (see $dir/relay.log)"
  kill -0 "$relay_pid" 2>/dev/null || die "relay exited: $(tail -n 3 "$dir/relay.log")"
}

prove() {
  local lang=$1 dir="$work/$1" started setup_started
  mkdir -p "$dir"
  run="wrx-$lang-$$"
  vhost=$run
  say "== $lang: $orders orders, vhost $vhost"
  setup_started=$(now)
  "setup_$lang"
  local setup_time; setup_time=$(since "$setup_started")
  started=$(now)

  rabbitmqctl -q add_vhost "$vhost" >/dev/null
  rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null

  # Test credentials, fresh each run: long and random, like real ones.
  cat > "$dir/merchants.toml" <<EOF
[[merchants]]
appid = "$appid"
sign_key = "$(random_hex)"
client_id = "$((100000 + RANDOM % 900000))"
client_secret = "$(random_hex)"
uid = "$((1000000000 + RANDOM * 32768 + RANDOM))"
EOF
  local relay_port; relay_port=$(free_port)
  # The sandbox pushes every order change to the relay, redelivering 100x faster than the
  # platform's 1/5/15 min when a push is not answered 200.
  "$bin" sandbox --bind 127.0.0.1:0 --push-to "http://127.0.0.1:$relay_port/weibo/push" \
    --time-scale 0.01 --config "$dir/merchants.toml" > "$dir/sandbox.log" 2>&1 &
  pids+=($!)
  wait_for 10 grep -qs '^api_base = ' "$dir/sandbox.log" || die "sandbox did not start (see $dir/sandbox.log)"
  api_base=$(sed -n 's/^api_base = "\(.*\)"$/\1/p' "$dir/sandbox.log")
  oauth_base=$(sed -n 's/^oauth_base = "\(.*\)"$/\1/p' "$dir/sandbox.log")
  local admin=$oauth_base/admin   # the sandbox's own root

  start_relay "$dir" "$relay_port"
  say "sandbox at $oauth_base, relay at 127.0.0.1:$relay_port ($(since "$started") s)"

  # The example's queues must be bound before the orders exist, or it misses their events.
  AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost" WEIBO_EVENTS_EXCHANGE="$run.events" \
    WEIBO_FULFILMENT_QUEUE="$run.fulfilment" CONSUMER_NAME="$run.merchant" \
    "${consumer[@]}" --orders "$orders" --seconds $((60 + orders / 5)) > "$dir/consumer.log" 2>&1 &
  local consumer_pid=$!
  pids+=("$consumer_pid")
  wait_for 20 grep -qs '^ready:' "$dir/consumer.log" || die "$lang example not ready (see $dir/consumer.log)"

  local created ids run_started; run_started=$(now)
  created=$(curl -sf -X POST "$admin/orders" -H 'content-type: application/json' \
    -d "{\"appid\":\"$appid\",\"count\":$orders}") || die "could not create orders"
  ids=$(grep -o '"[0-9]\+"' <<<"$created" | tr -d '"')
  [[ $(wc -w <<<"$ids") -eq $orders ]] || die "sandbox created $(wc -w <<<"$ids") orders, not $orders"

  local rc=0; wait "$consumer_pid" || rc=$?
  local run_time; run_time=$(since "$run_started")
  [[ $rc -eq 0 ]] || die "$lang example exited $rc: $(tail -n 3 "$dir/consumer.log")"
  say "$lang example: $(grep '^summary:' "$dir/consumer.log")"

  local finished=0 closed=0 other=0 state
  for id in $ids; do
    state=$(curl -sf "$admin/orders/$appid/$id" | grep -o '"state_code":[0-9]*' | cut -d: -f2)
    case $state in
      301) finished=$((finished + 1)) ;;
      302) closed=$((closed + 1)) ;;
      *) other=$((other + 1)); echo "order $id: state ${state:-unknown}" >&2 ;;
    esac
  done
  local dead
  dead=$(rabbitmqctl -q list_queues -p "$vhost" name messages | awk -v q="$run.fulfilment.dead" '$1 == q { print $2 }')
  say "$lang: $finished finished, $closed closed, $other other; ${dead:-?} dead commands;" \
    "setup ${setup_time} s, orders to last outcome ${run_time} s, total $(since "$setup_started") s"
  ((other == 0)) || die "$other orders did not reach 301 or 302"
  ((closed == orders / 10)) || die "expected $((orders / 10)) closed orders, got $closed"
  [[ "${dead:-0}" == 0 ]] || die "$dead commands were dead-lettered"

  # Stop this run's processes and drop its vhost (queues, exchange) before the next one.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  rabbitmqctl -q delete_vhost "$vhost" >/dev/null
  vhost=""
}

case $which in
  python | node) prove "$which" ;;
  both) prove python; prove node ;;
  *) usage ;;
esac
say "all good"
