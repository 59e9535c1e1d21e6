// Operations: the engine processes sharing the store, as they last reported themselves, and
// whether their heartbeat is on time.
import { Controller, Inject, UseGuards } from '@nestjs/common';
import { type ControlPlane, ENGINE_LATE_MS, ENGINE_STALE_MS } from '@herald/control-plane';
import { AuthGuard } from '../auth/auth.guard.js';
import { Route } from '../http/route.js';
import { CONTROL_PLANE } from '../tokens.js';

@Controller('v1/ops')
@UseGuards(AuthGuard)
export class OpsController {
  constructor(@Inject(CONTROL_PLANE) private readonly cp: ControlPlane) {}

  /**
   * Registered engine instances: host, pid, partitions, threads, messages per second, lag, and
   * `status`: `live`, or `stale` once its heartbeat is late (ENGINE_LATE_MS); its work is
   * requeued later (ENGINE_STALE_MS), and then it leaves the list.
   */
  @Route({
    method: 'get',
    path: 'engines',
    summary:
      'Engine processes: host, pid, channels (providers, credentials redacted), partitions, threads, messages per second (last heartbeat, and measured while sending), lag, and status (live, or stale once their heartbeat is late)',
    role: 'admin',
    tag: 'operations',
  })
  async engines() {
    const engines = await this.cp.engines.list(this.cp.clock.now());
    const items = engines.map(({ stats, status, heartbeatAgeMs, ...instance }) => ({ ...instance, status, heartbeatAgeMs, ...stats }));
    const live = items.filter((e) => e.status === 'live');
    const total = (field: string) => live.reduce((sum, e) => sum + Number((e as Record<string, unknown>)[field] ?? 0), 0);
    return {
      items,
      totals: { engines: live.length, stale: items.length - live.length, threads: total('threads'), messagesPerSecond: total('messagesPerSecond') },
      staleAfterMs: ENGINE_LATE_MS,
      requeueAfterMs: ENGINE_STALE_MS,
    };
  }
}
