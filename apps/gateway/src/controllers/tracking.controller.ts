// Recipient-facing links, no bearer token: every link is signed (HMAC). The open pixel and the
// click redirect record an event, published from the token alone (tracking-events.ts); a forged,
// altered or expired (TRACKING_LINK_TTL) token answers 404 and records nothing; a click
// redirects only to the URL stored for that link (no open redirect). One-click
// unsubscribe (RFC 8058) is a POST; the GET shows a page with a button and changes nothing.
// A proof's links (its tokens say so) answer the same and record nothing: its clicks resolve
// against the links kept with the proof, and its unsubscribe link unsubscribes no one.
import { Controller, Header, Inject, Param, Req, Res, UseGuards } from '@nestjs/common';
import { type TrackingPayload, verifyToken } from '@herald/channels';
import { type ControlPlane, DomainError } from '@herald/control-plane';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthGuard } from '../auth/auth.guard.js';
import { Route } from '../http/route.js';
import type { TrackingEvents } from '../tracking-events.js';
import { CONTROL_PLANE, TRACKING_EVENTS, TRACKING_SECRET } from '../tokens.js';

const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

/**
 * Link scanners, security gateways and scripts that fetch links before (or instead of) a person.
 * NOTE: mail providers' image proxies (Gmail's, Yahoo's) fetch the pixel when a person opens the
 * message, so they are not machines here.
 */
const MACHINE_AGENTS = /(bot\b|crawler|spider|preview|scanner|proofpoint|mimecast|barracuda|safelinks|urldefense|curl|wget|python-requests|go-http-client|headless|^node$|undici)/i;

@Controller()
@UseGuards(AuthGuard)
export class TrackingController {
  constructor(
    @Inject(CONTROL_PLANE) private readonly cp: ControlPlane,
    @Inject(TRACKING_SECRET) private readonly secret: string,
    @Inject(TRACKING_EVENTS) private readonly events: TrackingEvents,
  ) {}

  @Route({
    method: 'get',
    path: 't/o/:token',
    summary: 'Open pixel: a 1×1 GIF; records an open (a bad signature or a link past TRACKING_LINK_TTL: 404, nothing recorded; a proof: nothing recorded)',
    public: true,
    tag: 'tracking',
  })
  async open(@Param('token') token: string, @Req() request: FastifyRequest, @Res() reply: FastifyReply) {
    const payload = this.verify(token, 'open');
    if (!payload.proof) await this.events.record(payload, 'opened', { machine: isMachine(request) });
    return reply.header('content-type', 'image/gif').header('cache-control', 'no-store, max-age=0').send(PIXEL);
  }

  @Route({
    method: 'get',
    path: 't/c/:token',
    summary: 'Click: 302 to the URL stored for that link (for a proof, the links kept with it); records a click (a proof: nothing; a bad signature or a link past TRACKING_LINK_TTL: 404)',
    public: true,
    status: 302,
    tag: 'tracking',
  })
  async click(@Param('token') token: string, @Req() request: FastifyRequest, @Res() reply: FastifyReply) {
    const payload = this.verify(token, 'click');
    const url = await this.events.clickTarget(payload);
    if (!url) throw notFound();
    if (!payload.proof) await this.events.record(payload, 'clicked', { url, machine: isMachine(request) });
    return reply.header('cache-control', 'no-store').redirect(url, 302);
  }

  @Route({ method: 'get', path: 'u/:token', summary: 'Unsubscribe page with a button; changes nothing', public: true, tag: 'tracking' })
  @Header('content-type', 'text/html; charset=utf-8')
  unsubscribePage(@Param('token') token: string) {
    this.verify(token, 'unsubscribe');
    return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><h1>Unsubscribe</h1><p>Click the button to stop receiving these messages.</p>
<form method="post"><button type="submit">Unsubscribe</button></form></body></html>`;
  }

  @Route({
    method: 'post',
    path: 'u/:token',
    summary: 'RFC 8058 one-click unsubscribe: the profile is unsubscribed (a proof: {unsubscribed: false, proof: true}, nothing changes)',
    public: true,
    status: 200,
    tag: 'tracking',
  })
  async unsubscribe(@Param('token') token: string, @Req() request: FastifyRequest) {
    const payload = this.verify(token, 'unsubscribe');
    if (payload.proof) return { unsubscribed: false, proof: true };
    await this.cp.tracking.unsubscribe(payload, { machine: isMachine(request) });
    return { unsubscribed: true };
  }

  private verify(token: string, kind: TrackingPayload['kind']): TrackingPayload {
    const payload = verifyToken(this.secret, token);
    if (payload?.kind !== kind) throw notFound();
    // An unsubscribe link works as long as the message exists; opens and clicks expire.
    if (kind !== 'unsubscribe' && this.events.expired(payload)) throw notFound();
    return payload;
  }
}

/** Whether the request came from a machine (a link scanner, a script) rather than a person. */
const isMachine = (request: FastifyRequest) => MACHINE_AGENTS.test(String(request.headers['user-agent'] ?? ''));

const notFound = () => new DomainError('NOT_FOUND', 'This link is not valid.');
