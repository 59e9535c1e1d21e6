// The KPI consumer: message events from the bus into the KPI store, one insert per batch,
// with a deduplication token derived from the batch's event ids (a retried or redelivered
// batch never counts twice). The batch is acknowledged only after the store acknowledged the
// insert; while the store fails, the handler throws and the bus redelivers after a backoff,
// so nothing is lost and nothing more is read. Poison events go to the DLQ with the reason.
import { createHash } from 'node:crypto';
import type { Bus, DeliveredMessage, Subscription } from '@herald/bus';
import { dlqTopic, type MessageEvent, messageEventSchema, TOPICS } from '@herald/contracts';
import type { Logger } from 'pino';

export interface EventSink {
  insertEvents(events: readonly MessageEvent[], options: { dedupToken?: string }): Promise<void>;
}

export interface KpiConsumerStats {
  inserted: number;
  batches: number;
  failures: number;
  poison: number;
}

export class KpiConsumer {
  private subscription?: Subscription;
  readonly stats: KpiConsumerStats = { inserted: 0, batches: 0, failures: 0, poison: 0 };

  constructor(
    private readonly bus: Bus,
    private readonly store: EventSink,
    private readonly logger: Logger,
    private readonly maxBatchSize = 50_000,
  ) {}

  async start(): Promise<void> {
    this.subscription = await this.bus.subscribe({
      topic: TOPICS.messageEvents,
      group: 'kpi-consumer',
      maxBatchSize: this.maxBatchSize,
      handler: (batch) => this.handle(batch),
    });
  }

  async stop(): Promise<void> {
    await this.subscription?.close();
  }

  private async handle(batch: DeliveredMessage[]): Promise<void> {
    const events: MessageEvent[] = [];
    const poison: { value: unknown; reason: string }[] = [];
    for (const message of batch) {
      const parsed = messageEventSchema.safeParse(message.value);
      if (parsed.success) events.push(parsed.data);
      else poison.push({ value: message.value, reason: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
    }
    if (poison.length > 0) {
      await this.bus.publish(
        dlqTopic(TOPICS.messageEvents),
        poison.map((p) => ({ key: 'poison', value: { reason: p.reason, value: p.value } })),
      );
      this.stats.poison += poison.length;
      this.logger.warn({ count: poison.length, reason: poison[0]!.reason }, 'poison message events sent to the DLQ');
    }
    if (events.length === 0) return;
    const dedupToken = createHash('sha256')
      .update(events.map((e) => e.eventId).join(','))
      .digest('hex');
    try {
      await this.store.insertEvents(events, { dedupToken });
    } catch (error) {
      this.stats.failures++;
      this.logger.warn({ err: error, events: events.length }, 'KPI store insert failed; the batch will be retried');
      throw error;
    }
    this.stats.batches++;
    this.stats.inserted += events.length;
  }
}
