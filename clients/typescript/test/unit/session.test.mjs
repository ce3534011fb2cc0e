// The sans-IO session core, driven with frames and simulated time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Session, ProtocolError, TimeoutError, InvalidArgumentError, ClosedError, ServerError,
  errorInfo, knownCodes,
} from '../../dist/index.js';

const ID_A = new Uint8Array(16).fill(0xa);
const ID_B = new Uint8Array(16).fill(0xb);
const SECRET = new Uint8Array(32).fill(7);

function welcome(outcome, { sessionId = ID_A, lastClientSeq = 0n, heartbeat = 25_000n, maxFrameSize = 65_536n, maxSubscriptions = 64n } = {}) {
  return {
    type: 'WELCOME', sessionId, resumeSecret: SECRET, outcome,
    heartbeatIntervalMs: heartbeat, resumeWindowMs: 120_000n, maxFrameSize, maxSubscriptions, lastClientSeq,
  };
}
const msg = (seq, channel = 'chat:1', offset = seq) => ({
  type: 'MESSAGE', seq: BigInt(seq), channel, channelOffset: BigInt(offset), payload: new Uint8Array([Number(seq) & 0xff]),
});
const frames = (s, t = 0) => {
  const out = [];
  for (let f = s.pollTransmit(t); f; f = s.pollTransmit(t)) out.push(f);
  return out;
};
const outputs = (s) => {
  const out = [];
  for (let o = s.pollOutput(); o; o = s.pollOutput()) out.push(o);
  return out;
};
/** A session with a live connection at time 0, after WELCOME New. */
function connected(config = {}) {
  const s = new Session(config);
  s.startHandshake('tok', 0);
  frames(s);
  s.handleFrame(welcome('new'), 0);
  outputs(s);
  frames(s);
  return s;
}

test('HELLO first, nothing else before WELCOME; held commands go after it', () => {
  const s = new Session();
  s.subscribe('chat:1');
  const p = s.publish('chat:1', new Uint8Array([1]));
  assert.equal(p.clientSeq, 1n);
  assert.deepEqual(frames(s), [], 'nothing without a transport');
  s.startHandshake('tok', 0);
  const hello = frames(s);
  assert.equal(hello.length, 1);
  assert.equal(hello[0].type, 'HELLO');
  assert.equal(hello[0].version, 1n);
  assert.equal(hello[0].token, 'tok');
  assert.equal(hello[0].resume, null);
  s.handleFrame(welcome('new'), 1);
  assert.deepEqual(frames(s, 1).map((f) => f.type), ['SUBSCRIBE', 'PUBLISH']);
  const [c] = outputs(s);
  assert.equal(c.kind, 'connected');
  assert.equal(c.outcome, 'new');
  assert.equal(s.epoch, 1);
});

test('frames other than WELCOME, ERROR, GOAWAY before WELCOME are a protocol violation', () => {
  const s = new Session();
  s.startHandshake('', 0);
  assert.throws(() => s.handleFrame(msg(1), 0), ProtocolError);
});

test('no WELCOME within the handshake timeout', () => {
  const s = new Session({ handshakeTimeoutMs: 1000 });
  s.startHandshake('', 0);
  assert.equal(s.pollTimeout(), 1000);
  s.handleTimeout(999);
  assert.throws(() => s.handleTimeout(1000), TimeoutError);
});

test('a resumed WELCOME for a session not asked for is a violation', () => {
  const s = new Session();
  s.startHandshake('', 0);
  assert.throws(() => s.handleFrame(welcome('resumed'), 0), ProtocolError);
});

test('messages: +1 accepted, duplicates dropped, a gap is the server\'s error', () => {
  const s = connected();
  s.handleFrame(msg(1), 1);
  s.handleFrame(msg(2), 1);
  s.handleFrame(msg(2), 1);
  s.handleFrame(msg(1), 1);
  const got = outputs(s).filter((o) => o.kind === 'message').map((o) => o.seq);
  assert.deepEqual(got, [1n, 2n]);
  assert.equal(s.stats().duplicatesDropped, 2);
  assert.throws(() => s.handleFrame(msg(4), 1), /expected 3, got 4/);
});

