// The workspaces' dependency rules (.dependency-cruiser.cjs), checked with dependency-cruiser over
// every TypeScript source of apps/ and packages/: no module cycle, no package importing an app,
// no repository of the control plane imported from outside it, the control plane importing
// neither channels nor config, no workspace reaching into another by a relative path. A fixture
// tree that breaks each rule once shows that every rule can fail.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cruise, type ICruiseResult, type IViolation } from 'dependency-cruiser';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const config = require(join(ROOT, '.dependency-cruiser.cjs'));
const webpack = require(join(ROOT, 'test', 'dependency-rules.webpack.cjs'));

async function violations(baseDir: string): Promise<IViolation[]> {
  const { webpackConfig: _, ...options } = config.options;
  const result = await cruise(['apps', 'packages'], { ...options, baseDir, validate: true, ruleSet: { forbidden: config.forbidden } }, webpack.resolve);
  return (result.output as ICruiseResult).summary.violations;
}

const describeViolation = (v: IViolation) => `${v.rule.name}: ${v.from} → ${v.to}${v.cycle ? ` (cycle ${v.cycle.map((c) => c.name).join(' → ')})` : ''}`;

describe('dependency rules', () => {
  it('hold for every module of apps/ and packages/', async () => {
    expect((await violations(ROOT)).map(describeViolation)).toEqual([]);
  }, 60_000);

  it('each fail on a tree that breaks them', async () => {
    const fixture = join(ROOT, 'test', 'fixtures', 'dependency-rules');
    const broken = new Set((await violations(fixture)).map((v) => v.rule.name));
    expect([...broken].sort()).toEqual(
      ['control-plane-takes-values', 'no-cycle', 'no-package-imports-an-app', 'no-reach-into-another-workspace', 'repositories-are-private'].sort(),
    );
  }, 60_000);
});
