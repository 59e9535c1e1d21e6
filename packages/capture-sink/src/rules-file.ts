// The rules file of a running sink: re-read when it changes so a user can edit bounce rules live.
// Looked at once per second (stat only, unless it changed), so a mistake is reported within a
// second even on an idle sink. A file that stops parsing keeps the last good rules in force.
import { readFile, stat } from 'node:fs/promises';
import { parseRules, type SinkRule } from './rules.js';

const CHECK_INTERVAL_MS = 1_000;

export class RulesFile {
  /** mtime, size and inode together: an editor's rename or a same-tick rewrite of another size still shows. */
  private version = '';
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;

  constructor(
    readonly path: string,
    private readonly apply: (rules: SinkRule[]) => void,
    private readonly onError: (error: Error) => void,
  ) {}

  /** The first read (a missing file means no rules yet, an invalid one is thrown), then the checks. */
  async start(): Promise<void> {
    await this.reload();
    this.timer = setInterval(() => void this.check(), CHECK_INTERVAL_MS);
    // The sink's server keeps the process alive; this timer alone must not.
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.checking;
  }

  private check(): Promise<void> {
    // A slow disk must not pile up reads.
    this.checking ??= this.reload()
      .catch((error: unknown) => this.onError(error instanceof Error ? error : new Error(String(error))))
      .finally(() => {
        this.checking = null;
      });
    return this.checking;
  }

  private async reload(): Promise<void> {
    let version: string;
    try {
      const stats = await stat(this.path);
      version = `${stats.mtimeMs}:${stats.size}:${stats.ino}`;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      // Deleting the file withdraws its rules.
      version = 'missing';
    }
    if (version === this.version) return;
    // Remembered before parsing: a broken file is reported once, not every second until it is fixed.
    this.version = version;
    const rules = version === 'missing' ? [] : parseRules(await readFile(this.path, 'utf8'), ` in ${this.path}`);
    this.apply(rules);
  }
}
