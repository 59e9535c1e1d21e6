// The herald command as a user runs it: a real process (the compiled CLI; npm test builds first).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../bin/herald.js', import.meta.url));
const built = fileURLToPath(new URL('../dist/main.js', import.meta.url));

async function herald(args: string[], env: Record<string, string> = {}) {
  if (!existsSync(built)) throw new Error('apps/cli is not built: run `npm run build` (npm test does it first)');
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('herald CLI', () => {
  const home = mkdtempSync(join(tmpdir(), 'herald-cli-'));

  it('prints a token with the roles asked for, signed with the secret kept in HERALD_HOME', async () => {
    const result = await herald(['token', '--user', 'alice', '--roles', 'delivery:start,delivery:view', '--name', 'Alice'], { HERALD_HOME: home });
    expect(result.code).toBe(0);
    const claims = decodeJwt(result.stdout.trim());
    expect(claims).toMatchObject({ sub: 'alice', name: 'Alice', roles: ['delivery:start', 'delivery:view'] });
    expect(existsSync(join(home, 'jwt-secret'))).toBe(true);
  });

  it('refuses unknown roles and missing options', async () => {
    const bad = await herald(['token', '--user', 'alice', '--roles', 'delivery:send'], { HERALD_HOME: home });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown role(s) delivery:send');
    expect((await herald(['token'], { HERALD_HOME: home })).code).toBe(2);
  });

  it('lists every bad environment variable at start', async () => {
    const result = await herald(['migrate'], { HERALD_HOME: home, PORT: 'eighty', CONFIRMATION_TTL: 'soon', DATABASE_URL: 'nope' });
    expect(result.code).toBe(2);
    for (const name of ['PORT', 'CONFIRMATION_TTL', 'DATABASE_URL']) expect(result.stderr).toContain(name);
  });

  it('applies migrations to the embedded store', async () => {
    const result = await herald(['migrate'], { HERALD_HOME: home });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('migrations applied');
    expect(existsSync(join(home, 'pglite', 'PG_VERSION'))).toBe(true);
  });

  it('explains itself', async () => {
    const result = await herald(['help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('herald <command>');
    expect((await herald(['frobnicate'])).code).toBe(2);
  });
});
