// Inbound authentication per runtime: who is calling. berth acts as an OAuth 2.1 resource server (RFC 9728
// metadata, RFC 6750 bearer tokens) or checks API keys; without auth every caller is the principal "anonymous".
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { JWT_ALGORITHMS, type AuthConfig } from '../config/schema.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';

export interface Principal {
  kind: 'anonymous' | 'api-key' | 'jwt';
  /** The token's sub, or the API key's name. */
  subject: string;
  issuer?: string;
  scopes?: string[];
}

/** What a session is bound to: a different principal presenting its id gets 404, like an unknown id. */
export function principalKey(p: Principal): string {
  return JSON.stringify([p.kind, p.issuer ?? '', p.subject]);
}

export const ANONYMOUS: Principal = { kind: 'anonymous', subject: 'anonymous' };

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Where to point unauthenticated callers (RFC 9728), and which URLs name this runtime as a resource. */
export interface ResourceInfo {
  metadataUrl(): string;
  resourceUrls(): string[];
}

export interface Authenticator {
  readonly kind: AuthConfig['kind'];
  authenticate(req: IncomingMessage): Promise<Principal>;
}

function bearerOf(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(h);
  return m?.[1];
}

function challenge(info: ResourceInfo, error?: { code: string; description: string; scope?: string }): Record<string, string> {
  let v = `Bearer resource_metadata="${info.metadataUrl()}"`;
  if (error) {
    v += `, error="${error.code}", error_description="${error.description.replace(/["\\]/g, "'")}"`;
    if (error.scope) v += `, scope="${error.scope}"`;
  }
  return { 'www-authenticate': v };
}

function unauthorized(info: ResourceInfo, message: string, invalid?: string): HttpError {
  const headers = challenge(info, invalid ? { code: 'invalid_token', description: invalid } : undefined);
  return new HttpError(401, ErrorCode.ServerError, `Unauthorized: ${message}`, { headers: headers });
}

export function createAuthenticator(auth: AuthConfig, info: ResourceInfo): Authenticator {
  switch (auth.kind) {
    case 'none':
      return { kind: 'none', authenticate: async () => ANONYMOUS };
    case 'api-key':
      return apiKeyAuthenticator(auth, info);
    case 'jwt':
      return jwtAuthenticator(auth, info);
  }
}

/** The principal of a keysEnv key: `key-` and the first 12 hex digits of its SHA-256 (as `berth hash-key` prints it). */
function keysEnvPrincipal(digest: Buffer): string {
  return `key-${digest.toString('hex').slice(0, 12)}`;
}

function apiKeyAuthenticator(auth: Extract<AuthConfig, { kind: 'api-key' }>, info: ResourceInfo): Authenticator {
  const keys = auth.keys.map((k) => ({ name: k.name, digest: Buffer.from(k.sha256, 'hex') }));
  if (auth.keysEnv) {
    const plain = (process.env[auth.keysEnv] ?? '')
      .split(',')
      .map((k) => k.trim())
      .filter(Boolean);
    if (plain.length === 0 && keys.length === 0)
      throw new Error(`auth: the environment variable ${auth.keysEnv} (keysEnv) holds no API keys`);
    // Each key's principal is named after its digest, not its place in the list: sessions are bound to principals,
    // and a list reordered on one node of a cluster (a key removed in a rolling rotation) must not hand one key's
    // name, and with it the sessions it owns on the other nodes, to another key.
    for (const k of plain) {
      const digest = createHash('sha256').update(k).digest();
      keys.push({ name: keysEnvPrincipal(digest), digest });
    }
  }
  return {
    kind: 'api-key',
    async authenticate(req) {
      const header = req.headers['x-api-key'];
      const presented = bearerOf(req) ?? (typeof header === 'string' ? header : undefined);
      if (!presented) throw unauthorized(info, 'an API key is required (Authorization: Bearer KEY, or X-API-Key)');
      // Digests have a fixed length, so every comparison takes the same time whatever was presented.
      const digest = createHash('sha256').update(presented).digest();
      let match: string | undefined;
      for (const k of keys) if (timingSafeEqual(k.digest, digest)) match ??= k.name;
      if (!match) throw unauthorized(info, 'the API key is not valid', 'the API key is not valid');
      return { kind: 'api-key', subject: match };
    },
  };
}

function scopesOf(payload: JWTPayload): string[] {
  const { scope, scp } = payload as { scope?: unknown; scp?: unknown };
  if (typeof scope === 'string') return scope.split(' ').filter(Boolean);
  if (Array.isArray(scp)) return scp.filter((s): s is string => typeof s === 'string');
  if (typeof scp === 'string') return scp.split(' ').filter(Boolean);
  return [];
}

function jwtAuthenticator(auth: Extract<AuthConfig, { kind: 'jwt' }>, info: ResourceInfo): Authenticator {
  // jose caches the key set and refetches it (no more often than the cooldown) when a token names an unknown kid.
  const jwks = createRemoteJWKSet(new URL(auth.jwksUrl), {
    cooldownDuration: auth.jwksCooldown,
    cacheMaxAge: 10 * 60_000,
    timeoutDuration: 5000,
  });
  const audience = () => (auth.audience === undefined ? info.resourceUrls() : auth.audience);
  return {
    kind: 'jwt',
    async authenticate(req) {
      const token = bearerOf(req);
      if (!token) throw unauthorized(info, 'a bearer token is required (Authorization: Bearer TOKEN)');
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, jwks, {
          issuer: auth.issuer,
          audience: audience(),
          algorithms: [...JWT_ALGORITHMS],
          clockTolerance: Math.round(auth.clockSkew / 1000),
          requiredClaims: ['exp', 'sub'],
        }));
      } catch (e) {
        // Not a verdict on the token (the JWKS could not be fetched): say so, and let the client retry.
        if (e instanceof joseErrors.JWKSTimeout || !(e instanceof joseErrors.JOSEError)) {
          throw new HttpError(
            503,
            ErrorCode.ServerError,
            `Service Unavailable: cannot verify tokens, the issuer's JWKS is unreachable (${(e as Error).message})`,
            { headers: { 'retry-after': '5' } },
          );
        }
        const why = describeJwtError(e as joseErrors.JOSEError);
        throw unauthorized(info, `the bearer token is not valid: ${why}`, why);
      }
      const scopes = scopesOf(payload);
      const missing = auth.scopes.filter((s) => !scopes.includes(s));
      if (missing.length) {
        throw new HttpError(403, ErrorCode.ServerError, `Forbidden: the token lacks the scope(s) ${missing.join(' ')}`, {
          headers: challenge(info, {
            code: 'insufficient_scope',
            description: `requires ${auth.scopes.join(' ')}`,
            scope: auth.scopes.join(' '),
          }),
        });
      }
      return { kind: 'jwt', subject: payload.sub!, issuer: payload.iss, scopes };
    },
  };
}

function describeJwtError(e: joseErrors.JOSEError): string {
  if (e instanceof joseErrors.JWTExpired) return 'it has expired';
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.claim === 'nbf') return 'it is not valid yet (nbf)';
    if (e.claim === 'iss') return 'wrong issuer';
    if (e.claim === 'aud') return 'wrong audience (it is not meant for this resource)';
    return `claim ${e.claim}: ${e.reason}`;
  }
  if (e instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the issuer matches its kid';
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad signature';
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  return e.message;
}
