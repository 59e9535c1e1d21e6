// Command-line entry points. `herald start` runs every role in one process on the embedded
// defaults (PGlite, in-process bus); `herald gateway` runs the gateway alone.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { type Bus, busFromEnv, KafkaBus } from '@herald/bus';
import { ConfigError, type HeraldConfig, loadConfig } from '@herald/config';
import { type CaptureSink, startCaptureSink } from '@herald/capture-sink';
import {
  ControlPlane,
  type Database,
  type HeldLock,
  migrate,
  OutboxRelay,
  OutboxRepository,
  openDatabase,
  type PlatformSettings,
  PlatformSettingsError,
  resolvePlatformSettings,
  systemClock,
} from '@herald/control-plane';
import { type Engine, type EngineServer, engineFromConfig, outboxPublishedCounter, registerEngineMetrics, startEngineServer } from '@herald/engine';
import { dlqTopic, TOPICS } from '@herald/contracts';
import { KpiConsumer, recoverPublishedEvents, repairAfterRestart } from '@herald/kpi-consumer';
import { type KpiStore, openKpiStore } from '@herald/kpi-store';
import type { Gateway } from '@herald/gateway';
import { type Logger, pino } from 'pino';
import { commandList, commandUsage, isCommand, type ParsedCommand, parseCommand, UsageError } from './commands.js';

// NOTE: the gateway (NestJS, Fastify, Swagger UI) is imported only by the commands that run or
// sign for it: an engine process does not carry it (~70 MiB of RSS).
const gatewayModule = () => import('@herald/gateway');

const usage = async () => `Usage: herald <command> [options]   (herald <command> --help for one command)

Commands:
${commandList()}

Environment: HERALD_HOME (default ./.herald), PORT (8080), DATABASE_URL (PostgreSQL; PGlite when unset),
HERALD_JWT_SECRET, CONFIRMATION_TTL (10m), SCHEDULE_STALENESS (1h). See README.md for all of them.
Roles: ${(await gatewayModule()).ROLES.join(', ')}`;

export async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    console.log(await usage());
    return command === undefined ? 1 : 0;
  }
  if (!isCommand(command)) {
    console.error(`herald: unknown command '${command}'\n\n${await usage()}`);
    return 2;
  }
  try {
    const parsed = parseCommand(command, rest);
    if (parsed === 'help') {
      console.log(commandUsage(command));
      return 0;
    }
    switch (command) {
      case 'start':
        return await serve(loadConfig(), 'all', startOptions(parsed));
      case 'gateway':
        return await serve(loadConfig(), 'gateway');
      case 'engine':
        return await serve(loadConfig(), 'engine');
      case 'token':
        return await token(loadConfig(), parsed);
      case 'migrate':
        return await migrateCommand(loadConfig());
      case 'dlq':
        return await dlqCommand(loadConfig(), parsed);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`herald ${command}: ${error.message}${error.command ? `\n\n${commandUsage(error.command)}` : ''}`);
      return 2;
    }
    if (error instanceof ConfigError || error instanceof PlatformSettingsError || error instanceof StartRefusedError) {
      console.error(`herald: ${error.message}`);
      return 2;
    }
    const { code, address, port } = error as { code?: string; address?: string; port?: number };
    if (code === 'EADDRINUSE') {
      console.error(`herald: ${address}:${port} is already in use; set PORT to a free port (or 0 for any free one).`);
      return 1;
    }
    throw error;
  }
}

async function openStore(config: HeraldConfig): Promise<Database> {
  const db = await openDatabase({ url: config.DATABASE_URL, dataDir: join(resolve(config.HERALD_HOME), 'pglite') });
  await migrate(db);
  return db;
}

async function migrateCommand(config: HeraldConfig): Promise<number> {
  const db = await openStore(config);
  console.log(`migrations applied (${db.kind === 'pglite' ? `PGlite in ${resolve(config.HERALD_HOME)}` : 'PostgreSQL'})`);
  await db.close();
  return 0;
}

