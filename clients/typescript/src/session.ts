/**
 * The client's protocol logic as a sans-IO state machine: no sockets, no
 * timers, no clock (the current time, in milliseconds, is passed in).
 * It mirrors `protocol/src/client/session.rs`.
 *
 * ```text
 *   driver ──startHandshake / handleFrame / handleTimeout / transportLost──> Session
 *   driver ──subscribe / unsubscribe / publish / sendToken / close────────> Session
 *   driver <──pollTransmit (frames) / pollOutput (events) / pollTimeout──── Session
 * ```
 *
 * After every input or command the driver drains {@link Session.pollTransmit}
 * (frames to write, in order) and {@link Session.pollOutput} (events for
 * the application, actions for the driver), then asks
 * {@link Session.pollTimeout} when to call {@link Session.handleTimeout}.
 *
 * The session survives transports. It owns the resume credentials, the
 * received seq (duplicates after a resume are dropped, a gap is the
 * server's error), the publish outbox (re-sent after
 * WELCOME.last_client_seq on a resume, handed back as uncertain on a new
 * session), the confirmed subscriptions (re-subscribed on a new session)
 * and the pending SUBSCRIBE/UNSUBSCRIBE requests (re-sent after every
 * WELCOME). Commands given while detached are held and sent after WELCOME.
 */

import { channelProblem } from './channel.js';
import { DEFAULT_MAX_FRAME_SIZE, publishLen } from './codec.js';
import { errorInfo, ErrorCode, type ErrorAction } from './codes.js';
import { InvalidArgumentError, ClosedError, ProtocolError, ServerError, TimeoutError } from './errors.js';
import { PROTOCOL_VERSION, type Frame, type Outcome, type WelcomeFrame } from './frame.js';
import { Liveness } from './liveness.js';

/** Tuning of a {@link Session}. */
export interface SessionConfig {
  /** Send ACK after this many accepted messages (1..64; default 32). */
  ackEvery: number;
  /** Send ACK at most this long after the first unacknowledged message (default 50 ms; the spec asks ≤ 250 ms). */
  ackDelayMs: number;
  /** Heartbeat interval instead of WELCOME's (0 there disables heartbeats). */
  heartbeatIntervalMs: number | null;
  /** How long to wait for WELCOME after HELLO (default 10 s). */
  handshakeTimeoutMs: number;
}

export const DEFAULT_SESSION_CONFIG: SessionConfig = {
  ackEvery: 32,
  ackDelayMs: 50,
  heartbeatIntervalMs: null,
  handshakeTimeoutMs: 10_000,
};

/** A publish the server has not acknowledged yet. */
export interface PendingPublish {
  /** Stable over renumbering and sessions: identifies the publish to the driver. */
  readonly id: number;
  /** Its client_seq in the current session. */
  clientSeq: bigint;
  readonly channel: string;
  readonly payload: Uint8Array;
  /** Handed to a transport: after a new session it is uncertain. */
  sent: boolean;
}

/** What a SUBSCRIBE or UNSUBSCRIBE came to. */
export type RequestResult = { ok: true; channelOffset: bigint } | { ok: false; error: ServerError };

/** What the session asks of its driver, and tells the application. */
export type Output =
  /** WELCOME arrived, after every (re)connect, the first included. */
  | { kind: 'connected'; outcome: Outcome; sessionId: Uint8Array; resumeWindowMs: number }
  /** A message, exactly once and in order. */
  | { kind: 'message'; seq: bigint; channel: string; channelOffset: bigint; payload: Uint8Array }
  /** An active connection was lost. */
  | { kind: 'disconnected'; reason: string }
  /**
   * The server started a new session where one existed (outcome 2 or 3, or
   * a reconnect without resume): messages may have been missed; these
   * publishes may or may not have been processed. Follows `connected`.
   */
  | { kind: 'session_lost'; outcome: Outcome; uncertain: PendingPublish[] }
  /** A SUBSCRIBE / UNSUBSCRIBE completed (re-subscriptions too). */
  | { kind: 'request_done'; requestId: bigint; channel: string; subscribe: boolean; result: RequestResult }
  /** A publish is settled: processed (error undefined) or rejected. */
  | { kind: 'publish_done'; id: number; clientSeq: bigint; error?: ServerError }
  /** An ERROR frame from the server (every one, for the application's log). */
  | { kind: 'server_error'; error: ServerError }
  /** GOAWAY: keep reading until the close, then reconnect after this + jitter. */
  | { kind: 'goaway'; code: number; reconnectAfterMs: number; message: string }
  /** A fatal ERROR: the server closes; the action says what to do next. */
  | { kind: 'fatal'; error: ServerError; action: ErrorAction }
  /** REFRESH_TOKEN: call {@link Session.sendToken} before the deadline. */
  | { kind: 'token_requested'; deadlineMs: number };

