// One small database port over PGlite (embedded default) and PostgreSQL (`pg`), so repositories
// run the same SQL on both. Transactions are explicit: a repository method receives the
// `Queryable` it must use.
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';

export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}

/** What a transaction's work is given: queries, and scripts of several statements (a migration file). */
export interface Transaction extends Queryable {
  /** Runs every statement of `sql` (no parameters) with the driver's own multi-statement execution. */
  exec(sql: string): Promise<void>;
}

export interface Database extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  transaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T>;
  /**
   * Runs `work` while this process holds the session-level advisory lock `key`, or returns
   * undefined at once if another session holds it. Used for leader election.
   */
  withAdvisoryLock<T>(key: number, work: () => Promise<T>): Promise<T | undefined>;
  /**
   * Takes the session-level advisory lock `key` (shared, or exclusive) on a connection of its
   * own, held until release() or the end of the process: undefined at once when another session
   * holds it in a conflicting mode. If that connection is lost, `onLost` is told and the lock is
   * taken again on a new one as soon as it can be.
   */
  holdAdvisoryLock(key: number, options: { shared: boolean; onLost?: (error: Error) => void }): Promise<HeldLock | undefined>;
  /** The modes in which sessions hold the advisory lock `key` now (e.g. to say why it could not be taken). */
  advisoryLockModes(key: number): Promise<('shared' | 'exclusive')[]>;
  close(): Promise<void>;
}

export interface HeldLock {
  release(): Promise<void>;
}

/** How often a held lock whose connection was lost is tried again. */
const RELOCK_INTERVAL_MS = 5_000;

// NOTE: bigint (int8) columns come back as JS numbers; counts here stay far below 2^53.
pg.types.setTypeParser(20, (value) => Number(value));
pg.types.setTypeParser(1700, (value) => Number(value));

class PostgresDatabase implements Database {
  readonly kind = 'postgres';
  constructor(
    private readonly pool: pg.Pool,
    private readonly url: string,
  ) {}

  async query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.pool.query(sql, params)).rows as T[];
  }

  async transaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work({
        query: async (sql, params = []) => (await client.query(sql, params)).rows,
        // Without parameters pg uses the simple query protocol, which runs several statements.
        exec: async (sql) => void (await client.query(sql)),
      });
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async withAdvisoryLock<T>(key: number, work: () => Promise<T>): Promise<T | undefined> {
    const client = await this.pool.connect();
    try {
      const [row] = (await client.query('SELECT pg_try_advisory_lock($1) AS locked', [key])).rows;
      if (!row?.locked) return undefined;
      try {
        return await work();
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [key]);
      }
    } finally {
      client.release();
    }
  }

  async holdAdvisoryLock(key: number, options: { shared: boolean; onLost?: (error: Error) => void }): Promise<HeldLock | undefined> {
    const lock = options.shared ? 'pg_try_advisory_lock_shared' : 'pg_try_advisory_lock';
    let released = false;
    let client: pg.Client | undefined;
    let retry: NodeJS.Timeout | undefined;
    // A connection outside the pool: the lock lives as long as this session.
    const take = async (first = false): Promise<'locked' | 'held elsewhere' | 'unreachable'> => {
      const candidate = new pg.Client({ connectionString: this.url });
      candidate.on('error', (error) => lost(candidate, error));
      try {
        await candidate.connect();
        const [row] = (await candidate.query(`SELECT ${lock}($1) AS locked`, [key])).rows;
        if (row?.locked && !released) {
          client = candidate;
          return 'locked';
        }
      } catch (error) {
        await candidate.end().catch(() => undefined);
        // At first the caller hears why; later, it is tried again.
        if (first) throw error;
        return 'unreachable';
      }
      await candidate.end().catch(() => undefined);
      return 'held elsewhere';
    };
    const lost = (from: pg.Client, error: Error) => {
      if (from !== client || released) return;
      client = undefined;
      void from.end().catch(() => undefined);
      options.onLost?.(error);
      let toldHeld = false;
      const again = () => {
        retry = setTimeout(async () => {
          if (released) return;
          const outcome = await take();
          if (outcome === 'locked') return;
          if (outcome === 'held elsewhere' && !toldHeld) {
            toldHeld = true;
            options.onLost?.(new Error('another session took the lock meanwhile'));
          }
          again();
        }, RELOCK_INTERVAL_MS);
        retry.unref();
      };
      again();
    };
    if ((await take(true)) !== 'locked') return undefined;
    return {
      release: async () => {
        released = true;
        clearTimeout(retry);
        // Ending the session releases the lock.
        await client?.end().catch(() => undefined);
        client = undefined;
      },
    };
  }

  advisoryLockModes(key: number): Promise<('shared' | 'exclusive')[]> {
    return advisoryLockModes(this, key);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

class PgliteDatabase implements Database {
  readonly kind = 'pglite';
  constructor(private readonly db: PGlite) {}

  async query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.db.query<T>(sql, params)).rows;
  }

  async transaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
    // PGlite runs one session: its transaction() queues every other query until this one ends.
    return this.db.transaction((tx) =>
      work({ query: async (sql, params = []) => (await tx.query(sql, params)).rows as never, exec: async (sql) => void (await tx.exec(sql)) }),
    );
  }

  async withAdvisoryLock<T>(key: number, work: () => Promise<T>): Promise<T | undefined> {
    const [row] = await this.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [key]);
    if (!row?.locked) return undefined;
    try {
      return await work();
    } finally {
      await this.query('SELECT pg_advisory_unlock($1)', [key]);
    }
  }

  async holdAdvisoryLock(key: number, options: { shared: boolean }): Promise<HeldLock | undefined> {
    // PGlite is one session of one process: the lock only guards against this process itself.
    const [row] = await this.query<{ locked: boolean }>(`SELECT ${options.shared ? 'pg_try_advisory_lock_shared' : 'pg_try_advisory_lock'}($1) AS locked`, [key]);
    if (!row?.locked) return undefined;
    return {
      release: async () => {
        await this.query(`SELECT ${options.shared ? 'pg_advisory_unlock_shared' : 'pg_advisory_unlock'}($1)`, [key]);
      },
    };
  }

  advisoryLockModes(key: number): Promise<('shared' | 'exclusive')[]> {
    return advisoryLockModes(this, key);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

async function advisoryLockModes(db: Queryable, key: number): Promise<('shared' | 'exclusive')[]> {
  const holders = await db.query<{ mode: string }>("SELECT mode FROM pg_locks WHERE locktype = 'advisory' AND objid::bigint = $1 AND granted", [key]);
  return holders.map((h) => (h.mode === 'ShareLock' ? 'shared' : 'exclusive'));
}

export interface DatabaseOptions {
  /** PostgreSQL connection string; when absent, PGlite is used. */
  url?: string;
  /** PGlite data directory; when absent (and no url), an in-memory PGlite. */
  dataDir?: string;
  poolSize?: number;
  /** Told about errors of idle pooled connections (which the pool then drops). */
  onIdleError?: (error: Error) => void;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url) {
    const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 20 });
    // NOTE: an idle connection closed by the server (restart, failover, DROP DATABASE) is
    // discarded by the pool; without a listener its 'error' event would crash the process.
    pool.on('error', (error) => options.onIdleError?.(error));
    const database = new PostgresDatabase(pool, options.url);
    await database.query('SELECT 1');
    return database;
  }
  if (options.dataDir) mkdirSync(options.dataDir, { recursive: true });
  const db = await PGlite.create(options.dataDir);
  return new PgliteDatabase(db);
}
