import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: two test files at a time keeps broker round trips, not CPU, the bottleneck.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          typecheck: { enabled: true, include: ['test/types/**/*.test-d.ts'], tsconfig: './tsconfig.json' },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Decides once which broker these tests use (or starts one with testcontainers).
          globalSetup: ['test/setup/global-broker.ts', 'test/setup/build.ts'],
        },
      },
      {
        extends: true,
        test: {
          // The behaviour suite on the in-memory transport (warren/testing): no broker needed.
          name: 'behaviour-memory',
          include: ['test/behaviour/**/*.test.ts'],
          env: { WARREN_BEHAVIOUR: 'memory' },
        },
      },
      {
        extends: true,
        test: {
          // The same files against the real broker: a difference between the two fails one of them.
          name: 'behaviour-broker',
          include: ['test/behaviour/**/*.test.ts'],
          env: { WARREN_BEHAVIOUR: 'broker' },
          globalSetup: ['test/setup/global-broker.ts'],
        },
      },
      {
        extends: true,
        test: {
          // Metrics scraped by a real Prometheus (`npm run test:observability`; needs the
          // `prometheus` binary): not part of `npm test`, run by CI.
          name: 'observability',
          include: ['test/observability/**/*.test.ts'],
          globalSetup: ['test/setup/global-broker.ts', 'test/setup/build.ts'],
        },
      },
      {
        extends: true,
        test: {
          // Fault injection against RabbitMQ nodes the suite starts itself (`npm run chaos`); not
          // part of `npm test`. One file at a time: scenarios share those nodes.
          name: 'chaos',
          include: ['test/chaos/**/*.test.ts'],
          globalSetup: ['test/chaos/report.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 180_000,
        },
      },
      {
        extends: true,
        test: {
          // TLS (and other security) tests against a RabbitMQ node the suite starts itself, with a
          // TLS listener and certificates made with openssl (`npm run test:security`; needs the
          // rabbitmq-server package). Not part of `npm test`.
          name: 'security',
          include: ['test/security/**/*.test.ts'],
          fileParallelism: false,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
