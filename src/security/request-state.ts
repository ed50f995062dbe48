// requestState tokens for bridged multi-round-trip calls (a 2026 client, a 2025-era server). The token tells
// berth which suspended call and round a retry continues; clients may not forge it, and it is bound to the
// caller, the runtime and runtime session, and the original request, so it cannot be replayed elsewhere.
// Format: b1.<b64url payload JSON>.<b64url HMAC-SHA256(key, "berth-mrtr-v1|" + payload)>.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface StateClaims {
  /** runtime */
  rt: string;
  /** runtime session id, or the pool member's id */
  rs: string;
  /** the suspended call's internal id */
  c: string;
  /** the round this token answers */
  n: number;
  /** input request key -> the server's pending request id */
  k: Record<string, string | number>;
  /** SHA-256 of the principal key */
  p: string;
  /** method */
  m: string;
  /** digest of name/uri + arguments */
  d: string;
  /** expiry, ms since the epoch */
  exp: number;
  /** Cluster mode: the node holding the suspended call (nodeId.incarnation), so any node can route the retry. */
  o?: string;
}

/** What a retry must match: everything but the round bookkeeping. */
export type Expected = Pick<StateClaims, 'rt' | 'rs' | 'p' | 'm' | 'd'>;

export const INVALID_STATE = 'Invalid or expired requestState';

const sha256 = (s: string) => createHash('sha256').update(s).digest('base64url');

/** Keys sorted at every level, so equal arguments digest equally whatever their order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The digest of what identifies a request: its name or uri and its arguments. */
export function requestDigest(params: Record<string, unknown> | undefined): string {
  return sha256(canonical({ name: params?.name, uri: params?.uri, arguments: params?.arguments }));
}

export function principalDigest(principalKey: string): string {
  return sha256(principalKey);
}

export class RequestStateCodec {
  // Per berth process: a suspended call does not outlive it, so neither need its tokens. In cluster mode every node
  // shares a key derived from the cluster secret, so the receiving node can trust the owner claim and route.
  constructor(private readonly key: Buffer = randomBytes(32)) {}

  /** The owner claim of an authentic, unexpired token (whatever request it is for); undefined otherwise. */
  owner(token: unknown, now = Date.now()): string | undefined {
    const c = this.authentic(token, now);
    return typeof c?.o === 'string' ? c.o : undefined;
  }

  /** The claims of a token berth minted (its MAC checked in constant time) that has not expired; else undefined. */
  private authentic(token: unknown, now: number): StateClaims | undefined {
    if (typeof token !== 'string' || token.length > 8192) return undefined;
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== 'b1') return undefined;
    const given = Buffer.from(parts[2]!, 'base64url');
    const want = this.mac(parts[1]!);
    if (given.length !== want.length || !timingSafeEqual(given, want)) return undefined;
    try {
      const c = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as StateClaims;
      return typeof c.exp === 'number' && c.exp > now ? c : undefined;
    } catch {
      return undefined;
    }
  }

  private mac(payload: string): Buffer {
    return createHmac('sha256', this.key).update(`berth-mrtr-v1|${payload}`).digest();
  }

  mint(claims: StateClaims): string {
    const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `b1.${payload}.${this.mac(payload).toString('base64url')}`;
  }

  /** The claims when the token is authentic, unexpired and matches this request; else undefined. */
  verify(token: unknown, expected: Expected, now = Date.now()): StateClaims | undefined {
    const claims = this.authentic(token, now);
    if (!claims) return undefined;
    for (const f of ['p', 'rt', 'rs', 'm', 'd'] as const) {
      const a = Buffer.from(String(claims[f]));
      const b = Buffer.from(expected[f]);
      if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined;
    }
    return claims;
  }
}
