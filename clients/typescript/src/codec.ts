/**
 * Encoding and decoding of frames (PROTOCOL.md §3, §4).
 *
 * On WebSocket one binary message is exactly one frame ({@link decode});
 * a QUIC stream prefixes each frame with its length
 * ({@link splitLengthPrefixed}; this package speaks WebSocket only, the
 * stream form exists for the test vectors and other transports).
 *
 * Decoding checks the size before reading, never reads past the input,
 * and returns payloads as views of the input without copying.
 */

import { channelBytesProblem, MAX_CHANNEL_LEN } from './channel.js';
import { DecodeError } from './errors.js';
import { FrameType, OUTCOMES, type Frame, type Outcome } from './frame.js';

/** Default largest frame, in bytes. */
export const DEFAULT_MAX_FRAME_SIZE = 65_536;
/** Longest varint: 10 bytes hold 64 bits. */
export const MAX_VARINT_LEN = 10;
/** The largest value of an unsigned 64-bit field. */
export const U64_MAX = (1n << 64n) - 1n;

/** Limits applied while decoding. */
export interface DecodeLimits {
  /** Largest frame, type byte included, QUIC prefix excluded. */
  maxFrameSize: number;
  /** Longest channel name. */
  maxChannelLen: number;
}

const DEFAULT_LIMITS: DecodeLimits = {
  maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
  maxChannelLen: MAX_CHANNEL_LEN,
};

const HELLO_FLAG_RESUME = 0x01;
const FRAME_NAMES: readonly (Frame['type'] | undefined)[] = (() => {
  const names: (Frame['type'] | undefined)[] = [];
  for (const [name, byte] of Object.entries(FrameType)) names[byte] = name as Frame['type'];
  return names;
})();

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/** Decodes one whole frame (a WebSocket binary message). Throws {@link DecodeError}. */
export function decode(bytes: Uint8Array, limits: Partial<DecodeLimits> = {}): Frame {
  const lim = limits === DEFAULT_LIMITS ? DEFAULT_LIMITS : { ...DEFAULT_LIMITS, ...limits };
  if (bytes.length > lim.maxFrameSize) {
    throw new DecodeError('oversize', undefined, `frame of ${bytes.length} bytes exceeds ${lim.maxFrameSize}`);
  }
  const r = new Reader(bytes, lim.maxChannelLen);
  const typeByte = r.u8('frame type');
  const name = FRAME_NAMES[typeByte];
  if (name === undefined) {
    throw new DecodeError('unknown_type', undefined, `unknown frame type 0x${typeByte.toString(16).padStart(2, '0')}`);
  }
  const frame = r.body(name);
  if (r.pos !== bytes.length) {
    throw new DecodeError('trailing_bytes', undefined, `${bytes.length - r.pos} bytes after the last field`);
  }
  return frame;
}

/**
 * Takes the next whole length-prefixed frame from the start of a stream
 * buffer: `null` while incomplete, else the frame's bytes and how many
 * bytes (prefix included) it used. The announced length is checked against
 * `maxFrameSize` before waiting for the body.
 */
export function splitLengthPrefixed(
  buf: Uint8Array,
  maxFrameSize = DEFAULT_MAX_FRAME_SIZE,
): { frame: Uint8Array; used: number } | null {
  const peeked = peekVarint(buf, 0, 'length prefix');
  if (peeked === null) return null;
  const [len, prefixLen] = peeked;
  if (len > BigInt(maxFrameSize)) {
    throw new DecodeError('oversize', 'length prefix', `announces ${len} bytes, more than ${maxFrameSize}`);
  }
  const n = Number(len);
  if (buf.length < prefixLen + n) return null;
  return { frame: buf.subarray(prefixLen, prefixLen + n), used: prefixLen + n };
}

/**
 * Reads a varint at `pos`: `null` if the input ends inside it, else its
 * value and length. Over-long encodings are accepted; a 10th byte above 1
 * is invalid (PROTOCOL.md §3.1).
 */
