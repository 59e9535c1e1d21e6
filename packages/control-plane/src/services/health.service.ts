// Readiness: whether the control-plane store answers (the gateway's /health/ready, an engine's).
import type { ControlPlaneContext } from './context.js';

export class HealthService {
  constructor(private readonly ctx: ControlPlaneContext) {}

  /** Which store this is. */
  get store(): 'pglite' | 'postgres' {
    return this.ctx.db.kind;
  }

  /** Resolves when the store answers and holds Herald's schema; rejects with why not. */
  async ping(): Promise<void> {
    await this.ctx.health.ping(this.ctx.db);
  }
}
