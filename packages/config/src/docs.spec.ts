import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { GENERATED_BEGIN, GENERATED_END, renderConfigurationTable, settingDocs, updateConfigurationDoc } from './docs.js';

const DOC = new URL('../../../docs/configuration.md', import.meta.url);

describe('docs/configuration.md', () => {
  it('is what the configuration schema renders now (run `npm run docs:config` after changing a setting)', () => {
    const current = readFileSync(DOC, 'utf8');
    expect(updateConfigurationDoc(current)).toBe(current);
  });
});

describe('the configuration reference', () => {
  it('describes every variable, with its default or what unset means', () => {
    const docs = settingDocs();
    expect(docs.map((d) => d.name)).toContain('CONFIRMATION_TTL');
    expect(docs.find((d) => d.name === 'CONFIRMATION_TTL')).toMatchObject({ default: '`10m`' });
    expect(docs.find((d) => d.name === 'PORT')).toMatchObject({ default: '`8080`' });
    // A default computed on the machine at hand is shown as what it means, not as a number.
    expect(docs.find((d) => d.name === 'ENGINE_THREADS')).toMatchObject({ default: 'the core count' });
    expect(docs.find((d) => d.name === 'HERALD_JWKS_URL')).toMatchObject({ default: '—' });
  });

  it('refuses a variable without a description', () => {
    const schema = z.object({ DESCRIBED: z.string().describe('yes'), UNDESCRIBED: z.string() });
    expect(() => settingDocs(schema)).toThrow(/UNDESCRIBED has no description/);
  });

  it('keeps the prose around the generated table, and a pipe inside a cell', () => {
    const schema = z.object({ A: z.string().default('x|y').describe('one | two') });
    const doc = `# Intro\n${GENERATED_BEGIN}\nstale\n${GENERATED_END}\nOutro\n`;
    expect(updateConfigurationDoc(doc, schema)).toBe(`# Intro\n${GENERATED_BEGIN}\n${renderConfigurationTable(schema)}\n${GENERATED_END}\nOutro\n`);
    expect(renderConfigurationTable(schema)).toContain('| `A` | `x\\|y` | one \\| two |');
    expect(() => updateConfigurationDoc('# no markers\n', schema)).toThrow(/markers/);
  });
});
