// Prometheus metrics (prom-client), one registry per berth instance, served at /metrics.
// Counters and histograms are updated where things happen; gauges are read from the runtimes at scrape time.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { droppedLogBytes } from '../log.js';

/** What the gauges read from each runtime at scrape time (the runtime layer, above, provides it). */
export interface RuntimeGauges {
  readonly name: string;
  readonly starts: { readonly active: number; readonly queued: number };
  readonly sessionCount: number;
  readonly runtimeSessionList: readonly unknown[];
  readonly warmServers: number;
  readonly pendingServerRequests: number;
  readonly pendingInputRounds: number;
  readonly callsInFlight: number;
}

/** Prefix of Node's process metrics: berth_process_cpu_user_seconds_total, berth_nodejs_heap_size_used_bytes, … */
export const DEFAULT_METRICS_PREFIX = 'berth_';

export interface LiveView {
  runtimes(): Iterable<RuntimeGauges>;
  /** Bytes of SSE events kept for replay, all sessions together (bounded by server.retainBudget). */
  retainedBytes?(): number;
  /** Client connections open now (bounded by server.maxConnections). */
  connections?(): Promise<number>;
}

export class Metrics {
  readonly registry = new Registry();
  readonly sessionsCreated: Counter<'runtime'>;
  readonly sessionsEnded: Counter<'runtime' | 'reason'>;
  readonly requests: Counter<'runtime' | 'method' | 'status'>;
  readonly requestSeconds: Histogram<'runtime' | 'method'>;
  readonly sessionStartSeconds: Histogram<'runtime' | 'driver' | 'warm'>;
  readonly serverRequestSeconds: Histogram<'runtime' | 'method'>;
  readonly bytes: Counter<'runtime' | 'direction'>;
  readonly swept: Counter;
  readonly outputDropped: Counter<'runtime' | 'stream'>;
  readonly outputPaused: Counter<'runtime'>;
  readonly streamDropped: Counter<'runtime' | 'reason'>;
  readonly connectionsRefused: Counter<'cap'>;
  readonly connectionsIdleClosed: Counter;
  readonly rateLimited: Counter<'runtime'>;
  readonly startsRefused: Counter<'runtime'>;
  readonly sessionsRefused: Counter<'runtime' | 'reason'>;

