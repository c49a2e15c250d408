import { describe, expect, it } from 'vitest';
import { redactSecrets, redactUrl } from '../../src/redact.js';

describe('redaction', () => {
  it('hides the password of a URL and keeps the rest', () => {
    expect(redactUrl('amqp://app:hunter2@mq.example:5672/prod')).toBe('amqp://app:***@mq.example:5672/prod');
    expect(redactUrl('amqps://app:p%40ss%3Aword@mq:5671')).not.toContain('p%40ss');
    expect(redactUrl('amqp://mq:5672')).toBe('amqp://mq:5672');
  });

  it('hides userinfo of an unparsable URL rather than risk printing it', () => {
    expect(redactUrl('amqp://user:sec ret@[bad')).not.toContain('sec ret');
  });

  it('removes every occurrence of each secret', () => {
    expect(redactSecrets('pw=abc; again abc', ['abc', ''])).toBe('pw=***; again ***');
  });
});
