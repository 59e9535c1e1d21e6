// What the engine asks of the control plane, over in-memory repositories: batches and the first
// wave, claims that settle the suppressed with their events, outcomes settled with quarantines,
// soft-bounce counts and events together, recipients given back, the counts the planner paces by.
import { type MessageEvent, TOPICS } from '@herald/contracts';
import { ALICE, audienceOf, inMemoryControlPlane, liveEngine, people, started } from '../../test/services.js';
import type { QueuedRecipient, RunRef } from '../repositories/send-queue.repository.js';

const ENGINE = '00000000-0000-4000-8000-000000000001';

async function sending(count = 5) {
  const t = inMemoryControlPlane({ settings: { softBounces: { threshold: 1, resetAfterMs: 86_400_000 } } });
  await liveEngine(t.cp, ENGINE);
  const delivery = await started(t.cp, await audienceOf(t.cp, people(count)));
  const run: RunRef = { deliveryId: delivery.id, occurrence: 0 };
  return { ...t, delivery, run, now: new Date() };
}

const excludedEvents = (run: RunRef) => (excluded: { profileId: string; reason: string }[]) =>
  excluded.map((e) => ({ eventId: `x-${e.profileId}`, type: 'excluded', deliveryId: run.deliveryId, occurrence: 0, profileId: e.profileId, reason: e.reason }) as unknown as MessageEvent);

const events = (t: { data: { outbox: { topic: string; payload: unknown; fanout: boolean }[] } }) =>
  t.data.outbox.filter((row) => row.topic === TOPICS.messageEvents).map((row) => row.payload);