/** Counters of a session, since it was created. */
export interface SessionStats {
  reconnects: number;
  resumesOk: number;
  resumesFailed: number;
  messagesReceived: number;
  duplicatesDropped: number;
  publishesAcked: number;
  lastReceivedSeq: bigint;
}

type Phase =
  | { kind: 'detached' }
  | { kind: 'handshaking'; resuming: boolean; deadline: number }
  | { kind: 'active'; live: Liveness }
  | { kind: 'closed' };

interface Request {
  subscribe: boolean;
  channel: string;
}

interface Credentials {
  sessionId: Uint8Array;
  resumeSecret: Uint8Array;
}

type Transmit = { frame: Frame; publish?: PendingPublish };

/** The client side of one Ferry session, across transports. */
export class Session {
  private readonly config: SessionConfig;
  private phase: Phase = { kind: 'detached' };
  private credentials: Credentials | null = null;
  /** +1 for each new session (the first WELCOME makes it 1). */
  private epochValue = 0;
  private lastReceived = 0n;
  private ackedSeq = 0n;
  private unacked = 0;
  private ackDue: number | null = null;
  private outbox: PendingPublish[] = [];
  private lastAssigned = 0n;
  private nextPublishId = 1;
  private maxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  private maxSubscriptions = 64;
  private readonly subscriptions = new Set<string>();
  private requests = new Map<bigint, Request>();
  private lastRequestId = 0n;
  private nextNonce = 1n;
  private transmit: Transmit[] = [];
  private outputs: Output[] = [];
  private readonly counters = {
    reconnects: 0,
    resumesOk: 0,
    resumesFailed: 0,
    messagesReceived: 0,
    duplicatesDropped: 0,
    publishesAcked: 0,
  };

  constructor(config: Partial<SessionConfig> = {}) {
    const c = { ...DEFAULT_SESSION_CONFIG, ...config };
    c.ackEvery = Math.min(64, Math.max(1, Math.floor(c.ackEvery)));
    c.ackDelayMs = Math.min(250, Math.max(0, c.ackDelayMs));
    this.config = c;
  }

  // ----- inputs -----

  /**
   * A new transport is open: queue HELLO, with a resume request when a
   * session is held. Ignored once closed.
   */
  startHandshake(token: string, now: number): void {
    if (this.phase.kind === 'closed') return;
    this.transmit = [];
    const c = this.credentials;
    const resume = c
      ? { sessionId: c.sessionId, resumeSecret: c.resumeSecret, lastReceivedSeq: this.lastReceived }
      : null;
    this.phase = { kind: 'handshaking', resuming: resume !== null, deadline: now + this.config.handshakeTimeoutMs };
    this.transmit.push({ frame: { type: 'HELLO', version: PROTOCOL_VERSION, token, resume } });
  }

