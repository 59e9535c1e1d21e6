// Every controller the gateway serves: the module mounts them and the OpenAPI document is built
// from their routes.
import type { Type } from '@nestjs/common';
import { ConfirmationsController } from './confirmations.controller.js';
import { DeliveriesController } from './deliveries.controller.js';
import { DeploymentController } from './deployment.controller.js';
import { OpsController } from './ops.controller.js';
import { ProfilesController } from './profiles.controller.js';
import { SystemController } from './system.controller.js';
import { TrackingController } from './tracking.controller.js';
import { WebhooksController } from './webhooks.controller.js';

export const CONTROLLERS: readonly Type[] = [
  SystemController,
  ProfilesController,
  DeliveriesController,
  ConfirmationsController,
  DeploymentController,
  TrackingController,
  WebhooksController,
  OpsController,
];
