export * from './kpi-consumer.js';
export * from './recovery.js';
