// Builds an engine from Herald's configuration: the SMTP relay (or the capture sink's URL),
// the platform's public URL and tracking secret (shared with the gateway), DKIM, limits and
// retry policy.
import { existsSync, readFileSync } from 'node:fs';
import type { Bus } from '@herald/bus';
import type { HeraldConfig } from '@herald/config';
import { type ControlPlane, systemClock } from '@herald/control-plane';
import type { Logger } from 'pino';
import { channelProviders } from './channel-providers.js';
import { Engine } from './engine.js';

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
  deps: {
    bus: Bus;
    controlPlane: ControlPlane;
    logger: Logger;
    smtpUrl: string;
    /** The base of the links in messages (PlatformSettings.publicUrl, or the gateway's of this process). */
    publicUrl: string;
    /** The platform's tracking secret (PlatformSecrets.tracking): the gateway verifies the links with it. */
    trackingSecret: string;
  },
): Engine {
  // Without SMTP_URL, `herald` points the engine at its capture sink.
  const channels = channelProviders({ smtpUrl: deps.smtpUrl, httpProviderUrl: config.HTTP_PROVIDER_URL }, { captureSink: !config.SMTP_URL });
  return new Engine({
    channels,
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
      publicUrl: deps.publicUrl,
      trackingSecret: deps.trackingSecret,
      httpProviderUrl: config.HTTP_PROVIDER_URL,
      dkim: dkimOf(config),
    },
  });
}
