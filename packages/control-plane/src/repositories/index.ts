// The repositories, private to the control plane: rows in, domain objects out. Services are
// their only callers; the control plane's factory creates the SQL ones (unit tests pass fakes).
import { type AudiencesRepository, SqlAudiencesRepository } from './audiences.repository.js';
import { type AuditRepository, SqlAuditRepository } from './audit.repository.js';
import { type ConfirmationsRepository, SqlConfirmationsRepository } from './confirmations.repository.js';
import { type DeliveriesRepository, SqlDeliveriesRepository } from './deliveries.repository.js';
import { type EngineInstancesRepository, SqlEngineInstancesRepository } from './engine-instances.repository.js';
import { type HealthRepository, SqlHealthRepository } from './health.repository.js';
import { type LedgerRepository, SqlLedgerRepository } from './ledger.repository.js';
import { type OutboxRepository, SqlOutboxRepository } from './outbox.repository.js';
import { type ProfilesRepository, SqlProfilesRepository } from './profiles.repository.js';
import { type SendQueueRepository, SqlSendQueueRepository } from './send-queue.repository.js';

export interface Repositories {
  profiles: ProfilesRepository;
  audiences: AudiencesRepository;
  deliveries: DeliveriesRepository;
  confirmations: ConfirmationsRepository;
  audit: AuditRepository;
  outbox: OutboxRepository;
  ledger: LedgerRepository;
  sendQueue: SendQueueRepository;
  engines: EngineInstancesRepository;
  health: HealthRepository;
}

/** The repositories over SQL (PGlite or PostgreSQL). */
export function sqlRepositories(): Repositories {
  return {
    profiles: new SqlProfilesRepository(),
    audiences: new SqlAudiencesRepository(),
    deliveries: new SqlDeliveriesRepository(),
    confirmations: new SqlConfirmationsRepository(),
    audit: new SqlAuditRepository(),
    outbox: new SqlOutboxRepository(),
    ledger: new SqlLedgerRepository(),
    sendQueue: new SqlSendQueueRepository(),
    engines: new SqlEngineInstancesRepository(),
    health: new SqlHealthRepository(),
  };
}
