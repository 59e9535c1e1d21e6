// Micro-benchmark of the per-recipient render path (one thread): 20,000 personalized ~5 KB
// HTML messages with 3 tracked links, plus their text part. Prints messages/second only.
// Run after a build: node bench/render.bench.mjs
import { EmailRenderer } from '../dist/index.js';

const MESSAGES = 20_000;
const WARMUP = 2_000;

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

let bytes = 0;
for (let i = 0; i < WARMUP; i++) renderer.render(recipients[i], ctx);
const started = process.hrtime.bigint();
for (const recipient of recipients) bytes += renderer.render(recipient, ctx).raw.length;
const seconds = Number(process.hrtime.bigint() - started) / 1e9;

console.log(
  `rendered ${MESSAGES} messages (html template ${html.length} chars, ${renderer.links.length} tracked links, ` +
    `${Math.round(bytes / MESSAGES)} bytes each) in ${seconds.toFixed(2)} s: ` +
    `${Math.round(MESSAGES / seconds)} messages/second`,
);
