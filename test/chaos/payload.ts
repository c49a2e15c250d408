import { z } from 'zod';

/** The body of every chaos message: a unique id and its sequence number in the run. */
export const Payload = z.object({ id: z.string(), seq: z.number().int().nonnegative() });
