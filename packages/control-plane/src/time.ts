// Calendar helpers: local wall-clock times in IANA zones, recurrence steps.
import { CronExpressionParser } from 'cron-parser';
import { parseDuration } from '@herald/contracts';

// NOTE: building an Intl.DateTimeFormat costs ~40 µs; imports check one zone per row, so
// answers are cached by name (the set of names a platform sees is small).
const zoneCache = new Map<string, boolean>();

export function isTimeZone(name: string): boolean {
  let known = zoneCache.get(name);
  if (known === undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: name });
      known = true;
    } catch {
      known = false;
    }
    if (zoneCache.size < 10_000) zoneCache.set(name, known);
  }
  return known;
}

/** Offset of `zone` from UTC at `instant`, in ms. */
function zoneOffsetMs(instant: Date, zone: string): number {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
      .formatToParts(instant)
      .map((p) => [p.type, p.value]),
  );
  const asUtc = Date.UTC(+parts.year!, +parts.month! - 1, +parts.day!, +parts.hour!, +parts.minute!, +parts.second!);
  return asUtc - Math.floor(instant.getTime() / 1000) * 1000;
}

const HAS_OFFSET = /(Z|[+-]\d{2}:?\d{2})$/i;

/**
 * The instant of `sendAt`: an ISO date-time with an offset is taken as is; a local date-time
 * without one is read on the wall clock of `timeZone` (UTC when absent).
 */
export function resolveSendAt(sendAt: string, timeZone = 'UTC'): Date {
  if (HAS_OFFSET.test(sendAt)) return new Date(sendAt);
  const wall = new Date(`${sendAt}Z`);
  // Two passes settle the offset across a DST change.
  let utc = wall.getTime() - zoneOffsetMs(wall, timeZone);
  utc = wall.getTime() - zoneOffsetMs(new Date(utc), timeZone);
  return new Date(utc);
}

/** The next run of a recurrence after `after`: `every` is a duration ("1h", "1d") or a cron expression. */
export function nextRun(every: string, after: Date, timeZone = 'UTC'): Date {
  const step = parseDuration(every);
  if (step !== undefined) return new Date(after.getTime() + step);
  return CronExpressionParser.parse(every, { currentDate: after, tz: timeZone }).next().toDate();
}

export function isRecurrence(every: string): boolean {
  if (parseDuration(every) !== undefined) return parseDuration(every)! >= 60_000;
  try {
    CronExpressionParser.parse(every);
    return true;
  } catch {
    return false;
  }
}