test('ACK every N messages, and after the delay for the rest, never above what arrived', () => {
  const s = connected({ ackEvery: 4, ackDelayMs: 50 });
  for (let i = 1; i <= 5; i++) s.handleFrame(msg(i), 10);
  assert.deepEqual(frames(s, 10), [{ type: 'ACK', seq: 4n }]);
  assert.equal(s.pollTimeout(), 60, 'the fifth is acknowledged after the delay');
  s.handleTimeout(59);
  assert.deepEqual(frames(s, 59), []);
  s.handleTimeout(60);
  assert.deepEqual(frames(s, 60), [{ type: 'ACK', seq: 5n }]);
  s.handleTimeout(200);
  assert.deepEqual(frames(s, 200), [], 'nothing new, no ACK');
});

test('publishes: PUBACK is cumulative; resume re-sends after last_client_seq with the same numbers', () => {
  const s = connected();
  const ps = [1, 2, 3, 4].map((i) => s.publish('chat:1', new Uint8Array([i])));
  assert.deepEqual(ps.map((p) => p.clientSeq), [1n, 2n, 3n, 4n]);
  assert.equal(frames(s).length, 4);
  s.handleFrame({ type: 'PUBACK', clientSeq: 1n }, 1);
  assert.deepEqual(outputs(s).map((o) => [o.kind, o.id]), [['publish_done', ps[0].id]]);
  s.handleFrame(msg(1), 1);
  s.handleFrame(msg(2), 1);
  s.transportLost('cut');
  assert.deepEqual(outputs(s).filter((o) => o.kind === 'disconnected').length, 1);
  s.startHandshake('tok', 100);
  const [hello] = frames(s, 100);
  assert.deepEqual(hello.resume.sessionId, ID_A);
  assert.equal(hello.resume.lastReceivedSeq, 2n, 'last received, not last acked');
  s.handleFrame(welcome('resumed', { lastClientSeq: 2n }), 100);
  const out = outputs(s);
  assert.deepEqual(out.map((o) => o.kind), ['connected', 'publish_done']);
  assert.equal(out[1].clientSeq, 2n);
  assert.deepEqual(frames(s, 100).map((f) => [f.type, f.clientSeq]), [['PUBLISH', 3n], ['PUBLISH', 4n]]);
  s.handleFrame(msg(3), 101);
  assert.equal(outputs(s)[0].seq, 3n, 'seq continues');
  assert.throws(() => s.handleFrame({ type: 'PUBACK', clientSeq: 9n }, 101), ProtocolError);
});

test('a new session instead of a resume: uncertain publishes back, unsent ones renumbered, channels re-subscribed', () => {
  const s = connected();
  s.subscribe('chat:1');
  s.subscribe('chat:2');
  frames(s);
  s.handleFrame({ type: 'SUBSCRIBED', requestId: 1n, channelOffset: 5n }, 1);
  s.handleFrame({ type: 'SUBSCRIBED', requestId: 2n, channelOffset: 0n }, 1);
  const sent = s.publish('chat:1', new Uint8Array([1]));
  frames(s);
  s.handleFrame(msg(1), 1);
  s.transportLost('cut');
  const held = s.publish('chat:1', new Uint8Array([2]));
  assert.equal(held.clientSeq, 2n);
  s.unsubscribe('chat:2');
  outputs(s);
  s.startHandshake('tok', 5);
  frames(s, 5);
  s.handleFrame(welcome('new_replay_unavailable', { sessionId: ID_B }), 5);
  const out = outputs(s);
  assert.deepEqual(out.map((o) => o.kind), ['connected', 'session_lost', 'request_done']);
  assert.equal(out[1].outcome, 'new_replay_unavailable');
  assert.deepEqual(out[1].uncertain.map((p) => p.id), [sent.id]);
  assert.equal(out[2].subscribe, false, 'the pending unsubscribe is done');
  const after = frames(s, 5);
  assert.deepEqual(after.map((f) => [f.type, f.channel]), [['SUBSCRIBE', 'chat:1'], ['PUBLISH', 'chat:1']]);
  assert.equal(after[1].clientSeq, 1n, 'numbering restarts at 1');
  assert.equal(s.epoch, 2);
  s.handleFrame(msg(1), 6);
  assert.equal(outputs(s)[0].seq, 1n, 'seq restarts at 1');
  assert.deepEqual(s.sessionId, ID_B);
});

