// Response shapes: what the API shows of domain objects.
import type { DeliveryView } from '@herald/control-plane';

/** A delivery with its actions (from the control plane's lifecycle rules) and the banner while it awaits OK. */
export function presentDelivery(d: DeliveryView) {
  return {
    ...d,
    ...(d.actions.includes('ok') ? { banner: 'This delivery awaits confirmation: click OK to send it.' } : {}),
  };
}
