// Secrets of the embedded default: generated once and kept under HERALD_HOME, unless the
// environment names one.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** `explicit` when set; else the secret kept in HERALD_HOME/`name`, created on first use. */
export function ensureSecret(home: string, name: string, explicit?: string): string {
  if (explicit) return explicit;
  const file = join(home, name);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(home, { recursive: true });
  const secret = randomBytes(48).toString('base64url');
  try {
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch {
    // Another process created it first: use theirs.
    return readFileSync(file, 'utf8').trim();
  }
}
