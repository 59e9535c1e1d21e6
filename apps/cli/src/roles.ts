// The composition root of every serving role: `herald start` (all roles in one process),
// `herald gateway` and `herald engine` are each built here from the validated configuration,
// as one list of components started in order and stopped in reverse (see lifecycle.ts).
//
// Start order, and why:
//   control-plane store (opened, migrated) → platform settings (secrets, and an engine's public
//   URL: resolved here, once per process) → KPI store lock (a gateway) → bus → capture sink →
//   KPI store (migrated) → event journal (on the in-process bus) → KPI recovery at start → KPI
//   consumer → the outbox relay's last drain → gateway → engine processes, or the engine → its
//   metrics server (an engine process) → outbox relay (an engine process on a shared bus).
// Stopped in reverse: the engines stop taking work and finish the batches in hand while the
// gateway still serves (and its relay carries their events); then the gateway; then one last
// drain of the outbox relay publishes what they wrote, and the KPI consumer flushes it before
// the stores close.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Bus, busFromEnv, type ConsumerIncident } from '@herald/bus';
import type { HeraldConfig } from '@herald/config';
import { type CaptureSink, startCaptureSink } from '@herald/capture-sink';
import { extractLinks } from '@herald/channels';
import { TOPICS } from '@herald/contracts';
import { ControlPlane, OutboxRelay, PublishedMessages, resolvePlatformSettings, systemClock } from '@herald/control-plane';
import { type Engine, type EngineServer, engineFromConfig, outboxPublishedCounter, registerEngineMetrics, startEngineServer } from '@herald/engine';
import type { Gateway } from '@herald/gateway';
import { EventJournal, KpiConsumer, recoverPublishedEvents, repairAfterRestart } from '@herald/kpi-consumer';
import { type KpiStore, openKpiStore } from '@herald/kpi-store';
import { type Logger, pino } from 'pino';
import { banner, type Role } from './banner.js';
import { type EngineProcess, startEngineProcesses } from './engine-processes.js';
import { gatewayModule } from './gateway-module.js';
import { holdKpiStoreLock } from './kpi-store-lock.js';
import { type Component, firstStopSignal, Lifecycle, type Part, part } from './lifecycle.js';
import { openStore } from './store.js';

export type { Role } from './banner.js';

export interface RoleOptions {
  /** `herald start --engines N`: the engine runs as N child processes instead of in this process. */
  engines?: number;
}

/** A role's components, in start order, and what it prints once they are up. */
export interface RoleComposition {
  components: Component[];
  banner(): Promise<string>;
}

