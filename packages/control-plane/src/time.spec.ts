import { isRecurrence, isTimeZone, nextRun, resolveSendAt } from './time.js';

describe('resolveSendAt', () => {
  it('keeps an explicit offset', () => {
    expect(resolveSendAt('2026-12-01T09:00:00+01:00').toISOString()).toBe('2026-12-01T08:00:00.000Z');
  });
  it('reads a local time on the zone wall clock, winter and summer', () => {
    expect(resolveSendAt('2026-12-01T09:00:00', 'Europe/Paris').toISOString()).toBe('2026-12-01T08:00:00.000Z');
    expect(resolveSendAt('2026-07-01T09:00:00', 'Europe/Paris').toISOString()).toBe('2026-07-01T07:00:00.000Z');
    expect(resolveSendAt('2026-07-01T09:00', 'America/New_York').toISOString()).toBe('2026-07-01T13:00:00.000Z');
  });
  it('defaults to UTC', () => {
    expect(resolveSendAt('2026-12-01T09:00:00').toISOString()).toBe('2026-12-01T09:00:00.000Z');
  });
});

describe('recurrence', () => {
  it('steps by a duration', () => {
    expect(nextRun('1h', new Date('2026-12-01T09:00:00Z')).toISOString()).toBe('2026-12-01T10:00:00.000Z');
  });
  it('steps by a cron expression in a zone', () => {
    expect(nextRun('0 9 * * *', new Date('2026-12-01T09:30:00Z'), 'Europe/Paris').toISOString()).toBe('2026-12-02T08:00:00.000Z');
  });
  it('validates', () => {
    expect(isRecurrence('1h')).toBe(true);
    expect(isRecurrence('0 9 * * 1')).toBe(true);
    expect(isRecurrence('5s')).toBe(false);
    expect(isRecurrence('every tuesday')).toBe(false);
    expect(isTimeZone('Europe/Paris')).toBe(true);
    expect(isTimeZone('Mars/Olympus')).toBe(false);
  });
});
