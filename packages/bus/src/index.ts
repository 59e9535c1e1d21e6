// The bus port and its embedded, in-process adapter.
export * from './bus.js';
export * from './in-process-bus.js';
