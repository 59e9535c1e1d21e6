// Prometheus figures of a send engine, the same wherever they are served: an engine process's
// own /metrics, or the gateway's when the engine runs in its process (`herald start`).
import { OUTBOX_PUBLISHED_METRIC } from '@herald/control-plane';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Engine } from './engine.js';

/** The herald_engine_* gauges of `engine`, read from its last heartbeat's report. */
export function registerEngineMetrics(engine: Engine, registry: Registry): void {
  const gauge = (name: string, help: string, read: () => number | null) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const value = read();
        if (value !== null) this.set(value);
      },
    });
  gauge('herald_engine_messages', 'Messages settled by this engine since it started.', () => engine.report.messages);
  gauge('herald_engine_batches', 'Send batches settled by this engine since it started.', () => engine.report.batches);
  gauge('herald_engine_messages_per_second', 'Messages per second over the last heartbeat interval.', () => engine.report.messagesPerSecond);
  gauge('herald_engine_in_flight_batches', 'Batches handed to the worker pool and not settled yet.', () => engine.report.inFlightBatches);
  gauge('herald_engine_threads', 'Worker threads of the Piscina pool.', () => engine.report.threads);
  gauge('herald_engine_partitions', 'Partitions of herald.send-batches this engine consumes.', () => engine.report.partitions?.length ?? null);
  gauge('herald_engine_send_batches_lag', 'Send batches waiting on the bus for the engines.', () => engine.report.lag);
  gauge('herald_engine_limit_share', 'Share of every throughput limit this engine enforces.', () => engine.report.share);
}

/**
 * OUTBOX_PUBLISHED_METRIC in `registry`, for the outbox relay of a process without a gateway
 * (the gateway counts its own relay): pass the result to the OutboxRelay as its onPublished.
 */
export function outboxPublishedCounter(registry: Registry): (topic: string, messages: number) => void {
  const counter = new Counter({ ...OUTBOX_PUBLISHED_METRIC, labelNames: [...OUTBOX_PUBLISHED_METRIC.labelNames], registers: [registry] });
  return (topic, messages) => counter.inc({ topic }, messages);
}
