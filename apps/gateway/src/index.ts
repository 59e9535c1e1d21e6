// The gateway: REST API, two-step confirmation, scheduler and outbox relay.
export { startGateway, type Gateway, type GatewayOptions } from './gateway.js';
export { createTokenService, type TokenService } from './auth/tokens.js';
export { ROLES, ROLE_LABELS, type Role, isRole } from './auth/roles.js';
export { openApiDocument } from './openapi.js';
export { signWebhook, verifyWebhook, SIGNATURE_HEADER } from './http/webhook-signature.js';
export type { EventJournal } from './tracking-events.js';
