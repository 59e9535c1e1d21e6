// Picks the bus from the environment: Kafka when KAFKA_BROKERS names brokers, else the embedded
// in-process bus. Every role calls this, so setting KAFKA_BROKERS switches them all at once.
import { TOPICS } from '@herald/contracts';
import type { Bus, IncidentListener } from './bus.js';
import { InProcessBus, type InProcessBusOptions } from './in-process-bus.js';
import { KafkaBus, type KafkaBusOptions, type KafkaCompression } from './kafka-bus.js';

export interface BusEnv {
  /** Comma-separated `host:port` list; unset or blank: the in-process bus. */
  KAFKA_BROKERS?: string;
  /** Prefix of every topic name on the broker (KafkaBusOptions.topicPrefix). */
  KAFKA_TOPIC_PREFIX?: string;
  /** kafkajs client id (KafkaBusOptions.clientId). */
  KAFKA_CLIENT_ID?: string;
  /** Partitions of herald.send-batches when it is created (default 32): the most engines that can share the sends. */
  KAFKA_SEND_BATCH_PARTITIONS?: number;
  /** Partitions of herald.message-events when it is created (default: KAFKA_PARTITIONS): the most KPI consumers that can share the events. */
  KAFKA_MESSAGE_EVENT_PARTITIONS?: number;
  /** Partitions of the other topics when created (default 12). */
  KAFKA_PARTITIONS?: number;
  /** Replication factor of created topics (default 1). */
  KAFKA_REPLICATION_FACTOR?: number;
  /**
   * ms without a heartbeat before the broker drops a consumer from its group and gives its
   * partitions to the others (default DEFAULT_SESSION_TIMEOUT_MS); heartbeats every fifth of it.
   */
  KAFKA_SESSION_TIMEOUT?: number;
  /** Compression of produced record batches (KafkaBusOptions.compression, default 'none'). */
  KAFKA_COMPRESSION?: KafkaCompression;
}

/**
 * The consumers' session timeout when KAFKA_SESSION_TIMEOUT is unset: how long partitions of a
 * killed process wait before the others take them (kafkajs's own default, 30 s, held a killed
 * engine's send batches that long).
 */
export const DEFAULT_SESSION_TIMEOUT_MS = 10_000;

/** Consumer timeouts from a session timeout: a heartbeat every fifth of it, so a live member misses four before it is dropped. */
export function consumerTimeouts(sessionTimeoutMs: number): { sessionTimeout: number; heartbeatInterval: number } {
  return { sessionTimeout: sessionTimeoutMs, heartbeatInterval: Math.max(100, Math.round(sessionTimeoutMs / 5)) };
}

export interface BusFromEnvOptions {
  /** Told of each retry, dead letter and drop, on either bus (default: a JSON line on stderr). */
  onIncident?: IncidentListener;
  /** Options of the in-process bus, when that is the one chosen. */
  inProcess?: Omit<InProcessBusOptions, 'onIncident'>;
  /** Options of the Kafka bus, when that is the one chosen; brokers, prefix and client id come from the environment. */
  kafka?: Omit<KafkaBusOptions, 'brokers' | 'onIncident'>;
}

/** The brokers named by KAFKA_BROKERS, or [] when it is unset or blank. */
export function kafkaBrokersFromEnv(env: BusEnv): string[] {
  return (env.KAFKA_BROKERS ?? '')
    .split(',')
    .map((broker) => broker.trim())
    .filter((broker) => broker.length > 0);
}

/** The bus the environment names: its callers see the port only, whichever adapter it is. */
export function busFromEnv(env: BusEnv, options: BusFromEnvOptions = {}): Bus {
  const brokers = kafkaBrokersFromEnv(env);
  if (brokers.length === 0) return new InProcessBus({ ...options.inProcess, onIncident: options.onIncident });
  return new KafkaBus({
    ...options.kafka,
    consumer: { ...options.kafka?.consumer, ...consumerTimeouts(env.KAFKA_SESSION_TIMEOUT ?? options.kafka?.consumer?.sessionTimeout ?? DEFAULT_SESSION_TIMEOUT_MS) },
    partitions: {
      ...options.kafka?.partitions,
      ...(env.KAFKA_SEND_BATCH_PARTITIONS ? { [TOPICS.sendBatches]: env.KAFKA_SEND_BATCH_PARTITIONS } : {}),
      ...(env.KAFKA_MESSAGE_EVENT_PARTITIONS ? { [TOPICS.messageEvents]: env.KAFKA_MESSAGE_EVENT_PARTITIONS } : {}),
    },
    ...(env.KAFKA_PARTITIONS ? { defaultPartitions: env.KAFKA_PARTITIONS } : {}),
    ...(env.KAFKA_REPLICATION_FACTOR ? { replicationFactor: env.KAFKA_REPLICATION_FACTOR } : {}),
    ...(env.KAFKA_COMPRESSION ? { compression: env.KAFKA_COMPRESSION } : {}),
    brokers,
    topicPrefix: env.KAFKA_TOPIC_PREFIX ?? options.kafka?.topicPrefix,
    clientId: env.KAFKA_CLIENT_ID ?? options.kafka?.clientId,
    onIncident: options.onIncident,
  });
}
