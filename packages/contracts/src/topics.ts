// Topic names of DESIGN.md ("Events and topics"). A prefix separates environments sharing a cluster.
export const TOPICS = {
  deliveryCommands: 'herald.delivery-commands',
  sendBatches: 'herald.send-batches',
  messageEvents: 'herald.message-events',
} as const;

export type TopicName = (typeof TOPICS)[keyof typeof TOPICS];

export const dlqTopic = (topic: string): string => `${topic}.dlq`;
