import type { Channel } from '../amqp/transport.js';
import type { Logger } from '../support/logger.js';
import type { Delivery } from './delivery.js';

export interface DispatcherDeps {
  /** Handlers running at once, at most. */
  concurrency: number;
  /** Runs one delivery to its broker action; a promise when it went asynchronous. */
  run: (delivery: Delivery) => Promise<void> | undefined;
  /** True while `channel` is the consumer's live channel (deliveries from an old one are left to the broker). */
  isCurrent: (channel: Channel) => boolean;
  log: Logger;
}

/**
 * Hands deliveries to the pipeline, at most `concurrency` at a time; the rest wait, in order.
 * Knows when it is idle (nothing running, nothing waiting), which stop() waits for.
 */
export class Dispatcher {
  readonly #d: DispatcherDeps;
  #running = 0;
  #waiting: Delivery[] = [];
  #idleWaiters: (() => void)[] = [];

  constructor(deps: DispatcherDeps) {
    this.#d = deps;
  }

  /** Deliveries whose handler runs now. */
  get running(): number {
    return this.#running;
  }

  /** Deliveries waiting for a free slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  push(delivery: Delivery): void {
    if (this.#running < this.#d.concurrency) this.#start(delivery);
    else this.#waiting.push(delivery);
  }

  /** Starts waiting deliveries while there are free slots (also while stopping: what was delivered is handled). */
  next(): void {
    while (this.#running < this.#d.concurrency) {
      const d = this.#waiting.shift();
      if (d === undefined) break;
      if (!this.#d.isCurrent(d.channel)) continue; // from a closed channel: the broker redelivers it
      this.#start(d);
    }
    this.#checkIdle();
  }

  /** Takes out every waiting delivery (their channel closed, or stop() ran out of time). */
  takeWaiting(): Delivery[] {
    const taken = this.#waiting.splice(0);
    this.#checkIdle();
    return taken;
  }

  /** Resolves true once nothing runs and nothing waits, or false at `deadline` (ms since the epoch). */
  idle(deadline: number): Promise<boolean> {
    if (this.#running === 0 && this.#waiting.length === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
      this.#idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  #start(delivery: Delivery): void {
    this.#running += 1;
    let running: Promise<void> | undefined;
    try {
      running = this.#d.run(delivery);
    } catch (err) {
      this.#failed(delivery, err);
      return;
    }
    if (running === undefined) this.#done();
    else running.then(
      () => this.#done(),
      (err: unknown) => this.#failed(delivery, err),
    );
  }

  /** The pipeline never throws; if it does anyway, the delivery's slot is freed and its message redelivered when the channel closes. */
  #failed(delivery: Delivery, err: unknown): void {
    this.#d.log.error({ messageId: delivery.msg.messageId, err }, 'internal error while handling a message');
    this.#done();
  }

  #done(): void {
    this.#running -= 1;
    this.next();
  }

  #checkIdle(): void {
    if (this.#running > 0 || this.#waiting.length > 0 || this.#idleWaiters.length === 0) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }
}
