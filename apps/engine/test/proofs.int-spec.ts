// A proof's links work for the reviewer who receives it, and count nowhere: the click redirects,
// the pixel answers, the unsubscribe link changes no one; no message event is recorded. Through
// the API, the engine and a real SMTP server on loopback, on PGlite and PostgreSQL.
import { readFileSync } from 'node:fs';
import { deliveryBody } from '@herald/gateway/testing';
import { describeEachStore, eventually } from '@herald/testing';
import { type EngineHarness, startEngineHarness } from './engine-harness.js';

describeEachStore('proof links', (kind) => {
  let h: EngineHarness;
  beforeAll(async () => {
    h = await startEngineHarness(kind);
  });
  afterAll(async () => h?.close());

  /** The tracking links of the proof sent to `to`, pointed at this gateway. */
  async function proofLinks(to: string) {
    const message = await eventually(() => h.sink.messages().find((m) => m.to.includes(to)), { what: `the proof to ${to}` });
    const raw = readFileSync(message.file!, 'utf8')
      .replace(/=\r\n/g, '')
      .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
    const local = (url: string) => url.replace('http://herald.test', h.gateway.url);
    return {
      subject: /^Subject: (.*)$/m.exec(raw)![1],
      clicks: [...raw.matchAll(/http:\/\/herald\.test\/t\/c\/[\w.-]+/g)].map((m) => local(m[0])),
      pixel: local(/http:\/\/herald\.test\/t\/o\/[\w.-]+/.exec(raw)![0]),
      unsubscribe: local(/http:\/\/herald\.test\/u\/[\w.-]+/.exec(raw)![0]),
    };
  }

  async function messageEvents(): Promise<number> {
    const [row] = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox_messages WHERE topic = 'herald.message-events'`);
    return row!.n;
  }

  it('redirects the clicks and answers the pixel of a proof of a delivery never prepared, recording nothing', async () => {
    const audience = await h.api('POST', '/v1/audiences', { body: { name: 'reviewers', profileIds: [] } });
    const created = await h.api('POST', '/v1/deliveries', {
      body: deliveryBody(audience.body.id, {
        content: {
          from: 'news@shop.example',
          subject: 'Spring',
          html: '<p><a href="https://shop.example/spring">spring</a> and <a href="https://shop.example/terms?a=1&amp;b=2">terms</a></p>',
        },
      }),
    });
    const id = created.body.id;
    expect(created.body.state).toBe('draft');
    const before = await messageEvents();

    const proof = await h.api('POST', `/v1/deliveries/${id}/proofs`, { body: { to: ['reviewer@example.com'] } });
    expect(proof.status).toBe(202);
    const links = await proofLinks('reviewer@example.com');
    expect(links.subject).toBe('[Proof] Spring');
    expect(links.clicks).toHaveLength(2);

    const spring = await fetch(links.clicks[0]!, { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0' } });
    expect(spring.status).toBe(302);
    expect(spring.headers.get('location')).toBe('https://shop.example/spring');
    const terms = await fetch(links.clicks[1]!, { redirect: 'manual' });
    expect(terms.headers.get('location')).toBe('https://shop.example/terms?a=1&b=2');
    const pixel = await fetch(links.pixel);
    expect(pixel.status).toBe(200);
    expect(pixel.headers.get('content-type')).toBe('image/gif');
    // The unsubscribe link of a proof unsubscribes nobody.
    const unsubscribe = await fetch(links.unsubscribe, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    expect(unsubscribe.status).toBe(200);
    expect(await unsubscribe.json()).toEqual({ unsubscribed: false, proof: true });

    await h.gateway.relay.drain();
    expect(await messageEvents()).toBe(before);
    expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('draft');

    // An altered proof token is refused like any other.
    const forged = `${links.clicks[0]!.slice(0, -3)}${links.clicks[0]!.at(-3) === 'A' ? 'B' : 'A'}${links.clicks[0]!.slice(-2)}`;
    expect((await fetch(forged, { redirect: 'manual' })).status).toBe(404);
  });

  it("keeps each proof's links: a proof sent before an edit still redirects where it said", async () => {
    const id = await h.deliveryFor(2);
    await h.api('POST', `/v1/deliveries/${id}/proofs`, { body: { to: ['first@example.com'] } });
    const first = await proofLinks('first@example.com');
    // The content changes: the next proof links elsewhere, the first still where it did.
    await h.api('PATCH', `/v1/deliveries/${id}`, {
      body: { content: { from: 'news@shop.example', subject: 'New', html: '<a href="https://shop.example/new">new</a>' } },
    });
    await h.api('POST', `/v1/deliveries/${id}/proofs`, { body: { to: ['second@example.com'] } });
    const second = await proofLinks('second@example.com');
    expect((await fetch(first.clicks[0]!, { redirect: 'manual' })).headers.get('location')).toBe('https://shop.example/sale');
    expect((await fetch(second.clicks[0]!, { redirect: 'manual' })).headers.get('location')).toBe('https://shop.example/new');
  });
});
