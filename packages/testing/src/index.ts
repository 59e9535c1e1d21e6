// Helpers for integration tests: real databases (PGlite, PostgreSQL), nothing mocked.
export * from './databases.js';
export * from './poll.js';