/** Builds the components of `role`; nothing starts until they are started, in order. */
export function composeRole(config: HeraldConfig, role: Role, options: RoleOptions, logger: Logger): RoleComposition {
  const home = resolve(config.HERALD_HOME);
  const engineProcesses = options.engines ?? 0;
  const withGateway = role !== 'engine';
  const withEngineHere = role !== 'gateway' && engineProcesses === 0;
  const warn = (message: string) => logger.warn(message);
  const components: Component[] = [];
  const add = <T>(component: Part<T>): Part<T> => {
    components.push(component);
    return component;
  };

  const store = add(part('control-plane store', () => openStore(config), (db) => db.close()));
  // Once per process, before anything starts: an engine that would sign links no gateway can
  // verify, or point them nowhere, refuses to start (PlatformSettingsError, exit code 2).
  const settings = add(part('platform settings', () => resolvePlatformSettings(config, store.value, warn)));
  const enginePublicUrl = role === 'engine' ? add(part('public URL of the links', () => settings.value.publicUrl())) : undefined;
  // A gateway keeps the KPIs of every message event: one KPI store for all of them.
  if (withGateway) add(part('KPI store lock', () => holdKpiStoreLock(store.value, config, logger), (lock) => lock.release()));
  // KAFKA_BROKERS switches every role to Kafka; unset, the in-process bus of the embedded default.
  const bus = add(
    part(
      'bus',
      (): Bus => busFromEnv(config, { onIncident: (incident) => logIncident(logger, incident) }),
      (bus) => bus.close(),
    ),
  );
  // Without SMTP_URL, mail goes to the capture sink under HERALD_HOME (with engine processes, this one serves them all).
  let sink: Part<CaptureSink> | undefined;
  if (role !== 'gateway' && !config.SMTP_URL) {
    const mailDir = join(home, 'mail');
    sink = add(part('capture sink', () => startCaptureSink({ dir: mailDir, rulesFile: join(mailDir, 'rules.json') }), (sink) => sink.close()));
  }
  const smtpUrl = () => sink?.value.url ?? config.SMTP_URL!;

  // The KPI store (chDB under HERALD_HOME, or CLICKHOUSE_URL) and its consumer live beside the gateway.
  let kpi: Part<KpiStore> | undefined;
  let kpiConsumer: Part<KpiConsumer> | undefined;
  let journal: Part<EventJournal | undefined> | undefined;
  if (withGateway) {
    kpi = add(part('KPI store', () => openMigratedKpiStore(config, home), (kpi) => kpi.close()));
    const kpiStore = kpi;
    // The opens and clicks the gateway publishes straight onto the in-process bus are journaled
    // first under HERALD_HOME (a broker keeps them itself).
    journal = add(
      part(
        'tracking event journal',
        () => (bus.value.sharedAcrossProcesses ? undefined : new EventJournal(join(home, 'event-journal'), config.OUTBOX_RETENTION)),
        (journal) => journal?.close(),
      ),
    );
    const eventJournal = journal;
    add(
      part('KPI recovery', async () => {
        // The in-process bus dies with the process: events it held are read back from the outbox
        // and the journal (with Kafka the broker kept them, and this finds none missing).
        const recovery = await recoverPublishedEvents(kpiStore.value, new PublishedMessages(store.value, TOPICS.messageEvents), logger, {
          journal: eventJournal.value,
        });
        // A kill between an insert and its views' parts left counters short (or doubled): reconcile
        // the deliveries of the same window with their raw events, before this consumer inserts anything.
        await repairAfterRestart(kpiStore.value, recovery.since, logger);
      }),
    );
    kpiConsumer = add(
      part(
        'KPI consumer',
        async () => {
          const consumer = new KpiConsumer(bus.value, kpiStore.value, logger);
          await consumer.start();
          return consumer;
        },
        (consumer) => consumer.stop(),
      ),
    );
  }

  // The engine's message events leave through the outbox. A process without a gateway relays them
  // itself onto a shared bus (Kafka); on the in-process bus it must not: what it published would
  // reach no KPI consumer (that is in the gateway's process, which relays the shared outbox).
  let gateway: Part<Gateway> | undefined;
  let engineRelay: Part<OutboxRelay | undefined> | undefined;
  // Stopped after the engines and the gateway: publishes what they wrote on their way out.
  add(
    part('outbox relay, last drain', noop, async () => {
      const relay = gateway?.started ? gateway.value.relay : engineRelay?.started ? engineRelay.value : undefined;
      await relay?.stop();
      await relay?.drain().catch(() => undefined);
    }),
  );
  if (withGateway) {
    const kpiStore = kpi;
    const consumer = kpiConsumer;
    gateway = add(
      part(
        'gateway',
        async () =>
          (await gatewayModule()).startGateway({
            config,
            db: store.value,
            bus: bus.value,
            logger,
            kpi: kpiStore?.value,
            kpiConsumer: consumer?.value,
            settings: settings.value,
            eventJournal: journal?.value,
          }),
        (gateway) => gateway.close(),
      ),
    );
  }
  const publicUrl = () => (gateway ? gateway.value.publicUrl : enginePublicUrl!.value);

  // Engine processes read the gateway's public URL (just published) and the secrets from the store.
  let children: Part<EngineProcess[]> | undefined;
  if (engineProcesses > 0) {
    children = add(
      part(
        'engine processes',
        () => startEngineProcesses(engineProcesses, config, { SMTP_URL: smtpUrl() }, logger),
        (children) => Promise.all(children.map((child) => child.stop())).then(noop),
      ),
    );
  }
  let engine: Part<Engine> | undefined;
  let engineServer: Part<EngineServer> | undefined;
  if (withEngineHere) {
    const withGatewayHere = gateway;
    engine = add(
      part(
        'engine',
        async () => {
          const controlPlane =
            withGatewayHere?.value.controlPlane ??
            new ControlPlane(
              store.value,
              systemClock,
              {
                confirmationTtlMs: config.CONFIRMATION_TTL,
                scheduleStalenessMs: config.SCHEDULE_STALENESS,
                recurrenceMaxPending: config.RECURRENCE_MAX_PENDING,
                softBounces: { threshold: config.QUARANTINE_SOFT_BOUNCES, resetAfterMs: config.QUARANTINE_SOFT_RESET },
              },
              { extractLinks },
            );
          const started = engineFromConfig(config, {
            bus: bus.value,
            controlPlane,
            logger,
            smtpUrl: smtpUrl(),
            publicUrl: publicUrl(),
            trackingSecret: settings.value.secrets.tracking,
          });
          await started.start();
          // With every role in one process, the gateway's /metrics carries the engine's figures.
          if (withGatewayHere) registerEngineMetrics(started, withGatewayHere.value.metrics.registry);
          return started;
        },
        (engine) => engine.stop(),
      ),
    );
    if (role === 'engine') {
      const running = engine;
      engineServer = add(
        part(
          'engine metrics server',
          () => startEngineServer(running.value, { port: config.PORT, host: config.HOST }),
          (server) => server.close(),
        ),
      );
      const server = engineServer;
      engineRelay = add(
        part(
          'outbox relay',
          () => {
            if (!bus.value.sharedAcrossProcesses) return undefined;
            const relay = new OutboxRelay(
              store.value,
              bus.value,
              systemClock,
              (error) => logger.warn({ err: error }, 'outbox relay failed; retrying'),
              outboxPublishedCounter(server.value.registry),
            );
            relay.start(config.OUTBOX_RELAY_INTERVAL, { retentionMs: config.OUTBOX_RETENTION });
            return relay;
          },
          (relay) => relay?.stop(),
        ),
      );
    }
  }

  return {
    components,
    banner: async () =>
      banner({
        role,
        config,
        storeKind: store.value.kind,
        busShared: bus.value.sharedAcrossProcesses,
        publicUrl: publicUrl(),
        gateway: gateway && { url: gateway.value.url, tokens: gateway.value.tokens, roles: (await gatewayModule()).ROLES },
        kpiBackend: kpi?.value.backend,
        engineInProcess: engine !== undefined,
        engineServerUrl: engineServer?.value.url,
        engineProcesses: children?.value ?? [],
        captureSinkUrl: sink?.value.url,
      }),
  };
}

