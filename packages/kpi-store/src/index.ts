// The KPI store: message events into ClickHouse (chDB in-process, or a server) and delivery KPIs out.
export * from './kpi-store.js';
export * from './sql.js';
