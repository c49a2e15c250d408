import { describe, expectTypeOf, it } from 'vitest';
import { TlsError, type AuthMechanism, type ConnectOptions, type TlsFailureReason } from '../../src/index.js';

describe('tls and credentials options are typed', () => {
  it('takes PEM text or Buffers, and only the TLS versions and mechanisms warren supports', () => {
    const ok: ConnectOptions = {
      urls: ['amqps://mq:5671'],
      tls: { ca: [Buffer.from('ca'), 'ca2'], cert: 'c', key: Buffer.from('k'), passphrase: 'p', servername: 'mq', rejectUnauthorized: true, minVersion: 'TLSv1.3' },
      credentials: { mechanism: 'EXTERNAL' },
    };
    // @ts-expect-error TLS 1.1 is not offered
    const old: ConnectOptions = { urls: ['amqps://mq:5671'], tls: { minVersion: 'TLSv1.1' } };
    // @ts-expect-error AMQPLAIN is not a mechanism warren offers
    const amqplain: ConnectOptions = { urls: ['amqps://mq:5671'], credentials: { mechanism: 'AMQPLAIN' } };
    expectTypeOf<NonNullable<NonNullable<ConnectOptions['credentials']>['mechanism']>>().toEqualTypeOf<AuthMechanism>();
    void [ok, old, amqplain];
  });

  it("gives TlsError's reason as a union to switch on", () => {
    expectTypeOf<TlsError['reason']>().toEqualTypeOf<TlsFailureReason>();
    expectTypeOf<TlsError['tlsCode']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<TlsError['code']>().toExtend<string>();
  });
});

describe('optional tls values may be undefined', () => {
  it('takes a passphrase read from an environment variable that may be unset', () => {
    const passphrase: string | undefined = process.env.TLS_KEY_PASSPHRASE;
    const options: ConnectOptions = { urls: ['amqps://mq:5671'], tls: { cert: 'c', key: 'k', passphrase } };
    void options;
  });
});
