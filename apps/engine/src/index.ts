// The send engine: planner, dispatchers and the Piscina worker pool.
export { Engine } from './engine.js';
export type { EngineOptions } from './engine-options.js';
export type { EngineReport, EngineStats } from './registry.js';
export type { WorkerSettings } from './send-task.js';
export { engineFromConfig } from './engine-from-config.js';
export { type EngineServer, startEngineServer } from './engine-server.js';
export { outboxPublishedCounter, registerEngineMetrics } from './engine-metrics.js';
