// Health, metrics, OpenAPI and the docs page, served by a real gateway.
import { type Harness, startHarness } from './harness.js';

describe('system endpoints', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness('pglite');
  });
  afterAll(async () => h?.close());

  it('answers health without a token', async () => {
    expect(await (await fetch(`${h.gateway.url}/health/live`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${h.gateway.url}/health/ready`)).json()).toEqual({ status: 'ok', store: 'pglite' });
  });

  it('serves the OpenAPI document and a docs page that loads its assets', async () => {
    const doc = (await (await fetch(`${h.gateway.url}/openapi.json`)).json()) as { openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.paths['/v1/deliveries/{id}/confirmations/{confirmationId}/ok']?.post?.responses['202']).toBeDefined();
    // The root sends a browser to the docs.
    const root = await fetch(`${h.gateway.url}/`, { redirect: 'manual' });
    expect([root.status, root.headers.get('location')]).toEqual([302, '/docs']);
    const page = await fetch(`${h.gateway.url}/docs`);
    expect(page.headers.get('content-type')).toContain('text/html');
    const html = await page.text();
    for (const asset of html.match(/\/docs\/[\w.-]+/g)!) {
      const res = await fetch(h.gateway.url + asset);
      expect([asset, res.status]).toEqual([asset, 200]);
    }
  });

  it('exposes Prometheus metrics, counting requests and error codes', async () => {
    await h.api('GET', '/v1/deliveries', { token: 'bad' });
    const text = await (await fetch(`${h.gateway.url}/metrics`)).text();
    expect(text).toContain('herald_http_request_duration_seconds_bucket');
    expect(text).toMatch(/herald_http_errors_total\{code="UNAUTHORIZED"\} [1-9]/);
    expect(text).toContain('herald_process_resident_memory_bytes');
  });

  it('tells the user who they are', async () => {
    const me = await h.api('GET', '/v1/me');
    expect(me.body).toMatchObject({ id: 'alice', roles: expect.arrayContaining(['delivery:start']) });
  });
});
