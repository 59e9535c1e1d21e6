// Signed tracking tokens carried by open-pixel, click and unsubscribe URLs.
//
// Format: base64url(JSON with one-letter keys) + '.' + base64url(HMAC-SHA256 truncated to
// 16 bytes). The MAC covers the encoded payload text itself, so there is no canonical form to
// get wrong, and the signature is compared as text, so even base64url's unused trailing bits
// cannot be flipped without the token being rejected. 128 bits of MAC are plenty for URLs that
// only record an event, and keep every link in the message short.
//
// A token rendered into a message also carries the message's Message-ID and when it was issued:
// with them the gateway builds the event from the token alone (no ledger lookup) and refuses an
// open or a click issued longer ago than its link lifetime. Tokens without them (rendered before
// they existed) still verify; the gateway resolves those through the ledger.
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';

export type TrackingKind = 'open' | 'click' | 'unsubscribe';

export interface TrackingPayload {
  kind: TrackingKind;
  deliveryId: string;
  occurrence: number;
  profileId: string;
  /** Index into the template's link list; present on clicks only. */
  link?: number;
  /**
   * The proof this message is (its id): its links redirect and answer like the real ones, record
   * nothing, and a click resolves against the proof's own links (a proof may precede preparation).
   */
  proof?: string;
  /** The Message-ID of the message the link is in (absent from tokens rendered before it was carried). */
  messageId?: string;
  /** When the token was issued (rendered), in whole seconds since the epoch: the gateway expires opens and clicks from it. */
  issuedAt?: number;
}

interface WirePayload {
  k: 'o' | 'c' | 'u';
  d: string;
  n: number;
  p: string;
  l?: number;
  x?: string;
  m?: string;
  t?: number;
}

const KIND_TO_WIRE = { open: 'o', click: 'c', unsubscribe: 'u' } as const;
const WIRE_TO_KIND: Record<string, TrackingKind> = { o: 'open', c: 'click', u: 'unsubscribe' };

const MAC_BYTES = 16;
const MAC_CHARS = 22; // base64url of 16 bytes, unpadded
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** Far above any real payload: refuses to HMAC and parse megabytes sent by a scanner. */
const MAX_TOKEN_CHARS = 2048;

export function signToken(secret: Buffer | string, payload: TrackingPayload): string {
  if (secret.length === 0) throw new TypeError('tracking secret is empty');
  const wire: WirePayload = {
    k: KIND_TO_WIRE[payload.kind],
    d: payload.deliveryId,
    n: payload.occurrence,
    p: payload.profileId,
  };
  if (payload.link !== undefined) wire.l = payload.link;
  if (payload.proof !== undefined) wire.x = payload.proof;
  if (payload.messageId !== undefined) wire.m = payload.messageId;
  if (payload.issuedAt !== undefined) wire.t = payload.issuedAt;
  // Signing something verifyToken would refuse is a caller bug: fail here, not at click time.
  if (toPayload(wire) === undefined) throw new TypeError(`invalid tracking payload: ${JSON.stringify(payload)}`);
  const body = Buffer.from(JSON.stringify(wire)).toString('base64url');
  return `${body}.${mac(secret, body)}`;
}

/** The payload of a genuine token, or undefined for anything else. Never throws. */
export function verifyToken(secret: Buffer | string, token: string): TrackingPayload | undefined {
  try {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS || secret.length === 0) return undefined;
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length - dot - 1 !== MAC_CHARS) return undefined;
    const body = token.slice(0, dot);
    const signature = token.slice(dot + 1);
    if (!BASE64URL.test(body) || !BASE64URL.test(signature)) return undefined;
    const expected = Buffer.from(mac(secret, body), 'latin1');
    if (!timingSafeEqual(Buffer.from(signature, 'latin1'), expected)) return undefined;
    return toPayload(JSON.parse(Buffer.from(body, 'base64url').toString('utf8')));
  } catch {
    return undefined;
  }
}

function mac(secret: Buffer | string, body: string): string {
  return macWithKey(keyFor(secret), body);
}

function macWithKey(key: KeyObject, body: string): string {
  return createHmac('sha256', key).update(body).digest().subarray(0, MAC_BYTES).toString('base64url');
}

/** What the tokens of one message share: everything but their kind and link. */
export type MessageTokenFields = Omit<TrackingPayload, 'kind' | 'link'>;

/**
 * Signs the tokens of one message after another, as signToken would, for the renderer's hot
 * path: the key is resolved once per secret, the fields every token of a message shares are
 * checked and JSON-encoded once per message (forMessage), and each token only adds its kind
 * and link. The wire text is the same JSON.stringify writes for signToken's object (same keys,
 * same order), so the tokens are byte for byte the ones signToken gives.
 */
