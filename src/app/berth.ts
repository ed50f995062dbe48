// The composition root: one berth instance, built from its config. It picks each runtime's sandbox driver for this
// host, builds the runtimes with what they need (the cluster's hooks included) and a front door for each, and
// serves them all behind one HTTP listener; stop() drains and ends everything it started.
import { EventEmitter } from 'node:events';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ClusterNode } from '../cluster/node.js';
import { parseConfig } from '../config/load.js';
import type { BerthConfig, BerthConfigInput, RuntimeConfig } from '../config/schema.js';
import { adminTokenDigest } from '../http/admin.js';
import { FrontDoor } from '../http/front-door.js';
import { hostCheck } from '../http/host-check.js';
import { addressCap, connectionCap, createListener } from '../http/listener.js';
import { METADATA_PREFIX, runtimePaths } from '../http/metadata.js';
import { route, type RouterView } from '../http/router.js';
import { createLogger, type Logger } from '../log.js';
import { History } from '../observe/history.js';
import { Metrics } from '../observe/metrics.js';
import { RetentionBudget } from '../relay/stream-log.js';
import { DropTally } from '../util/tally.js';
import type { ClusterHooks, HostedRuntime, RuntimeOptions } from '../runtime/hosted-runtime.js';
import { StatefulRuntime } from '../runtime/stateful.js';
import { StatelessRuntime } from '../runtime/stateless.js';
import { checkIsolationKind, chooseDriver, imageProblem } from '../sandbox/index.js';
import { sweepDeadInstances, useStateRoot } from '../sandbox/registry.js';
import { limitAllSessions } from '../sandbox/all-sessions.js';
import { sandboxUidOverlaps, UID_LEASE_DIR, uidLeaseTrouble, useSandboxUids } from '../sandbox/uids.js';
import type { ResourceInfo } from '../security/auth.js';
import type { EndReason, Session } from '../session/session.js';
import { checkExposure, checkRuntime, demoNetwork, secretPaths } from './preflight.js';
import { httpConnector, httpConnectorAt } from '../session/connect-http.js';
import { resolveImage, type ResolvedImage } from '../sandbox/image.js';
import { commandSource } from '../session/source-command.js';
import { imagePort, imageSource } from '../session/source-image.js';
import { stdioConnector } from '../session/connect-stdio.js';

export interface BerthEvents {
  'session:created': [session: Session, runtime: string];
  'session:ended': [session: Session, runtime: string, reason: EndReason, detail: string];
  /** Cluster mode: another process took this node's lease (same nodeId); berth has stopped and cleaned up. */
  'cluster:fenced': [];
}

export interface CreateRuntimeOptions {
  logger?: Logger;
  /** Where relative commands are resolved (default: process.cwd()). */
  baseDir?: string;
  /** The config file berth was started from: hidden from every sandbox that would otherwise see it. */
  configFile?: string;
}

export class Berth extends EventEmitter<BerthEvents> implements RouterView {
  readonly config: BerthConfig;
  /** The runtimes, built by start() once each one's sandbox driver is chosen. */
  readonly runtimes = new Map<string, HostedRuntime>();
  /** Each runtime's front door, by name. */
  readonly doors = new Map<string, FrontDoor>();
  readonly log: Logger;
  private http: Server | undefined;
  private stopped: Promise<void> | undefined;
  /** Sandboxes left by dead berth instances (SIGKILL, crash) that start() cleaned up. */
  sweptSandboxes = 0;
  /** The admin token's digest; undefined while the admin API is off. */
  adminDigest: Buffer | undefined;
  readonly metrics: Metrics;
  /** Live sessions and request rate over the last hour (the dashboard's chart). */
  readonly history: History;
  readonly startedAt = Date.now();
  /** Cluster mode (config.cluster): membership, routing and draining; undefined on a single node. */
  readonly cluster: ClusterNode | undefined;
  private readonly hide: string[];
  readonly checkHost: (req: IncomingMessage) => void;
  /** What every session's retained SSE events may take together (server.retainBudget). */
  readonly retention: RetentionBudget;

