// The Berth-Forwarded header: how an owner node knows a request was authenticated by a peer (the edge) and is
// exactly the request the edge meant to send. f1.<b64url(JSON claims)>.<b64url(HMAC-SHA256(K_fwd, payload))>.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Principal } from '../security/auth.js';
import type { ClusterKeys } from './keys.js';

/** How long a signed header is good for, and the clock skew tolerated between nodes. */
const LIFETIME_MS = 30_000;
const SKEW_MS = 5_000;

export interface ForwardClaims {
  from: string;
  to: string;
  /** The target's incarnation: a restarted node refuses headers meant for its predecessor. */
  inc: string;
  p: Principal;
  rt: string;
  m: string;
  sid: string;
  /** SHA-256 of the body, base64url ('' for none). */
  b: string;
  iat: number;
  exp: number;
  /** Nonce: each header is accepted once. */
  n: string;
}

export function bodyDigest(body: Buffer | undefined): string {
  return body && body.length ? createHash('sha256').update(body).digest('base64url') : '';
}

function tag(key: Buffer, payload: string): Buffer {
  return createHmac('sha256', key).update(`berth-fwd-v1|${payload}`).digest();
}

export function signForwarded(keys: ClusterKeys, c: Omit<ForwardClaims, 'iat' | 'exp' | 'n'>, now = Date.now()): string {
  const claims: ForwardClaims = { ...c, iat: now, exp: now + LIFETIME_MS, n: randomBytes(12).toString('base64url') };
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  return `f1.${payload}.${tag(keys.sign.fwd, payload).toString('base64url')}`;
}

/** Nonces seen within their lifetime: a captured header replayed is refused. Bounded by the lifetime, not a count. */
export class NonceCache {
  private readonly seen = new Map<string, number>();
  /** False when the nonce was already used. */
  use(nonce: string, exp: number, now = Date.now()): boolean {
    // Oldest first (insertion order, and lifetimes are equal): stop at the first still alive, so each entry is
    // looked at about once. An entry a skewed peer made outlive its neighbours only delays their removal.
    for (const [n, e] of this.seen) {
      if (e + SKEW_MS >= now) break;
      this.seen.delete(n);
    }
    if (this.seen.has(nonce)) return false;
    this.seen.set(nonce, exp);
    return true;
  }
}

export type Expected = { to: string; inc: string; rt: string; m: string; sid: string };

/** The claims of a valid header meant for this request, or a reason it is refused. */
export function verifyForwarded(
  keys: ClusterKeys,
  header: string,
  expected: Expected,
  nonces: NonceCache,
  now = Date.now(),
): ForwardClaims | string {
  const parts = header.split('.');
  if (parts.length !== 3 || parts[0] !== 'f1') return 'malformed';
  const [, payload, given] = parts as [string, string, string];
  const mac = Buffer.from(given, 'base64url');
  if (mac.length !== 32 || !keys.verify.fwd.some((k) => timingSafeEqual(mac, tag(k, payload)))) return 'bad signature';
  let c: ForwardClaims;
  try {
    c = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as ForwardClaims;
  } catch {
    return 'malformed claims';
  }
  if (c.to !== expected.to || c.inc !== expected.inc) return 'meant for another node';
  if (c.rt !== expected.rt || c.m !== expected.m || c.sid !== expected.sid) return 'meant for another request';
  if (typeof c.exp !== 'number' || c.exp + SKEW_MS < now || c.iat - SKEW_MS > now) return 'expired';
  if (!nonces.use(String(c.n), c.exp, now)) return 'replayed';
  return c;
}
