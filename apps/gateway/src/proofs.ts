// Proofs: a delivery rendered exactly as recipients will get it, with a subject prefix, sent to
// a few addresses. They go straight to the engine's send batches and never touch the ledger,
// the message events or the KPIs.
import { randomUUID } from 'node:crypto';
import type { Bus } from '@herald/bus';
import { type SendBatch, TOPICS } from '@herald/contracts';
import { type Actor, type ControlPlane, DomainError, type ProofRequest } from '@herald/control-plane';

export const DEFAULT_PROOF_PREFIX = '[Proof] ';

export async function sendProof(cp: ControlPlane, bus: Bus, deliveryId: string, request: ProofRequest, actor: Actor) {
  const delivery = await cp.deliveries.get(deliveryId);
  if (delivery.channel !== 'email') throw new DomainError('INVALID_STATE', 'Proofs are sent for email deliveries.');
  let profile: Record<string, unknown> = {};
  if (request.profileId) {
    const found = await cp.profiles.get(request.profileId);
    profile = { ...found };
  }
  const proofId = randomUUID();
  const batch: SendBatch = {
    batchId: `proof:${proofId}`,
    deliveryId,
    occurrence: 0,
    recipients: request.to.map((address, i) => ({ profileId: `proof-${proofId}-${i}`, address, profile })),
    proof: { proofId, subjectPrefix: request.subjectPrefix ?? DEFAULT_PROOF_PREFIX, requestedBy: actor.id },
  };
  await bus.publish(TOPICS.sendBatches, [{ key: batch.batchId, value: batch }]);
  return { proofId, deliveryId, to: request.to, subjectPrefix: batch.proof!.subjectPrefix, state: 'queued' };
}
