// Moves message events from the bus into the KPI store.
export { KpiConsumer, type EventSink, type KpiConsumerStats } from './kpi-consumer.js';
