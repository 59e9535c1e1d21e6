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

/** Events as the columns of `herald.message_events`. */
export function toRow(e: MessageEvent): Record<string, unknown> {
  return {
    event_id: e.eventId,
    type: e.type,
    delivery_id: e.deliveryId,
    occurrence: e.occurrence,
    message_id: e.messageId,
    profile_id: e.profileId,
    channel: e.channel,
    // 'YYYY-MM-DD hh:mm:ss.sss' in UTC: parsed by DateTime64 without best-effort settings.
    occurred_at: new Date(e.occurredAt).toISOString().replace('T', ' ').replace('Z', ''),
    bounce_type: e.bounceType ?? '',
    reason: e.reason ?? '',
    url: e.url ?? '',
    machine: e.machine ?? false,
    supersedes: e.supersedes ?? '',
  };
}
