// Opens and clicks without the control-plane store. A verified token carries all an event needs
// (delivery, run, recipient, Message-ID, link, issue time): the event is built from it and
// published on the bus, to the KPI consumer, with no statement on the store. The only read left
// is a click's target URL, kept in memory per run and link once read (the links are fixed at
// preparation, and their rows outlive the ledger's). What stays on the store: a token rendered
// before tokens carried the Message-ID (resolved through the ledger, as it always was), and an
// event the bus refused (the outbox keeps it, so a hit the gateway answered is never lost).
//
// Durability: a broker (Kafka) has the event once publish resolves. The in-process bus of the
// embedded default holds it in memory until the KPI consumer flushes: the journal, when given,
// writes it first, and the KPI recovery at start re-inserts what a killed process left unflushed.
import { randomUUID } from 'node:crypto';
import type { Bus } from '@herald/bus';
import { isExpired, type TrackingPayload } from '@herald/channels';
import { type MessageEvent, messageEventKey, TOPICS } from '@herald/contracts';
import type { Clock, ControlPlane } from '@herald/control-plane';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Metrics } from './http/metrics.js';

/** Where events are written before the in-process bus carries them (see @herald/kpi-consumer's EventJournal). */
export interface EventJournal {
  append(event: MessageEvent): void;
}

/** Runs whose click targets are kept: far more than the deliveries whose links are clicked at once. */
const CACHED_RUNS = 10_000;

export interface TrackingEventsOptions {
  controlPlane: ControlPlane;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** How long after it was issued an open or click token records (TRACKING_LINK_TTL). */
  linkTtlMs: number;
  journal?: EventJournal;
}

export class TrackingEvents {
  /** Per run (delivery/occurrence), the target of each link index read so far; undefined: no such link. */
  private readonly targets = new LRUCache<string, Map<number, Promise<string | undefined>>>({ max: CACHED_RUNS });

  constructor(private readonly options: TrackingEventsOptions) {}

  /** Whether an open or click token has outlived the link lifetime. */
  expired(payload: TrackingPayload): boolean {
    return isExpired(payload, this.options.linkTtlMs, this.options.clock.now().getTime());
  }

  /** The URL a click redirects to: the one stored for that link (a proof's own, for a proof); undefined when there is none. */
  clickTarget(payload: TrackingPayload): Promise<string | undefined> {
    // Proofs are few and each has its own links: read them as they come.
    if (payload.proof) return this.options.controlPlane.tracking.clickTarget(payload);
    const run = `${payload.deliveryId}/${payload.occurrence}`;
    let links = this.targets.get(run);
    if (!links) {
      links = new Map();
      this.targets.set(run, links);
    }
    const index = payload.link ?? -1;
    let target = links.get(index);
    if (!target) {
      // Concurrent first clicks of a link share one read; a failed read is not kept.
      const cached = links;
      target = this.options.controlPlane.tracking.clickTarget(payload);
      target.catch(() => cached.delete(index));
      cached.set(index, target);
    }
    return target;
  }

  /** Records an open or a click (with the URL it went to) of a genuine, unexpired, non-proof token. */
  async record(payload: TrackingPayload, type: 'opened' | 'clicked', interaction: { machine: boolean; url?: string }): Promise<void> {
    const { controlPlane, metrics } = this.options;
    if (payload.messageId === undefined) {
      await controlPlane.tracking.record(payload, type, interaction);
      metrics.trackingEvents.inc({ type, path: 'ledger' });
      return;
    }
    const event: MessageEvent = {
      // One id per hit: every hit counts (opens and clicks are totals as well as unique counts),
      // and the same hit journaled, retried or kept by the outbox carries the same id.
      eventId: randomUUID(),
      type,
      deliveryId: payload.deliveryId,
      occurrence: payload.occurrence,
      messageId: payload.messageId,
      profileId: payload.profileId,
      // Only emails carry tracked links.
      channel: 'email',
      occurredAt: this.options.clock.now().toISOString(),
      ...(interaction.url ? { url: interaction.url } : {}),
      machine: interaction.machine,
    };
    try {
      // Journaled first: what the in-process bus holds dies with the process, the journal does not.
      this.options.journal?.append(event);
      await this.options.bus.publish(TOPICS.messageEvents, [{ key: messageEventKey(event), value: event }]);
      metrics.trackingEvents.inc({ type, path: 'bus' });
    } catch (error) {
      // A full disk or a bus that refuses: the outbox keeps the event (the relay publishes it later).
      this.options.logger.warn({ err: error, eventId: event.eventId }, 'a tracking event could not be journaled or published; kept in the outbox');
      await controlPlane.tracking.recordEvent(event);
      metrics.trackingEvents.inc({ type, path: 'outbox' });
    }
  }
}
