#!/usr/bin/env bash
# What provider mode's tests need (tests/provider): PostgreSQL on 127.0.0.1:5432 where the
# tests log in as `postgres` without a password (trust on loopback), pg_dump, and headless
# Chromium with its WebDriver (Debian's chromium and chromium-driver). Sourced by
# .ci/ensure-tools.sh (functions ensure_postgres, ensure_browser), or run on its own:
#   bash .ci/ensure-provider-tools.sh
#
# PostgreSQL, like RabbitMQ (.ci/ensure-rabbitmq.sh): one already listening is used as it is;
# an installed one is started; otherwise apt-get installs it (as root or with sudo that asks
# no password) and, being a fresh install of this script's own, lets loopback log in without a
# password. A server already there that refuses that login is left alone: the lines to run
# are printed instead.

postgres_port=5432

postgres_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$postgres_port") 2>/dev/null; }

postgres_trusts_loopback() {
  psql -h 127.0.0.1 -p "$postgres_port" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1 </dev/null
}

await_postgres() {
  local _
  for _ in $(seq 1 60); do
    postgres_listening && return 0
    sleep 1
  done
  echo "postgres: did not start within 60 s" >&2
  return 1
}

start_installed_postgres() {
  echo "postgres: starting the installed PostgreSQL"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl start postgresql || return 1
  elif command -v pg_ctlcluster >/dev/null 2>&1; then
    # No systemd (a container): every cluster Debian's tools know of.
    local version cluster
    while read -r version cluster _; do
      as_root pg_ctlcluster "$version" "$cluster" start 2>/dev/null || true
    done < <(pg_lsclusters --no-header 2>/dev/null)
  else
    as_root service postgresql start || return 1
  fi
  await_postgres
}

# A command as the postgres system user (peer authentication on the local socket).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    sudo -n -u postgres "$@"
  fi
}

# Loopback logs in without a password: only on a server this script installed itself.
trust_loopback() {
  local hba
  hba=$(as_postgres psql -Atqc 'show hba_file' 2>/dev/null) || return 1
  [ -n "$hba" ] || return 1
  as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  as_postgres psql -Atqc 'select pg_reload_conf()' >/dev/null
}

how_to_get_postgres() {
  cat >&2 <<EOF
postgres: provider mode's tests need PostgreSQL on 127.0.0.1:$postgres_port where user postgres
logs in from loopback without a password, and this script cannot arrange it here.
  Debian/Ubuntu:  sudo apt-get install -y postgresql postgresql-client
                  then in pg_hba.conf: host all all 127.0.0.1/32 trust (a test machine only)
  Another server: WEIBO_RELAY_TEST_PG=postgres://USER:PASSWORD@HOST:PORT cargo test --test provider
EOF
  return 1
}

ensure_postgres() {
  if [ -n "${WEIBO_RELAY_TEST_PG:-}" ]; then
    return 0
  fi
  if ! postgres_listening && command -v pg_lsclusters >/dev/null 2>&1 && can_be_root; then
    start_installed_postgres || true
  fi
  if ! postgres_listening && command -v apt-get >/dev/null 2>&1 && can_be_root; then
    echo "postgres: installing postgresql with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null &&
      start_installed_postgres && trust_loopback
  fi
  if ! command -v psql >/dev/null 2>&1 || ! command -v pg_dump >/dev/null 2>&1; then
    apt_install_for "postgresql-client" psql pg_dump || return 1
  fi
  if postgres_listening && postgres_trusts_loopback; then
    echo "postgres: up on 127.0.0.1:$postgres_port"
    return 0
  fi
  how_to_get_postgres
}

ensure_browser() {
  apt_install_for "chromium chromium-driver" chromium chromedriver
}

# Run on its own (not sourced): do it, with the helpers of ensure-tools.sh (which sources
# this file again: the flag keeps that from running this block twice).
if [ "${BASH_SOURCE[0]}" = "$0" ] && [ -z "${_provider_tools_main:-}" ]; then
  set -uo pipefail
  _provider_tools_main=1
  # shellcheck source=ensure-tools.sh
  . "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ensure-tools.sh"
  ensure_postgres && ensure_browser
fi