  /** A frame from the server. Throws {@link ProtocolError} when the server broke the protocol. */
  handleFrame(frame: Frame, now: number): void {
    const phase = this.phase;
    switch (phase.kind) {
      case 'active':
        phase.live.received(now);
        break;
      case 'handshaking':
        if (frame.type !== 'WELCOME' && frame.type !== 'ERROR' && frame.type !== 'GOAWAY') {
          throw new ProtocolError(`${frame.type} before WELCOME`);
        }
        break;
      default:
        // A stale frame of a transport already given up.
        return;
    }
    switch (frame.type) {
      case 'WELCOME':
        return this.onWelcome(frame, now);
      case 'MESSAGE':
        return this.onMessage(frame.seq, frame.channel, frame.channelOffset, frame.payload, now);
      case 'SUBSCRIBED':
        return this.onRequestDone(frame.requestId, true, frame.channelOffset);
      case 'UNSUBSCRIBED':
        return this.onRequestDone(frame.requestId, false, 0n);
      case 'PUBACK':
        return this.acknowledgePublishes(frame.clientSeq);
      case 'PING':
        this.transmit.push({ frame: { type: 'PONG', nonce: frame.nonce } });
        return;
      case 'PONG':
        return;
      case 'GOAWAY':
        this.outputs.push({
          kind: 'goaway',
          code: frame.code,
          reconnectAfterMs: toMs(frame.reconnectAfterMs),
          message: frame.message,
        });
        return;
      case 'ERROR':
        return this.onError(new ServerError(frame.code, frame.ref, frame.message));
      case 'REFRESH_TOKEN':
        this.outputs.push({ kind: 'token_requested', deadlineMs: toMs(frame.deadlineMs) });
        return;
      case 'HELLO':
      case 'SUBSCRIBE':
      case 'UNSUBSCRIBE':
      case 'PUBLISH':
      case 'ACK':
      case 'TOKEN':
        throw new ProtocolError(`the server sent a client frame ${frame.type}`);
    }
  }

  /**
   * The time given by {@link pollTimeout} has come: send a due ACK or PING,
   * or throw {@link TimeoutError} for a silent server or a late WELCOME.
   */
  handleTimeout(now: number): void {
    if (this.ackDue !== null && now >= this.ackDue) {
      this.ackDue = null;
      this.flushAck();
    }
    const phase = this.phase;
    if (phase.kind === 'handshaking' && now >= phase.deadline) {
      throw new TimeoutError(`no WELCOME within ${this.config.handshakeTimeoutMs} ms`);
    }
    if (phase.kind === 'active') {
      const check = phase.live.check(now);
      if (check.kind === 'ping') {
        this.transmit.push({ frame: { type: 'PING', nonce: this.nextNonce++ } });
      } else if (check.kind === 'silent') {
        throw new TimeoutError(`nothing heard from the server for ${check.silentForMs} ms`);
      }
    }
  }

  /**
   * The transport is gone. Unsent frames are dropped; their state stays
   * and is sent again after the next WELCOME.
   */
  transportLost(reason: string): void {
    const was = this.phase.kind;
    if (was === 'closed') return;
    this.phase = { kind: 'detached' };
    this.transmit = [];
    this.ackDue = null;
    if (was === 'active') this.outputs.push({ kind: 'disconnected', reason });
  }

  /**
   * Forget the session (ERROR 407, or a resume window long past): the next
   * handshake opens a new session; the next WELCOME reports the old one lost.
   */
  forgetSession(): void {
    this.credentials = null;
  }

  /** Acknowledge what arrived, at once (before going idle or pausing). */
  ackNow(): void {
    this.flushAck();
  }

  // ----- commands -----

  /** Asks to subscribe; returns the request id that `request_done` carries. */
  subscribe(channel: string): bigint {
    this.checkOpen();
    checkChannel(channel);
    const wanted = this.wantedChannels();
    if (!wanted.has(channel) && wanted.size >= this.maxSubscriptions) {
      throw new InvalidArgumentError(
        `at most ${this.maxSubscriptions} subscriptions (WELCOME.max_subscriptions); unsubscribe first`,
      );
    }
    return this.request(true, channel);
  }

  /** Asks to unsubscribe; returns the request id. */
  unsubscribe(channel: string): bigint {
    this.checkOpen();
    checkChannel(channel);
    return this.request(false, channel);
  }

  /** Numbers a publish and queues it (held while detached). */
  publish(channel: string, payload: Uint8Array): PendingPublish {
    this.checkOpen();
    checkChannel(channel);
    const clientSeq = this.lastAssigned + 1n;
    const len = publishLen(clientSeq, channel, payload.length);
    if (len > this.maxFrameSize) {
      throw new InvalidArgumentError(`PUBLISH of ${len} bytes exceeds max_frame_size ${this.maxFrameSize}`);
    }
    this.lastAssigned = clientSeq;
    const p: PendingPublish = { id: this.nextPublishId++, clientSeq, channel, payload, sent: false };
    this.outbox.push(p);
    if (this.phase.kind === 'active') this.queuePublish(p);
    return p;
  }

