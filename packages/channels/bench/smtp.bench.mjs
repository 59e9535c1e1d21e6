// Micro-benchmark of the SMTP conversation alone: CPU of this process per message sent to
// Postfix's smtp-sink on loopback (another process: its CPU is not counted), over `connections`
// connections kept open, one message at a time each, with Herald's SmtpConnection and with
// nodemailer's SMTPConnection as the engine used it before (raw MIME as a stream, one
// SMTPConnection.send per message). Both back to back in one run, several rounds alternating.
// Needs smtp-sink (infra/postfix/install.sh). Run after a build:
//   node bench/smtp.bench.mjs [messages per round (20000)] [connections (10)] [rounds (3)]
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { SmtpConnection } from '../dist/index.js';

const MESSAGES = Number(process.argv[2] ?? 20_000);
const CONNECTIONS = Number(process.argv[3] ?? 10);
const ROUNDS = Number(process.argv[4] ?? 3);
const TIMEOUT_MS = 30_000;

const sinkBin = ['/usr/sbin/smtp-sink', '/usr/bin/smtp-sink', '/usr/local/sbin/smtp-sink'].find((p) => existsSync(p));
if (!sinkBin) throw new Error('smtp-sink not found: run infra/postfix/install.sh');

// A ~6.4 KB message with 76-character quoted-printable-like lines, as the renderer writes them.
const line = `${'x'.repeat(74)}=\r\n`;
const message = Buffer.from(`From: news@shop.example\r\nTo: someone@example.com\r\nSubject: bench\r\nMIME-Version: 1.0\r\n\r\n${line.repeat(82)}end\r\n`);

const freePort = () =>
  new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

async function startSink() {
  const port = await freePort();
  const privileges = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const child = spawn(sinkBin, ['-c', ...privileges, '-m', '1000', `127.0.0.1:${port}`, '1000'], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (up) return { port, stop: () => child.kill('SIGKILL') };
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill('SIGKILL');
  throw new Error('smtp-sink did not start');
}

const clients = {
  async herald(port) {
    const connection = await SmtpConnection.open({ host: '127.0.0.1', port, connectionTimeoutMs: TIMEOUT_MS, greetingTimeoutMs: TIMEOUT_MS, socketTimeoutMs: TIMEOUT_MS, ignoreTLS: true });
    return {
      send: (to) => connection.send('news@shop.example', [to], message),
      close: () => connection.quit(),
    };
  },
  async nodemailer(port) {
    const connection = new SMTPConnection({ host: '127.0.0.1', port, connectionTimeout: TIMEOUT_MS, greetingTimeout: TIMEOUT_MS, socketTimeout: TIMEOUT_MS, ignoreTLS: true });
    await new Promise((resolve, reject) => {
      connection.once('error', reject);
      connection.connect(resolve);
    });
    return {
      send: (to) =>
        new Promise((resolve, reject) =>
          connection.send({ from: 'news@shop.example', to: [to] }, Readable.from([message]), (error, info) => (error ? reject(error) : resolve(info))),
        ),
      close: () => connection.quit(),
    };
  },
};

async function round(kind, port) {
  const lanes = await Promise.all(Array.from({ length: CONNECTIONS }, () => clients[kind](port)));
  // Warm-up.
  await Promise.all(lanes.map(async (lane, i) => {
    for (let n = 0; n < 200; n++) await lane.send(`warm${i}.${n}@example.com`);
  }));
  let next = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    lanes.map(async (lane) => {
      for (let n = next++; n < MESSAGES; n = next++) await lane.send(`user${n}@example.com`);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  for (const lane of lanes) lane.close();
  return { cpuMicros: (used.user + used.system) / MESSAGES, perSecond: MESSAGES / seconds };
}

const sink = await startSink();
try {
  const results = { herald: [], nodemailer: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of r % 2 === 0 ? ['nodemailer', 'herald'] : ['herald', 'nodemailer']) {
      const result = await round(kind, sink.port);
      results[kind].push(result);
      console.log(`round ${r + 1} ${kind.padEnd(10)} ${result.cpuMicros.toFixed(1)} µs of CPU per message, ${Math.round(result.perSecond)} messages/s`);
    }
  }
  const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  for (const kind of ['nodemailer', 'herald']) {
    console.log(
      `${kind}: median ${median(results[kind].map((r) => r.cpuMicros)).toFixed(1)} µs of CPU per message ` +
        `(${MESSAGES} messages of ${message.length} bytes per round, ${CONNECTIONS} connections, ${ROUNDS} rounds)`,
    );
  }
} finally {
  sink.stop();
}
