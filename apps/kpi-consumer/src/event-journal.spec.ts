// The event journal of the in-process bus: what it gives back (written since a time, a torn last
// line skipped), and the recovery inserting the journaled events the store lacks, once.
import { appendFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MessageEvent } from '@herald/contracts';
import { pino } from 'pino';
import { EventJournal } from './event-journal.js';
import { recoverPublishedEvents } from './recovery.js';

const opened = (i: number): MessageEvent => ({
  eventId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  type: 'opened',
  deliveryId: '11111111-1111-4111-8111-111111111111',
  occurrence: 0,
  messageId: `<m${i}@x>`,
  profileId: `p${i}`,
  channel: 'email',
  occurredAt: '2026-12-01T00:00:00.000Z',
  machine: false,
});

const HOUR_MS = 3600_000;

describe('EventJournal', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'event-journal-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('gives back the events written since a time, skipping a line a kill cut short', () => {
    const journal = new EventJournal(dir, 7 * 24 * HOUR_MS);
    const before = new Date(Date.now() - 1);
    journal.append(opened(1));
    journal.append(opened(2));
    journal.close();
    const [file] = readdirSync(dir);
    appendFileSync(join(dir, file!), `${Date.now()} {"eventId":"00000000-0000-40`);
    expect(new EventJournal(dir, 7 * 24 * HOUR_MS).eventsSince(before)).toEqual([opened(1), opened(2)]);
    expect(new EventJournal(dir, 7 * 24 * HOUR_MS).eventsSince(new Date(Date.now() + 1))).toEqual([]);
  });

  it('deletes the files older than its retention as the hours turn', () => {
    const old = new Date(Date.now() - 3 * HOUR_MS).toISOString().slice(0, 13);
    writeFileSync(join(dir, `events-${old}.ndjson`), `${Date.now() - 3 * HOUR_MS} ${JSON.stringify(opened(9))}\n`);
    const journal = new EventJournal(dir, HOUR_MS);
    expect(journal.eventsSince(new Date(0))).toEqual([opened(9)]);
    journal.append(opened(1));
    journal.close();
    expect(journal.eventsSince(new Date(0))).toEqual([opened(1)]);
    expect(readdirSync(dir)).toHaveLength(1);
  });

  it('lets the recovery insert the journaled events the store lacks, once', async () => {
    const journal = new EventJournal(dir, 7 * 24 * HOUR_MS);
    for (let i = 1; i <= 5; i++) journal.append(opened(i));
    journal.close();
    const stored = new Set([opened(1).eventId, opened(2).eventId]);
    const inserted: MessageEvent[] = [];
    const store = {
      lastIngestedAt: async () => new Date(),
      missingEventIds: async (ids: readonly string[]) => new Set(ids.filter((id) => !stored.has(id))),
      insertEvents: async (events: readonly MessageEvent[]) => {
        inserted.push(...events);
        for (const e of events) stored.add(e.eventId);
      },
    };
    const noOutbox = { publishedSince: async () => [] };
    const silent = pino({ level: 'silent' });
    expect(await recoverPublishedEvents(store, noOutbox, silent, { journal, pageSize: 2 })).toMatchObject({ checked: 5, recovered: 3 });
    expect(inserted.map((e) => e.profileId)).toEqual(['p3', 'p4', 'p5']);
    expect(await recoverPublishedEvents(store, noOutbox, silent, { journal })).toMatchObject({ checked: 5, recovered: 0 });
  });
});
