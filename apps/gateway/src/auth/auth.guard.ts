// Authenticates the bearer token and checks the role a route requires (@RequireRole).
import { type CanActivate, type ExecutionContext, Inject, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { type Actor, DomainError } from '@herald/control-plane';
import type { FastifyRequest } from 'fastify';
import { hasRole, missingRoleMessage, type Role, type RouteAction } from './roles.js';
import { TOKEN_SERVICE } from '../tokens.js';
import type { TokenService } from './tokens.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated user, set by AuthGuard. */
    actor?: Actor;
  }
}

const ROLE_KEY = 'herald:role';
const PUBLIC_KEY = 'herald:public';

export interface RoleRequirement {
  role: Role;
  /** The action the route performs, named in a refusal (MISSING_ROLE says what was tried). */
  action?: RouteAction;
}

export const RequireRole = (role: Role, action?: RouteAction) => SetMetadata(ROLE_KEY, { role, action } satisfies RoleRequirement);
/** Routes without a bearer token: health, metrics, docs, tracking links. */
export const Public = () => SetMetadata(PUBLIC_KEY, true);

/** What a route asks of its caller, as the guard reads it (the handler's declaration overrides its class's). */
export function accessOf(reflector: Reflector, targets: Parameters<Reflector['getAllAndOverride']>[1]): { public: boolean; required?: RoleRequirement } {
  const required = reflector.getAllAndOverride<RoleRequirement | undefined>(ROLE_KEY, targets);
  return { public: reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets) === true, ...(required ? { required } : {}) };
}

@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(TOKEN_SERVICE) private readonly tokens: TokenService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const access = accessOf(this.reflector, [context.getHandler(), context.getClass()]);
    if (access.public) return true;
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new DomainError('UNAUTHORIZED', 'Send a bearer token: Authorization: Bearer <token> (see `herald token`).');
    const actor = await this.tokens.verify(match[1]!);
    request.actor = actor;
    const { required } = access;
    if (required && !hasRole(actor.roles, required.role)) {
      throw new DomainError('MISSING_ROLE', missingRoleMessage(required.role, required.action), {
        requiredRole: required.role,
        ...(required.action ? { action: required.action } : {}),
      });
    }
    return true;
  }
}
