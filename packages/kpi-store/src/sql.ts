// Pure helpers of the KPI store (no engine): the statements of a migration file (ClickHouse runs
// one statement per request, the one store whose driver cannot run a whole file) and the event → row mapping.
import type { MessageEvent } from '@herald/contracts';

/** Splits a migration file into statements: each ends with ';' at the end of a line. */
export function splitSql(sql: string): string[] {
  const body = sql
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('--'))
    .join('\n');
  return body
    .split(/;[ \t]*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The columns of `herald.message_events` an event fills, in the order of {@link toCompactRow}. */
export const MESSAGE_EVENT_COLUMNS = [
  'event_id',
  'type',
  'delivery_id',
  'occurrence',
  'message_id',
  'profile_id',
  'channel',
  'occurred_at',
  'bounce_type',
  'reason',
  'url',
  'machine',
  'supersedes',
] as const;

/**
 * An event as the values of {@link MESSAGE_EVENT_COLUMNS}, in that order: a row of an insert in
 * JSONCompactEachRowWithNames (no column names repeated per row, fewer bytes to write and parse).
 */
export function toCompactRow(e: MessageEvent): unknown[] {
  return [
    e.eventId,
    e.type,
    e.deliveryId,
    e.occurrence,
    e.messageId,
    e.profileId,
    e.channel,
    dateTime64(e.occurredAt),
    e.bounceType ?? '',
    e.reason ?? '',
    e.url ?? '',
    e.machine ?? false,
    e.supersedes ?? '',
  ];
}

/** Events as the columns of `herald.message_events`. */
export function toRow(e: MessageEvent): Record<string, unknown> {
  const values = toCompactRow(e);
  return Object.fromEntries(MESSAGE_EVENT_COLUMNS.map((column, i) => [column, values[i]]));
}

// NOTE: the events of a batch share their instant: the last conversion is kept, so a batch parses one date.
let lastInstant = '';
let lastDateTime64 = '';

/** 'YYYY-MM-DD hh:mm:ss.sss' in UTC: parsed by DateTime64 without best-effort settings. */
function dateTime64(instant: string): string {
  if (instant !== lastInstant) {
    lastDateTime64 = new Date(instant).toISOString().replace('T', ' ').replace('Z', '');
    lastInstant = instant;
  }
  return lastDateTime64;
}
