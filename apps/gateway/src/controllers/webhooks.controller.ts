// Asynchronous bounces and complaints from an MTA or a provider. No bearer token: the body is
// authenticated by its HMAC signature (checked by the route's guard before the body is
// validated, see auth/webhook-signature.guard.ts); an unsigned, forged or stale request answers
// 401 and changes nothing.
import { Body, Controller, Inject, UseGuards } from '@nestjs/common';
import { type BounceReport, bounceReportSchema, type ControlPlane } from '@herald/control-plane';
import { AuthGuard } from '../auth/auth.guard.js';
import { Route } from '../http/route.js';
import { CONTROL_PLANE } from '../tokens.js';

@Controller('v1/webhooks')
@UseGuards(AuthGuard)
export class WebhooksController {
  constructor(@Inject(CONTROL_PLANE) private readonly cp: ControlPlane) {}

  @Route({
    method: 'post',
    path: 'bounces',
    summary: 'Asynchronous bounce or complaint; signed: Herald-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "t.body")>',
    signed: true,
    body: bounceReportSchema,
    status: 200,
    // NOT_FOUND: no message with that Message-ID; INVALID_STATE: the message was not sent yet.
    errors: ['NOT_FOUND', 'INVALID_STATE'],
    tag: 'tracking',
  })
  async bounce(@Body() report: BounceReport) {
    return this.cp.bounces.apply(report);
  }
}
