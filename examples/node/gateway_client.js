// A client of the relay's platform gateway (docs/platform-gateway.md), Node 18+ only (fetch).
//
// Sets the stock of three SKUs of one goods item through the gateway, then reads the item
// back. It follows the gateway's answers: 503 means not done (wait Retry-After, repeat); 504
// means a write may have happened (read back before repeating); anything else but 200 is final.
//
// Environment: GATEWAY_URL (http://host:port), GATEWAY_KEY (from `weibo-relay gateway
// new-key`), APPID, GOODS_ID (default 371965).
'use strict';

const URL = process.env.GATEWAY_URL.replace(/\/$/, '');
const KEY = process.env.GATEWAY_KEY;
const APPID = process.env.APPID;
const GOODS_ID = process.env.GOODS_ID || '371965';
const MAX_TRIES = 5;
const counts = { set: 0, not_done: 0, read_back: 0 };
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));

// One gateway request: { status, answer, retryAfter }.
async function call(iface, params) {
  const response = await fetch(`${URL}/v1/platform/${iface}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ appid: APPID, params }),
  });
  return {
    status: response.status,
    answer: await response.json(),
    retryAfter: Number(response.headers.get('retry-after') || 0),
  };
}

function fail(message) {
  console.error(message);
  process.exit(1);
}

// The item's stock by SKU, as the platform holds it.
async function stocks() {
  for (let i = 0; i < MAX_TRIES; i += 1) {
    const { status, answer, retryAfter } = await call('goods/getGoodsInfo', { goods_id: GOODS_ID });
    if (status === 200) return Object.fromEntries(answer.data.skus.map((s) => [s.sku_id, s.stock]));
    if (status !== 503) fail(`getGoodsInfo: ${status} ${JSON.stringify(answer)}`);
    await sleep(retryAfter || 1);
  }
  return fail('getGoodsInfo: not done after retries');
}

// Sets one SKU's stock; never repeats a write that may have happened without reading back.
async function setStock(skuId, stock) {
  const params = { goods_id: GOODS_ID, sku_id: skuId, stock };
  for (let i = 0; i < MAX_TRIES; i += 1) {
    const { status, answer, retryAfter } = await call('goods/setGoodsStockSkuid', params);
    if (status === 200) {
      counts.set += 1;
      return;
    }
    if (status === 503) {
      counts.not_done += 1;
      await sleep(retryAfter || 1);
    } else if (status === 504) {
      counts.read_back += 1;
      if ((await stocks())[skuId] === stock) {
        counts.set += 1;
        return;
      }
    } else {
      fail(`setGoodsStockSkuid ${skuId}: ${status} ${JSON.stringify(answer)}`);
    }
  }
  fail(`setGoodsStockSkuid ${skuId}: not done after retries`);
}

(async () => {
  for (const n of [1, 2, 3]) await setStock(`sku-${n}`, 10 * n);
  const final = await stocks();
  const shown = Object.keys(final).sort().map((k) => `${k}:${final[k]}`).join(',');
  console.log(`summary: set=${counts.set} not_done=${counts.not_done} read_back=${counts.read_back} stocks=${shown}`);
})();
