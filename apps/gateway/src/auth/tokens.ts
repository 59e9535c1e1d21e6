// Bearer tokens: HS256 with HERALD_JWT_SECRET (the embedded default keeps a generated secret
// under HERALD_HOME), or RS256 and friends through a JWKS URL.
import { ensureSecret, type HeraldConfig } from '@herald/config';
import { DomainError, type Actor } from '@herald/control-plane';
import { createRemoteJWKSet, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';

export interface TokenService {
  verify(token: string): Promise<Actor>;
  /** Signs a token (HS256 only: with a JWKS the identity provider signs). */
  sign(claims: { sub: string; name?: string; roles: string[] }, expiresIn?: string): Promise<string>;
}

/** The HS256 secret: HERALD_JWT_SECRET, else one generated once and kept in HERALD_HOME/jwt-secret. */
export function loadJwtSecret(config: Pick<HeraldConfig, 'HERALD_JWT_SECRET' | 'HERALD_HOME'>): string {
  return ensureSecret(config.HERALD_HOME, 'jwt-secret', config.HERALD_JWT_SECRET);
}

export function createTokenService(config: Pick<HeraldConfig, 'HERALD_JWT_SECRET' | 'HERALD_HOME' | 'HERALD_JWKS_URL'>): TokenService {
  const secret = new TextEncoder().encode(loadJwtSecret(config));
  const jwks: JWTVerifyGetKey | undefined = config.HERALD_JWKS_URL ? createRemoteJWKSet(new URL(config.HERALD_JWKS_URL)) : undefined;
  return {
    async verify(token: string): Promise<Actor> {
      try {
        const { payload } = jwks ? await jwtVerify(token, jwks) : await jwtVerify(token, secret, { algorithms: ['HS256'] });
        if (typeof payload.sub !== 'string' || !payload.sub) throw new Error('no sub');
        const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === 'string') : [];
        return { id: payload.sub, name: typeof payload.name === 'string' ? payload.name : undefined, roles };
      } catch {
        throw new DomainError('UNAUTHORIZED', 'The bearer token is missing, expired or not signed by this platform.');
      }
    },
    async sign(claims, expiresIn = '30d') {
      return new SignJWT({ name: claims.name ?? claims.sub, roles: claims.roles })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(claims.sub)
        .setIssuedAt()
        .setExpirationTime(expiresIn)
        .sign(secret);
    },
  };
}
