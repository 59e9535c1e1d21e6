// The Kafka adapter's pure parts: the partitioner must put every key where kafkajs's
// DefaultPartitioner (and so a Java client) puts it, however the keys of a publish alternate.
import kafkajs from 'kafkajs';
import type { PartitionMetadata } from 'kafkajs';
import { keyRunPartitioner } from './kafka-bus.js';

const { Partitioners } = kafkajs;

const metadata = (count: number): PartitionMetadata[] =>
  Array.from({ length: count }, (_, partitionId) => ({ partitionId, leader: 1, replicas: [1], isr: [1], partitionErrorCode: 0, offlineReplicas: [] }));

describe('keyRunPartitioner', () => {
  it('gives each keyed message the partition of the DefaultPartitioner: runs of one key, alternating keys, explicit partitions, a topic that grew', () => {
    const keys = ['delivery-a', 'delivery-a', 'delivery-a', 'delivery-b', 'delivery-a', 'delivery-b', 'delivery-b', 'c', '', 'delivery-a'];
    const ours = keyRunPartitioner();
    const theirs = Partitioners.DefaultPartitioner();
    for (const count of [12, 12, 32, 7]) {
      const partitionMetadata = metadata(count);
      for (const [i, key] of keys.entries()) {
        const message = i === 5 ? { key, value: 'v', partition: 3 } : { key, value: 'v' };
        expect(ours({ topic: 't', partitionMetadata, message })).toBe(theirs({ topic: 't', partitionMetadata, message }));
      }
    }
  });

  it('hashes a key once for a run of messages with that key', () => {
    let asked = 0;
    const partitionMetadata = new Proxy(metadata(12), {
      get(target, property, receiver) {
        // The DefaultPartitioner filters the partitions on every call it gets.
        if (property === 'filter') asked++;
        return Reflect.get(target, property, receiver);
      },
    });
    const partition = keyRunPartitioner();
    for (let i = 0; i < 100; i++) partition({ topic: 't', partitionMetadata, message: { key: i < 50 ? 'a' : 'b', value: 'v' } });
    expect(asked).toBe(2);
  });
});
