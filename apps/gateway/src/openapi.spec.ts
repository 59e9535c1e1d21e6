import 'reflect-metadata';
import { Body, Controller, Get, HttpCode, Param, ParseIntPipe, Query, RequestMethod, type Type, UseGuards } from '@nestjs/common';
import { GUARDS_METADATA, HTTP_CODE_METADATA, METHOD_METADATA, PATH_METADATA, PIPES_METADATA, ROUTE_ARGS_METADATA, RouteParamtypes } from '@nestjs/common/internal';
import { Reflector } from '@nestjs/core';
import { emptyBodySchema } from '@herald/control-plane';
import type { z } from 'zod';
import { AuthGuard, accessOf, Public } from './auth/auth.guard.js';
import { WebhookSignatureGuard } from './auth/webhook-signature.guard.js';
import { CONTROLLERS } from './controllers/index.js';
import { isRateLimited } from './http/rate-limit.js';
import { declaredRoutes, joinPath, Route, RouteValidation, routeDeclaration } from './http/route.js';
import { buildOpenApiDocument, jsonSchema, openApiDocument, openApiPath } from './openapi.js';

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  schema: object;
}
interface Operation {
  description?: string;
  security?: unknown[];
  parameters: Parameter[];
  requestBody?: { content: Record<string, { schema: object }> };
  responses: Record<string, { description: string }>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
}

/** What the argument decorators of a handler read (Nest's own metadata), e.g. {type: BODY, name: undefined}. */
function argumentsOf(controller: Type, handlerName: string) {
  const args: Record<string, { index: number; data?: string; pipes?: unknown[] }> = Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, handlerName) ?? {};
  return Object.entries(args).map(([key, arg]) => ({ type: Number(key.split(':')[0]), name: arg.data, pipes: arg.pipes ?? [] }));
}

/**
 * Where the document and what Nest serves disagree: the routes themselves, their success status,
 * who may call them (as AuthGuard reads it), what their pipes check (each input the handler
 * reads must be validated by the route's pipe against the schema the document shows, and each
 * documented input must be read, or nothing checks it), and the error statuses that follow.
 */
