// What an engine process serves on its own port: liveness, readiness and Prometheus metrics
// with the same figures GET /v1/ops/engines lists (each engine process has no API otherwise).
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Engine } from './engine.js';

export interface EngineServer {
  url: string;
  close(): Promise<void>;
}

export async function startEngineServer(engine: Engine, options: { port: number; host: string }): Promise<EngineServer> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
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

  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/health/live' || path === '/health/ready') {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', instanceId: engine.instanceId }));
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (error: Error) => response.writeHead(500).end(error.message),
      );
    } else {
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'NOT_FOUND', message: `${path} is not served by an engine process.` }));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    url: `http://${options.host}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
