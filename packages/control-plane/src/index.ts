// The control plane: deliveries, profiles, audiences and their lifecycle, behind its services.
// Public: the services (ControlPlane) and their types, the database opener and migrations, the
// clock, errors, the lifecycle rules, the input schemas the gateway validates with, platform
// settings and the outbox relay. Private: the repositories (the services are their only callers)
// and every SQL statement.
export * from './clock.js';
export { type Database, type DatabaseOptions, type HeldLock, openDatabase, type Queryable, type Transaction } from './database.js';
export * from './errors.js';
export * from './lifecycle.js';
export * from './migrate.js';
export * from './platform-settings.js';
export * from './schemas.js';
export * from './time.js';
export { ControlPlane, type ControlPlaneOptions } from './control-plane.js';
export type { ControlPlaneSettings, Store } from './services/context.js';
export { type Actor, ENGINE_ACTOR, SYSTEM_ACTOR } from './services/transitions.js';
export type { AudiencesService, MembersResult } from './services/audiences.service.js';
export { type BounceResult, type BouncesService, DEFAULT_SOFT_BOUNCE_RULE } from './services/bounces.service.js';
export type { CommandDeduplicator } from './services/commands.service.js';
export type { ConfirmationsService, ConfirmationTicket, OkResult } from './services/confirmations.service.js';
export { type DeliveriesService, type DeliveryPage, type DeliveryView, type OccurrenceView, scheduledInstant } from './services/deliveries.service.js';
export { ENGINE_HEARTBEAT_MS, ENGINE_LATE_MS, ENGINE_STALE_MS, type EngineRegistryService, type EngineStatus } from './services/engine-registry.service.js';
export type { HealthService } from './services/health.service.js';
export type { LogPage, LogsService } from './services/logs.service.js';
export { OUTBOX_PUBLISHED_METRIC, OutboxRelay, PublishedMessages } from './services/outbox-relay.js';
export { type ImportFormat, type ImportResult, importFormat, type ProfilesService, type RejectedRow } from './services/profiles.service.js';
export { DEFAULT_RECURRENCE_MAX_PENDING, type SchedulerService, type TickReport } from './services/scheduler.service.js';
export type { RunSnapshot, SendingService, Settlement } from './services/sending.service.js';
export type { Interaction, TrackedMessage, TrackingService } from './services/tracking.service.js';
// The domain objects the services take and give (types only).
export type { Audience } from './repositories/audiences.repository.js';
export type { AuditRecord } from './repositories/audit.repository.js';
export type { Confirmation, ConfirmationSummary, ProjectedFinishBasis, SummaryWarning } from './repositories/confirmations.repository.js';
export type { Delivery, Occurrence, Preparation } from './repositories/deliveries.repository.js';
export type { ChannelProvider, EngineInstance, ReapResult } from './repositories/engine-instances.repository.js';
export type { ExclusionReason, ExclusionRecord, FrozenRecipients, LedgerEntry } from './repositories/ledger.repository.js';
export type { OutboxCursor } from './repositories/outbox.repository.js';
export type { Profile, ProfileStatus, SoftBounceRule } from './repositories/profiles.repository.js';
export type {
  Claim,
  DomainOutcomeCount,
  ExcludedAtSend,
  LedgerStatus,
  Outcome,
  ProfileMessage,
  Progress,
  QueuedRecipient,
  RunRef,
  SendTimeExclusionReason,
} from './repositories/send-queue.repository.js';
