// The cluster secret and the keys derived from it: one HKDF key per use, so a MAC of one kind never verifies as another.
import { hkdfSync } from 'node:crypto';

export type KeyUse = 'sid' | 'fwd' | 'rs' | 'mrtr';

export interface ClusterKeys {
  /** The signing key (the first secret) for each use. */
  sign: Record<KeyUse, Buffer>;
  /** Every key that verifies, newest first (several secrets during rotation). */
  verify: Record<KeyUse, Buffer[]>;
}

function derive(secret: string, use: KeyUse): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'berth-cluster', use, 32));
}

/** Keys from the secret variable's value: comma-separated secrets, each at least 32 bytes; the first signs. */
export function clusterKeys(value: string | undefined, envName: string): ClusterKeys {
  const secrets = (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (secrets.length === 0)
    throw new Error(
      `cluster.secretEnv: the environment variable ${envName} is empty or unset (every node needs the same cluster secret, at least 32 bytes)`,
    );
  for (const s of secrets)
    if (Buffer.byteLength(s) < 32)
      throw new Error(`cluster.secretEnv: each secret in ${envName} must be at least 32 bytes (one is ${Buffer.byteLength(s)})`);
  const uses: KeyUse[] = ['sid', 'fwd', 'rs', 'mrtr'];
  const verify = Object.fromEntries(uses.map((u) => [u, secrets.map((s) => derive(s, u))])) as Record<KeyUse, Buffer[]>;
  const sign = Object.fromEntries(uses.map((u) => [u, verify[u][0]!])) as Record<KeyUse, Buffer>;
  return { sign, verify };
}
