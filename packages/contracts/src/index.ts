// Schemas and types of every command and event that crosses the bus, the topic names, and the
// durations the API and the environment are written in.
export * from './commands.js';
export * from './dead-letters.js';
export * from './duration.js';
export * from './events.js';
export * from './topics.js';
export * from './sms-provider.js';
