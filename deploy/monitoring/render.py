#!/usr/bin/env python3
"""Render grafana-dashboard.json without Grafana: each panel's own PromQL, asked of a real
Prometheus through its HTTP API (query_range), plotted with matplotlib into dashboard.png.

This is NOT a Grafana screenshot. It is a matplotlib rendering of the panels' queries
(with the dashboard's template variables filled in the way Grafana fills them) against a
real Prometheus that scraped a real weibo-relay under load.

Two ways to run it (Python 3.9+; matplotlib, plus pika for `stage`, in a throwaway venv;
none of this is a dependency of the relay):

    python3 -m venv /tmp/render-venv
    /tmp/render-venv/bin/pip install matplotlib pika

    # 1. Everything, on one machine with RabbitMQ on 127.0.0.1:5672 (guest/guest) and
    #    Debian's `prometheus` package (apt-get install prometheus: /usr/bin/prometheus).
    #    Starts, on loopback ports it picks, a Prometheus (2 s scrape, temporary data dir,
    #    alerts.rules.yml loaded), the sandbox platform of `weibo-relay-tooling sandbox`
    #    (120 s tokens), `weibo-relay serve` and `weibo-relay worker` with queue and exchange
    #    names of their own, a consumer that turns order events into fulfilment commands, and
    #    about 11 minutes of scripted traffic and faults (see SCENARIO); then renders, stops
    #    everything it started and deletes its queues and exchanges.
    # Two binaries of the same build: the relay, and weibo-relay-tooling for the sandbox.
    # Copies, because the next build may replace them.
    cp target/release/weibo-relay target/release/weibo-relay-tooling /tmp/
    /tmp/render-venv/bin/python deploy/monitoring/render.py stage --build release \
        --relay-bin /tmp/weibo-relay --tooling-bin /tmp/weibo-relay-tooling
    # --build names the cargo profile (debug, release, dist) for the caption: the binary does
    # not say, and a debug build's latencies are not a release build's.

    # 2. Only the rendering, against any Prometheus that scrapes weibo-relay:
    /tmp/render-venv/bin/python deploy/monitoring/render.py render \
        --prometheus http://127.0.0.1:9090 --minutes 60 [--var events_queue=weibo.orders]

The queue-depth panels need RabbitMQ's rabbitmq_prometheus plugin with per-queue metrics
(README.md). `stage` scrapes it only if something already listens on 127.0.0.1:15692; it never
enables a plugin. Without it those panels are drawn as "no data: needs rabbitmq_prometheus",
which is also what Grafana shows (the panels' `noValue`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "grafana-dashboard.json"
RULES = HERE / "alerts.rules.yml"
OUT = HERE / "dashboard.png"
SCRAPE_SECS = 2

# What `stage` does, in seconds from the start of the traffic (printed on the picture).
SCENARIO = [
    (0, "orders for two merchants, ~3 a second; a consumer finishes them (closes every 10th)"),
    (0, "background: a few refused pushes (bad signature, stale, unknown appid, malformed, too large, "
        "wrong content type, slow body) and duplicates"),
    (0, "platform gateway on the worker: client stock-sync sets stocks and reads goods back, ~4 calls a second; "
        "1 in 10 refused (an interface it may not call: 403; a wrong key: 401, client `other`), "
        "1 in 40 a missing parameter (422 permanent)"),
    (120, "platform answers 30 % of order and gateway calls with HTTP 503 for 60 s (transient, retries, some "
          "exhausted; gateway writes answered 504 unknown)"),
    (210, "token of 100023 revoked (21332): token_rejected, one refresh"),
    (240, "next 3 token requests fail, then the token of 100024 is revoked: refresh failures, then a refresh"),
    (270, "consumer queue and event log unbound from the exchange for 30 s: pushes unroutable -> 503"),
    (330, "platform gives up on every push for 45 s: reconciliation brings the states"),
    (400, "poison commands (not JSON, unknown appid) and 4 calls answered 40002 (permanent; the gateway client "
          "pauses until the worker's calls have taken them)"),
    (450, "5 forged keeper messages published to <fulfilment>.tokens"),
    (480, "the serve process (receiver + keeper) stopped for 30 s: the worker becomes keeper"),
    (660, "end"),
]


# --------------------------------------------------------------------------------------
# Prometheus HTTP API and Grafana's variable interpolation
# --------------------------------------------------------------------------------------

def http_json(url: str, data: dict | None = None, timeout: float = 30) -> dict:
    body = None
    headers = {}
    if data is not None:
        body = urllib.parse.urlencode(data).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def prom_query_range(prom: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    out = http_json(f"{prom}/api/v1/query_range",
                    {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
    if out.get("status") != "success":
        raise RuntimeError(f"query failed: {expr}: {out}")
    return out["data"]["result"]


def prom_label_values(prom: str, selector: str, label: str, start: float, end: float) -> list[str]:
    q = urllib.parse.urlencode({"match[]": selector, "start": f"{start:.0f}", "end": f"{end:.0f}"})
    out = http_json(f"{prom}/api/v1/series?{q}")
    return sorted({s[label] for s in out.get("data", []) if label in s})


def regex_escape(value: str) -> str:
    """Escape regex metacharacters the way Grafana does for Prometheus multi-value variables
    (a backslash that survives the PromQL string literal, hence doubled)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def interpolate(expr: str, values: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return values.get(name, m.group(0))
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)


