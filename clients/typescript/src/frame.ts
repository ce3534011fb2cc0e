/**
 * The frames of the Ferry protocol, version 1, as plain data
 * (PROTOCOL.md §4). Byte layouts are in `codec.ts`.
 *
 * Every unsigned 64-bit field is a `bigint`, so that the whole range
 * 0 ..= 2^64 − 1 survives a round trip. Fields bounded by the spec to
 * 16 bits or less (`code`) are numbers.
 */

/** The protocol version this package speaks. */
export const PROTOCOL_VERSION = 1n;
/** The WebSocket subprotocol that selects the protocol. */
export const WS_SUBPROTOCOL = 'ferry.v1';

/** The type byte of each frame (PROTOCOL.md §4). */
export const FrameType = {
  HELLO: 0x01,
  WELCOME: 0x02,
  SUBSCRIBE: 0x03,
  SUBSCRIBED: 0x04,
  UNSUBSCRIBE: 0x05,
  UNSUBSCRIBED: 0x06,
  PUBLISH: 0x07,
  PUBACK: 0x08,
  MESSAGE: 0x09,
  ACK: 0x0a,
  PING: 0x0b,
  PONG: 0x0c,
  GOAWAY: 0x0d,
  ERROR: 0x0e,
  REFRESH_TOKEN: 0x0f,
  TOKEN: 0x10,
} as const;

/** A frame name: `HELLO`, …, `TOKEN`. */
export type FrameName = keyof typeof FrameType;

/** WELCOME's outcome (PROTOCOL.md §6.1), in wire order 0..3. */
export const OUTCOMES = ['new', 'resumed', 'new_session_expired', 'new_replay_unavailable'] as const;
/** WELCOME's outcome. */
export type Outcome = (typeof OUTCOMES)[number];

/** What HELLO asks to resume. */
export interface ResumeRequest {
  /** 16 bytes. */
  sessionId: Uint8Array;
  /** 32 bytes. */
  resumeSecret: Uint8Array;
  /** The highest MESSAGE seq received in that session, 0 if none. */
  lastReceivedSeq: bigint;
}

export interface HelloFrame {
  type: 'HELLO';
  version: bigint;
  token: string;
  resume: ResumeRequest | null;
}

export interface WelcomeFrame {
  type: 'WELCOME';
  sessionId: Uint8Array;
  resumeSecret: Uint8Array;
  outcome: Outcome;
  heartbeatIntervalMs: bigint;
  resumeWindowMs: bigint;
  maxFrameSize: bigint;
  maxSubscriptions: bigint;
  lastClientSeq: bigint;
}

export interface SubscribeFrame {
  type: 'SUBSCRIBE';
  requestId: bigint;
  channel: string;
}

export interface SubscribedFrame {
  type: 'SUBSCRIBED';
  requestId: bigint;
  channelOffset: bigint;
}

export interface UnsubscribeFrame {
  type: 'UNSUBSCRIBE';
  requestId: bigint;
  channel: string;
}

export interface UnsubscribedFrame {
  type: 'UNSUBSCRIBED';
  requestId: bigint;
}

export interface PublishFrame {
  type: 'PUBLISH';
  clientSeq: bigint;
  channel: string;
  payload: Uint8Array;
}

export interface PubAckFrame {
  type: 'PUBACK';
  clientSeq: bigint;
}

export interface MessageFrame {
  type: 'MESSAGE';
  seq: bigint;
  channel: string;
  channelOffset: bigint;
  payload: Uint8Array;
}

export interface AckFrame {
  type: 'ACK';
  seq: bigint;
}

export interface PingFrame {
  type: 'PING';
  nonce: bigint;
}

export interface PongFrame {
  type: 'PONG';
  nonce: bigint;
}

export interface GoAwayFrame {
  type: 'GOAWAY';
  /** ≤ 65 535. */
  code: number;
  reconnectAfterMs: bigint;
  message: string;
}

export interface ErrorFrame {
  type: 'ERROR';
  /** ≤ 65 535. */
  code: number;
  /** The request_id or client_seq this answers; 0 for none. */
  ref: bigint;
  message: string;
}

export interface RefreshTokenFrame {
  type: 'REFRESH_TOKEN';
  deadlineMs: bigint;
}

export interface TokenFrame {
  type: 'TOKEN';
  token: string;
}

/** Any frame. */
export type Frame =
  | HelloFrame
  | WelcomeFrame
  | SubscribeFrame
  | SubscribedFrame
  | UnsubscribeFrame
  | UnsubscribedFrame
  | PublishFrame
  | PubAckFrame
  | MessageFrame
  | AckFrame
  | PingFrame
  | PongFrame
  | GoAwayFrame
  | ErrorFrame
  | RefreshTokenFrame
  | TokenFrame;
