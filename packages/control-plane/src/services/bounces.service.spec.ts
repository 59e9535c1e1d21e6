// Asynchronous bounces and complaints over in-memory repositories: each message changes once,
// the KPIs hear which status a bounce supersedes, hard bounces quarantine at once, soft ones
// after the threshold, a complaint denylists.
import { TOPICS } from '@herald/contracts';
import { audienceOf, footprint, inMemoryControlPlane, started } from '../../test/services.js';

async function sentMessages(softBounces = { threshold: 2, resetAfterMs: 86_400_000 }) {
  const t = inMemoryControlPlane({ settings: { softBounces } });
  const delivery = await started(t.cp, await audienceOf(t.cp));
  for (const row of t.data.ledger.values()) Object.assign(row, { status: 'sent', messageId: `<${row.profileId}@herald>`, sentAt: t.clock.now() });
  return { ...t, delivery };
}

const events = (t: { data: { outbox: { topic: string; payload: unknown }[] } }) =>
  t.data.outbox.filter((row) => row.topic === TOPICS.messageEvents).map((row) => row.payload as Record<string, unknown>);

describe('BouncesService', () => {
  it('a hard bounce: the message is bounced (superseding delivered) and the address quarantined', async () => {
    const t = await sentMessages();
    const result = await t.cp.bounces.apply({ messageId: 'p1@herald', type: 'hard', reason: '550 no such user' });
    expect(result).toEqual({ messageId: '<p1@herald>', deliveryId: t.delivery.id, occurrence: 0, profileId: 'p1', applied: true, status: 'bounced', profileStatus: 'quarantined' });
    expect((await t.cp.logs.sendingLogs(t.delivery.id, { limit: 1 }))[0]).toMatchObject({ status: 'bounced', bounceType: 'hard', lastError: '550 no such user' });
    expect(events(t)).toEqual([expect.objectContaining({ type: 'bounced', bounceType: 'hard', supersedes: 'delivered', profileId: 'p1', reason: '550 no such user' })]);
    // The same report again changes nothing more.
    const before = footprint(t.data);
    expect(await t.cp.bounces.apply({ messageId: '<p1@herald>', type: 'hard' })).toMatchObject({ applied: false, status: 'bounced' });
    expect(footprint(t.data)).toBe(before);
  });

  it('soft bounces quarantine the address once they reach the threshold', async () => {
    const t = await sentMessages();
    const first = await started(t.cp, (await t.cp.audiences.create({ name: 'again', profileIds: ['p2'] }, { id: 'alice', roles: [] })).audience.id);
    for (const row of t.data.ledger.values()) if (row.deliveryId === first.id) Object.assign(row, { status: 'in_doubt', messageId: '<p2-again@herald>' });
    expect(await t.cp.bounces.apply({ messageId: '<p2@herald>', type: 'soft' })).toMatchObject({ applied: true, profileStatus: 'active' });
    expect(await t.cp.bounces.apply({ messageId: '<p2-again@herald>', type: 'soft' })).toMatchObject({ applied: true, profileStatus: 'quarantined' });
    expect(events(t).map((e) => e.supersedes)).toEqual(['delivered', 'failed']);
  });

  it('a complaint denylists the profile, once', async () => {
    const t = await sentMessages();
    expect(await t.cp.bounces.apply({ messageId: '<p3@herald>', type: 'complaint' })).toMatchObject({ applied: true, status: 'sent', profileStatus: 'denylisted' });
    expect(await t.cp.bounces.apply({ messageId: '<p3@herald>', type: 'complaint' })).toMatchObject({ applied: false });
    expect(events(t).map((e) => e.type)).toEqual(['complained']);
  });

  it('refuses a Message-ID Herald never sent (NOT_FOUND) and a message not sent yet (INVALID_STATE), changing nothing', async () => {
    const t = await sentMessages();
    [...t.data.ledger.values()][0]!.status = 'queued';
    const before = footprint(t.data);
    await expect(t.cp.bounces.apply({ messageId: '<nobody@elsewhere>', type: 'hard' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(t.cp.bounces.apply({ messageId: '<p1@herald>', type: 'hard' })).rejects.toMatchObject({ code: 'INVALID_STATE', details: { status: 'queued' } });
    expect(footprint(t.data)).toBe(before);
  });
});
