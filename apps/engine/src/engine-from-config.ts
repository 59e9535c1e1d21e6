// Builds an engine from Herald's configuration: the SMTP relay (or the capture sink's URL),
// the tracking secret shared with the gateway, DKIM, limits and retry policy.
import { existsSync, readFileSync } from 'node:fs';
import type { Bus } from '@herald/bus';
import { ensureSecret, type HeraldConfig } from '@herald/config';
import { type ControlPlane, systemClock } from '@herald/control-plane';
import type { Logger } from 'pino';
import { Engine } from './engine.js';

/** Where the links in messages point: PUBLIC_URL, else the gateway this process serves (`gatewayUrl`), else HOST:PORT. */
export function publicUrlOf(config: HeraldConfig, gatewayUrl?: string): string {
  return (config.PUBLIC_URL ?? gatewayUrl ?? `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${config.PORT}`).replace(/\/$/, '');
}

export function trackingSecretOf(config: HeraldConfig): string {
  return ensureSecret(config.HERALD_HOME, 'tracking-secret', config.HERALD_TRACKING_SECRET);
}

function dkimOf(config: HeraldConfig) {
  if (!config.DKIM_DOMAIN && !config.DKIM_SELECTOR && !config.DKIM_PRIVATE_KEY) return undefined;
  if (!config.DKIM_DOMAIN || !config.DKIM_SELECTOR || !config.DKIM_PRIVATE_KEY) {
    throw new Error('DKIM needs all of DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY');
  }
  const key = config.DKIM_PRIVATE_KEY.includes('-----BEGIN') ? config.DKIM_PRIVATE_KEY : existsSync(config.DKIM_PRIVATE_KEY) ? readFileSync(config.DKIM_PRIVATE_KEY, 'utf8') : undefined;
  if (!key) throw new Error(`DKIM_PRIVATE_KEY is neither a PEM key nor a readable file: ${config.DKIM_PRIVATE_KEY}`);
  return { domainName: config.DKIM_DOMAIN, keySelector: config.DKIM_SELECTOR, privateKey: key };
}

export function engineFromConfig(
  config: HeraldConfig,
  deps: { bus: Bus; controlPlane: ControlPlane; logger: Logger; smtpUrl: string; /** The gateway of this process, when it runs one (its real port when PORT is 0). */ gatewayUrl?: string },
): Engine {
  return new Engine({
    db: deps.controlPlane.db,
    bus: deps.bus,
    controlPlane: deps.controlPlane,
    clock: systemClock,
    logger: deps.logger,
    threads: config.ENGINE_THREADS,
    workerHeapMb: config.ENGINE_WORKER_HEAP_MB,
    batchSize: config.ENGINE_BATCH_SIZE,
    domainLimits: config.ENGINE_DOMAIN_LIMITS,
    retry: { retryDelayMs: config.ENGINE_RETRY_DELAY, validityMs: config.ENGINE_VALIDITY },
    breaker: {
      firstWave: config.ENGINE_BREAKER_FIRST_WAVE,
      hardBounceRate: config.ENGINE_BREAKER_HARD_BOUNCE_RATE,
      domain4xxRate: config.ENGINE_BREAKER_DOMAIN_4XX_RATE,
      minSample: config.ENGINE_BREAKER_MIN_SAMPLE,
    },
    worker: {
      smtpUrl: deps.smtpUrl,
      smtpConnections: config.ENGINE_SMTP_CONNECTIONS,
      smtpTimeoutMs: config.SMTP_TIMEOUT,
      smtpIdleTimeoutMs: config.SMTP_IDLE_TIMEOUT,
      publicUrl: publicUrlOf(config, deps.gatewayUrl),
      trackingSecret: trackingSecretOf(config),
      httpProviderUrl: config.HTTP_PROVIDER_URL,
      dkim: dkimOf(config),
    },
  });
}
