#!/usr/bin/env bash
# The production build, as the image builds it (--no-default-features), run for real: it has
# no tooling command, and serve, receiver, worker, dlq and sign work. RabbitMQ must be up on
# 127.0.0.1:5672 with rabbitmqctl at hand; everything happens in a vhost of its own, deleted
# at the end whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "production-smoke: FAIL: $*" >&2; exit 1; }

cargo build --locked --no-default-features --bin weibo-relay
work=$(mktemp -d)
bin="$work/weibo-relay"
# A copy: the test run that follows builds the default binary over target/debug/weibo-relay.
cp target/debug/weibo-relay "$bin"
vhost="ci-smoke-$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
rabbitmqctl -q add_vhost "$vhost" >/dev/null
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null

# 1. The commands of the production binary, and no tooling.
help=$("$bin" --help)
for command in serve receiver worker check dlq events sign; do
  grep -qE "^  $command " <<<"$help" || fail "no '$command' command in --help"
done
for tooling in sandbox demo bench; do
  if grep -qE "^  $tooling " <<<"$help"; then fail "'$tooling' is in the production build"; fi
done

# 2. sign, with the seed's example.
signed=$("$bin" sign 'YOUR SIGN KEY' goods_id=371965 appid=100023 sign_type=md5)
[[ $signed == acd244ced696e4aaf1174bc7242969a5 ]] || fail "sign printed $signed"

# 3. A configuration of its own: names, merchant, an unreachable platform on loopback.
key="smoke-sign-key-0123456789"
cat > "$work/relay.toml" <<EOF
[http]
bind = "127.0.0.1:0"
[amqp]
url = "amqp://guest:guest@127.0.0.1:5672/$vhost"
[weibo]
api_base = "http://127.0.0.1:9/2/proxy/eshop/open"
oauth_base = "http://127.0.0.1:9"
# No sweep: the event log then holds exactly the pushes (a sweep appends a read mark).
[reconcile]
enabled = false
[[merchants]]
appid = "100023"
sign_key = "$key"
client_id = "772915"
client_secret = "smoke-client-secret-0123456789"
uid = "1404376560"
EOF

# Starts a role; sets $address once it listens and its broker link is up (healthz, then a
# push or readiness is the role's own business).
start() {
  local role=$1 log="$work/$1.log"
  WEIBO_RELAY_LOG_FORMAT=text "$bin" "$role" --config "$work/relay.toml" >"$log" 2>&1 &
  pids+=($!)
  address=""
  for _ in $(seq 1 100); do
    address=$(grep -oE 'listening address=[0-9.:]+' "$log" | head -1 | cut -d= -f2 || true)
    [[ -n $address ]] && break
    sleep 0.1
  done
  [[ -n $address ]] || { cat "$log" >&2; fail "$role never listened"; }
  curl -fsS "http://$address/healthz" >/dev/null || fail "$role: /healthz"
}
stop() {
  local pid=${pids[-1]}
  kill -TERM "$pid"
  wait "$pid" || fail "$1 did not exit 0 on SIGTERM"
  unset 'pids[-1]'
}

push() {
  local ts data sign
  ts=$(date +%s)
  data="{\"sub_order_id\":\"$RANDOM$RANDOM\",\"state_code\":201}"
  sign=$("$bin" sign "$key" appid=100023 type=2 "data=$data" "timestamp=$ts")
  curl -sS -o "$work/answer" -w '%{http_code}' "http://$address/weibo/push" \
    --data-urlencode appid=100023 --data-urlencode type=2 --data-urlencode "data=$data" \
    --data-urlencode "timestamp=$ts" --data-urlencode "sign=$sign"
}

# 4. serve and receiver store a signed push (publisher confirm and all); worker starts.
for role in serve receiver; do
  start "$role"
  for _ in $(seq 1 50); do
    status=$(push)
    [[ $status == 200 ]] && break
    sleep 0.1   # the broker link comes up just after the listener
  done
  [[ $status == 200 ]] || fail "$role answered $status: $(cat "$work/answer")"
  [[ $(cat "$work/answer") == '{"code":0,"msg":"success"}' ]] || fail "$role: $(cat "$work/answer")"
  stop "$role"
done
start worker
stop worker
# The pushes are in the event log, the one queue bound to order.# (rabbitmqctl's counts lag by
# a few seconds); no catch-all queue is declared.
for _ in $(seq 1 30); do
  stored=$(rabbitmqctl -q list_queues -p "$vhost" --no-table-headers name messages | awk '$1 == "weibo.orders.log" { print $2 }')
  [[ $stored == 2 ]] && break
  sleep 0.5
done
[[ $stored == 2 ]] || fail "weibo.orders.log holds ${stored:-nothing}, expected the 2 pushes"
if rabbitmqctl -q list_queues -p "$vhost" --no-table-headers name | grep -qx weibo.orders; then
  fail "a queue weibo.orders was declared"
fi

# 5. dlq on the same configuration.
"$bin" dlq list --config "$work/relay.toml" 2>"$work/dlq.err" || fail "dlq list: $(cat "$work/dlq.err")"
grep -q "no dead letters in weibo.fulfilment.dead" "$work/dlq.err" || fail "dlq list said: $(cat "$work/dlq.err")"

echo "production-smoke: the production build serves serve, receiver, worker, dlq and sign; no tooling"
