// The bus port, and busFromEnv, which picks its adapter (in-process, or Kafka in production).
// The adapters' classes stay inside this package: every other one holds a Bus.
export * from './bus.js';
export { type ConsumerRetryOptions, DEFAULT_MAX_RETRY_BACKOFF_MS, DEFAULT_RETRY_BACKOFF_MS } from './consumption.js';
export * from './from-env.js';
export { type InProcessBusOptions, partitionFor } from './in-process-bus.js';
export { DEFAULT_TOPIC_PARTITIONS, HERALD_TOPICS, type KafkaBusOptions, type KafkaCompression, type KafkaConsumerSettings } from './kafka-bus.js';
