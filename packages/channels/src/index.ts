// Herald's messages as they leave: rendering (templates, tracking tokens, links, MIME; pure, CPU
// only) and the SMTP client of the bulk send path, both run inside the send engine's worker
// threads.
export * from './dkim.js';
export * from './email-renderer.js';
export * from './links.js';
export * from './mime.js';
export * from './template.js';
export * from './tracking-token.js';
export * from './smtp-client.js';