export class MessageTokenSigner {
  private readonly key: KeyObject;
  /** `"d":…,"n":…,"p":…`: between the kind and the link. */
  private head = '';
  /** `,"x":…,"m":…,"t":…}`: after the link. */
  private tail = '';

  constructor(secret: Buffer | string) {
    if (secret.length === 0) throw new TypeError('tracking secret is empty');
    this.key = keyFor(secret);
  }

  forMessage(fields: MessageTokenFields): void {
    const wire: WirePayload = { k: 'c', d: fields.deliveryId, n: fields.occurrence, p: fields.profileId, l: 0 };
    if (fields.proof !== undefined) wire.x = fields.proof;
    if (fields.messageId !== undefined) wire.m = fields.messageId;
    if (fields.issuedAt !== undefined) wire.t = fields.issuedAt;
    // Any link index the renderer passes is valid: checking a click with link 0 checks the rest.
    if (toPayload(wire) === undefined) throw new TypeError(`invalid tracking payload: ${JSON.stringify(fields)}`);
    this.head = `"d":${JSON.stringify(wire.d)},"n":${wire.n},"p":${JSON.stringify(wire.p)}`;
    let tail = '';
    if (wire.x !== undefined) tail += `,"x":${JSON.stringify(wire.x)}`;
    if (wire.m !== undefined) tail += `,"m":${JSON.stringify(wire.m)}`;
    if (wire.t !== undefined) tail += `,"t":${wire.t}`;
    this.tail = `${tail}}`;
  }

  /** A token of the current message; `link` (a renderer's link index) on clicks only. */
  sign(kind: TrackingKind, link?: number): string {
    const json = `{"k":"${KIND_TO_WIRE[kind]}",${this.head}${link === undefined ? '' : `,"l":${link}`}${this.tail}`;
    const body = Buffer.from(json, 'utf8').toString('base64url');
    return `${body}.${macWithKey(this.key, body)}`;
  }
}

// Explicit key cache. Handing createHmac a raw Buffer makes Node build a KeyObject on every
// call (about 5x the cost of the HMAC itself, and a message signs several tokens). A worker
// sees one or two secrets in its life; the bound only guards against a caller passing a fresh
// secret each time. Buffers are keyed by content, so a reused, rewritten Buffer is not stale.
const KEY_CACHE_LIMIT = 16;
const keyCache = new Map<string, KeyObject>();

function keyFor(secret: Buffer | string): KeyObject {
  const id = typeof secret === 'string' ? `s${secret}` : `b${secret.toString('latin1')}`;
  let key = keyCache.get(id);
  if (key === undefined) {
    if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.clear();
    key = createSecretKey(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret);
    keyCache.set(id, key);
  }
  return key;
}

function toPayload(wire: unknown): TrackingPayload | undefined {
  if (wire === null || typeof wire !== 'object' || Array.isArray(wire)) return undefined;
  const { k, d, n, p, l, x, m, t } = wire as Partial<WirePayload>;
  const kind = typeof k === 'string' && Object.hasOwn(WIRE_TO_KIND, k) ? WIRE_TO_KIND[k] : undefined;
  if (kind === undefined) return undefined;
  if (typeof d !== 'string' || d === '' || typeof p !== 'string' || p === '') return undefined;
  if (!isIndex(n)) return undefined;
  // A click names its link; nothing else may carry one.
  if (kind === 'click' ? !isIndex(l) : l !== undefined) return undefined;
  if (x !== undefined && (typeof x !== 'string' || x === '')) return undefined;
  if (m !== undefined && (typeof m !== 'string' || m === '')) return undefined;
  if (t !== undefined && !isIndex(t)) return undefined;
  const payload: TrackingPayload = { kind, deliveryId: d, occurrence: n, profileId: p };
  if (l !== undefined) payload.link = l;
  if (x !== undefined) payload.proof = x;
  if (m !== undefined) payload.messageId = m;
  if (t !== undefined) payload.issuedAt = t;
  return payload;
}

/**
 * Whether an open or a click link has outlived `lifetimeMs` at `now` (a token without an issue
 * time, rendered before tokens carried one, never expires: its ledger row decides).
 */
export function isExpired(payload: TrackingPayload, lifetimeMs: number, now: number): boolean {
  return payload.issuedAt !== undefined && payload.issuedAt * 1000 + lifetimeMs < now;
}

function isIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
