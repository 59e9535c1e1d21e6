// The bus port, its embedded in-process adapter and its Kafka adapter (production).
export * from './bus.js';
export * from './from-env.js';
export * from './in-process-bus.js';
export * from './kafka-bus.js';
