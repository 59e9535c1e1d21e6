import { decodeEntities, extractLinks, rewriteLinks } from './links.js';

const tracked = (index: number): string => `https://t.example/c/${index}`;

describe('extractLinks', () => {
  it('finds double, single and unquoted hrefs, case-insensitively, in order, distinct', () => {
    const html = [
      '<a href="https://a.example/1">1</a>',
      "<A HREF='https://a.example/2'>2</A>",
      '<a class=x href=https://a.example/3>3</a>',
      '<a href="https://a.example/1">1 again</a>',
      '<a\n  target="_blank"\n  Href = "http://a.example/4"\n>4</a>',
    ].join('\n');
    expect(extractLinks(html)).toEqual([
      'https://a.example/1',
      'https://a.example/2',
      'https://a.example/3',
      'http://a.example/4',
    ]);
  });

  it('decodes entities in hrefs', () => {
    expect(extractLinks('<a href="https://a.example/?x=1&amp;y=2&#38;z=3&#x26;w=&quot;4&quot;">x</a>')).toEqual([
      'https://a.example/?x=1&y=2&z=3&w="4"',
    ]);
    expect(decodeEntities('a&lt=1&unknown;&amp')).toBe('a&lt=1&unknown;&amp');
  });

  it('skips non-http(s) links, anchors, notrack links, comments and non-anchor tags', () => {
    const html = [
      '<a href="mailto:a@example.com">m</a>',
      '<a href="tel:+331234">t</a>',
      '<a href="#top">top</a>',
      '<a href="/relative">r</a>',
      '<a href="javascript:alert(1)">j</a>',
      '<a data-herald-notrack href="https://a.example/private">p</a>',
      '<a href="https://a.example/private2" DATA-HERALD-NOTRACK="">p</a>',
      '<!-- <a href="https://a.example/commented">c</a> -->',
      '<abbr href="https://a.example/abbr">x</abbr>',
      '<area href="https://a.example/area">',
      '<a name="x">no href</a>',
      '<a href="HTTPS://A.example/upper">u</a>',
    ].join('');
    expect(extractLinks(html)).toEqual(['HTTPS://A.example/upper']);
  });

  it('copes with ">" inside attribute values and the first href winning', () => {
    const html = '<a title="a > b" href="https://a.example/gt" href="https://a.example/second">x</a>';
    expect(extractLinks(html)).toEqual(['https://a.example/gt']);
  });

  it('keeps personalization placeholders literally', () => {
    expect(extractLinks('<a href="https://shop.example/?u={{profile.id}}">x</a>')).toEqual([
      'https://shop.example/?u={{profile.id}}',
    ]);
  });

  it('returns nothing for html without links', () => {
    expect(extractLinks('<p>no links</p>')).toEqual([]);
    expect(extractLinks('')).toEqual([]);
  });
});

describe('rewriteLinks', () => {
  it('replaces each tracked href with the URL for its index in extractLinks', () => {
    const html =
      '<p><a href="https://a.example/1">1</a> <a href=\'https://a.example/2\' class="b">2</a> ' +
      '<a href=https://a.example/1>1 again</a></p>';
    const seen: [number, string][] = [];
    const out = rewriteLinks(html, (index, url) => {
      seen.push([index, url]);
      return tracked(index);
    });
    expect(out).toBe(
      '<p><a href="https://t.example/c/0">1</a> <a href="https://t.example/c/1" class="b">2</a> ' +
        '<a href="https://t.example/c/0">1 again</a></p>',
    );
    expect(seen).toEqual([
      [0, 'https://a.example/1'],
      [1, 'https://a.example/2'],
      [0, 'https://a.example/1'],
    ]);
  });

  it('leaves mailto, tel, anchors and notrack links untouched', () => {
    const html =
      '<a href="mailto:a@example.com">m</a><a href="tel:+1">t</a><a href="#x">#</a>' +
      '<a href="https://a.example/keep" data-herald-notrack>k</a><a href="https://a.example/go">g</a>';
    expect(rewriteLinks(html, tracked)).toBe(
      '<a href="mailto:a@example.com">m</a><a href="tel:+1">t</a><a href="#x">#</a>' +
        '<a href="https://a.example/keep" data-herald-notrack>k</a><a href="https://t.example/c/0">g</a>',
    );
  });

  it('indexes agree with extractLinks when notrack and tracked uses of URLs are mixed', () => {
    const html =
      '<a href="https://a.example/x" data-herald-notrack>x</a><a href="https://a.example/y">y</a>' +
      '<a href="https://a.example/x">x</a>';
    expect(extractLinks(html)).toEqual(['https://a.example/y', 'https://a.example/x']);
    expect(rewriteLinks(html, tracked)).toBe(
      '<a href="https://a.example/x" data-herald-notrack>x</a><a href="https://t.example/c/0">y</a>' +
        '<a href="https://t.example/c/1">x</a>',
    );
  });

  it('escapes the new value for the attribute', () => {
    expect(rewriteLinks('<a href="https://a.example">x</a>', () => 'https://t.example/?a=1&b="2"')).toBe(
      '<a href="https://t.example/?a=1&amp;b=&quot;2&quot;">x</a>',
    );
  });

  it('returns html without tracked links unchanged', () => {
    const html = '<a href="mailto:x@example.com">x</a>';
    expect(rewriteLinks(html, tracked)).toBe(html);
  });
});
