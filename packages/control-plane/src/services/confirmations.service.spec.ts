// The two-step confirmation over in-memory repositories: what Confirm send binds and shows, and
// when OK starts (or schedules) the send, answers the same again, or refuses.
import { ALICE, approved, audienceOf, BOB, commands, footprint, inMemoryControlPlane, liveEngine } from '../../test/services.js';

describe('ConfirmationsService', () => {
  it('Confirm send binds a confirmation to the delivery as it is now, with what will be sent', async () => {
    const { cp, data } = inMemoryControlPlane();
    await liveEngine(cp);
    const delivery = await approved(cp, await audienceOf(cp), { throughput: { perHour: 3600 } });
    const ticket = await cp.confirmations.confirm(delivery.id, ALICE);
    const now = await cp.deliveries.get(delivery.id);
    expect(now.state).toBe('pending_ok');
    expect(data.confirmations.get(ticket.confirmationId)).toMatchObject({ status: 'pending', userId: 'alice', subjectVersion: now.version });
    expect(ticket).toMatchObject({ expiresAt: '2026-12-01T08:10:00.000Z', summaryHash: expect.stringMatching(/^sha256:/) });
    expect(ticket.summary).toMatchObject({
      toSend: 3,
      exclusionsChangedSincePreparation: false,
      sendAt: null,
      projectedFinishAt: '2026-12-01T08:00:03.000Z',
      projectedFinishBasis: { source: 'throughput.perHour', perHour: 3600 },
      provider: { channel: 'email', kind: 'smtp' },
      warnings: [],
    });
    expect(data.audit.at(-1)).toMatchObject({ action: 'confirm_send', fromState: 'approved', toState: 'pending_ok', summaryHash: ticket.summaryHash });
  });

  it('counts the profiles suppressed since preparation, and warns when no engine runs', async () => {
    const { cp, data } = inMemoryControlPlane();
    const delivery = await approved(cp, await audienceOf(cp));
    data.profiles.get('p2')!.status = 'denylisted';
    const { summary } = await cp.confirmations.confirm(delivery.id, ALICE);
    expect(summary).toMatchObject({ toSend: 2, exclusionsChangedSincePreparation: true, exclusionsSincePreparation: { denylisted: 1 }, provider: null });
    expect(summary.warnings.map((w) => w.code)).toEqual(['NO_ENGINE']);
  });

  it('a second Confirm send voids the first: only the last summary can be OK-ed', async () => {
    const { cp, data } = inMemoryControlPlane();
    const delivery = await approved(cp, await audienceOf(cp));
    const first = await cp.confirmations.confirm(delivery.id, ALICE);
    const second = await cp.confirmations.confirm(delivery.id, ALICE);
    expect(data.confirmations.get(first.confirmationId)?.status).toBe('void');
    expect(data.audit.at(-1)).toMatchObject({ fromState: 'pending_ok', toState: 'pending_ok', details: { voided: [first.confirmationId] } });
    await expect(cp.confirmations.ok(delivery.id, first.confirmationId, ALICE)).rejects.toMatchObject({ code: 'CONFIRMATION_STALE', details: { reason: 'VOIDED' } });
    expect(await cp.confirmations.ok(delivery.id, second.confirmationId, ALICE)).toMatchObject({ state: 'sending', startedAs: 'sending' });
  });

  it('OK starts the send once, with its command; the same OK again answers the same and starts nothing', async () => {
    const { cp, data } = inMemoryControlPlane();
    const delivery = await approved(cp, await audienceOf(cp));
    const { confirmationId } = await cp.confirmations.confirm(delivery.id, ALICE);
    const ok = await cp.confirmations.ok(delivery.id, confirmationId, ALICE);
    expect(ok).toEqual({ state: 'sending', startedAs: 'sending', deliveryId: delivery.id, occurrence: 0, confirmationId });
    expect(await cp.confirmations.ok(delivery.id, confirmationId, ALICE)).toEqual(ok);
    expect(commands(data)).toEqual(['DeliveryStarted:0']);
    expect(data.outbox[0]!.payload).toMatchObject({ type: 'DeliveryStarted', toSend: 3, channel: 'email', issuedBy: 'alice' });
    expect(await cp.deliveries.get(delivery.id)).toMatchObject({ state: 'sending', startedAt: '2026-12-01T08:00:00.000Z' });
  });

  it('OK of a scheduled send schedules it; nothing is sent before its time', async () => {
    const { cp, data } = inMemoryControlPlane();
    const delivery = await approved(cp, await audienceOf(cp), { schedule: { sendAt: '2026-12-02T09:00:00', timezone: 'Europe/Paris' } });
    const { confirmationId } = await cp.confirmations.confirm(delivery.id, ALICE);
    expect(await cp.confirmations.ok(delivery.id, confirmationId, ALICE)).toMatchObject({ state: 'scheduled' });
    expect(await cp.deliveries.get(delivery.id)).toMatchObject({ nextRunAt: '2026-12-02T08:00:00.000Z' });
    expect(commands(data)).toEqual([]);
  });

  it('refuses an OK from another user, after expiry, or after a change, changing nothing', async () => {
    const { cp, data, clock } = inMemoryControlPlane();
    const audienceId = await audienceOf(cp);
    const delivery = await approved(cp, audienceId);
    const { confirmationId } = await cp.confirmations.confirm(delivery.id, ALICE);
    let before = footprint(data);
    await expect(cp.confirmations.ok(delivery.id, confirmationId, BOB)).rejects.toMatchObject({ code: 'CONFIRMATION_STALE', details: { reason: 'OTHER_USER' } });
    clock.advance(10 * 60_000);
    await expect(cp.confirmations.ok(delivery.id, confirmationId, ALICE)).rejects.toMatchObject({ code: 'CONFIRMATION_EXPIRED' });
    expect(footprint(data)).toBe(before);
    const other = await approved(cp, audienceId);
    const ticket = await cp.confirmations.confirm(other.id, ALICE);
    data.deliveries.get(other.id)!.version++; // changed after Confirm send (as an edit would)
    before = footprint(data);
    await expect(cp.confirmations.ok(other.id, ticket.confirmationId, ALICE)).rejects.toMatchObject({ code: 'CONFIRMATION_STALE', details: { reason: 'CHANGED' } });
    expect(footprint(data)).toBe(before);
  });

  it('refuses a send time already past (SEND_TIME_PAST), changing nothing, unless sendNow', async () => {
    const { cp, data } = inMemoryControlPlane();
    const audienceId = await audienceOf(cp);
    const past = await approved(cp, audienceId, { schedule: { sendAt: '2026-12-01T07:00:00Z' } });
    const before = footprint(data);
    await expect(cp.confirmations.confirm(past.id, ALICE)).rejects.toMatchObject({ code: 'SEND_TIME_PAST' });
    expect(footprint(data)).toBe(before);
    const now = await approved(cp, audienceId, { schedule: { sendAt: '2026-12-01T07:00:00Z', sendNow: true } });
    const { summary } = await cp.confirmations.confirm(now.id, ALICE);
    expect(summary).toMatchObject({ sendAt: null, warnings: [expect.objectContaining({ code: 'SEND_TIME_PAST' }), expect.objectContaining({ code: 'NO_ENGINE' })] });
  });

  it('refuses Confirm send when the running engines cannot send the channel (CHANNEL_NOT_CONFIGURED)', async () => {
    const { cp } = inMemoryControlPlane();
    await liveEngine(cp);
    const audienceId = await audienceOf(cp, [{ id: 's1', phone: '+33612345678' }]);
    const { id } = await cp.deliveries.create({ name: 'sms', channel: 'sms', audienceId, content: { text: 'Hi' } }, ALICE);
    await cp.deliveries.prepare(id, ALICE);
    await cp.deliveries.approve(id, ALICE);
    await expect(cp.confirmations.confirm(id, ALICE)).rejects.toMatchObject({ code: 'CHANNEL_NOT_CONFIGURED', details: { channel: 'sms', engines: 1 } });
    expect((await cp.deliveries.get(id)).state).toBe('approved');
  });

  it('a recipient-time-zone schedule: the window of local send times, and each recipient due at its own', async () => {
    const { cp, data } = inMemoryControlPlane();
    const audienceId = await audienceOf(cp, [
      { id: 'tokyo', email: 't@example.com', timezone: 'Asia/Tokyo' },
      { id: 'paris', email: 'p@example.com', timezone: 'Europe/Paris' },
    ]);
    const delivery = await approved(cp, audienceId, { schedule: { recipientTimezone: true, localTime: '09:00', date: '2026-12-02' } });
    const { confirmationId, summary } = await cp.confirmations.confirm(delivery.id, ALICE);
    expect(summary.sendWindow).toEqual({ first: '2026-12-02T00:00:00.000Z', last: '2026-12-02T08:00:00.000Z' });
    expect(await cp.confirmations.ok(delivery.id, confirmationId, ALICE)).toMatchObject({ state: 'scheduled' });
    expect([...data.ledger.values()].map((r) => [r.profileId, r.sendAfter?.toISOString()])).toEqual([
      ['paris', '2026-12-02T08:00:00.000Z'],
      ['tokyo', '2026-12-02T00:00:00.000Z'],
    ]);
  });
});