function mismatches(controllers: readonly Type[], doc: Document): string[] {
  const problems: string[] = [];
  const served = new Set<string>();
  const reflector = new Reflector();
  for (const controller of controllers) {
    const prefix = String(Reflect.getMetadata(PATH_METADATA, controller) ?? '');
    for (const name of Object.getOwnPropertyNames(controller.prototype)) {
      const handler = (controller.prototype as Record<string, () => unknown>)[name]!;
      const path = Reflect.getMetadata(PATH_METADATA, handler);
      const requestMethod = Reflect.getMetadata(METHOD_METADATA, handler);
      if (path === undefined || requestMethod === undefined) continue;
      const method = RequestMethod[requestMethod as RequestMethod].toLowerCase();
      const route = `${method} ${openApiPath(joinPath(prefix, String(path)))}`;
      served.add(route);
      const op = doc.paths[openApiPath(joinPath(prefix, String(path)))]?.[method];
      if (!op) {
        problems.push(`${route}: served but not documented`);
        continue;
      }
      const statuses = Object.keys(op.responses);
      const problem = (what: string) => problems.push(`${route}: ${what}`);

      const status = Reflect.getMetadata(HTTP_CODE_METADATA, handler) ?? (method === 'post' ? 201 : 200);
      const documentedSuccess = statuses.filter((s) => op.responses[s]!.description === 'Success');
      if (documentedSuccess.join() !== String(status)) problem(`answers ${status}, documented ${documentedSuccess.join()}`);

      const guards: unknown[] = [...(Reflect.getMetadata(GUARDS_METADATA, controller) ?? []), ...(Reflect.getMetadata(GUARDS_METADATA, handler) ?? [])];
      if (!guards.includes(AuthGuard)) problem('not guarded by AuthGuard');
      const access = accessOf(reflector, [handler, controller]);
      const documentedPublic = Array.isArray(op.security) && op.security.length === 0;
      if (access.public !== documentedPublic) problem(access.public ? 'public, documented as needing a token' : 'needs a token, documented as public');
      const documentedRole = /role \(([^)]+)\)/.exec(op.description ?? '')?.[1];
      if (access.required?.role !== documentedRole) problem(`requires role ${access.required?.role}, documented ${documentedRole}`);
      const signed = op.parameters.some((p) => p.in === 'header');
      if (guards.includes(WebhookSignatureGuard) !== signed) problem('signature check and document disagree');
      if (!access.public && !statuses.includes('401')) problem('no 401 documented');
      if (access.required && !statuses.includes('403')) problem('no 403 documented');

      const validations = (Reflect.getMetadata(PIPES_METADATA, handler) ?? []).filter((pipe: unknown) => pipe instanceof RouteValidation) as RouteValidation[];
      const validation = validations[0];
      if (validations.length !== 1 || !validation) {
        problem('not validated by its declaration');
        continue;
      }
      const args = argumentsOf(controller, name);
      const sameSchema = (schema: z.ZodType | undefined, documented: object | undefined) =>
        schema !== undefined && JSON.stringify(jsonSchema(schema, 'input')) === JSON.stringify(documented);
      for (const arg of args) {
        if (arg.pipes.length > 0) problem(`argument ${arg.name ?? arg.type} has pipes of its own (declare its schema on the route)`);
      }

      const bodyArgs = args.filter((a) => a.type === RouteParamtypes.BODY);
      const documentedBody = op.requestBody && Object.values(op.requestBody.content)[0]?.schema;
      for (const arg of bodyArgs) {
        if (arg.name !== undefined || !sameSchema(validation.schemaFor('body'), documentedBody)) problem('reads a body the document does not describe');
      }
      if (documentedBody && bodyArgs.length === 0 && !routeDeclaration(handler)?.streamed) problem('documents a body the handler never reads (nothing validates it)');

      const queryArgs = args.filter((a) => a.type === RouteParamtypes.QUERY);
      const documentedQuery = op.parameters.filter((p) => p.in === 'query');
      const querySchema = validation.schemaFor('query') as z.ZodObject | undefined;
      for (const arg of queryArgs) {
        const agrees =
          arg.name === undefined &&
          querySchema !== undefined &&
          Object.keys(querySchema.shape).join() === documentedQuery.map((p) => p.name).join() &&
          documentedQuery.every((p) => sameSchema(querySchema.shape[p.name] as z.ZodType, p.schema));
        if (!agrees) problem('reads a query the document does not describe');
      }
      if (documentedQuery.length > 0 && queryArgs.length === 0) problem('documents a query the handler never reads (nothing validates it)');
      const validatesInput = (bodyArgs.length > 0 && validation.schemaFor('body')) || (queryArgs.length > 0 && querySchema);
      if (validatesInput && !statuses.includes('400')) problem('validates input, no 400 documented');

      const paramArgs = args.filter((a) => a.type === RouteParamtypes.PARAM);
      const documentedParams = op.parameters.filter((p) => p.in === 'path');
      for (const arg of paramArgs) {
        const documented = documentedParams.find((p) => p.name === arg.name);
        const schema = arg.name === undefined ? undefined : validation.schemaFor('param', arg.name);
        if (!documented || !(schema ? sameSchema(schema, documented.schema) : JSON.stringify(documented.schema) === '{"type":"string"}')) {
          problem(`reads path parameter ${arg.name} unlike the document`);
        }
      }
      for (const documented of documentedParams) {
        const checked = JSON.stringify(documented.schema) !== '{"type":"string"}';
        if (checked && !paramArgs.some((a) => a.name === documented.name)) problem(`documents path parameter ${documented.name} the handler never reads (nothing checks it)`);
      }
      if (documentedParams.length > 0 && !statuses.includes('404')) problem('has a path parameter, no 404 documented');
      if (isRateLimited(joinPath(prefix, String(path))) && !statuses.includes('429')) problem('rate limited, no 429 documented');
    }
  }
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const method of Object.keys(methods)) {
      if (!served.has(`${method} ${path}`)) problems.push(`${method} ${path}: documented but not served`);
    }
  }
  return problems;
}