  constructor(view: LiveView) {
    const registers = [this.registry];
    // prom-client's own names already say what they are (process_cpu_user_seconds_total, nodejs_heap_size_…):
    // berth_ alone keeps them apart from other exporters' without doubling (berth_process_process_…).
    collectDefaultMetrics({ register: this.registry, prefix: DEFAULT_METRICS_PREFIX });
    this.sessionsCreated = new Counter({
      name: 'berth_sessions_created_total',
      help: 'Sessions created.',
      labelNames: ['runtime'],
      registers,
    });
    this.sessionsEnded = new Counter({
      name: 'berth_sessions_ended_total',
      help: 'Sessions ended, by reason (deleted, idle, max-lifetime, crashed, oom, shutdown, init-failed, admin).',
      labelNames: ['runtime', 'reason'],
      registers,
    });
    this.requests = new Counter({
      name: 'berth_requests_total',
      help: 'HTTP requests to runtimes, by JSON-RPC method (or HTTP method for GET/DELETE) and HTTP status.',
      labelNames: ['runtime', 'method', 'status'],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'berth_request_duration_seconds',
      help: 'Time from a request to the end of its response (a call streamed over SSE counts until its result).',
      labelNames: ['runtime', 'method'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.sessionStartSeconds = new Histogram({
      name: 'berth_session_start_seconds',
      help: 'Time from initialize to its answer, by sandbox driver and whether a warm server was waiting.',
      labelNames: ['runtime', 'driver', 'warm'],
      buckets: [0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.serverRequestSeconds = new Histogram({
      name: 'berth_server_request_round_trip_seconds',
      help: 'Time from a server-to-client request (elicitation, sampling, roots, ping) to the client answer.',
      labelNames: ['runtime', 'method'],
      buckets: [0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
      registers,
    });
    this.swept = new Counter({
      name: 'berth_swept_sandboxes_total',
      help: 'Sandboxes left by dead berth instances (SIGKILL, crash) that this one cleaned up at start.',
      registers,
    });
    this.bytes = new Counter({
      name: 'berth_relayed_bytes_total',
      help: 'Bytes relayed to (in) and from (out) stdio servers.',
      labelNames: ['runtime', 'direction'],
      registers,
    });
    this.outputDropped = new Counter({
      name: 'berth_server_output_dropped_bytes_total',
      help: "Bytes of session servers' stderr (and non-JSON-RPC stdout lines) not logged: over limits.stderrRate/stderrBurst, or past stderrLineSize.",
      labelNames: ['runtime', 'stream'],
      registers,
    });
    this.outputPaused = new Counter({
      name: 'berth_server_output_paused_seconds_total',
      help: "Seconds berth did not read session servers' output (stdout, or an http server's answers and streams) because it had taken its share of berth's main thread (limits.outputTime).",
      labelNames: ['runtime'],
      registers,
    });
    this.streamDropped = new Counter({
      name: 'berth_stream_dropped_total',
      help: "Server messages no client received, by reason: retention (displaced from a session's retained events before any client stream carried them: streams.retainEvents / retainBytes, server.retainBudget), no_stream (a stateless runtime's notification with no call stream), client_gone (progress for a call whose client left), not_in_flight (an answer to a request no longer in flight). The log says so at most once per 10 s per session.",
      labelNames: ['runtime', 'reason'],
      registers,
    });
    this.connectionsRefused = new Counter({
      name: 'berth_connections_refused_total',
      help: 'Client connections closed as soon as they were accepted, by the cap they met: total (server.maxConnections were open) or address (server.maxConnectionsPerAddress were open from its address).',
      labelNames: ['cap'],
      registers,
    });
    this.connectionsIdleClosed = new Counter({
      name: 'berth_connections_idle_closed_total',
      help: 'Client connections closed because their first request had not arrived within server.idleConnectionTimeout.',
      registers,
    });
    new Gauge({
      name: 'berth_connections_open',
      help: 'Client connections open now (at most server.maxConnections).',
      registers,
      async collect() {
        this.set((await view.connections?.()) ?? 0);
      },
    });
    this.rateLimited = new Counter({
      name: 'berth_rate_limited_calls_total',
      help: 'JSON-RPC calls refused with 429 by the per-principal rate limit (a refused batch counts each of its messages).',
      labelNames: ['runtime'],
      registers,
    });
    this.sessionsRefused = new Counter({
      name: 'berth_sessions_refused_total',
      help: 'New sessions refused before a server was started for them, by reason: memory (less free than limits.minFreeMemory).',
      labelNames: ['runtime', 'reason'],
      registers,
    });
    this.startsRefused = new Counter({
      name: 'berth_start_queue_refused_total',
      help: 'Initializes refused with 503 after waiting limits.startQueueTimeout for a start slot (limits.maxConcurrentStarts).',
      labelNames: ['runtime'],
      registers,
    });
    let logDropsSeen = 0;
    new Counter({
      name: 'berth_log_dropped_bytes_total',
      help: "Bytes of berth's own log dropped because whatever reads its stderr fell more than 16 MiB behind.",
      registers,
      collect() {
        const n = droppedLogBytes();
        this.inc(n - logDropsSeen);
        logDropsSeen = n;
      },
    });
    new Gauge({
      name: 'berth_server_starts',
      help: 'Servers starting now (state=running: at most limits.maxConcurrentStarts, one more while a client starts beside pool refills) and waiting for a start slot (state=queued).',
      labelNames: ['runtime', 'state'],
      registers,
      collect() {
        for (const rt of view.runtimes()) {
          this.set({ runtime: rt.name, state: 'running' }, rt.starts.active);
          this.set({ runtime: rt.name, state: 'queued' }, rt.starts.queued);
        }
      },
    });
    new Gauge({
      name: 'berth_sessions_live',
      help: 'Live sessions.',
      labelNames: ['runtime'],
      registers,
      collect() {
        for (const rt of view.runtimes()) this.set({ runtime: rt.name }, rt.sessionCount);
      },
    });
    new Gauge({
      name: 'berth_runtime_sessions_live',
      help: 'Live runtime sessions (Berth-Runtime-Session, 2026-07-28 clients).',
      labelNames: ['runtime'],
      registers,
      collect() {
        for (const rt of view.runtimes()) this.set({ runtime: rt.name }, rt.runtimeSessionList.length);
      },
    });
    new Gauge({
      name: 'berth_warm_servers',
      help: 'Servers started and waiting for a session (stateful) or a request (stateless).',
      labelNames: ['runtime'],
      registers,
      collect() {
        for (const rt of view.runtimes()) this.set({ runtime: rt.name }, rt.warmServers);
      },
    });
    new Gauge({
      name: 'berth_pending_server_requests',
      help: 'Server-to-client requests waiting for the client (e.g. elicitations waiting for a person), bridged input_required rounds included.',
      labelNames: ['runtime'],
      registers,
      collect() {
        for (const rt of view.runtimes()) this.set({ runtime: rt.name }, rt.pendingServerRequests + rt.pendingInputRounds);
      },
    });
    new Gauge({
      name: 'berth_stream_retained_bytes',
      help: 'Bytes of SSE events kept for replay (Last-Event-ID), all sessions together; server.retainBudget bounds it.',
      registers,
      collect() {
        this.set(view.retainedBytes?.() ?? 0);
      },
    });
    new Gauge({
      name: 'berth_calls_in_flight',
      help: 'Client requests in flight.',
      labelNames: ['runtime'],
      registers,
      collect() {
        for (const rt of view.runtimes()) this.set({ runtime: rt.name }, rt.callsInFlight);
      },
    });
  }
}

/**
 * The methods a metric may name: MCP's own (both eras, both directions) and the HTTP methods. Anything else — a
 * client or a server can send any method string — is counted as "other": each label value is a time series kept
 * for the life of the process, so a label taken from the wire would let anyone grow berth's memory without bound.
 */
const METHOD_LABELS = new Set([
  ...['GET', 'POST', 'DELETE', 'OPTIONS', 'UNKNOWN', 'batch', 'response'],
  ...['initialize', 'ping', 'server/discover', 'subscriptions/listen', 'logging/setLevel', 'completion/complete'],
  ...['tools/list', 'tools/call', 'prompts/list', 'prompts/get', 'resources/list', 'resources/read'],
  ...['resources/templates/list', 'resources/subscribe', 'resources/unsubscribe'],
  ...['sampling/createMessage', 'elicitation/create', 'roots/list'],
  ...['tasks/get', 'tasks/list', 'tasks/result', 'tasks/cancel'],
  ...['notifications/initialized', 'notifications/cancelled', 'notifications/progress', 'notifications/message'],
  ...['notifications/roots/list_changed', 'notifications/tools/list_changed', 'notifications/prompts/list_changed'],
  ...['notifications/resources/list_changed', 'notifications/resources/updated', 'notifications/elicitation/complete'],
]);

export function methodLabel(method: string): string {
  return METHOD_LABELS.has(method) ? method : 'other';
}
