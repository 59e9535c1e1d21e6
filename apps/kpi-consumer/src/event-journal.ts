// The journal of the events the gateway publishes straight onto the in-process bus (opens and
// clicks of the embedded default). That bus holds them in memory until the KPI consumer flushes:
// a process killed in between would lose them, and unlike the engine's events no outbox row
// keeps them. Each event is appended to a local file before it is published (a write to the
// page cache: it survives a kill of the process, as the outbox survives it in the store), and
// the KPI recovery at start inserts the journaled events ClickHouse lacks. With Kafka there is no
// journal: the broker has an event once its publish resolved.
//
// One file per hour of wall-clock time, `events-YYYY-MM-DDTHH.ndjson`, each line
// `<written at, ms> <event JSON>`; files older than the retention are deleted as hours turn.
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { type MessageEvent, messageEventSchema } from '@herald/contracts';

const FILE = /^events-(\d{4}-\d{2}-\d{2}T\d{2})\.ndjson$/;
const HOUR_MS = 3600_000;

export class EventJournal {
  private fd: number | undefined;
  private hour = '';

  /** `retentionMs`: how long journaled events stay readable for recovery (OUTBOX_RETENTION, as the outbox's). */
  constructor(
    private readonly dir: string,
    private readonly retentionMs: number,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  append(event: MessageEvent): void {
    const now = Date.now();
    const hour = new Date(now).toISOString().slice(0, 13);
    if (hour !== this.hour || this.fd === undefined) this.rotate(hour, now);
    writeSync(this.fd!, `${now} ${JSON.stringify(event)}\n`);
  }

  /** The journaled events written at or after `since`, oldest first (a line torn by a kill is skipped). */
  eventsSince(since: Date): MessageEvent[] {
    const events: MessageEvent[] = [];
    for (const [name, start] of this.files()) {
      if (start + HOUR_MS <= since.getTime()) continue;
      for (const line of readFileSync(join(this.dir, name), 'utf8').split('\n')) {
        const space = line.indexOf(' ');
        if (space <= 0 || Number(line.slice(0, space)) < since.getTime()) continue;
        try {
          const parsed = messageEventSchema.safeParse(JSON.parse(line.slice(space + 1)));
          if (parsed.success) events.push(parsed.data);
        } catch {
          // The last line of a file a kill cut short.
        }
      }
    }
    return events;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private rotate(hour: string, now: number): void {
    this.close();
    this.fd = openSync(join(this.dir, `events-${hour}.ndjson`), 'a');
    this.hour = hour;
    for (const [name, start] of this.files()) {
      if (start + HOUR_MS < now - this.retentionMs) rmSync(join(this.dir, name), { force: true });
    }
  }

  /** The journal's files with the start of their hour (ms), oldest first. */
  private files(): [string, number][] {
    return readdirSync(this.dir)
      .flatMap((name): [string, number][] => {
        const match = FILE.exec(name);
        return match ? [[name, Date.parse(`${match[1]}:00:00Z`)]] : [];
      })
      .sort((a, b) => a[1] - b[1]);
  }
}