test('a rejected publish (406) fails alone; those before it succeed; the next PUBACK covers it', () => {
  const s = connected();
  const ps = [1, 2, 3].map((i) => s.publish('chat:1', new Uint8Array([i])));
  frames(s);
  s.handleFrame({ type: 'ERROR', code: 406, ref: 2n, message: 'forbidden' }, 1);
  const done = outputs(s).filter((o) => o.kind === 'publish_done');
  assert.deepEqual(done.map((o) => [o.id, o.error?.code]), [[ps[0].id, undefined], [ps[1].id, 406]]);
  assert.ok(done[1].error instanceof ServerError);
  s.handleFrame({ type: 'PUBACK', clientSeq: 3n }, 1);
  assert.deepEqual(outputs(s).map((o) => o.id), [ps[2].id]);
  assert.equal(s.isActive, true, 'non-fatal');
});

test('request errors: 405 fails a subscribe, 202 completes an unsubscribe, 203 finds its request', () => {
  const s = connected();
  const sub = s.subscribe('news:1');
  frames(s);
  s.handleFrame({ type: 'ERROR', code: 405, ref: sub, message: 'no' }, 1);
  let out = outputs(s).filter((o) => o.kind === 'request_done');
  assert.equal(out[0].result.ok, false);
  assert.equal(out[0].result.error.code, 405);
  const un = s.unsubscribe('chat:9');
  s.handleFrame({ type: 'ERROR', code: 202, ref: un, message: '' }, 1);
  out = outputs(s).filter((o) => o.kind === 'request_done');
  assert.deepEqual(out[0].result, { ok: true, channelOffset: 0n });
  const sub2 = s.subscribe('chat:3');
  s.handleFrame({ type: 'ERROR', code: 203, ref: sub2, message: 'slow down' }, 1);
  out = outputs(s).filter((o) => o.kind === 'request_done');
  assert.equal(out[0].requestId, sub2);
  assert.equal(out[0].result.error.code, 203);
});

test('fatal errors: the action of each code of the table, unknown codes by their group', () => {
  const expected = {
    stop: [100, 101, 102, 103, 104, 106, 108, 109, 110, 303, 401, 404, 503, 199],
    resume: [105, 107, 300, 301, 302, 500, 501, 502, 399, 599, 600, 42],
    refresh_token: [400, 402, 403, 409, 499],
    new_session: [407],
    slow_retry: [408],
    fail_request: [200, 201, 202, 203, 405, 406, 299],
  };
  const seen = new Set();
  for (const [action, codes] of Object.entries(expected)) {
    for (const code of codes) {
      const info = errorInfo(code);
      assert.equal(info.action, action, `code ${code}`);
      assert.equal(info.fatal, action !== 'fail_request', `code ${code} fatal`);
      seen.add(code);
    }
  }
  for (const code of knownCodes()) assert.ok(seen.has(code), `code ${code} is not checked`);

  const s = connected();
  s.handleFrame({ type: 'ERROR', code: 107, ref: 0n, message: '' }, 1);
  let fatal = outputs(s).find((o) => o.kind === 'fatal');
  assert.equal(fatal.action, 'resume');
  assert.equal(s.isClosed, false, 'resumable');
  const t = connected();
  t.handleFrame({ type: 'ERROR', code: 303, ref: 0n, message: 'taken over' }, 1);
  fatal = outputs(t).find((o) => o.kind === 'fatal');
  assert.equal(fatal.action, 'stop');
  assert.equal(t.isClosed, true, 'stop closes the session');
  assert.throws(() => t.publish('chat:1', new Uint8Array()), ClosedError);
  // An unknown 4xx that names a request is a request error.
  const u = connected();
  const id = u.subscribe('chat:1');
  u.handleFrame({ type: 'ERROR', code: 450, ref: id, message: '' }, 1);
  const o = outputs(u);
  assert.equal(o.find((x) => x.kind === 'fatal'), undefined);
  assert.equal(o.find((x) => x.kind === 'request_done').result.error.code, 450);
});

