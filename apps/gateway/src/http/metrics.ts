// Prometheus metrics of the gateway (one registry per gateway instance).
import { OUTBOX_PUBLISHED_METRIC } from '@herald/control-plane';
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly httpDuration = new Histogram({
    name: 'herald_http_request_duration_seconds',
    help: 'HTTP request duration by route and status.',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly errors = new Counter({ name: 'herald_http_errors_total', help: 'Error responses by code.', labelNames: ['code'], registers: [this.registry] });
  readonly confirmations = new Counter({
    name: 'herald_confirmations_total',
    help: 'Confirmation steps by step (confirm_send, ok) and outcome.',
    labelNames: ['step', 'outcome'],
    registers: [this.registry],
  });
  readonly profilesImported = new Counter({ name: 'herald_profiles_imported_total', help: 'Profiles upserted by imports.', registers: [this.registry] });
  /**
   * Opens and clicks recorded, by how: `bus` published from the token alone, `outbox` the bus
   * refused it (kept in the control-plane store), `ledger` a token from before tokens carried the
   * Message-ID (resolved through the ledger).
   */
  readonly trackingEvents = new Counter({
    name: 'herald_tracking_events_total',
    help: 'Opens and clicks recorded, by type and path (bus, outbox, ledger).',
    labelNames: ['type', 'path'],
    registers: [this.registry],
  });
  /** Counted by the gateway's outbox relay. */
  readonly outboxPublished = new Counter({ ...OUTBOX_PUBLISHED_METRIC, labelNames: [...OUTBOX_PUBLISHED_METRIC.labelNames], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'herald_' });
  }
}
