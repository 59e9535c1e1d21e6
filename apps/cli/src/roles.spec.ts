import { loadConfig } from '@herald/config';
import { pino } from 'pino';
import { Lifecycle } from './lifecycle.js';
import { composeRole, type Role } from './roles.js';

const logger = pino({ level: 'silent' });
const names = (role: Role, env: Record<string, string> = {}, engines = 0) =>
  new Lifecycle(composeRole(loadConfig({ HERALD_HOME: '/nonexistent/herald', ...env }), role, { engines }, logger).components).names;

// The order each role starts in (it stops in reverse); composing starts nothing.
describe('composeRole', () => {
  it('herald start: every role in one process, mail to the capture sink without SMTP_URL', () => {
    expect(names('all')).toEqual([
      'control-plane store',
      'platform settings',
      'KPI store lock',
      'bus',
      'capture sink',
      'KPI store',
      'tracking event journal',
      'KPI recovery',
      'KPI consumer',
      'outbox relay, last drain',
      'gateway',
      'engine',
    ]);
    expect(names('all', { SMTP_URL: 'smtp://mail.test:25' })).not.toContain('capture sink');
  });

  it('herald start --engines N: engine processes instead of the engine in this process', () => {
    const env = { DATABASE_URL: 'postgres://db.test/herald', KAFKA_BROKERS: 'kafka.test:9092' };
    expect(names('all', env, 2).slice(-3)).toEqual(['outbox relay, last drain', 'gateway', 'engine processes']);
  });

  it('herald gateway: no engine, no capture sink', () => {
    expect(names('gateway')).toEqual([
      'control-plane store',
      'platform settings',
      'KPI store lock',
      'bus',
      'KPI store',
      'tracking event journal',
      'KPI recovery',
      'KPI consumer',
      'outbox relay, last drain',
      'gateway',
    ]);
  });

  it('herald engine: its public URL from the platform, its own metrics server and relay, no KPI store', () => {
    expect(names('engine', { DATABASE_URL: 'postgres://db.test/herald', SMTP_URL: 'smtp://mail.test:25' })).toEqual([
      'control-plane store',
      'platform settings',
      'public URL of the links',
      'bus',
      'outbox relay, last drain',
      'engine',
      'engine metrics server',
      'outbox relay',
    ]);
  });
});
