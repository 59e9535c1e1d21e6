// What an operator sees of running `herald` processes (real processes, a real SMTP server on
// loopback): the gateway's /metrics, an engine's /health/ready and GET /v1/ops/engines.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CaptureSink, startCaptureSink } from '@herald/capture-sink';
import { call, freePort, type Platform, startPlatform, startSend, until } from './platform.js';

/** The value of one sample of a Prometheus text exposition (`name{labels}` as printed), or undefined. */
export function sample(metrics: string, series: string): number | undefined {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('herald start: the gateway /metrics', () => {
  let sink: CaptureSink;
  let platform: Platform;

  beforeAll(async () => {
    sink = await startCaptureSink({ store: 'memory' });
    platform = await startPlatform({
      HERALD_HOME: mkdtempSync(join(tmpdir(), 'herald-metrics-')),
      PORT: String(await freePort()),
      SMTP_URL: sink.url,
      LOG_LEVEL: 'warn',
      ENGINE_THREADS: '1',
    });
  });
  afterAll(async () => {
    if (platform.child.exitCode === null) platform.child.kill('SIGTERM');
    await platform.exited;
    await sink.close();
  });

  it('counts what the outbox relay published, per topic', async () => {
    const id = await startSend(platform, { prefix: 'om-', count: 40 });
    await until(async () => (await call(platform, 'GET', `/v1/deliveries/${id}`)).body.state === 'finished', 60_000, 'the send to finish');
    const metrics = async () => (await fetch(`${platform.url}/metrics`)).text();
    // Two message events per recipient sent (sent, delivered), and the DeliveryStarted command.
    await until(async () => sample(await metrics(), 'herald_outbox_published_total{topic="herald.message-events"}') === 80, 10_000, 'the events counted');
    expect(sample(await metrics(), 'herald_outbox_published_total{topic="herald.delivery-commands"}')).toBeGreaterThanOrEqual(1);
  });

  it("includes the in-process engine's figures, named as on an engine process's /metrics", async () => {
    const id = await startSend(platform, { prefix: 'em-', count: 30 });
    await until(async () => (await call(platform, 'GET', `/v1/deliveries/${id}`)).body.state === 'finished', 60_000, 'the send to finish');
    const metrics = async () => (await fetch(`${platform.url}/metrics`)).text();
    expect(sample(await metrics(), 'herald_engine_threads')).toBe(1);
    // The figures come with the engine's heartbeat (every 2 s).
    await until(async () => (sample(await metrics(), 'herald_engine_messages') ?? 0) >= 30, 10_000, 'the engine messages counted');
    for (const name of ['herald_engine_batches', 'herald_engine_in_flight_batches', 'herald_engine_limit_share']) {
      expect(sample(await metrics(), name)).toBeDefined();
    }
  });
});
