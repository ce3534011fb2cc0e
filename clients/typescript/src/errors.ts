/**
 * Typed errors. Each class says who is at fault:
 *
 * | class | fault |
 * | --- | --- |
 * | {@link ServerError} | the server refused something (an ERROR frame; `code` from PROTOCOL.md §5) |
 * | {@link ProtocolError} | the server broke the protocol (undecodable frame, seq gap, frame out of place) |
 * | {@link DecodeError} | bytes that do not form a valid frame (a ProtocolError when the server sent them) |
 * | {@link TransportError} | the network or the WebSocket (closed, refused, wrong subprotocol) |
 * | {@link TimeoutError} | the server or network: something did not arrive in time |
 * | {@link InvalidArgumentError} | the caller: an invalid channel name, a payload too large |
 * | {@link ClosedError} | the caller: the client was closed |
 * | {@link UncertainPublishError} | nobody: a new session started, the publish may or may not have been processed |
 */

import { errorInfo, type ErrorInfo } from './codes.js';

/** Base class of every error this package throws or rejects with. */
export class FerryError extends Error {
  override name = 'FerryError';
}

/** Why bytes do not form a frame; maps to an error code (PROTOCOL.md §4.16). */
export type DecodeErrorKind =
  | 'truncated'
  | 'unknown_type'
  | 'oversize'
  | 'bad_varint'
  | 'invalid_channel'
  | 'bad_utf8'
  | 'bad_value'
  | 'trailing_bytes';

/** Bytes that do not form a valid frame. */
export class DecodeError extends FerryError {
  override name = 'DecodeError';
  constructor(
    /** What is wrong. */
    readonly kind: DecodeErrorKind,
    /** The offending field, when one is. */
    readonly field: string | undefined,
    detail: string,
    /** For `invalid_channel`: `empty`, `too_long` or `forbidden_byte`. */
    readonly reason?: string,
  ) {
    super(field === undefined ? detail : `${field}: ${detail}`);
  }

  /** The error code a receiver answers with: 101, 102, 200 or 100. */
  get code(): number {
    switch (this.kind) {
      case 'unknown_type':
        return 101;
      case 'oversize':
        return 102;
      case 'invalid_channel':
        return 200;
      default:
        return 100;
    }
  }
}

/** The server sent ERROR (or GOAWAY): it refused a request, or closed. */
export class ServerError extends FerryError {
  override name = 'ServerError';
  /** What the code means and what the client does about it. */
  readonly info: ErrorInfo;
  constructor(
    /** The error code (PROTOCOL.md §5). */
    readonly code: number,
    /** The request_id or client_seq it answers; 0 for none. */
    readonly ref: bigint,
    /** The server's detail; not for parsing. */
    readonly serverMessage: string,
  ) {
    const info = errorInfo(code);
    super(`${code} ${info.name}${serverMessage ? `: ${serverMessage}` : ''}`);
    this.info = info;
  }

  /** JSON has no bigint: `ref` becomes a decimal string. */
  toJSON(): { name: string; message: string; code: number; ref: string } {
    return { name: this.name, message: this.message, code: this.code, ref: this.ref.toString() };
  }
}

/** The server broke the protocol. */
export class ProtocolError extends FerryError {
  override name = 'ProtocolError';
}

/** The WebSocket failed, closed, or could not be opened. */
export class TransportError extends FerryError {
  override name = 'TransportError';
}

/** Something did not arrive in time (WELCOME, any frame, a close). */
export class TimeoutError extends FerryError {
  override name = 'TimeoutError';
}

/** An argument the caller gave cannot be used. */
export class InvalidArgumentError extends FerryError {
  override name = 'InvalidArgumentError';
}

/** The client was closed (by the application or a terminal error). */
export class ClosedError extends FerryError {
  override name = 'ClosedError';
}

/**
 * A new session started before the server acknowledged this publish: it
 * may or may not have been processed, so it is not re-sent automatically
 * (PROTOCOL.md §8.3). The application decides whether to publish again.
 */
export class UncertainPublishError extends FerryError {
  override name = 'UncertainPublishError';
  constructor(
    readonly channel: string,
    readonly payload: Uint8Array,
  ) {
    super(`publish to ${channel} is uncertain: the session was replaced before its PUBACK`);
  }
}
