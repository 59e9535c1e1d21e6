// Gateways sharing one PostgreSQL store (real processes). A gateway on the embedded KPI store
// (chDB under its HERALD_HOME) counts only the message events its own consumer takes: a second
// gateway would split the KPIs between two chDBs. It is refused, saying why and what to do.
import {
  createTestDatabase,
  describeOnStore,
  eventually,
  Platforms,
  platformEnv,
  runUntilExit,
  stopPlatform,
  type TestDatabase,
} from '@herald/testing';

describeOnStore('postgres', 'several gateways on one store', () => {
  let database: TestDatabase;
  const platforms = new Platforms();
  /** A gateway's environment: its own HERALD_HOME and port, the shared store. */
  const env = (extra: Record<string, string> = {}) => platformEnv('replica', { DATABASE_URL: database.url!, LOG_LEVEL: 'warn', ...extra });
  const startGateway = async () => platforms.start(await env(), 'gateway');

  beforeEach(async () => {
    database = await createTestDatabase('postgres');
  });
  afterEach(async () => {
    await platforms.end('SIGKILL');
    await database.drop();
  });

  it('refuses a second gateway on the embedded KPI store, saying why and to set CLICKHOUSE_URL; it starts once the first is gone', async () => {
    const first = await startGateway();
    const second = await runUntilExit(['gateway'], await env());
    expect({ code: second.code, up: second.up }).toEqual({ code: 2, up: false });
    expect(second.stderr).toContain('another gateway with the embedded KPI store (chDB) already runs on this control-plane store');
    expect(second.stderr).toContain('set CLICKHOUSE_URL');
    expect(second.stderr).not.toMatch(/^\s+at /m);
    // herald start runs a gateway too.
    const all = await runUntilExit(['start'], await env({ SMTP_URL: 'smtp://127.0.0.1:9' }));
    expect({ code: all.code, up: all.up }).toEqual({ code: 2, up: false });
    // A gateway on a ClickHouse server would split them just the same (refused before it connects to it).
    const clickhouse = await runUntilExit(['gateway'], await env({ CLICKHOUSE_URL: 'http://127.0.0.1:9' }));
    expect({ code: clickhouse.code, up: clickhouse.up }).toEqual({ code: 2, up: false });
    expect(clickhouse.stderr).toContain('a gateway with the embedded KPI store (chDB) runs on this control-plane store');

    // The connection holding the lock is cut: the gateway says so and takes the lock again.
    const lockHolder = async () =>
      (await database.db.query<{ pid: number }>("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid::bigint = $1 AND granted", [0x4845_524b]))[0]?.pid;
    const before = await lockHolder();
    expect(before).toBeDefined();
    await database.db.query('SELECT pg_terminate_backend($1)', [before]);
    await eventually(async () => ((await lockHolder()) ?? before) !== before, { timeoutMs: 15_000, what: 'the lock taken again' });
    expect(first.logs.join('')).toContain('lost the connection holding the KPI store lock');
    expect((await runUntilExit(['gateway'], await env())).code).toBe(2);

    // kill -9: the store ends its session, and with it the lock.
    first.child.kill('SIGKILL');
    await first.exited;
    const next = await startGateway();
    // SIGTERM: released on the way out.
    expect(await stopPlatform(next, 'SIGTERM')).toBe(0);
    await startGateway();
  });
});
