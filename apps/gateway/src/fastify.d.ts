import type { Actor } from '@herald/control-plane';

declare module 'fastify' {
  interface FastifyRequest {
    actor?: Actor;
  }
}