async function token(config: HeraldConfig, { values }: ParsedCommand): Promise<number> {
  const { user, roles: roleList, name, expires } = values as { user?: string; roles?: string; name?: string; expires: string };
  if (!user || roleList === undefined) {
    throw new UsageError('--user and --roles are required, e.g. herald token --user alice --roles delivery:start,delivery:view', 'token');
  }
  const { createTokenService, isRole, ROLES } = await gatewayModule();
  const roles = roleList.split(',').map((r) => r.trim()).filter(Boolean);
  const unknown = roles.filter((r) => !isRole(r));
  if (unknown.length > 0) {
    console.error(`herald token: unknown role(s) ${unknown.join(', ')}; roles are ${ROLES.join(', ')}`);
    return 2;
  }
  if (config.HERALD_JWKS_URL) {
    console.error('herald token: HERALD_JWKS_URL is set, so tokens come from your identity provider, not from herald.');
    return 2;
  }
  // The platform's secret: the store's on PostgreSQL (opened for this), HERALD_HOME's on the
  // embedded store (which `herald start` may hold open: PGlite serves one process).
  const db = config.DATABASE_URL ? await openStore(config) : undefined;
  try {
    const { secrets } = await resolvePlatformSettings(config, db, (message) => console.error(`herald token: ${message}`));
    console.log(await createTokenService({ secret: secrets.jwt }).sign({ sub: user, name, roles }, expires));
  } finally {
    await db?.close();
  }
  return 0;
}

type Role = 'all' | 'gateway' | 'engine';

function startOptions({ values }: ParsedCommand): { engines: number } {
  const engines = values.engines === undefined ? 0 : Number(values.engines);
  if (!Number.isInteger(engines) || engines < 0 || engines > 64) throw new UsageError(`--engines takes a whole number from 0 to 64, not '${values.engines}'`, 'start');
  return { engines };
}

