// What an engine process serves on its own port: liveness, readiness (it reaches its store and
// its bus) and Prometheus metrics with the same figures GET /v1/ops/engines lists (each engine
// process has no API otherwise).
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { registerEngineMetrics } from './engine-metrics.js';
import type { Engine } from './engine.js';

export interface EngineServer {
  url: string;
  /** What /metrics serves: the engine's figures, and whatever else this process registers in it. */
  registry: Registry;
  close(): Promise<void>;
}

export async function startEngineServer(engine: Engine, options: { port: number; host: string }): Promise<EngineServer> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerEngineMetrics(engine, registry);

  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/health/live') {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', instanceId: engine.instanceId }));
    } else if (path === '/health/ready') {
      // Ready while it reaches the store and the bus: a probe that takes it out of rotation while not.
      void engine.readiness().then((readiness) => {
        const body = readiness.ready ? { status: 'ok', instanceId: engine.instanceId } : { status: 'unavailable', instanceId: engine.instanceId, reason: readiness.reason };
        response.writeHead(readiness.ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      });
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
    registry,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