test('heartbeats: PING when idle, silent after two intervals past the probe, PONG clears it', () => {
  const s = new Session();
  s.startHandshake('', 0);
  frames(s);
  s.handleFrame(welcome('new', { heartbeat: 1000n }), 0);
  frames(s);
  assert.equal(s.pollTimeout(), 1000);
  s.handleTimeout(1000);
  const [ping] = frames(s, 1000);
  assert.equal(ping.type, 'PING');
  assert.equal(s.pollTimeout(), 2000, 'next: the send interval');
  s.handleFrame({ type: 'PONG', nonce: ping.nonce }, 1500);
  s.handleTimeout(2000);
  assert.equal(frames(s, 2000)[0].type, 'PING');
  s.handleTimeout(3000);
  frames(s, 3000);
  assert.throws(() => s.handleTimeout(4000), TimeoutError, 'nothing for 2 intervals after the probe at 2000');
});

test('server PING is answered with PONG of the same nonce', () => {
  const s = connected();
  s.handleFrame({ type: 'PING', nonce: 77n }, 1);
  assert.deepEqual(frames(s), [{ type: 'PONG', nonce: 77n }]);
});

test('GOAWAY and REFRESH_TOKEN become driver actions; TOKEN goes out', () => {
  const s = connected();
  s.handleFrame({ type: 'GOAWAY', code: 502, reconnectAfterMs: 250n, message: 'upgrade' }, 1);
  s.handleFrame({ type: 'REFRESH_TOKEN', deadlineMs: 30_000n }, 1);
  assert.deepEqual(outputs(s), [
    { kind: 'goaway', code: 502, reconnectAfterMs: 250, message: 'upgrade' },
    { kind: 'token_requested', deadlineMs: 30000 },
  ]);
  s.sendToken('fresh');
  assert.deepEqual(frames(s), [{ type: 'TOKEN', token: 'fresh' }]);
});

test('local checks: channel names, payload size, max_subscriptions', () => {
  const s = new Session();
  s.startHandshake('', 0);
  frames(s);
  s.handleFrame(welcome('new', { maxFrameSize: 1024n, maxSubscriptions: 2n }), 0);
  for (const bad of ['', 'a b', 'news:*', 'é', 'x'.repeat(129)]) {
    assert.throws(() => s.subscribe(bad), InvalidArgumentError, JSON.stringify(bad));
    assert.throws(() => s.publish(bad, new Uint8Array()), InvalidArgumentError);
  }
  s.publish('c', new Uint8Array(1000));
  assert.throws(() => s.publish('c', new Uint8Array(1020)), InvalidArgumentError);
  s.subscribe('a');
  s.subscribe('b');
  assert.throws(() => s.subscribe('c'), /at most 2/);
  s.subscribe('a'); // already wanted: harmless
});

test('a client frame from the server is a violation', () => {
  const s = connected();
  assert.throws(() => s.handleFrame({ type: 'ACK', seq: 1n }, 1), ProtocolError);
});
