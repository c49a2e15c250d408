import { z } from 'zod';
import { messageOf } from '../support/errors.js';

/** A JSON Schema, as plain data. */
export type JsonSchema = Record<string, unknown>;

/** How the JSON Schema of a zod type that JSON Schema cannot express reads (a Date, a bigint, a z.custom()). */
function unexpressed(reason: string): JsonSchema {
  return { description: `Not expressible in JSON Schema (${reason}): any value passes here; the zod schema in the code decides.` };
}

/**
 * The JSON Schema (draft-07, the base of AsyncAPI's schema format) of what a sender must send for a
 * contract: the zod schema's *input* side, which is what the consumer's `safeParse` accepts (a
 * field with a default may be left out; a transform's input is what travels). Placed at
 * `pointer` (e.g. `#/components/schemas/order.placed`): its own `$ref`s (recursive or shared
 * parts) are rewritten to point under it.
 *
 * Never throws. A part JSON Schema cannot express becomes "anything", described as such; a schema
 * that cannot be converted at all becomes a schema that says so.
 */
export function payloadSchema(schema: z.ZodType, pointer: string): JsonSchema {
  let json: JsonSchema;
  let note: string | undefined;
  try {
    json = z.toJSONSchema(schema, { io: 'input', target: 'draft-7', unrepresentable: ({ message }) => unexpressed(message) });
  } catch (first) {
    // An older zod 4 may not take a handler for unrepresentable types: then they become {}, noted once.
    try {
      json = z.toJSONSchema(schema, { io: 'input', target: 'draft-7', unrepresentable: 'any' });
      note = `Parts of this schema are not expressible in JSON Schema (${messageOf(first)}); they accept any value here, and the zod schema in the code decides.`;
    } catch (err) {
      return { description: `The contract's zod schema could not be converted to JSON Schema (${messageOf(err)}); the zod schema in the code decides what is valid.` };
    }
  }
  delete json['$schema'];
  const out = rebased(json, pointer) as JsonSchema;
  if (note !== undefined) out['description'] = typeof out['description'] === 'string' ? `${out['description']}\n\n${note}` : note;
  return out;
}

/** `value` with every local `$ref` (`#`, `#/definitions/…`) made to point under `pointer`. */
function rebased(value: unknown, pointer: string): unknown {
  if (Array.isArray(value)) return value.map((v) => rebased(v, pointer));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#') ? pointer + v.slice(1) : rebased(v, pointer);
  }
  return out;
}
