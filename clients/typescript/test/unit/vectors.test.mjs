// Every vector of protocol/vectors/: frames.json decodes to its frame and
// encodes back to its bytes; invalid.json is rejected with its error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decode, encode, encodeLengthPrefixed, splitLengthPrefixed, DecodeError } from '../../dist/index.js';

const vectorsDir = fileURLToPath(new URL('../../../../protocol/vectors/', import.meta.url));
const frames = JSON.parse(readFileSync(vectorsDir + 'frames.json', 'utf8'));
const invalid = JSON.parse(readFileSync(vectorsDir + 'invalid.json', 'utf8'));

const fromHex = (h) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b) => Buffer.from(b).toString('hex');
const camel = (k) => k.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

// Fields that are raw bytes in the vectors (hex); integers are decimal strings.
const BYTE_FIELDS = new Set(['payload', 'session_id', 'resume_secret']);
const TEXT_FIELDS = new Set(['token', 'message', 'channel', 'outcome', 'type']);
const NUMBER_FIELDS = new Set(['code']); // at most 16 bits: a number in the SDK

/** The vector's JSON frame as the SDK's frame object. */
function toSdk(json) {
  const out = {};
  for (const [k, v] of Object.entries(json)) {
    if (k === 'resume') out.resume = v === null ? null : toSdk(v);
    else if (BYTE_FIELDS.has(k)) out[camel(k)] = fromHex(v);
    else if (TEXT_FIELDS.has(k)) out[camel(k)] = v;
    else if (NUMBER_FIELDS.has(k)) out[camel(k)] = Number(v);
    else out[camel(k)] = BigInt(v);
  }
  return out;
}

/** Byte views become plain arrays so that deepEqual compares contents. */
function plain(frame) {
  if (frame === null || typeof frame !== 'object') return frame;
  if (frame instanceof Uint8Array) return toHex(frame);
  return Object.fromEntries(Object.entries(frame).map(([k, v]) => [k, plain(v)]));
}

test('frames.json covers every frame type', () => {
  const types = new Set(frames.map((v) => v.frame.type));
  assert.equal(types.size, 16, [...types].join(' '));
  assert.ok(frames.length >= 40);
});

for (const v of frames) {
  test(`frame vector ${v.name}: decodes and encodes exactly`, () => {
    const bytes = fromHex(v.hex);
    const expected = toSdk(v.frame);
    const decoded = decode(bytes);
    assert.deepEqual(plain(decoded), plain(expected));
    assert.equal(toHex(encode(expected)), v.hex);
    // The same frame as a QUIC stream: prefix, then split back.
    const stream = encodeLengthPrefixed(expected);
    const split = splitLengthPrefixed(stream);
    assert.equal(split.used, stream.length);
    assert.equal(toHex(split.frame), v.hex);
  });
}

test('invalid.json has every error kind', () => {
  const kinds = new Set(invalid.map((v) => v.error));
  for (const k of ['truncated', 'unknown_type', 'oversize', 'bad_varint', 'invalid_channel', 'bad_utf8', 'bad_value', 'trailing_bytes']) {
    assert.ok(kinds.has(k), k);
  }
});

const CODE = { unknown_type: 101, oversize: 102, invalid_channel: 200 };

for (const v of invalid) {
  test(`invalid vector ${v.name}: rejected as ${v.error}`, () => {
    const bytes = fromHex(v.hex);
    const max = v.max_frame_size ?? 65536;
    const run = () => {
      if (v.mode === 'message') return decode(bytes, { maxFrameSize: max });
      const split = splitLengthPrefixed(bytes, max);
      assert.notEqual(split, null, 'the stream holds a whole frame or fails on its prefix');
      return decode(split.frame, { maxFrameSize: max });
    };
    assert.throws(run, (e) => {
      assert.ok(e instanceof DecodeError, `not a DecodeError: ${e}`);
      assert.equal(e.kind, v.error, e.message);
      if (v.field !== undefined) assert.equal(e.field, v.field, e.message);
      if (v.reason !== undefined) assert.equal(e.reason, v.reason);
      assert.equal(e.code, CODE[v.error] ?? 100);
      return true;
    });
  });
}

test('varints of the spec table (PROTOCOL.md §3.1)', () => {
  const table = [
    [0n, '00'], [1n, '01'], [127n, '7f'], [128n, '8001'], [300n, 'ac02'], [16383n, 'ff7f'],
    [16384n, '808001'], [25000n, 'a8c301'], [65536n, '808004'], [120000n, 'c0a907'],
    [2n ** 32n - 1n, 'ffffffff0f'], [2n ** 63n, '80808080808080808001'], [2n ** 64n - 1n, 'ffffffffffffffffff01'],
  ];
  for (const [value, hex] of table) {
    const bytes = encode({ type: 'ACK', seq: value });
    assert.equal(toHex(bytes), '0a' + hex, String(value));
    assert.equal(decode(bytes).seq, value);
  }
  // Over-long encodings are accepted (80 00 is 0)...
  assert.equal(decode(fromHex('0a8000')).seq, 0n);
  // ...and values outside u64 cannot be encoded.
  assert.throws(() => encode({ type: 'ACK', seq: 2n ** 64n }), RangeError);
  assert.throws(() => encode({ type: 'ACK', seq: -1n }), RangeError);
});

test('payloads are views of the input, not copies', () => {
  const bytes = fromHex('07010a636861743a6c6f626279026869');
  const f = decode(bytes);
  assert.equal(f.payload.buffer, bytes.buffer);
});