function peekVarint(buf: Uint8Array, pos: number, field: string): [bigint, number] | null {
  // Up to 7 bytes (49 bits) fit a double exactly: the common case stays
  // out of bigint arithmetic until the end.
  let small = 0;
  let scale = 1;
  for (let i = 0; i < 7; i++) {
    if (pos + i >= buf.length) return null;
    const b = buf[pos + i]!;
    small += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) return [BigInt(small), i + 1];
    scale *= 128;
  }
  let value = BigInt(small);
  for (let i = 7; i < MAX_VARINT_LEN; i++) {
    if (pos + i >= buf.length) return null;
    const b = buf[pos + i]!;
    if (i === MAX_VARINT_LEN - 1 && b > 0x01) {
      throw new DecodeError('bad_varint', field, 'the 10th byte of a varint may only be 00 or 01');
    }
    value |= BigInt(b & 0x7f) << BigInt(7 * i);
    if ((b & 0x80) === 0) return [value, i + 1];
  }
  // Unreachable: the 10th byte either ends the varint or fails above.
  throw new DecodeError('bad_varint', field, 'varint longer than 10 bytes');
}

class Reader {
  pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly maxChannelLen: number,
  ) {}

  body(name: Frame['type']): Frame {
    switch (name) {
      case 'HELLO': {
        const version = this.varint('version');
        const token = this.string('token');
        const flags = this.u8('flags');
        if ((flags & ~HELLO_FLAG_RESUME) !== 0) {
          throw new DecodeError('bad_value', 'flags', `undefined flag bits in 0x${flags.toString(16)}`);
        }
        const resume =
          (flags & HELLO_FLAG_RESUME) !== 0
            ? {
                sessionId: this.array(16, 'session_id'),
                resumeSecret: this.array(32, 'resume_secret'),
                lastReceivedSeq: this.varint('last_received_seq'),
              }
            : null;
        return { type: 'HELLO', version, token, resume };
      }
      case 'WELCOME': {
        const sessionId = this.array(16, 'session_id');
        const resumeSecret = this.array(32, 'resume_secret');
        const raw = this.u8('outcome');
        const outcome: Outcome | undefined = OUTCOMES[raw];
        if (outcome === undefined) throw new DecodeError('bad_value', 'outcome', `undefined outcome ${raw}`);
        return {
          type: 'WELCOME',
          sessionId,
          resumeSecret,
          outcome,
          heartbeatIntervalMs: this.varint('heartbeat_interval_ms'),
          resumeWindowMs: this.varint('resume_window_ms'),
          maxFrameSize: this.varint('max_frame_size'),
          maxSubscriptions: this.varint('max_subscriptions'),
          lastClientSeq: this.varint('last_client_seq'),
        };
      }
      case 'SUBSCRIBE':
        return { type: 'SUBSCRIBE', requestId: this.varint('request_id'), channel: this.channel() };
      case 'SUBSCRIBED':
        return { type: 'SUBSCRIBED', requestId: this.varint('request_id'), channelOffset: this.varint('channel_offset') };
      case 'UNSUBSCRIBE':
        return { type: 'UNSUBSCRIBE', requestId: this.varint('request_id'), channel: this.channel() };
      case 'UNSUBSCRIBED':
        return { type: 'UNSUBSCRIBED', requestId: this.varint('request_id') };
      case 'PUBLISH':
        return {
          type: 'PUBLISH',
          clientSeq: this.varint('client_seq'),
          channel: this.channel(),
          payload: this.bytes('payload'),
        };
      case 'PUBACK':
        return { type: 'PUBACK', clientSeq: this.varint('client_seq') };
      case 'MESSAGE':
        return {
          type: 'MESSAGE',
          seq: this.varint('seq'),
          channel: this.channel(),
          channelOffset: this.varint('channel_offset'),
          payload: this.bytes('payload'),
        };
      case 'ACK':
        return { type: 'ACK', seq: this.varint('seq') };
      case 'PING':
        return { type: 'PING', nonce: this.varint('nonce') };
      case 'PONG':
        return { type: 'PONG', nonce: this.varint('nonce') };
      case 'GOAWAY':
        return {
          type: 'GOAWAY',
          code: this.code(),
          reconnectAfterMs: this.varint('reconnect_after_ms'),
          message: this.string('message'),
        };
      case 'ERROR':
        return { type: 'ERROR', code: this.code(), ref: this.varint('ref'), message: this.string('message') };
      case 'REFRESH_TOKEN':
        return { type: 'REFRESH_TOKEN', deadlineMs: this.varint('deadline_ms') };
      case 'TOKEN':
        return { type: 'TOKEN', token: this.string('token') };
    }
  }

  u8(field: string): number {
    if (this.pos >= this.buf.length) throw new DecodeError('truncated', field, 'input ends');
    return this.buf[this.pos++]!;
  }

  varint(field: string): bigint {
    let peeked: [bigint, number] | null;
    try {
      peeked = peekVarint(this.buf, this.pos, field);
    } catch (e) {
      throw e instanceof DecodeError ? new DecodeError('bad_varint', field, e.message) : e;
    }
    if (peeked === null) throw new DecodeError('truncated', field, 'input ends inside a varint');
    this.pos += peeked[1];
    return peeked[0];
  }

  code(): number {
    const value = this.varint('code');
    if (value > 0xffffn) throw new DecodeError('bad_value', 'code', `${value} does not fit 16 bits`);
    return Number(value);
  }

  array(n: number, field: string): Uint8Array {
    if (this.buf.length - this.pos < n) throw new DecodeError('truncated', field, `needs ${n} bytes`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  bytes(field: string): Uint8Array {
    const len = this.varint(field);
    const left = this.buf.length - this.pos;
    if (len > BigInt(left)) throw new DecodeError('truncated', field, `announces ${len} bytes, ${left} remain`);
    return this.array(Number(len), field);
  }

  string(field: string): string {
    const raw = this.bytes(field);
    try {
      return utf8Decoder.decode(raw);
    } catch {
      throw new DecodeError('bad_utf8', field, 'not valid UTF-8');
    }
  }

  channel(): string {
    const raw = this.bytes('channel');
    const problem = channelBytesProblem(raw, this.maxChannelLen);
    if (problem !== null) throw new DecodeError('invalid_channel', 'channel', `invalid channel name (${problem})`, problem);
    // Only ASCII bytes are allowed: one byte, one UTF-16 unit.
    return String.fromCharCode.apply(null, raw as unknown as number[]);
  }
}

// ----- encoding -----

/** Bytes `value` takes as a varint. */
export function varintLen(value: bigint): number {
  let n = 1;
  while (value >= 0x80n) {
    value >>= 7n;
    n++;
  }
  return n;
}

/** A growing output buffer. */
class Writer {
  buf: Uint8Array;
  pos = 0;
  constructor(capacity: number) {
    this.buf = new Uint8Array(capacity);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  u8(b: number): void {
    this.reserve(1);
    this.buf[this.pos++] = b;
  }

  varint(value: bigint): void {
    if (value < 0n || value > U64_MAX) throw new RangeError(`${value} is not an unsigned 64-bit value`);
    this.reserve(MAX_VARINT_LEN);
    if (value <= 0xffffffffn) {
      let v = Number(value);
      while (v >= 0x80) {
        this.buf[this.pos++] = (v & 0x7f) | 0x80;
        v = Math.floor(v / 128);
      }
      this.buf[this.pos++] = v;
      return;
    }
    while (value >= 0x80n) {
      this.buf[this.pos++] = Number(value & 0x7fn) | 0x80;
      value >>= 7n;
    }
    this.buf[this.pos++] = Number(value);
  }

  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  bytes(bytes: Uint8Array): void {
    this.varint(BigInt(bytes.length));
    this.raw(bytes);
  }

  string(s: string): void {
    this.bytes(utf8Encoder.encode(s));
  }

  channel(name: string): void {
    // Callers validate names; encode byte per character (ASCII).
    this.varint(BigInt(name.length));
    this.reserve(name.length);
    for (let i = 0; i < name.length; i++) this.buf[this.pos++] = name.charCodeAt(i) & 0xff;
  }

  fixed(bytes: Uint8Array, n: number, field: string): void {
    if (bytes.length !== n) throw new RangeError(`${field} must be ${n} bytes, got ${bytes.length}`);
    this.raw(bytes);
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

/** The bytes of `frame` (a WebSocket message body). */
export function encode(frame: Frame): Uint8Array {
  const w = new Writer(frame.type === 'PUBLISH' || frame.type === 'MESSAGE' ? frame.payload.length + 32 + frame.channel.length : 64);
  w.u8(FrameType[frame.type]);
  switch (frame.type) {
    case 'HELLO':
      w.varint(frame.version);
      w.string(frame.token);
      if (frame.resume) {
        w.u8(HELLO_FLAG_RESUME);
        w.fixed(frame.resume.sessionId, 16, 'session_id');
        w.fixed(frame.resume.resumeSecret, 32, 'resume_secret');
        w.varint(frame.resume.lastReceivedSeq);
      } else {
        w.u8(0);
      }
      break;
    case 'WELCOME':
      w.fixed(frame.sessionId, 16, 'session_id');
      w.fixed(frame.resumeSecret, 32, 'resume_secret');
      w.u8(OUTCOMES.indexOf(frame.outcome));
      w.varint(frame.heartbeatIntervalMs);
      w.varint(frame.resumeWindowMs);
      w.varint(frame.maxFrameSize);
      w.varint(frame.maxSubscriptions);
      w.varint(frame.lastClientSeq);
      break;
    case 'SUBSCRIBE':
    case 'UNSUBSCRIBE':
      w.varint(frame.requestId);
      w.channel(frame.channel);
      break;
    case 'SUBSCRIBED':
      w.varint(frame.requestId);
      w.varint(frame.channelOffset);
      break;
    case 'UNSUBSCRIBED':
      w.varint(frame.requestId);
      break;
    case 'PUBLISH':
      w.varint(frame.clientSeq);
      w.channel(frame.channel);
      w.bytes(frame.payload);
      break;
    case 'PUBACK':
      w.varint(frame.clientSeq);
      break;
    case 'MESSAGE':
      w.varint(frame.seq);
      w.channel(frame.channel);
      w.varint(frame.channelOffset);
      w.bytes(frame.payload);
      break;
    case 'ACK':
      w.varint(frame.seq);
      break;
    case 'PING':
    case 'PONG':
      w.varint(frame.nonce);
      break;
    case 'GOAWAY':
      w.varint(BigInt(checkCode(frame.code)));
      w.varint(frame.reconnectAfterMs);
      w.string(frame.message);
      break;
    case 'ERROR':
      w.varint(BigInt(checkCode(frame.code)));
      w.varint(frame.ref);
      w.string(frame.message);
      break;
    case 'REFRESH_TOKEN':
      w.varint(frame.deadlineMs);
      break;
    case 'TOKEN':
      w.string(frame.token);
      break;
  }
  return w.finish();
}

function checkCode(code: number): number {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff) throw new RangeError(`code ${code} does not fit 16 bits`);
  return code;
}

/** The frame preceded by its varint length (QUIC stream form). */
export function encodeLengthPrefixed(frame: Frame): Uint8Array {
  const body = encode(frame);
  const w = new Writer(body.length + MAX_VARINT_LEN);
  w.bytes(body);
  return w.finish();
}

/** Bytes a PUBLISH of this channel and payload size takes. */
export function publishLen(clientSeq: bigint, channel: string, payloadLen: number): number {
  return (
    1 +
    varintLen(clientSeq) +
    varintLen(BigInt(channel.length)) +
    channel.length +
    varintLen(BigInt(payloadLen)) +
    payloadLen
  );
}
