import type { MessageEvent } from '@herald/contracts';
import { splitSql, toRow } from './sql.js';

describe('splitSql', () => {
  it('splits on a semicolon at the end of a line and drops comment lines', () => {
    const sql = `-- header; not a statement
CREATE TABLE a (x String DEFAULT 'a;b') ENGINE = Memory;

-- between
CREATE VIEW v AS
SELECT 1;
SELECT 2`;
    expect(splitSql(sql)).toEqual([
      "CREATE TABLE a (x String DEFAULT 'a;b') ENGINE = Memory",
      'CREATE VIEW v AS\nSELECT 1',
      'SELECT 2',
    ]);
  });
});

describe('toRow', () => {
  const base: MessageEvent = {
    eventId: '7b0a0f0e-54c4-4b8a-9a51-1f0c5c2b9a10',
    type: 'bounced',
    deliveryId: '11111111-1111-4111-8111-111111111111',
    occurrence: 2,
    messageId: 'm1',
    profileId: 'p1',
    channel: 'email',
    occurredAt: '2025-06-01T10:00:00Z',
    bounceType: 'hard',
  };

  it('maps an event to snake_case columns with a UTC DateTime64 literal and defaults for absent fields', () => {
    expect(toRow(base)).toEqual({
      event_id: base.eventId,
      type: 'bounced',
      delivery_id: base.deliveryId,
      occurrence: 2,
      message_id: 'm1',
      profile_id: 'p1',
      channel: 'email',
      occurred_at: '2025-06-01 10:00:00.000',
      bounce_type: 'hard',
      reason: '',
      url: '',
      machine: false,
      supersedes: '',
    });
  });

  it('carries the status a later bounce supersedes', () => {
    expect(toRow({ ...base, supersedes: 'delivered' }).supersedes).toBe('delivered');
  });

  it('normalizes sub-millisecond precision', () => {
    expect(toRow({ ...base, occurredAt: '2025-06-01T10:00:00.123456Z' }).occurred_at).toBe('2025-06-01 10:00:00.123');
  });
});
