/**
 * Jest for ESM TypeScript: swc strips types, tsc type-checks separately (npm run typecheck).
 * Two projects: "unit" (src/, test/) and "e2e" (e2e/), whose global setup provisions the real
 * Kubernetes API server and builds the programs; it only runs when an e2e test is selected.
 */
const common = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022', parser: { syntax: 'typescript' } } }] },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
};

export default {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/src/**/*.test.ts', '<rootDir>/test/**/*.test.ts'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/e2e/**/*.test.ts'], globalSetup: '<rootDir>/e2e/support/global-setup.ts' },
  ],
  testTimeout: 60000,
};