/** Runs `role` until SIGINT or SIGTERM: 0 when every component stopped cleanly, 1 when one did not, 2 for a configuration it refuses. */
export async function serve(config: HeraldConfig, role: Role, options: RoleOptions = {}): Promise<number> {
  if (role === 'engine' && !config.DATABASE_URL) {
    console.error('herald engine: set DATABASE_URL (PostgreSQL); the embedded PGlite store serves one process, so use `herald start` instead.');
    return 2;
  }
  if ((options.engines ?? 0) > 0 && (!config.KAFKA_BROKERS || !config.DATABASE_URL)) {
    console.error(
      'herald start --engines: engine processes share the work through Kafka and PostgreSQL; set KAFKA_BROKERS and DATABASE_URL ' +
        '(infra/kafka/start.sh and infra/postgres/start.sh start local ones).',
    );
    return 2;
  }
  mkdirSync(config.HERALD_HOME, { recursive: true });
  const logger = pino({ level: config.LOG_LEVEL }, pino.destination(2));
  const composition = composeRole(config, role, options, logger);
  const lifecycle = new Lifecycle(composition.components, ({ component, error }) => logger.error({ err: error, component }, `${component} failed to stop`));
  // A start that fails has stopped what it started: the error says why (run() turns it into the exit code).
  await lifecycle.start();
  try {
    console.log(await composition.banner());
  } catch (error) {
    await lifecycle.stop();
    throw error;
  }
  await firstStopSignal(logger);
  const failures = await lifecycle.stop();
  return failures.length === 0 ? 0 : 1;
}

async function openMigratedKpiStore(config: HeraldConfig, home: string): Promise<KpiStore> {
  const kpi = openKpiStore(config.CLICKHOUSE_URL ? { url: config.CLICKHOUSE_URL } : { dataDir: join(home, 'clickhouse') });
  try {
    await kpi.migrate();
  } catch (error) {
    await kpi.close().catch(() => undefined);
    throw error;
  }
  return kpi;
}

function noop(): void {}

/** A message the bus retries, dead-letters or drops: a warning (a drop, which a handler chose: info). */
function logIncident(logger: Logger, { error, outcome, reason, ...incident }: ConsumerIncident): void {
  const what = outcome === 'retry' ? 'consumer failed; will retry' : outcome === 'dlq' ? 'message(s) sent to the DLQ' : 'message(s) dropped';
  logger[outcome === 'drop' ? 'info' : 'warn']({ ...(error === undefined ? {} : { err: error }), ...incident, reason }, what);
}