def resolve_variables(prom: str, dash: dict, start: float, end: float, step: float,
                      overrides: dict[str, str]) -> dict[str, str]:
    """Values for the dashboard's variables as Grafana would use them with the defaults:
    query variables at "All" (every value, as a regex alternation), the others at their
    current value; `overrides` wins."""
    rate_interval = max(step + SCRAPE_SECS, 4 * SCRAPE_SECS)
    values = {"__rate_interval": f"{rate_interval:g}s", "__interval": f"{step:g}s",
              "__range": f"{end - start:.0f}s"}
    for var in dash["templating"]["list"]:
        name = var["name"]
        if name in overrides:
            values[name] = overrides[name]
        elif var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
            if not m:
                raise SystemExit(f"variable {name}: unsupported query {q}")
            selector = interpolate(m.group(1), values)
            found = prom_label_values(prom, selector, m.group(2), start, end)
            if not found:
                values[name] = "$^"  # matches nothing, like an empty multi-value
            elif len(found) == 1:
                values[name] = regex_escape(found[0])
            else:
                values[name] = "(" + "|".join(regex_escape(v) for v in found) + ")"
        elif var["type"] in ("custom", "textbox", "constant"):
            values[name] = var.get("current", {}).get("value", var.get("query", ""))
    return values


def legend(fmt: str, metric: dict) -> str:
    if not fmt:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in metric.items()) + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


# --------------------------------------------------------------------------------------
# Plotting
# --------------------------------------------------------------------------------------

def fmt_value(unit: str, v: float) -> str:
    if unit == "percentunit":
        return f"{v * 100:.0f}%" if abs(v) >= 0.1 or v == 0 else f"{v * 100:.1f}%"
    if unit == "s":
        if v == 0:
            return "0"
        if abs(v) < 1:
            return f"{v * 1000:.0f} ms" if abs(v) >= 0.001 else f"{v * 1e6:.0f} µs"
        if abs(v) >= 3600:
            return f"{v / 3600:.1f} h"
        if abs(v) >= 120:
            return f"{v / 60:.0f} min"
        return f"{v:.0f} s"
    suffix = {"reqps": "/s", "ops": "/s"}.get(unit, "")
    if abs(v) >= 1000:
        return f"{v / 1000:.1f}k{suffix}"
    return f"{v:.3g}{suffix}"


GRAFANA_COLORS = {"green": "#73bf69", "red": "#f2495c", "blue": "#5794f2", "orange": "#ff9830",
                  "yellow": "#fade2a", "purple": "#b877d9"}


def state_timeline(ax, p: dict, values: dict, prom: str, start: float, end: float, step: float,
                   fg: str, errors: list) -> int:
    """A Grafana state timeline: one lane per series, coloured by the value mappings."""
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch

    defaults = p["fieldConfig"]["defaults"]
    mapping = {}
    for m in defaults.get("mappings", []):
        for k, o in m.get("options", {}).items():
            mapping[float(k)] = (o["text"], GRAFANA_COLORS.get(o["color"], o["color"]))
    lanes = []
    for t in p["targets"]:
        expr = interpolate(t["expr"], values)
        try:
            result = prom_query_range(prom, expr, start, end, step)
        except (urllib.error.HTTPError, RuntimeError) as e:
            errors.append(str(e)[:200])
            continue
        for series in sorted(result, key=lambda s: legend(t.get("legendFormat", ""), s["metric"])):
            pts = [(float(ts), float(v)) for ts, v in series["values"]]
            lanes.append((legend(t.get("legendFormat", ""), series["metric"]), pts))
    ax.set_xlim(datetime.fromtimestamp(start), datetime.fromtimestamp(end))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=8))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.grid(False)
    if not lanes:
        msg = ("query error: " + errors[0]) if errors else defaults.get("noValue", "No data")
        ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center", color="#9fa7b3")
        ax.set_yticks([])
        return 0
    n = len(lanes)
    for i, (_label, pts) in enumerate(lanes):
        lane_y = n - 1 - i
        j = 0
        while j < len(pts):  # merge runs of one value; a gap in the data stays blank
            k = j
            while (k + 1 < len(pts) and pts[k + 1][1] == pts[j][1]
                   and pts[k + 1][0] - pts[k][0] <= 2.5 * step):
                k += 1
            seg_end = pts[k + 1][0] if k + 1 < len(pts) and pts[k + 1][0] - pts[k][0] <= 2.5 * step \
                else pts[k][0] + step
            color = mapping.get(pts[j][1], ("", "#8e8e8e"))[1]
            left = mdates.date2num(datetime.fromtimestamp(pts[j][0]))
            width = (seg_end - pts[j][0]) / 86400
            ax.barh(lane_y, width, left=left, height=0.8, color=color, alpha=0.85, linewidth=0)
            j = k + 1
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks(range(n))
    ax.set_yticklabels([label for label, _ in reversed(lanes)], fontsize=6.5)
    handles = [Patch(color=c, label=text) for _v, (text, c) in sorted(mapping.items())]
    leg = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.16), fontsize=6.5,
                    ncol=len(handles), frameon=False, handlelength=1.2)
    for text in leg.get_texts():
        text.set_color(fg)
    return n


