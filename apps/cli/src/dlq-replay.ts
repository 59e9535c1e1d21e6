// `herald dlq replay <topic>`: the messages <topic>.dlq holds when the command starts go back to
// <topic>, with their key (the bus port's replayDlq).
import { busFromEnv } from '@herald/bus';
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
  const bus = busFromEnv(config);
  try {
    const replayed = await bus.replayDlq(topic, { limit });
    console.log(`replayed ${replayed} message(s) from ${dlqTopic(topic)} to ${topic}`);
  } finally {
    await bus.close();
  }
  return 0;
}
