import { EventEmitter } from 'node:events';

/** An EventEmitter whose event names and listener arguments are checked by TypeScript. */
export class TypedEmitter<Events extends { [K in keyof Events]: unknown[] }> {
  readonly #emitter = new EventEmitter();

  constructor() {
    // Listeners are attached per consumer; a service with many consumers must not trip the leak warning.
    this.#emitter.setMaxListeners(0);
  }

  on<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): this {
    this.#emitter.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): this {
    this.#emitter.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): this {
    this.#emitter.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /**
   * Emits to every listener. A listener that throws must not break warren's own bookkeeping,
   * so its error is handed to `onListenerError` instead of unwinding into the caller.
   */
  protected emit<K extends keyof Events & string>(event: K, ...args: Events[K]): void {
    for (const listener of this.#emitter.rawListeners(event)) {
      try {
        (listener as (...a: Events[K]) => void)(...args);
      } catch (err) {
        this.onListenerError(event, err);
      }
    }
  }

  protected listenerCount(event: keyof Events & string): number {
    return this.#emitter.listenerCount(event);
  }

  protected onListenerError(_event: string, _err: unknown): void {
    // Overridden where a logger is available.
  }
}
