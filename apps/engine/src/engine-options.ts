// What an engine is built from: its bus and control plane (the store is behind its services), its
// worker pool's size and settings, and the send rules' settings (retries, breaker, per-domain limits).
import type { Bus } from '@herald/bus';
import type { DomainLimit } from '@herald/config';
import type { ChannelProvider, Clock, ControlPlane } from '@herald/control-plane';
import type { BreakerSettings, RetryPolicy } from '@herald/sending';
import type { Logger } from 'pino';
import type { WorkerSettings } from './send-task.js';

export interface EngineOptions {
  bus: Bus;
  controlPlane: ControlPlane;
  clock: Clock;
  logger: Logger;
  threads: number;
  /** V8 old-generation limit of each worker thread. */
  workerHeapMb: number;
  batchSize: number;
  worker: WorkerSettings;
  domainLimits: DomainLimit[];
  retry: RetryPolicy;
  breaker: BreakerSettings;
  /** What this engine registers it can send (default: from `worker`'s SMTP and sms provider URLs). */
  channels?: ChannelProvider[];
}
