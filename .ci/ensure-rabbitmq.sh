#!/usr/bin/env bash
# Makes sure a RabbitMQ answers on 127.0.0.1:5672 (what the demo and the tests use, as
# guest/guest), bringing one up where this machine allows it:
#
#   1. one already listening: nothing to do;
#   2. rabbitmq-server installed: start it;
#   3. a Docker daemon this user can reach: run rabbitmq:3.13 in a container
#      (weibo-relay-rabbitmq, port 5672 on loopback only);
#   4. apt-get, as root or with sudo that needs no password: install rabbitmq-server, start it;
#   5. none of these: say exactly what to run, and fail.
#
# Sourced by .ci/demo, .ci/test and .ci/run (function ensure_rabbitmq), or run on its own:
#   bash .ci/ensure-rabbitmq.sh
# WEIBO_RELAY_RABBITMQ_PORT checks another port (the demo and the tests use 5672).

rabbitmq_port="${WEIBO_RELAY_RABBITMQ_PORT:-5672}"

rabbitmq_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$rabbitmq_port") 2>/dev/null; }

# Root runs commands as they are; anyone else through sudo, if it asks no password.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

can_be_root() { [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; }

# Waits for the AMQP port, then for the node to have finished booting.
await_rabbitmq() {
  local _
  for _ in $(seq 1 180); do
    if rabbitmq_listening; then
      if command -v rabbitmqctl >/dev/null 2>&1; then
        # The listener opens before the node is fully up; await_startup waits for the rest.
        as_root timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || true
      fi
      echo "rabbitmq: up on 127.0.0.1:$rabbitmq_port"
      return 0
    fi
    sleep 1
  done
  echo "rabbitmq: did not start within 180 s" >&2
  return 1
}

start_installed_rabbitmq() {
  echo "rabbitmq: starting the installed rabbitmq-server"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl start rabbitmq-server || return 1
  else
    # No systemd (a container, WSL): the server's own daemon mode.
    as_root rabbitmq-server -detached || true
  fi
  await_rabbitmq
}

start_docker_rabbitmq() {
  echo "rabbitmq: starting rabbitmq:3.13 in Docker (container weibo-relay-rabbitmq)"
  if docker container inspect weibo-relay-rabbitmq >/dev/null 2>&1; then
    docker start weibo-relay-rabbitmq >/dev/null || return 1
  else
    docker run -d --name weibo-relay-rabbitmq -p "127.0.0.1:$rabbitmq_port:5672" \
      rabbitmq:3.13 >/dev/null || return 1
  fi
  local _
  for _ in $(seq 1 120); do
    if docker exec weibo-relay-rabbitmq rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 &&
      rabbitmq_listening; then
      echo "rabbitmq: up on 127.0.0.1:$rabbitmq_port (stop it: docker rm -f weibo-relay-rabbitmq)"
      return 0
    fi
    sleep 1
  done
  echo "rabbitmq: the container did not come up within 120 s: docker logs weibo-relay-rabbitmq" >&2
  return 1
}

install_rabbitmq_with_apt() {
  echo "rabbitmq: installing rabbitmq-server with apt-get"
  # A failed update (a flaky mirror, no network) still leaves the lists apt has.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null || return 1
  start_installed_rabbitmq
}

how_to_get_rabbitmq() {
  cat >&2 <<EOF
rabbitmq: nothing listens on 127.0.0.1:$rabbitmq_port, and this script cannot start one here
(no rabbitmq-server it may start, no Docker daemon it can reach, no apt-get as root or with
sudo that asks no password).
Start one yourself, then run this again:
  Debian/Ubuntu:  sudo apt-get install -y rabbitmq-server && sudo systemctl start rabbitmq-server
  Docker:         docker run -d --name weibo-relay-rabbitmq -p 127.0.0.1:5672:5672 rabbitmq:3.13
  macOS:          brew install rabbitmq && brew services start rabbitmq
Another broker: bash .ci/demo --amqp-url amqp://USER:PASSWORD@HOST:5672/%2f
(README, "Get Rust and RabbitMQ").
EOF
  return 1
}

ensure_rabbitmq() {
  if rabbitmq_listening; then
    echo "rabbitmq: already listening on 127.0.0.1:$rabbitmq_port"
    return 0
  fi
  if command -v rabbitmq-server >/dev/null 2>&1 && can_be_root; then
    start_installed_rabbitmq && return 0
  fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    start_docker_rabbitmq && return 0
  fi
  if command -v apt-get >/dev/null 2>&1 && can_be_root; then
    install_rabbitmq_with_apt && return 0
  fi
  how_to_get_rabbitmq
}

# Run on its own (not sourced): do it.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  ensure_rabbitmq
fi
