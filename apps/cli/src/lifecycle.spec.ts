import { type Component, Lifecycle, part } from './lifecycle.js';

/** Components that write what they do to `log`; `failing` ones throw in start or stop. */
function recorder(log: string[]) {
  return (name: string, failing: { start?: boolean; stop?: boolean } = {}): Component => ({
    name,
    async start() {
      if (failing.start) throw new Error(`${name} cannot start`);
      log.push(`start ${name}`);
    },
    async stop() {
      log.push(`stop ${name}`);
      if (failing.stop) throw new Error(`${name} cannot stop`);
    },
  });
}

describe('Lifecycle', () => {
  it('starts the components in order and stops them in reverse order', async () => {
    const log: string[] = [];
    const component = recorder(log);
    const lifecycle = new Lifecycle([component('store'), component('bus'), component('gateway')]);
    await lifecycle.start();
    expect(await lifecycle.stop()).toEqual([]);
    expect(log).toEqual(['start store', 'start bus', 'start gateway', 'stop gateway', 'stop bus', 'stop store']);
  });

  it('stops what started, in reverse, when a later start fails, and throws that failure', async () => {
    const log: string[] = [];
    const component = recorder(log);
    const lifecycle = new Lifecycle([component('store'), component('bus'), component('gateway', { start: true }), component('engine')]);
    await expect(lifecycle.start()).rejects.toThrow('gateway cannot start');
    expect(log).toEqual(['start store', 'start bus', 'stop bus', 'stop store']);
    // Nothing is left to stop.
    expect(await lifecycle.stop()).toEqual([]);
    expect(log).toHaveLength(4);
  });

  it('stops every component even when one fails to stop, and reports which failed', async () => {
    const log: string[] = [];
    const told: string[] = [];
    const component = recorder(log);
    const lifecycle = new Lifecycle([component('store'), component('bus', { stop: true }), component('gateway')], ({ component }) => told.push(component));
    await lifecycle.start();
    const failures = await lifecycle.stop();
    expect(log).toEqual(['start store', 'start bus', 'start gateway', 'stop gateway', 'stop bus', 'stop store']);
    expect(failures.map((f) => [f.component, (f.error as Error).message])).toEqual([['bus', 'bus cannot stop']]);
    expect(told).toEqual(['bus']);
  });

  it('reports a failed stop during the clean-up of a failed start, and still throws the start failure', async () => {
    const log: string[] = [];
    const told: string[] = [];
    const component = recorder(log);
    const lifecycle = new Lifecycle([component('store', { stop: true }), component('bus', { start: true })], ({ component }) => told.push(component));
    await expect(lifecycle.start()).rejects.toThrow('bus cannot start');
    expect(log).toEqual(['start store', 'stop store']);
    expect(told).toEqual(['store']);
  });
});

describe('part', () => {
  it('hands what its start made to later components and to its stop', async () => {
    const closed: string[] = [];
    const store = part('store', async () => ({ url: 'pg://store' }), (db) => void closed.push(db.url));
    const user = part('user', () => `uses ${store.value.url}`);
    expect(() => store.value).toThrow('store is used before it started');
    expect(store.started).toBe(false);
    const lifecycle = new Lifecycle([store, user]);
    await lifecycle.start();
    expect(user.value).toBe('uses pg://store');
    expect(store.started).toBe(true);
    await lifecycle.stop();
    expect(closed).toEqual(['pg://store']);
  });
});
