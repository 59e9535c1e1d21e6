// Recovery of the events an in-process bus held when the process died. The embedded bus is not
// durable: an event the outbox relay published but the KPI consumer had not yet inserted would be
// lost with the process. At start, before consuming, the events published since shortly before
// the newest ingested one are read back from the outbox and the ones ClickHouse does not have are
// inserted (deduplicated by event id). With Kafka the bus keeps them; recovery then finds none.
import { type MessageEvent, messageEventSchema } from '@herald/contracts';
import type { Logger } from 'pino';
import { dedupTokenOf, type EventSink } from './kpi-consumer.js';

export interface RecoverableStore extends EventSink {
  lastIngestedAt(): Promise<Date | undefined>;
  missingEventIds(eventIds: readonly string[], since: Date): Promise<Set<string>>;
}

/** Where a page of published events ends: an outbox row, and an event in it. */
export interface PublishedCursor {
  id: number;
  idx: number;
}

/** Message events the relay published, oldest first, in pages of `limit` events (keyset on the cursor). */
export interface PublishedEvents {
  publishedSince(since: Date, after: PublishedCursor | null, limit: number): Promise<(PublishedCursor & { payload: unknown })[]>;
}

export interface RecoveryResult {
  /** Published events looked at. */
  checked: number;
  /** Events that were missing from ClickHouse and are now inserted. */
  recovered: number;
  since: Date;
}

/**
 * Re-inserts the published events ClickHouse lacks. `marginMs` reaches back before the newest
 * ingested event, for events published before it but flushed later (default 10 minutes).
 */
export async function recoverPublishedEvents(
  store: RecoverableStore,
  source: PublishedEvents,
  logger: Logger,
  options: { marginMs?: number; pageSize?: number } = {},
): Promise<RecoveryResult> {
  const last = await store.lastIngestedAt();
  const since = new Date(last ? last.getTime() - (options.marginMs ?? 600_000) : 0);
  const pageSize = options.pageSize ?? 20_000;
  let after: PublishedCursor | null = null;
  let checked = 0;
  let recovered = 0;
  for (;;) {
    const rows = await source.publishedSince(since, after, pageSize);
    if (rows.length === 0) break;
    const last = rows[rows.length - 1]!;
    after = { id: last.id, idx: last.idx };
    const events = rows.flatMap((row) => {
      const parsed = messageEventSchema.safeParse(row.payload);
      return parsed.success ? [parsed.data] : [];
    });
    checked += events.length;
    const missing = await store.missingEventIds(events.map((e) => e.eventId), since);
    const lost: MessageEvent[] = events.filter((e) => missing.has(e.eventId));
    if (lost.length > 0) {
      await store.insertEvents(lost, { dedupToken: dedupTokenOf(lost) });
      recovered += lost.length;
    }
  }
  if (recovered > 0) logger.warn({ recovered, checked, since }, 'recovered message events the bus lost with the previous process');
  else logger.info({ checked, since }, 'KPI recovery: ClickHouse has every published event');
  return { checked, recovered, since };
}
