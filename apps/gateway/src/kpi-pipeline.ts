// The KPI pipeline as Compute stats sees it: the gateway builds it from its outbox relay and the
// KPI consumer of its process, the Deployment controller drives it.

/** Brings the KPI store up to date with every event recorded so far (Compute stats waits for it). */
export interface KpiPipeline {
  catchUp(): Promise<void>;
  /** Makes the delivery's live counters equal what its raw events say (a crash may have left them short). */
  reconcile(deliveryId: string): Promise<void>;
}
