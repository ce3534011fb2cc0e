/**
 * The error code table of PROTOCOL.md §5, shared by ERROR and GOAWAY, with
 * what each code asks of the client. Unknown codes are treated like their
 * hundred's group.
 */

/** What the client does after an ERROR with a given code. */
export type ErrorAction =
  /** Do not reconnect; surface the error (client bug, misconfiguration, operator). */
  | 'stop'
  /** Reconnect with backoff, resuming the session if one is held. */
  | 'resume'
  /** Non-fatal: fail the request named by `ref`; the session goes on. */
  | 'fail_request'
  /** Get a fresh token, then resume; if that fails again, stop. */
  | 'refresh_token'
  /** Forget the session and connect without resume (407). */
  | 'new_session'
  /** Reconnect after a long backoff, at least 30 s (408). */
  | 'slow_retry';

/** What a code means. */
export interface ErrorInfo {
  /** The code. */
  code: number;
  /** Its name in the table, or `unknown_<group>xx`. */
  name: string;
  /** Whether the server closes the connection after it. */
  fatal: boolean;
  /** What the client does. */
  action: ErrorAction;
  /** Whether the code is in the table of version 1. */
  known: boolean;
}

/** Every defined code by name. */
export const ErrorCode = {
  MALFORMED_FRAME: 100,
  UNKNOWN_FRAME_TYPE: 101,
  FRAME_TOO_LARGE: 102,
  UNEXPECTED_FRAME: 103,
  UNSUPPORTED_VERSION: 104,
  HANDSHAKE_TIMEOUT: 105,
  WRONG_SUBPROTOCOL: 106,
  HEARTBEAT_TIMEOUT: 107,
  INVALID_ACK: 108,
  CLIENT_SEQ_GAP: 109,
  TEXT_NOT_SUPPORTED: 110,
  INVALID_CHANNEL: 200,
  TOO_MANY_SUBSCRIPTIONS: 201,
  NOT_SUBSCRIBED: 202,
  RATE_LIMITED: 203,
  SLOW_CONSUMER: 300,
  REPLAY_OVERFLOW: 301,
  TOO_MANY_CONNECTIONS: 302,
  SESSION_TAKEN_OVER: 303,
  TOKEN_MISSING: 400,
  TOKEN_MALFORMED: 401,
  TOKEN_EXPIRED: 402,
  TOKEN_BAD_SIGNATURE: 403,
  TOKEN_WRONG_AUDIENCE: 404,
  FORBIDDEN_SUBSCRIBE: 405,
  FORBIDDEN_PUBLISH: 406,
  IDENTITY_MISMATCH: 407,
  AUTH_RATE_LIMITED: 408,
  TOKEN_REFRESH_TIMEOUT: 409,
  INTERNAL_ERROR: 500,
  SHUTTING_DOWN: 501,
  UPGRADING: 502,
  DISCONNECTED: 503,
} as const;

// [name, fatal, action] by code, from PROTOCOL.md §5.
const TABLE: ReadonlyMap<number, readonly [string, boolean, ErrorAction]> = new Map([
  [100, ['malformed_frame', true, 'stop']],
  [101, ['unknown_frame_type', true, 'stop']],
  [102, ['frame_too_large', true, 'stop']],
  [103, ['unexpected_frame', true, 'stop']],
  [104, ['unsupported_version', true, 'stop']],
  [105, ['handshake_timeout', true, 'resume']],
  [106, ['wrong_subprotocol', true, 'stop']],
  [107, ['heartbeat_timeout', true, 'resume']],
  [108, ['invalid_ack', true, 'stop']],
  [109, ['client_seq_gap', true, 'stop']],
  [110, ['text_not_supported', true, 'stop']],
  // 200 is non-fatal in the table; in version 1 the server closes anyway
  // (§17.1), which the driver sees as the close that follows.
  [200, ['invalid_channel', false, 'fail_request']],
  [201, ['too_many_subscriptions', false, 'fail_request']],
  [202, ['not_subscribed', false, 'fail_request']],
  [203, ['rate_limited', false, 'fail_request']],
  [300, ['slow_consumer', true, 'resume']],
  [301, ['replay_overflow', true, 'resume']],
  [302, ['too_many_connections', true, 'resume']],
  [303, ['session_taken_over', true, 'stop']],
  [400, ['token_missing', true, 'refresh_token']],
  [401, ['token_malformed', true, 'stop']],
  [402, ['token_expired', true, 'refresh_token']],
  [403, ['token_bad_signature', true, 'refresh_token']],
  [404, ['token_wrong_audience', true, 'stop']],
  [405, ['forbidden_subscribe', false, 'fail_request']],
  [406, ['forbidden_publish', false, 'fail_request']],
  [407, ['identity_mismatch', true, 'new_session']],
  [408, ['auth_rate_limited', true, 'slow_retry']],
  [409, ['token_refresh_timeout', true, 'refresh_token']],
  [500, ['internal_error', true, 'resume']],
  [501, ['shutting_down', true, 'resume']],
  [502, ['upgrading', true, 'resume']],
  [503, ['disconnected', true, 'stop']],
]);

/** What `code` means; unknown codes by their hundred's group (§5). */
export function errorInfo(code: number): ErrorInfo {
  const row = TABLE.get(code);
  if (row) return { code, name: row[0], fatal: row[1], action: row[2], known: true };
  const group = Math.floor(code / 100);
  const name = `unknown_${group}xx`;
  switch (group) {
    case 1:
      return { code, name, fatal: true, action: 'stop', known: false };
    case 2:
      return { code, name, fatal: false, action: 'fail_request', known: false };
    case 4:
      return { code, name, fatal: true, action: 'refresh_token', known: false };
    default:
      // 3xx, 5xx and anything else: fatal, resume with backoff.
      return { code, name: group >= 3 && group <= 5 ? name : 'unknown', fatal: true, action: 'resume', known: false };
  }
}

/** Every code of the version 1 table. */
export function knownCodes(): number[] {
  return [...TABLE.keys()];
}
