// Jest runs TypeScript straight from src through SWC, as native ES modules (Node 24).
// Workspace packages resolve to their sources, so tests never wait on a build.
const swc = [
  '@swc/jest',
  {
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2023',
    },
    module: { type: 'es6' },
    sourceMaps: 'inline',
  },
];

const shared = {
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper: {
    // The gateway's in-process harness, for other workspaces' tests (apps/gateway/package.json "exports").
    '^@herald/gateway/testing$': '<rootDir>/apps/gateway/test/harness.ts',
    '^@herald/(gateway|cli|engine|kpi-consumer)$': '<rootDir>/apps/$1/src/index.ts',
    '^@herald/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  testEnvironment: 'node',
};

export default {
  // NOTE: testTimeout is a global option (per-project values are ignored); integration tests send real mail.
  testTimeout: 120_000,
  // NOTE: every suite closes what it opens and exits alone, yet the full run sometimes keeps the
  // main process alive after the last test (a handle not yet found). forceExit keeps CI from
  // hanging on it; results are unaffected.
  forceExit: true,
  reporters: ['default', '<rootDir>/packages/testing/summary-reporter.cjs'],
  projects: [
    { ...shared, displayName: 'unit', testMatch: ['<rootDir>/{apps,packages}/*/src/**/*.spec.ts', '<rootDir>/test/**/*.spec.ts'] },
    {
      ...shared,
      displayName: 'integration',
      testMatch: ['<rootDir>/{apps,packages}/*/src/**/*.int-spec.ts', '<rootDir>/{apps,packages}/*/test/**/*.int-spec.ts'],
    },
  ],
};
