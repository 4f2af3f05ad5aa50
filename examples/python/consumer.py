#!/usr/bin/env python3
"""A merchant's fulfilment consumer for weibo-relay, with pika.

Reads paid sub-order events from a queue of its own, "delivers", answers each order with a
fulfilment command (finish, or close with a reason for every --close-every-th order) and
reads the relay's outcomes. With --orders N it exits after N orders and their outcomes,
printing one summary line.

    pip install -r requirements.txt
    python consumer.py --orders 20          # or until Ctrl-C without --orders

Every option also reads an environment variable (shown by --help); the defaults are the
relay's own names. Message shapes: docs/asyncapi.yaml.
"""

import argparse
import json
import os
import sys
import time

import pika

# The routing key of "paid, deliver now" events (state 201 in the platform's code table).
PAID = "order.sub_order.201"


def options():
    env = os.environ.get
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--amqp-url", default=env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"), help="AMQP_URL")
    cli.add_argument("--exchange", default=env("WEIBO_EVENTS_EXCHANGE", "weibo.events"), help="the relay's amqp.events_exchange (WEIBO_EVENTS_EXCHANGE)")
    cli.add_argument("--fulfilment-queue", default=env("WEIBO_FULFILMENT_QUEUE", "weibo.fulfilment"), help="the relay's amqp.fulfilment_queue (WEIBO_FULFILMENT_QUEUE)")
    cli.add_argument("--name", default=env("CONSUMER_NAME", "shop.example"), help="prefix of this consumer's own queues (CONSUMER_NAME)")
    cli.add_argument("--close-every", type=int, default=int(env("CLOSE_EVERY", "10")), help="close every Nth order instead of finishing it; 0: never (CLOSE_EVERY)")
    cli.add_argument("--orders", type=int, default=0, help="exit after answering N orders and seeing their outcomes")
    cli.add_argument("--seconds", type=float, default=0, help="give up after S seconds (exit 1)")
    return cli.parse_args()


def main():
    args = options()
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    channel = connection.channel()
    # Publisher confirms: basic_publish returns only once the broker has the command safely,
    # and raises if it refused it or (mandatory=True) no queue took it.
    channel.confirm_delivery()
    channel.basic_qos(prefetch_count=20)  # at most 20 unacknowledged events in flight to us

    # Queues of our own: the relay declares none for consumers, and consumers of one queue
    # share its messages, so sharing another system's would steal its events. A queue bound to
    # the events exchange gets a copy of every message with a matching routing key from the
    # moment it is bound; durable and quorum, it keeps collecting (replicated) while we are down.
    orders_queue, outcomes_queue = f"{args.name}.paid-orders", f"{args.name}.outcomes"
    for queue, key in [(orders_queue, PAID), (outcomes_queue, "fulfilment.#")]:
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(queue, args.exchange, key)

    # Delivery is at least once: the same event can come twice (same message_id), and one
    # order state can come again with another id (reconciled after lost pushes). In memory
    # here; in production keep these where the delivery is recorded (a unique key written in
    # the same transaction), so a restart or a second instance does not deliver twice.
    seen_ids, seen_states, seen_outcomes = set(), set(), set()
    awaiting = set()  # (appid, sub_order_id) answered, outcome not seen yet
    counts = dict(orders=0, finished=0, closed=0, failed=0, duplicate_events=0, duplicate_outcomes=0)

    def on_event(ch, method, props, body):
        try:
            event = json.loads(body)
            state = (event["appid"], event["sub_order_id"], str(event["state_code"]))
        except (ValueError, KeyError) as e:  # requeueing what we can never read would loop
            print(f"unreadable event dropped: {e!r}", flush=True)
            ch.basic_reject(method.delivery_tag, requeue=False)
            return
        if props.message_id in seen_ids or state in seen_states:
            counts["duplicate_events"] += 1
            ch.basic_ack(method.delivery_tag)  # already answered: just take it off the queue
            return
        counts["orders"] += 1
        appid, sub_order_id = event["appid"], event["sub_order_id"]
        # ... deliver the goods here ...
        command = {"appid": appid, "sub_order_id": sub_order_id, "action": "finish"}
        if args.close_every and counts["orders"] % args.close_every == 0:
            command.update(action="close", reason="out of stock")
        awaiting.add((appid, sub_order_id))
        # To the default exchange (""), which routes by queue name; persistent; mandatory so
        # a missing queue raises. The event's traceparent on the command makes push, event,
        # command, platform call and outcome one trace. Any error ends the program before
        # the ack, so the event is answered again on restart (a repeat is harmless).
        trace = {k: v for k, v in (props.headers or {}).items() if k in ("traceparent", "tracestate")}
        ch.basic_publish(
            exchange="",
            routing_key=args.fulfilment_queue,
            body=json.dumps(command).encode(),
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json", headers=trace),
            mandatory=True,
        )
        seen_ids.add(props.message_id)
        seen_states.add(state)
        ch.basic_ack(method.delivery_tag)  # last: only now is the order answered

    def on_outcome(ch, method, props, body):
        # Outcomes are at least once too; one command's result always has the same message_id.
        if props.message_id in seen_outcomes:
            counts["duplicate_outcomes"] += 1
        else:
            seen_outcomes.add(props.message_id)
            outcome = json.loads(body)
            command = outcome["command"]
            key = (command["appid"], command["sub_order_id"])
            if key in awaiting:  # an outcome of our own command (others' are bound here too)
                awaiting.discard(key)
                if method.routing_key == "fulfilment.failed":
                    counts["failed"] += 1
                    print(f"failed: {command['sub_order_id']}: {outcome['msg']}", flush=True)
                else:
                    counts["finished" if command["action"] == "finish" else "closed"] += 1
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(orders_queue, on_event)
    channel.basic_consume(outcomes_queue, on_outcome)
    print(f"ready: {orders_queue} <- {args.exchange} {PAID}; {outcomes_queue} <- fulfilment.#", flush=True)

    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while not (args.orders and counts["orders"] >= args.orders and not awaiting):
            if deadline and time.monotonic() > deadline:
                print(f"time is up: {len(awaiting)} outcomes missing", flush=True)
                return 1
            connection.process_data_events(time_limit=0.2)  # runs the callbacks above
    except KeyboardInterrupt:
        pass
    finally:
        print("summary: " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
        if connection.is_open:
            connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
