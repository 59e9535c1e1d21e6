// The platform's shared settings on a real store: the platform_settings table on PostgreSQL,
// the files of HERALD_HOME on the embedded store (PGlite).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, describeEachStore, type TestDatabase } from '@herald/testing';
import { PlatformSettingsError, resolvePlatformSettings } from './platform-settings.js';

const SECRET = 'a-tracking-secret-given-by-the-operator-0123';

describeEachStore('platform settings', (kind) => {
  let database: TestDatabase;
  /** Processes of one platform share the store; on the embedded store, its one HERALD_HOME. */
  let sharedHome: string;
  const homeOf = () => (kind === 'pglite' ? sharedHome : mkdtempSync(join(tmpdir(), 'herald-settings-')));

  beforeEach(async () => {
    database = await createTestDatabase(kind);
    sharedHome = mkdtempSync(join(tmpdir(), 'herald-settings-'));
  });
  afterEach(async () => database.drop());

  it('generates each secret once: every process resolves the same ones, the three different', async () => {
    const [first, second] = await Promise.all([
      resolvePlatformSettings({ HERALD_HOME: homeOf() }, database.db),
      resolvePlatformSettings({ HERALD_HOME: homeOf() }, database.db),
    ]);
    expect(second.secrets).toEqual(first.secrets);
    expect(new Set(Object.values(first.secrets)).size).toBe(3);
    expect((await resolvePlatformSettings({ HERALD_HOME: homeOf() }, database.db)).secrets).toEqual(first.secrets);
  });

  it("takes a secret from the environment, and refuses a process given another one, or none, naming the variable", async () => {
    const settings = await resolvePlatformSettings({ HERALD_HOME: homeOf(), HERALD_TRACKING_SECRET: SECRET }, database.db);
    expect(settings.secrets.tracking).toBe(SECRET);
    expect((await resolvePlatformSettings({ HERALD_HOME: homeOf(), HERALD_TRACKING_SECRET: SECRET }, database.db)).secrets.tracking).toBe(SECRET);
    const other = resolvePlatformSettings({ HERALD_HOME: homeOf(), HERALD_TRACKING_SECRET: `${SECRET}-other` }, database.db);
    await expect(other).rejects.toBeInstanceOf(PlatformSettingsError);
    await expect(other).rejects.toThrow(/^HERALD_TRACKING_SECRET differs from the secret this platform signs tracking and unsubscribe links with/);
    await expect(resolvePlatformSettings({ HERALD_HOME: homeOf() }, database.db)).rejects.toThrow(/HERALD_TRACKING_SECRET is not set here, but the platform's other processes were given one/);
    // What the store keeps of it is its fingerprint, never the secret.
    if (kind === 'postgres') {
      const rows = await database.db.query<{ value: string | null; fingerprint: string }>("SELECT value, fingerprint FROM platform_settings WHERE name = 'tracking_secret'");
      expect(rows).toEqual([{ value: null, fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) }]);
    }
  });

  it('refuses an environment secret that differs from one the platform generated', async () => {
    await resolvePlatformSettings({ HERALD_HOME: homeOf() }, database.db);
    await expect(resolvePlatformSettings({ HERALD_HOME: homeOf(), HERALD_WEBHOOK_SECRET: SECRET }, database.db)).rejects.toThrow(/HERALD_WEBHOOK_SECRET differs/);
  });

  it("seeds the store from a secret file under HERALD_HOME, so links signed before keep verifying", async () => {
    const home = homeOf();
    writeFileSync(join(home, 'tracking-secret'), 'the-secret-this-home-signed-links-with-0123\n');
    const settings = await resolvePlatformSettings({ HERALD_HOME: home }, database.db);
    expect(settings.secrets.tracking).toBe('the-secret-this-home-signed-links-with-0123');
    expect((await resolvePlatformSettings({ HERALD_HOME: homeOf() }, database.db)).secrets.tracking).toBe('the-secret-this-home-signed-links-with-0123');
  });

  it("gives engines the public URL the gateway published, PUBLIC_URL first, and refuses when there is neither", async () => {
    const engine = await resolvePlatformSettings({ HERALD_HOME: homeOf() }, database.db);
    await expect(engine.publicUrl()).rejects.toThrow(/start a gateway first .* or set PUBLIC_URL/);
    await (await resolvePlatformSettings({ HERALD_HOME: homeOf() }, database.db)).publishPublicUrl('http://gateway.test:8080/');
    expect(await engine.publicUrl()).toBe('http://gateway.test:8080');
    const warnings: string[] = [];
    const explicit = await resolvePlatformSettings({ HERALD_HOME: homeOf(), PUBLIC_URL: 'https://mail.shop.example' }, database.db, (m) => warnings.push(m));
    expect(await explicit.publicUrl()).toBe('https://mail.shop.example');
    expect(warnings).toEqual([expect.stringContaining('differs from the public URL a gateway published (http://gateway.test:8080)')]);
  });

  if (kind === 'pglite') {
    it('keeps the embedded secrets in the files of HERALD_HOME, where `herald token` reads them', async () => {
      const settings = await resolvePlatformSettings({ HERALD_HOME: sharedHome }, database.db);
      expect(readFileSync(join(sharedHome, 'jwt-secret'), 'utf8').trim()).toBe(settings.secrets.jwt);
      expect((await resolvePlatformSettings({ HERALD_HOME: sharedHome })).secrets).toEqual(settings.secrets);
    });
  }
});
