/**
 * Reconnect delays (PROTOCOL.md §11): exponential backoff with full jitter
 * for losses and errors, the server's hint plus jitter after GOAWAY.
 */

/** Reconnect tuning. */
export interface ReconnectOptions {
  /** Delay scale of the first retry (default 250 ms). */
  baseDelayMs: number;
  /** Upper bound of one delay (default 30 s). */
  maxDelayMs: number;
  /** Consecutive failed attempts before giving up (default: never). */
  maxAttempts: number;
  /** A connection active this long resets the backoff (default 60 s). */
  resetAfterMs: number;
}

export const DEFAULT_RECONNECT: ReconnectOptions = {
  baseDelayMs: 250,
  maxDelayMs: 30_000,
  maxAttempts: Number.POSITIVE_INFINITY,
  resetAfterMs: 60_000,
};

/** A random delay in [0, min(max, base × 2^attempt)]; `random` in [0, 1). */
export function backoffDelay(attempt: number, random: number, o: ReconnectOptions = DEFAULT_RECONNECT): number {
  const cap = Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random * cap);
}

/** After GOAWAY: the hint plus a jitter of 0 to the hint (at least 0–250 ms). */
export function goAwayDelay(reconnectAfterMs: number, random: number): number {
  return reconnectAfterMs + Math.floor(random * Math.max(reconnectAfterMs, 250));
}

/** After ERROR 408: at least 30 s (PROTOCOL.md §5). */
export const AUTH_RATE_LIMITED_DELAY_MS = 30_000;
