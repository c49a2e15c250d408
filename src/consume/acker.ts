import type { Channel, Inbound } from '../amqp/transport.js';
import type { Logger } from '../support/logger.js';

/** A delivery's place in its channel's ack order. */
export interface AckSlot {
  readonly msg: Inbound;
  /** open: not settled yet · ack: ack requested, not sent · done: acked or nacked on the wire. */
  state: 'open' | 'ack' | 'done';
  /** When it arrived (ms since the epoch). */
  readonly at: number;
  /** A warning was logged for it being unsettled too long. */
  warned: boolean;
}

/**
 * The acks of one consumer channel, coalesced. Deliveries arrive in delivery-tag order; acks
 * requested during one event-loop turn go out together at its end: the run of finished
 * deliveries at the front is acked with a single basic.ack (multiple), so a batch of 100 costs
 * one frame instead of 100. A finished delivery behind one still running is acked on its own,
 * so a slow handler never holds the other messages' prefetch slots. Nacks go out at once.
 * A multiple ack never covers an unfinished delivery: it stops at the first open one.
 */
export class Acker {
  readonly #channel: Channel;
  readonly #log: Logger;
  #slots: AckSlot[] = [];
  #head = 0;
  #scheduled: NodeJS.Immediate | undefined;
  /** Slots still open: delivered, and neither acked nor nacked. */
  #open = 0;

  constructor(channel: Channel, log: Logger) {
    this.#channel = channel;
    this.#log = log;
  }

  /** Records a delivery, in arrival order; `at`: when it arrived. */
  track(msg: Inbound, at: number): AckSlot {
    const slot: AckSlot = { msg, state: 'open', at, warned: false };
    this.#slots.push(slot);
    this.#open += 1;
    return slot;
  }

  /** Deliveries neither acked nor nacked yet. */
  get unsettled(): number {
    return this.#open;
  }

  /** The unsettled deliveries that arrived at or before `before`, oldest first. */
  *unsettledSince(before: number): Generator<AckSlot> {
    for (let i = this.#head; i < this.#slots.length; i += 1) {
      const s = this.#slots[i];
      if (s === undefined || s.state !== 'open') continue;
      if (s.at > before) return; // in arrival order: the rest are younger
      yield s;
    }
  }

  ack(slot: AckSlot): void {
    if (slot.state !== 'open') return;
    slot.state = 'ack';
    this.#open -= 1;
    this.#scheduled ??= setImmediate(() => this.flush());
  }

  nack(slot: AckSlot, requeue: boolean): void {
    if (slot.state !== 'open') return;
    slot.state = 'done';
    this.#open -= 1;
    this.#send(slot, () => this.#channel.nack(slot.msg.deliveryTag, false, requeue));
    // It may have been the one holding back a run of acks.
    this.#scheduled ??= setImmediate(() => this.flush());
  }

  /** Sends the acks requested so far (stop() calls it before closing the channel); returns how many deliveries they settled. */
  flush(): number {
    if (this.#scheduled !== undefined) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    const slots = this.#slots;
    let settled = 0;
    let last: AckSlot | undefined;
    while (this.#head < slots.length) {
      const s = slots[this.#head];
      if (s === undefined || s.state === 'open') break;
      if (s.state === 'ack') {
        s.state = 'done';
        last = s;
        settled += 1;
      }
      this.#head += 1;
    }
    if (last !== undefined) {
      const upTo = last;
      this.#send(upTo, () => this.#channel.ack(upTo.msg.deliveryTag, true));
    }
    for (let i = this.#head; i < slots.length; i += 1) {
      const s = slots[i];
      if (s?.state === 'ack') {
        s.state = 'done';
        settled += 1;
        this.#send(s, () => this.#channel.ack(s.msg.deliveryTag, false));
      }
    }
    if (this.#head === slots.length) {
      this.#slots = [];
      this.#head = 0;
    } else if (slots.length - this.#head > 1024 || this.#head > 1024) {
      // Behind a delivery that stays open (a manual-mode handler that never acks, say) the
      // finished ones would pile up: keep only those not yet on the wire.
      this.#slots = slots.slice(this.#head).filter((s) => s.state !== 'done');
      this.#head = 0;
    }
    return settled;
  }

  /** Deliveries tracked and not yet known to be settled on the wire (at most about prefetch, plus what finished this turn). */
  get tracked(): number {
    return this.#slots.length - this.#head;
  }

  #send(slot: AckSlot, op: () => void): void {
    try {
      op();
    } catch (err) {
      this.#log.debug({ messageId: slot.msg.messageId, err }, 'could not settle delivery; the channel closed (the broker redelivers it)');
    }
  }
}
