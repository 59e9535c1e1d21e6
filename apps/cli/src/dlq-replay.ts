// `herald dlq replay <topic>`: the messages <topic>.dlq holds when the command starts go back to
// <topic>, with their key.
import { busFromEnv, type KafkaBus } from '@herald/bus';
import type { HeraldConfig } from '@herald/config';
import { dlqTopic } from '@herald/contracts';
import { type ParsedCommand, UsageError } from './commands.js';

/** Messages that reach the DLQ meanwhile (a message still poison comes right back) are left for the next replay. */
export async function dlqCommand(config: HeraldConfig, { values, positionals }: ParsedCommand): Promise<number> {
  const [action, topic] = positionals;
  if (action !== 'replay' || !topic) throw new UsageError(action === undefined || action === 'replay' ? 'name the topic to replay' : `unknown action '${action}'`, 'dlq');
  if (!config.KAFKA_BROKERS) throw new UsageError('the DLQ lives on Kafka; set KAFKA_BROKERS (the in-process bus keeps nothing after its process).');
  const limit = values.limit === undefined ? Number.POSITIVE_INFINITY : Number(values.limit);
  if (!(limit > 0)) throw new UsageError(`--limit takes a positive number, not '${values.limit}'`, 'dlq');
  const bus = busFromEnv(config) as KafkaBus;
  const dlq = dlqTopic(topic);
  await bus.ensureTopics([topic, dlq]);
  const ends = await bus.endOffsets(dlq);
  let replayed = 0;
  const subscription = await bus.subscribe({
    topic: dlq,
    group: 'dlq-replay',
    // One at a time: nothing past the end (or the limit) is acknowledged without being replayed.
    maxBatchSize: 1,
    handler: async ([message]) => {
      if (!message || message.offset >= (ends.get(message.partition) ?? 0) || replayed >= limit) {
        throw new Error('past what this replay takes: left in the DLQ');
      }
      const entry = message.value as { key?: string; value?: unknown } | null;
      await bus.publish(topic, [{ key: entry?.key ?? message.key, value: entry && 'value' in entry ? entry.value : message.value }]);
      replayed++;
    },
  });
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    if (replayed >= limit || (await bus.lag(dlq, 'dlq-replay', ends)) === 0) break;
  }
  await subscription.close();
  await bus.close();
  console.log(`replayed ${replayed} message(s) from ${dlq} to ${topic}`);
  return 0;
}
