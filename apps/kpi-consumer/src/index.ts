export * from './kpi-consumer.js';
export * from './recovery.js';
export * from './event-journal.js';
