import { DomainError } from '../errors.js';
import { jsonArrayRecords, ndjsonRecords, type RawRecord } from './record-stream.js';

const encoder = new TextEncoder();

/** Yields `bytes` cut at the given byte offsets (sorted, deduplicated, empty chunks skipped). */
async function* cutAt(bytes: Uint8Array, cuts: number[]): AsyncGenerator<Uint8Array> {
  let start = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
    if (cut > start && cut < bytes.length) {
      yield bytes.slice(start, cut);
      start = cut;
    }
  }
  if (start < bytes.length) yield bytes.slice(start);
}

/** Yields `bytes` in chunks whose sizes come from `nextSize`. */
async function* chunked(bytes: Uint8Array, nextSize: () => number): AsyncGenerator<Uint8Array> {
  for (let start = 0; start < bytes.length; ) {
    const end = Math.min(bytes.length, start + Math.max(1, nextSize()));
    yield bytes.slice(start, end);
    start = end;
  }
}

async function* fromChunks(chunks: (Uint8Array | string)[]): AsyncGenerator<Uint8Array | string> {
  for (const chunk of chunks) yield chunk;
}

const bytesOf = (text: string): Uint8Array => encoder.encode(text);

/** Reads a record stream to its end, or to its first error. */
async function readAll(records: AsyncIterable<RawRecord>): Promise<{ records: RawRecord[]; error?: unknown }> {
  const out: RawRecord[] = [];
  try {
    for await (const record of records) out.push(record);
  } catch (error) {
    return { records: out, error };
  }
  return { records: out };
}

async function readOk(records: AsyncIterable<RawRecord>): Promise<RawRecord[]> {
  const result = await readAll(records);
  if (result.error !== undefined) throw result.error;
  return result.records;
}

function expectInvalidInput(error: unknown, message?: RegExp): void {
  expect(error).toBeInstanceOf(DomainError);
  expect((error as DomainError).code).toBe('INVALID_INPUT');
  expect((error as DomainError).status).toBe(400);
  if (message) expect((error as DomainError).message).toMatch(message);
}

/** Every way of cutting `bytes` in two, plus one-byte chunks. */
function everySplit(bytes: Uint8Array): number[][] {
  const splits: number[][] = [[]];
  for (let i = 1; i < bytes.length; i++) splits.push([i]);
  splits.push(Array.from({ length: bytes.length }, (_, i) => i));
  return splits;
}

