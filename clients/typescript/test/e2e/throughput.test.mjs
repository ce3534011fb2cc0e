// How many messages per second a page sustains with zero loss. One page
// publishes N messages, another receives them; the publisher stays at most
// WINDOW messages ahead of what the subscriber has received (the pages
// share a BroadcastChannel), so the subscriber's replay log (1024 messages)
// never overflows and the rate measured is the one the whole path sustains.
// Every message is checked (count, order, no duplicate, no gap). The
// figures go to artifacts/throughput.json. Bounded: N messages, 150 s.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from '../support/browser.mjs';
import { startGateway } from '../support/gateway.mjs';
import { startStaticServer } from '../support/static-server.mjs';
import { openClient } from '../support/pages.mjs';

const N = Number(process.env.THROUGHPUT_MESSAGES ?? 20_000);
const WINDOW = 64;
const PAYLOAD = 64;
const ARTIFACTS = fileURLToPath(new URL('../../artifacts/', import.meta.url));
let gateway, web, browser;

before(async () => {
  gateway = await startGateway();
  web = await startStaticServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await web?.close();
  await gateway?.stop();
});

/**
 * The SDK's own cost in the page, without network or gateway: MESSAGE
 * frames decoded and run through the session (dedup, ACK pacing, events).
 */
async function coreRate(page) {
  return page.evaluate(() => {
    const { Session, encode, decode } = window.FerrySDK;
    const s = new Session();
    s.startHandshake('', 0);
    s.pollTransmit(0);
    s.handleFrame({
      type: 'WELCOME', sessionId: new Uint8Array(16), resumeSecret: new Uint8Array(32), outcome: 'new',
      heartbeatIntervalMs: 25000n, resumeWindowMs: 120000n, maxFrameSize: 65536n, maxSubscriptions: 64n, lastClientSeq: 0n,
    }, 0);
    while (s.pollOutput());
    const n = 100_000;
    const frames = [];
    for (let i = 1; i <= n; i++) {
      frames.push(encode({ type: 'MESSAGE', seq: BigInt(i), channel: 'bench:1', channelOffset: BigInt(i), payload: new Uint8Array(64) }).slice().buffer);
    }
    let delivered = 0;
    const t0 = performance.now();
    for (const f of frames) {
      s.handleFrame(decode(new Uint8Array(f)), performance.now());
      for (let o = s.pollOutput(); o; o = s.pollOutput()) delivered++;
      for (let f2 = s.pollTransmit(0); f2; f2 = s.pollTransmit(0)) encode(f2);
    }
    const ms = performance.now() - t0;
    if (delivered !== n) throw new Error(`delivered ${delivered} of ${n}`);
    return Math.round((n * 1000) / ms);
  });
}

test(`a page receives ${N} messages with zero loss; messages per second measured`, { timeout: 150_000 }, async (t) => {
  const sub = await openClient(browser, web.url, gateway.wsUrl);
  const pub = await openClient(browser, web.url, gateway.wsUrl);
  await sub.evaluate(async ({ n }) => {
    const r = (window.bench = { count: 0, errors: 0, firstPerf: 0, lastPerf: 0 });
    const progress = new BroadcastChannel('ferry-bench');
    window.benchDone = new Promise((resolve) => {
      const sub = window.client.subscribe('bench:1', (m) => {
        const i = new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0);
        if (i !== r.count + 1) r.errors++;
        r.count++;
        if (r.count === 1) r.firstPerf = performance.now();
        if (r.count % 16 === 0 || r.count === n) progress.postMessage(r.count);
        if (r.count === n) {
          r.lastPerf = performance.now();
          resolve();
        }
      });
      window.subReady = sub.ready;
    });
    await window.subReady;
  }, { n: N });

  const pubResult = await pub.evaluate(async ({ n, windowSize, size }) => {
    let received = 0;
    let wake = null;
    const progress = new BroadcastChannel('ferry-bench');
    progress.onmessage = (e) => {
      received = e.data;
      wake?.();
    };
    const acks = [];
    let stalls = 0;
    const t0 = performance.now();
    for (let i = 1; i <= n; i++) {
      while (i - received > windowSize) {
        const moved = await Promise.race([
          new Promise((r) => (wake = () => r(true))),
          new Promise((r) => setTimeout(() => r(false), 10_000)),
        ]);
        wake = null;
        if (!moved) return { error: `the subscriber stopped at ${received}`, stalls };
        stalls++;
      }
      const payload = new Uint8Array(size);
      new DataView(payload.buffer).setUint32(0, i);
      acks.push(window.client.publish('bench:1', payload));
    }
    const settled = await Promise.allSettled(acks);
    return { failed: settled.filter((s) => s.status !== 'fulfilled').length, ms: performance.now() - t0, stalls };
  }, { n: N, windowSize: WINDOW, size: PAYLOAD });
  await sub.evaluate(() => Promise.race([window.benchDone, new Promise((r) => setTimeout(r, 30_000))]));
  const r = await sub.evaluate(() => ({ ...window.bench, stats: window.client.stats(), events: window.events.filter(([e]) => e !== "state").map(([e, d]) => (e === "disconnected" ? `${e}:${d}` : e)) }));
  t.diagnostic(`publisher ${JSON.stringify(pubResult)}; subscriber ${JSON.stringify(r, (k, v) => (typeof v === 'bigint' ? String(v) : v))}`);

  assert.equal(pubResult.error, undefined);
  assert.equal(pubResult.failed, 0, 'every publish acknowledged');
  assert.equal(r.count, N, 'every message received');
  assert.equal(r.errors, 0, 'in order, no duplicate, no gap');
  assert.equal(r.stats.messagesReceived, N);
  assert.deepEqual(r.events, [], 'no disconnect, no gap');
  const receiveRate = Math.round(((N - 1) * 1000) / (r.lastPerf - r.firstPerf));
  const figures = {
    messages: N,
    payload_bytes: PAYLOAD,
    window: WINDOW,
    receive_msgs_per_s: receiveRate,
    publish_msgs_per_s: Math.round((N * 1000) / pubResult.ms),
    publisher_waits_for_subscriber: pubResult.stalls,
    sdk_core_in_page_msgs_per_s: await coreRate(sub),
    lost: N - r.count,
    chromium: await sub.evaluate(() => navigator.userAgent.match(/Chrome\/[\d.]+/)?.[0]),
    cores: (await import('node:os')).availableParallelism(),
    load_average_1m: (await import('node:os')).loadavg()[0],
    measured_at: new Date().toISOString(),
  };
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(ARTIFACTS + 'throughput.json', JSON.stringify(figures, null, 2) + '\n');
  t.diagnostic(`throughput: ${JSON.stringify(figures)}`);
  // A floor far below what a page does, to catch a collapse (e.g. a timer per message).
  assert.ok(receiveRate > 300, `only ${receiveRate} msg/s`);
});
