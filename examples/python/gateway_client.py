#!/usr/bin/env python3
"""A client of the relay's platform gateway (docs/platform-gateway.md), standard library only.

Sets the stock of three SKUs of one goods item through the gateway, then reads the item back.
It follows the gateway's answers: 503 means not done (wait Retry-After, repeat); 504 means a
write may have happened (read back before repeating); anything else but 200 is final.

Environment: GATEWAY_URL (http://host:port), GATEWAY_KEY (from `weibo-relay gateway
new-key`), APPID, GOODS_ID (default 371965).
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

URL = os.environ["GATEWAY_URL"].rstrip("/")
KEY = os.environ["GATEWAY_KEY"]
APPID = os.environ["APPID"]
GOODS_ID = os.environ.get("GOODS_ID", "371965")
MAX_TRIES = 5
counts = {"set": 0, "not_done": 0, "read_back": 0}


def call(interface, params):
    """One gateway request: (HTTP status, answer, Retry-After seconds)."""
    body = json.dumps({"appid": APPID, "params": params}).encode()
    request = urllib.request.Request(
        f"{URL}/v1/platform/{interface}",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response), 0
    except urllib.error.HTTPError as error:
        retry_after = int(error.headers.get("Retry-After") or 0)
        return error.code, json.load(error), retry_after


def stocks():
    """The item's stock by SKU, as the platform holds it."""
    for _ in range(MAX_TRIES):
        status, answer, retry_after = call("goods/getGoodsInfo", {"goods_id": GOODS_ID})
        if status == 200:
            return {s["sku_id"]: s["stock"] for s in answer["data"]["skus"]}
        if status != 503:
            sys.exit(f"getGoodsInfo: {status} {answer}")
        time.sleep(retry_after or 1)
    sys.exit("getGoodsInfo: not done after retries")


def set_stock(sku_id, stock):
    """Sets one SKU's stock; never repeats a write that may have happened without reading back."""
    params = {"goods_id": GOODS_ID, "sku_id": sku_id, "stock": stock}
    for _ in range(MAX_TRIES):
        status, answer, retry_after = call("goods/setGoodsStockSkuid", params)
        if status == 200:
            counts["set"] += 1
            return
        if status == 503:
            counts["not_done"] += 1
            time.sleep(retry_after or 1)
            continue
        if status == 504:
            counts["read_back"] += 1
            if stocks().get(sku_id) == stock:
                counts["set"] += 1
                return
            continue
        sys.exit(f"setGoodsStockSkuid {sku_id}: {status} {answer}")
    sys.exit(f"setGoodsStockSkuid {sku_id}: not done after retries")


for n in (1, 2, 3):
    set_stock(f"sku-{n}", 10 * n)
final = stocks()
print(
    "summary: set={set} not_done={not_done} read_back={read_back} stocks={stocks}".format(
        stocks=",".join(f"{k}:{v}" for k, v in sorted(final.items())), **counts
    )
)
