// The herald command as a user runs it: a real process (the compiled CLI; npm test builds first).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runHerald, tempDir } from '@herald/testing';
import { decodeJwt } from 'jose';

describe('herald CLI', () => {
  const home = tempDir('cli');

  it('prints a token with the roles asked for, signed with the secret kept in HERALD_HOME', async () => {
    const result = await runHerald(['token', '--user', 'alice', '--roles', 'delivery:start,delivery:view', '--name', 'Alice'], { HERALD_HOME: home });
    expect(result.code).toBe(0);
    const claims = decodeJwt(result.stdout.trim());
    expect(claims).toMatchObject({ sub: 'alice', name: 'Alice', roles: ['delivery:start', 'delivery:view'] });
    expect(existsSync(join(home, 'jwt-secret'))).toBe(true);
  });

  it('refuses unknown roles and missing options', async () => {
    const bad = await runHerald(['token', '--user', 'alice', '--roles', 'delivery:send'], { HERALD_HOME: home });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown role(s) delivery:send');
    expect((await runHerald(['token'], { HERALD_HOME: home })).code).toBe(2);
  });

  it('lists every bad environment variable at start', async () => {
    const result = await runHerald(['migrate'], { HERALD_HOME: home, PORT: 'eighty', CONFIRMATION_TTL: 'soon', DATABASE_URL: 'nope' });
    expect(result.code).toBe(2);
    for (const name of ['PORT', 'CONFIRMATION_TTL', 'DATABASE_URL']) expect(result.stderr).toContain(name);
  });

  it('applies migrations to the embedded store', async () => {
    const result = await runHerald(['migrate'], { HERALD_HOME: home });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('migrations applied');
    expect(existsSync(join(home, 'pglite', 'PG_VERSION'))).toBe(true);
  });

  it('explains itself', async () => {
    const result = await runHerald(['help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('herald <command>');
    expect((await runHerald(['frobnicate'])).code).toBe(2);
  });

  it('prints the usage of every command asked for --help (exit 0), and refuses unknown options with it (exit 2), never a stack trace', async () => {
    for (const command of ['start', 'gateway', 'engine', 'token', 'migrate', 'dlq']) {
      for (const flag of ['--help', '-h']) {
        const help = await runHerald([command, flag], { HERALD_HOME: home });
        expect({ command, flag, code: help.code, stderr: help.stderr }).toEqual({ command, flag, code: 0, stderr: '' });
        expect(help.stdout).toContain(`Usage: herald ${command}`);
      }
      const bad = await runHerald([command, '--frobnicate'], { HERALD_HOME: home });
      expect({ command, code: bad.code }).toEqual({ command, code: 2 });
      expect(bad.stderr).toContain("unknown option '--frobnicate'");
      expect(bad.stderr).toContain(`Usage: herald ${command}`);
      expect(bad.stderr).not.toMatch(/^\s+at /m);
    }
    const stray = await runHerald(['migrate', 'now'], { HERALD_HOME: home });
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain("unexpected argument 'now'");
    const value = await runHerald(['token', '--user'], { HERALD_HOME: home });
    expect(value.code).toBe(2);
    expect(value.stderr).toContain("option '--user' needs a value");
    expect(value.stderr).not.toMatch(/^\s+at /m);
  });
});
