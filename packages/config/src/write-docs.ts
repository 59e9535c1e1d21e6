// `npm run docs:config`: rewrites the generated table of docs/configuration.md from the
// environment schema (see docs.ts), leaving the hand-written prose around it as it is.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { updateConfigurationDoc } from './docs.js';

const file = fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url));
const current = readFileSync(file, 'utf8');
const updated = updateConfigurationDoc(current);
if (updated === current) {
  console.log(`${file} is up to date`);
} else {
  writeFileSync(file, updated);
  console.log(`${file} rewritten from the configuration schema`);
}
