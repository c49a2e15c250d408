// connect()'s rejection for options it must refuse up front: a ConfigError before any socket.
import net from 'node:net';
import { beforeEach, expect, vi, type MockInstance } from 'vitest';
import { ConfigError, connect, type ConnectOptions } from '../../src/index.js';

// Every TCP (and TLS) connection amqplib opens goes through net.Socket#connect: a ConfigError
// must come before any of them. Registered for the test file that imports this helper.
let socketConnect: MockInstance;
beforeEach(() => {
  socketConnect = vi.spyOn(net.Socket.prototype, 'connect');
});

/** The spy on net.Socket#connect of the current test: a control test checks it was called. */
export function socketConnects(): MockInstance {
  return socketConnect;
}

/** connect()'s rejection, which must be a ConfigError raised before any connection attempt. */
export async function configError(options: ConnectOptions): Promise<ConfigError> {
  const err: unknown = await connect(options).then(
    async (warren) => {
      await warren.close();
      return new Error('connect() resolved');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).code).toBe('CONFIG_INVALID');
  expect(socketConnect).not.toHaveBeenCalled();
  return err as ConfigError;
}
