/**
 * warren's `x-warren-*` headers as the JSON Schema of an AsyncAPI message's `headers`: what a
 * retried delivery and a dead letter carry (set in consume/settler.ts and dead-letter/).
 */
import { Header, MAX_ERROR_MESSAGE } from '../dead-letter/headers.js';
import type { JsonSchema } from './payload-schema.js';

const text = (description: string): JsonSchema => ({ type: 'string', description });
const whole = (description: string, minimum: number): JsonSchema => ({ type: 'integer', minimum, description });
const instant = (description: string): JsonSchema => ({ type: 'string', format: 'date-time', description });

/** Set on every copy warren publishes after a failure (a retry, a dead letter). */
function failureHeaders(): Record<string, JsonSchema> {
  return {
    [Header.errorCode]: text("The failure's error code (a WarrenError's code, e.g. VALIDATION_FAILED, or the thrown error's own string code), when it had one."),
    [Header.errorMessage]: text(`The failure's error message (at most ${MAX_ERROR_MESSAGE} characters).`),
    [Header.originalExchange]: text('The exchange the message was first published to.'),
    [Header.originalRoutingKey]: text('The routing key it was first published with.'),
    [Header.firstFailureAt]: instant('When its first attempt failed.'),
    [Header.lastFailureAt]: instant('When its latest attempt failed.'),
    [Header.consumer]: text('The consumer whose handler failed.'),
  };
}

/** The headers of a message as a consumer receives it: none is required; warren adds them to a retried or replayed one. */
export function deliveryHeaders(): JsonSchema {
  return {
    type: 'object',
    description: 'A sender sets none of these. warren adds them to a retried delivery (and the x-warren-replays count to one replayed from the dead-letter queue).',
    properties: {
      [Header.attempt]: whole('Which attempt this delivery is: 2 for the first retry (absent on the first attempt).', 1),
      ...failureHeaders(),
      [Header.replays]: whole('How many times it was replayed from the dead-letter queue.', 1),
    },
  };
}

/** The headers of a dead letter: why, when and where from. */
export function deadLetterHeaders(): JsonSchema {
  return {
    type: 'object',
    description: "A dead letter warren copied here carries the x-warren-* headers (and the message's own, unless x-warren-trimmed-headers says they were left out); one the broker dead-lettered carries x-death instead.",
    properties: {
      [Header.reason]: text(
        "Why it was dead-lettered: invalid (not JSON, or fails the contract), non-retryable (the handler threw NonRetryableError), retries-exhausted (its last attempt failed), handler-failed (the handler threw; no retry policy), retry-failed (its retry copy could never be published), handler (ctx.deadLetter() without a reason), or the reason text the handler gave ctx.deadLetter().",
      ),
      [Header.attempts]: whole('Attempts made before it was dead-lettered.', 1),
      [Header.attempt]: whole('Kept from the delivery that was dead-lettered, when it was a retry: which attempt that was.', 1),
      [Header.originQueue]: text('The queue it was dead-lettered from: `warren dlq replay` sends it back there.'),
      ...failureHeaders(),
      [Header.validationIssues]: text("For reason invalid: zod's issues, as JSON ([{ path, message, code }])."),
      [Header.trimmedHeaders]: text("The names of the message's own headers, left out because they could not be copied."),
      [Header.replays]: whole('How many times it was replayed from the dead-letter queue before.', 1),
      'x-death': { type: 'array', description: "RabbitMQ's record of its own dead-lettering (a reject without requeue, a delivery limit, an expired TTL): queue, reason, count, exchange, routing-keys, time.", items: { type: 'object' } },
    },
  };
}
