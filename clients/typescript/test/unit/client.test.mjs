// The WebSocket driver against a scripted in-memory WebSocket: reconnects,
// resume, GOAWAY, fatal errors, token refresh, promises and events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Ferry, encode, decode, ServerError, UncertainPublishError, TransportError, ClosedError, ProtocolError,
} from '../../dist/index.js';

/** A WebSocket whose far end the test plays. */
class FakeSocket {
  static all = [];
  binaryType = 'blob';
  protocol = '';
  readyState = 0;
  onopen = null; onmessage = null; onclose = null; onerror = null;
  sent = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    FakeSocket.all.push(this);
  }
  send(data) { this.sent.push(decode(new Uint8Array(data))); }
  close() { this.readyState = 3; this.closedByClient = true; }
  // --- the server's side ---
  accept(protocol = 'ferry.v1') { this.protocol = protocol; this.readyState = 1; this.onopen?.({}); }
  deliver(frame) { const b = encode(frame); this.onmessage?.({ data: b.slice().buffer }); }
  deliverRaw(bytes) { this.onmessage?.({ data: Uint8Array.from(bytes).buffer }); }
  drop(code = 1006) { this.readyState = 3; this.onclose?.({ code, reason: '' }); }
  take() { const s = this.sent; this.sent = []; return s; }
}

const ID = new Uint8Array(16).fill(1);
const welcome = (outcome, lastClientSeq = 0n, sessionId = ID) => ({
  type: 'WELCOME', sessionId, resumeSecret: new Uint8Array(32).fill(2), outcome,
  heartbeatIntervalMs: 25_000n, resumeWindowMs: 120_000n, maxFrameSize: 65_536n, maxSubscriptions: 64n, lastClientSeq,
});
const message = (seq, channel, text) => ({
  type: 'MESSAGE', seq: BigInt(seq), channel, channelOffset: BigInt(seq), payload: new TextEncoder().encode(text),
});

async function nextSocket(after) {
  for (let i = 0; i < 200; i++) {
    const s = FakeSocket.all.at(-1);
    if (s && s !== after) return s;
    await sleep(5);
  }
  throw new Error('no new socket within 1 s');
}

async function start(options = {}) {
  FakeSocket.all = [];
  const promise = Ferry.connect('ws://test/ws', { WebSocket: FakeSocket, random: () => 0, ...options });
  const ws = await nextSocket();
  assert.equal(ws.protocols, 'ferry.v1');
  ws.accept();
  const [hello] = ws.take();
  assert.equal(hello.type, 'HELLO');
  ws.deliver(welcome('new'));
  const client = await promise;
  return { client, ws, hello };
}

test('connect resolves at WELCOME; subscribe, messages, publish resolves at PUBACK', async () => {
  const { client, ws, hello } = await start({ token: 'abc' });
  assert.equal(hello.token, 'abc');
  assert.equal(client.state, 'connected');
  const got = [];
  const sub = client.subscribe('chat:1', (m) => got.push(m.text()));
  const [subscribe] = ws.take();
  assert.deepEqual(subscribe, { type: 'SUBSCRIBE', requestId: 1n, channel: 'chat:1' });
  ws.deliver({ type: 'SUBSCRIBED', requestId: 1n, channelOffset: 7n });
  assert.deepEqual(await sub.ready, { channelOffset: 7 });
  ws.deliver(message(1, 'chat:1', 'hello'));
  ws.deliver(message(2, 'chat:2', 'not mine'));
  assert.deepEqual(got, ['hello']);
  const published = client.publish('chat:1', 'hi');
  const [pub] = ws.take();
  assert.equal(pub.type, 'PUBLISH');
  assert.equal(new TextDecoder().decode(pub.payload), 'hi');
  ws.deliver({ type: 'PUBACK', clientSeq: 1n });
  assert.deepEqual(await published, { channel: 'chat:1', clientSeq: 1 });
  const unsub = sub.unsubscribe();
  assert.deepEqual(ws.take().map((f) => f.type), ['UNSUBSCRIBE']);
  ws.deliver({ type: 'UNSUBSCRIBED', requestId: 2n });
  await unsub;
  client.close();
  assert.equal(client.state, 'closed');
});

test('a dropped connection is resumed; the outbox is re-sent; events in order', async () => {
  const { client, ws } = await start();
  const events = [];
  for (const e of ['disconnected', 'connecting', 'connected', 'resumed', 'gap']) client.on(e, () => events.push(e));
  const got = [];
  client.subscribe('chat:1', (m) => got.push(m.seq));
  ws.deliver({ type: 'SUBSCRIBED', requestId: 1n, channelOffset: 0n });
  ws.deliver(message(1, 'chat:1', 'a'));
  const p1 = client.publish('chat:1', 'one');
  const p2 = client.publish('chat:1', 'two');
  ws.take();
  ws.drop();
  const ws2 = await nextSocket(ws);
  ws2.accept();
  const [hello] = ws2.take();
  assert.equal(hello.resume.lastReceivedSeq, 1n);
  ws2.deliver(welcome('resumed', 1n));
  assert.deepEqual(await p1, { channel: 'chat:1', clientSeq: 1 });
  const resent = ws2.take();
  assert.deepEqual(resent.map((f) => [f.type, f.clientSeq]), [['PUBLISH', 2n]]);
  ws2.deliver(message(1, 'chat:1', 'a')); // a duplicate the server replays
  ws2.deliver(message(2, 'chat:1', 'b'));
  ws2.deliver({ type: 'PUBACK', clientSeq: 2n });
  await p2;
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(events, ['disconnected', 'connecting', 'connected', 'resumed']);
  client.close();
});