def table_panel(ax, p: dict, values: dict, prom: str, end: float, fg: str, grid_c: str) -> int:
    """A Grafana table of an instant query (format "table"): one row per series, a column per
    label, in the order of the query's `by (...)`; the organize transformation's
    excludeByName drops columns (Time and Value, as Grafana names them, are never shown)."""
    hidden = {"Time", "Value"}
    for tr in p.get("transformations", []):
        if tr.get("id") == "organize":
            hidden |= {k for k, v in tr.get("options", {}).get("excludeByName", {}).items() if v}
    rows, columns, errors = [], [], []
    for t in p["targets"]:
        expr = interpolate(t["expr"], values)
        m = re.search(r"\bby\s*\(([^)]*)\)", expr)
        for c in ([c.strip() for c in m.group(1).split(",")] if m else []):
            if c and c not in columns and c not in hidden:
                columns.append(c)
        try:
            out = http_json(f"{prom}/api/v1/query", {"query": expr, "time": f"{end:.3f}"})
        except urllib.error.HTTPError as e:
            errors.append(e.read().decode()[:200])
            continue
        if out.get("status") != "success":
            errors.append(str(out)[:200])
            continue
        for series in out["data"]["result"]:
            for c in series["metric"]:
                if c not in columns and c not in hidden and c != "__name__":
                    columns.append(c)
            rows.append(series["metric"])
    ax.axis("off")
    if not rows:
        msg = ("query error: " + errors[0]) if errors else "No data"
        ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center", color="#9fa7b3")
        return 0
    cells = sorted([m.get(c, "") for c in columns] for m in rows)
    height = min(1.0, 0.14 * (len(cells) + 1))
    tab = ax.table(cellText=cells, colLabels=columns, cellLoc="left", colLoc="left",
                   bbox=(0, 1 - height, 1, height))
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    for (r, _c), cell in tab.get_celld().items():
        cell.set_edgecolor(grid_c)
        cell.set_facecolor("#22252b" if r == 0 else "#181b1f")
        cell.get_text().set_color(fg)
    return len(rows)


