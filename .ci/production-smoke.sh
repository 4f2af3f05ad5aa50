#!/usr/bin/env bash
# What only bash can show of the production build: the binary built as the image builds it
# (the root package alone, no feature) offers the relay's commands and no tooling command.
# Everything it does is proven by the integration tests, which run this same binary
# (CARGO_BIN_EXE_weibo-relay); the tooling is another package and binary (tests/tooling).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "production-smoke: FAIL: $*" >&2; exit 1; }

cargo build --locked -p weibo-relay --bin weibo-relay
help=$(target/debug/weibo-relay --help)
for command in serve receiver worker check dlq events sign; do
  grep -qE "^  $command " <<<"$help" || fail "no '$command' command in --help"
done
for tooling in sandbox demo bench; do
  if grep -qE "^  $tooling " <<<"$help"; then fail "'$tooling' is in the production build"; fi
done
echo "production-smoke: the production binary offers serve, receiver, worker, check, dlq, events and sign; no tooling"
