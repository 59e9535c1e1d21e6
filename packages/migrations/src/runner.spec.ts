import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Migration, type MigrationStore, readMigrations, runMigrations } from './runner.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'herald-migrations-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function files(names: Record<string, string>): void {
  for (const [name, sql] of Object.entries(names)) writeFileSync(join(dir, name), sql);
}

/** A store that keeps its applied versions in memory and fails on the SQL `FAIL`. */
function memoryStore(applied: number[] = []): MigrationStore & { applied: number[]; ran: string[] } {
  const store = {
    applied: [...applied],
    ran: [] as string[],
    async appliedVersions() {
      return store.applied;
    },
    async apply(migration: Migration) {
      if (migration.sql === 'FAIL') throw new Error(`${migration.name} failed`);
      store.ran.push(migration.name);
      store.applied.push(migration.version);
    },
  };
  return store;
}

describe('readMigrations', () => {
  it('reads the numbered .sql files in the order of their numbers, ignoring other files', async () => {
    files({ '10_ten.sql': 'X10', '002_two.sql': 'X2', '001_one.sql': 'X1', 'README.md': '', '003_three.sql.bak': '', 'notes.sql': '' });
    expect(await readMigrations(dir)).toEqual([
      { version: 1, name: '001_one.sql', sql: 'X1' },
      { version: 2, name: '002_two.sql', sql: 'X2' },
      { version: 10, name: '10_ten.sql', sql: 'X10' },
    ]);
  });

  it('refuses two files with one number', async () => {
    files({ '001_one.sql': '', '002_two.sql': '', '002_other.sql': '' });
    await expect(readMigrations(dir)).rejects.toThrow(/two migrations are numbered 2 .*002_other\.sql and 002_two\.sql/);
  });
});

describe('runMigrations', () => {
  it('applies the pending migrations in order and nothing on the next run', async () => {
    files({ '002_two.sql': 'X2', '001_one.sql': 'X1', '003_three.sql': 'X3' });
    const store = memoryStore();
    expect((await runMigrations(dir, store)).map((m) => m.name)).toEqual(['001_one.sql', '002_two.sql', '003_three.sql']);
    expect(await runMigrations(dir, store)).toEqual([]);
    expect(store.ran).toEqual(['001_one.sql', '002_two.sql', '003_three.sql']);
  });

  it('skips the versions the store recorded, and leaves alone those no file has', async () => {
    files({ '001_one.sql': 'X1', '002_two.sql': 'X2', '003_three.sql': 'X3' });
    const store = memoryStore([1, 2, 7]);
    expect((await runMigrations(dir, store)).map((m) => m.name)).toEqual(['003_three.sql']);
    expect(store.applied).toEqual([1, 2, 7, 3]);
  });

  it('stops at a failed migration: the later ones are not tried, the earlier ones stay applied', async () => {
    files({ '001_one.sql': 'X1', '002_two.sql': 'FAIL', '003_three.sql': 'X3' });
    const store = memoryStore();
    await expect(runMigrations(dir, store)).rejects.toThrow('002_two.sql failed');
    expect(store.ran).toEqual(['001_one.sql']);
  });
});
