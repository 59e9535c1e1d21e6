// The control plane's boundary, checked on the source tree: its repositories are private (the
// package exports "." only, and index.ts no repository value), no other workspace runs SQL on
// the control-plane store, only the transition primitive's repository methods write a state
// column, and the control plane reads neither the channels' helpers nor the environment's.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE = fileURLToPath(new URL('..', import.meta.url));
const ROOT = join(PACKAGE, '..', '..');

/** The TypeScript sources under `dir` (no dist, no node_modules). */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return ['node_modules', 'dist'].includes(entry.name) ? [] : sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const workspaces = ['apps', 'packages'].flatMap((group) => readdirSync(join(ROOT, group)).map((name) => join(ROOT, group, name)));
const otherWorkspaces = workspaces.filter((dir) => !dir.endsWith('/packages/control-plane'));
const isTest = (path: string) => /\.(int-)?spec\.ts$/.test(path) || path.includes('/test/') || path.includes('/packages/testing/');

describe('the control plane boundary', () => {
  const manifest = JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8'));

  it('exports only its entry point, which exports no repository', () => {
    expect(Object.keys(manifest.exports)).toEqual(['.']);
    const index = readFileSync(join(PACKAGE, 'src', 'index.ts'), 'utf8');
    const fromRepositories = index.split(/;\n/).filter((statement) => statement.includes('/repositories/'));
    expect(fromRepositories.length).toBeGreaterThan(0);
    for (const statement of fromRepositories) expect(statement.trim()).toMatch(/^(\/\/[^\n]*\n)*export type \{/);
  });

  it('depends on neither @herald/channels nor @herald/config, in its manifest or its sources', () => {
    expect(Object.keys(manifest.dependencies)).not.toEqual(expect.arrayContaining(['@herald/channels']));
    expect(Object.keys(manifest.dependencies)).not.toEqual(expect.arrayContaining(['@herald/config']));
    const offenders = sources(join(PACKAGE, 'src')).filter((path) => /from '@herald\/(channels|config)'/.test(readFileSync(path, 'utf8')));
    expect(offenders).toEqual([]);
  });

  it('no other workspace imports its repositories or its sources', () => {
    const offenders = otherWorkspaces
      .flatMap(sources)
      .filter((path) => /from '[^']*(control-plane\/src|\.repository(\.js)?')/.test(readFileSync(path, 'utf8')))
      .map((path) => relative(ROOT, path));
    expect(offenders).toEqual([]);
  });

  it('no other workspace runs SQL on the control-plane store (tests may read it)', () => {
    const offenders = otherWorkspaces
      .flatMap(sources)
      .filter((path) => !isTest(path))
      .filter((path) => {
        const text = readFileSync(path, 'utf8');
        return text.includes('@herald/control-plane') && /\.query(<[^>]*>)?\(/.test(text);
      })
      .map((path) => relative(ROOT, path));
    expect(offenders).toEqual([]);
  });

  it('runs SQL only in its repositories, the database port and the migration runner', () => {
    const allowed = /\/src\/(repositories\/[^/]+|database|migrate)\.ts$/;
    const offenders = sources(join(PACKAGE, 'src'))
      .filter((path) => !isTest(path) && !allowed.test(path))
      .filter((path) => /\.query(<[^>]*>)?\(/.test(readFileSync(path, 'utf8')))
      .map((path) => relative(PACKAGE, path));
    expect(offenders).toEqual([]);
  });

  it("writes a delivery's or a run's state only in the transition primitive's repository methods", () => {
    const writes = sources(join(PACKAGE, 'src', 'repositories')).flatMap((path) => {
      const text = readFileSync(path, 'utf8');
      return [...text.matchAll(/UPDATE (deliveries|delivery_occurrences)\b[^`]*?SET[^`]*?\bstate = /g)].map((match) => {
        const method = text.slice(0, match.index).match(/\n {2}async (\w+)\(/g)?.at(-1)?.match(/async (\w+)/)?.[1];
        return `${relative(PACKAGE, path)}:${method}`;
      });
    });
    expect(writes).toEqual(['src/repositories/deliveries.repository.ts:transition', 'src/repositories/deliveries.repository.ts:transitionOccurrence']);
  });
});
