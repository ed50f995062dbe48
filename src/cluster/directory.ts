// The session directory in Redis: each node holds a lease (renewed by itself, so it lapses when the node dies or is
// cut off) and publishes its address and load; every node reads all leases into a local view each viewInterval.
// Routing reads only the view: Redis is the authority for liveness, never on the path of one request.
import { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { ClusterConfig } from '../config/schema.js';
import { freeMemory } from '../util/free-memory.js';

export interface RuntimeLoad {
  sessions: number;
  max: number;
  warm: number;
}

export interface NodeInfo {
  id: string;
  inc: string;
  url: string;
  draining: boolean;
  /** When the node last renewed (its clock), ms since the epoch. */
  updatedAt: number;
  /** Bytes it may still use (undefined: unknown, not held against it). */
  freeMem?: number;
  load: Record<string, RuntimeLoad>;
}

export interface Self {
  id: string;
  inc: string;
  url: string;
}

// Atomic renew: never take over a lease another incarnation holds (0); 2 = the key was gone (Redis restarted
// empty, or we were cut off past the TTL), reclaimed; 1 = renewed.
const RENEW = `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
if cur then return 1 end
return 2`;

// Every live member in one round trip; members whose lease and record are both gone leave the set.
const VIEW = `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local lease = redis.call('GET', ARGV[1] .. ':lease:' .. id)
  if lease then
    table.insert(out, {id, lease, redis.call('HGETALL', ARGV[1] .. ':node:' .. id)})
  elseif redis.call('EXISTS', ARGV[1] .. ':node:' .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
  end
end
return out`;

// Deletes a key only while it still holds the value we expect.
const DEL_IF = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

// Extend a record's life while it names ARGV[1], or put it back when it is gone (it lapsed, or Redis lost it);
// 0 when it names another node.
const EXTEND = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0`;

// Leave: only our own incarnation's lease is deleted.
const LEAVE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) redis.call('SREM', KEYS[3], ARGV[2]) return 1 end
return 0`;

export interface DirectoryEvents {
  /** Another process holds our nodeId's lease: this node must stop serving. */
  fenced: [];
  /** A node left the view (lease lapsed or it left): in-flight forwards to it are aborted. */
  left: [nodeId: string];
  /** Our lease was gone and is taken again (Redis restarted empty, or we were cut off): records to restore. */
  reclaimed: [];
}

/** ioredis options from cluster.redis: redis://, rediss://, unix://PATH, redis+unix://PATH or a bare socket path. */
export function redisOptions(url: string, password: string | undefined): RedisOptions & { url?: string } {
  const base: RedisOptions = {
    lazyConnect: true,
    // Fail at once when Redis is down rather than queueing: a new session gets a clear 503, not a hang.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 1000,
    connectTimeout: 1000,
    retryStrategy: (n) => Math.min(200 * n, 1000),
    password,
  };
  const unix = /^(?:redis\+)?unix:\/\/(.+)$/.exec(url)?.[1] ?? (url.startsWith('/') ? url : undefined);
  return unix ? { ...base, path: unix } : { ...base, url };
}

export class Directory extends EventEmitter<DirectoryEvents> {
  readonly view = new Map<string, NodeInfo>();
  private readonly redis: Redis;
  /** Subscribed to the events channel: peers hear a leave or a drain at once, not at their next refresh. */
  private readonly sub: Redis;
  private readonly keys: { lease: string; node: string; nodes: string; events: string };
  private lastRenewOk = 0;
  /** True once we hold our lease; a 0 from renew after that means another incarnation took it (fence). */
  private held = false;
  /**
   * When Redis came back (a reconnect, or our lease found missing: Redis restarted empty, or an outage outlived the
   * leases). Every live node reclaims at its next renewal; until then a missing lease is not a dead node.
   */
  private recoveredAt = 0;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  draining = false;

  constructor(
    private readonly cfg: ClusterConfig,
    readonly self: Self,
    private readonly load: () => Record<string, RuntimeLoad>,
    private readonly log: Logger,
  ) {
    super();
    const password = cfg.redisPasswordEnv ? process.env[cfg.redisPasswordEnv] : undefined;
    const { url, ...opts } = redisOptions(cfg.redis, password);
    this.redis = url ? new Redis(url, opts) : new Redis(opts);
    this.redis.on('error', (e) => this.log.debug({ err: e.message }, 'redis'));
    this.redis.on('ready', () => (this.recoveredAt = Date.now()));
    // Its own connection (a subscribed one can issue nothing else); it queues the SUBSCRIBE until connected and
    // resubscribes after a reconnect. Losing a message costs only the wait for the next refresh.
    this.sub = url
      ? new Redis(url, { ...opts, enableOfflineQueue: true, maxRetriesPerRequest: null })
      : new Redis({ ...opts, enableOfflineQueue: true, maxRetriesPerRequest: null });
    this.sub.on('error', (e) => this.log.debug({ err: e.message }, 'redis (events)'));
    this.sub.on('message', (_channel, message: string) => this.onEvent(message));
    this.redis.defineCommand('berthRenew', { numberOfKeys: 3, lua: RENEW });
    this.redis.defineCommand('berthView', { numberOfKeys: 1, lua: VIEW });
    this.redis.defineCommand('berthLeave', { numberOfKeys: 3, lua: LEAVE });
    this.redis.defineCommand('berthDelIf', { numberOfKeys: 1, lua: DEL_IF });
    this.redis.defineCommand('berthExtend', { numberOfKeys: 1, lua: EXTEND });
    const p = cfg.prefix;
    this.keys = { lease: `${p}:lease:${self.id}`, node: `${p}:node:${self.id}`, nodes: `${p}:nodes`, events: `${p}:events` };
  }

  /**
   * Redis answers (the connection is up: a dead Redis is noticed at once) and our last renewal is recent enough that
   * the lease surely still stands (a hung Redis or a slow path is noticed within leaseTtl − renewInterval). A
   * tighter bound would call Redis down whenever a loaded event loop runs a renewal late.
   */
  get redisOk(): boolean {
    const stale = Math.max(1.5 * this.cfg.renewInterval, this.cfg.leaseTtl - this.cfg.renewInterval);
    return this.redis.status === 'ready' && Date.now() - this.lastRenewOk < stale;
  }

  get leaseHeld(): boolean {
    return this.held && this.redisOk;
  }

  /**
   * Connects and takes the lease, waiting out a predecessor's (a killed node restarted under the same name) for at
   * most leaseTtl. Redis being down does not stop the node: it serves its own sessions and keeps trying.
   */
  async start(): Promise<void> {
    await this.redis
      .connect()
      .catch((e: Error) =>
        this.log.warn({ err: e.message, redis: redact(this.cfg.redis) }, 'cluster: Redis unreachable at start; retrying'),
      );
    const until = Date.now() + this.cfg.leaseTtl + this.cfg.renewInterval;
    while (!this.held && Date.now() < until) {
      await this.renew();
      if (!this.held) await new Promise((r) => setTimeout(r, 200));
    }
    if (!this.held)
      this.log.warn({ node: this.self.id }, 'cluster: lease not held yet (Redis down, or a previous incarnation still holds it); retrying');
    // lazyConnect + the offline queue: this connects, and waits (retrying) while Redis is down.
    void this.sub.subscribe(this.keys.events).catch(() => undefined);
    await this.refresh();
    const every = (ms: number, f: () => Promise<unknown>) => {
      const t = setInterval(() => void f(), ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.cfg.renewInterval, () => this.renew());
    every(this.cfg.viewInterval, () => this.refresh());
  }

  async renew(): Promise<void> {
    if (this.stopped || this.redis.status !== 'ready') return;
    const fields: string[] = [
      'inc',
      this.self.inc,
      'url',
      this.self.url,
      'draining',
      this.draining ? '1' : '0',
      'updatedAt',
      String(Date.now()),
    ];
    const free = freeMemory();
    if (free !== undefined) fields.push('freeMem', String(free));
    for (const [rt, l] of Object.entries(this.load()))
      fields.push(`sessions:${rt}`, String(l.sessions), `max:${rt}`, String(l.max), `warm:${rt}`, String(l.warm));
    try {
      const r = await (this.redis as unknown as { berthRenew: (...a: string[]) => Promise<number> }).berthRenew(
        this.keys.lease,
        this.keys.node,
        this.keys.nodes,
        this.self.inc,
        String(this.cfg.leaseTtl),
        this.self.id,
        ...fields,
      );
      if (r === 0) {
        if (this.held) {
          this.log.error({ node: this.self.id }, "cluster: another berth process holds this node's lease (same nodeId); stopping");
          this.held = false;
          this.stopped = true;
          this.emit('fenced');
        }
        return;
      }
      if (r === 2 && this.held) {
        this.recoveredAt = Date.now();
        this.log.warn({ node: this.self.id }, 'cluster: lease was gone (Redis restarted, or cut off past leaseTtl); reclaimed');
        this.emit('reclaimed');
      }
      this.held = true;
      this.lastRenewOk = Date.now();
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'cluster: renew failed');
    }
  }

  /** Re-reads every lease. When Redis is unreachable the last view is kept: the owner is the final judge. */
  async refresh(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    let rows: [string, string, string[]][];
    try {
      rows = await (this.redis as unknown as { berthView: (...a: string[]) => Promise<[string, string, string[]][]> }).berthView(
        this.keys.nodes,
        this.cfg.prefix,
      );
    } catch {
      return;
    }
    const seen = new Set<string>();
    for (const [id, inc, flat] of rows) {
      const h: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) h[flat[i]!] = flat[i + 1]!;
      if (!h.url || h.inc !== inc) continue; // a record from another incarnation: not routable until it renews
      const load: Record<string, RuntimeLoad> = {};
      for (const [k, v] of Object.entries(h)) {
        const m = /^(sessions|max|warm):(.+)$/.exec(k);
        if (m) (load[m[2]!] ??= { sessions: 0, max: 0, warm: 0 })[m[1] as keyof RuntimeLoad] = Number(v);
      }
      seen.add(id);
      this.view.set(id, {
        id,
        inc,
        url: h.url,
        draining: h.draining === '1',
        updatedAt: Number(h.updatedAt),
        load,
        freeMem: h.freeMem === undefined ? undefined : Number(h.freeMem),
      });
    }
    if (this.recovering) return;
    for (const id of [...this.view.keys()]) {
      if (seen.has(id)) continue;
      this.view.delete(id);
      this.emit('left', id);
    }
  }

  /** Within one renewal (and a command's timeout) of Redis coming back: missing leases may not be reclaimed yet. */
  private get recovering(): boolean {
    return Date.now() - this.recoveredAt < this.cfg.renewInterval + 1000;
  }

  /** `left <id> <inc>` (a node stopped) or `draining <id> <inc> 0|1`, published by the node itself. */
  private onEvent(message: string): void {
    const [kind, id, inc, flag] = message.split(' ');
    if (!id || id === this.self.id) return;
    const v = this.view.get(id);
    if (!v || v.inc !== inc) return;
    if (kind === 'left') {
      this.view.delete(id);
      this.emit('left', id);
    } else if (kind === 'draining') v.draining = flag === '1';
  }

  private publish(message: string): Promise<unknown> {
    if (this.redis.status !== 'ready') return Promise.resolve();
    return this.redis.publish(this.keys.events, message).catch(() => undefined);
  }

  /** After a failed connect to a node: is its lease still there? Drops it from the view at once if not. */
  async recheck(nodeId: string): Promise<void> {
    if (this.redis.status !== 'ready') return;
    try {
      const inc = await this.redis.get(`${this.cfg.prefix}:lease:${nodeId}`);
      const v = this.view.get(nodeId);
      if (v && inc !== v.inc && !(inc === null && this.recovering)) {
        this.view.delete(nodeId);
        this.emit('left', nodeId);
      }
    } catch {
      // Redis unreachable: keep the cached view
    }
  }

  /**
   * Runtime sessions (client-chosen ids, which cannot name their owner): the owner recorded under `key`, claimed
   * with SET NX so two nodes racing for one new id agree. Returns the record's value (ours, or the winner's).
   * Throws when Redis cannot answer.
   */
  async claimRoute(key: string, value: string, ttlMs: number): Promise<string> {
    const k = `${this.cfg.prefix}:rs:${key}`;
    const ok = await this.redis.set(k, value, 'PX', Math.max(1000, ttlMs), 'NX');
    return ok ? value : ((await this.redis.get(k)) ?? value);
  }

  /** The owner recorded for a runtime session, or null. Throws when Redis cannot answer. */
  async getRoute(key: string): Promise<string | null> {
    return this.redis.get(`${this.cfg.prefix}:rs:${key}`);
  }

  /**
   * Gives a runtime session's record `ttlMs` to live while it names `value` (putting it back if it is gone); false
   * when it names another node. Throws when Redis cannot answer.
   */
  async extendRoute(key: string, value: string, ttlMs: number): Promise<boolean> {
    if (this.redis.status !== 'ready') throw new Error(`Redis is ${this.redis.status}`);
    const n = await (this.redis as unknown as { berthExtend: (...a: string[]) => Promise<number> }).berthExtend(
      `${this.cfg.prefix}:rs:${key}`,
      value,
      String(Math.max(1000, Math.round(ttlMs))),
    );
    return n === 1;
  }

  /** Forgets a runtime session's record (it was deleted), only while it still names `value`. */
  async dropRoute(key: string, value: string): Promise<void> {
    if (this.redis.status !== 'ready') return;
    await (this.redis as unknown as { berthDelIf: (...a: string[]) => Promise<number> })
      .berthDelIf(`${this.cfg.prefix}:rs:${key}`, value)
      .catch(() => undefined);
  }

  /** Publishes a draining change at once, so peers stop placing here within one view refresh. */
  async setDraining(on: boolean): Promise<void> {
    this.draining = on;
    await this.renew();
    await this.publish(`draining ${this.self.id} ${this.self.inc} ${on ? 1 : 0}`);
  }

  /** Leaves the cluster: deletes our lease and record, so peers 404 our sessions at their next refresh. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (!this.stopped && this.held && this.redis.status === 'ready') {
      const left = await (this.redis as unknown as { berthLeave: (...a: string[]) => Promise<number> })
        .berthLeave(this.keys.lease, this.keys.node, this.keys.nodes, this.self.inc, this.self.id)
        .catch(() => 0);
      if (left) await this.publish(`left ${this.self.id} ${this.self.inc}`);
    }
    this.stopped = true;
    this.redis.disconnect();
    this.sub.disconnect();
  }
}

/** A Redis URL fit for a log line: any password in it is replaced. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return url; // a socket path
  }
}
