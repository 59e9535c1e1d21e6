import { createHmac } from 'node:crypto';
import { isExpired, signToken, type TrackingPayload, verifyToken } from './tracking-token.js';

const SECRET = 'a-tracking-secret-of-reasonable-length';
const click: TrackingPayload = {
  kind: 'click',
  deliveryId: '01J9ZQ4Y3K8W2V6T5R7N0M1P2C',
  occurrence: 3,
  profileId: '7c9e6679-7425-40de-944b-e07fc1f90ae7',
  link: 2,
};

const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

describe('signToken / verifyToken', () => {
  it('round-trips every kind', () => {
    const base = { deliveryId: 'd-1', occurrence: 0, profileId: 'p-1' };
    for (const payload of [
      { ...base, kind: 'open' },
      { ...base, kind: 'unsubscribe' },
      { ...base, kind: 'click', link: 0 },
      click,
    ] as TrackingPayload[]) {
      expect(verifyToken(SECRET, signToken(SECRET, payload))).toEqual(payload);
    }
  });

  it('says when a message is a proof, in the signed payload', () => {
    const proof: TrackingPayload = { ...click, proof: '5f2b8c1e-4d7a-4f3b-9c6e-2a1d0b9e8f7c' };
    const token = signToken(SECRET, proof);
    expect(verifyToken(SECRET, token)).toEqual(proof);
    expect(verifyToken(SECRET, signToken(SECRET, click))).not.toHaveProperty('proof');
    // The proof mark cannot be added to (or removed from) a real message's token.
    const [body, mac] = signToken(SECRET, click).split('.');
    const wire = JSON.parse(Buffer.from(body!, 'base64url').toString());
    const marked = Buffer.from(JSON.stringify({ ...wire, x: 'p' })).toString('base64url');
    expect(verifyToken(SECRET, `${marked}.${mac}`)).toBeUndefined();
  });

  it('accepts the secret as a string or as the same bytes in a Buffer', () => {
    const token = signToken(Buffer.from(SECRET), click);
    expect(token).toBe(signToken(SECRET, click));
    expect(verifyToken(SECRET, token)).toEqual(click);
  });

  it('does not keep using a key after its Buffer was rewritten', () => {
    const secret = Buffer.from('first-secret-value');
    const first = signToken(secret, click);
    secret.write('other');
    expect(signToken(secret, click)).not.toBe(first);
    expect(verifyToken(secret, first)).toBeUndefined();
    expect(verifyToken('first-secret-value', first)).toEqual(click);
  });

  it('is URL-safe, compact and deterministic', () => {
    const token = signToken(SECRET, click);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expect(encodeURIComponent(token)).toBe(token);
    // Only the ids make it long: with ids of 26 and 36 characters, about 90 characters go
    // to the ids themselves, about 65 to keys, numbers and the MAC.
    expect(token.length).toBeLessThanOrEqual(Math.ceil(((click.deliveryId + click.profileId).length * 4) / 3) + 72);
    expect(signToken(SECRET, click)).toBe(token);
  });

  it('rejects a token signed with another secret', () => {
    expect(verifyToken('another-secret', signToken(SECRET, click))).toBeUndefined();
  });

  it('rejects every single-character alteration', () => {
    const token = signToken(SECRET, click);
    const alphabet = `${BASE64URL_ALPHABET}.=+/ %`;
    let tried = 0;
    for (let i = 0; i < token.length; i++) {
      for (const char of alphabet) {
        if (char === token[i]) continue;
        const altered = token.slice(0, i) + char + token.slice(i + 1);
        expect(verifyToken(SECRET, altered)).toBeUndefined();
        tried++;
      }
    }
    expect(tried).toBeGreaterThan(token.length * 60);
  });

  it('rejects truncations, extensions, deletions and insertions', () => {
    const token = signToken(SECRET, click);
    for (let i = 0; i < token.length; i++) {
      expect(verifyToken(SECRET, token.slice(0, i))).toBeUndefined();
      expect(verifyToken(SECRET, token.slice(i + 1))).toBeUndefined();
      expect(verifyToken(SECRET, token.slice(0, i) + token.slice(i + 1))).toBeUndefined();
      expect(verifyToken(SECRET, `${token.slice(0, i)}A${token.slice(i)}`)).toBeUndefined();
    }
    expect(verifyToken(SECRET, `${token}A`)).toBeUndefined();
    expect(verifyToken(SECRET, `${token}=`)).toBeUndefined();
  });

  it('never throws on malformed input', () => {
    const inputs: unknown[] = ['', '.', '..', 'abc', 'abc.', '.abc', 'a.b.c', 'x'.repeat(100_000), '€.€', null, undefined, 42, {}];
    for (const input of inputs) {
      expect(() => verifyToken(SECRET, input as string)).not.toThrow();
      expect(verifyToken(SECRET, input as string)).toBeUndefined();
    }
    expect(verifyToken('', signToken(SECRET, click))).toBeUndefined();
  });

  it('rejects correctly signed bodies that are not valid payloads', () => {
    const forge = (body: unknown): string => {
      const encoded = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)).toString('base64url');
      const mac = createHmac('sha256', SECRET).update(encoded).digest().subarray(0, 16).toString('base64url');
      return `${encoded}.${mac}`;
    };
    // The forge helper itself produces valid tokens...
    expect(verifyToken(SECRET, forge({ k: 'o', d: 'd', n: 1, p: 'p' }))).toEqual({
      kind: 'open',
      deliveryId: 'd',
      occurrence: 1,
      profileId: 'p',
    });
    // ...so these are refused for their content alone.
    for (const body of [
      'not json',
      [1, 2],
      null,
      { k: 'x', d: 'd', n: 1, p: 'p' },
      { k: 'toString', d: 'd', n: 1, p: 'p' },
      { k: 'o', d: '', n: 1, p: 'p' },
      { k: 'o', d: 'd', n: -1, p: 'p' },
      { k: 'o', d: 'd', n: 1.5, p: 'p' },
      { k: 'o', d: 'd', n: '1', p: 'p' },
      { k: 'o', d: 'd', n: 1 },
      { k: 'o', d: 'd', n: 1, p: 'p', l: 0 },
      { k: 'c', d: 'd', n: 1, p: 'p' },
      { k: 'c', d: 'd', n: 1, p: 'p', l: -1 },
      { k: 'o', d: 'd', n: 1, p: 'p', m: '' },
      { k: 'o', d: 'd', n: 1, p: 'p', m: 7 },
      { k: 'o', d: 'd', n: 1, p: 'p', t: -1 },
      { k: 'o', d: 'd', n: 1, p: 'p', t: 1.5 },
      { k: 'o', d: 'd', n: 1, p: 'p', t: '1700000000' },
    ]) {
      expect(verifyToken(SECRET, forge(body))).toBeUndefined();
    }
  });

  it('carries the Message-ID and the issue time, signed like the rest', () => {
    const carrying = { ...click, messageId: '<0123abcd@shop.example>', issuedAt: 1_750_000_000 };
    const token = signToken(SECRET, carrying);
    expect(verifyToken(SECRET, token)).toEqual(carrying);
    // A token issued earlier cannot be made younger: its issue time is under the MAC.
    const [body, mac] = token.split('.');
    const younger = Buffer.from(Buffer.from(body!, 'base64url').toString('utf8').replace('1750000000', '1790000000')).toString('base64url');
    expect(verifyToken(SECRET, `${younger}.${mac}`)).toBeUndefined();
  });

  it('expires an open or a click past its lifetime; a token without an issue time never expires', () => {
    const day = 24 * 3600_000;
    const issued = { ...click, messageId: '<m@x>', issuedAt: 1_750_000_000 };
    const at = (days: number) => 1_750_000_000_000 + days * day;
    expect(isExpired(issued, 180 * day, at(179))).toBe(false);
    expect(isExpired(issued, 180 * day, at(180))).toBe(false);
    expect(isExpired(issued, 180 * day, at(180) + 1)).toBe(true);
    expect(isExpired(click, 180 * day, at(10_000))).toBe(false);
  });

  it('refuses to sign what it would not verify', () => {
    expect(() => signToken(SECRET, { ...click, link: undefined })).toThrow(TypeError);
    expect(() => signToken(SECRET, { ...click, kind: 'open' })).toThrow(TypeError);
    expect(() => signToken(SECRET, { ...click, occurrence: -1 })).toThrow(TypeError);
    expect(() => signToken('', click)).toThrow(TypeError);
  });
});