  constructor(
    config: BerthConfig,
    private readonly options: CreateRuntimeOptions = {},
  ) {
    super();
    this.config = config;
    this.log = options.logger ?? createLogger();
    if (config.server.stateDir) useStateRoot(config.server.stateDir);
    useSandboxUids(config.server.sandboxUids);
    const overlaps = process.getuid?.() === 0 ? sandboxUidOverlaps() : [];
    if (overlaps.length)
      this.log.warn(
        { sandboxUids: config.server.sandboxUids, overlaps: overlaps.slice(0, 10) },
        `server.sandboxUids overlaps ${overlaps.length} host user(s) or subordinate-id range(s): a sandbox may run as one of them; move the range`,
      );
    const leaseTrouble = uidLeaseTrouble();
    if (leaseTrouble)
      this.log.warn(
        { dir: UID_LEASE_DIR },
        `sandbox uids are leased among this berth's sandboxes only (${leaseTrouble}): another berth on this host may draw one of them`,
      );
    for (const rc of Object.values(config.runtimes)) checkIsolationKind(rc.isolation);
    this.retention = new RetentionBudget(config.server.retainBudget);
    this.metrics = new Metrics({
      runtimes: () => this.runtimes.values(),
      retainedBytes: () => this.retention.bytes,
      connections: () => new Promise((resolve) => (this.http ? this.http.getConnections((_e, n) => resolve(n ?? 0)) : resolve(0))),
    });
    this.history = new History({
      read: async () => ({
        sessions: [...this.runtimes.values()].reduce((n, r) => n + r.sessionCount, 0),
        requests: (await this.metrics.requests.get()).values.reduce((n, v) => n + v.value, 0),
      }),
    });
    this.cluster =
      config.cluster &&
      new ClusterNode(config.cluster, this.log, {
        load: () => this.clusterLoad(),
        // The drain deadline: whatever sessions are left here end (their clients re-initialize elsewhere).
        onDrainDeadline: () => {
          for (const rt of this.runtimes.values())
            for (const s of [...rt.protocolSessionList, ...rt.runtimeSessionList]) void s.end('shutdown', 'drained');
        },
      });
    this.hide = secretPaths(options.configFile);
    // The node's advertised URL as the cluster took it (config or BERTH_ADVERTISE_URL); empty until berth listens,
    // when it becomes the listening address, which the check allows anyway.
    this.checkHost = hostCheck({
      allowedHosts: config.server.allowedHosts,
      listen: config.server.host,
      urls: [config.server.publicUrl, this.cluster?.directory.self.url || undefined],
    });
  }

  /** What this node publishes for placement: per stateful runtime, its sessions, cap and warm servers. */
  private clusterLoad(): Record<string, { sessions: number; max: number; warm: number }> {
    const out: Record<string, { sessions: number; max: number; warm: number }> = {};
    for (const [n, r] of this.runtimes)
      if (r.config.mode === 'stateful') out[n] = { sessions: r.sessionCount, max: r.config.limits.maxSessions, warm: r.warmServers };
    return out;
  }

  /** The name of the runtime served at /mcp: the one named "default", or the only one. */
  get defaultName(): string | undefined {
    const names = Object.keys(this.config.runtimes);
    return names.includes('default') ? 'default' : names.length === 1 ? names[0] : undefined;
  }

  get defaultRuntime(): HostedRuntime | undefined {
    const name = this.defaultName;
    return name === undefined ? undefined : this.runtimes.get(name);
  }

