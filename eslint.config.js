// @ts-check
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/**
 * src/'s folders are layers; imports point down only. Bottom to top; folders on one line are
 * siblings that must not import each other (publish/ never imports consume/, and so on).
 */
const LAYERS = [['support'], ['instrument'], ['amqp'], ['memory'], ['define'], ['topology', 'dead-letter'], ['publish', 'consume'], ['client'], ['metrics', 'otel', 'testing'], ['cli']];

const AMQPLIB_ONLY_IN_AMQP = {
  name: 'amqplib',
  message: 'Only src/amqp/ imports amqplib: use the transport interfaces of src/amqp/transport.ts (Link, Channel, Inbound).',
};

/** One config per folder: no amqplib (but in amqp/), and nothing from a folder above or beside it. */
const layering = LAYERS.flatMap((tier, level) =>
  tier.map((folder) => {
    const above = LAYERS.slice(level + 1).flat();
    const beside = tier.filter((f) => f !== folder);
    const forbidden = [...above, ...beside];
    return {
      files: [`src/${folder}/**/*.ts`],
      rules: {
        'no-restricted-imports': [
          'error',
          {
            paths: folder === 'amqp' ? [] : [AMQPLIB_ONLY_IN_AMQP],
            patterns: [
              ...(folder === 'amqp' ? [] : [{ group: ['amqplib/*'], message: AMQPLIB_ONLY_IN_AMQP.message }]),
              ...(forbidden.length > 0
                ? [{ group: forbidden.map((f) => `../${f}/*`), message: `src/${folder}/ may import only from the layers below it (see LAYERS in eslint.config.js, and "Architecture" in the README).` }]
                : []),
            ],
          },
        ],
      },
    };
  }),
);

// ESLint's own defineConfig(): typescript-eslint 8 deprecates its tseslint.config() helper for it.
export default defineConfig(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'bench/.baseline/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // Stale-ack and shutdown paths deliberately fire and forget promises that handle their own errors.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: true }],
    },
  },
  {
    // Files directly in src/ (index.ts) and anything new there: amqplib only through src/amqp/.
    files: ['src/*.ts', 'consumers/**/*.ts', 'producers/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [AMQPLIB_ONLY_IN_AMQP], patterns: [{ group: ['amqplib/*'], message: AMQPLIB_ONLY_IN_AMQP.message }] }] },
  },
  ...layering,
  {
    // The command is a user of the library: it imports warren's public API (../index.js), nothing inside it.
    files: ['src/cli/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [AMQPLIB_ONLY_IN_AMQP],
          patterns: [{ group: ['../*/*', '!../metrics/index.js', 'amqplib/*'], message: 'src/cli/ imports only the public API (../index.js, ../metrics/index.js), as a user of warren would.' }],
        },
      ],
    },
  },
  {
    // Tests poke at raw amqplib messages and broker JSON: unsafe-any rules would only add casts.
    files: ['test/**', 'bench/**'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
);
