"""A hand-written Weibo push receiver, the baseline weibo-relay is measured against.

What a competent developer writes in an afternoon with aiohttp and aio-pika: the same work per
push as the relay's receiver (form parsing, the md5 signature in its trimmed form, the
timestamp window, the sha256 event id, the contract's envelope, one persistent mandatory
publish per push to a topic exchange routed to a quorum queue and a stream, answered 200 only
after the broker's confirm). It has no dedup window, no metrics and no logging per push, so it
does less than the relay, not more.

    python receiver.py --port 18090 --amqp amqp://guest:guest@127.0.0.1:5672/%2f \
        --exchange weibo-relay-baseline.events --queue weibo-relay-baseline.orders \
        --appid 100023 --sign-key bench-sign-key-0123456789
"""

import argparse
import asyncio
import datetime
import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl

import aio_pika
from aiohttp import web

UNSIGNED = {"sign", "sign_type", "access_token"}


def canonical(fields):
    """The trimmed signing form: non-empty values, sorted by key, trimmed, joined by &."""
    pairs = sorted((k, v.strip()) for k, v in fields.items() if k not in UNSIGNED and v != "")
    return "&".join(f"{k}={v}" for k, v in pairs)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    ap.add_argument("--exchange", default="weibo-relay-baseline.events")
    ap.add_argument("--queue", default="weibo-relay-baseline.orders")
    ap.add_argument("--appid", default="100023")
    ap.add_argument("--sign-key", default="bench-sign-key-0123456789")
    args = ap.parse_args()
    keys = {args.appid: args.sign_key}

    connection = await aio_pika.connect(args.amqp)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(args.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(args.queue, durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(exchange, "order.#")
    log = await channel.declare_queue(args.queue + ".log", durable=True,
                                      arguments={"x-queue-type": "stream", "x-max-age": "7D"})
    await log.bind(exchange, "order.#")

    def refuse(status, code, msg):
        return web.json_response({"code": code, "msg": msg}, status=status)

    async def push(request):
        if request.content_type != "application/x-www-form-urlencoded":
            return refuse(415, 41500, "unsupported content type")
        body = await request.read()
        if len(body) > 65536:
            return refuse(413, 41300, "body too large")
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
            appid, type_, data, timestamp, sign = (fields[k] for k in ("appid", "type", "data", "timestamp", "sign"))
            parsed = json.loads(data)
            type_code, ts = int(type_), int(timestamp)
        except (KeyError, ValueError, UnicodeDecodeError):
            return refuse(400, 40002, "malformed push")
        key = keys.get(appid)
        if key is None:
            return refuse(403, 40301, "unknown appid")
        signed = canonical(fields)
        expected = hashlib.md5((signed + key).encode()).hexdigest()
        if not hmac.compare_digest(expected, sign.lower()):
            return refuse(401, 40001, "bad signature")
        if abs(time.time() - ts) > 300:
            return refuse(401, 40003, "timestamp outside the window")
        event_id = hashlib.sha256(f"{appid}\n{type_code}\n{data.strip()}".encode()).hexdigest()[:32]
        state = parsed.get("state_code") if isinstance(parsed, dict) else None
        sub_order_id = parsed.get("sub_order_id") if isinstance(parsed, dict) else None
        kind = "sub_order" if type_code == 2 else f"type_{type_code}"
        envelope = {
            "event_id": event_id, "appid": appid, "type": type_code, "kind": kind,
            "sub_order_id": None if sub_order_id is None else str(sub_order_id),
            "state_code": state, "timestamp": ts,
            "received_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "params": {k: v for k, v in fields.items() if k not in UNSIGNED},
            "data": parsed,
        }
        message = aio_pika.Message(
            json.dumps(envelope, ensure_ascii=False).encode(),
            content_type="application/json", message_id=event_id, type=kind,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, timestamp=int(time.time()),
            headers={"x-weibo-appid": appid, "x-weibo-source": "push"},
        )
        try:
            # With publisher confirms, publish returns once the broker acked (or raises).
            await exchange.publish(message, routing_key=f"order.{kind}.{state if state is not None else 'none'}",
                                   mandatory=True, timeout=3)
        except Exception:
            return refuse(503, 50300, "event not stored, retry later")
        return web.json_response({"code": 0, "msg": "success"})

    async def readyz(_request):
        return web.json_response({"code": 0, "msg": "ready"})

    app = web.Application(client_max_size=65536)
    app.router.add_post("/weibo/push", push)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