  get url(): string {
    const a = this.http?.address() as AddressInfo | null | undefined;
    if (!a) throw new Error('berth is not listening');
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}`;
  }

  /** Endpoint URL of a runtime. */
  endpoint(name?: string): string {
    return name && this.defaultName !== name ? `${this.url}/runtimes/${name}/mcp` : `${this.url}/mcp`;
  }

  /** The base URL clients use (publicUrl, else the address berth listens on). */
  get publicUrl(): string {
    return (this.config.server.publicUrl ?? this.url).replace(/\/+$/, '');
  }

  private resourceInfo(name: string): ResourceInfo {
    const paths = () => runtimePaths(name, this.defaultName === name);
    return {
      metadataUrl: () => `${this.publicUrl}${METADATA_PREFIX}${paths()[0]}`,
      resourceUrls: () => paths().map((p) => `${this.publicUrl}${p}`),
    };
  }

  /** What a runtime needs from the cluster, bound to its name. */
  private clusterHooks(name: string): ClusterHooks | undefined {
    const c = this.cluster;
    return (
      c && {
        newId: c.mintId,
        requestState: c.requestState,
        runtimeSessionServed: (principal, id, session) => c.holdRuntimeSession(name, principal, id, session),
        runtimeSessionDeleted: (principal, id) => c.forgetRuntimeSession(name, principal, id),
      }
    );
  }

  /** Builds one runtime around the driver chosen for it, and its front door. */
  private async build(name: string, configured: RuntimeConfig): Promise<void> {
    const baseDir = configured.cwd ?? this.options.baseDir ?? process.cwd();
    const driver = await chooseDriver(configured.isolation, baseDir, this.log.child({ runtime: name }), this.config.server.sessionRoot);
    const rc = demoNetwork(name, configured, driver, this.log);
    // An image is pulled and unpacked now (or found in the cache): a runtime whose image cannot be had is refused,
    // as is one whose driver cannot run images (before a pull that would be wasted).
    const cannot = rc.image ? imageProblem(driver) : undefined;
    if (cannot) throw new Error(`runtime "${name}": ${cannot}`);
    const image = rc.image ? await this.resolve(name, rc, baseDir) : undefined;
    // The one place that decides what this runtime's servers are, and how berth speaks to them.
    const source = image ? imageSource(rc, image) : commandSource(rc, baseDir);
    checkRuntime(name, rc, driver, source, this.config.server.sessionRoot, this.log);
    const opts: RuntimeOptions = {
      name,
      config: rc,
      server: this.config.server,
      driver,
      connector: rc.upstream === 'stdio' ? stdioConnector : image ? httpConnectorAt(imagePort(rc, image)) : httpConnector,
      source,
      baseDir,
      log: this.log,
      metrics: this.metrics,
      hide: this.hide,
      cluster: this.clusterHooks(name),
      retention: this.retention,
    };
    const rt: HostedRuntime = rc.mode === 'stateless' ? new StatelessRuntime(opts) : new StatefulRuntime(opts);
    rt.on('session:created', (s) => this.emit('session:created', s, name));
    rt.on('session:ended', (s, reason, detail) => this.emit('session:ended', s, name, reason, detail));
    this.runtimes.set(name, rt);
    const door = {
      allowedOrigins: this.config.server.allowedOrigins,
      resource: this.resourceInfo(name),
      log: this.log,
      metrics: this.metrics,
      cluster: this.cluster,
    };
    this.doors.set(name, new FrontDoor(rt, door));
  }

  private async resolve(name: string, rc: RuntimeConfig, baseDir: string): Promise<ResolvedImage> {
    try {
      const image = await resolveImage(rc.image!, { ...rc.imageCache, baseDir });
      this.log.info(
        { runtime: name, image: image.pinned, rootfs: image.rootfs },
        image.unpacked ? 'image pulled and unpacked' : 'image found in the cache (nothing unpacked)',
      );
      return image;
    } catch (e) {
      throw new Error(`runtime "${name}": ${(e as Error).message}`, { cause: e });
    }
  }

  /** server.allSessions on the sessions' parent cgroup (root): said once, with what could not be set. */
  private limitAllSessions(): void {
    if (process.getuid?.() !== 0) return; // no cgroups berth may write: the per-session warnings say so
    const { set, problems } = limitAllSessions(this.config.server.allSessions);
    if (set.memory || set.pids)
      this.log.info({ allSessions: set }, 'what every session of this host may use together (server.allSessions)');
    for (const p of problems) this.log.warn(p);
  }

  async start(): Promise<this> {
    checkExposure(this.config, this.log);
    this.adminDigest = adminTokenDigest(this.config.server.admin);
    this.sweptSandboxes = await sweepDeadInstances(this.log);
    this.metrics.swept.inc(this.sweptSandboxes);
    this.limitAllSessions();
    for (const [name, rc] of Object.entries(this.config.runtimes)) await this.build(name, rc);
    await Promise.all([...this.runtimes.values()].map((r) => r.start()));
    const bodyTimeout = Math.max(...Object.values(this.config.runtimes).map((r) => r.limits.bodyTimeout));
    const { stalledWriteTimeout, idleConnectionTimeout } = this.config.server;
    const cap = connectionCap(this.config.server.maxConnections);
    if (cap.openFiles)
      this.log.info(
        { maxConnections: cap.max, openFileLimit: cap.openFiles },
        'client connections capped at half the open-file limit (server.maxConnections auto)',
      );
    const refused = new DropTally(({ count, since }) =>
      this.log.warn(
        { count, since, maxConnections: cap.max },
        `${count} client connection${count === 1 ? '' : 's'} closed at once (since ${since}): ${cap.max} were open (server.maxConnections)`,
      ),
    );
    const perAddress = addressCap(this.config.server.maxConnectionsPerAddress, cap.max);
    const refusedAddress = new DropTally(({ count, since, first, last }) =>
      this.log.warn(
        { count, since, first, last, maxConnectionsPerAddress: perAddress },
        `${count} client connection${count === 1 ? '' : 's'} closed at once (since ${since}): ${perAddress} were open from ${first === last ? first : `each of their addresses (the first ${first}, the last ${last})`} (server.maxConnectionsPerAddress)`,
      ),
    );
    const server = createListener((req, res) => route(this, req, res), {
      bodyTimeout,
      stalledWriteTimeout,
      onStalledCut: (queuedBytes) =>
        this.log.warn(
          { queuedBytes, stalledWriteTimeout },
          'closed a connection whose client read none of its answers for stalledWriteTimeout',
        ),
      idleConnectionTimeout,
      onIdleClosed: () => this.metrics.connectionsIdleClosed.inc(),
      maxConnections: cap.max,
      onRefused: () => {
        this.metrics.connectionsRefused.inc({ cap: 'total' });
        refused.add('connection');
      },
      maxConnectionsPerAddress: perAddress,
      onRefusedAddress: (address) => {
        this.metrics.connectionsRefused.inc({ cap: 'address' });
        refusedAddress.add(address);
      },
    });
    this.http = server;
    // Refusals of the last interval are said as berth stops, not lost with its timer.
    server.once('close', () => (refused.flush(), refusedAddress.flush()));
    if (this.adminDigest) this.history.start();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.server.port, this.config.server.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    if (this.cluster) await this.joinCluster(this.cluster, server);
    return this;
  }

  private async joinCluster(c: ClusterNode, server: Server): Promise<void> {
    const a = server.address() as AddressInfo;
    if (!c.directory.self.url && (a.address === '0.0.0.0' || a.address === '::')) {
      await this.stop();
      throw new Error(
        'cluster: berth listens on every address, so peers cannot be told where it is; set cluster.advertiseUrl or BERTH_ADVERTISE_URL',
      );
    }
    c.directory.self.url ||= this.url;
    c.directory.on('fenced', () => {
      // Listeners hear of it once berth has stopped: its sandboxes (detached process groups) must not outlive it.
      void this.stop().finally(() => this.emit('cluster:fenced'));
    });
    await c.start();
  }

  /** Graceful stop: refuse new sessions, let in-flight calls finish within drainTimeout, end every session. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.history.stop();
      // Peers stop placing sessions here at once; the lease goes at the end, so our sessions stay routable meanwhile.
      await this.cluster?.directory.setDraining(true);
      const all = [...this.runtimes.values()];
      await Promise.all(all.map((r) => r.drain(this.config.server.drainTimeout)));
      // Servers still starting give up now instead of holding the stop for their startupTimeout.
      for (const r of all) r.startRecord.close();
      await Promise.all(all.map((r) => r.close()));
      if (this.http) {
        const server = this.http;
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      }
      await this.cluster?.stop();
    })();
    return this.stopped;
  }

  /** stop() has begun. */
  get stopping(): boolean {
    return this.stopped !== undefined;
  }
}

/** Creates (but does not start) berth from a config object; validation errors name the key. */
export function createRuntime(config: BerthConfigInput | BerthConfig, options?: CreateRuntimeOptions): Berth {
  return new Berth(parseConfig(config), options);
}
