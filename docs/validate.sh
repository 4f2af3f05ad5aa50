#!/usr/bin/env bash
# Validates docs/asyncapi.yaml, docs/openapi.yaml and docs/schemas/*.json with real parsers
# (@asyncapi/parser, @apidevtools/swagger-parser, Ajv for JSON Schema 2020-12) and checks
# every example against its schema. Exits non-zero on any error or warning.
# Needs node >= 18 and npm. The parsers are installed once into docs/.tools (git-ignored)
# from the pinned package-lock.json, and again only when the lock changes.
set -euo pipefail
docs=$(cd "$(dirname "$0")" && pwd)
tools="$docs/.tools"

stamp=$(sha256sum "$docs/package-lock.json" | cut -d' ' -f1)
if [[ ! -d "$tools/node_modules" || "$(cat "$tools/.stamp" 2>/dev/null)" != "$stamp" ]]; then
  rm -rf "$tools" && mkdir -p "$tools"
  cp "$docs/package.json" "$docs/package-lock.json" "$tools/"
  # --ignore-scripts: nothing here needs an install script (one dependency only sends usage
  # analytics from its postinstall).
  (cd "$tools" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$stamp" > "$tools/.stamp"
fi
TOOLS_DIR="$tools" node "$docs/validate.js"
