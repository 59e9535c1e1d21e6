// TrackingEvents over fakes: an event built from the token alone and published, journaled first;
// kept in the outbox when the bus refuses it or the journal cannot be written; a token without the Message-ID resolved through the
// ledger; each link's target read once per run, concurrent first reads shared, a failed read not kept.
import type { Bus, OutgoingMessage } from '@herald/bus';
import type { TrackingPayload } from '@herald/channels';
import type { MessageEvent } from '@herald/contracts';
import type { ControlPlane } from '@herald/control-plane';
import { pino } from 'pino';
import { Metrics } from './http/metrics.js';
import { TrackingEvents } from './tracking-events.js';

const NOW = new Date('2026-12-01T08:00:00.000Z');
const payload: TrackingPayload = {
  kind: 'click',
  deliveryId: '11111111-1111-4111-8111-111111111111',
  occurrence: 2,
  profileId: 'p1',
  link: 1,
  messageId: '<abc@shop.example>',
  issuedAt: NOW.getTime() / 1000 - 3600,
};

function setup(options: { busFails?: boolean; journalFails?: boolean } = {}) {
  const published: OutgoingMessage[] = [];
  const journaled: MessageEvent[] = [];
  const calls = { clickTarget: 0, record: 0, recordEvent: [] as MessageEvent[] };
  let targetAnswer: () => Promise<string | undefined> = async () => 'https://shop.example/b';
  const controlPlane = {
    tracking: {
      clickTarget: () => {
        calls.clickTarget++;
        return targetAnswer();
      },
      record: async () => void calls.record++,
      recordEvent: async (event: MessageEvent) => void calls.recordEvent.push(event),
    },
  } as unknown as ControlPlane;
  const bus = {
    publish: async (_topic: string, messages: OutgoingMessage[]) => {
      if (options.busFails) throw new Error('broker unreachable');
      published.push(...messages);
    },
  } as unknown as Bus;
  const metrics = new Metrics();
  const events = new TrackingEvents({
    controlPlane,
    bus,
    clock: { now: () => NOW },
    logger: pino({ level: 'silent' }),
    metrics,
    linkTtlMs: 180 * 24 * 3600_000,
    journal: {
      append: (event) => {
        if (options.journalFails) throw new Error('ENOSPC: no space left on device');
        journaled.push(event);
      },
    },
  });
  return { events, published, journaled, calls, metrics, setTarget: (answer: () => Promise<string | undefined>) => (targetAnswer = answer) };
}

describe('TrackingEvents', () => {
  it('publishes the event built from the token, journaled first, with nothing asked of the store', async () => {
    const t = setup();
    await t.events.record(payload, 'clicked', { machine: true, url: 'https://shop.example/b' });
    expect(t.published).toHaveLength(1);
    expect(t.published[0]!.key).toBe(payload.messageId);
    expect(t.published[0]!.value).toEqual({
      eventId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      type: 'clicked',
      deliveryId: payload.deliveryId,
      occurrence: 2,
      messageId: '<abc@shop.example>',
      profileId: 'p1',
      channel: 'email',
      occurredAt: NOW.toISOString(),
      url: 'https://shop.example/b',
      machine: true,
    });
    expect(t.journaled).toEqual([t.published[0]!.value]);
    expect(t.calls).toMatchObject({ record: 0, recordEvent: [] });
    // Two hits, two events.
    await t.events.record(payload, 'clicked', { machine: true, url: 'https://shop.example/b' });
    expect((t.published[1]!.value as MessageEvent).eventId).not.toBe((t.published[0]!.value as MessageEvent).eventId);
  });

  it('keeps the event in the outbox, same id, when the bus refuses it', async () => {
    const t = setup({ busFails: true });
    await t.events.record({ ...payload, kind: 'open', link: undefined }, 'opened', { machine: false });
    expect(t.calls.recordEvent).toEqual([t.journaled[0]]);
    expect(await t.metrics.registry.getSingleMetricAsString('herald_tracking_events_total')).toContain('herald_tracking_events_total{type="opened",path="outbox"} 1');
  });

  it('keeps the event in the outbox when the journal cannot be written, publishing nothing', async () => {
    const t = setup({ journalFails: true });
    await t.events.record({ ...payload, kind: 'open', link: undefined }, 'opened', { machine: false });
    expect(t.calls.recordEvent).toHaveLength(1);
    expect(t.published).toEqual([]);
  });

  it('resolves a token without the Message-ID through the ledger', async () => {
    const t = setup();
    const { messageId: _m, issuedAt: _i, ...older } = payload;
    await t.events.record(older, 'clicked', { machine: false, url: 'https://shop.example/b' });
    expect(t.calls.record).toBe(1);
    expect(t.published).toEqual([]);
  });

  it('reads a link target once per run, shares concurrent first reads, and does not keep a failed read', async () => {
    const t = setup();
    const answers = await Promise.all([t.events.clickTarget(payload), t.events.clickTarget(payload), t.events.clickTarget(payload)]);
    expect(answers).toEqual(Array(3).fill('https://shop.example/b'));
    expect(await t.events.clickTarget(payload)).toBe('https://shop.example/b');
    expect(t.calls.clickTarget).toBe(1);
    // Another run of the same delivery is read on its own.
    await t.events.clickTarget({ ...payload, occurrence: 3 });
    expect(t.calls.clickTarget).toBe(2);
    // A failed read is tried again at the next click.
    t.setTarget(async () => {
      throw new Error('store down');
    });
    await expect(t.events.clickTarget({ ...payload, link: 0 })).rejects.toThrow('store down');
    t.setTarget(async () => 'https://shop.example/a');
    expect(await t.events.clickTarget({ ...payload, link: 0 })).toBe('https://shop.example/a');
  });

  it('expires an open or click token past the link lifetime', () => {
    const t = setup();
    expect(t.events.expired(payload)).toBe(false);
    expect(t.events.expired({ ...payload, issuedAt: NOW.getTime() / 1000 - 181 * 24 * 3600 })).toBe(true);
  });
});
