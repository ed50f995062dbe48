// /healthz (alive, with what each runtime is doing) and /readyz (ready for new sessions), as a load balancer or
// Kubernetes probes them.
import type { ClusterNode } from '../cluster/node.js';
import type { HostedRuntime } from '../runtime/hosted-runtime.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';

export interface HealthView {
  readonly runtimes: ReadonlyMap<string, HostedRuntime>;
  readonly stopping: boolean;
  readonly cluster?: ClusterNode;
}

/** Alive either way (a restart would not mend a server that cannot start), but not "ok": the details say why. */
export function healthz(v: HealthView): { status: number; body: Record<string, unknown> } {
  const runtimes = Object.fromEntries(
    [...v.runtimes].map(([n, r]) => [
      n,
      {
        sessions: r.sessionCount,
        warm: r.warmServers,
        mode: r.config.mode,
        isolation: r.driverName,
        // An image's server is named by the digest it was resolved to at start (a moved tag does not change it).
        ...(r.shown.image ? { image: r.shown.image } : {}),
        starts: r.startRecord.health,
      },
    ]),
  );
  const c = v.cluster;
  const cluster = c && {
    node: c.nodeId,
    redis: c.directory.redisOk ? 'ok' : 'unreachable',
    lease: c.directory.leaseHeld ? 'held' : 'not held',
    draining: c.draining,
  };
  const degraded = [...v.runtimes.values()].some((r) => r.startRecord.failing);
  return {
    status: v.stopping ? 503 : 200,
    body: { status: v.stopping ? 'draining' : degraded ? 'degraded' : 'ok', runtimes, ...(cluster ? { cluster } : {}) },
  };
}

/**
 * Ready for new sessions: not draining, and (cluster) placing sessions; then, per runtime, below its session cap, its
 * servers starting, and (when it keeps a pool) its first warm server ready. The node is ready while any runtime is:
 * one tenant's runtime whose servers fail (a hostile server can make them) must not take the node, and every other
 * runtime's live sessions, out of a load balancer. `?runtime=NAME` asks for that runtime alone. A pool emptied later
 * by a burst is no reason: its next session starts cold (or waits for a refill under way), and a node taken out of
 * rotation mid-burst would take its live sessions' traffic with it behind a single-node balancer.
 */
export function readyz(v: HealthView, only?: string): { status: number; body: Record<string, unknown> } {
  const node: string[] = [];
  const c = v.cluster;
  if (v.stopping || c?.draining) node.push('draining');
  // Cluster mode: a node that cannot reach Redis or lost its lease cannot place sessions (or be found).
  if (c && !c.directory.redisOk) node.push('redis: the cluster directory is unreachable');
  else if (c && !c.directory.leaseHeld) node.push('lease: this node does not hold its lease yet');
  if (only !== undefined && !v.runtimes.has(only))
    throw new HttpError(404, ErrorCode.InvalidParams, `no runtime named ${JSON.stringify(only.slice(0, 100))} (readyz?runtime=NAME)`);
  const asked = [...v.runtimes].filter(([n]) => only === undefined || n === only);
  const runtimes = Object.fromEntries(asked.map(([n, r]) => [n, notReady(n, r)]));
  const all = Object.values(runtimes);
  // Not ready when nothing is: with one runtime (or one asked for), its reasons are the node's.
  const reasons = [...node, ...(all.length && all.every((r) => r.length) ? all.flat() : [])];
  return {
    status: reasons.length ? 503 : 200,
    body: {
      ready: reasons.length === 0,
      reasons,
      runtimes: Object.fromEntries(Object.entries(runtimes).map(([n, r]) => [n, { ready: r.length === 0, reasons: r }])),
    },
  };
}

/** Why one runtime takes no new session now (none: ready). */
function notReady(n: string, r: HostedRuntime): string[] {
  const reasons: string[] = [];
  const starts = r.startRecord.health;
  if (starts.consecutiveFailures > 0 && r.warmServers === 0)
    reasons.push(`runtime ${n}: its servers fail to start (${starts.consecutiveFailures} in a row; last: ${starts.lastError})`);
  else if (r.config.warmPool.min > 0 && r.warmServers === 0 && starts.lastSuccessAt === null)
    reasons.push(`runtime ${n}: no warm server yet`);
  // Places, not live sessions: an ended session holds its place until its server has stopped (up to stopGrace), and
  // an initialize meanwhile gets 503; ready must not say otherwise.
  const places = r.sessionPlaces;
  if (places >= r.config.limits.maxSessions) {
    const ending = places - r.sessionCount;
    reasons.push(
      `runtime ${n}: at maxSessions (${r.config.limits.maxSessions}${ending > 0 ? `; ${ending} of them ended or starting, their servers not yet stopped or started` : ''})`,
    );
  }
  return reasons;
}
