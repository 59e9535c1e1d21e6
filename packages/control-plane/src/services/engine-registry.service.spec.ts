// The engines sharing a store, over in-memory repositories: registration and heartbeats, their
// status for operators, and the work of a dead engine requeued (at start, every other engine's
// on the embedded store, which serves one process).
import { audienceOf, inMemoryControlPlane, liveEngine, started } from '../../test/services.js';
import { ENGINE_LATE_MS, ENGINE_STALE_MS } from './engine-registry.service.js';

const A = '00000000-0000-4000-8000-00000000000a';
const B = '00000000-0000-4000-8000-00000000000b';

async function twoEngines(kind: 'pglite' | 'postgres' = 'postgres') {
  const t = inMemoryControlPlane({ kind });
  await liveEngine(t.cp, A);
  await liveEngine(t.cp, B);
  const delivery = await started(t.cp, await audienceOf(t.cp));
  const run = { deliveryId: delivery.id, occurrence: 0 };
  const now = new Date();
  await t.cp.sending.queueNext(run, 2, now, B); // B holds two recipients
  return { ...t, delivery, run, now };
}

describe('EngineRegistryService', () => {
  it('lists the engines with their figures: live, then stale once the heartbeat is late', async () => {
    const t = await twoEngines();
    expect(await t.cp.engines.heartbeat(A, { threads: 4 }, t.now)).toBe(true);
    const later = new Date(t.now.getTime() + ENGINE_LATE_MS + 1);
    await t.cp.engines.heartbeat(A, { threads: 4 }, later);
    expect((await t.cp.engines.list(later)).map((e) => [e.id, e.status, e.stats])).toEqual([
      [A, 'live', { threads: 4 }],
      [B, 'stale', {}],
    ]);
    expect((await t.cp.engines.live(later)).map((e) => e.id)).toEqual([A, B]);
  });

  it("requeues a dead engine's recipients and forgets it; a heartbeat of the forgotten engine says so", async () => {
    const t = await twoEngines();
    const later = new Date(t.now.getTime() + ENGINE_STALE_MS + 1);
    await t.cp.engines.heartbeat(A, {}, later);
    expect(await t.cp.engines.reapDead(A, later)).toEqual({ engines: [B], requeued: 2, inFlight: 0 });
    expect(await t.cp.logs.progress(t.delivery.id, 0)).toMatchObject({ pending: 3, queued: 0 });
    expect(await t.cp.engines.heartbeat(B, {}, later)).toBe(false);
  });

  it('at start on the embedded store, every other engine is dead: its work is requeued at once', async () => {
    const t = await twoEngines('pglite');
    // A moment after B's last heartbeat: on PostgreSQL, long before it would be dead.
    expect(await t.cp.engines.reapAtStart(A, new Date(t.now.getTime() + 1))).toMatchObject({ engines: [B], requeued: 2 });
    const onPostgres = await twoEngines('postgres');
    expect(await onPostgres.cp.engines.reapAtStart(A, new Date(onPostgres.now.getTime() + 1))).toMatchObject({ engines: [], requeued: 0 });
  });

  it('requeues recipients queued too long without a dispatcher; a deregistered engine is gone', async () => {
    const t = await twoEngines();
    expect(await t.cp.engines.requeueStaleQueued(60_000, new Date(t.now.getTime() + 60_001))).toBe(2);
    await t.cp.engines.deregister(B);
    expect((await t.cp.engines.list(t.now)).map((e) => e.id)).toEqual([A]);
  });
});