test('a new session rejects sent publishes as uncertain and reports the gap', async () => {
  const { client, ws } = await start();
  const gaps = [];
  client.on('gap', (g) => gaps.push(g));
  ws.deliver(message(1, 'chat:7', 'seen'));
  const p = client.publish('chat:1', 'x');
  ws.take();
  ws.drop();
  const ws2 = await nextSocket(ws);
  ws2.accept();
  ws2.take();
  ws2.deliver(welcome('new_session_expired', 0n, new Uint8Array(16).fill(9)));
  await assert.rejects(p, UncertainPublishError);
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].outcome, 'new_session_expired');
  assert.equal(new TextDecoder().decode(gaps[0].uncertain[0].data), 'x');
  assert.deepEqual(gaps[0].lastOffsets, { 'chat:7': 1 }, 'where each channel stood');
  client.close();
});

test('GOAWAY: reads until the close, then waits the hint before resuming', async () => {
  const { client, ws } = await start();
  const goaways = [];
  client.on('goaway', (g) => goaways.push(g));
  ws.deliver({ type: 'GOAWAY', code: 502, reconnectAfterMs: 150n, message: 'upgrade' });
  const got = [];
  client.on('message', (m) => got.push(m.seq));
  ws.deliver(message(1, 'c', 'still valid'));
  assert.deepEqual(got, [1]);
  const closedAt = performance.now();
  ws.drop(1000);
  const ws2 = await nextSocket(ws);
  const waited = performance.now() - closedAt;
  assert.ok(waited >= 140, `reconnected after ${waited} ms, the hint was 150`);
  assert.equal(goaways[0].code, 502);
  client.close();
});

test('a terminal error closes the client and rejects what is pending', async () => {
  const { client, ws } = await start();
  const closed = new Promise((r) => client.on('closed', r));
  const p = client.publish('chat:1', 'x');
  ws.deliver({ type: 'ERROR', code: 503, ref: 0n, message: 'operator' });
  const { error } = await closed;
  assert.ok(error instanceof ServerError);
  assert.equal(error.code, 503);
  await assert.rejects(p, (e) => e instanceof ServerError && e.code === 503);
  assert.equal(client.state, 'closed');
  assert.equal(FakeSocket.all.length, 1, 'no reconnect');
  assert.throws(() => client.subscribe('a', () => {}), ClosedError);
});

test('the first connection failing rejects connect()', async () => {
  FakeSocket.all = [];
  const promise = Ferry.connect('ws://test/ws', { WebSocket: FakeSocket, token: 'bad' });
  const ws = await nextSocket();
  ws.accept();
  ws.deliver({ type: 'ERROR', code: 401, ref: 0n, message: 'not a JWT' });
  await assert.rejects(promise, (e) => e instanceof ServerError && e.code === 401);
  FakeSocket.all = [];
  const p2 = Ferry.connect('ws://test/ws', { WebSocket: FakeSocket });
  (await nextSocket()).accept('other');
  await assert.rejects(p2, TransportError, 'a server that did not select ferry.v1');
});

test('token refresh: REFRESH_TOKEN is answered with the provider\'s token; 409 resumes with a fresh one', async () => {
  let n = 0;
  const { client, ws, hello } = await start({ token: () => `t${++n}` });
  assert.equal(hello.token, 't1');
  const refreshed = new Promise((r) => client.on('token_refreshed', r));
  ws.deliver({ type: 'REFRESH_TOKEN', deadlineMs: 5000n });
  await refreshed;
  assert.deepEqual(ws.take(), [{ type: 'TOKEN', token: 't2' }]);
  ws.deliver({ type: 'ERROR', code: 409, ref: 0n, message: 'late' });
  const ws2 = await nextSocket(ws);
  ws2.accept();
  const [hello2] = ws2.take();
  assert.equal(hello2.token, 't3');
  assert.ok(hello2.resume, 'the session is resumed');
  ws2.deliver(welcome('resumed'));
  client.close();
});

test('a repeated protocol violation at the same point stops the client', async () => {
  const { client, ws } = await start();
  const closed = new Promise((r) => client.on('closed', r));
  ws.deliver(message(2, 'c', 'gap')); // seq 1 never came
  const ws2 = await nextSocket(ws);
  ws2.accept();
  ws2.take();
  ws2.deliver(welcome('resumed'));
  ws2.deliver(message(2, 'c', 'gap'));
  const { error } = await closed;
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(FakeSocket.all.length, 2);
});

test('an undecodable frame: the client tells the server (ERROR 101), drops the connection and resumes', async () => {
  const { client, ws } = await start();
  const disconnected = new Promise((r) => client.on('disconnected', r));
  ws.deliverRaw([0x42, 0x01]);
  const [error] = ws.take();
  assert.equal(error.type, 'ERROR');
  assert.equal(error.code, 101);
  assert.match(error.message, /4201/, 'the bytes are reported');
  assert.equal(ws.closedByClient, true);
  const { reason } = await disconnected;
  assert.match(reason, /undecodable frame/);
  const ws2 = await nextSocket(ws);
  ws2.accept();
  assert.ok(ws2.take()[0].resume, 'resumes');
  client.close();
});

test('create, listen, then connect: the first connection\'s events are seen too', async () => {
  FakeSocket.all = [];
  const client = Ferry.create('ws://test/ws', { WebSocket: FakeSocket });
  const seen = [];
  for (const e of ['connecting', 'connected']) client.on(e, () => seen.push(e));
  client.on('state', (s) => seen.push(`state:${s}`));
  const connected = client.connect();
  const ws = await nextSocket();
  ws.accept();
  ws.deliver(welcome('new'));
  assert.equal(await connected, client);
  assert.deepEqual(seen, ['connecting', 'state:connected', 'connected']);
  await assert.rejects(client.connect(), /called already/);
  client.close();
});
