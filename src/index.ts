// warren's one public entry. Everything a user may import is listed here by name.
export { connect, Warren } from './client.js';
export type { ConnectOptions, ConnectionHealth, Health, WarrenEvents } from './client.js';

export { defineTopology } from './topology.js';
export type {
  BindingDefinition,
  DeclaredBinding,
  DeclaredExchange,
  DeclaredQueue,
  ExchangeDefinition,
  ExchangeType,
  QueueDefinition,
  Topology,
  TopologyDefinition,
} from './topology.js';

export { defineMessage } from './message.js';
export type { MessageContract, MessageDefinition, Payload, PayloadInput } from './message.js';

export type { PublisherStats, PublishOptions, PublishReceipt } from './producer.js';

export { NonRetryableError, Header as WarrenHeader } from './retry.js';
export type { RetryPolicyInput as RetryPolicy } from './retry.js';
export type { DeadLetter, ReplayOptions, ReplayResult } from './dead-letters.js';

export { defineConsumer } from './consumer.js';
export type { AckMode, Consumer, ConsumerContext, ConsumerDefinition, ContextFor, ManualContext, OnError } from './consumer.js';
export type { ConsumerEvent, ConsumerHandle, ConsumerHealth } from './consumer-runtime.js';

export type { ConnectionRole, ConnectionState, ReconnectInfo } from './connection.js';

export { backoffDelay, backoffCeiling } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export type { Duration } from './duration.js';

export {
  AccessRefusedError,
  ClosedError,
  ConfigError,
  ConnectionError,
  ConsumeError,
  DecodeError,
  MessageTooLargeError,
  PublishBufferFullError,
  PublishError,
  PublishNackedError,
  PublishTimeoutError,
  ReplyCode,
  TopologyError,
  TopologyMismatchError,
  UnroutableError,
  ValidationError,
  WarrenError,
} from './errors.js';
export type { ArgumentDifference, ReplyCodeName, ValidationIssue, WarrenErrorCode } from './errors.js';
