// Profile import: a JSON array or NDJSON stream, validated row by row and upserted in batches.
// A bad row is reported by index with a code; the good rows land.
import { DomainError, notFound } from '../errors.js';
import type { Profile } from '../repositories/profiles.repository.js';
import { type ProfileInput, profileSchema } from '../schemas.js';
import type { ControlPlaneContext } from './context.js';
import { jsonArrayRecords, ndjsonRecords, type RawRecord } from './record-stream.js';

export type ImportFormat = 'json' | 'ndjson';

export interface RejectedRow {
  index: number;
  line?: number;
  code: 'MALFORMED_JSON' | 'INVALID_PROFILE';
  message: string;
}

export interface ImportResult {
  imported: number;
  rejected: RejectedRow[];
  /** Total rejected rows; `rejected` lists at most the first 10,000. */
  rejectedCount: number;
}

const BATCH_SIZE = 5_000;
const MAX_REPORTED = 10_000;

export class ProfilesService {
  constructor(private readonly ctx: ControlPlaneContext) {}

  async get(id: string): Promise<Profile> {
    const profile = await this.ctx.profiles.get(this.ctx.db, id);
    if (!profile) throw notFound('Profile', id);
    return profile;
  }

  async import(body: AsyncIterable<Uint8Array | string>, format: ImportFormat): Promise<ImportResult> {
    const result: ImportResult = { imported: 0, rejected: [], rejectedCount: 0 };
    const reject = (record: RawRecord, code: RejectedRow['code'], message: string) => {
      result.rejectedCount++;
      if (result.rejected.length < MAX_REPORTED) {
        result.rejected.push({ index: record.index, ...(record.line ? { line: record.line } : {}), code, message });
      }
    };
    let batch: ProfileInput[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const rows = batch;
      batch = [];
      await this.ctx.profiles.upsertMany(this.ctx.db, rows);
      result.imported += rows.length;
    };
    const records = format === 'ndjson' ? ndjsonRecords(body) : jsonArrayRecords(body);
    for await (const record of records) {
      let value: unknown;
      try {
        value = JSON.parse(record.text);
      } catch {
        reject(record, 'MALFORMED_JSON', `Not valid JSON: ${truncate(record.text)}`);
        continue;
      }
      const parsed = profileSchema.safeParse(value);
      if (!parsed.success) {
        reject(record, 'INVALID_PROFILE', parsed.error.issues.map((i) => `${i.path.join('.') || '(row)'}: ${i.message}`).join('; '));
        continue;
      }
      batch.push(parsed.data);
      if (batch.length >= BATCH_SIZE) await flush();
    }
    await flush();
    return result;
  }
}

export function importFormat(contentType: string | undefined): ImportFormat {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json') return 'json';
  if (type === 'application/x-ndjson' || type === 'application/ndjson' || type === 'application/jsonl') return 'ndjson';
  throw new DomainError('UNSUPPORTED_MEDIA_TYPE', `Send application/json (an array) or application/x-ndjson, not '${type || 'nothing'}'.`);
}

const truncate = (text: string) => (text.length > 80 ? `${text.slice(0, 77)}...` : text);
