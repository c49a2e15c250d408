/**
 * What an AMQP field table (message headers) can hold, and how large it is once encoded —
 * checked before sending, because a value the broker or the encoder refuses otherwise closes
 * the channel or the connection (RabbitMQ answers a NaN or an Infinity with 541 INTERNAL_ERROR)
 * for every message in flight beside it.
 */

/** Every table in a message's properties is encoded into one 64 KiB buffer (amqplib's), so headers must fit in it. */
export const MAX_HEADERS_BYTES = 65_536;

/** Deeper nesting than this is refused (a cycle would otherwise recurse until the stack overflows). */
const MAX_DEPTH = 32;

/** The explicitly typed values amqplib accepts as `{ '!': type, value }`. */
const TYPED = new Set(['string', 'double', 'float64', 'float', 'float32', 'byte', 'int8', 'short', 'int16', 'int', 'int32', 'long', 'int64', 'timestamp', 'decimal', 'boolean', 'void', 'unsignedbyte', 'uint8', 'unsignedshort', 'uint16', 'unsignedint', 'uint32']);

/** One header value that cannot be sent: where (`['headers', 'a', 0]`) and why. */
export interface HeaderProblem {
  path: (string | number)[];
  message: string;
}

/**
 * The values in `headers` that cannot be sent, each with its path; empty when all can.
 * Allowed: strings, finite numbers, booleans, null, Buffers, arrays and plain objects of these,
 * and amqplib's typed values (`{ '!': 'timestamp', value: 1700000000 }`); an undefined value in
 * a table is left out, as JSON does.
 */
export function headerProblems(headers: Readonly<Record<string, unknown>>): HeaderProblem[] {
  const problems: HeaderProblem[] = [];
  checkTable(headers, ['headers'], 0, problems);
  return problems;
}

function checkTable(table: Readonly<Record<string, unknown>>, path: (string | number)[], depth: number, out: HeaderProblem[]): void {
  for (const key of Object.keys(table)) {
    if (Buffer.byteLength(key) > 255) out.push({ path: [...path, key], message: 'a header name must be at most 255 bytes' });
    const v = table[key];
    if (v !== undefined) checkValue(v, [...path, key], depth + 1, out);
  }
}

function checkValue(v: unknown, path: (string | number)[], depth: number, out: HeaderProblem[]): void {
  if (depth > MAX_DEPTH) {
    out.push({ path, message: `nested more than ${MAX_DEPTH} levels deep (a cycle?)` });
    return;
  }
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(v)) out.push({ path, message: `${String(v)} cannot be sent (the broker refuses it, closing the connection); send a finite number or a string` });
      return;
    case 'object': {
      if (v === null || Buffer.isBuffer(v)) return;
      if (Array.isArray(v)) {
        v.forEach((item, i) => {
          if (item === undefined) out.push({ path: [...path, i], message: 'undefined cannot be sent in an array; use null' });
          else checkValue(item, [...path, i], depth + 1, out);
        });
        return;
      }
      if (v instanceof Date) {
        out.push({ path, message: "a Date is not sent as a date; send date.toISOString(), or { '!': 'timestamp', value: seconds }" });
        return;
      }
      if (Object.hasOwn(v, '!')) {
        const type = (v as { '!': unknown })['!'];
        if (typeof type !== 'string' || !TYPED.has(type)) out.push({ path, message: `'${String(type)}' is not an AMQP field type` });
        return;
      }
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        out.push({ path, message: `a ${v.constructor.name} is not sent as itself; send a plain object, a string or a number` });
        return;
      }
      checkTable(v as Record<string, unknown>, path, depth, out);
      return;
    }
    default:
      // bigint, symbol, function: the encoder throws, or sends something else.
      out.push({ path, message: `a ${typeof v} cannot be sent; send a string or a number` });
  }
}

/** The size of `headers` encoded as an AMQP field table, in bytes (of valid headers; see headerProblems). */
export function encodedTableSize(table: Readonly<Record<string, unknown>>): number {
  let size = 4;
  for (const key of Object.keys(table)) {
    const v = table[key];
    if (v !== undefined) size += 1 + Buffer.byteLength(key) + valueSize(v);
  }
  return size;
}

function valueSize(v: unknown): number {
  switch (typeof v) {
    case 'string':
      return 5 + Buffer.byteLength(v);
    case 'boolean':
      return 2;
    case 'number':
      return 9; // at most: a tag and 8 bytes
    case 'object':
      if (v === null) return 1;
      if (Buffer.isBuffer(v)) return 5 + v.length;
      if (Array.isArray(v)) return 5 + v.reduce((n: number, item: unknown) => n + valueSize(item), 0);
      if (Object.hasOwn(v, '!')) {
        const value = (v as { value?: unknown }).value;
        return typeof value === 'string' ? 5 + Buffer.byteLength(value) : 9;
      }
      return 1 + encodedTableSize(v as Record<string, unknown>);
    default:
      return 9;
  }
}
