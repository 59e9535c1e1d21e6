// What `herald start|gateway|engine` prints once every component is up: where each part runs,
// and, with a gateway, two dev tokens. Tests and the `--engines` parent read it (e.g. the
// "Health, metrics:" line of an engine process), so its lines keep their wording.
import { join, resolve } from 'node:path';
import type { HeraldConfig } from '@herald/config';
import type { Gateway } from '@herald/gateway';
import type { EngineProcess } from './engine-processes.js';

export type Role = 'all' | 'gateway' | 'engine';

/** What a role runs once it is up. */
export interface RunningRole {
  role: Role;
  config: HeraldConfig;
  storeKind: 'pglite' | 'postgres';
  /** Whether the bus is shared across processes (Kafka) rather than this process's own. */
  busShared: boolean;
  /** The base of the links in messages. */
  publicUrl: string;
  gateway?: { url: string; tokens: Gateway['tokens']; roles: readonly string[] };
  kpiBackend?: 'chdb' | 'server';
  /** The send engine runs in this process. */
  engineInProcess: boolean;
  /** An engine process's own server (health and metrics). */
  engineServerUrl?: string;
  engineProcesses: readonly EngineProcess[];
  /** The capture sink's SMTP URL, when mail goes to it (no SMTP_URL). */
  captureSinkUrl?: string;
}

export async function banner(running: RunningRole): Promise<string> {
  const { role, config, gateway, captureSinkUrl } = running;
  const home = resolve(config.HERALD_HOME);
  const lines = [`Herald is up (${role === 'all' ? 'all roles' : role}).`];
  if (gateway) lines.push(`  API:              ${gateway.url}`, `  API docs:         ${gateway.url}/docs`);
  lines.push(`  Links in mail:    ${running.publicUrl}`);
  lines.push(`  Store:            ${running.storeKind === 'pglite' ? `PGlite in ${resolve(config.HERALD_HOME, 'pglite')}` : 'PostgreSQL (DATABASE_URL)'}`);
  lines.push(
    `  Bus:              ${running.busShared ? `Kafka (${config.KAFKA_BROKERS}${config.KAFKA_TOPIC_PREFIX ? `, topics prefixed '${config.KAFKA_TOPIC_PREFIX}'` : ''})` : 'in-process'}`,
  );
  if (running.kpiBackend) lines.push(`  KPI store:        ${running.kpiBackend === 'chdb' ? `chDB in ${join(home, 'clickhouse')}` : 'ClickHouse (CLICKHOUSE_URL)'}`);
  const sendingTo = captureSinkUrl ? `the capture sink at ${captureSinkUrl}` : config.SMTP_URL;
  if (running.engineInProcess) lines.push(`  Engine:           ${config.ENGINE_THREADS} worker threads, sending to ${sendingTo}`);
  if (running.engineServerUrl) lines.push(`  Health, metrics:  ${running.engineServerUrl}/health/ready, ${running.engineServerUrl}/metrics`);
  for (const [i, child] of running.engineProcesses.entries()) {
    lines.push(`  Engine ${i + 1}:         pid ${child.pid}, ${config.ENGINE_THREADS} worker threads, metrics at ${child.url}/metrics`);
  }
  if (running.engineProcesses.length > 0) lines.push(`                    sending to ${sendingTo}`);
  if (captureSinkUrl) lines.push(`  Captured mail:    ${join(home, 'mail')} (bounce rules: mail/rules.json)`);
  if (gateway) {
    const operator = await gateway.tokens.sign({ sub: 'operator', name: 'Dev operator', roles: [...gateway.roles] });
    const preparer = await gateway.tokens.sign({
      sub: 'preparer',
      name: 'Dev preparer',
      roles: gateway.roles.filter((r) => r !== 'delivery:start' && r !== 'admin'),
    });
    lines.push(
      '',
      'Dev tokens (valid 30 days):',
      '  every role (operator):',
      `    export HERALD_TOKEN=${operator}`,
      '  every role except delivery:start (preparer):',
      `    export HERALD_TOKEN_NO_START=${preparer}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
