// The one source of truth for configuration: validated with zod, exported as JSON Schema (scripts/gen-schema.ts).
import { z } from 'zod';
import { parseDuration, parseSize } from '../util/units.js';

const durationRe = /^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$/;
const sizeRe = /^\s*\d+(\.\d+)?\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$/i;

const duration = (desc: string) =>
  z
    .union([z.number().int().nonnegative(), z.string().regex(durationRe, 'expected a duration such as 250ms, 30s, 15m or 8h')])
    .transform((v) => parseDuration(v))
    // Node timers hold at most 2^31-1 ms (~24.8 days); longer ones would fire at once.
    .refine((ms) => ms <= 2 ** 31 - 1, 'durations longer than 24 days are not supported')
    .describe(desc);

const size = (desc: string) =>
  z
    .union([z.number().int().nonnegative(), z.string().regex(sizeRe, 'expected a size such as 512KiB or 4MiB')])
    .transform((v) => parseSize(v))
    .describe(desc);

export const ISOLATION_KINDS = ['auto', 'process', 'namespace', 'gvisor', 'microvm'] as const;

export const LimitsSchema = z
  .object({
    maxBodySize: size('Largest accepted request body; larger bodies get 413.').prefault('4MiB'),
    maxSessions: z.number().int().positive().describe('Most live sessions this runtime holds; beyond it initialize gets 503.').default(1000),
    maxMessageSize: size('Largest JSON-RPC message accepted from a server; a server that sends more is stopped.').prefault('64MiB'),
    startupTimeout: duration('How long a server may take to start (and, for http upstreams, to answer).').prefault('30s'),
    stopGrace: duration('Time between SIGTERM and SIGKILL when a session server is stopped.').prefault('5s'),
    bodyTimeout: duration('How long a client may take to send a request body.').prefault('30s'),
    memory: size('Memory limit per session (cgroups); a session over it is killed alone. Unset: no limit.').optional(),
    cpus: z.number().positive().describe('CPU limit per session, in CPUs (cgroups). Unset: no limit.').optional(),
    pids: z.number().int().positive().describe('Most processes/threads per session (cgroups). Unset: no limit.').optional(),
    requestTimeout: duration(
      'A call whose server sends neither its answer nor progress for this long fails with a timeout error (and the server gets a cancellation); the clock stops while the server waits on the client. 0: never.',
    ).prefault('10m'),
    serverRequestTimeout: duration(
      'A server-to-client request (elicitation, sampling, roots) unanswered this long fails for the server and is cancelled for the client. 0: it waits as long as the session lives.',
    ).prefault(0),
  })
  .strict();

/** SSE streams: when a response becomes one, and how berth keeps it alive and resumable. */
export const StreamsSchema = z
  .object({
    jsonWindow: duration(
      'A call answered within this long gets plain JSON; a longer one (or one that sends progress or a request first) becomes a resumable SSE stream. 0: every call streams.',
    ).prefault('200ms'),
    keepAlive: duration('An SSE stream with nothing to say for this long gets a comment line, so proxies keep it open. 0: never.').prefault('15s'),
    retry: duration('Reconnection delay advised to clients in the SSE retry field.').prefault('1s'),
    retainEvents: z
      .number()
      .int()
      .positive()
      .describe(
        'SSE events kept per session for replay after a dropped stream (Last-Event-ID), including messages waiting for a stream to open; the oldest go first, and a message dropped before any client saw it is answered with an error (requests) or logged (notifications).',
      )
      .default(1000),
    retainBytes: size('Bytes of SSE events kept per session for replay (see retainEvents).').prefault('16MiB'),
    maxBuffer: size(
      'Bytes a slow client may leave unread on one stream before berth closes that connection; the client resumes from its last event.',
    ).prefault('4MiB'),
  })
  .strict();

export const RuntimeSchema = z
  .object({
    command: z
      .union([z.string().min(1), z.array(z.string()).min(1)])
      .describe('The MCP server to host: an argv array, or one string split on spaces.'),
    mode: z.enum(['stateful', 'stateless']).describe('stateful: one server per session; stateless: a shared warm pool, no session id.').default('stateful'),
    upstream: z.enum(['stdio', 'http']).describe('stdio: the server speaks MCP on stdin/stdout; http: it serves Streamable HTTP on $PORT at /mcp.').default('stdio'),
    isolation: z.enum(ISOLATION_KINDS).describe('Sandbox driver for each session server; auto picks the strongest one this host supports.').default('auto'),
    network: z
      .enum(['host', 'none'])
      .describe("host: the server shares the host's network; none: it has only its own loopback (namespace driver and stronger).")
      .default('host'),
    mounts: z.array(z.string().startsWith('/', 'mount paths must be absolute')).describe('More host paths the sandbox sees, read-only, at the same path.').default([]),
    idleTimeout: duration('A session with no request in flight and no client traffic for this long ends.').prefault('15m'),
    maxLifetime: duration('A session ends this long after creation, even while busy.').prefault('8h'),
    warmPool: z
      .number()
      .int()
      .nonnegative()
      .describe('Servers started ahead of demand so a new session (or a stateless request) finds one ready.')
      .default(2),
    readyProbe: z
      .enum(['ping', 'none'])
      .describe('How a warm stdio server is known to be ready: a JSON-RPC ping before initialize, or not at all.')
      .default('ping'),
    env: z.record(z.string(), z.string()).describe('Extra environment variables for the server.').default({}),
    inheritEnv: z.array(z.string()).describe("Names of berth's own environment variables to pass through to the server.").default([]),
    cwd: z.string().optional().describe('Working directory the command is resolved from (default: where berth started).'),
    limits: LimitsSchema.default(LimitsSchema.parse({})),
    streams: StreamsSchema.default(StreamsSchema.parse({})),
  })
  .strict()
  .refine((r) => !(r.upstream === 'http' && r.network === 'none'), {
    message: 'upstream http needs network host: berth reaches the server on its $PORT',
    path: ['network'],
  });

export const ServerSchema = z
  .object({
    host: z.string().describe('Address to listen on.').default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).describe('Port to listen on (0 picks a free one).').default(8787),
    allowedOrigins: z
      .array(z.string())
      .describe('Origin header values allowed to call berth; "loopback" allows localhost origins, "*" any.')
      .default(['loopback']),
    drainTimeout: duration('On SIGTERM, how long in-flight calls may take to finish before sessions are ended.').prefault('30s'),
    sessionRoot: z.string().optional().describe('Directory under which per-session working directories are made (default: the OS temp dir).'),
  })
  .strict();

export const ConfigSchema = z
  .object({
    server: ServerSchema.default(ServerSchema.parse({})),
    runtimes: z
      .record(z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9._-]*$/, 'runtime names use letters, digits, ".", "_" and "-"'), RuntimeSchema)
      .refine((r) => Object.keys(r).length > 0, 'at least one runtime is required')
      .describe('Named runtimes, each served at /runtimes/NAME/mcp.'),
  })
  .strict();

export type LimitsConfig = z.output<typeof LimitsSchema>;
export type StreamsConfig = z.output<typeof StreamsSchema>;
export type RuntimeConfig = z.output<typeof RuntimeSchema>;
export type ServerConfig = z.output<typeof ServerSchema>;
export type BerthConfig = z.output<typeof ConfigSchema>;
export type BerthConfigInput = z.input<typeof ConfigSchema>;
export type RuntimeConfigInput = z.input<typeof RuntimeSchema>;

export function commandArgv(command: string | string[]): string[] {
  return Array.isArray(command) ? command : command.trim().split(/\s+/);
}
