import { describe, expect, it } from 'vitest';
import { redactSecrets, redactUrl } from '../../src/support/redact.js';

describe('redactUrl', () => {
  it('hides the password and keeps user, host, port and vhost', () => {
    expect(redactUrl('amqp://app:hunter2@mq.example:5672/prod')).toBe('amqp://app:***@mq.example:5672/prod');
    expect(redactUrl('amqps://app:hunter2@mq.example:5671/%2F?heartbeat=10')).toBe('amqps://app:***@mq.example:5671/%2F?heartbeat=10');
    expect(redactUrl('http://guest:guest@localhost:15672')).not.toContain(':guest@');
  });

  it('hides a URL-encoded password, in either form', () => {
    const shown = redactUrl('amqps://app:p%40ss%3Aw%2Frd@mq:5671');
    expect(shown).toBe('amqps://app:***@mq:5671');
    expect(shown).not.toContain('p%40ss');
    expect(shown).not.toContain('p@ss');
  });

  it("hides a password with an unencoded '@' in a URL that parses", () => {
    expect(redactUrl('amqp://app:p@ssTail@mq:5672')).toBe('amqp://app:***@mq:5672');
  });

  it('hides a password given without a user name', () => {
    expect(redactUrl('amqp://:hunter2@mq:5672')).not.toContain('hunter2');
  });

  it('leaves URLs without a password as they are', () => {
    expect(redactUrl('amqp://mq:5672')).toBe('amqp://mq:5672');
    expect(redactUrl('amqp://app@mq:5672/prod')).toBe('amqp://app@mq:5672/prod');
  });

  it('hides the userinfo of a URL it cannot parse rather than risk printing it', () => {
    expect(redactUrl('amqp://user:sec ret@[bad')).not.toContain('sec ret');
    expect(redactUrl('amqp://user:hunter2@mq:notaport')).not.toContain('hunter2');
    expect(redactUrl('not a url')).toBe('not a url');
  });

  it("hides all of an unparsable URL's password, even one with '@' or '/' in it", () => {
    expect.soft(redactUrl('amqp://user:se@cretTail@[bad')).not.toContain('cretTail');
    // '/' in a raw password makes the URL unparsable (the host part ends at the '/').
    expect.soft(redactUrl('amqp://user:pa/ssTail@mq:5672')).not.toContain('ssTail');
  });
});

describe('redactSecrets', () => {
  it('replaces every occurrence of each secret', () => {
    expect(redactSecrets('pw=abc; again abc; other=xyz', ['abc', 'xyz'])).toBe('pw=***; again ***; other=***');
  });

  it('ignores empty secrets and leaves text without secrets unchanged', () => {
    expect(redactSecrets('nothing to hide', ['', 'absent'])).toBe('nothing to hide');
    expect(redactSecrets('nothing to hide', [])).toBe('nothing to hide');
  });

  it('treats secrets as plain text, not patterns', () => {
    expect(redactSecrets('a.b a+b a*b', ['a+b', '.*'])).toBe('a.b *** a*b');
  });
});
