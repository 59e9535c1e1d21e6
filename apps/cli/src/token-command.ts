// `herald token`: a bearer token signed with the platform's JWT secret.
import type { HeraldConfig } from '@herald/config';
import { resolvePlatformSettings } from '@herald/control-plane';
import { type ParsedCommand, UsageError } from './commands.js';
import { gatewayModule } from './gateway-module.js';
import { openStore } from './store.js';

export async function tokenCommand(config: HeraldConfig, { values }: ParsedCommand): Promise<number> {
  const { user, roles: roleList, name, expires } = values as { user?: string; roles?: string; name?: string; expires: string };
  if (!user || roleList === undefined) {
    throw new UsageError('--user and --roles are required, e.g. herald token --user alice --roles delivery:start,delivery:view', 'token');
  }
  const { createTokenService, isRole, ROLES } = await gatewayModule();
  const roles = roleList.split(',').map((r) => r.trim()).filter(Boolean);
  const unknown = roles.filter((r) => !isRole(r));
  if (unknown.length > 0) {
    console.error(`herald token: unknown role(s) ${unknown.join(', ')}; roles are ${ROLES.join(', ')}`);
    return 2;
  }
  if (config.HERALD_JWKS_URL) {
    console.error('herald token: HERALD_JWKS_URL is set, so tokens come from your identity provider, not from herald.');
    return 2;
  }
  // The platform's secret: the store's on PostgreSQL (opened for this), HERALD_HOME's on the
  // embedded store (which `herald start` may hold open: PGlite serves one process).
  const db = config.DATABASE_URL ? await openStore(config) : undefined;
  try {
    const { secrets } = await resolvePlatformSettings(config, db, (message) => console.error(`herald token: ${message}`));
    console.log(await createTokenService({ secret: secrets.jwt }).sign({ sub: user, name, roles }, expires));
  } finally {
    await db?.close();
  }
  return 0;
}
