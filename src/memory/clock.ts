/**
 * The in-memory broker's sense of time: message TTLs and the x-death `time` read it. The default
 * reads the global timers at each call, so vitest's (or sinon's) fake timers drive it; a
 * `manualClock()` moves only when the test says so.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once, `ms` from now. Returns a handle for `clear`. */
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/** Global `Date.now` / `setTimeout`, looked up at each call (so fake timers installed later apply). */
export const systemClock: Clock = {
  now: () => Date.now(),
  set: (fn, ms) => {
    const t = globalThis.setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clear: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
};

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/** A clock that stands still until `advance()`: timers due by then run in time order. */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Set<Timer>();

  constructor(start = Date.now()) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  set(fn: () => void, ms: number): unknown {
    const timer: Timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.add(timer);
    return timer;
  }

  clear(handle: unknown): void {
    this.#timers.delete(handle as Timer);
  }

  /** Moves time forward by `ms`, running each timer that falls due, in order, at its own time. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`advance() takes a non-negative number of milliseconds, got ${ms}`);
    const until = this.#now + ms;
    for (;;) {
      let next: Timer | undefined;
      for (const t of this.#timers) if (t.at <= until && (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      if (next === undefined) break;
      this.#timers.delete(next);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = until;
  }

  /** How many timers are waiting. */
  get pending(): number {
    return this.#timers.size;
  }
}

/** A clock for tests that moves only when told: `clock.advance(ms)`. */
export function manualClock(start?: number): ManualClock {
  return new ManualClock(start);
}
