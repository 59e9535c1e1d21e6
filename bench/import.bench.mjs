// Import benchmark: 100,000 profiles in ONE request to POST /v1/profiles/import on the embedded
// default (PGlite), as NDJSON (new ids; the headline figure) and then as a JSON array (the same
// ids again, so updates). Writes bench/results/import.json. Run with `npm run bench:import`.
import { machine, peakRssMiB, postStream, resetPeakRss, round, rssMiB, startPlatform, writeResults } from './lib.mjs';

const PROFILES = 100_000;
const WARMUP_PROFILES = 1_000;
const TARGET_SECONDS = 10;
const CHUNK_BYTES = 64 * 1024;

const FIRST = ['Alice', 'Bruno', 'Chloé', 'Dmitri', 'Emma', 'Farid', 'Grace', 'Hugo', 'Inès', 'Jonas', 'Keiko', 'Liam', 'Maya', 'Noah', 'Olga', 'Pablo', 'Quentin', 'Rosa', 'Sami', 'Tara'];
const LAST = ['Martin', 'Bernard', 'Müller', 'Rossi', 'García', 'Nowak', 'Smith', 'Tanaka', 'Silva', 'Dubois', 'Jensen', "O'Brien", 'Kowalski', 'Novak', 'Costa', 'Weber'];
const LOCALES = ['en-US', 'en-GB', 'fr-FR', 'de-DE', 'es-ES', 'it-IT', 'pt-BR', 'ja-JP', 'pl-PL', 'nl-NL'];
const TIMEZONES = ['America/New_York', 'Europe/London', 'Europe/Paris', 'Europe/Berlin', 'Europe/Madrid', 'Europe/Rome', 'America/Sao_Paulo', 'Asia/Tokyo', 'Europe/Warsaw', 'Europe/Amsterdam'];
const PLANS = ['free', 'starter', 'pro', 'enterprise'];

/** Deterministic, realistic-looking profile number `n` (same input, same profile, every run). */
function profile(prefix, n) {
  const h = Math.imul(n ^ 0x9e3779b9, 0x85ebca6b) >>> 0; // cheap hash so fields don't move in lockstep
  const firstName = FIRST[h % FIRST.length];
  const lastName = LAST[(h >>> 8) % LAST.length];
  const region = (h >>> 16) % LOCALES.length; // locale and time zone agree
  const id = `${prefix}-${String(n).padStart(6, '0')}`;
  const local = `${firstName}.${lastName}`.normalize('NFD').replace(/[^A-Za-z.]/g, '').toLowerCase();
  return {
    id,
    email: `${local}.${n}@example.com`,
    firstName,
    lastName,
    locale: LOCALES[region],
    timezone: TIMEZONES[region],
    attributes: { plan: PLANS[(h >>> 4) % PLANS.length], signupYear: 2015 + (h % 11), newsletter: (h & 1) === 1 },
  };
}

/** Text pieces glued into ~64 KiB chunks, so the body streams without one giant string. */
function* chunked(pieces) {
  let chunk = '';
  for (const piece of pieces) {
    chunk += piece;
    if (chunk.length >= CHUNK_BYTES) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

function* ndjson(prefix, count) {
  for (let n = 1; n <= count; n++) yield `${JSON.stringify(profile(prefix, n))}\n`;
}

function* jsonArray(prefix, count) {
  yield '[';
  for (let n = 1; n <= count; n++) yield `${n > 1 ? ',\n' : ''}${JSON.stringify(profile(prefix, n))}`;
  yield ']\n';
}

/** One import request; fails loudly unless every profile landed. */
async function importProfiles(platform, label, format, prefix, count) {
  const contentType = format === 'ndjson' ? 'application/x-ndjson' : 'application/json';
  const pieces = format === 'ndjson' ? ndjson(prefix, count) : jsonArray(prefix, count);
  const answer = await postStream(`${platform.url}/v1/profiles/import`, {
    headers: { authorization: `Bearer ${platform.token}`, 'content-type': contentType },
    body: chunked(pieces),
  });
  const { status, json } = answer;
  if (status !== 200 || json?.imported !== count || json?.rejectedCount !== 0) {
    const detail = json ? JSON.stringify({ ...json, rejected: json.rejected?.slice(0, 5) }) : answer.text.slice(0, 500);
    throw new Error(`${label}: expected ${count} imported and 0 rejected, got HTTP ${status} after ${round(answer.seconds, 1)} s: ${detail}`);
  }
  console.error(`${label}: ${count} profiles in ${round(answer.seconds, 2)} s`);
  return answer.seconds;
}

async function main() {
  // Fail on the bench's own data before starting anything.
  for (const tz of TIMEZONES) new Intl.DateTimeFormat('en-US', { timeZone: tz });

  const platform = await startPlatform();
  try {
    console.error(`platform up at ${platform.url} (store: ${platform.store}, pid ${platform.pid})`);
    await importProfiles(platform, 'warm-up (ndjson)', 'ndjson', 'warmup', WARMUP_PROFILES);

    // Memory per phase: the whole-life peak is usually set at startup (PGlite's initdb on the
    // fresh HERALD_HOME), so the peak is also reset (where Linux allows) before each timed import.
    const { pid } = platform;
    const rss = { startupAndWarmUpPeakMiB: peakRssMiB(pid), beforeImportMiB: rssMiB(pid) };
    const peaks = [rss.startupAndWarmUpPeakMiB];
    const phasePeak = async (key, run) => {
      const reset = resetPeakRss(pid);
      const seconds = await run();
      const peak = peakRssMiB(pid); // read while the child is still alive
      peaks.push(peak);
      if (reset) rss[key] = peak;
      return seconds;
    };
    const seconds = await phasePeak('ndjsonImportPeakMiB', () =>
      importProfiles(platform, 'timed import (ndjson, new ids)', 'ndjson', 'bench', PROFILES),
    );
    const arraySeconds = await phasePeak('jsonArrayImportPeakMiB', () =>
      importProfiles(platform, 'timed import (json array, updates)', 'json', 'bench', PROFILES),
    );
    rss.afterImportsMiB = rssMiB(pid);
    const known = peaks.filter((p) => p !== null);
    const gatewayPeakRssMiB = known.length ? Math.max(...known) : null; // whole life of the child

    const result = {
      benchmark: 'import',
      profiles: PROFILES,
      seconds: round(seconds),
      profilesPerSecond: Math.round(PROFILES / seconds),
      targetSeconds: TARGET_SECONDS,
      ratio: round(TARGET_SECONDS / seconds),
      jsonArray: { seconds: round(arraySeconds), profilesPerSecond: Math.round(PROFILES / arraySeconds) },
      gatewayPeakRssMiB,
      gatewayRss: rss,
      store: platform.store,
      machine: machine(),
      measuredAt: new Date().toISOString(),
    };
    const path = writeResults('import', result);
    console.log(
      `import: ${PROFILES} profiles in ${result.seconds} s (${result.profilesPerSecond}/s, ${result.ratio}x the ${TARGET_SECONDS} s target${result.ratio >= 1 ? '' : ': OVER TARGET'}); ` +
        `json array ${result.jsonArray.seconds} s; gateway peak RSS ${gatewayPeakRssMiB} MiB (during the ndjson import ${rss.ndjsonImportPeakMiB ?? '?'} MiB); ${result.store}; written to ${path}`,
    );
  } finally {
    await platform.stop();
  }
}

main().catch((error) => {
  console.error(`bench:import FAILED: ${error.stack ?? error}`);
  process.exit(1);
});
