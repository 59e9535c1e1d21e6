// Finding and rewriting the trackable links of an HTML body.
//
// Trackable: an `<a>` whose href is an absolute http(s) URL and that has no
// `data-herald-notrack` attribute. mailto:, tel:, #anchors, relative and other schemes are
// left alone. The link list is taken from the TEMPLATE source, before personalization: a
// placeholder inside an href (`https://shop.example/?u={{profile.id}}`) is stored, and later
// redirected to, literally. Personalizing the redirect target at click time is deliberately
// not done: it would let a recipient's data choose where a signed Herald URL redirects to.
//
// This is a scanner for the markup email tools produce, not a full HTML parser: it skips
// comments and honours quoted attribute values (which may contain '>').

/** `<a ...>` tags (attribute values may hold '>') and comments, which are skipped. */
const TAG = /<!--[\s\S]*?-->|<a(?=[\s/>])((?:[^>"']|"[^"]*"|'[^']*')*)>/gi;
const ATTRIBUTE = /([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
const TRACKABLE = /^https?:\/\//i;

interface Anchor {
  /** Absolute offsets in the HTML of the whole `href=...` attribute. */
  hrefStart: number;
  hrefEnd: number;
  url: string;
}

/** Every trackable anchor, in document order (duplicates included). */
function trackableAnchors(html: string): Anchor[] {
  const anchors: Anchor[] = [];
  for (const tag of html.matchAll(TAG)) {
    const attributes = tag[1];
    if (attributes === undefined) continue; // a comment
    // Offset of the attribute text inside the HTML: after '<a'.
    const base = tag.index + 2;
    let href: Anchor | undefined;
    let notrack = false;
    for (const attribute of attributes.matchAll(ATTRIBUTE)) {
      const name = attribute[1]!.toLowerCase();
      if (name === 'data-herald-notrack') notrack = true;
      else if (name === 'href' && href === undefined) {
        // The first href wins, as in browsers.
        const raw = attribute[2] ?? attribute[3] ?? attribute[4] ?? '';
        const start = base + attribute.index;
        href = { hrefStart: start, hrefEnd: start + attribute[0].length, url: decodeEntities(raw).trim() };
      }
    }
    if (href !== undefined && !notrack && TRACKABLE.test(href.url)) anchors.push(href);
  }
  return anchors;
}

/** The distinct trackable URLs, in order of first appearance, with entities decoded. */
export function extractLinks(html: string): string[] {
  return [...new Set(trackableAnchors(html).map((anchor) => anchor.url))];
}

/**
 * Replaces the href of every trackable anchor with `linkUrl(index, url)`, where index is the
 * URL's position in extractLinks(html). The new value is written double-quoted and escaped.
 */
export function rewriteLinks(html: string, linkUrl: (index: number, url: string) => string): string {
  const anchors = trackableAnchors(html);
  if (anchors.length === 0) return html;
  const indexes = new Map<string, number>();
  let out = '';
  let last = 0;
  for (const anchor of anchors) {
    let index = indexes.get(anchor.url);
    if (index === undefined) {
      index = indexes.size;
      indexes.set(anchor.url, index);
    }
    out += `${html.slice(last, anchor.hrefStart)}href="${escapeAttribute(linkUrl(index, anchor.url))}"`;
    last = anchor.hrefEnd;
  }
  return out + html.slice(last);
}

export function escapeAttribute(value: string): string {
  return value.replace(/[&"<>]/g, (char) => ATTRIBUTE_ENTITIES[char]!);
}

const ATTRIBUTE_ENTITIES: Record<string, string> = { '&': '&amp;', '"': '&quot;', '<': '&lt;', '>': '&gt;' };

const NAMED_ENTITIES: Record<string, string> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: '\u00a0',
};

// Named references need their ';': in an href, `?a=1&lt=2` is a query parameter, not '<'.
const ENTITY = /&(?:#(\d{1,7});?|#[xX]([0-9a-fA-F]{1,6});?|([a-zA-Z][a-zA-Z0-9]*);)/g;

/** Decodes the entities that occur in URLs (&amp; above all); unknown ones stay as written. */
export function decodeEntities(value: string): string {
  if (!value.includes('&')) return value;
  return value.replace(ENTITY, (whole, decimal: string | undefined, hex: string | undefined, name: string | undefined) => {
    if (name !== undefined) {
      const named = NAMED_ENTITIES[name.toLowerCase()];
      return named === undefined ? whole : named;
    }
    const code = decimal !== undefined ? Number.parseInt(decimal, 10) : Number.parseInt(hex!, 16);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}
