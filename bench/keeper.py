#!/usr/bin/env python3
"""Tokens issued and calls refused for the token, with N worker processes sharing one merchant.

The scenario of issue "One token keeper": a sandbox issuing 40 s tokens, N `weibo-relay worker`
processes, 80 s of steady finish commands (about 40 a second). Reads the sandbox's counters at
the end. Usage: python3 bench/keeper.py BINARY N [SECONDS] [TOKEN_TTL]  (needs pika).
"""
import json, os, re, signal, subprocess, sys, tempfile, time, urllib.request, uuid

import pika

binary, n = sys.argv[1], int(sys.argv[2])
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 80
ttl = sys.argv[4] if len(sys.argv) > 4 else "40"
run = uuid.uuid4().hex[:8]
tmp = tempfile.mkdtemp()
merchant = f'''[[merchants]]
appid = "100023"
sign_key = "bench-sign-key-{run}-0123456789"
client_id = "772915"
client_secret = "bench-client-secret-{run}"
uid = "1404376560"
'''
sandbox_cfg = os.path.join(tmp, "sandbox.toml")
open(sandbox_cfg, "w").write(merchant)
sandbox = subprocess.Popen([binary, "sandbox", "--config", sandbox_cfg, "--bind", "127.0.0.1:0",
                            "--token-ttl", ttl], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
found = {}
while len(found) < 2:  # log lines share stdout: take the two settings lines
    m = re.match(r'(oauth_base|api_base) = "(.*)"', sandbox.stdout.readline())
    if m:
        found[m.group(1)] = m.group(2)
oauth, api = found["oauth_base"], found["api_base"]
fq = f"bench-keeper.{run}.fulfilment"
cfg = os.path.join(tmp, "worker.toml")
open(cfg, "w").write(f'''[http]
bind = "127.0.0.1:0"
[amqp]
events_exchange = "bench-keeper.{run}.events"
events_queue = "bench-keeper.{run}.orders"
fulfilment_queue = "{fq}"
[weibo]
api_base = "{api}"
oauth_base = "{oauth}"
retry_base_ms = 500
retry_max_ms = 2000
rate_limit_per_sec = 1000
{merchant}''')
env = dict(os.environ, RUST_LOG="warn")
workers = [subprocess.Popen([binary, "worker", "--config", cfg], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]
conn = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f"))
ch = conn.channel()

def admin(path, body=None):
    req = urllib.request.Request(oauth + path, data=json.dumps(body).encode() if body else None,
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))

time.sleep(3)  # the workers connect, elect a keeper and take its token
sent, start = 0, time.time()
while time.time() - start < seconds:
    ids = admin("/admin/orders", {"appid": "100023", "count": 4})["sub_order_ids"]
    for i in ids:
        ch.basic_publish("", fq, json.dumps({"appid": "100023", "sub_order_id": i, "action": "finish"}),
                         pika.BasicProperties(delivery_mode=2))
    sent += len(ids)
    time.sleep(0.1)
deadline = time.time() + 60
while time.time() < deadline:
    if all(admin(f"/admin/orders/100023/{i}")["state_code"] == 301 for i in ids):
        break
    time.sleep(0.5)
counters = admin("/admin/counters")
finish = counters["calls"].get("retailerFinishSub", {})
refused = finish.get("21332", 0) + finish.get("21327", 0)
print(json.dumps({"workers": n, "seconds": seconds, "token_ttl": int(ttl), "commands": sent,
                  "tokens_issued": counters["tokens_issued"].get("100023", 0),
                  "calls": sum(finish.values()), "refused_for_token": refused,
                  "calls_by_code": finish}))
for w in workers:
    w.send_signal(signal.SIGTERM)
for w in workers:
    w.wait(timeout=30)
sandbox.send_signal(signal.SIGTERM)
for q in [fq, fq + ".dead", fq + ".keeper", fq + ".permits", f"bench-keeper.{run}.orders"] + \
         [f"{fq}.retry.{ms}ms" for ms in (500, 1000, 2000)]:
    ch.queue_delete(q)
for x in [f"bench-keeper.{run}.events", fq + ".tokens"]:
    ch.exchange_delete(x)
conn.close()
