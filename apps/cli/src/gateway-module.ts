// The gateway (NestJS, Fastify, Swagger UI), imported only by what runs it or signs for it: an
// engine process does not carry it (~70 MiB of RSS).
export const gatewayModule = () => import('@herald/gateway');