  /** Sends a fresh token (the answer to `token_requested`). */
  sendToken(token: string): void {
    if (this.phase.kind === 'active') this.transmit.push({ frame: { type: 'TOKEN', token } });
  }

  /** Closes the session for good. */
  close(): void {
    this.phase = { kind: 'closed' };
    this.transmit = [];
    this.ackDue = null;
  }

  // ----- outputs -----

  /** The next frame to write; `now` is when it is written. */
  pollTransmit(now: number): Frame | undefined {
    const t = this.transmit.shift();
    if (t === undefined) return undefined;
    if (t.publish) t.publish.sent = true;
    if (this.phase.kind === 'active') this.phase.live.sent(now);
    return t.frame;
  }

  /** Whether frames wait in {@link pollTransmit}. */
  hasTransmit(): boolean {
    return this.transmit.length > 0;
  }

  /** The next event or action. */
  pollOutput(): Output | undefined {
    return this.outputs.shift();
  }

  /** When to call {@link handleTimeout} next (null: nothing is due). */
  pollTimeout(): number | null {
    let at: number | null = null;
    const phase = this.phase;
    if (phase.kind === 'handshaking') at = phase.deadline;
    else if (phase.kind === 'active') at = phase.live.deadline();
    if (this.ackDue !== null) at = at === null ? this.ackDue : Math.min(at, this.ackDue);
    return at;
  }

  // ----- state -----

  /** The current session id (16 bytes), once WELCOME arrived. */
  get sessionId(): Uint8Array | null {
    return this.credentials?.sessionId ?? null;
  }

  get isActive(): boolean {
    return this.phase.kind === 'active';
  }

  get isClosed(): boolean {
    return this.phase.kind === 'closed';
  }

  /** +1 for each new session. */
  get epoch(): number {
    return this.epochValue;
  }

  /** The last MESSAGE seq received in the current session. */
  get lastReceivedSeq(): bigint {
    return this.lastReceived;
  }

  /** The last client_seq assigned in the current session. */
  get lastPublished(): bigint {
    return this.lastAssigned;
  }

  /** Publishes not acknowledged yet, in order. */
  get pendingPublishes(): readonly PendingPublish[] {
    return this.outbox;
  }

  /** The channels confirmed in the current session. */
  get confirmedSubscriptions(): ReadonlySet<string> {
    return this.subscriptions;
  }

  /** The largest frame the server accepts. */
  get frameLimit(): number {
    return this.maxFrameSize;
  }

  stats(): SessionStats {
    return { ...this.counters, lastReceivedSeq: this.lastReceived };
  }

  // ----- internals -----

  private checkOpen(): void {
    if (this.phase.kind === 'closed') throw new ClosedError('the session is closed');
  }

  /** Channels subscribed, or asked for, counting pending requests. */
  private wantedChannels(): Set<string> {
    const wanted = new Set(this.subscriptions);
    for (const r of this.requests.values()) {
      if (r.subscribe) wanted.add(r.channel);
      else wanted.delete(r.channel);
    }
    return wanted;
  }

  private request(subscribe: boolean, channel: string): bigint {
    const id = ++this.lastRequestId;
    const req = { subscribe, channel };
    this.requests.set(id, req);
    if (this.phase.kind === 'active') this.transmit.push({ frame: requestFrame(id, req) });
    return id;
  }

  private queuePublish(p: PendingPublish): void {
    this.transmit.push({
      frame: { type: 'PUBLISH', clientSeq: p.clientSeq, channel: p.channel, payload: p.payload },
      publish: p,
    });
  }

  private flushAck(): void {
    if (this.phase.kind === 'active' && this.lastReceived > this.ackedSeq) this.sendAck();
  }

  private sendAck(): void {
    this.ackDue = null;
    this.transmit.push({ frame: { type: 'ACK', seq: this.lastReceived } });
    this.ackedSeq = this.lastReceived;
    this.unacked = 0;
  }

