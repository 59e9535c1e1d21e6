// Micro-benchmark of the per-recipient render path (one thread): 20,000 personalized ~5 KB
// HTML messages with 3 tracked links, plus their text part, in RENDER_BENCH_ROUNDS rounds (5).
// Prints, per round, the process's CPU time per message (all its threads: V8's GC helpers
// included), which a shared machine disturbs far less than a rate, then the median and spread.
// Run after a build: node bench/render.bench.mjs [path to another build's dist/index.js]
// (the argument lets two builds, e.g. main's and a branch's, be measured back to back).
import { pathToFileURL } from 'node:url';

const { EmailRenderer } = await import(process.argv[2] ? pathToFileURL(process.argv[2]).href : '../dist/index.js');

const MESSAGES = 20_000;
const WARMUP = 2_000;
const ROUNDS = Number(process.env.RENDER_BENCH_ROUNDS ?? 5);

const paragraph =
  '<p style="margin:0 0 16px;font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:24px;color:#333333">' +
  'Our spring collection is here: lighter fabrics, brighter colours and the same quality you know. ' +
  'Members on the {{ profile.attributes.plan | "free" }} plan get early access all week.</p>\n';
const html =
  '<!doctype html><html><head><meta charset="utf-8"><title>Spring</title></head>' +
  '<body style="margin:0;padding:0;background:#f4f4f4"><table role="presentation" width="100%"><tr><td>\n' +
  '<h1>Hello {{ profile.firstName | "there" }} {{ profile.lastName }}!</h1>\n' +
  paragraph.repeat(5) +
  '<a href="https://shop.example/spring?utm_source=herald&amp;utm_medium=email">Shop the collection</a>\n' +
  paragraph.repeat(5) +
  '<a href="https://shop.example/account?u={{profile.id}}">Your account</a>\n' +
  paragraph.repeat(5) +
  '<a href="https://shop.example/stores">Find a store</a> · <a href="mailto:help@shop.example">Help</a>\n' +
  '</td></tr></table></body></html>';

const renderer = new EmailRenderer({
  from: 'Shop Café <news@shop.example>',
  replyTo: 'help@shop.example',
  subject: '{{ profile.firstName | "Hi" }}, the spring collection is here 🌸',
  html,
  text: 'Hello {{ profile.firstName | "there" }},\n\nOur spring collection is here: https://shop.example/spring\n',
});

const firstNames = ['Ada', 'Grace', 'Zoë', 'Émile', 'Linus', 'Margaret', 'Søren', 'Ines'];
const recipients = Array.from({ length: MESSAGES }, (_, i) => ({
  profileId: `prof-${i}`,
  address: `user${i}@example.com`,
  profile: {
    id: `prof-${i}`,
    email: `user${i}@example.com`,
    firstName: firstNames[i % firstNames.length],
    lastName: `Number ${i}`,
    attributes: { plan: i % 3 === 0 ? 'pro' : 'free' },
  },
}));
const ctx = {
  deliveryId: '01J9ZQ4Y3K8W2V6T5R7N0M1P2C',
  occurrence: 1,
  publicUrl: 'https://herald.example',
  trackingSecret: Buffer.from('bench-tracking-secret-0123456789abcdef'),
  now: new Date('2025-05-06T07:08:09Z'),
};

for (let i = 0; i < WARMUP; i++) renderer.render(recipients[i], ctx);
const perMessage = [];
let bytes = 0;
for (let round = 0; round < ROUNDS; round++) {
  bytes = 0;
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  for (const recipient of recipients) bytes += renderer.render(recipient, ctx).raw.length;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  perMessage.push((used.user + used.system) / MESSAGES);
  console.log(
    `round ${round + 1}: ${((used.user + used.system) / MESSAGES).toFixed(1)} CPU-µs per message ` +
      `(${Math.round(MESSAGES / seconds)} messages/second wall-clock)`,
  );
}
const sorted = [...perMessage].sort((a, b) => a - b);
console.log(
  `rendered ${MESSAGES} messages x ${ROUNDS} (html template ${html.length} chars, ${renderer.links.length} tracked links, ` +
    `${Math.round(bytes / MESSAGES)} bytes each): median ${sorted[Math.floor(ROUNDS / 2)].toFixed(1)} CPU-µs per message ` +
    `(min ${sorted[0].toFixed(1)}, max ${sorted[ROUNDS - 1].toFixed(1)}) = ` +
    `${((sorted[Math.floor(ROUNDS / 2)] * 100_000) / 1e6).toFixed(2)} CPU-s per 100,000`,
);
