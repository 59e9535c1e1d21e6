// Personalization templates: `{{ path }}` / `{{ path | "default" }}` placeholders parsed once
// into literal and variable parts, then rendered per recipient with the escaping of the place
// the value lands in (HTML body, plain text, or a header line).
//
// A campaign renders the same template for every recipient, so all parsing happens in
// compileTemplate and render() is a walk over prepared parts.

export type Escaping = 'html' | 'text' | 'header';

export interface TemplateVariable {
  /** Dot-separated path split once, e.g. ['profile', 'attributes', 'plan']. */
  readonly path: readonly string[];
  /** What a missing, null or empty value renders as ('' when the placeholder has no default). */
  readonly fallback: string;
}

export type TemplatePart = string | TemplateVariable;

export interface CompiledTemplate {
  readonly source: string;
  readonly parts: readonly TemplatePart[];
  /** True when the source has no placeholder: render() then returns the source as is. */
  readonly isStatic: boolean;
}

// Anything that does not match exactly (bad path, unterminated default, stray braces) is left
// in the output literally: a typo in a template shows up in a test send instead of vanishing.
const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_$-]+(?:\.[A-Za-z0-9_$-]+)*)\s*(?:\|\s*"((?:[^"\\\r\n]|\\.)*)"\s*)?\}\}/g;

export function compileTemplate(source: string): CompiledTemplate {
  const parts: TemplatePart[] = [];
  let last = 0;
  for (const match of source.matchAll(PLACEHOLDER)) {
    if (match.index > last) parts.push(source.slice(last, match.index));
    const fallback = match[2] === undefined ? '' : match[2].replace(/\\(.)/g, '$1');
    parts.push({ path: match[1]!.split('.'), fallback });
    last = match.index + match[0].length;
  }
  if (last < source.length) parts.push(source.slice(last));
  return { source, parts, isStatic: parts.every((part) => typeof part === 'string') };
}

export function render(compiled: CompiledTemplate, data: Record<string, unknown>, escaping: Escaping): string {
  if (compiled.isStatic) return compiled.source;
  let out = '';
  for (const part of compiled.parts) out += typeof part === 'string' ? part : renderValue(part, data, escaping);
  return out;
}

/** What one placeholder renders as for `data`: its value (or default), escaped for its place. */
export function renderValue(variable: TemplateVariable, data: Record<string, unknown>, escaping: Escaping): string {
  const value = stringify(lookup(data, variable.path));
  // The default is escaped too: it stands in for a value and lands in the same place.
  return ESCAPERS[escaping](value === '' ? variable.fallback : value);
}

/** A template part ready to be written into a buffer: literal text as its UTF-8 bytes. */
export type ByteTemplatePart = Buffer | TemplateVariable;

/** The parts of a compiled template with the literal text encoded once, for writers into a buffer. */
export function toByteParts(compiled: CompiledTemplate): ByteTemplatePart[] {
  return compiled.parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'utf8') : part));
}

function lookup(data: unknown, path: readonly string[]): unknown {
  let current = data;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    // Own properties only: `{{ profile.constructor.name }}` must not reach into prototypes.
    if (!Object.hasOwn(current, key)) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function stringify(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
      return Number.isFinite(value) ? String(value) : '';
    case 'bigint':
    case 'boolean':
      return String(value);
    default:
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? '' : value.toISOString();
      // Objects and arrays would print as "[object Object]" or a comma soup: render nothing.
      return '';
  }
}

const HTML_SPECIAL = /[&<>"']/;
const HTML_SPECIALS = /[&<>"']/g;
const HTML_ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: string): string {
  // Most personalization values (names, plans) have nothing to escape: skip the replace.
  return HTML_SPECIAL.test(value) ? value.replace(HTML_SPECIALS, (char) => HTML_ENTITIES[char]!) : value;
}

// C0 and C1 controls, DEL, and the Unicode line/paragraph separators some clients break on.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const HEADER_UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const HEADER_UNSAFES = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/** Makes a value safe for one header line: it can never start a new header. */
export function escapeHeader(value: string): string {
  return HEADER_UNSAFE.test(value) ? value.replace(HEADER_UNSAFES, ' ') : value;
}

const ESCAPERS: Record<Escaping, (value: string) => string> = {
  html: escapeHtml,
  text: (value) => value,
  header: escapeHeader,
};
