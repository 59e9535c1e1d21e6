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
    // A command that ignored its arguments would start a server: the timeout ends it (and the test fails).
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH, ...env }, timeout: 30_000 });
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

  it('prints the usage of every command asked for --help (exit 0), and refuses unknown options with it (exit 2), never a stack trace', async () => {
    for (const command of ['start', 'gateway', 'engine', 'token', 'migrate', 'dlq']) {
      for (const flag of ['--help', '-h']) {
        const help = await herald([command, flag], { HERALD_HOME: home });
        expect({ command, flag, code: help.code, stderr: help.stderr }).toEqual({ command, flag, code: 0, stderr: '' });
        expect(help.stdout).toContain(`Usage: herald ${command}`);
      }
      const bad = await herald([command, '--frobnicate'], { HERALD_HOME: home });
      expect({ command, code: bad.code }).toEqual({ command, code: 2 });
      expect(bad.stderr).toContain("unknown option '--frobnicate'");
      expect(bad.stderr).toContain(`Usage: herald ${command}`);
      expect(bad.stderr).not.toMatch(/^\s+at /m);
    }
    const stray = await herald(['migrate', 'now'], { HERALD_HOME: home });
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain("unexpected argument 'now'");
    const value = await herald(['token', '--user'], { HERALD_HOME: home });
    expect(value.code).toBe(2);
    expect(value.stderr).toContain("option '--user' needs a value");
    expect(value.stderr).not.toMatch(/^\s+at /m);
  });
});
