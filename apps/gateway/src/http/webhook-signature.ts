// The bounce webhook's signature: `Herald-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
// HMAC-SHA256(secret, "<t>.<raw body>"). The timestamp bounds replays to a tolerance window.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'herald-signature';
export const SIGNATURE_TOLERANCE_S = 300;

/** The header value for `body` signed at `at` (what an MTA or a provider sends). */
export function signWebhook(secret: string, body: string, at = new Date()): string {
  const t = Math.floor(at.getTime() / 1000);
  return `t=${t},v1=${hmac(secret, t, body)}`;
}

export type SignatureCheck = 'ok' | 'missing' | 'malformed' | 'expired' | 'mismatch';

export function verifyWebhook(secret: string, header: string | undefined, body: string, now = new Date()): SignatureCheck {
  if (!header) return 'missing';
  const parts = new Map(header.split(',').map((part) => part.trim().split('=', 2) as [string, string]));
  const t = Number(parts.get('t'));
  const given = parts.get('v1');
  if (!Number.isInteger(t) || !given || !/^[0-9a-f]{64}$/i.test(given)) return 'malformed';
  if (Math.abs(now.getTime() / 1000 - t) > SIGNATURE_TOLERANCE_S) return 'expired';
  const expected = Buffer.from(hmac(secret, t, body), 'hex');
  return timingSafeEqual(expected, Buffer.from(given.toLowerCase(), 'hex')) ? 'ok' : 'mismatch';
}

function hmac(secret: string, t: number, body: string): string {
  return createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
}