describe('SendingService', () => {
  it('lists the runs being sent and gives their snapshot, whose epoch changes with each resume', async () => {
    const t = await sending();
    expect(await t.cp.sending.sendingRuns()).toEqual([t.run]);
    const before = await t.cp.sending.run(t.delivery.id, 0);
    expect(before).toMatchObject({ state: 'sending', toSend: 5, delivery: { id: t.delivery.id } });
    await t.cp.deliveries.pause(t.delivery.id, ALICE);
    await t.cp.deliveries.resume(t.delivery.id, ALICE);
    expect((await t.cp.sending.run(t.delivery.id, 0))!.epoch).toBeGreaterThan(before!.epoch);
    expect(await t.cp.sending.run(t.delivery.id, 3)).toBeUndefined();
  });

  it('queues batches in profile order; the first wave is handed out up to its size, then held', async () => {
    const t = await sending();
    const firstWave = async () => t.cp.sending.queueFirstWave(t.run, { size: 2, wave: 3 }, t.now, ENGINE);
    const ids = (batch: QueuedRecipient[] | string) => (typeof batch === 'string' ? batch : batch.map((r) => r.profileId));
    expect(ids(await firstWave())).toEqual(['p1', 'p2']);
    expect(ids(await firstWave())).toEqual(['p3']);
    expect(await firstWave()).toBe('wave out');
    expect(await t.cp.sending.inFlightCount(t.run, t.now)).toBe(3);
    const next = await t.cp.sending.queueNext(t.run, 10, t.now, ENGINE);
    expect(next.map((r) => r.profileId)).toEqual(['p4', 'p5']);
    expect(next[0]).toMatchObject({ address: 'p4@example.com', attempts: 0, profile: { id: 'p4', firstName: 'P4' } });
    expect(await firstWave()).toBe('judged');
    expect(await t.cp.sending.hasUnsent(t.run)).toBe(true);
  });

  it('claims a batch: the suppressed since preparation are settled as excluded, with their events, the others sending', async () => {
    const t = await sending(3);
    await t.cp.sending.queueNext(t.run, 3, t.now, ENGINE);
    t.data.profiles.get('p2')!.status = 'unsubscribed';
    const claim = await t.cp.sending.claim(t.run, ['p1', 'p2', 'p3'], t.now, ENGINE, excludedEvents(t.run));
    expect([...claim.toSend.keys()]).toEqual(['p1', 'p3']);
    expect(claim.toSend.get('p1')).toEqual({ attempts: 1, firstAttemptAt: t.now });
    expect(claim.excluded).toEqual([{ profileId: 'p2', address: 'p2@example.com', reason: 'unsubscribed' }]);
    expect(events(t)).toEqual([[expect.objectContaining({ type: 'excluded', profileId: 'p2' })]]);
    expect((await t.cp.logs.exclusions(t.delivery.id, { limit: 10 })).map((e) => [e.profileId, e.stage])).toEqual([['p2', 'send']]);
    // A redelivered batch finds nothing to claim.
    expect((await t.cp.sending.claim(t.run, ['p1', 'p2', 'p3'], t.now, ENGINE, excludedEvents(t.run))).toSend.size).toBe(0);
  });

  it('settles outcomes, quarantines, soft-bounce counts and events in one transaction; gives back what was not attempted', async () => {
    const t = await sending(4);
    await t.cp.sending.queueNext(t.run, 4, t.now, ENGINE);
    await t.cp.sending.claim(t.run, ['p1', 'p2', 'p3', 'p4'], t.now, ENGINE, excludedEvents(t.run));
    const outcome = (profileId: string, status: 'sent' | 'bounced' | 'failed', code: number) => ({ profileId, status, code, error: status === 'sent' ? null : `${code}`, messageId: `<${profileId}@h>`, nextAttemptAt: null });
    await t.cp.sending.settle(
      t.run,
      {
        outcomes: [outcome('p1', 'sent', 250), outcome('p2', 'bounced', 550), outcome('p3', 'failed', 451)],
        notAttempted: ['p4'],
        hardBounced: ['p2'],
        softBouncedFinal: ['p3'],
        events: [{ eventId: 'e1' } as unknown as MessageEvent],
      },
      t.now,
    );
    expect(await t.cp.logs.progress(t.delivery.id, 0)).toMatchObject({ sent: 1, bounced: 1, failed: 1, pending: 1 });
    expect(t.data.ledger.get([t.delivery.id, 0, 'p4'].join('\u0000'))).toMatchObject({ attempts: 0, firstAttemptAt: null, engineId: null });
    expect([...t.data.profiles.values()].map((p) => p.status)).toEqual(['active', 'quarantined', 'quarantined', 'active']);
    expect(events(t).at(-1)).toEqual([{ eventId: 'e1' }]);
    expect(await t.cp.sending.outcomesByDomain(t.run)).toEqual(
      expect.arrayContaining([
        { domain: 'example.com', status: 'sent', codeClass: 2, count: 1, error: null },
        { domain: 'example.com', status: 'bounced', codeClass: 5, count: 1, error: '550' },
        { domain: 'example.com', status: 'failed', codeClass: 4, count: 1, error: '451' },
      ]),
    );
    expect(await t.cp.sending.isSettled(t.run)).toBe(false);
  });

  it('a settlement whose last write fails writes none of it', async () => {
    const t = await sending(2);
    await t.cp.sending.queueNext(t.run, 2, t.now, ENGINE);
    await t.cp.sending.claim(t.run, ['p1', 'p2'], t.now, ENGINE, excludedEvents(t.run));
    const before = JSON.stringify([[...t.data.ledger.values()], [...t.data.profiles.values()], t.data.outbox]);
    t.repositories.outbox.enqueueFanout = async () => {
      throw new Error('the store went away');
    };
    const settlement = {
      outcomes: [{ profileId: 'p1', status: 'bounced' as const, code: 550, error: '550', messageId: '<p1@h>', nextAttemptAt: null }],
      notAttempted: ['p2'],
      hardBounced: ['p1'],
      softBouncedFinal: [],
      events: [{ eventId: 'e1' } as unknown as MessageEvent],
    };
    await expect(t.cp.sending.settle(t.run, settlement, t.now)).rejects.toThrow('the store went away');
    expect(JSON.stringify([[...t.data.ledger.values()], [...t.data.profiles.values()], t.data.outbox])).toBe(before);
  });

  it('releases a batch not sent (pending again; stopped when the run was stopped) and paces retries', async () => {
    const t = await sending(2);
    await t.cp.sending.queueNext(t.run, 1, t.now, ENGINE);
    expect(await t.cp.sending.release(t.run, ['p1'], t.now)).toBe(1);
    expect(await t.cp.logs.progress(t.delivery.id, 0)).toMatchObject({ pending: 2 });
    await t.cp.sending.queueNext(t.run, 1, t.now, ENGINE);
    await t.cp.deliveries.stop(t.delivery.id, ALICE);
    expect(await t.cp.sending.release(t.run, ['p1'], t.now)).toBe(0); // the stop took it already
    expect(await t.cp.logs.progress(t.delivery.id, 0)).toMatchObject({ stopped: 2 });
    expect(await t.cp.sending.isSettled(t.run)).toBe(true);
  });

  it('unclaims recipients whose throttle slot is later: due then, their attempt not spent', async () => {
    const t = await sending(1);
    await t.cp.sending.queueNext(t.run, 1, t.now, ENGINE);
    await t.cp.sending.claim(t.run, ['p1'], t.now, ENGINE, excludedEvents(t.run));
    const later = new Date(t.now.getTime() + 60_000);
    expect(await t.cp.sending.unclaim(t.run, [{ profileId: 'p1', dueAt: later }], t.now)).toBe(1);
    expect(await t.cp.sending.nextRetryAt(t.run)).toEqual(later);
    expect(await t.cp.sending.queueNext(t.run, 1, t.now, ENGINE)).toEqual([]);
    expect((await t.cp.sending.queueNext(t.run, 1, later, ENGINE)).map((r) => r.attempts)).toEqual([0]);
  });

  it('counts in flight only what engines with an on-time heartbeat hold', async () => {
    const t = await sending(2);
    await t.cp.sending.queueNext(t.run, 2, t.now, ENGINE);
    expect(await t.cp.sending.inFlightCount(t.run, t.now)).toBe(2);
    expect(await t.cp.sending.inFlightCount(t.run, new Date(t.now.getTime() + 60_000))).toBe(0);
  });

  it('finishes or pauses a run as the engine, through the lifecycle', async () => {
    const t = await sending(1);
    expect(await t.cp.sending.pause(t.run, 'CIRCUIT_BREAKER', { domain: 'example.com' })).toBe(true);
    expect(await t.cp.sending.pausedByEngine(t.run)).toBe(true);
    expect(await t.cp.sending.finish(t.run)).toBe(false);
    await t.cp.deliveries.resume(t.delivery.id, ALICE);
    expect(await t.cp.sending.finish(t.run)).toBe(true);
    expect(t.data.audit.slice(-3).map((e) => `${e.actor}:${e.action}:${e.toState}`)).toEqual(['system:engine:pause:paused', 'alice:resume:sending', 'system:engine:finish:finished']);
  });
});
