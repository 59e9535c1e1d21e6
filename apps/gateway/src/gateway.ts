// Builds and starts the gateway: NestJS on Fastify over one control plane, with the outbox
// relay and the scheduler running beside it when asked.
import 'reflect-metadata';
import { type DynamicModule, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { Bus } from '@herald/bus';
import { extractLinks } from '@herald/channels';
import type { HeraldConfig } from '@herald/config';
import { type Clock, ControlPlane, type Database, OutboxRelay, type PlatformSettings, systemClock } from '@herald/control-plane';
import type { KpiStore } from '@herald/kpi-store';
import type { Logger } from 'pino';
import { AuthGuard } from './auth/auth.guard.js';
import { createTokenService, type TokenService } from './auth/tokens.js';
import { CONTROLLERS } from './controllers/index.js';
import { registerBodyParsers } from './http/body-parsers.js';
import { registerRateLimit } from './http/rate-limit.js';
import { ErrorFilter } from './http/error.filter.js';
import { Metrics } from './http/metrics.js';
import { declaredRoutes } from './http/route.js';
import type { KpiPipeline } from './kpi-pipeline.js';
import { openApiDocument } from './openapi.js';
import { BUS, CONTROL_PLANE, KPI_PIPELINE, KPI_STORE, METRICS, OPENAPI_DOCUMENT, TOKEN_SERVICE, TRACKING_EVENTS, TRACKING_SECRET, WEBHOOK_SECRET } from './tokens.js';
import { type EventJournal, TrackingEvents } from './tracking-events.js';

export interface GatewayOptions {
  config: HeraldConfig;
  db: Database;
  bus: Bus;
  logger: Logger;
  clock?: Clock;
  tokens?: TokenService;
  /** Run the outbox relay in this process (default true). */
  relay?: boolean;
  /** The KPI store the Deployment block reads (absent: deployment and compute-stats answer 409). */
  kpi?: KpiStore;
  /**
   * The KPI consumer of this process, if any: Compute stats asks it to insert what it holds and
   * what the bus has for it before refreshing the rates, and reconciles the counters between two
   * of its flushes.
   */
  kpiConsumer?: { catchUp(): Promise<boolean>; betweenFlushes<T>(work: () => Promise<T>): Promise<T> };
  /** Run the scheduler loop in this process (default true). */
  scheduler?: boolean;
  /** The platform's settings (secrets, public URL) as this process resolved them, once, at its start. */
  settings: PlatformSettings;
  /**
   * Where opens and clicks are written before the bus carries them: needed on the in-process bus
   * (it loses what it holds with the process; the KPI recovery reads the journal back).
   */
  eventJournal?: EventJournal;
}

export interface Gateway {
  app: NestFastifyApplication;
  controlPlane: ControlPlane;
  relay: OutboxRelay;
  tokens: TokenService;
  metrics: Metrics;
  /** The base URL the gateway listens on, e.g. http://127.0.0.1:8080. */
  url: string;
  /** The base of the links in messages: PUBLIC_URL, else `url` (published for the engine processes). */
  publicUrl: string;
  close(): Promise<void>;
}

/** What the controllers are given. */
interface GatewayProviders {
  controlPlane: ControlPlane;
  bus: Bus;
  tokens: TokenService;
  metrics: Metrics;
  secrets: { tracking: string; webhook: string };
  kpi: KpiStore | null;
  kpiPipeline: KpiPipeline;
  trackingEvents: TrackingEvents;
}

@Module({})
class GatewayModule {
  static register(p: GatewayProviders): DynamicModule {
    return {
      module: GatewayModule,
      controllers: [...CONTROLLERS],
      providers: [
        { provide: CONTROL_PLANE, useValue: p.controlPlane },
        { provide: BUS, useValue: p.bus },
        { provide: TRACKING_SECRET, useValue: p.secrets.tracking },
        { provide: TRACKING_EVENTS, useValue: p.trackingEvents },
        { provide: WEBHOOK_SECRET, useValue: p.secrets.webhook },
        { provide: KPI_STORE, useValue: p.kpi },
        { provide: KPI_PIPELINE, useValue: p.kpiPipeline },
        { provide: TOKEN_SERVICE, useValue: p.tokens },
        { provide: METRICS, useValue: p.metrics },
        { provide: OPENAPI_DOCUMENT, useFactory: openApiDocument },
        AuthGuard,
      ],
    };
  }
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const controlPlane = new ControlPlane(
    options.db,
    clock,
    {
      confirmationTtlMs: config.CONFIRMATION_TTL,
      scheduleStalenessMs: config.SCHEDULE_STALENESS,
      recurrenceMaxPending: config.RECURRENCE_MAX_PENDING,
      softBounces: { threshold: config.QUARANTINE_SOFT_BOUNCES, resetAfterMs: config.QUARANTINE_SOFT_RESET },
    },
    { extractLinks },
  );
  const { settings } = options;
  const { secrets } = settings;
  const tokens = options.tokens ?? createTokenService({ secret: secrets.jwt, jwksUrl: config.HERALD_JWKS_URL });
  const metrics = new Metrics();
  const adapter = new FastifyAdapter({ bodyLimit: config.BODY_LIMIT_BYTES, return503OnClosing: true, routerOptions: { maxParamLength: 1000 } });
  const relay = new OutboxRelay(
    options.db,
    options.bus,
    clock,
    (error) => logger.warn({ err: error }, 'outbox relay failed; retrying'),
    (topic, messages) => metrics.outboxPublished.inc({ topic }, messages),
  );
  const kpiPipeline: KpiPipeline = {
    async catchUp() {
      await relay.drain();
      if ((await options.kpiConsumer?.catchUp()) === false) {
        // The rates are refreshed anyway, over what the store has; countersAsOf tells how recent that is.
        logger.warn('Compute stats: the KPI consumer did not catch up with the bus within its time limit; the counters may lag');
      }
    },
    async reconcile(deliveryId) {
      const kpi = options.kpi;
      if (!kpi) return;
      const work = () => kpi.reconcile([deliveryId]);
      const { counters, hours } = await (options.kpiConsumer ? options.kpiConsumer.betweenFlushes(work) : work());
      if (counters.length + hours > 0) logger.warn({ deliveryId, counters, hours }, 'Compute stats repaired KPI counters that did not match the raw events');
    },
  };
  const trackingEvents = new TrackingEvents({
    controlPlane,
    bus: options.bus,
    clock,
    logger,
    metrics,
    linkTtlMs: config.TRACKING_LINK_TTL,
    journal: options.eventJournal,
  });
  const providers = { controlPlane, bus: options.bus, tokens, metrics, secrets, kpi: options.kpi ?? null, kpiPipeline, trackingEvents };
  const app = await NestFactory.create<NestFastifyApplication>(GatewayModule.register(providers), adapter, {
    bodyParser: false,
    logger: ['error', 'warn'],
    abortOnError: false,
  });
  await registerRateLimit(app, config.API_RATE_LIMIT);
  const fastify = app.getHttpAdapter().getInstance();
  const routes = declaredRoutes(CONTROLLERS);
  registerBodyParsers(
    fastify,
    { body: config.BODY_LIMIT_BYTES, import: config.IMPORT_BODY_LIMIT_BYTES },
    {
      streamed: routes.filter((route) => route.declaration.streamed).map((route) => route.path),
      raw: routes.filter((route) => route.declaration.signed).map((route) => route.path),
    },
  );
  fastify.addHook('onResponse', async (request, reply) => {
    metrics.httpDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  app.useGlobalFilters(new ErrorFilter(logger, metrics));
  await app.listen({ port: config.PORT, host: config.HOST });
  const address = fastify.server.address();
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  const url = `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${port}`;
  // Engine processes build their links from it (a gateway on another port or host: the last one started).
  const publicUrl = (config.PUBLIC_URL ?? url).replace(/\/$/, '');
  await settings.publishPublicUrl(publicUrl);

  if (options.relay !== false) relay.start(config.OUTBOX_RELAY_INTERVAL, { retentionMs: config.OUTBOX_RETENTION });

  let schedulerTimer: NodeJS.Timeout | undefined;
  let schedulerStopped = false;
  if (options.scheduler !== false) {
    const loop = async () => {
      try {
        const report = await controlPlane.scheduler.tick();
        if (report.started.length + report.paused.length + report.occurrences.length + report.expired.length + report.expiredOccurrences.length > 0) {
          logger.info({ ...report }, 'scheduler acted');
          await relay.drain();
        }
      } catch (error) {
        logger.warn({ err: error }, 'scheduler tick failed; retrying');
      }
      if (!schedulerStopped) schedulerTimer = setTimeout(loop, config.SCHEDULER_INTERVAL);
    };
    schedulerTimer = setTimeout(loop, 0);
  }

  return {
    app,
    controlPlane,
    relay,
    tokens,
    metrics,
    url,
    publicUrl,
    async close() {
      schedulerStopped = true;
      clearTimeout(schedulerTimer);
      await relay.stop();
      await app.close();
    },
  };
}
