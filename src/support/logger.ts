import { pino, type Logger } from 'pino';

export type { Logger };

/** The logger used when none is injected: silent, so a library never writes to a service's stdout uninvited. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
