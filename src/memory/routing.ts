/** How RabbitMQ's four exchange types match a message to a binding. Pure functions, no state. */

export type MemoryExchangeType = 'direct' | 'topic' | 'fanout' | 'headers';

export interface BindingRule {
  readonly routingKey: string;
  readonly arguments: Readonly<Record<string, unknown>>;
}

/** Topic matching: words split on '.', `*` is exactly one word, `#` zero or more. */
export function topicMatches(pattern: string, routingKey: string): boolean {
  return matchWords(pattern.split('.'), 0, routingKey.split('.'), 0);
}

function matchWords(p: string[], i: number, k: string[], j: number): boolean {
  for (;;) {
    if (i === p.length) return j === k.length;
    const word = p[i];
    if (word === '#') {
      // '#' swallows zero or more words: try each split point.
      for (let skip = j; skip <= k.length; skip++) if (matchWords(p, i + 1, k, skip)) return true;
      return false;
    }
    if (j === k.length) return false;
    if (word !== '*' && word !== k[j]) return false;
    i++;
    j++;
  }
}

/**
 * Headers matching. `x-match` is `all` (the default), `any`, `all-with-x` or `any-with-x`; binding
 * arguments whose names start with `x-` are compared only by the `-with-x` forms. A binding
 * argument with no value (void) matches a header of that name with any value.
 */
export function headersMatch(binding: Readonly<Record<string, unknown>>, headers: Readonly<Record<string, unknown>> | undefined): boolean {
  const mode = binding['x-match'] ?? 'all';
  const withX = mode === 'all-with-x' || mode === 'any-with-x';
  const any = mode === 'any' || mode === 'any-with-x';
  const h = headers ?? {};
  for (const [name, value] of Object.entries(binding)) {
    if (name === 'x-match') continue;
    if (name.startsWith('x-') && !withX) continue;
    const present = Object.prototype.hasOwnProperty.call(h, name);
    const ok = present && (value === null || value === undefined || sameValue(value, h[name]));
    if (any && ok) return true;
    if (!any && !ok) return false;
  }
  return !any;
}

function sameValue(a: unknown, b: unknown): boolean {
  // A long string and a byte array with the same bytes match, as on RabbitMQ.
  if ((Buffer.isBuffer(a) || typeof a === 'string') && (Buffer.isBuffer(b) || typeof b === 'string') && (Buffer.isBuffer(a) || Buffer.isBuffer(b))) {
    return Buffer.from(a as Buffer).equals(Buffer.from(b as Buffer));
  }
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) return JSON.stringify(a) === JSON.stringify(b);
  return a === b;
}

/** Whether a binding of an exchange of `type` takes a message with this routing key and headers. */
export function bindingMatches(type: MemoryExchangeType, rule: BindingRule, routingKey: string, headers: Readonly<Record<string, unknown>> | undefined): boolean {
  switch (type) {
    case 'fanout':
      return true;
    case 'direct':
      return rule.routingKey === routingKey;
    case 'topic':
      return topicMatches(rule.routingKey, routingKey);
    case 'headers':
      return headersMatch(rule.arguments, headers);
  }
}
