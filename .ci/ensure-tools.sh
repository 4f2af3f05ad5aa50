#!/usr/bin/env bash
# What building and testing need besides RabbitMQ (.ci/ensure-rabbitmq.sh), checked and, on
# Debian/Ubuntu as root or with sudo that asks no password, installed with apt-get. Sourced
# by .ci/demo, .ci/test and .ci/run:
#
#   ensure_rust         cargo and a rustc at least the crate's rust-version (Cargo.toml):
#                       never installed here, the rustup line is printed instead
#   ensure_build_tools  a C compiler and make (jemalloc and the TLS crates compile C code)
#   ensure_test_tools   openssl, setpriv and flock (the cluster tests' throw-away RabbitMQ
#                       nodes and certificates), python3 with venv (the Python example), node
#                       and npm (the Node example, docs/validate.sh)

ci_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=ensure-rabbitmq.sh
. "$ci_dir/ensure-rabbitmq.sh"
# ensure_postgres, ensure_browser (provider mode's tests)
# shellcheck source=ensure-provider-tools.sh
. "$ci_dir/ensure-provider-tools.sh"

# The crate's rust-version, read from Cargo.toml so that it is said in one place.
rust_version() { sed -n 's/^rust-version = "\(.*\)"/\1/p' "$ci_dir/../Cargo.toml"; }

ensure_rust() {
  local want have
  want=$(rust_version)
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "rust: cargo not found. Install Rust $want or newer with rustup (Debian's rustc is older):" >&2
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y && . \"\$HOME/.cargo/env\"" >&2
    return 1
  fi
  have=$(rustc --version | awk '{print $2}')
  if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
    echo "rust: rustc $have is older than this crate's rust-version $want: rustup update stable" >&2
    return 1
  fi
}

# Installs the Debian packages named, when any of `commands` is missing.
apt_install_for() {
  local packages=$1
  shift
  local missing=() command
  for command in "$@"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("$command")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if command -v apt-get >/dev/null 2>&1 && can_be_root; then
    echo "tools: installing $packages (for ${missing[*]})"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      # shellcheck disable=SC2086
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    return
  fi
  echo "tools: ${missing[*]} missing; install them: sudo apt-get install -y $packages" >&2
  return 1
}

ensure_build_tools() {
  apt_install_for "build-essential" cc make
}

ensure_test_tools() {
  apt_install_for "openssl util-linux" openssl setpriv flock || return 1
  apt_install_for "nodejs npm" node npm || return 1
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && can_be_root; then
      echo "tools: installing python3 python3-venv"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    else
      echo "tools: python3 with venv missing; install it: sudo apt-get install -y python3 python3-venv" >&2
      return 1
    fi
  fi
}
