// Sends after a quiet period: SMTP servers end idle sessions (smtp-server and Postfix after about
// a minute, with "421 Timeout"). The server here is a real smtp-server on loopback with a short
// idle timeout (IDLE_MS). Its idle timer and the client's next command can also cross: the
// command is then answered "421 Timeout - closing connection"; with `crossing`, the server
// answers so, deterministically, to the first MAIL FROM on a connection idle for longer than
// IDLE_MS (and its own timer ends idle connections later).
import { describeEachStore, eventually, startSmtpServer, type TestSmtpServer } from '@herald/testing';
import { SmtpPool } from '../src/smtp-pool.js';
import { startEngineHarness } from './engine-harness.js';

const IDLE_MS = 1000;

interface IdleServer extends TestSmtpServer {
  /** MAIL FROMs answered 421 because the connection had been idle. */
  timeouts: number;
}

async function startIdleServer(options: { crossing: boolean }): Promise<IdleServer> {
  let timeouts = 0;
  const server = await startSmtpServer({
    idleTimeoutMs: options.crossing ? IDLE_MS * 3 : IDLE_MS,
    onMailFrom: (idleMs) => {
      if (!options.crossing || idleMs <= IDLE_MS) return undefined;
      timeouts++;
      // smtp-server closes the connection after any 421, as it does after its idle timeout.
      return Object.assign(new Error('Timeout - closing connection'), { responseCode: 421 });
    },
  });
  return Object.defineProperty(server, 'timeouts', { get: () => timeouts, enumerable: true }) as IdleServer;
}

/** The envelope recipient of each message the server accepted, in order. */
const acceptedTo = (server: IdleServer) => server.accepted.map((m) => m.to);

/** Waits (polling) until the server's idle timeout has passed since its last message. */
const stayIdle = (server: IdleServer) => eventually(() => Date.now() - server.lastAcceptedAt > IDLE_MS + 200, { timeoutMs: IDLE_MS * 5, what: 'the idle period' });

const raw = Buffer.from('From: a@shop.example\r\nSubject: hi\r\n\r\nhello\r\n');

describe('SMTP pool after an idle period', () => {
  let server: IdleServer;
  beforeEach(async () => {
    server = await startIdleServer({ crossing: true });
  });
  afterEach(async () => server.close());

  it('sends again at once on a new connection when a reused one is answered 421 at MAIL FROM', async () => {
    // Herald's idle timeout longer than the server's: the 421 happens, and costs nothing.
    const pool = new SmtpPool({ url: server.url, connections: 1, timeoutMs: 5000, idleTimeoutMs: 60_000 });
    await pool.send({ from: 'a@shop.example', to: ['one@example.com'] }, raw);
    await stayIdle(server);
    await expect(pool.send({ from: 'a@shop.example', to: ['two@example.com'] }, raw)).resolves.toMatchObject({ response: expect.stringMatching(/^250/) });
    expect(server.timeouts).toBe(1);
    expect(acceptedTo(server)).toEqual(['one@example.com', 'two@example.com']);
  });

  it('closes its idle connections after idleTimeoutMs, before the server times them out', async () => {
    const pool = new SmtpPool({ url: server.url, connections: 2, timeoutMs: 5000, idleTimeoutMs: IDLE_MS / 2 });
    await Promise.all(['a@example.com', 'b@example.com'].map((to) => pool.send({ from: 'a@shop.example', to: [to] }, raw)));
    const opened = server.opened;
    // Closed by the client, well before the server's idle timer (IDLE_MS * 3) would close them.
    await eventually(() => server.open === 0, { timeoutMs: IDLE_MS * 2, what: 'the idle connections to close' });
    await stayIdle(server);
    await pool.send({ from: 'a@shop.example', to: ['c@example.com'] }, raw);
    expect(server.timeouts).toBe(0);
    expect(server.opened).toBe(opened + 1);
  });
});

describeEachStore('sends after an idle period', (kind) => {
  let server: IdleServer;
  afterEach(async () => server.close());

  const sendTwice = async (idleTimeoutMs: number, crossing: boolean) => {
    server = await startIdleServer({ crossing });
    const h = await startEngineHarness(kind, { workerOverrides: { smtpUrl: server.url, smtpIdleTimeoutMs: idleTimeoutMs } });
    try {
      const first = await h.deliveryFor(20, {}, 'idle1-');
      await h.confirmAndOk(first);
      await h.waitForState(first, 'finished');
      await stayIdle(server);
      const second = await h.deliveryFor(20, {}, 'idle2-');
      await h.confirmAndOk(second);
      await h.waitForState(second, 'finished', 20_000);
      expect(await h.ledger(second)).toEqual({ sent: 20 });
      // Every message went out at its first attempt: none paid for the idle connection.
      const [attempts] = await h.database.db.query<{ max: number }>('SELECT max(attempts)::int AS max FROM send_ledger WHERE delivery_id = $1', [second]);
      expect(attempts!.max).toBe(1);
      expect(acceptedTo(server).filter((to) => to.startsWith('idle2-'))).toHaveLength(20);
    } finally {
      await h.close();
    }
  };

  it('sends at first attempt after the server timed out the idle connections', async () => {
    await sendTwice(60_000, false);
  });

  it('sends at first attempt when the server answers 421 on the connections it timed out', async () => {
    await sendTwice(60_000, true);
    expect(server.timeouts).toBeGreaterThan(0);
  });

  it('closes idle connections before the server does (SMTP_IDLE_TIMEOUT): no 421 at all', async () => {
    await sendTwice(IDLE_MS / 2, true);
    expect(server.timeouts).toBe(0);
  });
});
