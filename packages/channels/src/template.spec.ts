import { compileTemplate, escapeHeader, escapeHtml, render } from './template.js';

const profile = {
  id: 'p-1',
  firstName: 'Ada',
  lastName: 'Lovelace',
  empty: '',
  nothing: null,
  visits: 42,
  vip: false,
  attributes: { plan: 'pro', address: { city: 'Paris' } },
};
const data = { profile };

const renderText = (source: string, values: Record<string, unknown> = data): string =>
  render(compileTemplate(source), values, 'text');

describe('compileTemplate / render', () => {
  it('substitutes top-level and nested paths', () => {
    expect(renderText('Hi {{profile.firstName}} {{profile.lastName}}!')).toBe('Hi Ada Lovelace!');
    expect(renderText('{{profile.attributes.plan}} / {{profile.attributes.address.city}}')).toBe('pro / Paris');
  });

  it('tolerates whitespace inside the braces and around the default', () => {
    expect(renderText('{{   profile.firstName   }}')).toBe('Ada');
    expect(renderText('{{ profile.missing|"x" }}')).toBe('x');
    expect(renderText('{{profile.missing   |   "friend"   }}')).toBe('friend');
  });

  it('renders the default for missing, null and empty values, and "" without a default', () => {
    expect(renderText('Hi {{ profile.nickname | "there" }}')).toBe('Hi there');
    expect(renderText('Hi {{ profile.nothing | "there" }}')).toBe('Hi there');
    expect(renderText('Hi {{ profile.empty | "there" }}')).toBe('Hi there');
    expect(renderText('Hi {{ profile.attributes.nope.deeper | "there" }}')).toBe('Hi there');
    expect(renderText('Hi {{ profile.nickname }}!')).toBe('Hi !');
    expect(renderText('Hi {{ profile.firstName | "there" }}')).toBe('Hi Ada');
  });

  it('supports escaped quotes and an empty default', () => {
    expect(renderText('{{ profile.x | "say \\"hi\\"" }}')).toBe('say "hi"');
    expect(renderText('[{{ profile.x | "" }}]')).toBe('[]');
  });

  it('renders numbers and booleans, not objects', () => {
    expect(renderText('{{profile.visits}} {{profile.vip}}')).toBe('42 false');
    expect(renderText('[{{profile.attributes}}]')).toBe('[]');
    expect(renderText('[{{profile.attributes | "none"}}]')).toBe('[none]');
  });

  it('does not reach into prototypes', () => {
    expect(renderText('[{{ profile.constructor.name }}]')).toBe('[]');
    expect(renderText('[{{ profile.toString }}]')).toBe('[]');
    expect(renderText('[{{ profile.__proto__ }}]')).toBe('[]');
  });

  it('leaves malformed or unknown brace sequences literal', () => {
    const cases = [
      'a {{ b',
      '{{}}',
      '{{ }}',
      '{ profile.firstName }',
      '{{ profile..firstName }}',
      '{{ .profile }}',
      '{{ profile.firstName | default }}',
      '{{ profile.firstName | "unterminated }}',
      '{{ profile.first name }}',
      '{{ profile.firstName }',
      '}} {{',
    ];
    for (const source of cases) expect(renderText(source)).toBe(source);
    expect(renderText('{{{ profile.firstName }}}')).toBe('{Ada}');
    expect(renderText('{{ bad }} {{ profile.firstName }} {{')).toBe(' Ada {{');
  });

  it('parses once: the compiled parts are reused for every render', () => {
    const compiled = compileTemplate('Hello {{ profile.firstName | "you" }}, plan {{ profile.attributes.plan }}.');
    expect(compiled.parts).toEqual([
      'Hello ',
      { path: ['profile', 'firstName'], fallback: 'you' },
      ', plan ',
      { path: ['profile', 'attributes', 'plan'], fallback: '' },
      '.',
    ]);
    for (let i = 0; i < 10_000; i++) {
      expect(render(compiled, { profile: { firstName: `n${i}` } }, 'text')).toBe(`Hello n${i}, plan .`);
    }
  });

  it('returns a source without placeholders as is', () => {
    const compiled = compileTemplate('plain <b>text</b>');
    expect(compiled.isStatic).toBe(true);
    expect(render(compiled, {}, 'html')).toBe('plain <b>text</b>');
  });
});

describe('escaping', () => {
  const nasty = { profile: { firstName: `<script>alert("x" & 'y')</script>` } };

  it('html escapes & < > " \' in values, not in the template', () => {
    expect(render(compileTemplate('<b>{{ profile.firstName }}</b>'), nasty, 'html')).toBe(
      '<b>&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;</b>',
    );
    expect(escapeHtml('plain')).toBe('plain');
  });

  it('html escapes defaults too', () => {
    expect(render(compileTemplate('{{ profile.x | "<you>" }}'), data, 'html')).toBe('&lt;you&gt;');
  });

  it('text does not escape', () => {
    expect(render(compileTemplate('{{ profile.firstName }}'), nasty, 'text')).toBe(nasty.profile.firstName);
  });

  it('header replaces CR, LF and other control characters with spaces', () => {
    const injected = { profile: { firstName: 'Bob\r\nBcc: evil@example.com\nX\rY\u0000Z\u0085W\u2028V\tU' } };
    const out = render(compileTemplate('Hi {{ profile.firstName }}'), injected, 'header');
    expect(out).toBe('Hi Bob  Bcc: evil@example.com X Y Z W V U');
    expect(out).not.toMatch(/[\r\n]/);
    expect(escapeHeader('Zoë 🎉')).toBe('Zoë 🎉');
  });
});
