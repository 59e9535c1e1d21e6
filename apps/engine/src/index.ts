// The send engine: planner, dispatchers and the Piscina worker pool.
export { Engine, type EngineOptions, type EngineStats } from './engine.js';
export type { WorkerSettings } from './send-task.js';
export { engineFromConfig } from './engine-from-config.js';
export type { EngineReport } from './engine.js';
export { type EngineServer, startEngineServer } from './engine-server.js';
export { outboxPublishedCounter, registerEngineMetrics } from './engine-metrics.js';
