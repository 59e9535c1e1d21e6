// The control plane's factory: its services over one store and one clock. The repositories are
// the SQL ones unless given (unit tests pass in-memory fakes); what the control plane does not
// own (the links of a content, which the channels' renderer knows) is given as a value.
import type { Clock } from './clock.js';
import type { Repositories } from './repositories/index.js';
import { AudiencesService } from './services/audiences.service.js';
import { BouncesService } from './services/bounces.service.js';
import { CommandDeduplicator } from './services/commands.service.js';
import { ConfirmationsService } from './services/confirmations.service.js';
import { ControlPlaneContext, type ControlPlaneSettings, type Store } from './services/context.js';
import { DeliveriesService } from './services/deliveries.service.js';
import { EngineRegistryService } from './services/engine-registry.service.js';
import { HealthService } from './services/health.service.js';
import { LogsService } from './services/logs.service.js';
import { ProfilesService } from './services/profiles.service.js';
import { SchedulerService } from './services/scheduler.service.js';
import { SendingService } from './services/sending.service.js';
import { TrackingService } from './services/tracking.service.js';

export interface ControlPlaneOptions {
  /** The links of an HTML content, in order (those a click token may point to): fixed at preparation. */
  extractLinks: (html: string) => string[];
  /** The repositories; the SQL ones by default. */
  repositories?: Repositories;
}

export class ControlPlane {
  private readonly context: ControlPlaneContext;
  readonly profiles: ProfilesService;
  readonly audiences: AudiencesService;
  readonly deliveries: DeliveriesService;
  readonly confirmations: ConfirmationsService;
  readonly scheduler: SchedulerService;
  readonly bounces: BouncesService;
  readonly tracking: TrackingService;
  readonly logs: LogsService;
  readonly sending: SendingService;
  readonly engines: EngineRegistryService;
  readonly health: HealthService;

  constructor(store: Store, clock: Clock, settings: ControlPlaneSettings, options: ControlPlaneOptions) {
    this.context = new ControlPlaneContext(store, clock, settings, options.repositories);
    this.profiles = new ProfilesService(this.context);
    this.audiences = new AudiencesService(this.context);
    this.deliveries = new DeliveriesService(this.context, options.extractLinks);
    this.confirmations = new ConfirmationsService(this.context);
    this.scheduler = new SchedulerService(this.context, this.deliveries);
    this.bounces = new BouncesService(this.context, settings.softBounces);
    this.tracking = new TrackingService(this.context);
    this.logs = new LogsService(this.context);
    this.sending = new SendingService(this.context, this.deliveries);
    this.engines = new EngineRegistryService(this.context);
    this.health = new HealthService(this.context);
  }

  /** The clock the control plane reads (a manual one in tests and simulations). */
  get clock(): Clock {
    return this.context.clock;
  }

  /** Applies each command at most once for `consumer` (commands are delivered at least once). */
  commandDeduplicator(consumer: string): CommandDeduplicator {
    return new CommandDeduplicator(this.context, consumer);
  }
}