const document = () => openApiDocument() as Document;

describe('OpenAPI document', () => {
  it('documents exactly the routes the controllers serve, as their handlers enforce them', () => {
    // Not vacuous: the gateway's 40 operations are all compared.
    expect(Object.values(document().paths).flatMap((methods) => Object.keys(methods)).length).toBe(40);
    expect(mismatches(CONTROLLERS, document())).toEqual([]);
  });

  it('finds where a handler does not do what its route declares', () => {
    @Controller('fake')
    @UseGuards(AuthGuard)
    class Drifted {
      @Route({ method: 'post', path: 'unread', summary: 'A body nothing reads', tag: 'deliveries', role: 'delivery:view', body: emptyBodySchema })
      unread() {}

      @Route({ method: 'get', path: 'undeclared/:id', summary: 'Reads what it does not declare', tag: 'deliveries', role: 'delivery:view' })
      undeclared(@Param('id', ParseIntPipe) _id: number, @Query() _query: unknown) {}

      @Get('bare')
      bare() {}

      @HttpCode(204)
      @Route({ method: 'post', path: 'status', summary: 'Answers another status', tag: 'deliveries', role: 'delivery:view', body: emptyBodySchema })
      status(@Body() _body: unknown) {}
    }

    @Controller('open')
    @UseGuards(AuthGuard)
    @Public()
    class OpenClass {
      @Route({ method: 'get', path: 'guarded', summary: 'Declares a role its class waives', tag: 'deliveries', role: 'delivery:view' })
      guarded() {}
    }

    const doc = buildOpenApiDocument(declaredRoutes([Drifted, OpenClass])) as Document;
    expect(mismatches([Drifted, OpenClass], doc)).toEqual([
      'post /fake/unread: documents a body the handler never reads (nothing validates it)',
      'get /fake/undeclared/{id}: argument id has pipes of its own (declare its schema on the route)',
      'get /fake/undeclared/{id}: reads a query the document does not describe',
      'get /fake/bare: served but not documented',
      'post /fake/status: answers 204, documented 201',
      'get /open/guarded: public, documented as needing a token',
    ]);
    expect(mismatches([Drifted], { paths: { ...doc.paths, '/fake/gone': { get: doc.paths['/open/guarded']!.get! } } })).toContain('get /fake/gone: documented but not served');
  });

  it('derives the error answers from each declaration', () => {
    const statuses = (path: string, method: string) => Object.keys(document().paths[path]![method]!.responses).sort();
    expect(statuses('/health/live', 'get')).toEqual(['200']);
    expect(statuses('/t/o/{token}', 'get')).toEqual(['200', '404']);
    expect(statuses('/v1/me', 'get')).toEqual(['200', '401', '429']);
    expect(statuses('/v1/deliveries', 'get')).toEqual(['200', '400', '401', '403', '429']);
    expect(statuses('/v1/deliveries/{id}/confirmations', 'post')).toEqual(['201', '400', '401', '403', '404', '409', '413', '415', '429']);
    expect(statuses('/v1/deliveries/{id}/confirmations/{confirmationId}/ok', 'post')).toEqual(['202', '400', '401', '403', '404', '409', '410', '413', '415', '429']);
    // Signed, not rate limited; a Message-ID Herald did not send is a 404 though the path has no parameter.
    expect(statuses('/v1/webhooks/bounces', 'post')).toEqual(['200', '400', '401', '404', '409', '413', '415']);
    const bounce = document().paths['/v1/webhooks/bounces']!.post!;
    expect(bounce.security).toEqual([]);
    expect(bounce.responses['401']!.description).toContain('WEBHOOK_SIGNATURE_INVALID');
    const confirm = document().paths['/v1/deliveries/{id}/confirmations']!.post!.responses;
    expect(confirm['400']!.description).toMatch(/^INVALID_INPUT .* or SEND_TIME_PAST/);
    expect(confirm['409']!.description).toMatch(/^INVALID_STATE .* or CHANNEL_NOT_CONFIGURED/);
    expect(JSON.stringify(confirm['409'])).toContain('"enum":["INVALID_STATE","CHANNEL_NOT_CONFIGURED"]');
    expect(JSON.stringify(confirm['403'])).toContain('MISSING_ROLE');
  });

  it('describes request bodies from the validation schemas', () => {
    const doc = openApiDocument() as { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties?: object } }> } }>> };
    const create = doc.paths['/v1/deliveries']!.post!.requestBody!.content['application/json']!.schema;
    expect(Object.keys(create.properties ?? {})).toEqual(expect.arrayContaining(['name', 'channel', 'audienceId', 'content', 'schedule']));
    expect(Object.keys(doc.paths['/v1/profiles/import']!.post!.requestBody!.content)).toEqual(['application/json', 'application/x-ndjson']);
  });

  it('describes what Confirm send and OK answer, with the fields they added', () => {
    const doc = openApiDocument() as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: { properties: Record<string, { properties?: object }> } }> }> }>> };
    const ticket = doc.paths['/v1/deliveries/{id}/confirmations']!.post!.responses['201']!.content!['application/json']!.schema;
    expect(Object.keys(ticket.properties.summary!.properties ?? {})).toEqual(
      expect.arrayContaining(['sendAt', 'sendWindow', 'projectedFinishAt', 'projectedFinishBasis', 'provider', 'warnings']),
    );
    const ok = doc.paths['/v1/deliveries/{id}/confirmations/{confirmationId}/ok']!.post!.responses['202']!.content!['application/json']!.schema;
    expect(Object.keys(ok.properties)).toEqual(expect.arrayContaining(['state', 'startedAs']));
    const create = JSON.stringify(doc.paths['/v1/deliveries']!.post);
    expect(create).toContain('sendNow');
    const confirmErrors = JSON.stringify(doc.paths['/v1/deliveries/{id}/confirmations']!.post!.responses);
    for (const code of ['SEND_TIME_PAST', 'CHANNEL_NOT_CONFIGURED']) expect(confirmErrors).toContain(code);
    expect(JSON.stringify(doc.paths['/v1/deliveries/{id}/occurrences']!.get)).toContain('EXPIRED_UNCONFIRMED');
  });

  it('covers every path of the API contract served so far', () => {
    const doc = openApiDocument() as { paths: Record<string, object> };
    for (const path of [
      '/v1/profiles/import',
      '/v1/profiles/{id}',
      '/v1/audiences',
      '/v1/audiences/{id}/members',
      '/v1/deliveries',
      '/v1/deliveries/{id}',
      '/v1/deliveries/{id}/prepare',
      '/v1/deliveries/{id}/approve',
      '/v1/deliveries/{id}/confirmations',
      '/v1/deliveries/{id}/confirmations/{confirmationId}/ok',
      '/v1/deliveries/{id}/pause',
      '/v1/deliveries/{id}/resume',
      '/v1/deliveries/{id}/stop',
      '/v1/deliveries/{id}/occurrences',
      '/v1/deliveries/{id}/occurrences/{n}/confirmations',
      '/v1/deliveries/{id}/occurrences/{n}/confirmations/{confirmationId}/ok',
      '/health/live',
      '/health/ready',
      '/metrics',
    ]) {
      expect(doc.paths).toHaveProperty([path]);
    }
  });
});
