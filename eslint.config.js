// Lint enforces the folder dependency rules of the architecture (docs/architecture.md):
// - src/protocol is pure: no WebSocket, HTTP server or Kubernetes library, and nothing of the programs;
// - src/agent and src/broker never import each other;
// - src/shared holds small helpers of both programs and imports neither program.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const ioLibraries = ['ws', 'fastify', 'fastify/*', '@fastify/*', '@kubernetes/client-node', 'undici', 'ioredis', 'node:http', 'node:https', 'node:net', 'node:tls', 'http', 'https', 'net', 'tls'];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.dev/**', '.base/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/protocol/**/*.ts'],
    ignores: ['src/protocol/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: ioLibraries.filter((p) => !p.includes('*')).map((name) => ({ name, message: 'src/protocol works on bytes and a message transport only: no I/O libraries.' })),
        patterns: [
          { group: ['fastify/*', '@fastify/*'], message: 'src/protocol imports no HTTP server.' },
          { group: ['**/agent/**', '**/broker/**', '**/shared/**'], message: 'src/protocol imports nothing of the programs.' },
        ],
      }],
    },
  },
  {
    files: ['src/agent/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/broker/**', '**/broker'], message: 'agentk never imports kas code (src/broker).' }, { group: ['fastify', 'fastify/*'], message: 'agentk does not carry fastify.' }] }],
    },
  },
  {
    files: ['src/broker/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/agent/**', '**/agent'], message: 'kas never imports agentk code (src/agent).' }] }],
    },
  },
  {
    files: ['src/shared/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/agent/**', '**/broker/**'], message: 'src/shared is used by both programs and imports neither.' }] }],
    },
  },
);