def render(prom: str, start: float, end: float, out: Path, overrides: dict[str, str],
           subtitle: str, notes: list[str]) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    step = max(SCRAPE_SECS, round((end - start) / 240))
    values = resolve_variables(prom, dash, start, end, step, overrides)

    panels = dash["panels"]
    rows_h = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_h = 0.36  # inches per Grafana grid row
    header, footer = 1.0, 0.15 + 0.16 * len(notes)
    fig_w, fig_h = 22.0, rows_h * unit_h + header + footer
    bg, panel_bg, fg, grid_c = "#111217", "#181b1f", "#ccccdc", "#2c3235"
    fig = plt.figure(figsize=(fig_w, fig_h), facecolor=bg)
    palette = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
               "#705da0", "#37872d", "#fade2a", "#96d98d", "#ffa6b0"]

    def box(gp):
        x0 = gp["x"] / 24
        w = gp["w"] / 24
        top = 1 - (header + gp["y"] * unit_h) / fig_h
        h = gp["h"] * unit_h / fig_h
        return x0, top - h, w, h

    fig.text(0.01, 1 - 0.32 / fig_h, f"{dash['title']}  (grafana-dashboard.json)", color=fg,
             fontsize=15, weight="bold", va="center")
    import textwrap
    for i, line in enumerate(textwrap.wrap(subtitle, 230)[:2]):
        fig.text(0.01, 1 - (0.6 + 0.17 * i) / fig_h, line, color="#9fa7b3", fontsize=9, va="center")

    summary = {}
    for p in panels:
        x0, y0, w, h = box(p["gridPos"])
        if p["type"] == "row":
            fig.text(x0 + 0.004, y0 + h * 0.35, p["title"], color=fg, fontsize=11, weight="bold")
            continue
        if p["type"] == "table":
            ax = fig.add_axes((x0 + 0.62 / fig_w, y0 + 0.15 / fig_h, w - 0.74 / fig_w, h - 0.5 / fig_h))
            ax.set_title(p["title"] + f"  (at {datetime.fromtimestamp(end):%H:%M:%S})", color=fg,
                         fontsize=9.5, loc="left", pad=4)
            summary[p["title"]] = table_panel(ax, p, values, prom, end, fg, grid_c)
            continue
        defaults = p["fieldConfig"]["defaults"]
        unit = defaults.get("unit", "short")
        # inside the panel: room for the y tick labels, the title and the legend below
        is_state = p["type"] == "state-timeline"
        left = (1.7 if is_state else 0.62) / fig_w
        right, top_in, bottom_in = 0.12 / fig_w, 0.34 / fig_h, 1.0 / fig_h
        ax = fig.add_axes((x0 + left, y0 + bottom_in, w - left - right, h - top_in - bottom_in))
        ax.set_facecolor(panel_bg)
        for s in ax.spines.values():
            s.set_color(grid_c)
        ax.tick_params(colors="#9fa7b3", labelsize=7)
        ax.grid(True, color=grid_c, linewidth=0.5)
        ax_w = (w - left - right) * fig_w  # inches
        title_x = -(left - 0.62 / fig_w) * fig_w / ax_w  # every title starts where a time series' axes do
        room = (w - 0.74 / fig_w) * fig_w
        # about 0.075 inch a character at 9.5 pt: a longer title is set smaller to fit its panel
        ax.set_title(p["title"], color=fg, fontsize=min(9.5, 9.5 * room / (0.075 * len(p["title"]))),
                     loc="left", pad=4, x=title_x)
        n_series, ymax, color_i = 0, 0.0, 0
        stepped = defaults.get("custom", {}).get("lineInterpolation") == "stepAfter"
        errors = []
        if is_state:
            summary[p["title"]] = state_timeline(ax, p, values, prom, start, end, step, fg, errors)
            continue
        for t in p["targets"]:
            expr = interpolate(t["expr"], values)
            try:
                result = prom_query_range(prom, expr, start, end, step)
            except (urllib.error.HTTPError, RuntimeError) as e:
                detail = e.read().decode() if isinstance(e, urllib.error.HTTPError) else str(e)
                errors.append(detail[:200])
                continue
            for series in sorted(result, key=lambda s: legend(t.get("legendFormat", ""), s["metric"])):
                pts = [(float(ts), float(v)) for ts, v in series["values"]]
                pts = [(ts, v) for ts, v in pts if v == v and abs(v) != float("inf")]
                if not pts:
                    continue
                xs = [datetime.fromtimestamp(ts) for ts, _ in pts]
                ys = [v for _, v in pts]
                c = palette[color_i % len(palette)]
                color_i += 1
                label = legend(t.get("legendFormat", ""), series["metric"])
                if stepped:
                    ax.step(xs, ys, where="post", color=c, linewidth=1.2, label=label)
                else:
                    ax.plot(xs, ys, color=c, linewidth=1.1, label=label)
                    if defaults.get("custom", {}).get("fillOpacity", 0):
                        ax.fill_between(xs, ys, color=c, alpha=0.08, linewidth=0)
                n_series += 1
                ymax = max(ymax, max(ys))
        summary[p["title"]] = n_series
        ax.set_xlim(datetime.fromtimestamp(start), datetime.fromtimestamp(end))
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=8))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos, u=unit: fmt_value(u, v)))
        if n_series == 0:
            msg = defaults.get("noValue", "No data")
            if errors:
                msg = "query error: " + errors[0]
            ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center",
                    color="#ff9830" if "rabbitmq" in msg else "#9fa7b3", fontsize=10, wrap=True)
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            continue
        top = ymax * 1.15 if ymax > 0 else 1
        if "max" in defaults and defaults["max"] >= ymax:
            top = defaults["max"]
        off_scale = []
        steps = defaults.get("thresholds", {}).get("steps", [])
        if defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode") == "line":
            for s in steps:
                if s.get("value") is None:
                    continue
                if s["value"] <= top * 1.6:
                    top = max(top, s["value"] * 1.1)
                    ax.axhline(s["value"], color={"red": "#f2495c", "orange": "#ff9830"}.get(s["color"], "#f2495c"),
                               linestyle="--", linewidth=1)
                else:
                    off_scale.append(fmt_value(unit, s["value"]))
        ax.set_ylim(defaults.get("min", 0) if defaults.get("min") is not None else None, top)
        if off_scale:
            ax.text(0.99, 0.97, "threshold " + ", ".join(off_scale) + " above the scale",
                    transform=ax.transAxes, ha="right", va="top", color="#ff9830", fontsize=7)
        # Grafana scrolls a long legend; here it gets the columns its labels fit in the panel's
        # width and at most 4 rows (a panel with a series per process and task had 22).
        handles, labels = ax.get_legend_handles_labels()
        fits = max(1, int(ax_w / (0.045 * max(len(lb) for lb in labels) + 0.4)))
        ncol = min(fits, 4 if len(handles) > 6 else (3 if len(handles) > 2 else len(handles)))
        if len(handles) > 4 * ncol:
            from matplotlib.lines import Line2D
            keep = 4 * ncol - 1
            handles = handles[:keep] + [Line2D([], [], linewidth=0)]
            labels = labels[:keep] + [f"… {n_series - keep} more series"]
        leg = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(0, -0.16), fontsize=6.5, ncol=ncol,
                        frameon=False, handlelength=1.2, columnspacing=0.8, labelspacing=0.2)
        for text in leg.get_texts():
            text.set_color(fg)

    for i, note in enumerate(notes):
        fig.text(0.01, (footer - 0.05 - 0.16 * (i + 1)) / fig_h, note, color="#9fa7b3", fontsize=8)
    fig.savefig(out, dpi=72, facecolor=bg)
    plt.close(fig)
    return summary


# --------------------------------------------------------------------------------------
# `stage`: a real Prometheus, sandbox and relay under load
# --------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_http(url: str, secs: float = 30) -> None:
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer 200 within {secs} s")


def sign(params: dict[str, str], key: str) -> str:
    """The platform's md5 signature, PHP form: empty values dropped, values trimmed."""
    pairs = sorted((k, v.strip()) for k, v in params.items()
                   if k not in ("sign", "sign_type", "access_token") and v != "")
    return hashlib.md5(("&".join(f"{k}={v}" for k, v in pairs) + key).encode()).hexdigest()


