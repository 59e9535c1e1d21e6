// Recovery at start, before consuming:
// 1. The events an in-process bus held when the process died. The embedded bus is not durable:
//    an event the outbox relay published but the KPI consumer had not yet inserted would be lost
//    with the process. The events published since shortly before the newest ingested one are read
//    back from the outbox and the ones ClickHouse does not have are inserted (deduplicated by
//    event id). With Kafka the bus keeps them; recovery then finds none. The opens and clicks
//    the gateway published without the outbox are read back from its journal the same way.
// 2. What a crash left the materialized views without: an insert into message_events and its
//    views' parts are not atomic, so a process killed in between left events the live counters
//    never counted. The deliveries with events in the same window are reconciled with their raw
//    events, and the profile events of the window the profile history lacks are copied.
import { type MessageEvent, messageEventSchema } from '@herald/contracts';
import type { CounterRepair, KpiStore } from '@herald/kpi-store';
import type { Logger } from 'pino';
import type { EventJournal } from './event-journal.js';
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
  options: { marginMs?: number; pageSize?: number; journal?: Pick<EventJournal, 'eventsSince'> } = {},
): Promise<RecoveryResult> {
  const last = await store.lastIngestedAt();
  const since = new Date(last ? last.getTime() - (options.marginMs ?? 600_000) : 0);
  const pageSize = options.pageSize ?? 20_000;
  let after: PublishedCursor | null = null;
  let checked = 0;
  let recovered = 0;
  const insertMissing = async (events: MessageEvent[]) => {
    checked += events.length;
    const missing = await store.missingEventIds(events.map((e) => e.eventId), since);
    const lost: MessageEvent[] = events.filter((e) => missing.has(e.eventId));
    if (lost.length > 0) {
      await store.insertEvents(lost, { dedupToken: dedupTokenOf(lost) });
      recovered += lost.length;
    }
  };
  for (;;) {
    const rows = await source.publishedSince(since, after, pageSize);
    if (rows.length === 0) break;
    const last = rows[rows.length - 1]!;
    after = { id: last.id, idx: last.idx };
    await insertMissing(
      rows.flatMap((row) => {
        const parsed = messageEventSchema.safeParse(row.payload);
        return parsed.success ? [parsed.data] : [];
      }),
    );
  }
  const journaled = options.journal?.eventsSince(since) ?? [];
  for (let i = 0; i < journaled.length; i += pageSize) await insertMissing(journaled.slice(i, i + pageSize));
  if (recovered > 0) logger.warn({ recovered, checked, since }, 'recovered message events the bus lost with the previous process');
  else logger.info({ checked, since }, 'KPI recovery: ClickHouse has every published event');
  return { checked, recovered, since };
}

export interface RestartRepair {
  /** Deliveries with events in the window, reconciled. */
  deliveries: number;
  /** Counter corrections made (none when the counters were right). */
  counters: CounterRepair[];
  /** Hours of the hourly series corrected. */
  hours: number;
  /** Events copied into the profile events. */
  profileEvents: number;
}

/**
 * Reconciles the KPIs of the deliveries with events ingested since `since` (the recovery window)
 * with their raw events. Run it before this process's KPI consumer starts (no insert in flight).
 */
export async function repairAfterRestart(
  store: Pick<KpiStore, 'deliveriesIngestedSince' | 'reconcile' | 'repairProfileEvents'>,
  since: Date,
  logger: Logger,
): Promise<RestartRepair> {
  const deliveries = await store.deliveriesIngestedSince(since);
  const { counters, hours } = await store.reconcile(deliveries);
  const profileEvents = await store.repairProfileEvents(since);
  const repair = { deliveries: deliveries.length, counters, hours, profileEvents };
  if (counters.length + hours + profileEvents > 0) logger.warn({ ...repair, since }, 'repaired KPIs a crash left short or doubled');
  else logger.info({ deliveries: deliveries.length, since }, 'KPI repair: the counters match the raw events');
  return repair;
}
