// The send rules, pure (no I/O, no store, no bus, no timers): what an attempt's answer means
// for its recipient, when the circuit breaker pauses a run, when each message may leave under
// the throughput limits, and which message events an outcome produces.
export { classify, type ClassifiedOutcome, isSessionCommand, type LedgerOutcome, type RetryPolicy, type SendAttempt } from './outcome.js';
export {
  type BreakerOutcome,
  breakerOutcomeOf,
  type BreakerSettings,
  CircuitBreaker,
  type DomainOutcomeCount,
  firstWaveSize,
  judge,
  Tally,
  type Trip,
} from './circuit-breaker.js';
export { batchSizeFor, RateSchedule, type Slot, Throttles } from './throttle.js';
export { eventId, eventsFor, excludedEvent, type MessageRun } from './message-events.js';
export { PROVIDER_ANSWER_INVALID, type SmsMessage, smsAttempts, smsFailure, smsRequestFailed } from './sms-answer.js';
