// Route declarations: one decorator per handler says everything about a route (method and path,
// who may call it, the zod schemas of what it takes, what it answers) and applies it: Nest's
// method decorator and status, the role requirement (or @Public), and one validation pipe built
// from those schemas. It records the declaration too, and the OpenAPI document (openapi.ts) is
// built from the routes themselves, so the two cannot drift apart.
//
//   @Route({ method: 'post', path: ':id/approve', summary: 'ready → approved', tag: 'deliveries',
//            role: 'delivery:approve', action: 'approve', params: { id: deliveryIdParam },
//            body: emptyBodySchema, errors: ['INVALID_STATE'] })
//   async approve(@Param('id') id: string, @Body() _body: unknown, @CurrentActor() actor: Actor) {…}
//
// The handler reads what the route declares with Nest's own @Param/@Query/@Body: the pipe
// validates each (a declared body is checked only if the handler takes @Body(); the OpenAPI test
// fails when a declared input is not read or an input read is not declared).
import { type ArgumentMetadata, applyDecorators, Get, HttpCode, Patch, type PipeTransform, Post, SetMetadata, type Type, UseGuards, UsePipes } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/internal';
import type { ErrorCode } from '@herald/control-plane';
import type { z } from 'zod';
import { Public, RequireRole } from '../auth/auth.guard.js';
import type { Role, RouteAction } from '../auth/roles.js';
import { WebhookSignatureGuard } from '../auth/webhook-signature.guard.js';
import { type PathParam, parsePathParam } from './params.js';
import { ZodPipe } from './zod.pipe.js';

/** The groups of the API description. */
export type ApiTag = 'operations' | 'auth' | 'tracking' | 'profiles' | 'audiences' | 'deliveries' | 'confirmation' | 'kpis';

export interface RouteDeclaration {
  method: 'get' | 'post' | 'patch';
  /** Relative to the controller's path, in Nest's syntax (`:id/prepare`). */
  path: string;
  summary: string;
  tag: ApiTag;
  /** Callers need a bearer token (401 without one); with `role`, one that holds this role (403 MISSING_ROLE). */
  role?: Role;
  /** What the route does, named by a MISSING_ROLE refusal. */
  action?: RouteAction;
  /** No bearer token: health, metrics, docs, recipients' links. */
  public?: true;
  /** No bearer token: the body is authenticated by its Herald-Signature header instead (401 WEBHOOK_SIGNATURE_INVALID). */
  signed?: true;
  /** Path parameters checked before the handler runs (a value a schema refuses: 404). Others reach it as strings. */
  params?: Record<string, PathParam>;
  /** The query, checked before the handler runs (400 INVALID_INPUT, issues named query.<param>). */
  query?: z.ZodObject;
  /** The body, checked before the handler runs (400 INVALID_INPUT); a schema accepting undefined makes it optional. */
  body?: z.ZodType;
  /** Media types the body may be sent as (default application/json). */
  bodyTypes?: readonly string[];
  /** The handler reads the body as a stream and reports bad records itself: `body` describes it, nothing checks it before. */
  streamed?: true;
  /** The success answer's body, where it is worth describing field by field. */
  response?: z.ZodType;
  /** The success status (default: Nest's, 201 for a POST and 200 otherwise). */
  status?: number;
  /**
   * Error codes this route answers besides those its declaration implies (401, 403, 400 for
   * what it validates, 404 for a path parameter, 413/415 for a body, 429 under the rate limit).
   */
  errors?: readonly ErrorCode[];
  /** Answers that are neither the success nor an API error (readiness: 503 while the store does not answer). */
  alsoAnswers?: Readonly<Record<number, string>>;
}

/** A declared route of a controller, with its full path. */
export interface DeclaredRoute {
  controller: Type;
  handlerName: string;
  /** The full path in Nest's syntax: /v1/deliveries/:id. */
  path: string;
  declaration: RouteDeclaration;
}

const ROUTE_KEY = 'herald:route';
const METHOD_DECORATORS = { get: Get, post: Post, patch: Patch };

export function Route(route: RouteDeclaration): MethodDecorator {
  // Contradictions are programming errors: refuse them when the module loads.
  if (route.role && (route.public || route.signed)) throw new Error(`${route.method} ${route.path}: a public route cannot require a role`);
  if (route.action && !route.role) throw new Error(`${route.method} ${route.path}: an action is named by a role requirement`);
  if (route.streamed && !route.body) throw new Error(`${route.method} ${route.path}: a streamed body needs a schema describing it`);
  return applyDecorators(
    METHOD_DECORATORS[route.method](route.path),
    HttpCode(successStatus(route)),
    ...(route.public || route.signed ? [Public()] : []),
    ...(route.role ? [RequireRole(route.role, route.action)] : []),
    ...(route.signed ? [UseGuards(WebhookSignatureGuard)] : []),
    UsePipes(new RouteValidation(route)),
    SetMetadata(ROUTE_KEY, route),
  );
}

export function successStatus(route: Pick<RouteDeclaration, 'method' | 'status'>): number {
  return route.status ?? (route.method === 'post' ? 201 : 200);
}

/** Whether the route bears the bearer-token check (AuthGuard answers 401 without a token). */
export const needsToken = (route: RouteDeclaration): boolean => !route.public && !route.signed;

/** Checks each argument the handler reads against the route's schemas. */
export class RouteValidation implements PipeTransform {
  private readonly body?: ZodPipe<z.ZodType>;
  private readonly query?: ZodPipe<z.ZodType>;

  constructor(readonly route: RouteDeclaration) {
    if (route.body && !route.streamed) this.body = new ZodPipe(route.body);
    if (route.query) this.query = new ZodPipe(route.query, 'query');
  }

  /** The schema an argument is checked against (undefined: it reaches the handler as received). */
  schemaFor(type: ArgumentMetadata['type'], name?: string): z.ZodType | undefined {
    if (type === 'body' && name === undefined && !this.route.streamed) return this.route.body;
    if (type === 'query' && name === undefined) return this.route.query;
    if (type === 'param' && name !== undefined) return this.route.params?.[name]?.schema;
    return undefined;
  }

  transform(value: unknown, { type, data }: ArgumentMetadata): unknown {
    if (type === 'body' && data === undefined && this.body) return this.body.transform(value);
    if (type === 'query' && data === undefined && this.query) return this.query.transform(value);
    const param = type === 'param' && data !== undefined ? this.route.params?.[data] : undefined;
    return param ? parsePathParam(param, String(value)) : value;
  }
}

export function routeDeclaration(handler: object): RouteDeclaration | undefined {
  return Reflect.getMetadata(ROUTE_KEY, handler);
}

/** Joins a controller's path and a handler's as Nest does: /v1/deliveries/:id. */
export function joinPath(prefix: string, path: string): string {
  return `/${[prefix, path]
    .map((part) => part.replace(/^\/+|\/+$/g, ''))
    .filter(Boolean)
    .join('/')}`;
}

/** Every route the controllers declare, in their order. */
export function declaredRoutes(controllers: readonly Type[]): DeclaredRoute[] {
  return controllers.flatMap((controller) => {
    const prefix = String(Reflect.getMetadata(PATH_METADATA, controller) ?? '');
    return Object.getOwnPropertyNames(controller.prototype).flatMap((handlerName) => {
      const declaration = routeDeclaration((controller.prototype as Record<string, object>)[handlerName]!);
      return declaration ? [{ controller, handlerName, path: joinPath(prefix, declaration.path), declaration }] : [];
    });
  });
}
