// One KPI store per platform: a gateway takes the KPI store lock on the control-plane store
// before its KPI consumer counts anything, and a gateway that would split the KPIs is refused.
import type { HeraldConfig } from '@herald/config';
import type { Database, HeldLock } from '@herald/control-plane';
import type { Logger } from 'pino';

/** A process that must not run beside the ones already running: refused with the reason, exit code 2. */
export class StartRefusedError extends Error {}

/** Advisory lock of the gateways' KPI stores on one control-plane store ("HERK"). */
const KPI_STORE_LOCK = 0x4845_524b;

/**
 * Each gateway's KPI consumer takes part of the message events (a consumer group shares them):
 * with chDB under each gateway's HERALD_HOME, each would count only its part. A gateway on the
 * embedded KPI store holds this lock exclusively, one on a ClickHouse server (CLICKHOUSE_URL)
 * shares it with the others: any other mix is refused.
 */
export async function holdKpiStoreLock(db: Database, config: HeraldConfig, logger: Logger): Promise<HeldLock> {
  const embedded = !config.CLICKHOUSE_URL;
  const lock = await db.holdAdvisoryLock(KPI_STORE_LOCK, {
    shared: !embedded,
    onLost: (error) => logger.error({ err: error }, 'lost the connection holding the KPI store lock (one gateway per embedded KPI store); taking it again'),
  });
  if (lock) return lock;
  if (!embedded) {
    throw new StartRefusedError(
      'a gateway with the embedded KPI store (chDB) runs on this control-plane store: it and this one would each count part of the message events, splitting the KPIs. ' +
        'Stop it, and set CLICKHOUSE_URL (the same ClickHouse server) for every gateway.',
    );
  }
  const holders = await db.advisoryLockModes(KPI_STORE_LOCK);
  if (holders.length > 0 && holders.every((mode) => mode === 'shared')) {
    throw new StartRefusedError(
      'gateways with CLICKHOUSE_URL run on this control-plane store: this one, on the embedded KPI store (chDB), would count part of the message events in its own chDB, splitting the KPIs. ' +
        'Set CLICKHOUSE_URL here too.',
    );
  }
  throw new StartRefusedError(
    'another gateway with the embedded KPI store (chDB) already runs on this control-plane store: each gateway counts the part of the message events its KPI consumer takes, ' +
      'in its own chDB, so each would show only part of the KPIs. Run one gateway, or, for several, set CLICKHOUSE_URL (one ClickHouse server) for every gateway.',
  );
}
