// warren's one public entry. Everything a user may import is listed here by name.
export { connect, Warren } from './client/warren.js';
export type { ConnectOptions, ConnectionHealth, Health, WarrenEvents } from './client/warren.js';
export { defineApp, diffApp, isApp, planApp } from './client/app.js';
export type { App, AppConnectOptions, AppDefinition, DiffOptions, PlannedEntity } from './client/app.js';
export { asyncApiDocument } from './client/asyncapi.js';
export type { AsyncApiChannel, AsyncApiDocument, AsyncApiMessage, AsyncApiOperation, AsyncApiOptions, AsyncApiServer } from './client/asyncapi.js';
export type { DriftEntity, TopologyDrift } from './topology/drift.js';
export { inspectBroker } from './client/inspect.js';
export type { BrokerSnapshot, ConnectionSnapshot, InspectOptions, QueueSnapshot } from './client/inspect.js';
export { redactSecrets, redactUrl } from './support/redact.js';
export type { Credentials, ManagementCredentials } from './support/credentials.js';
export { VERSION as version } from './support/version.js';

export { defineTopology } from './define/topology.js';
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
} from './define/topology.js';

export { defineMessage } from './define/message.js';
export type { MessageContract, MessageDefinition, Payload, PayloadInput } from './define/message.js';

export type { PublishOptions } from './publish/options.js';
export type { PublisherStats, PublishReceipt } from './publish/publisher.js';

export { Header as WarrenHeader } from './dead-letter/headers.js';
export type { RetryPolicyInput as RetryPolicy } from './define/retry-policy.js';
export type { DeadLetter, PeekOptions, PurgeOptions, PurgeResult, ReplayOptions, ReplayResult } from './dead-letter/dead-letters.js';

export { defineConsumer } from './define/consumer.js';
export type { AckMode, Consumer, ConsumerContext, ConsumerDefinition, ContextFor, ManualContext, OnError } from './define/consumer.js';
export type { ConsumerEvent, ConsumerHandle, ConsumerHealth } from './consume/subscription.js';
export type { ConsumerCounts } from './consume/counters.js';
export type { BrokerAction, DeadLetterReason } from './consume/outcome.js';

export type { ConnectionRole, ConnectionState, ReconnectInfo } from './amqp/connection.js';
export type {
  AuthMechanism,
  Channel,
  ChannelEvents,
  ConfirmChannel,
  ConfirmResult,
  ExchangeOptions,
  Inbound,
  Link,
  LinkEvents,
  LinkOptions,
  Pem,
  PublishProperties,
  QueueInfo,
  QueueOptions,
  Returned,
  SocketOptions,
  TlsOptions,
  Transport,
} from './amqp/transport.js';

export { ChannelName as WarrenChannel } from './instrument/channels.js';
export type {
  ConnectionStateChange,
  ConsumeAction,
  ConsumeOutcome,
  ConsumerStateChange,
  ConsumeTrace,
  DeadLetterDecision,
  PublishOutcome,
  PublishTrace,
  RetryDecision,
} from './instrument/channels.js';

export { backoffDelay, backoffCeiling } from './amqp/backoff.js';
export type { BackoffOptions } from './amqp/backoff.js';
export type { Duration } from './define/duration.js';

export { ReplyCode } from './amqp/reply-codes.js';
export type { ReplyCodeName } from './amqp/reply-codes.js';
export {
  AccessRefusedError,
  ClosedError,
  ConfigError,
  ConnectionError,
  ConsumeError,
  CredentialsError,
  ManagementError,
  DecodeError,
  MessageTooLargeError,
  NonRetryableError,
  NotModelledError,
  NotSettledError,
  PermissionError,
  PublishBufferFullError,
  PublishError,
  PublishNackedError,
  PublishTimeoutError,
  TlsError,
  TopologyError,
  TopologyMismatchError,
  UnroutableError,
  ValidationError,
  WarrenError,
} from './support/errors.js';
export type { ArgumentDifference, Mismatch, Permission, TlsFailureReason, ValidationIssue, WarrenErrorCode } from './support/errors.js';
