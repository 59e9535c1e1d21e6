// The test kit: real databases (PGlite, PostgreSQL), waiting with a deadline, free ports, the
// Kafka test broker, SMTP servers and an SMS provider on loopback, and `herald` as real
// processes. Nothing here is mocked. It imports no app (the gateway's in-process harness is
// @herald/gateway/testing).
export * from '@herald/testing-base';
export * from './databases.js';
export * from './mail.js';
export * from './platform.js';
export * from './sms.js';