/** mulberry32: a tiny seeded PRNG, so a failing case reproduces from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('jsonArrayRecords', () => {
  const texts = (records: RawRecord[]) => records.map((r) => r.text);

  it('yields each element as text, with its index and no line', async () => {
    const records = await readOk(jsonArrayRecords(fromChunks([bytesOf('[{"a":1},{"b":2},3,"x",null]')])));
    expect(records).toEqual([
      { index: 0, text: '{"a":1}' },
      { index: 1, text: '{"b":2}' },
      { index: 2, text: '3' },
      { index: 3, text: '"x"' },
      { index: 4, text: 'null' },
    ]);
    for (const record of records) expect(record.line).toBeUndefined();
  });

  it('accepts string chunks as well as bytes', async () => {
    const records = await readOk(jsonArrayRecords(fromChunks(['[{"a":', '1},', '{"b":2}]'])));
    expect(texts(records)).toEqual(['{"a":1}', '{"b":2}']);
  });

  it('reassembles a record cut at any byte', async () => {
    const body = bytesOf('[{"id":"p-1","email":"a@example.com"},{"id":"p-2","email":"b@example.com"}]');
    for (const cuts of everySplit(body)) {
      const records = await readOk(jsonArrayRecords(cutAt(body, cuts)));
      expect(texts(records)).toEqual(['{"id":"p-1","email":"a@example.com"}', '{"id":"p-2","email":"b@example.com"}']);
      expect(records.map((r) => r.index)).toEqual([0, 1]);
    }
  });

  it('ignores , ] } and escaped quotes inside strings, wherever the chunks are cut', async () => {
    const first = String.raw`{"note":"a, b] c} d\" e, ]}","k\"ey":"[{"}`;
    const second = String.raw`{"path":"C:\\","next":"\\\"],"}`;
    const third = '"just, a ] string }"';
    const body = bytesOf(`[${first},${second},${third}]`);
    // Sanity: these are the JSON texts meant.
    expect(JSON.parse(first)).toEqual({ note: 'a, b] c} d" e, ]}', 'k"ey': '[{' });
    expect(JSON.parse(second)).toEqual({ path: 'C:\\', next: '\\"],' });
    for (const cuts of everySplit(body)) {
      const records = await readOk(jsonArrayRecords(cutAt(body, cuts)));
      expect(texts(records)).toEqual([first, second, third]);
    }
  });

  it('decodes multi-byte UTF-8 characters cut between chunks', async () => {
    const elements = ['{"name":"José Müller"}', '{"mood":"😀 ok"}', '"é"', '{"kanji":"東京","e":"😀😀"}'];
    const body = bytesOf(`[${elements.join(',')}]`);
    for (const cuts of everySplit(body)) {
      const records = await readOk(jsonArrayRecords(cutAt(body, cuts)));
      expect(texts(records)).toEqual(elements);
    }
  });

  it('keeps nested objects and arrays inside one element', async () => {
    const elements = [
      '{"a":{"b":[1,{"c":[2,3]}],"d":{}},"e":[]}',
      '[1,[2,[3,{"x":"]"}]]]',
      '{"list":[{"k":"v"},{"k":"w"}]}',
      '[]',
      '{}',
    ];
    const body = bytesOf(`[${elements.join(',')}]`);
    for (const cuts of everySplit(body)) {
      const records = await readOk(jsonArrayRecords(cutAt(body, cuts)));
      expect(texts(records)).toEqual(elements);
    }
  });

  it('skips whitespace and a byte order mark before [, and trims elements', async () => {
    const body = new Uint8Array([0xef, 0xbb, 0xbf, ...bytesOf(' \r\n\t [\n  {"a":1} ,\n\t{"b":2}\r\n]\n\n ')]);
    for (const cuts of everySplit(body)) {
      const records = await readOk(jsonArrayRecords(cutAt(body, cuts)));
      expect(records).toEqual([
        { index: 0, text: '{"a":1}' },
        { index: 1, text: '{"b":2}' },
      ]);
    }
    // A BOM in a string chunk is skipped too.
    expect(texts(await readOk(jsonArrayRecords(fromChunks(['\uFEFF  [1]']))))).toEqual(['1']);
  });

  it('yields nothing for an empty array', async () => {
    for (const body of ['[]', '[ ]', ' \n[\n]\n', '\uFEFF[]']) {
      expect(await readOk(jsonArrayRecords(fromChunks([bytesOf(body)])))).toEqual([]);
    }
    expect(await readOk(jsonArrayRecords(fromChunks(['[', ']'])))).toEqual([]);
  });

  it('yields an empty element between two commas, so the caller can reject it by index', async () => {
    const records = await readOk(jsonArrayRecords(fromChunks([bytesOf('[{"a":1},,{"b":2}]')])));
    expect(records).toEqual([
      { index: 0, text: '{"a":1}' },
      { index: 1, text: '' },
      { index: 2, text: '{"b":2}' },
    ]);
    const spaced = await readOk(jsonArrayRecords(fromChunks([bytesOf('[{"a":1}, \n ,{"b":2}]')])));
    expect(spaced.map((r) => r.text)).toEqual(['{"a":1}', '', '{"b":2}']);
  });

  it('rejects a body that is not an array', async () => {
    for (const body of ['{}', '{"a":1}', '"text"', '42', 'null', '  x[1]']) {
      const { records, error } = await readAll(jsonArrayRecords(fromChunks([bytesOf(body)])));
      expect(records).toEqual([]);
      expectInvalidInput(error, /must be an array/);
    }
  });

  it('rejects an empty or blank body', async () => {
    for (const chunks of [[], [bytesOf('')], [bytesOf('  \n\t ')]]) {
      const { records, error } = await readAll(jsonArrayRecords(fromChunks(chunks)));
      expect(records).toEqual([]);
      expectInvalidInput(error, /must be an array/);
    }
  });

  it('rejects an unterminated array after yielding what it had', async () => {
    const complete = await readAll(jsonArrayRecords(fromChunks([bytesOf('[{"a":1},'), bytesOf('{"b":2}')])));
    expect(texts(complete.records)).toEqual(['{"a":1}', '{"b":2}']);
    expectInvalidInput(complete.error, /not closed/);

    const truncated = await readAll(jsonArrayRecords(fromChunks([bytesOf('[{"a":1},{"b":'), bytesOf('"unfinished')])));
    expect(texts(truncated.records)).toEqual(['{"a":1}', '{"b":"unfinished']);
    expectInvalidInput(truncated.error, /not closed/);

    const open = await readAll(jsonArrayRecords(fromChunks([bytesOf('[')])));
    expect(open.records).toEqual([]);
    expectInvalidInput(open.error, /not closed/);

    // A ] inside a string does not close the array.
    const inString = await readAll(jsonArrayRecords(fromChunks([bytesOf('[{"a":"]"}, "]')])));
    expect(texts(inString.records)).toEqual(['{"a":"]"}', '"]']);
    expectInvalidInput(inString.error, /not closed/);
  });

  it('rejects data after the closing ]', async () => {
    const sameChunk = await readAll(jsonArrayRecords(fromChunks([bytesOf('[{"a":1},{"b":2}] x')])));
    expect(texts(sameChunk.records)).toEqual(['{"a":1}', '{"b":2}']);
    expectInvalidInput(sameChunk.error, /after the closing/);

    const laterChunk = await readAll(jsonArrayRecords(fromChunks([bytesOf('[1]\n'), bytesOf('  [2]')])));
    expect(texts(laterChunk.records)).toEqual(['1']);
    expectInvalidInput(laterChunk.error, /after the closing/);

    // Trailing whitespace is fine.
    expect(texts(await readOk(jsonArrayRecords(fromChunks([bytesOf('[1]'), bytesOf(' \r\n\t')]))))).toEqual(['1']);
  });

  describe('property: random arrays of random objects, cut into random chunks', () => {
    const alphabet = [
      'a', 'b', 'Z', '0', ' ', ',', ']', '[', '}', '{', ':', '"', '\\', '/', '\n', '\t', '\r', 'é', 'ß', '東', '😀', '\u0000', '\u2028',
    ];
    const randomString = (rand: () => number): string => {
      const length = Math.floor(rand() * 8);
      let s = '';
      for (let i = 0; i < length; i++) s += alphabet[Math.floor(rand() * alphabet.length)]!;
      return s;
    };
    const randomValue = (rand: () => number, depth: number): unknown => {
      const kind = Math.floor(rand() * (depth > 2 ? 5 : 7));
      switch (kind) {
        case 0:
          return null;
        case 1:
          return rand() < 0.5;
        case 2:
          return Math.floor((rand() - 0.5) * 1e6);
        case 3:
          return (rand() - 0.5) * 1e3;
        case 4:
          return randomString(rand);
        case 5:
          return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
        default:
          return randomObject(rand, depth + 1);
      }
    };
    const randomObject = (rand: () => number, depth: number): Record<string, unknown> => {
      const object: Record<string, unknown> = {};
      const size = Math.floor(rand() * 5);
      for (let i = 0; i < size; i++) object[randomString(rand)] = randomValue(rand, depth);
      return object;
    };

    it('yields exactly JSON.stringify of each element, in order', async () => {
      for (let seed = 1; seed <= 300; seed++) {
        const rand = prng(seed);
        const elements = Array.from({ length: Math.floor(rand() * 12) }, () => randomObject(rand, 0));
        const body = bytesOf(JSON.stringify(elements));
        const records = await readOk(jsonArrayRecords(chunked(body, () => 1 + Math.floor(rand() * 50))));
        // The seed is part of the compared value, so a failure names it.
        expect({ seed, texts: texts(records), indexes: records.map((r) => r.index) }).toEqual({
          seed,
          texts: elements.map((e) => JSON.stringify(e)),
          indexes: elements.map((_, i) => i),
        });
      }
    });

    it('yields elements that parse back to the originals when pretty-printed', async () => {
      for (let seed = 1001; seed <= 1150; seed++) {
        const rand = prng(seed);
        const elements = Array.from({ length: Math.floor(rand() * 8) }, () => randomObject(rand, 0));
        const body = bytesOf(`\uFEFF\n${JSON.stringify(elements, null, 1 + Math.floor(rand() * 4))}\n`);
        const records = await readOk(jsonArrayRecords(chunked(body, () => 1 + Math.floor(rand() * 50))));
        expect({ seed, parsed: records.map((r) => JSON.parse(r.text) as unknown) }).toEqual({ seed, parsed: elements });
      }
    });

    it('splits NDJSON the same way, with line numbers', async () => {
      for (let seed = 2001; seed <= 2150; seed++) {
        const rand = prng(seed);
        const elements = Array.from({ length: Math.floor(rand() * 10) }, () => randomObject(rand, 0));
        const lines: string[] = [];
        const expected: RawRecord[] = [];
        for (const [index, element] of elements.entries()) {
          while (rand() < 0.3) lines.push(rand() < 0.5 ? '' : '  \t');
          lines.push(JSON.stringify(element));
          expected.push({ index, line: lines.length, text: JSON.stringify(element) });
        }
        const eol = rand() < 0.5 ? '\n' : '\r\n';
        const body = bytesOf(lines.join(eol) + (rand() < 0.5 ? eol : ''));
        const records = await readOk(ndjsonRecords(chunked(body, () => 1 + Math.floor(rand() * 50))));
        expect({ seed, records }).toEqual({ seed, records: expected });
      }
    });
  });
});

describe('ndjsonRecords', () => {
  it('yields one record per non-blank line, with 1-based line numbers', async () => {
    const body = bytesOf('{"a":1}\n\n{"b":2}\n   \n\t\n{"c":3}\n');
    expect(await readOk(ndjsonRecords(fromChunks([body])))).toEqual([
      { index: 0, line: 1, text: '{"a":1}' },
      { index: 1, line: 3, text: '{"b":2}' },
      { index: 2, line: 6, text: '{"c":3}' },
    ]);
  });

  it('handles CRLF line endings and blank CRLF lines', async () => {
    const body = bytesOf('\r\n{"a":1}\r\n\r\n{"b":2}\r\n \r\n{"c":3}\r\n');
    for (const cuts of everySplit(body)) {
      const records = await readOk(ndjsonRecords(cutAt(body, cuts)));
      expect(records).toEqual([
        { index: 0, line: 2, text: '{"a":1}' },
        { index: 1, line: 4, text: '{"b":2}' },
        { index: 2, line: 6, text: '{"c":3}' },
      ]);
    }
  });

  it('yields a last line that has no trailing newline', async () => {
    const body = bytesOf('{"a":1}\n\n{"b":2}');
    for (const cuts of everySplit(body)) {
      expect(await readOk(ndjsonRecords(cutAt(body, cuts)))).toEqual([
        { index: 0, line: 1, text: '{"a":1}' },
        { index: 1, line: 3, text: '{"b":2}' },
      ]);
    }
  });

  it('reassembles records and multi-byte characters cut between chunks', async () => {
    const lines = ['{"name":"José","city":"Zürich"}', '{"mood":"😀","kanji":"東京"}', '{"s":"a, ] } \\" b"}'];
    const body = bytesOf(`${lines.join('\n')}\n`);
    for (const cuts of everySplit(body)) {
      const records = await readOk(ndjsonRecords(cutAt(body, cuts)));
      expect(records).toEqual(lines.map((text, index) => ({ index, line: index + 1, text })));
    }
  });

  it('skips a byte order mark at the start', async () => {
    const body = new Uint8Array([0xef, 0xbb, 0xbf, ...bytesOf('{"a":1}\n')]);
    for (const cuts of everySplit(body)) {
      expect(await readOk(ndjsonRecords(cutAt(body, cuts)))).toEqual([{ index: 0, line: 1, text: '{"a":1}' }]);
    }
  });

  it('accepts string chunks', async () => {
    expect(await readOk(ndjsonRecords(fromChunks(['{"a"', ':1}\n{"b":', '2}\n'])))).toEqual([
      { index: 0, line: 1, text: '{"a":1}' },
      { index: 1, line: 2, text: '{"b":2}' },
    ]);
  });

  it('does not silently drop a truncated multi-byte character at the end of the body', async () => {
    const body = new Uint8Array([...bytesOf('{"a":"é"}\n{"b":"'), 0xc3]);
    expect(await readOk(ndjsonRecords(cutAt(body, [body.length - 1])))).toEqual([
      { index: 0, line: 1, text: '{"a":"é"}' },
      { index: 1, line: 2, text: '{"b":"\uFFFD' },
    ]);
  });

  it('yields nothing for an empty or blank body', async () => {
    expect(await readOk(ndjsonRecords(fromChunks([])))).toEqual([]);
    expect(await readOk(ndjsonRecords(fromChunks([bytesOf('')])))).toEqual([]);
    expect(await readOk(ndjsonRecords(fromChunks([bytesOf('\n\r\n  \n\t')])))).toEqual([]);
  });

  it('passes invalid lines through as text, for the caller to reject by line', async () => {
    expect(await readOk(ndjsonRecords(fromChunks([bytesOf('{"a":1}\nnot json\n{"b":')])))).toEqual([
      { index: 0, line: 1, text: '{"a":1}' },
      { index: 1, line: 2, text: 'not json' },
      { index: 2, line: 3, text: '{"b":' },
    ]);
  });
});

describe('jsonArrayRecords regressions', () => {
  it('yields an empty element for a trailing comma, so the caller rejects it', async () => {
    const records = await readOk(jsonArrayRecords(fromChunks(['[1,]'])));
    expect(records.map((r) => [r.index, r.text])).toEqual([
      [0, '1'],
      [1, ''],
    ]);
    expect(await readOk(jsonArrayRecords(fromChunks(['[]'])))).toEqual([]);
  });

  it('counts a dangling partial character after the closing bracket as data', async () => {
    const { error } = await readAll(jsonArrayRecords(fromChunks([bytesOf('[1]'), new Uint8Array([0xc3])])));
    expectInvalidInput(error);
  });
});
