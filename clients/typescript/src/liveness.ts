/**
 * Heartbeats (PROTOCOL.md §10), with the time passed in: the client sends
 * a frame at least every interval (PING when it has nothing else), probes
 * with PING when it has heard nothing for an interval, and declares the
 * transport dead when nothing arrived for 2 intervals after that PING.
 */

/** What {@link Liveness.check} found. */
export type Check = { kind: 'fine' } | { kind: 'ping' } | { kind: 'silent'; silentForMs: number };

/** Liveness of one active connection. Times are milliseconds on any monotonic clock. */
export class Liveness {
  private lastSent: number;
  private lastReceived: number;
  /** When the probe PING went out, if one is outstanding. */
  private probeSentAt: number | null = null;

  /** `intervalMs` null: heartbeats disabled. */
  constructor(
    readonly intervalMs: number | null,
    now: number,
  ) {
    this.lastSent = now;
    this.lastReceived = now;
  }

  /** A frame arrived. */
  received(now: number): void {
    this.lastReceived = now;
    this.probeSentAt = null;
  }

  /** A frame was written. */
  sent(now: number): void {
    this.lastSent = now;
  }

  /** When {@link check} has something to do. */
  deadline(): number | null {
    const interval = this.intervalMs;
    if (interval === null) return null;
    let at = this.lastSent + interval;
    if (this.probeSentAt === null) {
      at = Math.min(at, this.lastReceived + interval);
    } else {
      at = Math.min(at, this.probeSentAt + 2 * interval);
    }
    return at;
  }

  /** What is due at `now`. A `ping` result counts as the probe. */
  check(now: number): Check {
    const interval = this.intervalMs;
    if (interval === null) return { kind: 'fine' };
    if (this.probeSentAt !== null && now - this.probeSentAt >= 2 * interval) {
      return { kind: 'silent', silentForMs: now - this.lastReceived };
    }
    const sendIdle = now - this.lastSent >= interval;
    const quiet = this.probeSentAt === null && now - this.lastReceived >= interval;
    if (sendIdle || quiet) {
      if (this.probeSentAt === null) this.probeSentAt = now;
      return { kind: 'ping' };
    }
    return { kind: 'fine' };
  }
}
