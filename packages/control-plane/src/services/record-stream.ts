// Streaming record splitters for bulk imports: NDJSON lines, or the elements of one top-level
// JSON array, yielded as text one at a time so a large body is never held whole in memory.
import { DomainError } from '../errors.js';

export interface RawRecord {
  index: number;
  /** 1-based line where the record starts (NDJSON), for error messages. */
  line?: number;
  text: string;
}

export async function* ndjsonRecords(body: AsyncIterable<Uint8Array | string>): AsyncGenerator<RawRecord> {
  const decoder = new TextDecoder('utf-8', { fatal: false });
  let pending = '';
  let line = 0;
  let index = 0;
  for await (const chunk of body) {
    pending += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const text = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      line++;
      if (text) yield { index: index++, line, text };
      newline = pending.indexOf('\n');
    }
  }
  pending += decoder.decode();
  line++;
  if (pending.trim()) yield { index: index++, line, text: pending.trim() };
}

const WS = new Set([' ', '\t', '\n', '\r']);

/**
 * Elements of a top-level JSON array. Tracks nesting and strings to find element boundaries;
 * each element is parsed (or rejected) on its own by the caller.
 */
export async function* jsonArrayRecords(body: AsyncIterable<Uint8Array | string>): AsyncGenerator<RawRecord> {
  const decoder = new TextDecoder('utf-8', { fatal: false });
  let started = false;
  let ended = false;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let current: string[] = [];
  let segmentStart = 0;
  let index = 0;
  let afterComma = false;

  // The decoder's final flush runs as one last chunk, so a dangling partial character counts.
  async function* withFlush(): AsyncGenerator<string> {
    for await (const chunk of body) yield typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    yield decoder.decode();
  }

  for await (const text of withFlush()) {
    segmentStart = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (!started) {
        if (WS.has(c) || c === '\uFEFF') continue;
        if (c !== '[') throw notAnArray();
        started = true;
        segmentStart = i + 1;
        continue;
      }
      if (ended) {
        if (!WS.has(c)) throw new DomainError('INVALID_INPUT', 'Unexpected data after the closing ] of the JSON array.');
        continue;
      }
      if (inString) {
        if (escaped) escaped = false;
        else if (c === '\\') escaped = true;
        else if (c === '"') inString = false;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === '{' || c === '[') depth++;
      else if ((c === '}' || c === ']') && depth > 0) depth--;
      else if (depth === 0 && (c === ',' || c === ']')) {
        current.push(text.slice(segmentStart, i));
        const element = current.join('').trim();
        current = [];
        segmentStart = i + 1;
        if (c === ']') ended = true;
        // An empty element ([1,,2] or a trailing comma [1,]) is yielded empty so the caller
        // rejects it by index; only the empty array [] has no element at all.
        if (element || c === ',' || afterComma) yield { index: index++, text: element };
        afterComma = c === ',';
      }
    }
    if (started && !ended) current.push(text.slice(segmentStart));
  }
  if (!started) throw notAnArray();
  if (!ended) {
    const rest = current.join('').trim();
    if (rest) yield { index: index++, text: rest };
    throw new DomainError('INVALID_INPUT', 'The JSON array is not closed: the body ended early.');
  }
}

const notAnArray = () =>
  new DomainError('INVALID_INPUT', 'A JSON import body must be an array of profiles (or send application/x-ndjson).');
