import { RequestMethod } from '@nestjs/common';
import { CONTROLLERS } from './gateway.js';
import { OPERATIONS, openApiDocument } from './openapi.js';

/** Every route the controllers declare, read from Nest's own route metadata. */
function declaredRoutes(): string[] {
  const routes: string[] = [];
  for (const controller of CONTROLLERS) {
    const prefix = String(Reflect.getMetadata('path', controller) ?? '');
    for (const name of Object.getOwnPropertyNames(controller.prototype)) {
      const handler = (controller.prototype as unknown as Record<string, object>)[name]!;
      const path = Reflect.getMetadata('path', handler);
      const method = Reflect.getMetadata('method', handler);
      if (path === undefined || method === undefined) continue;
      const full = `/${[prefix, String(path)].filter((p) => p && p !== '/').join('/')}`.replace(/:(\w+)/g, '{$1}');
      routes.push(`${RequestMethod[method as RequestMethod].toLowerCase()} ${full}`);
    }
  }
  return routes.sort();
}

describe('OpenAPI document', () => {
  it('lists exactly the routes the controllers serve', () => {
    expect(OPERATIONS.map((op) => `${op.method} ${op.path}`).sort()).toEqual(declaredRoutes());
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
