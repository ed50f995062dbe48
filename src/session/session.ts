// The session lifecycle, in one place: created by initialize, ended by DELETE, idle timeout, max lifetime,
// server exit or shutdown. Ending fails in-flight requests at once, stops the sandbox and removes its directory.
import { EventEmitter } from 'node:events';
import type { RuntimeConfig } from '../config/schema.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import { principalKey, type Principal } from '../security/auth.js';
import { dispose, type Launched } from './launch.js';
import type { JsonRpcMessage } from '../wire/jsonrpc.js';
import type { Exchange } from '../relay/exchange.js';
import type { Upstream } from '../relay/upstream.js';

/** What a session needs of bridge B (a 2025 client on a 2026-era server), which lives in a layer above. */
export interface SessionBridge {
  /** The server's input requests now put to this 2025 client. */
  readonly pending: number;
  /** The messages of one client POST; requests are answered on `exchange`. */
  fromClient(messages: JsonRpcMessage[], exchange: Exchange): void;
  close(): void;
}

export type EndReason = 'deleted' | 'idle' | 'max-lifetime' | 'crashed' | 'oom' | 'shutdown' | 'init-failed' | 'admin';

export interface SessionEvents {
  ended: [reason: EndReason, detail: string];
}

export class Session extends EventEmitter<SessionEvents> {
  readonly id: string;
  readonly createdAt = Date.now();
  lastActivity = Date.now();
  /**
   * The last message either way — client requests and answers, and the server's progress, notifications and
   * results: what the dashboard's "idle" counts from. The idle timeout goes by lastActivity, which server chatter
   * alone does not move (a server talking to nobody does not keep its session).
   */
  lastTraffic = Date.now();
  protocolVersion: string | undefined;
  /** protocol: an Mcp-Session-Id session (2025 clients); runtime: a Berth-Runtime-Session (2026 clients). */
  kind: 'protocol' | 'runtime' = 'protocol';
  /** Set when this 2025 session is served by a 2026-era server through bridge B. */
  bridge: SessionBridge | undefined;
  state: 'live' | 'ending' | 'ended' = 'live';
  endReason: EndReason | undefined;
  /** Calls held open outside the upstream (bridge B waiting on this client), bracketed by beginRequest(). */
  private proxiedInFlight = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly lifetimeTimer: NodeJS.Timeout;
  private readonly ended: Promise<void>;
  private resolveEnded!: () => void;

  /** Who created the session; only they may use it. */
  readonly principalKey: string;

  constructor(
    readonly server: Launched,
    readonly runtimeName: string,
    readonly config: RuntimeConfig,
    readonly principal: Principal,
  ) {
    super();
    this.id = server.id;
    this.principalKey = principalKey(principal);
    this.ended = new Promise((r) => (this.resolveEnded = r));
    this.lifetimeTimer = setTimeout(() => void this.end('max-lifetime'), config.maxLifetime);
    this.lifetimeTimer.unref();
    server.upstream.on('busy', (busy) => {
      // The idle clock starts when the last call ends, not when it was sent.
      if (!busy) this.lastActivity = Date.now();
      this.armIdle();
    });
    server.upstream.on('traffic', () => (this.lastTraffic = Date.now()));
    void server.sandbox.exited.then((info) => {
      if (info.reason === 'oom') {
        const limit = info.memoryLimit ? ` of ${Math.round(info.memoryLimit / 1048576)} MiB, limits.memory` : '';
        return void this.end('oom', `the server ran out of memory (memory limit${limit}) and was killed`);
      }
      const overflowed = server.upstream.overflowed;
      if (overflowed) return void this.end('crashed', overflowed);
      const why = info.reason ?? (info.signal ? `killed by ${info.signal}` : `exit code ${info.code}`);
      void this.end('crashed', `the server process exited (${why})`);
    });
    this.armIdle();
  }

  /** What this session's POSTs and GETs go to: the server's upstream, or under bridge B berth's own conversation with it. */
  get upstream(): Upstream {
    return this.bridge ? this.server.upstream.conversation : this.server.upstream;
  }

  get inFlight(): number {
    return this.proxiedInFlight + this.server.upstream.inFlight;
  }

  get live(): boolean {
    return this.state === 'live';
  }

  /** Any client traffic for this session. */
  touch(): void {
    this.lastActivity = this.lastTraffic = Date.now();
    this.armIdle();
  }

  /** Brackets a proxied request; a call in flight is never idleness. */
  beginRequest(): () => void {
    this.proxiedInFlight++;
    this.armIdle();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.proxiedInFlight--;
      this.lastActivity = this.lastTraffic = Date.now();
      this.armIdle();
    };
  }

  /** When the idle timeout ends the session if nothing happens before (undefined while a call is in flight). */
  get idleExpiresAt(): number | undefined {
    return this.inFlight > 0 ? undefined : this.lastActivity + this.config.idleTimeout;
  }

  get expiresAt(): number {
    return this.createdAt + this.config.maxLifetime;
  }

  /**
   * Idle = nothing in flight and no client traffic for idleTimeout. An open, silent GET stream is not activity.
   * One timer stays armed; traffic only moves lastActivity, and the timer, when it fires early, re-arms for what is
   * left (calls would otherwise clear and set a timer two or three times each).
   */
  private armIdle(): void {
    if (!this.live || this.idleTimer !== undefined) return;
    // While a call is in flight its end moves lastActivity; look again a whole timeout later.
    const due = this.inFlight > 0 ? this.config.idleTimeout : this.lastActivity + this.config.idleTimeout - Date.now();
    this.idleTimer = setTimeout(
      () => {
        this.idleTimer = undefined;
        if (this.inFlight === 0 && Date.now() - this.lastActivity >= this.config.idleTimeout - 5) void this.end('idle');
        else this.armIdle();
      },
      Math.max(0, due),
    );
    this.idleTimer.unref();
  }

  /** Ends the session once; concurrent callers all wait for the same end. */
  end(reason: EndReason, detail?: string): Promise<void> {
    if (this.state !== 'live') return this.ended;
    this.state = 'ending';
    this.endReason = reason;
    clearTimeout(this.idleTimer);
    clearTimeout(this.lifetimeTimer);
    const message = detail ?? describe(reason);
    this.server.upstream.fail(ErrorCode.SessionEnded, `Session ended: ${message}`);
    this.emit('ended', reason, message);
    void dispose(this.server, this.config.limits.stopGrace).finally(() => {
      this.state = 'ended';
      this.resolveEnded();
    });
    return this.ended;
  }
}

function describe(reason: EndReason): string {
  switch (reason) {
    case 'deleted':
      return 'deleted by the client';
    case 'idle':
      return 'idle timeout reached';
    case 'max-lifetime':
      return 'maximum lifetime reached';
    case 'crashed':
      return 'the server process exited';
    case 'oom':
      return 'the server ran out of memory';
    case 'shutdown':
      return 'berth is shutting down';
    case 'init-failed':
      return 'initialize failed';
    case 'admin':
      return 'ended by an administrator';
  }
}
