// Proofs: a proof goes out like the real message, with its subject prefix, and leaves no trace
// in the ledger or the KPIs. Its links are kept with it (from the very content rendered), so
// they redirect even before the delivery is prepared, or after its content changed.
import { extractLinks } from '@herald/channels';
import type { SendBatch } from '@herald/contracts';
import type { Piscina } from 'piscina';
import type { EngineOptions } from './engine-options.js';
import type { RunStates } from './run-state.js';
import type { SendTask, SendTaskResult } from './send-task.js';

export class ProofSender {
  constructor(
    private readonly options: Pick<EngineOptions, 'controlPlane' | 'logger'>,
    private readonly runs: RunStates,
    private readonly pool: Piscina,
  ) {}

  /** Sends a proof batch through the pool and logs each recipient's answer. */
  async send(batch: SendBatch): Promise<void> {
    const info = await this.runs.get(batch.deliveryId, batch.occurrence, true);
    if (!info) return;
    const delivery = info.delivery;
    const proofId = batch.proof!.proofId;
    await this.options.controlPlane.tracking.saveProofLinks({ proofId, deliveryId: delivery.id }, delivery.content.html ? extractLinks(delivery.content.html) : []);
    const result = (await this.pool.run({
      deliveryId: batch.deliveryId,
      occurrence: batch.occurrence,
      contentKey: `${delivery.id}:${delivery.version}:proof`,
      channel: delivery.channel,
      content: delivery.content,
      subjectPrefix: batch.proof!.subjectPrefix,
      proofId,
      recipients: batch.recipients.map((r) => ({ profileId: r.profileId, address: r.address, profile: r.profile ?? {}, notBefore: 0 })),
    } satisfies SendTask)) as SendTaskResult;
    for (const attempt of result.attempts) {
      this.options.logger.info(
        { proofId: batch.proof!.proofId, deliveryId: batch.deliveryId, to: attempt.address, ok: attempt.ok, code: attempt.code, response: attempt.response },
        'proof sent',
      );
    }
  }
}