async function serve(config: HeraldConfig, role: Role, options: { engines?: number } = {}): Promise<number> {
  if (role === 'engine' && !config.DATABASE_URL) {
    console.error('herald engine: set DATABASE_URL (PostgreSQL); the embedded PGlite store serves one process, so use `herald start` instead.');
    return 2;
  }
  const engineProcesses = options.engines ?? 0;
  if (engineProcesses > 0 && (!config.KAFKA_BROKERS || !config.DATABASE_URL)) {
    console.error(
      'herald start --engines: engine processes share the work through Kafka and PostgreSQL; set KAFKA_BROKERS and DATABASE_URL ' +
        '(infra/kafka/start.sh and infra/postgres/start.sh start local ones).',
    );
    return 2;
  }
  mkdirSync(config.HERALD_HOME, { recursive: true });
  const logger = pino({ level: config.LOG_LEVEL }, pino.destination(2));
  const db = await openStore(config);
  // Once per process, before anything starts: an engine that would sign links no gateway can
  // verify, or point them nowhere, refuses to start (PlatformSettingsError, exit code 2).
  let settings: PlatformSettings;
  let enginePublicUrl: string | undefined;
  // A gateway keeps the KPIs of every message event: one KPI store for all of them.
  let kpiLock: HeldLock | undefined;
  try {
    settings = await resolvePlatformSettings(config, db, (message) => logger.warn(message));
    if (role === 'engine') enginePublicUrl = await settings.publicUrl();
    else kpiLock = await holdKpiStoreLock(db, config, logger);
  } catch (error) {
    await db.close();
    throw error;
  }
  // KAFKA_BROKERS switches every role to Kafka; unset, the in-process bus of the embedded default.
  const bus: Bus = busFromEnv(config, { onHandlerError: (error, topic, group) => logger.warn({ err: error, topic, group }, 'consumer failed; will retry') });

  let sink: CaptureSink | undefined;
  let gateway: Gateway | undefined;
  let engine: Engine | undefined;
  let engineServer: EngineServer | undefined;
  let smtpUrl = config.SMTP_URL;
  if (role !== 'gateway' && !smtpUrl) {
    // With engine processes, this one sink serves them all.
    const mailDir = join(resolve(config.HERALD_HOME), 'mail');
    sink = await startCaptureSink({ dir: mailDir, rulesFile: join(mailDir, 'rules.json') });
    smtpUrl = sink.url;
  }
  // The KPI store (chDB under HERALD_HOME, or CLICKHOUSE_URL) and its consumer live beside the gateway.
  let kpi: KpiStore | undefined;
  let kpiConsumer: KpiConsumer | undefined;
  if (role !== 'engine') {
    kpi = openKpiStore(config.CLICKHOUSE_URL ? { url: config.CLICKHOUSE_URL } : { dataDir: join(resolve(config.HERALD_HOME), 'clickhouse') });
    await kpi.migrate();
    // The in-process bus dies with the process: events it held are read back from the outbox
    // (with Kafka the broker kept them, and this finds none missing).
    const outbox = new OutboxRepository();
    const recovery = await recoverPublishedEvents(
      kpi,
      { publishedSince: (since, after, limit) => outbox.publishedSince(db, TOPICS.messageEvents, since, after, limit) },
      logger,
    );
    // A kill between an insert and its views' parts left counters short (or doubled): reconcile
    // the deliveries of the same window with their raw events, before this consumer inserts anything.
    await repairAfterRestart(kpi, recovery.since, logger);
    kpiConsumer = new KpiConsumer(bus, kpi, logger);
    await kpiConsumer.start();
  }
  if (role !== 'engine') gateway = await (await gatewayModule()).startGateway({ config, db, bus, logger, kpi, kpiConsumer, settings });
  // Engine processes read the gateway's public URL (just published) and the secrets from the store.
  const children = engineProcesses > 0 ? await startEngineProcesses(engineProcesses, config, { SMTP_URL: smtpUrl! }, logger) : [];
  if (role !== 'gateway' && engineProcesses === 0) {
    const controlPlane =
      gateway?.controlPlane ??
      new ControlPlane(db, systemClock, {
        confirmationTtlMs: config.CONFIRMATION_TTL,
        scheduleStalenessMs: config.SCHEDULE_STALENESS,
        recurrenceMaxPending: config.RECURRENCE_MAX_PENDING,
        softBounces: { threshold: config.QUARANTINE_SOFT_BOUNCES, resetAfterMs: config.QUARANTINE_SOFT_RESET },
      });
    engine = engineFromConfig(config, {
      bus,
      controlPlane,
      logger,
      smtpUrl: smtpUrl!,
      publicUrl: gateway?.publicUrl ?? enginePublicUrl!,
      trackingSecret: settings.secrets.tracking,
    });
    await engine.start();
    if (role === 'engine') engineServer = await startEngineServer(engine, { port: config.PORT, host: config.HOST });
    // With every role in one process, the gateway's /metrics carries the engine's figures.
    else if (gateway) registerEngineMetrics(engine, gateway.metrics.registry);
  }
  // The engine's message events leave through the outbox. A process without a gateway relays them
  // itself onto a shared bus (Kafka); on the in-process bus it must not: what it published would
  // reach no KPI consumer (that is in the gateway's process, which relays the shared outbox).
  const relay =
    gateway?.relay ??
    (bus.sharedAcrossProcesses
      ? new OutboxRelay(db, bus, systemClock, (error) => logger.warn({ err: error }, 'outbox relay failed; retrying'), engineServer && outboxPublishedCounter(engineServer.registry))
      : undefined);
  if (!gateway) relay?.start(config.OUTBOX_RELAY_INTERVAL, { retentionMs: config.OUTBOX_RETENTION });

  const lines = [`Herald is up (${role === 'all' ? 'all roles' : role}).`];
  if (gateway) lines.push(`  API:              ${gateway.url}`, `  API docs:         ${gateway.url}/docs`);
  lines.push(`  Links in mail:    ${gateway?.publicUrl ?? enginePublicUrl}`);
  lines.push(`  Store:            ${db.kind === 'pglite' ? `PGlite in ${resolve(config.HERALD_HOME, 'pglite')}` : 'PostgreSQL (DATABASE_URL)'}`);
  lines.push(`  Bus:              ${bus instanceof KafkaBus ? `Kafka (${config.KAFKA_BROKERS}${config.KAFKA_TOPIC_PREFIX ? `, topics prefixed '${config.KAFKA_TOPIC_PREFIX}'` : ''})` : 'in-process'}`);
  if (kpi) lines.push(`  KPI store:        ${kpi.backend === 'chdb' ? `chDB in ${join(resolve(config.HERALD_HOME), 'clickhouse')}` : 'ClickHouse (CLICKHOUSE_URL)'}`);
  if (engine) lines.push(`  Engine:           ${config.ENGINE_THREADS} worker threads, sending to ${sink ? `the capture sink at ${sink.url}` : config.SMTP_URL}`);
  if (engineServer) lines.push(`  Health, metrics:  ${engineServer.url}/health/ready, ${engineServer.url}/metrics`);
  for (const [i, child] of children.entries()) {
    lines.push(`  Engine ${i + 1}:         pid ${child.pid}, ${config.ENGINE_THREADS} worker threads, metrics at ${child.url}/metrics`);
  }
  if (children.length > 0) lines.push(`                    sending to ${sink ? `the capture sink at ${sink.url}` : config.SMTP_URL}`);
  if (sink) lines.push(`  Captured mail:    ${join(resolve(config.HERALD_HOME), 'mail')} (bounce rules: mail/rules.json)`);
  if (gateway) {
    const { ROLES } = await gatewayModule();
    const operator = await gateway.tokens.sign({ sub: 'operator', name: 'Dev operator', roles: [...ROLES] });
    const preparer = await gateway.tokens.sign({
      sub: 'preparer',
      name: 'Dev preparer',
      roles: ROLES.filter((r) => r !== 'delivery:start' && r !== 'admin'),
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
  console.log(`${lines.join('\n')}\n`);

  await new Promise<void>((resolveStop) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down: finishing the work in hand (a second signal exits at once)');
      // A second signal does not wait: what this process held goes back to the others once its heartbeat is stale.
      const now = (again: string) => {
        logger.warn({ signal: again }, 'second signal: exiting without finishing the work in hand');
        process.exit(1);
      };
      process.once('SIGINT', () => now('SIGINT'));
      process.once('SIGTERM', () => now('SIGTERM'));
      resolveStop();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  // Order matters: stop taking work, let batches in hand settle, then close the store.
  await gateway?.close();
  await Promise.all(children.map((child) => child.stop()));
  await engineServer?.close();
  await engine?.stop();
  await relay?.stop();
  await relay?.drain().catch(() => undefined);
  await kpiConsumer?.stop();
  await bus.close();
  await kpi?.close();
  await kpiLock?.release();
  await sink?.close();
  await db.close();
  return 0;
}

/** A process that must not run beside the ones already running: refused with the reason, exit code 2. */
class StartRefusedError extends Error {}

/** Advisory lock of the gateways' KPI stores on one control-plane store ("HERK"). */
const KPI_STORE_LOCK = 0x4845_524b;

/**
 * Each gateway's KPI consumer takes part of the message events (a consumer group shares them):
 * with chDB under each gateway's HERALD_HOME, each would count only its part. A gateway on the
 * embedded KPI store holds this lock exclusively, one on a ClickHouse server (CLICKHOUSE_URL)
 * shares it with the others: any other mix is refused.
 */
async function holdKpiStoreLock(db: Database, config: HeraldConfig, logger: Logger): Promise<HeldLock> {
  const embedded = !config.CLICKHOUSE_URL;
  const lock = await db.holdAdvisoryLock(KPI_STORE_LOCK, {
    shared: !embedded,
    onLost: (error) => logger.error({ err: error }, 'lost the connection holding the KPI store lock (one gateway per embedded KPI store); taking it again'),
  });
  if (lock) return lock;
  if (!embedded) {
    throw new StartRefusedError(
      'a gateway with the embedded KPI store (chDB) runs on this control-plane store: it and this one would each count part of the message events, splitting the KPIs. ' +
        'Stop it, and set CLICKHOUSE_URL (the same ClickHouse server) for every gateway.',
    );
  }
  const holders = await db.query<{ mode: string }>("SELECT mode FROM pg_locks WHERE locktype = 'advisory' AND objid::bigint = $1 AND granted", [KPI_STORE_LOCK]);
  if (holders.length > 0 && holders.every((h) => h.mode === 'ShareLock')) {
    throw new StartRefusedError(
      'gateways with CLICKHOUSE_URL run on this control-plane store: this one, on the embedded KPI store (chDB), would count part of the message events in its own chDB, splitting the KPIs. ' +
        'Set CLICKHOUSE_URL here too.',
    );
  }
  throw new StartRefusedError(
    'another gateway with the embedded KPI store (chDB) already runs on this control-plane store: each gateway counts the part of the message events its KPI consumer takes, ' +
      'in its own chDB, so each would show only part of the KPIs. Run one gateway, or, for several, set CLICKHOUSE_URL (one ClickHouse server) for every gateway.',
  );
}

interface EngineProcess {
  pid: number;
  url: string;
  stop(): Promise<void>;
}

/**
 * `herald start --engines N`: N `herald engine` processes, each on its own port (PORT + 1 + i,
 * or a free one when PORT is 0) and the same store, bus and SMTP server (the public URL of
 * their links and the secrets come from the store, as for any engine). They are told to stop
 * with the parent (SIGTERM: each finishes the batches in hand) and their logs join the parent's.
 */
async function startEngineProcesses(count: number, config: HeraldConfig, shared: { SMTP_URL: string }, logger: Logger): Promise<EngineProcess[]> {
  const bin = process.argv[1]!;
  const started: EngineProcess[] = [];
  for (let i = 0; i < count; i++) {
    const port = config.PORT === 0 ? 0 : config.PORT + 1 + i;
    const child = spawn(process.execPath, [bin, 'engine'], {
      env: { ...process.env, PORT: String(port), ...shared },
      stdio: ['ignore', 'pipe', 'inherit'],
      // Its own process group: Ctrl-C reaches only this parent, which stops the engines with one
      // SIGTERM each (a terminal's SIGINT and then ours would be a second signal: exit at once).
      detached: true,
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let stopping = false;
    let stdout = '';
    const up = await new Promise<string>((resolve, reject) => {
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        const url = /Health, metrics:\s+(\S+)\/health\/ready/.exec(stdout)?.[1];
        if (url) resolve(url);
      });
      void exited.then((code) => reject(new Error(`engine process ${i + 1} exited (${code}) before it was up:\n${stdout}`)));
    });
    void exited.then((code) => {
      if (!stopping) logger.error({ engine: i + 1, pid: child.pid, code }, 'an engine process exited; its work goes to the others once its heartbeat is stale');
    });
    started.push({
      pid: child.pid!,
      url: up,
      async stop() {
        stopping = true;
        if (child.exitCode === null) child.kill('SIGTERM');
        await exited;
      },
    });
  }
  return started;
}

/**
 * `herald dlq replay <topic>`: the messages <topic>.dlq holds when the command starts go back to
 * <topic>, with their key. Messages that reach the DLQ meanwhile (a message still poison comes
 * right back) are left for the next replay.
 */
async function dlqCommand(config: HeraldConfig, { values, positionals }: ParsedCommand): Promise<number> {
  const [action, topic] = positionals;
  if (action !== 'replay' || !topic) throw new UsageError(action === undefined || action === 'replay' ? 'name the topic to replay' : `unknown action '${action}'`, 'dlq');
  if (!config.KAFKA_BROKERS) throw new UsageError('the DLQ lives on Kafka; set KAFKA_BROKERS (the in-process bus keeps nothing after its process).');
  const limit = values.limit === undefined ? Number.POSITIVE_INFINITY : Number(values.limit);
  if (!(limit > 0)) throw new UsageError(`--limit takes a positive number, not '${values.limit}'`, 'dlq');
  const bus = busFromEnv(config) as KafkaBus;
  const dlq = dlqTopic(topic);
  await bus.ensureTopics([topic, dlq]);
  const ends = await bus.endOffsets(dlq);
  let replayed = 0;
  const subscription = await bus.subscribe({
    topic: dlq,
    group: 'dlq-replay',
    // One at a time: nothing past the end (or the limit) is acknowledged without being replayed.
    maxBatchSize: 1,
    handler: async ([message]) => {
      if (!message || message.offset >= (ends.get(message.partition) ?? 0) || replayed >= limit) {
        throw new Error('past what this replay takes: left in the DLQ');
      }
      const entry = message.value as { key?: string; value?: unknown } | null;
      await bus.publish(topic, [{ key: entry?.key ?? message.key, value: entry && 'value' in entry ? entry.value : message.value }]);
      replayed++;
    },
  });
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    if (replayed >= limit || (await bus.lag(dlq, 'dlq-replay', ends)) === 0) break;
  }
  await subscription.close();
  await bus.close();
  console.log(`replayed ${replayed} message(s) from ${dlq} to ${topic}`);
  return 0;
}
