// warren/testing: run an app's consumers on an in-memory broker, with the real outcome rule.
export { createTestWarren, TestWarren } from './test-warren.js';
export type { DeadLetterRecord, DeliveryRecord, TestWarrenOptions } from './test-warren.js';
export { raw, runHandler } from './run-handler.js';
export type { HandlerResult, RawMessage, RunHandlerOptions } from './run-handler.js';
export { memory } from '../memory/transport.js';
export type { MemoryTransport } from '../memory/transport.js';
export { MemoryBroker, NOT_MODELLED } from '../memory/broker.js';
export type { BrokerDeadLetter, MemoryBrokerOptions, PublishedMessage, QueuedMessageView, QueueView, StoredMessage } from '../memory/broker.js';
export { ManualClock, manualClock, systemClock } from '../memory/clock.js';
export type { Clock } from '../memory/clock.js';
export { NotModelledError, NotSettledError } from '../support/errors.js';
