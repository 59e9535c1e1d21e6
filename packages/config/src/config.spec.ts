import { ConfigError, loadConfig, parseDuration } from './index.js';

describe('loadConfig', () => {
  it('applies the embedded defaults', () => {
    const config = loadConfig({});
    expect(config.HERALD_HOME).toBe('./.herald');
    expect(config.PORT).toBe(8080);
    expect(config.CONFIRMATION_TTL).toBe(600_000);
    expect(config.SCHEDULE_STALENESS).toBe(3_600_000);
    expect(config.RECURRENCE_MAX_PENDING).toBe(5);
    expect(config.DATABASE_URL).toBeUndefined();
  });

  it('lists every bad variable at once', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'eighty', CONFIRMATION_TTL: 'soon', DATABASE_URL: 'not a url', HERALD_JWT_SECRET: 'short' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    for (const name of ['PORT', 'CONFIRMATION_TTL', 'DATABASE_URL', 'HERALD_JWT_SECRET']) {
      expect(problems).toContain(name);
    }
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ PORT: '', DATABASE_URL: '' }).PORT).toBe(8080);
  });
});

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['10m', 600_000],
    ['1h', 3_600_000],
    ['3.5d', 302_400_000],
    ['250', 250],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', 'soon', '-1s', '0s', '1 week'])('rejects %p', (text) => expect(parseDuration(text)).toBeUndefined());
});

describe('engine settings', () => {
  it('parses domain limits', () => {
    const config = loadConfig({ ENGINE_DOMAIN_LIMITS: 'gmail.com=200/s, Yahoo.com=3000/m' });
    expect(config.ENGINE_DOMAIN_LIMITS).toEqual([
      { domain: 'gmail.com', perSecond: 200 },
      { domain: 'yahoo.com', perSecond: 50 },
    ]);
    expect(config.ENGINE_VALIDITY).toBe(302_400_000);
    expect(config.ENGINE_THREADS).toBeGreaterThanOrEqual(1);
  });
  it('refuses malformed domain limits', () => {
    expect(() => loadConfig({ ENGINE_DOMAIN_LIMITS: 'gmail.com=fast' })).toThrow(/ENGINE_DOMAIN_LIMITS/);
  });
});
