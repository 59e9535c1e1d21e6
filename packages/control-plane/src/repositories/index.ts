// The repositories, private to the control plane: rows in, domain objects out. Services are
// their only callers; the control plane's factory creates the SQL ones (unit tests pass fakes).
import { AudiencesRepository } from './audiences.repository.js';
import { AuditRepository } from './audit.repository.js';
import { ConfirmationsRepository } from './confirmations.repository.js';
import { DeliveriesRepository } from './deliveries.repository.js';
import { EngineInstancesRepository } from './engine-instances.repository.js';
import { HealthRepository } from './health.repository.js';
import { LedgerRepository } from './ledger.repository.js';
import { OutboxRepository } from './outbox.repository.js';
import { ProfilesRepository } from './profiles.repository.js';
import { SendQueueRepository } from './send-queue.repository.js';

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
    profiles: new ProfilesRepository(),
    audiences: new AudiencesRepository(),
    deliveries: new DeliveriesRepository(),
    confirmations: new ConfirmationsRepository(),
    audit: new AuditRepository(),
    outbox: new OutboxRepository(),
    ledger: new LedgerRepository(),
    sendQueue: new SendQueueRepository(),
    engines: new EngineInstancesRepository(),
    health: new HealthRepository(),
  };
}
