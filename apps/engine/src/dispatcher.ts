// The dispatcher: takes each send batch from the bus, claims its recipients (a redelivered
// batch finds nothing to claim; recipients suppressed since preparation are settled as
// excluded, with their events, in the claim's transaction), gives back to the ledger those
// whose throttle slot is far (no attempt spent), sends the others as one task on the worker
// pool (with a cancellation flag for its run), then settles the outcomes, quarantines and
// message events in one transaction and lets the circuit breaker observe them.
// A batch for a run no longer sending, or arriving while the engine stops, is released unsent.
import { ok, type MessageResult } from '@herald/bus';
import type { SendBatch } from '@herald/contracts';
import type { RunRef } from '@herald/control-plane';
import { classify, type ClassifiedOutcome, eventsFor, excludedEvent, PROVIDER_ANSWER_INVALID, type Throttles } from '@herald/sending';
import type { Piscina } from 'piscina';
import type { EngineOptions } from './engine-options.js';
import type { InFlightBatches } from './in-flight.js';
import type { ProofSender } from './proofs.js';
import type { EngineStats } from './registry.js';
import type { RunBreaker } from './run-breaker.js';
import type { RunCancellations } from './run-cancellations.js';
import { runKey, type RunStates } from './run-state.js';
import type { SendTask, SendTaskResult } from './send-task.js';

export class Dispatcher {
  constructor(
    private readonly options: Pick<EngineOptions, 'bus' | 'clock' | 'logger' | 'controlPlane' | 'worker' | 'retry'>,
    /** This process's id on the ledger rows it claims. */
    private readonly instanceId: string,
    private readonly parts: {
      pool: Piscina;
      runs: RunStates;
      inFlight: InFlightBatches;
      throttles: Throttles;
      cancellations: RunCancellations;
      breaker: RunBreaker;
      proofs: ProofSender;
      stats: EngineStats;
      stopping: () => boolean;
    },
  ) {}

  /**
   * Dispatches each batch (the bus checked it against the SendBatch contract). A failure throws:
   * the bus delivers the batch again, and past its retry budget puts it in the DLQ; recipients
   * of it still queued then go back to pending once queued too long (registry.ts).
   */
  async onSendBatches(batches: SendBatch[]): Promise<MessageResult> {
    for (const batch of batches) {
      try {
        await this.dispatch(batch);
      } finally {
        this.parts.inFlight.done();
      }
    }
    return ok();
  }

  /** Claims the batch's recipients, sends them through the pool, settles outcomes and events. */
  private async dispatch(batch: SendBatch): Promise<void> {
    if (batch.proof) return this.parts.proofs.send(batch);
    const { clock, logger } = this.options;
    const { sending } = this.options.controlPlane;
    const { runs, throttles, stats, breaker } = this.parts;
    const run = { deliveryId: batch.deliveryId, occurrence: batch.occurrence };
    const ids = batch.recipients.map((r) => r.profileId);
    const info = await runs.get(run.deliveryId, run.occurrence);
    if (info?.state !== 'sending' || this.parts.stopping()) {
      await sending.release(run, ids, clock.now());
      return;
    }
    if (info.delivery.channel === 'sms' && !this.options.worker.httpProviderUrl) {
      // Nothing can be sent: say so once, in the run's state, rather than fail each message.
      await sending.release(run, ids, clock.now());
      const reason = 'CHANNEL_NOT_CONFIGURED: this engine cannot send sms: HTTP_PROVIDER_URL is not set (set it and restart the engine, then resume)';
      if (await sending.pause(run, reason)) {
        logger.warn({ ...run }, 'sms run paused: no sms provider configured');
        runs.forget(run.deliveryId, run.occurrence);
      }
      return;
    }
    const delivery = info.delivery;
    // Suppression is checked again in the claim; the recipients it excludes are settled with
    // their 'excluded' events in the same transaction, so a crash cannot separate the two.
    const claimedAt = clock.now();
    const { toSend: claimed, excluded } = await sending.claim(run, ids, claimedAt, this.instanceId, (suppressed) =>
      suppressed.map((e) => excludedEvent(e, run, delivery.channel, claimedAt)),
    );
    if (excluded.length > 0) logger.info({ ...run, excluded: excluded.length }, 'recipients suppressed since preparation were not sent');
    const recipients = batch.recipients.filter((r) => claimed.has(r.profileId));
    if (recipients.length === 0) return;
    const slots = throttles.schedule(
      runKey(run.deliveryId, run.occurrence),
      delivery.throughput?.perHour ?? null,
      recipients.map((r) => ({ id: r.profileId, address: r.address })),
      Date.now(),
    );
    // A recipient whose slot is past the horizon does not wait in a worker thread (it would hold
    // up the others): back to the ledger until its slot, no attempt spent.
    const later = recipients.flatMap((r, i) => (slots[i]!.later ? [{ profileId: r.profileId, dueAt: new Date(slots[i]!.requeueAt) }] : []));
    if (later.length > 0) await sending.unclaim(run, later, clock.now());
    // The others, those due now first: a lane waits for a send time only behind earlier ones.
    const due = recipients
      .map((r, i) => ({ profileId: r.profileId, address: r.address, profile: r.profile ?? { id: r.profileId }, notBefore: slots[i]!.at, later: slots[i]!.later }))
      .filter((r) => !r.later)
      .sort((a, b) => a.notBefore - b.notBefore)
      .map(({ later: _, ...r }) => r);
    if (due.length === 0) return;
    const task: SendTask = {
      deliveryId: run.deliveryId,
      occurrence: run.occurrence,
      contentKey: `${delivery.id}:${delivery.contentHash}`,
      channel: delivery.channel,
      content: delivery.content,
      recipients: due,
    };
    const result = await this.runTask(run, task);
    const unreadable = result.attempts.find((a) => a.errorCode === PROVIDER_ANSWER_INVALID);
    if (unreadable) {
      logger.warn({ ...run, messages: result.attempts.filter((a) => a.errorCode === PROVIDER_ANSWER_INVALID).length, answer: unreadable.response }, 'the sms provider answered outside its contract; those messages are in doubt');
    }
    const now = clock.now();
    const outcomes: (ClassifiedOutcome & { address: string })[] = result.attempts.map((attempt) => {
      const counts = claimed.get(attempt.profileId) ?? { attempts: 1, firstAttemptAt: now };
      return { ...classify(attempt, counts.attempts, counts.firstAttemptAt, now, this.options.retry), address: attempt.address };
    });
    await sending.settle(
      run,
      {
        outcomes,
        notAttempted: result.notAttempted,
        hardBounced: outcomes.filter((o) => o.kind === 'hard').map((o) => o.profileId),
        // A soft bounce given up after the validity period counts toward the soft-bounce quarantine.
        softBouncedFinal: outcomes.filter((o) => o.kind === 'soft_final').map((o) => o.profileId),
        events: outcomes.flatMap((o) => eventsFor(o, run, delivery.channel, now)),
      },
      now,
    );
    stats.batches++;
    stats.messages += outcomes.length;
    await breaker.observe(run, info, outcomes);
  }

  /** Runs a task in the pool with a cancellation flag registered for its run. */
  private async runTask(run: RunRef, task: SendTask): Promise<SendTaskResult> {
    const { cancel, release } = this.parts.cancellations.register(run);
    try {
      return (await this.parts.pool.run({ ...task, cancel } satisfies SendTask)) as SendTaskResult;
    } finally {
      release();
    }
  }
}
