/**
 * The WebSocket driver: it feeds the sans-IO {@link Session} with frames,
 * commands and time, writes what the session asks, hands events to the
 * application, and reconnects (backoff with jitter, GOAWAY hints, token
 * refresh, pausing while the browser is offline or the page hidden).
 *
 * ```text
 *   app ──subscribe / publish / close──> FerryClient ──commands──> Session
 *   WebSocket ──frames──> FerryClient ──handleFrame──> Session
 *   app <──events, promises── FerryClient <──outputs / frames── Session
 * ```
 */

import { AUTH_RATE_LIMITED_DELAY_MS, backoffDelay, DEFAULT_RECONNECT, goAwayDelay, type ReconnectOptions } from './backoff.js';
import { decode, encode } from './codec.js';
import type { ErrorAction } from './codes.js';
import { reportLater, Emitter } from './emitter.js';
import {
  ClosedError,
  DecodeError,
  FerryError,
  InvalidArgumentError,
  ProtocolError,
  ServerError,
  TimeoutError,
  TransportError,
  UncertainPublishError,
} from './errors.js';
import { WS_SUBPROTOCOL, type Outcome } from './frame.js';
import { Session, type Output, type PendingPublish, type SessionStats } from './session.js';

/** The subset of the WebSocket API the driver uses (browsers, Node ≥ 22, `ws`). */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** A WebSocket constructor (`globalThis.WebSocket`, or `ws`'s). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Gives a token: at every connect and when the server asks for a fresh one. */
export type TokenProvider = () => string | Promise<string>;

/** Options of {@link Ferry.connect}. */
export interface ConnectOptions {
  /** A token, or a function that returns a fresh one (needed for refresh). */
  token?: string | TokenProvider;
  /** The WebSocket constructor; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** ACK after this many messages (1..64, default 32). */
  ackEvery?: number;
  /** ACK at most this long after the first unacknowledged message (default 50 ms). */
  ackDelayMs?: number;
  /** Heartbeat interval instead of the server's. */
  heartbeatIntervalMs?: number;
  /** How long a connection attempt may take to reach WELCOME (default 10 s). */
  connectTimeoutMs?: number;
  /** Reconnect tuning. */
  reconnect?: Partial<ReconnectOptions>;
  /**
   * Browser: close the connection after the page has been hidden this long
   * (default 60 s; `null` never) and resume when it is visible again.
   */
  pauseWhenHiddenMs?: number | null;
  /** Browser: close while `offline`, reconnect at once on `online` (default true). */
  watchNetwork?: boolean;
  /** Random numbers in [0, 1) for jitter (tests). */
  random?: () => number;
}

/** The client's state. */
export type ClientState = 'connecting' | 'connected' | 'reconnecting' | 'paused' | 'closed';

/** A message of a subscribed channel, delivered exactly once and in order. */
export class FerryMessage {
  constructor(
    /** The channel. */
    readonly channel: string,
    /** The payload bytes, as published. */
    readonly data: Uint8Array,
    /** The session's sequence number (exact below 2^53). */
    readonly seq: number,
    /** The message's position in its channel: 1, 2, 3, … (exact below 2^53). */
    readonly offset: number,
  ) {}

  /** The payload as UTF-8 text. */
  text(): string {
    return new TextDecoder().decode(this.data);
  }

  /** The payload parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

/** What `publish` resolves with once the server processed the publish. */
export interface PublishAck {
  channel: string;
  /** Its number in the session (PUBACK carries no channel offset in version 1). */
  clientSeq: number;
}

/** A publish that a new session made uncertain. */
export interface UncertainPublish {
  channel: string;
  data: Uint8Array;
}

/** Events of a {@link FerryClient}. */
export interface ClientEvents {
  /** Any state change. */
  state: ClientState;
  /** A connection attempt starts (`attempt` 0 for the first after a loss). */
  connecting: { attempt: number; resuming: boolean };
  /** WELCOME: after every (re)connect, the first included. */
  connected: { outcome: Outcome; sessionId: string; resumed: boolean };
  /** The session was resumed: nothing was lost. */
  resumed: { sessionId: string };
  /**
   * The session could not be resumed: messages may have been missed
   * (`outcome` new_replay_unavailable: they were). Re-sync from your own
   * source of truth. Subscriptions are restored by the SDK; `uncertain`
   * publishes may or may not have been processed and were not re-sent.
   */
  gap: {
    outcome: Outcome;
    uncertain: UncertainPublish[];
    /**
     * Per channel, the offset of the last message delivered before the
     * session was lost: fetch what follows from your own history. (Offsets
     * restart if the gateway itself restarted, PROTOCOL.md §17.5.)
     */
    lastOffsets: Record<string, number>;
  };
  /** An established connection was lost; the SDK reconnects unless closed. */
  disconnected: { reason: string; error?: FerryError };
  /** The server asked to reconnect (shutdown, upgrade). */
  goaway: { code: number; reconnectAfterMs: number; message: string };
  /** A fresh token was sent after REFRESH_TOKEN. */
  token_refreshed: { deadlineMs: number };
  /** Every message of every channel. */
  message: FerryMessage;
  /** An error the application should know of (fatal server errors, failed re-subscriptions). */
  error: FerryError;
  /** The client stopped for good; `error` when it was not closed by the application. */
  closed: { error?: FerryError };
}

/** A subscription handle. */
export interface Subscription {
  readonly channel: string;
  /** Resolves once the server confirmed (with the channel's offset before it). */
  readonly ready: Promise<{ channelOffset: number }>;
  /** Removes this handler; the channel is left when its last handler goes. */
  unsubscribe(): Promise<void>;
}

type Handler = (message: FerryMessage) => void;

interface ChannelEntry {
  handlers: Set<Handler>;
  ready: Promise<{ channelOffset: number }>;
}

interface Waiter<T> {
  resolve: (value: T) => void;
  reject: (error: FerryError) => void;
}

/** After GOAWAY the connection is read until the server closes it, at most this long. */
const GOAWAY_DRAIN_MS = 5_000;
/** Frames answered in one pump before yielding (bounded loops). */
const PUMP_LIMIT = 100_000;

const now = (): number => performance.now();
const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const utf8 = new TextEncoder();

/** A connected Ferry client: see {@link Ferry.connect}. */
export class FerryClient extends Emitter<ClientEvents> {
  private readonly session: Session;
  private readonly WS: WebSocketConstructor;
  private readonly reconnectOptions: ReconnectOptions;
  private readonly random: () => number;
  private stateValue: ClientState = 'connecting';
  private ws: WebSocketLike | null = null;
  /** Incremented per socket: callbacks of older sockets are ignored. */
  private generation = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private drainTimer: ReturnType<typeof setTimeout> | null = null;
  /** Consecutive attempts without a long-lived connection. */
  private attempt = 0;
  private welcomedAt: number | null = null;
  private detachedAt: number | null = null;
  private resumeWindowMs = 120_000;
  /** GOAWAY received on the current connection. */
  private goaway: { reconnectAfterMs: number } | null = null;
  /** A fatal ERROR received on the current connection. */
  private fatal: { error: ServerError; action: ErrorAction } | null = null;
  /** Token failures (4xx) since the last WELCOME. */
  private authFailures = 0;
  /** last_received_seq when the server last broke the protocol. */
  private protocolFailureAt: bigint | null = null;
  private readonly paused = new Set<'offline' | 'hidden'>();
  private hiddenTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly removeListeners: (() => void)[] = [];
  private readonly publishes = new Map<number, Waiter<PublishAck> & { channel: string }>();
  private readonly requestWaiters = new Map<bigint, Waiter<bigint>>();
  private readonly channels = new Map<string, ChannelEntry>();
  /** The offset of the last message delivered, per channel, in this session. */
  private lastOffsets: Record<string, number> = {};
  private firstConnect: Waiter<FerryClient> | null = null;
  private pumping = false;
  private started = false;

  private constructor(
    private readonly url: string,
    private readonly options: ConnectOptions,
  ) {
    super();
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new InvalidArgumentError(
        'no WebSocket: pass options.WebSocket (Node 20: run with --experimental-websocket, or use the ws package)',
      );
    }
    this.WS = WS;
    this.reconnectOptions = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.random = options.random ?? Math.random;
    this.session = new Session({
      ...(options.ackEvery !== undefined && { ackEvery: options.ackEvery }),
      ...(options.ackDelayMs !== undefined && { ackDelayMs: options.ackDelayMs }),
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? null,
      ...(options.connectTimeoutMs !== undefined && { handshakeTimeoutMs: options.connectTimeoutMs }),
    });
  }

  /** Opens a session; resolves at WELCOME, rejects if the first connection fails. */
  static connect(url: string, options: ConnectOptions = {}): Promise<FerryClient> {
    let client: FerryClient;
    try {
      client = FerryClient.create(url, options);
    } catch (e) {
      return Promise.reject(e);
    }
    return client.connect();
  }

  /**
   * A client that has not connected yet, for listening to the first
   * connection's events too: `create`, `on(...)`, then {@link connect}.
   * Throws {@link InvalidArgumentError} when no WebSocket is available.
   */
  static create(url: string, options: ConnectOptions = {}): FerryClient {
    return new FerryClient(url, options);
  }

  /** Starts the first connection; resolves at WELCOME. Once only. */
  connect(): Promise<FerryClient> {
    if (this.started) return Promise.reject(new InvalidArgumentError('connect() was called already'));
    this.started = true;
    return new Promise<FerryClient>((resolve, reject) => {
      this.firstConnect = { resolve, reject };
      this.watchBrowser();
      void this.open();
    });
  }

  // ----- the application's API -----

  /** The current state. */
  get state(): ClientState {
    return this.stateValue;
  }

  /** The session id (hex), once connected. */
  get sessionId(): string | null {
    const id = this.session.sessionId;
    return id ? hex(id) : null;
  }

  /** Counters of the session. */
  stats(): SessionStats & { pendingPublishes: number } {
    return { ...this.session.stats(), pendingPublishes: this.session.pendingPublishes.length };
  }

  /**
   * Calls `onMessage` for every message of `channel`, exactly once and in
   * order. Subscriptions survive reconnects and are restored in a new session.
   */
  subscribe(channel: string, onMessage: Handler): Subscription {
    let entry = this.channels.get(channel);
    if (!entry) {
      const requestId = this.session.subscribe(channel); // throws on a bad name or when closed
      const ready = this.waitRequest(requestId).then((offset) => ({ channelOffset: Number(offset) }));
      const created: ChannelEntry = { handlers: new Set(), ready };
      ready.catch(() => {
        if (this.channels.get(channel) === created) this.channels.delete(channel);
      });
      this.channels.set(channel, created);
      entry = created;
      this.pump();
    }
    const handler: Handler = (m) => onMessage(m);
    entry.handlers.add(handler);
    const owner = entry;
    let active = true;
    return {
      channel,
      ready: owner.ready,
      unsubscribe: async () => {
        if (!active) return;
        active = false;
        owner.handlers.delete(handler);
        if (owner.handlers.size > 0 || this.channels.get(channel) !== owner) return;
        this.channels.delete(channel);
        if (this.session.isClosed) return;
        const requestId = this.session.unsubscribe(channel);
        const done = this.waitRequest(requestId);
        this.pump();
        await done;
      },
    };
  }

  /**
   * Publishes `data` (bytes, or a string sent as UTF-8). Resolves when the
   * server has processed it (PUBACK), exactly once even across reconnects;
   * rejects with {@link ServerError} if refused, with
   * {@link UncertainPublishError} if a new session made it uncertain.
   */
  publish(channel: string, data: Uint8Array | ArrayBuffer | string): Promise<PublishAck> {
    let p: PendingPublish;
    try {
      const payload =
        typeof data === 'string' ? utf8.encode(data) : data instanceof Uint8Array ? data : new Uint8Array(data);
      p = this.session.publish(channel, payload);
    } catch (e) {
      return Promise.reject(e);
    }
    const result = new Promise<PublishAck>((resolve, reject) => {
      this.publishes.set(p.id, { resolve, reject, channel });
    });
    this.pump();
    return result;
  }

  /** Closes the client for good. Pending publishes reject with {@link ClosedError}. */
  close(): void {
    this.stop(undefined);
  }

  // ----- connections -----

  private async open(): Promise<void> {
    if (this.session.isClosed || this.paused.size > 0 || this.ws) return;
    this.clearReconnect();
    if (this.detachedAt !== null && now() - this.detachedAt > this.resumeWindowMs) {
      // The session is certainly gone: connect without resume (§11).
      this.session.forgetSession();
    }
    this.setState(this.firstConnect ? 'connecting' : 'reconnecting');
    this.emit('connecting', { attempt: this.attempt, resuming: this.session.sessionId !== null });
    const gen = ++this.generation;
    let token: string;
    try {
      token = await this.token();
    } catch (e) {
      if (gen === this.generation) this.ended(gen, 'the token provider failed', asFerryError(e, TransportError));
      return;
    }
    if (gen !== this.generation || this.session.isClosed || this.paused.size > 0) return;
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.url, WS_SUBPROTOCOL);
      ws.binaryType = 'arraybuffer';
    } catch (e) {
      this.ended(gen, 'cannot open the WebSocket', asFerryError(e, TransportError));
      return;
    }
    this.ws = ws;
    this.goaway = null;
    this.fatal = null;
    ws.onopen = () => {
      if (gen !== this.generation) return;
      if (ws.protocol !== WS_SUBPROTOCOL) {
        this.stop(new TransportError(`the server selected subprotocol ${JSON.stringify(ws.protocol)}, not ${WS_SUBPROTOCOL}`));
        return;
      }
      this.session.startHandshake(token, now());
      this.pump();
    };
    ws.onmessage = (ev) => {
      if (gen !== this.generation) return;
      this.onData(gen, ev.data);
    };
    ws.onerror = () => {
      // The close event follows with the details browsers give (none).
    };
    ws.onclose = (ev) => {
      if (gen !== this.generation) return;
      const detail = ev.code !== undefined ? ` (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})` : '';
      this.ended(gen, `the WebSocket closed${detail}`, new TransportError(`connection closed${detail}`));
    };
  }

  private async token(): Promise<string> {
    const t = this.options.token;
    if (typeof t === 'function') return await t();
    return t ?? '';
  }

  private onData(gen: number, data: unknown): void {
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer || Object.prototype.toString.call(data) === '[object ArrayBuffer]') {
      bytes = new Uint8Array(data as ArrayBuffer);
    } else if (ArrayBuffer.isView(data)) {
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } else {
      // Text messages are not part of the protocol (PROTOCOL.md §2.1).
      this.connectionFailed(gen, new ProtocolError(`the server sent a ${typeof data === 'string' ? 'text' : 'non-binary'} message`), 110);
      return;
    }
    try {
      // A MESSAGE may exceed max_frame_size by its seq and offset (§13).
      const frame = decode(bytes, { maxFrameSize: this.session.frameLimit + 32 });
      this.session.handleFrame(frame, now());
    } catch (e) {
      if (e instanceof DecodeError) {
        // Report the bytes (§4.16), at most 64 of them.
        const shown = hex(bytes.subarray(0, 64)) + (bytes.length > 64 ? '…' : '');
        this.connectionFailed(gen, new ProtocolError(`undecodable frame from the server (${e.message}): ${shown}`), e.code);
      } else {
        this.connectionFailed(gen, asFerryError(e, ProtocolError), 103);
      }
      return;
    }
    this.pump();
  }

  /**
   * The current connection must go (protocol violation, timeout): tell the
   * server why when it broke the protocol (`code`), drop it and reconnect.
   */
  private connectionFailed(gen: number, error: FerryError, code?: number): void {
    this.pump(); // deliver what the session accepted before the failure
    if (gen !== this.generation) return;
    if (code !== undefined && this.ws && error instanceof ProtocolError) {
      try {
        this.ws.send(encode({ type: 'ERROR', code, ref: 0n, message: error.message.slice(0, 200) }));
      } catch {
        // not open: nothing to tell
      }
    }
    this.ended(gen, error.message, error);
  }

  /** The connection `gen` is over; decide what comes next. */
  private ended(gen: number, reason: string, error: FerryError): void {
    if (gen !== this.generation) return;
    this.generation++;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
    }
    this.clearTimer();
    this.clearDrain();
    const wasWelcomed = this.welcomedAt !== null;
    if (this.welcomedAt !== null && now() - this.welcomedAt >= this.reconnectOptions.resetAfterMs) this.attempt = 0;
    this.welcomedAt = null;
    if (wasWelcomed || this.detachedAt === null) this.detachedAt = now();
    const fatal = this.fatal;
    const goaway = this.goaway;
    this.fatal = null;
    this.goaway = null;
    const cause = fatal?.error ?? error;
    this.session.transportLost(fatal ? fatal.error.message : goaway ? 'GOAWAY' : reason);
    this.pump();
    if (this.session.isClosed) {
      this.stop(cause);
      return;
    }
    if (this.firstConnect) {
      // The first connection failed: connect() rejects.
      this.stop(cause);
      return;
    }
    let delay: number;
    if (fatal) {
      switch (fatal.action) {
        case 'refresh_token':
          if (typeof this.options.token !== 'function' || this.authFailures >= 1) {
            this.stop(fatal.error);
            return;
          }
          this.authFailures++;
          delay = backoffDelay(this.attempt++, this.random(), this.reconnectOptions);
          break;
        case 'new_session':
          this.session.forgetSession();
          delay = backoffDelay(this.attempt++, this.random(), this.reconnectOptions);
          break;
        case 'slow_retry':
          delay = Math.max(AUTH_RATE_LIMITED_DELAY_MS, backoffDelay(this.attempt++, this.random(), this.reconnectOptions));
          break;
        default:
          delay = backoffDelay(this.attempt++, this.random(), this.reconnectOptions);
      }
    } else if (goaway) {
      delay = goAwayDelay(goaway.reconnectAfterMs, this.random());
    } else {
      if (error instanceof ProtocolError) {
        // A resume replays the same frame: one retry at the same point, then stop (§4.16).
        const at = this.session.lastReceivedSeq;
        if (this.protocolFailureAt === at) {
          this.stop(error);
          return;
        }
        this.protocolFailureAt = at;
      }
      delay = backoffDelay(this.attempt++, this.random(), this.reconnectOptions);
    }
    if (this.attempt > this.reconnectOptions.maxAttempts) {
      this.stop(new TransportError(`gave up after ${this.reconnectOptions.maxAttempts} attempts: ${reason}`));
      return;
    }
    this.scheduleReconnect(delay);
  }

  private scheduleReconnect(delayMs: number): void {
    this.clearReconnect();
    if (this.paused.size > 0) {
      this.setState('paused');
      return;
    }
    this.setState('reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.open();
    }, delayMs);
  }

  /** Stops for good: `error` undefined when the application closed. */
  private stop(error: FerryError | undefined): void {
    if (this.stateValue === 'closed') return;
    this.session.close();
    this.generation++;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
    }
    this.clearTimer();
    this.clearReconnect();
    this.clearDrain();
    if (this.hiddenTimer) clearTimeout(this.hiddenTimer);
    for (const remove of this.removeListeners.splice(0)) remove();
    const reason = error ?? new ClosedError('the client was closed');
    for (const w of this.publishes.values()) w.reject(reason);
    this.publishes.clear();
    for (const w of this.requestWaiters.values()) w.reject(reason);
    this.requestWaiters.clear();
    this.setState('closed');
    if (this.firstConnect) {
      this.firstConnect.reject(reason);
      this.firstConnect = null;
    }
    if (error) this.emit('error', error);
    this.emit('closed', error ? { error } : {});
  }

  // ----- the pump: session outputs to the socket and the application -----

  private pump(): void {
    if (this.pumping) return; // re-entered from an application callback
    this.pumping = true;
    try {
      for (let i = 0; i < PUMP_LIMIT; i++) {
        const ws = this.ws;
        let frame = ws ? this.session.pollTransmit(now()) : undefined;
        while (frame && ws) {
          ws.send(encode(frame));
          frame = this.session.pollTransmit(now());
        }
        const out = this.session.pollOutput();
        if (out === undefined) break;
        this.onOutput(out);
      }
    } catch (e) {
      // ws.send throws only for a socket that is not open: its close follows.
      reportLater(e);
    } finally {
      this.pumping = false;
    }
    this.armTimer();
  }

  private onOutput(out: Output): void {
    switch (out.kind) {
      case 'connected': {
        this.welcomedAt = now();
        this.detachedAt = null;
        this.authFailures = 0;
        this.resumeWindowMs = out.resumeWindowMs;
        const sessionId = hex(out.sessionId);
        const resumed = out.outcome === 'resumed';
        this.setState('connected');
        this.emit('connected', { outcome: out.outcome, sessionId, resumed });
        if (resumed) this.emit('resumed', { sessionId });
        if (this.firstConnect) {
          const first = this.firstConnect;
          this.firstConnect = null;
          first.resolve(this);
        }
        return;
      }
      case 'message': {
        const m = new FerryMessage(out.channel, out.payload, Number(out.seq), Number(out.channelOffset));
        this.lastOffsets[out.channel] = m.offset;
        const entry = this.channels.get(out.channel);
        if (entry) {
          for (const h of entry.handlers) {
            try {
              h(m);
            } catch (e) {
              reportLater(e);
            }
          }
        }
        this.emit('message', m);
        return;
      }
      case 'disconnected':
        this.emit('disconnected', { reason: out.reason });
        return;
      case 'session_lost': {
        const uncertain: UncertainPublish[] = [];
        for (const p of out.uncertain) {
          uncertain.push({ channel: p.channel, data: p.payload });
          const w = this.publishes.get(p.id);
          if (w) {
            this.publishes.delete(p.id);
            w.reject(new UncertainPublishError(p.channel, p.payload));
          }
        }
        const lastOffsets = this.lastOffsets;
        this.lastOffsets = {};
        this.emit('gap', { outcome: out.outcome, uncertain, lastOffsets });
        return;
      }
      case 'request_done': {
        const w = this.requestWaiters.get(out.requestId);
        this.requestWaiters.delete(out.requestId);
        if (out.result.ok) {
          w?.resolve(out.result.channelOffset);
        } else if (w) {
          w.reject(out.result.error);
        } else {
          // A re-subscription the SDK made by itself was refused.
          const entry = this.channels.get(out.channel);
          if (out.subscribe && entry) this.channels.delete(out.channel);
          this.emit('error', out.result.error);
        }
        return;
      }
      case 'publish_done': {
        const w = this.publishes.get(out.id);
        if (!w) return;
        this.publishes.delete(out.id);
        if (out.error) w.reject(out.error);
        else w.resolve({ channel: w.channel, clientSeq: Number(out.clientSeq) });
        return;
      }
      case 'server_error':
        return;
      case 'goaway':
        this.goaway = { reconnectAfterMs: out.reconnectAfterMs };
        this.emit('goaway', { code: out.code, reconnectAfterMs: out.reconnectAfterMs, message: out.message });
        this.startDrain();
        return;
      case 'fatal': {
        this.fatal = { error: out.error, action: out.action };
        // The server closes after a fatal ERROR; do not wait for it.
        const gen = this.generation;
        queueMicrotask(() => this.ended(gen, out.error.message, out.error));
        return;
      }
      case 'token_requested':
        void this.refreshToken(out.deadlineMs);
        return;
    }
  }

  private async refreshToken(deadlineMs: number): Promise<void> {
    if (typeof this.options.token !== 'function') return; // the server will close with 409
    const gen = this.generation;
    let token: string;
    try {
      token = await this.options.token();
    } catch (e) {
      this.emit('error', asFerryError(e, FerryError));
      return;
    }
    if (gen !== this.generation || !this.session.isActive) return; // the next HELLO carries a fresh token
    this.session.sendToken(token);
    this.pump();
    this.emit('token_refreshed', { deadlineMs });
  }

  // ----- timers -----

  private armTimer(): void {
    const at = this.session.pollTimeout();
    if (at === null) {
      this.clearTimer();
      return;
    }
    // An earlier timer stays: it fires, finds nothing due, and re-arms.
    if (this.timer !== null && this.timerAt <= at) return;
    this.clearTimer();
    this.timerAt = at;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, at - now()));
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  private onTimer(): void {
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
    const gen = this.generation;
    try {
      this.session.handleTimeout(now());
    } catch (e) {
      this.connectionFailed(gen, asFerryError(e, TimeoutError));
      return;
    }
    this.pump();
  }

  private startDrain(): void {
    this.clearDrain();
    const gen = this.generation;
    this.drainTimer = setTimeout(() => {
      this.drainTimer = null;
      this.ended(gen, 'no close after GOAWAY', new TimeoutError('the server did not close after GOAWAY'));
    }, GOAWAY_DRAIN_MS);
  }

  private clearDrain(): void {
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.drainTimer = null;
  }

  private clearReconnect(): void {
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  private setState(state: ClientState): void {
    if (this.stateValue === state || this.stateValue === 'closed') return;
    this.stateValue = state;
    this.emit('state', state);
  }

  private waitRequest(requestId: bigint): Promise<bigint> {
    const p = new Promise<bigint>((resolve, reject) => this.requestWaiters.set(requestId, { resolve, reject }));
    // Callers may ignore the promise (a Subscription's `ready`).
    p.catch(() => undefined);
    return p;
  }

  // ----- browser: offline / online, hidden / visible -----

  private watchBrowser(): void {
    const g = globalThis as {
      addEventListener?: (type: string, fn: () => void) => void;
      removeEventListener?: (type: string, fn: () => void) => void;
      document?: {
        visibilityState?: string;
        addEventListener: (type: string, fn: () => void) => void;
        removeEventListener: (type: string, fn: () => void) => void;
      };
      navigator?: { onLine?: boolean };
    };
    if (this.options.watchNetwork !== false && typeof g.addEventListener === 'function' && g.document) {
      const offline = () => this.pause('offline');
      const online = () => this.unpause('offline');
      g.addEventListener('offline', offline);
      g.addEventListener('online', online);
      this.removeListeners.push(() => {
        g.removeEventListener?.('offline', offline);
        g.removeEventListener?.('online', online);
      });
    }
    const hiddenMs = this.options.pauseWhenHiddenMs === undefined ? 60_000 : this.options.pauseWhenHiddenMs;
    const doc = g.document;
    if (hiddenMs !== null && doc) {
      const change = () => {
        if (this.hiddenTimer) clearTimeout(this.hiddenTimer);
        this.hiddenTimer = null;
        if (doc.visibilityState === 'hidden') {
          this.hiddenTimer = setTimeout(() => this.pause('hidden'), hiddenMs);
        } else {
          this.unpause('hidden');
        }
      };
      doc.addEventListener('visibilitychange', change);
      this.removeListeners.push(() => doc.removeEventListener('visibilitychange', change));
    }
  }

  /** Closes the connection (acknowledging first) and holds reconnects until unpaused. */
  private pause(reason: 'offline' | 'hidden'): void {
    if (this.session.isClosed || this.firstConnect) return;
    this.paused.add(reason);
    this.clearReconnect();
    if (this.ws) {
      this.session.ackNow();
      this.pump();
      this.ended(this.generation, reason, new TransportError(`paused: ${reason}`));
    }
    this.setState('paused');
  }

  private unpause(reason: 'offline' | 'hidden'): void {
    if (!this.paused.delete(reason) || this.paused.size > 0 || this.session.isClosed) return;
    this.attempt = 0;
    void this.open();
  }
}

function asFerryError(e: unknown, Kind: new (message: string) => FerryError): FerryError {
  if (e instanceof FerryError) return e;
  return new Kind(e instanceof Error ? e.message : String(e));
}

/** Entry point: `const client = await Ferry.connect(url, { token })`. */
export const Ferry = {
  connect: FerryClient.connect,
  create: FerryClient.create,
} as const;