class Stage:
    def __init__(self, relay_bin: str, tooling_bin: str, workdir: Path):
        self.bin = relay_bin
        self.tooling_bin = tooling_bin
        self.dir = workdir
        self.run = "mon" + os.urandom(3).hex()
        self.procs: dict[str, subprocess.Popen] = {}
        self.stop = threading.Event()
        self.ports = {k: free_port() for k in ("serve", "worker", "gateway", "sandbox", "prom")}
        self.merchants = {
            a: {"sign_key": f"monitoring-sign-key-{a}-{self.run}",
                "client_secret": f"monitoring-client-secret-{a}-{self.run}"}
            for a in ("100023", "100024")
        }
        self.names = {
            "exchange": f"{self.run}.events",
            "events": f"{self.run}.orders",
            "fulfilment": f"{self.run}.fulfilment",
            # The sample consumer's own queue: the relay declares none for events besides
            # its log stream (<events>.log).
            "shop": f"{self.run}.shop",
        }
        self.push_url = f"http://127.0.0.1:{self.ports['serve']}/weibo/push"
        self.sandbox = f"http://127.0.0.1:{self.ports['sandbox']}"
        # The platform gateway (docs/platform-gateway.md) runs on the worker only; its one
        # client's key is made in start(), by `weibo-relay gateway new-key`.
        self.gateway = f"http://127.0.0.1:{self.ports['gateway']}"
        self.gateway_key = ""
        self.gateway_hold = threading.Event()  # set: the gateway client makes no calls
        self.gateway_answers: dict[int, int] = {}  # HTTP status (0: no answer) -> calls

    # ---- processes -----------------------------------------------------------------
    def write_config(self) -> Path:
        sb = self.sandbox
        merchants = "".join(
            f'\n[[merchants]]\nappid = "{a}"\nsign_key = "{m["sign_key"]}"\n'
            f'client_id = "77{a[-4:]}"\nclient_secret = "{m["client_secret"]}"\nuid = "14043{a}"\n'
            for a, m in self.merchants.items())
        cfg = f"""[http]
bind = "127.0.0.1:{self.ports['serve']}"
[amqp]
events_exchange = "{self.names['exchange']}"
events_queue = "{self.names['events']}"
fulfilment_queue = "{self.names['fulfilment']}"
[weibo]
api_base = "{sb}/2/proxy/eshop/open"
oauth_base = "{sb}"
max_attempts = 3
retry_base_ms = 1000
retry_max_ms = 4000
[worker]
concurrency = 8
[reconcile]
interval_secs = 20
settle_secs = 5
{merchants}"""
        path = self.dir / "relay.toml"
        path.write_text(cfg)
        return path

    def new_gateway_key(self) -> tuple[str, str]:
        """A client key and its key_sha256, made as an operator makes them."""
        out = subprocess.run([self.bin, "gateway", "new-key", "--name", "stock-sync"],
                             capture_output=True, text=True, check=True).stdout
        key = re.search(r"^# key = (wrg_\w+)$", out, re.M)
        digest = re.search(r'^key_sha256 = "([0-9a-f]{64})"$', out, re.M)
        if not key or not digest or hashlib.sha256(key.group(1).encode()).hexdigest() != digest.group(1):
            raise SystemExit(f"`weibo-relay gateway new-key` printed what this script cannot read:\n{out}")
        return key.group(1), digest.group(1)

    def write_worker_config(self) -> Path:
        """The shared configuration plus a gateway listener and one client: only the worker
        serves the gateway (serve on the same port would collide)."""
        self.gateway_key, digest = self.new_gateway_key()
        path = self.dir / "worker.toml"
        path.write_text(self.cfg.read_text() + f"""
[gateway]
bind = "127.0.0.1:{self.ports['gateway']}"

[[gateway.clients]]
name = "stock-sync"
key_sha256 = "{digest}"
interfaces = ["goods/setGoodsStock*", "goods/getGoodsInfo"]
appids = ["100023", "100024"]
rate_limit_per_sec = 10
""")
        return path

    def spawn(self, name: str, args: list[str], env: dict | None = None) -> None:
        log = open(self.dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})},
                                            start_new_session=True)

    def start_relay(self, role: str) -> None:
        env = {"RUST_LOG": "warn"}
        if role == "worker":
            env["WEIBO_RELAY__HTTP__BIND"] = f"127.0.0.1:{self.ports['worker']}"
        cfg = self.worker_cfg if role == "worker" else self.cfg
        self.spawn(role, [self.bin, role, "--config", str(cfg)], env)
        wait_http(f"http://127.0.0.1:{self.ports[role]}/readyz")

    def stop_proc(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def start(self) -> None:
        self.cfg = self.write_config()
        self.worker_cfg = self.write_worker_config()
        self.spawn("sandbox", [self.tooling_bin, "sandbox", "--config", str(self.cfg),
                               "--bind", f"127.0.0.1:{self.ports['sandbox']}",
                               "--token-ttl", "120", "--push-to", self.push_url,
                               "--time-scale", "0.01"], {"RUST_LOG": "warn"})
        wait_http(f"{self.sandbox}/admin/faults")
        self.start_relay("serve")
        self.start_relay("worker")
        if not listening(self.ports["gateway"]):  # bound before /readyz answers
            raise SystemExit(f"the worker opened no gateway listener: see {self.dir / 'worker.log'}")
        targets = [f"127.0.0.1:{self.ports['serve']}", f"127.0.0.1:{self.ports['worker']}"]
        rabbit = ""
        if listening(15692):  # the plugin is already enabled: use it, change nothing
            rabbit = ("  - job_name: rabbitmq\n    metrics_path: /metrics/detailed\n"
                      "    params: {family: [queue_coarse_metrics]}\n"
                      "    static_configs: [{targets: ['127.0.0.1:15692']}]\n")
        (self.dir / "prometheus.yml").write_text(
            f"global: {{scrape_interval: {SCRAPE_SECS}s, evaluation_interval: {SCRAPE_SECS}s}}\n"
            f"rule_files: ['{RULES}']\n"
            "scrape_configs:\n"
            f"  - job_name: weibo-relay\n    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
            + rabbit)
        prom_bin = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.spawn("prometheus", [prom_bin, f"--config.file={self.dir / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={self.dir / 'tsdb'}",
                                  f"--web.listen-address=127.0.0.1:{self.ports['prom']}",
                                  "--storage.tsdb.retention.time=1d"])
        self.prom = f"http://127.0.0.1:{self.ports['prom']}"
        wait_http(f"{self.prom}/-/ready")
        self.rabbit_scraped = bool(rabbit)

    def cleanup(self) -> None:
        self.stop.set()
        for name in ("serve", "worker", "sandbox", "prometheus"):
            self.stop_proc(name)
        try:
            import pika
            conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
            ch = conn.channel()
            queues, exchanges = self.broker_objects()
            for q in queues:
                ch.queue_delete(q)
            for x in exchanges:
                ch.exchange_delete(x)
            conn.close()
            print(f"deleted {len(queues)} queues and {len(exchanges)} exchanges named {self.run}.*")
        except Exception as e:  # noqa: BLE001 - report, never hide
            print(f"WARNING: could not delete the {self.run}.* queues: {e}", file=sys.stderr)

    def broker_objects(self) -> tuple[list[str], list[str]]:
        """Our queues and exchanges, listed by rabbitmqctl when it is usable, else by name."""
        def listed(kind: str) -> list[str] | None:
            try:
                out = subprocess.run(["rabbitmqctl", "-q", f"list_{kind}", "name"],
                                     capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                return None
            if out.returncode != 0:
                return None
            return [l.split("\t")[0] for l in out.stdout.splitlines()
                    if l.startswith(self.run + ".")]
        f = self.names["fulfilment"]
        queues = listed("queues") or [self.names["shop"], self.names["events"] + ".log", f,
                                      f + ".dead", f + ".keeper", f + ".permits",
                                      f + ".retry.1000ms", f + ".retry.2000ms"]
        exchanges = listed("exchanges") or [self.names["exchange"], f + ".tokens"]
        return queues, exchanges

    # ---- traffic ---------------------------------------------------------------------
    def admin(self, path: str, body: dict) -> None:
        req = urllib.request.Request(f"{self.sandbox}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()

    def orders_loop(self) -> None:
        i = 0
        while not self.stop.wait(1.0):
            appid = ("100023", "100024")[i % 2]
            i += 1
            try:
                self.admin("/admin/orders", {"appid": appid, "count": 3})
            except Exception:  # noqa: BLE001 - the sandbox may be briefly busy
                pass

    def consumer_loop(self) -> None:
        import pika
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        ch = conn.channel()
        ch.queue_declare(self.names["shop"], durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(self.names["shop"], self.names["exchange"], "order.sub_order.201")
        ch.basic_qos(prefetch_count=50)
        seen: set[str] = set()

        def on_event(chan, method, props, body):
            if method.routing_key == "order.sub_order.201" and props.message_id not in seen:
                seen.add(props.message_id or "")
                try:
                    ev = json.loads(body)
                    sid = ev["sub_order_id"]
                    close = int(sid) % 10 == 0
                    cmd = {"appid": ev["appid"], "sub_order_id": sid,
                           "action": "close" if close else "finish"}
                    if close:
                        cmd["reason"] = "out of stock (monitoring stage)"
                    chan.basic_publish("", self.names["fulfilment"], json.dumps(cmd).encode(),
                                       pika.BasicProperties(delivery_mode=2,
                                                            content_type="application/json"))
                except (ValueError, KeyError):
                    pass
            chan.basic_ack(method.delivery_tag)

        ch.basic_consume(self.names["shop"], on_event)
        while not self.stop.is_set():
            conn.process_data_events(time_limit=0.5)
        conn.close()

    def push(self, params: dict[str, str], content_type="application/x-www-form-urlencoded",
             raw: bytes | None = None) -> int:
        body = raw if raw is not None else urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(self.push_url, data=body, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return 0

    def signed(self, appid: str, data: dict, key: str | None = None, ts: int | None = None) -> dict:
        p = {"appid": appid, "type": "2", "data": json.dumps(data, separators=(",", ":")),
             "timestamp": str(ts or int(time.time()))}
        p["sign"] = sign(p, key or self.merchants.get(appid, {}).get("sign_key", "x" * 16))
        p["sign_type"] = "md5"
        return p

    def slow_body(self) -> None:
        """A client that sends half its body and stalls: 408 after http.body_timeout_ms."""
        try:
            with socket.create_connection(("127.0.0.1", self.ports["serve"]), timeout=10) as s:
                s.sendall(b"POST /weibo/push HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n"
                          b"Content-Length: 100\r\n\r\nappid=1000")
                s.recv(1024)
        except OSError:
            pass

    def noise_loop(self) -> None:
        n = 0
        key = self.merchants["100023"]["sign_key"]
        while not self.stop.wait(2.5):
            n += 1
            kind = n % 8
            data = {"sub_order_id": f"9{n:08d}", "state_code": 301}
            if kind == 0:
                p = self.signed("100023", data)
                p["sign"] = "0" * 32
                self.push(p)
            elif kind == 1:
                self.push(self.signed("100023", data, ts=int(time.time()) - 3600))
            elif kind == 2:
                self.push(self.signed("999999", data, key=key))
            elif kind == 3:
                p = self.signed("100023", data)
                del p["timestamp"]
                self.push(p)
            elif kind == 4:
                self.push({}, raw=b"appid=100023&data=" + b"x" * 70000)
            elif kind == 5:
                self.push({}, content_type="text/plain", raw=b"hello")
            elif kind == 6:
                p = self.signed("100024", data)
                self.push(p)
                self.push(p)  # the same event again: duplicate
            elif kind == 7 and n % 24 == 7:
                threading.Thread(target=self.slow_body, daemon=True).start()

    def gateway_call(self, interface: str, appid: str, params: dict, key: str | None = None) -> int:
        body = json.dumps({"appid": appid, "params": params}).encode()
        req = urllib.request.Request(f"{self.gateway}/v1/platform/{interface}", data=body, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {key or self.gateway_key}"})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:  # the relay's deadline is 10 s
                r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except (urllib.error.URLError, OSError):
            status = 0
        self.gateway_answers[status] = self.gateway_answers.get(status, 0) + 1
        return status

    def gateway_loop(self) -> None:
        """A stock-sync client of the merchant, as the demo's: sets the stock of ten SKUs in
        turn and reads the goods back, with a few calls the gateway refuses."""
        n = 0
        wrong_key = "wrg_" + "0" * 48
        while not self.stop.wait(0.25):
            if self.gateway_hold.is_set():
                continue
            n += 1
            appid = ("100023", "100024")[(n // 2) % 2]
            if n % 20 == 5:  # not in its interfaces: 403
                self.gateway_call("goods/setGoodsPriceSkuid", appid, {"goods_id": "mon", "sku_id": "1", "price": "9.90"})
            elif n % 20 == 15:  # no client has this key: 401, counted as client "other"
                self.gateway_call("goods/getGoodsInfo", appid, {"goods_id": "mon"}, key=wrong_key)
            elif n % 40 == 31:  # the platform refuses it (40002): 422, permanent
                self.gateway_call("goods/getGoodsInfo", appid, {})
            elif n % 2 == 0:
                self.gateway_call("goods/setGoodsStockSkuid", appid,
                                  {"goods_id": "mon", "sku_id": str((n // 2) % 10), "stock": n})
            else:
                self.gateway_call("goods/getGoodsInfo", appid, {"goods_id": "mon"})

    def unbind(self, bind: bool) -> None:
        import pika
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        ch = conn.channel()
        for q, key in ((self.names["shop"], "order.sub_order.201"),
                       (self.names["events"] + ".log", "order.#")):
            if bind:
                ch.queue_bind(q, self.names["exchange"], key)
            else:
                ch.queue_unbind(q, self.names["exchange"], key)
        conn.close()

    def poison(self) -> None:
        import pika
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        ch = conn.channel()
        for body in (b"not json", b'{"hello":1}', b"\xff\xfe"):
            ch.basic_publish("", self.names["fulfilment"], body)
        for i in range(3):
            ch.basic_publish("", self.names["fulfilment"], json.dumps(
                {"appid": "555555", "sub_order_id": str(i + 1), "action": "finish"}).encode())
        conn.close()

    def forged_keeper_messages(self) -> None:
        import pika
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        ch = conn.channel()
        for i in range(5):
            body = json.dumps({"appid": "100023", "nonce": "00" * 12, "sealed": "ff" * (20 + i)})
            ch.basic_publish(self.names["fulfilment"] + ".tokens", "100023", body.encode())
        conn.close()

    def permanent_codes(self) -> None:
        """The sandbox answers the next 4 calls of any kind with 40002. They are meant for the
        worker's commands (dead letters, cause permanent), so the gateway client pauses until
        they are taken, for 30 s at most; the scenario goes on meanwhile."""
        self.gateway_hold.set()
        try:
            time.sleep(1.0)  # a gateway call in flight ends
            self.admin("/admin/faults", {"code_next": 4, "code": 40002})
            deadline = time.time() + 30
            while time.time() < deadline and not self.stop.is_set():
                with urllib.request.urlopen(f"{self.sandbox}/admin/faults", timeout=10) as r:
                    if json.loads(r.read()).get("code_next", 0) == 0:
                        return
                time.sleep(0.2)
            print("the 40002 answers were not all taken within 30 s: the gateway client goes on", flush=True)
        finally:
            self.gateway_hold.clear()

    def scenario(self, t0: float, scale: float = 1.0) -> None:
        def at(secs: float) -> None:
            while time.time() < t0 + secs * scale and not self.stop.is_set():
                time.sleep(0.2)
            print(f"[{time.time() - t0:6.0f} s]", flush=True)

        at(120); self.admin("/admin/faults", {"error_rate": 0.3})
        at(180); self.admin("/admin/faults", {})
        at(210); self.admin("/admin/tokens/revoke", {"appid": "100023", "code": 21332})
        at(240)
        self.admin("/admin/faults", {"token_fail_next": 3})
        self.admin("/admin/tokens/revoke", {"appid": "100024", "code": 21332})
        at(270); self.unbind(False)
        at(300); self.unbind(True)
        at(330); self.admin("/admin/outage", {"secs": 45})
        at(400)
        self.poison()
        threading.Thread(target=self.permanent_codes, daemon=True).start()
        at(450); self.forged_keeper_messages()
        at(480); self.stop_proc("serve")
        at(510); self.start_relay("serve")
        at(660)


def cmd_stage(args) -> int:
    if not shutil.which("prometheus") and not Path("/usr/bin/prometheus").exists():
        raise SystemExit("needs /usr/bin/prometheus (apt-get install prometheus)")
    try:  # the sandbox is weibo-relay-tooling's; weibo-relay itself has no such command
        has_sandbox = subprocess.run([args.tooling_bin, "sandbox", "--help"], capture_output=True).returncode == 0
    except OSError:
        has_sandbox = False
    if not has_sandbox:
        raise SystemExit(f"--tooling-bin {args.tooling_bin}: no `sandbox` command (give weibo-relay-tooling)")
    workdir = Path(tempfile.mkdtemp(prefix="weibo-relay-render-"))
    stage = Stage(args.relay_bin, args.tooling_bin, workdir)
    version = subprocess.run([args.relay_bin, "--version"], capture_output=True, text=True).stdout.strip()
    tooling_version = subprocess.run([args.tooling_bin, "--version"], capture_output=True, text=True).stdout.strip()
    prom_version = subprocess.run([shutil.which("prometheus") or "/usr/bin/prometheus", "--version"],
                                  capture_output=True, text=True)
    prom_version = (prom_version.stdout or prom_version.stderr).split("\n")[0]
    print(f"run {stage.run}: work dir {workdir}, ports {stage.ports}", flush=True)
    try:
        stage.start()
        with urllib.request.urlopen(f"http://127.0.0.1:{stage.ports['serve']}/metrics", timeout=10) as r:
            exported = r.read().decode()
        missing = [m for m in ("weibo_relay_ready", "weibo_relay_broker_connected", "weibo_relay_build_info")
                   if m not in exported]
        t0 = time.time()
        threads = [threading.Thread(target=f, daemon=True)
                   for f in (stage.orders_loop, stage.consumer_loop, stage.noise_loop, stage.gateway_loop)]
        for t in threads:
            t.start()
        stage.scenario(t0, args.scale)
        end = time.time()
        time.sleep(SCRAPE_SECS * 2)
        fired = http_json(f"{stage.prom}/api/v1/query_range",
                          {"query": 'count by (alertname, alertstate) (ALERTS)', "start": f"{t0:.0f}",
                           "end": f"{end:.0f}", "step": "10"})["data"]["result"]
        firing = sorted({r["metric"]["alertname"] for r in fired if r["metric"].get("alertstate") == "firing"})
        pending = sorted({r["metric"]["alertname"] for r in fired} - set(firing))
        notes = [f"t+{s:>3} s  {what}" for s, what in SCENARIO]
        notes.append("alerts.rules.yml was loaded into that Prometheus; firing during the run: "
                     + (", ".join(firing) or "none") + ("; pending only: " + ", ".join(pending) if pending else ""))
        if missing:
            notes.append(f"this build of the relay does not export {', '.join(missing)} yet: "
                         "the health panel shows `up` only.")
        if not stage.rabbit_scraped:
            notes.append("RabbitMQ's rabbitmq_prometheus plugin is not enabled on this machine's broker (and was not "
                         "enabled for this picture): the queue-depth panels have no data.")
        subtitle = (f"matplotlib rendering of each panel's PromQL (query_range) against a real {prom_version} "
                    f"scraping a real {version}, {args.build} build, every {SCRAPE_SECS} s (serve + worker, the "
                    f"worker with the platform gateway; {tooling_version} sandbox platform, same build, with 120 s "
                    f"tokens; reconcile every 20 s), {datetime.fromtimestamp(t0):%Y-%m-%d %H:%M}-{datetime.fromtimestamp(end):%H:%M}. "
                    "Not a Grafana screenshot.")
        overrides = {"events_queue": stage.names["events"], "fulfilment_queue": stage.names["fulfilment"]}
        summary = render(stage.prom, t0 - 20, end, Path(args.out), overrides, subtitle, notes)
        for title, n in summary.items():
            print(f"  {n:3d} series  {title}")
        print(f"gateway answers (HTTP status: calls): {dict(sorted(stage.gateway_answers.items()))}")
        print(f"firing: {firing}\npending only: {pending}\nwrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")
    finally:
        stage.cleanup()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def cmd_render(args) -> int:
    end = time.time()
    start = end - args.minutes * 60
    overrides = dict(v.split("=", 1) for v in args.var)
    subtitle = (f"matplotlib rendering of each panel's PromQL (query_range) against {args.prometheus}, "
                f"{datetime.fromtimestamp(start):%Y-%m-%d %H:%M}-{datetime.fromtimestamp(end):%H:%M}. "
                "Not a Grafana screenshot.")
    summary = render(args.prometheus.rstrip("/"), start, end, Path(args.out), overrides, subtitle, [])
    for title, n in summary.items():
        print(f"  {n:3d} series  {title}")
    print(f"wrote {args.out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("stage", help="run Prometheus + sandbox + relay under load, then render")
    st.add_argument("--relay-bin", required=True, help="a copy of the weibo-relay binary")
    st.add_argument("--tooling-bin", required=True,
                    help="a copy of the weibo-relay-tooling binary of the same build (its `sandbox`)")
    st.add_argument("--build", required=True, choices=("debug", "release", "dist"),
                    help="the cargo profile that built the binaries, printed on the picture beside the "
                         "version (a debug build's latencies are not a release build's); nothing in the "
                         "binary says it")
    st.add_argument("--out", default=str(OUT))
    st.add_argument("--keep", action="store_true", help="keep the work dir (logs, TSDB)")
    st.add_argument("--scale", type=float, default=1.0,
                    help="multiplies the scenario's times (0.3: a quick 3-minute look)")
    st.set_defaults(func=cmd_stage)
    rd = sub.add_parser("render", help="render from an existing Prometheus")
    rd.add_argument("--prometheus", required=True)
    rd.add_argument("--minutes", type=float, default=60)
    rd.add_argument("--var", action="append", default=[], help="NAME=VALUE for a dashboard variable")
    rd.add_argument("--out", default=str(OUT))
    rd.set_defaults(func=cmd_render)
    args = ap.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
