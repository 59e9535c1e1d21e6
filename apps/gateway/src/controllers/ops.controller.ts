// Operations: the engine processes sharing the store, as they last reported themselves.
import { Controller, Get, Inject, UseGuards } from '@nestjs/common';
import { type ControlPlane, ENGINE_STALE_MS, EngineInstancesRepository } from '@herald/control-plane';
import { AuthGuard, RequireRole } from '../auth/auth.guard.js';
import { CONTROL_PLANE } from '../tokens.js';

@Controller('v1/ops')
@UseGuards(AuthGuard)
export class OpsController {
  private readonly instances = new EngineInstancesRepository();

  constructor(@Inject(CONTROL_PLANE) private readonly cp: ControlPlane) {}

  /** Live engine instances: host, pid, partitions, threads, messages per second, lag. */
  @Get('engines')
  @RequireRole('admin')
  async engines() {
    const now = this.cp.context.clock.now();
    const live = await this.instances.live(this.cp.db, ENGINE_STALE_MS, now);
    const items = live.map(({ stats, ...instance }) => ({ ...instance, ...stats }));
    const total = (field: string) => live.reduce((sum, e) => sum + Number(e.stats[field] ?? 0), 0);
    return {
      items,
      totals: { engines: items.length, threads: total('threads'), messagesPerSecond: total('messagesPerSecond') },
      staleAfterMs: ENGINE_STALE_MS,
    };
  }
}
