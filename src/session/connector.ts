// How berth reaches a server it has started: the one choice between the ways a server speaks MCP, made by the
// composition root per runtime (app/berth.ts) and nowhere else. Each way is its own file: connect-stdio.ts
// (MCP on the sandbox's stdin/stdout) and connect-http.ts (Streamable HTTP on $PORT, the AgentCore contract).
import type { Logger } from 'pino';
import type { RuntimeConfig } from '../config/schema.js';
import type { Metrics } from '../observe/metrics.js';
import type { DropReason, RelayLog, RelayOptions } from '../relay/message-relay.js';
import type { RetentionBudget } from '../relay/stream-log.js';
import type { Upstream } from '../relay/upstream.js';
import type { Sandbox } from '../sandbox/index.js';
import type { ServerNoise } from './noise.js';

export interface Connecting {
  config: RuntimeConfig;
  runtimeName: string;
  sandbox: Sandbox;
  /** The port chosen by `port()`, if any. */
  port: number | undefined;
  log: Logger;
  noise: ServerNoise;
  metrics?: Metrics;
  /** What every session's retained events may take together (server.retainBudget). */
  retention?: RetentionBudget;
}

export interface Connector {
  /** The port the server is told to listen on ($PORT), chosen before its sandbox starts; undefined for none. */
  port(): Promise<number | undefined>;
  /**
   * How late the headers of an answer may come, ms (a cluster peer forwarding to this node waits that long):
   * 0 when they come within the JSON window (a relayed call becomes a stream by then).
   */
  headersWithin(config: RuntimeConfig): number;
  /** The upstream for a started server, and the start-up step that says it is warm (bounded by the caller). */
  connect(c: Connecting): { upstream: Upstream; warm: Promise<void> };
}

/** A relay's log lines, into the session's logger (each connector's relay, however it makes it). */
export const relayLog =
  (log: Logger): RelayLog =>
  (level, msg, extra) =>
    log[level](extra ?? {}, msg);

/** A relay's dropped server messages, counted in berth_stream_dropped_total for this runtime. */
export const dropCounter =
  (metrics: Metrics, runtime: string) =>
  (reason: DropReason): void =>
    metrics.streamDropped.inc({ runtime, reason });

/**
 * A session's 'paced' events (its server's output had its share of berth's main thread, limits.outputTime): each
 * counted in berth_server_output_paused_seconds_total, the first said in the session's log.
 */
export function pacedReport(config: RuntimeConfig, runtime: string, log: Logger, metrics?: Metrics): (ms: number) => void {
  let said = false;
  return (ms) => {
    metrics?.outputPaused.inc({ runtime }, ms / 1000);
    if (said) return;
    said = true;
    const { outputTime, outputTimeBurst } = config.limits;
    log.warn(
      { pauseMs: ms, outputTime, outputTimeBurst },
      "the server's output took more of berth's time than limits.outputTime allows: berth reads it more slowly (its writes wait; nothing is dropped), counted in berth_server_output_paused_seconds_total; this is said once per session",
    );
  };
}

/** How a relay over this runtime's servers routes and times out. */
export function relayOptions(config: RuntimeConfig, retention?: RetentionBudget): RelayOptions {
  return {
    stateless: config.mode === 'stateless',
    streams: config.streams,
    requestTimeout: config.limits.requestTimeout,
    serverRequestTimeout: config.limits.serverRequestTimeout,
    retention,
  };
}
