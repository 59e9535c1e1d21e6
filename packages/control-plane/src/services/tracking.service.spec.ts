// What recipients' links record, over in-memory repositories: opens, clicks to the stored URL
// only, unsubscribes (status and event together), a proof's own links; nothing for a message
// Herald did not send.
import { TOPICS } from '@herald/contracts';
import { audienceOf, body, footprint, inMemoryControlPlane, started } from '../../test/services.js';

async function sent() {
  const t = inMemoryControlPlane();
  const delivery = await started(t.cp, await audienceOf(t.cp));
  for (const row of t.data.ledger.values()) Object.assign(row, { status: 'sent', messageId: `<${row.profileId}@herald>` });
  return { ...t, delivery, message: { deliveryId: delivery.id, occurrence: 0, profileId: 'p1' } };
}

const events = (t: { data: { outbox: { topic: string; payload: unknown }[] } }) =>
  t.data.outbox.filter((row) => row.topic === TOPICS.messageEvents).map((row) => row.payload as Record<string, unknown>);

describe('TrackingService', () => {
  it('records an open and a click of a message Herald sent, as message events', async () => {
    const t = await sent();
    await t.cp.tracking.record(t.message, 'opened', { machine: false });
    const url = await t.cp.tracking.clickTarget({ ...t.message, link: 1 });
    expect(url).toBe('https://shop.example/u');
    await t.cp.tracking.record({ ...t.message, link: 1 }, 'clicked', { url: url!, machine: true });
    expect(events(t)).toEqual([
      expect.objectContaining({ type: 'opened', messageId: '<p1@herald>', profileId: 'p1', channel: 'email', machine: false, occurredAt: '2026-12-01T08:00:00.000Z' }),
      expect.objectContaining({ type: 'clicked', url: 'https://shop.example/u', machine: true }),
    ]);
  });

  it('a click to a link the content does not have goes nowhere', async () => {
    const t = await sent();
    expect(await t.cp.tracking.clickTarget({ ...t.message, link: 7 })).toBeUndefined();
    expect(await t.cp.tracking.clickTarget(t.message)).toBeUndefined();
  });

  it('unsubscribes the profile and records the event together', async () => {
    const t = await sent();
    await t.cp.tracking.unsubscribe(t.message, { machine: false });
    expect((await t.cp.profiles.get('p1')).status).toBe('unsubscribed');
    expect(events(t).map((e) => e.type)).toEqual(['unsubscribed']);
  });

  it('records nothing for a recipient the ledger does not have (NOT_FOUND); an unsubscribe of one changes no profile', async () => {
    const t = await sent();
    const stranger = { ...t.message, profileId: 'p9' };
    await t.cp.profiles.import(body(JSON.stringify([{ id: 'p9', email: 'p9@example.com' }])), 'json');
    const before = footprint(t.data);
    await expect(t.cp.tracking.record(stranger, 'opened', { machine: false })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(t.cp.tracking.unsubscribe(stranger, { machine: false })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(footprint(t.data)).toBe(before);
    expect((await t.cp.profiles.get('p9')).status).toBe('active');
  });

  it("a proof's clicks resolve against its own links, kept as first written", async () => {
    const t = await sent();
    const proof = { proofId: 'proof-1', deliveryId: t.delivery.id };
    await t.cp.tracking.saveProofLinks(proof, ['https://proof.example/a']);
    await t.cp.tracking.saveProofLinks(proof, ['https://proof.example/changed', 'https://proof.example/b']);
    expect(await t.cp.tracking.clickTarget({ ...t.message, proof: 'proof-1', link: 0 })).toBe('https://proof.example/a');
    expect(await t.cp.tracking.clickTarget({ ...t.message, proof: 'proof-1', link: 1 })).toBe('https://proof.example/b');
  });
});
