/**
 * Ferry client SDK for browsers and Node.
 *
 * ```ts
 * import { Ferry } from '@ferry/client';
 * const client = await Ferry.connect('wss://host/ws', { token });
 * client.subscribe('chat:1', (m) => console.log(m.text()));
 * await client.publish('chat:1', 'hello');
 * ```
 *
 * Layers: `codec` (frames ⇄ bytes, PROTOCOL.md §3–4), `session` (the
 * sans-IO protocol state machine: seq, ACK, outbox, resume, heartbeats)
 * and `client` (the WebSocket driver: timers, reconnects, browser events).
 * I/O stops at `client`.
 */

export { Ferry, FerryClient, FerryMessage } from './client.js';
export type {
  ClientEvents,
  ClientState,
  ConnectOptions,
  PublishAck,
  Subscription,
  TokenProvider,
  UncertainPublish,
  WebSocketConstructor,
  WebSocketLike,
} from './client.js';
export type { ReconnectOptions } from './backoff.js';
export {
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
export type { DecodeErrorKind } from './errors.js';
export { ErrorCode, errorInfo, knownCodes } from './codes.js';
export type { ErrorAction, ErrorInfo } from './codes.js';
export { channelProblem, isValidChannel, MAX_CHANNEL_LEN } from './channel.js';
export type { ChannelProblem } from './channel.js';
export { decode, encode, encodeLengthPrefixed, splitLengthPrefixed, DEFAULT_MAX_FRAME_SIZE } from './codec.js';
export type { DecodeLimits } from './codec.js';
export { FrameType, OUTCOMES, PROTOCOL_VERSION, WS_SUBPROTOCOL } from './frame.js';
export type { Frame, FrameName, Outcome, ResumeRequest } from './frame.js';
export { Session, DEFAULT_SESSION_CONFIG } from './session.js';
export type { Output, PendingPublish, RequestResult, SessionConfig, SessionStats } from './session.js';
export { backoffDelay, goAwayDelay } from './backoff.js';
