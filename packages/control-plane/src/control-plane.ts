// One object that wires the control plane's services over one database and one clock.
import type { Clock } from './clock.js';
import type { Database } from './database.js';
import { AudiencesService } from './services/audiences.service.js';
import { BouncesService } from './services/bounces.service.js';
import { ConfirmationsService } from './services/confirmations.service.js';
import { ControlPlaneContext, type ControlPlaneSettings } from './services/context.js';
import { DeliveriesService } from './services/deliveries.service.js';
import { ProfilesService } from './services/profiles.service.js';
import { SchedulerService } from './services/scheduler.service.js';

export class ControlPlane {
  readonly context: ControlPlaneContext;
  readonly profiles: ProfilesService;
  readonly audiences: AudiencesService;
  readonly deliveries: DeliveriesService;
  readonly confirmations: ConfirmationsService;
  readonly scheduler: SchedulerService;
  readonly bounces: BouncesService;

  constructor(
    readonly db: Database,
    clock: Clock,
    settings: ControlPlaneSettings,
  ) {
    this.context = new ControlPlaneContext(db, clock, settings);
    this.profiles = new ProfilesService(this.context);
    this.audiences = new AudiencesService(this.context);
    this.deliveries = new DeliveriesService(this.context);
    this.confirmations = new ConfirmationsService(this.context);
    this.scheduler = new SchedulerService(this.context, this.deliveries);
    this.bounces = new BouncesService(this.context, settings.softBounces);
  }
}
