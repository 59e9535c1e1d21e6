// The one migration runner of Herald's stores.
export * from './runner.js';
