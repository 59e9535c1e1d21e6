// Bearer tokens: HS256 with the platform's JWT secret (HERALD_JWT_SECRET, else generated once:
// see resolvePlatformSettings), or RS256 and friends through a JWKS URL.
import { DomainError, type Actor } from '@herald/control-plane';
import { createRemoteJWKSet, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';

export interface TokenService {
  verify(token: string): Promise<Actor>;
  /** Signs a token (HS256 only: with a JWKS the identity provider signs). */
  sign(claims: { sub: string; name?: string; roles: string[] }, expiresIn?: string): Promise<string>;
}

/** `secret`: the platform's HS256 key (PlatformSecrets.jwt); `jwksUrl`: verify the identity provider's tokens instead. */
export function createTokenService(options: { secret: string; jwksUrl?: string }): TokenService {
  const secret = new TextEncoder().encode(options.secret);
  const jwks: JWTVerifyGetKey | undefined = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl)) : undefined;
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
