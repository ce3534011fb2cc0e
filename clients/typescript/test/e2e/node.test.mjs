// The SDK in Node against a real gateway, over Node's built-in WebSocket
// (Node 20: --experimental-websocket, which `npm test` adds; Node 22+: by
// default): publish/subscribe, and a resume through a cut connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ferry } from '../../dist/index.js';
import { startGateway } from '../support/gateway.mjs';
import { startProxy } from '../support/proxy.mjs';

let gateway;
const hasWebSocket = typeof globalThis.WebSocket === 'function';

before(async () => {
  gateway = await startGateway();
});

after(async () => {
  await gateway?.stop();
});

test('Node has a WebSocket for the SDK (scripts/test.mjs adds --experimental-websocket on Node 20)', () => {
  assert.ok(hasWebSocket, 'globalThis.WebSocket is missing: run node with --experimental-websocket (Node 20)');
});

test('Node: publish, subscribe, resume after a cut, close', { timeout: 60_000, skip: !hasWebSocket }, async () => {
  const proxy = await startProxy(gateway.wsPort);
  const a = await Ferry.connect(proxy.url);
  const b = await Ferry.connect(gateway.wsUrl);
  try {
    const got = [];
    const sub = a.subscribe('node:1', (m) => got.push(m.text()));
    assert.deepEqual(await sub.ready, { channelOffset: 0 });
    const ack = await b.publish('node:1', 'one');
    assert.deepEqual(ack, { channel: 'node:1', clientSeq: 1 });
    for (let i = 0; i < 100 && got.length < 1; i++) await sleep(20);
    assert.deepEqual(got, ['one']);

    const resumed = new Promise((r) => a.once('resumed', r));
    assert.equal(proxy.cutAll(), 1);
    await b.publish('node:1', 'two');
    await b.publish('node:1', 'three');
    await Promise.race([resumed, sleep(10_000).then(() => assert.fail('no resume in 10 s'))]);
    for (let i = 0; i < 100 && got.length < 3; i++) await sleep(20);
    assert.deepEqual(got, ['one', 'two', 'three']);
    await sub.unsubscribe();
    await b.publish('node:1', 'four');
    await sleep(200);
    assert.deepEqual(got, ['one', 'two', 'three'], 'nothing after unsubscribe');
  } finally {
    a.close();
    b.close();
    await proxy.close();
  }
  await assert.rejects(a.publish('node:1', 'x'), { name: 'ClosedError' });
});
