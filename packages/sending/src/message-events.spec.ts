import { messageEventSchema } from '@herald/contracts';
import { eventId, eventsFor, excludedEvent } from './message-events.js';
import type { ClassifiedOutcome } from './outcome.js';

const run = { deliveryId: '4f1c2a7e-9b3d-4c5e-8f6a-1b2c3d4e5f60', occurrence: 2 };
const now = new Date('2026-12-01T10:00:00Z');
const outcome = (over: Partial<ClassifiedOutcome>): ClassifiedOutcome => ({
  profileId: 'p1',
  kind: 'sent',
  status: 'sent',
  code: 250,
  error: null,
  messageId: '<m1@herald>',
  nextAttemptAt: null,
  ...over,
});

describe('eventsFor', () => {
  it('makes a sent message sent and delivered, valid on the bus', () => {
    const events = eventsFor(outcome({}), run, 'email', now);
    expect(events.map((e) => e.type)).toEqual(['sent', 'delivered']);
    for (const event of events) expect(messageEventSchema.parse(event)).toEqual(event);
    expect(events[0]).toMatchObject({ ...run, messageId: '<m1@herald>', profileId: 'p1', channel: 'email', occurredAt: '2026-12-01T10:00:00.000Z' });
  });

  it('gives an outcome settled again the same event ids, and other messages other ids', () => {
    const ids = (o: ClassifiedOutcome, r = run) => eventsFor(o, r, 'email', now).map((e) => e.eventId);
    expect(ids(outcome({}))).toEqual(ids(outcome({ messageId: '<other@herald>' })));
    expect(new Set([...ids(outcome({})), ...ids(outcome({ profileId: 'p2' })), ...ids(outcome({}), { ...run, occurrence: 3 })]).size).toBe(6);
  });

  it('makes a hard bounce, and a soft one given up, a bounced event with its type and reason', () => {
    expect(eventsFor(outcome({ kind: 'hard', status: 'bounced', code: 550, error: '550 no such user' }), run, 'email', now)).toEqual([
      expect.objectContaining({ type: 'bounced', bounceType: 'hard', reason: '550 no such user' }),
    ]);
    expect(eventsFor(outcome({ kind: 'soft_final', status: 'failed', code: 451, error: '451 later (validity period ended)' }), run, 'sms', now)).toEqual([
      expect.objectContaining({ type: 'bounced', bounceType: 'soft', reason: '451 later (validity period ended)', channel: 'sms' }),
    ]);
  });

  it('makes a message in doubt a failed event that says so', () => {
    const [event] = eventsFor(outcome({ kind: 'in_doubt', status: 'in_doubt', code: null, error: 'ETIMEDOUT' }), run, 'email', now);
    expect(event).toMatchObject({ type: 'failed', reason: 'in doubt: ETIMEDOUT' });
  });

  it('makes nothing of a failure still to retry', () => {
    expect(eventsFor(outcome({ kind: 'soft', status: 'retry', code: 451 }), run, 'email', now)).toEqual([]);
    expect(eventsFor(outcome({ kind: 'session', status: 'retry', code: 535 }), run, 'email', now)).toEqual([]);
  });

  it('names a message without an id by its run and recipient', () => {
    expect(eventsFor(outcome({ messageId: null }), run, 'sms', now)[0]!.messageId).toBe(`${run.deliveryId}.2.p1`);
  });
});

describe('excludedEvent', () => {
  it('says why the recipient was not sent, valid on the bus, with a stable id', () => {
    const event = excludedEvent({ profileId: 'p9', reason: 'unsubscribed' }, run, 'email', now);
    expect(messageEventSchema.parse(event)).toEqual(event);
    expect(event).toMatchObject({ type: 'excluded', reason: 'unsubscribed', messageId: `${run.deliveryId}.2.p9`, profileId: 'p9' });
    expect(event.eventId).toBe(eventId(run.deliveryId, run.occurrence, 'p9', 'excluded'));
  });
});
