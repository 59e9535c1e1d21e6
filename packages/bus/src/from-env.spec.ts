import { busFromEnv, kafkaBrokersFromEnv } from './from-env.js';
import { InProcessBus } from './in-process-bus.js';
import { chunksOfBytes, KafkaBus } from './kafka-bus.js';

describe('busFromEnv', () => {
  it('is the in-process bus when KAFKA_BROKERS is unset or blank', async () => {
    for (const env of [{}, { KAFKA_BROKERS: '' }, { KAFKA_BROKERS: ' , ' }]) {
      const bus = busFromEnv(env);
      expect(bus).toBeInstanceOf(InProcessBus);
      await bus.close();
    }
  });

  it('is a KafkaBus on the named brokers, with the prefix of KAFKA_TOPIC_PREFIX (no connection until first use)', async () => {
    const bus = busFromEnv({ KAFKA_BROKERS: ' 127.0.0.1:19092, 127.0.0.1:19094 ', KAFKA_TOPIC_PREFIX: 'staging.' });
    expect(bus).toBeInstanceOf(KafkaBus);
    const kafka = bus as KafkaBus;
    expect(kafka.physicalTopic('herald.send-batches.dlq')).toBe('staging.herald.send-batches.dlq');
    expect(kafka.physicalGroup('herald.send-batches', 'engine-dispatchers')).toBe('staging.engine-dispatchers.herald.send-batches');
    await bus.close();
  });

  it('splits KAFKA_BROKERS on commas', () => {
    expect(kafkaBrokersFromEnv({ KAFKA_BROKERS: 'a:1,b:2 , c:3' })).toEqual(['a:1', 'b:2', 'c:3']);
    expect(kafkaBrokersFromEnv({})).toEqual([]);
  });
});

describe('KafkaBus topic partitions', () => {
  it('gives herald.send-batches 32 partitions and the other topics 12, unless configured', () => {
    const bus = new KafkaBus({ brokers: ['127.0.0.1:1'] });
    expect(bus.partitionsFor('herald.send-batches')).toBe(32);
    expect(bus.partitionsFor('herald.message-events')).toBe(12);
    expect(bus.partitionsFor('herald.send-batches.dlq')).toBe(12);
    const tuned = new KafkaBus({ brokers: ['127.0.0.1:1'], partitions: { 'herald.send-batches': 64 }, defaultPartitions: 6 });
    expect(tuned.partitionsFor('herald.send-batches')).toBe(64);
    expect(tuned.partitionsFor('herald.delivery-commands')).toBe(6);
  });
});

describe('chunksOfBytes', () => {
  it('cuts a publish into consecutive chunks under the byte limit, in order', () => {
    const messages = Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: 'x'.repeat(100) }));
    const chunks = chunksOfBytes(messages, 500);
    expect(chunks.flat()).toEqual(messages);
    // 100 bytes of value, 2 of key, 64 of overhead each: three fit in 500.
    expect(chunks.map((c) => c.length)).toEqual([3, 3, 3, 1]);
    // A message bigger than the limit goes alone (the broker then names the problem).
    expect(chunksOfBytes([{ key: 'a', value: 'x'.repeat(1000) }, { key: 'b', value: 'y' }], 500).map((c) => c.length)).toEqual([1, 1]);
  });
});

describe('busFromEnv topic settings', () => {
  it('takes partitions and the replication factor of created topics from the environment', () => {
    const bus = busFromEnv({ KAFKA_BROKERS: '127.0.0.1:1', KAFKA_SEND_BATCH_PARTITIONS: 64, KAFKA_PARTITIONS: 6 }) as KafkaBus;
    expect(bus.partitionsFor('herald.send-batches')).toBe(64);
    expect(bus.partitionsFor('herald.message-events')).toBe(6);
    const defaults = busFromEnv({ KAFKA_BROKERS: '127.0.0.1:1' }) as KafkaBus;
    expect(defaults.partitionsFor('herald.send-batches')).toBe(32);
    expect(defaults.partitionsFor('herald.message-events')).toBe(12);
  });

  it('takes the partitions of herald.message-events from KAFKA_MESSAGE_EVENT_PARTITIONS, over KAFKA_PARTITIONS', () => {
    const bus = busFromEnv({ KAFKA_BROKERS: '127.0.0.1:1', KAFKA_MESSAGE_EVENT_PARTITIONS: 48, KAFKA_PARTITIONS: 6 }) as KafkaBus;
    expect(bus.partitionsFor('herald.message-events')).toBe(48);
    expect(bus.partitionsFor('herald.delivery-commands')).toBe(6);
    expect(bus.partitionsFor('herald.send-batches')).toBe(32);
  });
});

describe('busFromEnv consumer timeouts', () => {
  it('takes the session timeout from KAFKA_SESSION_TIMEOUT (default 10 s) and heartbeats every fifth of it', () => {
    expect((busFromEnv({ KAFKA_BROKERS: '127.0.0.1:1' }) as KafkaBus).consumerTimeouts).toEqual({ sessionTimeout: 10_000, heartbeatInterval: 2_000 });
    expect((busFromEnv({ KAFKA_BROKERS: '127.0.0.1:1', KAFKA_SESSION_TIMEOUT: 45_000 }) as KafkaBus).consumerTimeouts).toEqual({
      sessionTimeout: 45_000,
      heartbeatInterval: 9_000,
    });
  });
});