  private onWelcome(w: WelcomeFrame, now: number): void {
    const phase = this.phase;
    if (phase.kind !== 'handshaking') throw new ProtocolError('a second WELCOME');
    const resumed = w.outcome === 'resumed';
    if (resumed) {
      const asked = this.credentials?.sessionId;
      if (!phase.resuming || !asked || !equalBytes(asked, w.sessionId)) {
        throw new ProtocolError('WELCOME resumed a session the client did not ask for');
      }
    }
    if (w.maxFrameSize > 0n) this.maxFrameSize = toMs(w.maxFrameSize);
    if (w.maxSubscriptions > 0n) this.maxSubscriptions = toMs(w.maxSubscriptions);
    const announced = toMs(w.heartbeatIntervalMs);
    const interval = this.config.heartbeatIntervalMs ?? (announced > 0 ? announced : null);
    this.phase = { kind: 'active', live: new Liveness(interval, now) };
    // Copies: the frame's fields are views of a transport buffer.
    this.credentials = { sessionId: w.sessionId.slice(), resumeSecret: w.resumeSecret.slice() };
    if (this.epochValue > 0) this.counters.reconnects++;
    this.outputs.push({
      kind: 'connected',
      outcome: w.outcome,
      sessionId: this.credentials.sessionId,
      resumeWindowMs: toMs(w.resumeWindowMs),
    });
    if (resumed) {
      this.counters.resumesOk++;
      this.acknowledgePublishes(w.lastClientSeq);
      for (const p of this.outbox) this.queuePublish(p);
      for (const [id, req] of this.requests) this.transmit.push({ frame: requestFrame(id, req) });
    } else {
      this.startNewSession(w.outcome);
    }
  }

  /**
   * The server holds nothing of ours: hand back the uncertain publishes,
   * renumber the ones never sent, complete pending UNSUBSCRIBEs and
   * subscribe again to every channel.
   */
  private startNewSession(outcome: Outcome): void {
    const hadSession = this.epochValue > 0;
    this.epochValue++;
    this.lastReceived = 0n;
    this.ackedSeq = 0n;
    this.unacked = 0;
    this.ackDue = null;
    const uncertain = this.outbox.filter((p) => p.sent);
    const unsent = this.outbox.filter((p) => !p.sent);
    this.outbox = [];
    this.lastAssigned = 0n;
    for (const p of unsent) {
      p.clientSeq = ++this.lastAssigned;
      this.outbox.push(p);
    }
    if (hadSession) {
      this.counters.resumesFailed++;
      this.outputs.push({ kind: 'session_lost', outcome, uncertain });
    }
    const wanted = new Set(this.subscriptions);
    this.subscriptions.clear();
    const requests = this.requests;
    this.requests = new Map();
    for (const [id, req] of requests) {
      wanted.delete(req.channel);
      if (req.subscribe) {
        this.requests.set(id, req);
      } else {
        // The new session holds no subscription: the UNSUBSCRIBE is done.
        this.outputs.push({
          kind: 'request_done',
          requestId: id,
          channel: req.channel,
          subscribe: false,
          result: { ok: true, channelOffset: 0n },
        });
      }
    }
    for (const channel of wanted) this.requests.set(++this.lastRequestId, { subscribe: true, channel });
    for (const [id, req] of this.requests) this.transmit.push({ frame: requestFrame(id, req) });
    for (const p of this.outbox) this.queuePublish(p);
  }

  private onMessage(seq: bigint, channel: string, channelOffset: bigint, payload: Uint8Array, now: number): void {
    const expected = this.lastReceived + 1n;
    if (seq < expected) {
      this.counters.duplicatesDropped++;
      return;
    }
    if (seq > expected) throw new ProtocolError(`MESSAGE seq gap: expected ${expected}, got ${seq}`);
    this.lastReceived = seq;
    this.counters.messagesReceived++;
    this.outputs.push({ kind: 'message', seq, channel, channelOffset, payload });
    this.unacked++;
    if (this.unacked >= this.config.ackEvery) {
      this.sendAck();
    } else if (this.ackDue === null) {
      this.ackDue = now + this.config.ackDelayMs;
    }
  }

