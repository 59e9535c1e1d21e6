// The dependency rules of Herald's workspaces (docs/architecture.md, "Packages and their rules"),
// checked by test/dependency-rules.spec.ts. Workspace imports (@herald/x) are resolved to their
// TypeScript sources, so the rules see through package boundaries.
const { join } = require('node:path');

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycle',
      severity: 'error',
      comment: 'Modules form a DAG: a cycle makes load order and ownership unclear.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-package-imports-an-app',
      severity: 'error',
      comment: 'Packages hold the rules; apps are wiring. A package never reaches into an app.',
      from: { path: '^packages/' },
      to: { path: '^apps/' },
    },
    {
      name: 'repositories-are-private',
      severity: 'error',
      comment: 'Only the control plane reads and writes its store: everyone else calls its services.',
      from: { pathNot: '^packages/control-plane/' },
      to: { path: '^packages/control-plane/src/repositories/' },
    },
    {
      name: 'control-plane-takes-values',
      severity: 'error',
      comment: 'The control plane neither renders (channels) nor reads the environment (config).',
      from: { path: '^packages/control-plane/' },
      to: { path: '^packages/(channels|config)/' },
    },
    {
      name: 'no-reach-into-another-workspace',
      severity: 'error',
      comment: 'A workspace reaches another only through its package name and exports, never by a relative path.',
      from: { path: '^(apps|packages)/([^/]+)/' },
      to: { path: '^(apps|packages)/', pathNot: '^$1/$2/', dependencyTypes: ['local'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    parser: 'swc',
    webpackConfig: { fileName: join(__dirname, 'test', 'dependency-rules.webpack.cjs') },
  },
};
