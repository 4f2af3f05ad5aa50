#!/usr/bin/env bash
# Checks the monitoring kit in this directory; exits non-zero if anything fails.
#
#   bash deploy/monitoring/check.sh
#
# 1. promtool check rules alerts.rules.yml   (syntax, PromQL, templates)
# 2. promtool test rules alerts.test.yml     (the alert unit tests)
# 3. grafana-dashboard.json parses; every panel and every query uses the datasource
#    variable ${datasource} (no hard-coded datasource uid); panel ids are unique
# 4. (every weibo_relay_* metric named is one the relay exports: tests/api/monitoring.rs)
# 5. gen-prometheusrule.py --check          (prometheusrule.yaml is up to date)
#
# promtool comes from Debian's `prometheus` package: if it is missing it is installed with
# apt-get (needs root), and a Prometheus server the package may have started is stopped.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1
failures=()
fail() { failures+=("$1"); echo "FAIL: $1" >&2; }
step() { echo; echo "== $1"; }

ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  echo "promtool not found: installing Debian's prometheus package (it provides promtool)"
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "cannot install: need root and apt-get; install promtool (package 'prometheus') yourself" >&2
    return 1
  fi
  local before
  before=$(pgrep -x prometheus || true)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null || return 1
  # Only promtool is wanted: do not leave the packaged server running.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  local pid
  for pid in $(pgrep -x prometheus || true); do
    if ! grep -qx "$pid" <<<"$before"; then
      echo "stopping the prometheus server (pid $pid) the package started"
      kill "$pid" 2>/dev/null || true
    fi
  done
  command -v promtool >/dev/null 2>&1
}

step "promtool"
if ensure_promtool; then
  promtool --version 2>&1 | head -1

  step "promtool check rules alerts.rules.yml"
  promtool check rules alerts.rules.yml || fail "promtool check rules alerts.rules.yml"

  step "promtool test rules alerts.test.yml"
  promtool test rules alerts.test.yml || fail "promtool test rules alerts.test.yml"
else
  fail "promtool is not available and could not be installed"
fi

step "grafana-dashboard.json"
python3 - <<'PY' || fail "grafana-dashboard.json"
import json, re, sys

ok = True
def bad(msg):
    global ok
    ok = False
    print("  " + msg, file=sys.stderr)

try:
    dash = json.load(open("grafana-dashboard.json", encoding="utf-8"))
except ValueError as e:
    print(f"  grafana-dashboard.json does not parse: {e}", file=sys.stderr)
    sys.exit(1)

want = {"type": "prometheus", "uid": "${datasource}"}
variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
if variables.get("datasource", {}).get("type") != "datasource" or variables["datasource"].get("query") != "prometheus":
    bad("no template variable `datasource` of type datasource (prometheus)")
if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
    bad(f"schemaVersion {dash.get('schemaVersion')!r}: expected a current one (~39)")

def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))

ids, exprs, n = set(), [], 0
for p in all_panels(dash.get("panels", [])):
    n += 1
    title = p.get("title", "?")
    if p.get("datasource") != want:
        bad(f"panel {title!r}: datasource is {p.get('datasource')!r}, expected {want}")
    if p.get("id") in ids:
        bad(f"panel {title!r}: duplicate id {p.get('id')}")
    ids.add(p.get("id"))
    if p.get("type") != "row" and not p.get("targets"):
        bad(f"panel {title!r}: no queries")
    for t in p.get("targets", []):
        if t.get("datasource") != want:
            bad(f"panel {title!r} query {t.get('refId')}: datasource is {t.get('datasource')!r}")
        exprs.append(t.get("expr", ""))
for name, v in variables.items():
    if v.get("type") == "query" and v.get("datasource") != want:
        bad(f"variable {name}: datasource is {v.get('datasource')!r}")
text = json.dumps(dash)
for uid in re.findall(r'"uid":\s*"([^"]*)"', text):
    if uid not in ("${datasource}", "-- Grafana --", dash.get("uid")):
        bad(f"hard-coded datasource uid {uid!r}")

# Which metric names exist is the relay's to say: the test
# monitoring::the_dashboard_and_the_alerts_name_exactly_the_metrics_the_relay_exports scrapes a
# running relay's /metrics and compares them with every name used here (cargo test).
if ok:
    print(f"  {n} panels (rows included) and {len(exprs)} queries use ${{datasource}}")
sys.exit(0 if ok else 1)
PY

step "gen-prometheusrule.py --check"
python3 gen-prometheusrule.py --check || fail "prometheusrule.yaml is out of date (run: python3 gen-prometheusrule.py)"

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "check.sh: ${#failures[@]} check(s) FAILED:" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "check.sh: all checks passed"
