#!/usr/bin/env node
// A merchant's fulfilment consumer for weibo-relay, with amqplib.
//
// Reads paid sub-order events from a queue of its own, "delivers", answers each order with a
// fulfilment command (finish, or close with a reason for every --close-every-th order) and
// reads the relay's outcomes. With --orders N it exits after N orders and their outcomes,
// printing one summary line.
//
//   npm ci
//   node consumer.js --orders 20            # or until Ctrl-C without --orders
//
// Every option also reads an environment variable (see OPTIONS); the defaults are the
// relay's own names. Message shapes: docs/asyncapi.yaml.
'use strict';
const { parseArgs } = require('node:util');
const amqp = require('amqplib');

// The routing key of "paid, deliver now" events (state 201 in the platform's code table).
const PAID = 'order.sub_order.201';

const env = process.env;
const OPTIONS = {
  'amqp-url': { type: 'string', default: env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f' },
  exchange: { type: 'string', default: env.WEIBO_EVENTS_EXCHANGE || 'weibo.events' }, // amqp.events_exchange
  'fulfilment-queue': { type: 'string', default: env.WEIBO_FULFILMENT_QUEUE || 'weibo.fulfilment' },
  name: { type: 'string', default: env.CONSUMER_NAME || 'shop.example' }, // prefix of our own queues
  'close-every': { type: 'string', default: env.CLOSE_EVERY || '10' }, // close every Nth order; 0: never
  orders: { type: 'string', default: '0' }, // exit after N orders and their outcomes
  seconds: { type: 'string', default: '0' }, // give up after S seconds (exit 1)
};

async function main() {
  const { values: args } = parseArgs({ options: OPTIONS });
  const [closeEvery, orders, seconds] = [args['close-every'], args.orders, args.seconds].map(Number);
  const connection = await amqp.connect(args['amqp-url']);
  // A confirm channel: each publish's callback runs once the broker has the message safely.
  const channel = await connection.createConfirmChannel();
  await channel.prefetch(20); // at most 20 unacknowledged events in flight to us

  // Queues of our own: the relay declares none for consumers, and consumers of one queue
  // share its messages, so sharing another system's would steal its events. A queue bound to
  // the events exchange gets a copy of every message with a matching routing key from the
  // moment it is bound; durable and quorum, it keeps collecting (replicated) while we are down.
  const ordersQueue = `${args.name}.paid-orders`;
  const outcomesQueue = `${args.name}.outcomes`;
  for (const [queue, key] of [[ordersQueue, PAID], [outcomesQueue, 'fulfilment.#']]) {
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.bindQueue(queue, args.exchange, key);
  }

  // Delivery is at least once: the same event can come twice (same messageId), and one
  // order state can come again with another id (reconciled after lost pushes). In memory
  // here; in production keep these where the delivery is recorded (a unique key written in
  // the same transaction), so a restart or a second instance does not deliver twice.
  const seenIds = new Set();
  const seenStates = new Set();
  const seenOutcomes = new Set();
  const awaiting = new Set(); // "appid/sub_order_id" answered, outcome not seen yet
  const counts = { orders: 0, finished: 0, closed: 0, failed: 0, duplicate_events: 0, duplicate_outcomes: 0 };

  // mandatory: a command no queue takes comes back here (before its confirm): stop, unacked.
  channel.on('return', () => fail(new Error(`no queue ${args['fulfilment-queue']}: is the relay running?`)));

  await channel.consume(ordersQueue, async (msg) => {
    let event;
    try {
      event = JSON.parse(msg.content.toString());
    } catch (e) {
      console.log(`unreadable event dropped: ${e.message}`); // requeueing it would loop
      return channel.reject(msg, false);
    }
    const state = `${event.appid}/${event.sub_order_id}/${event.state_code}`;
    if (seenIds.has(msg.properties.messageId) || seenStates.has(state)) {
      counts.duplicate_events += 1;
      return channel.ack(msg); // already answered: just take it off the queue
    }
    // Claimed before the first await: the next delivery may run meanwhile.
    seenIds.add(msg.properties.messageId);
    seenStates.add(state);
    counts.orders += 1;
    // ... deliver the goods here ...
    const command = { appid: event.appid, sub_order_id: event.sub_order_id, action: 'finish' };
    if (closeEvery && counts.orders % closeEvery === 0) Object.assign(command, { action: 'close', reason: 'out of stock' });
    awaiting.add(`${event.appid}/${event.sub_order_id}`);
    // The event's traceparent on the command makes push, event, command, platform call and
    // outcome one trace.
    const { traceparent, tracestate } = msg.properties.headers || {};
    const headers = Object.fromEntries(Object.entries({ traceparent, tracestate }).filter(([, v]) => v));
    try {
      await new Promise((resolve, reject) =>
        // To the default exchange (''), which routes by queue name; persistent; confirmed.
        channel.publish('', args['fulfilment-queue'], Buffer.from(JSON.stringify(command)),
          { persistent: true, contentType: 'application/json', mandatory: true, headers },
          (err) => (err ? reject(err) : resolve())));
    } catch (e) {
      return fail(e); // not acked: the event is answered again on restart (a repeat is harmless)
    }
    channel.ack(msg); // last: only now is the order answered
  });

  await channel.consume(outcomesQueue, (msg) => {
    // Outcomes are at least once too; one command's result always has the same messageId.
    if (seenOutcomes.has(msg.properties.messageId)) {
      counts.duplicate_outcomes += 1;
    } else {
      seenOutcomes.add(msg.properties.messageId);
      const outcome = JSON.parse(msg.content.toString());
      const c = outcome.command;
      if (awaiting.delete(`${c.appid}/${c.sub_order_id}`)) { // ours (others' are bound here too)
        if (msg.fields.routingKey === 'fulfilment.failed') {
          counts.failed += 1;
          console.log(`failed: ${c.sub_order_id}: ${outcome.msg}`);
        } else {
          counts[c.action === 'finish' ? 'finished' : 'closed'] += 1;
        }
      }
    }
    channel.ack(msg);
  });
  console.log(`ready: ${ordersQueue} <- ${args.exchange} ${PAID}; ${outcomesQueue} <- fulfilment.#`);

  const code = await new Promise((resolve) => {
    process.once('SIGINT', () => resolve(0));
    if (seconds) setTimeout(() => { console.log(`time is up: ${awaiting.size} outcomes missing`); resolve(1); }, seconds * 1000);
    setInterval(() => orders && counts.orders >= orders && awaiting.size === 0 && resolve(0), 100);
  });
  console.log(`summary: ${Object.entries(counts).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  await connection.close();
  return code;
}

function fail(error) {
  console.error(`error: ${error.message}`);
  process.exit(1);
}

main().then((code) => process.exit(code), fail);
