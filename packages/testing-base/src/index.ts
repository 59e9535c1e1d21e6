// The base of the test kit: nothing here depends on a Herald package (see package.json).
export * from './kafka.js';
export * from './ports.js';
export * from './wait.js';