  private onRequestDone(requestId: bigint, subscribe: boolean, channelOffset: bigint): void {
    const req = this.requests.get(requestId);
    // An answer to a request we no longer track is ignored.
    if (req === undefined) return;
    if (req.subscribe !== subscribe) {
      throw new ProtocolError(
        `${subscribe ? 'SUBSCRIBED' : 'UNSUBSCRIBED'} answers ${req.subscribe ? 'SUBSCRIBE' : 'UNSUBSCRIBE'} ${requestId}`,
      );
    }
    this.requests.delete(requestId);
    if (subscribe) this.subscriptions.add(req.channel);
    else this.subscriptions.delete(req.channel);
    this.outputs.push({
      kind: 'request_done',
      requestId,
      channel: req.channel,
      subscribe,
      result: { ok: true, channelOffset },
    });
  }

  /** Everything up to `clientSeq` is processed. */
  private acknowledgePublishes(clientSeq: bigint): void {
    if (clientSeq > this.lastAssigned) {
      throw new ProtocolError(`acknowledged client_seq ${clientSeq}, the last published is ${this.lastAssigned}`);
    }
    let n = 0;
    while (n < this.outbox.length && this.outbox[n]!.clientSeq <= clientSeq) n++;
    if (n === 0) return;
    const done = this.outbox.splice(0, n);
    this.counters.publishesAcked += n;
    for (const p of done) this.outputs.push({ kind: 'publish_done', id: p.id, clientSeq: p.clientSeq });
  }

  private onError(error: ServerError): void {
    this.outputs.push({ kind: 'server_error', error });
    const info = error.info;
    // An unknown 4xx naming a request leaves the connection open (§5).
    const requestError = !info.fatal || (!info.known && info.action === 'refresh_token' && error.ref > 0n);
    if (requestError) {
      this.onRequestError(error);
      return;
    }
    if (info.action === 'stop') this.close();
    this.outputs.push({ kind: 'fatal', error, action: info.action });
  }

  /**
   * A non-fatal ERROR answers one SUBSCRIBE / UNSUBSCRIBE (ref =
   * request_id) or one PUBLISH (ref = client_seq). 406 names a publish;
   * 201, 202 and 405 a request; others (203, unknown codes) a pending
   * request if one has that id, else a publish (PROTOCOL.md §17.2).
   */
  private onRequestError(error: ServerError): void {
    const ref = error.ref;
    let namesPublish: boolean;
    switch (error.code) {
      case ErrorCode.FORBIDDEN_PUBLISH:
        namesPublish = true;
        break;
      case ErrorCode.TOO_MANY_SUBSCRIPTIONS:
      case ErrorCode.NOT_SUBSCRIBED:
      case ErrorCode.FORBIDDEN_SUBSCRIBE:
        namesPublish = false;
        break;
      default:
        namesPublish = !this.requests.has(ref);
    }
    if (namesPublish) {
      if (!this.outbox.some((p) => p.clientSeq === ref)) return;
      // Publishes are processed in order: the ones before it are settled.
      this.acknowledgePublishes(ref - 1n);
      const p = this.outbox[0];
      if (p && p.clientSeq === ref) {
        this.outbox.shift();
        this.outputs.push({ kind: 'publish_done', id: p.id, clientSeq: p.clientSeq, error });
      }
      return;
    }
    const req = this.requests.get(ref);
    if (req === undefined) return;
    this.requests.delete(ref);
    let result: RequestResult;
    if (!req.subscribe && error.code === ErrorCode.NOT_SUBSCRIBED) {
      // Not subscribed: the unsubscribe is done (it may have been processed
      // before the transport died).
      this.subscriptions.delete(req.channel);
      result = { ok: true, channelOffset: 0n };
    } else {
      result = { ok: false, error };
    }
    this.outputs.push({ kind: 'request_done', requestId: ref, channel: req.channel, subscribe: req.subscribe, result });
  }
}

function requestFrame(id: bigint, req: Request): Frame {
  return req.subscribe
    ? { type: 'SUBSCRIBE', requestId: id, channel: req.channel }
    : { type: 'UNSUBSCRIBE', requestId: id, channel: req.channel };
}

function checkChannel(channel: string): void {
  const problem = channelProblem(channel);
  if (problem !== null) throw new InvalidArgumentError(`invalid channel name ${JSON.stringify(channel)}: ${problem}`);
}

/** A u64 duration or size as a number, saturated at 2^53 − 1. */
function toMs(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
