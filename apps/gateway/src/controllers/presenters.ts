// Response shapes: what the API shows of domain objects.
import type { Delivery } from '@herald/control-plane';

/** Actions offered in the delivery's state, as the reference's action bar shows them. */
const ACTIONS: Record<Delivery['state'], string[]> = {
  draft: ['edit', 'prepare'],
  preparing: [],
  ready: ['edit', 'approve', 'stop'],
  approved: ['edit', 'confirm', 'stop'],
  pending_ok: ['edit', 'confirm', 'ok', 'stop'],
  scheduled: ['edit', 'pause', 'stop'],
  sending: ['pause', 'stop'],
  paused: ['resume', 'stop'],
  stopped: [],
  failed: ['edit'],
  finished: [],
};

export function presentDelivery(d: Delivery) {
  return {
    ...d,
    actions: ACTIONS[d.state],
    ...(d.state === 'pending_ok' ? { banner: 'This delivery awaits confirmation: click OK to send it.' } : {}),
  };
}
