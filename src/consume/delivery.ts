import type { Channel, Inbound } from '../amqp/transport.js';
import type { ConsumeTrace } from '../instrument/channels.js';
import type { Acker, AckSlot } from './acker.js';
import type { BrokerAction, Rule } from './outcome.js';

/** A delivery and the channel it came on: it is settled on that channel or not at all. One shape for every message. */
export class Delivery {
  readonly msg: Inbound;
  readonly channel: Channel;
  /** The channel's ack coalescer and this delivery's place in it. */
  readonly acker: Acker;
  readonly slot: AckSlot;
  /** The rule's inputs for this delivery, set as the pipeline starts on it. */
  rule: Rule | undefined = undefined;
  /** A broker action was taken (or left to the broker): it is never settled again. */
  settled = false;
  /** The action taken, once settled ('none' when its channel was gone by then). */
  action: BrokerAction | undefined = undefined;
  /** A retry or dead-letter copy in progress (a manual call the handler may not have awaited). */
  settling: Promise<void> | undefined = undefined;
  /** The `warren:consume` context, when it had subscribers as the pipeline started. */
  trace: ConsumeTrace | undefined = undefined;
  startedAt = 0;

  constructor(msg: Inbound, channel: Channel, acker: Acker, at: number) {
    this.msg = msg;
    this.channel = channel;
    this.acker = acker;
    this.slot = acker.track(msg, at);
  }
}
