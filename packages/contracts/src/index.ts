// Schemas and types of every command and event that crosses the bus, and the topic names.
export * from './commands.js';
export * from './dead-letters.js';
export * from './events.js';
export * from './topics.js';
export * from './sms-provider.js';
