// The one small interface every sandbox driver implements (process today; namespace, gVisor, microVM next).
import type { Readable, Writable } from 'node:stream';
import type { Dial } from './dial.js';

/** A session's network: none (loopback only), egress (outbound through rules, network.ts) or the host's. */
export type NetworkMode = 'none' | 'egress' | 'host';

/** One allowNet entry, resolved (a CIDR or a bare address, or HOST:PORT for one TCP port): what an egress session may reach past the blocked ranges. */
export interface AllowRule {
  cidr: string;
  port?: number;
  family: 4 | 6;
}

export interface SandboxLimits {
  /**
   * Bytes of memory as configured (0: no limit). Unset, the session's cgroup takes DEFAULT_MEMORY where it can
   * (cgroups.ts sessionMemory); a microVM's guest RAM is 512 MiB.
   */
  memory?: number;
  cpus?: number;
  pids?: number;
  /** Pseudo-terminals the session may hold open at once (namespace driver as root: its own devpts instance's max). */
  ptys?: number;
  /** Bytes the session may write (working directory, /tmp, writes beside its code), or undefined for no cap. */
  disk?: number;
}

/** An OCI image's unpacked root filesystem, as the sandbox's `/` (sandbox/image.ts). */
export interface ImageRoot {
  /** Shared by every session of the image and never written: each session writes into a layer of its own. */
  rootfs: string;
  /** The working directory inside the image (its WorkingDir). */
  cwd: string;
  /** The user the image's config names, as the server sees itself (never the host's root). */
  uid: number;
  gid: number;
}

export interface SandboxSpec {
  /** The session this sandbox serves; also exported to the server as BERTH_SESSION_ID. */
  sessionId: string;
  argv: string[];
  /** Where the command is resolved from (the runtime's directory). */
  cwd: string;
  /** The session's private writable working directory; the server runs in it. */
  workDir: string;
  env: Record<string, string>;
  limits: SandboxLimits;
  /** For http upstreams: the port the server must listen on (exported as PORT). */
  port?: number;
  /**
   * none: its own loopback only; egress: plus outbound connections to the outside world, never to the host's
   * loopback, private or link-local ranges or berth's addresses (unless in allowNet); host: the host's network.
   */
  network: NetworkMode;
  /** What egress may reach although blocked by default (parsed allowNet). */
  allowNet?: readonly AllowRule[];
  /** More host paths to expose read-only, at the same path. */
  mounts: string[];
  /** Host paths the sandbox must not see although they lie in cwd or mounts (berth's own config file). */
  hide?: string[];
  /**
   * Run inside this image's root filesystem instead of the host's: argv is resolved inside it, cwd (the runtime's
   * directory) is not shown, workDir still is (the session's own writable directory, its HOME).
   */
  image?: ImageRoot;
  /**
   * Started ahead of demand (a warm pool growing above its min): it runs at a lower CPU priority until started(), so it
   * yields to live sessions and to the starts clients wait for. Root only.
   */
  yieldWhileStarting?: boolean;
  /** Hears what the driver sees happen to the sandbox that the server would not say itself (its disk cap reached). */
  notice?: (what: string) => void;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the driver knows why (e.g. 'oom'). */
  reason?: string;
  /** With reason 'oom': the bytes of the limit the server ran into (its cgroup's, or a microVM guest's RAM). */
  memoryLimit?: number;
}

export interface Sandbox {
  readonly driver: string;
  readonly pid: number | undefined;
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** For http upstreams in a network of their own: opens a connection (berth's alone) to $PORT inside it. */
  readonly dialHttp?: Dial;
  /** Resolves once, when the server has exited for any reason. */
  readonly exited: Promise<ExitInfo>;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the server is gone. */
  stop(graceMs: number): Promise<ExitInfo>;
  /**
   * The server has answered: from now on it gets the host's CPU like every live session. Until then a sandbox started
   * ahead of demand (spec.yieldWhileStarting) runs at a lower priority (when berth is root), so pool refills yield.
   */
  started(): void;
}

export interface SandboxDriver {
  readonly name: string;
  /** Whether this host can run the driver for a runtime rooted at baseDir; `reason` says why not. */
  probe(baseDir: string): Promise<{ ok: boolean; reason?: string }>;
  start(spec: SandboxSpec): Promise<Sandbox>;
}
