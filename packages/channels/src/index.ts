// Pure, CPU-side rendering of Herald's messages (templates, tracking tokens, links, MIME), run
// inside the send engine's worker threads: no I/O and no shared state.
export * from './email-renderer.js';
export * from './links.js';
export * from './mime.js';
export * from './template.js';
export * from './tracking-token.js';
