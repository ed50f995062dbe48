// The one source of truth for configuration: validated with zod, exported as JSON Schema (scripts/gen-schema.ts).
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { parseDuration, parseSize } from '../util/units.js';

// A unit is required (a bare 5 is 5 ms to one reader and 5 minutes to another); only 0 may go without.
const durationRe = /^\s*(0+(\.0+)?|\d+(\.\d+)?\s*(ms|s|m|h))\s*$/;
const sizeRe = /^\s*(0+(\.0+)?|\d+(\.\d+)?\s*(b|k|kb|kib|m|mb|mib|g|gb|gib))\s*$/i;

const DURATION_HINT = 'expected a duration with its unit, such as 250ms, 30s, 15m or 8h (only 0 needs none)';
const SIZE_HINT = 'expected a size with its unit, such as 512KiB, 4MiB or 1GiB (only 0 needs none)';

const duration = (desc: string) =>
  z
    .union([z.literal(0), z.string().regex(durationRe, DURATION_HINT)], { error: DURATION_HINT })
    .transform((v) => parseDuration(v))
    // Node timers hold at most 2^31-1 ms (~24.8 days); longer ones would fire at once.
    .refine((ms) => ms <= 2 ** 31 - 1, 'durations longer than 24 days are not supported')
    .describe(desc);

const size = (desc: string) =>
  z
    .union([z.literal(0), z.string().regex(sizeRe, SIZE_HINT)], { error: SIZE_HINT })
    .transform((v) => parseSize(v))
    .describe(desc);

/** limits.pids when unset: processes and threads per session. */
export const DEFAULT_PIDS = 512;
/**
 * limits.memory when unset, in bytes: 2 GiB, the default disk cap (1 GiB of tmpfs, which is memory) plus room for
 * the server itself, so a server filling its disk gets ENOSPC before its session is killed for memory.
 */
export const DEFAULT_MEMORY = 2 * 1024 ** 3;

/** limits.ptys when unset: pseudo-terminals per session. */
export const DEFAULT_PTYS = 16;

export const ISOLATION_KINDS = ['auto', 'process', 'namespace', 'gvisor', 'microvm'] as const;

export const LimitsSchema = z
  .object({
    maxBodySize: size('Largest accepted request body; larger bodies get 413.').prefault('4MiB'),
    maxSessions: z
      .number()
      .int()
      .positive()
      .describe('Most live sessions this runtime holds; beyond it initialize gets 503.')
      .default(1000),
    minFreeMemory: size(
      "A new session (an initialize, or a 2026-07-28 client's first request) is refused with 503 and Retry-After while this berth has less memory free than this: its cgroup's memory.max − memory.current, else the host's MemAvailable. Live sessions go on. Without it, one client opening sessions (every caller is one principal without auth, so maxSessionsPerPrincipal does not apply) could start servers until the host ran out of memory, and the kernel's OOM killer then ended other clients' sessions. Refusals are counted (berth_sessions_refused_total{reason=\"memory\"}) and logged at most once per 10 s. 0: no check.",
    ).prefault('256MiB'),
    maxMessageSize: size('Largest JSON-RPC message accepted from a server; a server that sends more is stopped.').prefault('64MiB'),
    inputBacklog: size(
      "Most bytes of a session's client messages that may wait in berth for its server to take them. A stdio pipe holds 64 KiB; the rest waits in berth's own memory, so a server that stops reading its stdin (hostile, or busy in a long synchronous tool) would let its client grow berth without bound. For an http server a request body counts until its request completes (so large arguments to long-running tools may need more). Past it the session's POSTs (and 2026-07-28 requests) get 503 with Retry-After until the server reads; a message larger than this is still taken when nothing waits. Other sessions are not affected.",
    ).prefault('4MiB'),
    outputTime: duration(
      "Of each second, how much of berth's main thread one session's server output may take on average (reading its stdout, or an http server's answers and SSE streams; parsing its messages, passing them on). Past it, and past outputTimeBurst, berth stops reading that server until the time is paid back: the server's writes wait on its full pipe (or TCP buffers), nothing is dropped, and other sessions keep their share (a server writing 30 MiB messages as fast as it could took other sessions' p99 from 19 ms to 940 ms). Each pause is counted (berth_server_output_paused_seconds_total); the session's first is logged. 0: no limit.",
    ).prefault('250ms'),
    outputTimeBurst: duration(
      "How much of berth's main thread a session's server output may take at once before outputTime paces it: a large answer is parsed and passed on whole.",
    ).prefault('1s'),
    startupTimeout: duration('How long a server may take to start (and, for http upstreams, to answer).').prefault('30s'),
    stopGrace: duration('Time between SIGTERM and SIGKILL when a session server is stopped.').prefault('5s'),
    bodyTimeout: duration('How long a client may take to send a request body.').prefault('30s'),
    memory: size(
      `Memory one session may use: its server and everything it starts, and what it writes to its tmpfs (limits.disk). Over it the kernel kills the session's largest process; the session ends with reason oom, alone. Enforced with the session's memory cgroup (berth as root, or a cgroup tree it may write); microVM: the guest's RAM, and QEMU's cgroup. Unset: 2GiB where berth can set cgroup limits (microVM: 512MiB of guest RAM, the cgroup 2GiB), else none, and berth says so once at start; 2GiB leaves room for the server beside a full 1GiB disk, except under gVisor, whose working directory and /tmp are each limits.disk and both in memory (raise it there if servers fill both). 0: no limit. Whatever the limit, every sandboxed process has oom_score_adj 500, so when the host itself runs out of memory the kernel ends a session before berth.`,
    )
      .optional()
      // Left unset by parsing, as pids: the default is applied where this host can hold it.
      .meta({ default: '2GiB' }),
    cpus: z.number().positive().describe('CPU limit per session, in CPUs (cgroups). Unset: no limit.').optional(),
    pids: z
      .number()
      .int()
      .nonnegative()
      .optional()
      .describe(
        `Most tasks (processes and threads together, as the kernel counts them) one session may have at once: its server, everything it starts, their threads, and under the namespace driver bubblewrap's two small processes. Past it fork() and new threads fail with EAGAIN inside that session alone; other sessions and the host keep theirs. Enforced with the session's pids cgroup (berth as root, or a cgroup tree it may write); gVisor: its kernel's RLIMIT_NPROC on the server's tasks, the cgroup a wider bound that leaves room for runsc's own threads; microVM: QEMU's threads (the guest has a kernel of its own). Unset: ${DEFAULT_PIDS} where berth can set cgroup limits (an idle node server uses about 11, a server started through npx a few more), else none, and berth says so once at start. 0: no limit.`,
      )
      // The JSON Schema's default: parsing leaves it unset, so the sandbox can tell the default (applied where this
      // host can) from a configured limit (warned about where it cannot be enforced).
      .meta({ default: DEFAULT_PIDS }),
    ptys: z
      .number()
      .int()
      .nonnegative()
      .describe(
        `Most pseudo-terminals one session may hold open at once (a server running a shell or a REPL in a terminal opens one each). The kernel's kernel.pty.max is one pool for the whole host: without a cap one session took every pty, and other sessions and containers on the host could open none. Past it opening /dev/ptmx fails with ENOSPC inside that session alone. Namespace driver: the session's own devpts instance of this size (berth as root; as another user bubblewrap's has no cap, and berth says so once at start); gVisor and microVM servers have their own kernel's ptys. 0: no ptys.`,
      )
      .default(DEFAULT_PTYS),
    disk: size(
      'Bytes a session may write: its working directory, /tmp and (namespace driver) writes beside its code share one tmpfs of this size (gVisor: each of its working directory and /tmp; microVM: its working directory), so a server past it gets ENOSPC and the host disk is untouched. tmpfs is memory: writes count against the memory limit too. Needs berth as root (gVisor: any user). 0: no cap.',
    ).prefault('1GiB'),
    maxSessionsPerPrincipal: z
      .number()
      .int()
      .positive()
      .describe(
        'Most live sessions one principal (token subject or API key) holds in this runtime; beyond it initialize gets 429. Also the most pooled servers it may claim in each pool of shared servers (a stateless runtime\'s, and the one answering 2026-07-28 clients without a runtime session, where each bridged call to a 2025-era stdio server holds one until the client\'s retry): a call that needs one more gets 429 once none of its own frees within startupTimeout, at once when all of them hold bridged calls. Not applied without auth (every caller is the one principal "anonymous").',
      )
      .default(100),
    requestsPerSecond: z
      .number()
      .positive()
      .describe(
        'JSON-RPC messages per second one principal may send to this runtime, on average (token bucket): each HTTP request counts one, a batch one per message; beyond it 429 with Retry-After (a batch over what is left is refused whole). Not applied without auth.',
      )
      .default(50),
    requestBurst: z
      .number()
      .int()
      .positive()
      .describe(
        'Messages one principal may send at once before requestsPerSecond applies; a batch larger than this is always refused (429, no Retry-After).',
      )
      .default(100),
    requestTimeout: duration(
      'A call whose server sends neither its answer nor progress for this long fails with a timeout error (and the server gets a cancellation); the clock stops while the server waits on the client. 0: never.',
    ).prefault('10m'),
    pendingInputTimeout: duration(
      "A 2025-era server's call bridged to a 2026-07-28 client waits this long for the client's retry carrying the answers to its input_required round; then the server's request fails and the call is cancelled.",
    ).prefault('15m'),
    stderrRate: size(
      "Bytes per second of a session server's stderr (and of its stdout lines that are not JSON-RPC) that berth logs, per session (a token bucket, each line costing its length + 128). Beyond it output is dropped unread and counted (berth_server_output_dropped_bytes_total); the session's first drop is logged once, and the total when the server ends. 0: only stderrBurst is ever logged.",
    ).prefault('16KiB'),
    stderrBurst: size(
      'Bytes of server output a session may log at once before stderrRate applies (start-up chatter, a stack trace). 0 (with stderrRate 0): none is logged.',
    ).prefault('256KiB'),
    stderrDrainRate: size(
      "Bytes per second of a session server's stderr berth reads (to drop them) once stderrRate is spent; a server writing faster waits on its full pipe, so a flood costs berth little CPU. 0: no limit.",
    ).prefault('64MiB'),
    stderrLineSize: size(
      'Longest stderr line logged; the rest of a longer line is dropped (and counted), the line marked [truncated].',
    ).prefault('16KiB'),
    maxConcurrentStarts: z
      .union([z.number().int().positive(), z.literal('auto')])
      .describe(
        "Servers this runtime starts at once (cold starts for sessions without a warm server, and warm pool refills); further starts wait in a queue, so a burst of initializes cannot starve live sessions and /healthz of CPU. Refills take at most all slots but one (at least one), and a client's start never waits behind refills alone: it starts beside them, one over the cap. auto: half the host's CPU cores, at least 1; at least 2 when the runtime's sandbox is a microVM or gVisor (isolation auto included), whose starts last seconds (a start is a burst of CPU for the sandbox's set-up and the server's own; on 2 cores, during a storm of new sessions, 4 at once took live calls' p99 from 35 to 220-340 ms, 2 at once to 84-122 ms, 1 at once to 53-87 ms with about a quarter fewer sessions started; docs/benchmarks.md).",
      )
      .prefault('auto'),
    lowerStarts: z
      .boolean()
      .describe(
        "Start each server at CPU nice 10 (its whole sandbox, and its scheduling group where the kernel groups CPU time by session) until it has answered initialize, then at 0, so starts yield the CPU to live sessions (as root only). Off by default: on a host saturated by other work, lowered starts crawl (a refill or a cold start past startupTimeout, a microVM boot past a minute). On: during 100 new sessions in 5 s on 2 cores, 8 live sessions' call p99 fell from 90-130 ms to under 100 ms (docs/benchmarks.md).",
      )
      .default(false),
    startQueueTimeout: duration(
      'How long an initialize waits in the start queue (maxConcurrentStarts) for its server to begin starting; then it gets 503 with Retry-After. 0: refused at once when every start slot is busy.',
    ).prefault('10s'),
    serverRequestTimeout: duration(
      'A server-to-client request (elicitation, sampling, roots) unanswered this long fails for the server and is cancelled for the client. 0: it waits as long as the session lives.',
    ).prefault(0),
  })
  .strict();

/** SSE streams: when a response becomes one, and how berth keeps it alive and resumable. */
export const StreamsSchema = z
  .object({
    jsonWindow: duration(
      "A call answered within this long gets plain JSON; a longer one (or one that sends progress or a request first) becomes a resumable SSE stream. A 2026-07-28 client's call past it becomes a stream when it first has something to send, or when keepAlive more has passed, so a late error keeps its own HTTP status. 0: every call streams.",
    ).prefault('200ms'),
    keepAlive: duration('An SSE stream with nothing to say for this long gets a comment line, so proxies keep it open. 0: never.').prefault(
      '15s',
    ),
    retry: duration('Reconnection delay advised to clients in the SSE retry field.').prefault('1s'),
    retainEvents: z
      .number()
      .int()
      .positive()
      .describe(
        'SSE events kept per session for replay after a dropped stream (Last-Event-ID), including messages waiting for a stream to open; the oldest go first, and a message dropped before any client saw it is answered with an error (requests) or logged (notifications), and counted in berth_stream_dropped_total; the log says how many at most once per 10 s per session.',
      )
      .default(1000),
    retainBytes: size('Bytes of SSE events kept per session for replay (see retainEvents).').prefault('16MiB'),
    maxBuffer: size(
      'Bytes a slow client may leave unread on one stream before berth closes that connection; the client resumes from its last event.',
    ).prefault('4MiB'),
  })
  .strict();

/** `npx -y PACKAGE` commands: the package is installed once, outside the sandboxes, and shown to them read-only. */
export const PackageCacheSchema = z
  .object({
    dir: z
      .string()
      .startsWith('/', 'packageCache.dir must be absolute')
      .optional()
      .describe(
        'Where berth installs the packages of npx / npm exec commands, one directory per runtime and package spec, reused across restarts (default: $BERTH_PACKAGE_CACHE, else /var/cache/berth/packages as root, else $XDG_CACHE_HOME/berth/packages). As root every directory above it must be traversable by uid 65534.',
      ),
    refresh: z
      .boolean()
      .describe(
        "Install the package anew at every berth start (picks up a new version of an unpinned spec); false: reuse the runtime's filled directory.",
      )
      .default(false),
    installTimeout: duration('How long npm install of the package may take; past it the install is killed and the start fails.').prefault(
      '10m',
    ),
    installScripts: z
      .boolean()
      .describe(
        "Let the package and its dependencies run their install scripts. They run as berth's user outside any sandbox, so this is off unless the package needs it (native modules).",
      )
      .default(false),
  })
  .strict();

/** Container images (runtimes with image:): where they are unpacked, and how long a pull may take. */
export const ImageCacheSchema = z
  .object({
    dir: z
      .string()
      .startsWith('/', 'imageCache.dir must be absolute')
      .optional()
      .describe(
        'Where images are unpacked, one directory per manifest digest, shared by every runtime and kept across restarts (default: $BERTH_IMAGE_CACHE, else /var/cache/berth/images as root, else $XDG_CACHE_HOME/berth/images).',
      ),
    pullTimeout: duration('How long pulling and unpacking one image may take at start; past it the start fails.').prefault('10m'),
    maxSize: size(
      'Most disk one image may take while it is copied and unpacked (its layers, then its root filesystem); past it the pull is stopped and the start fails, naming this key. A layer can unpack to far more than it weighs. 0: no cap.',
    ).prefault('8GiB'),
  })
  .strict();

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** Asymmetric algorithms only: a JWKS holds public keys, and "none" or HMAC would let a caller forge tokens. */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

export const AuthSchema = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('none') }).strict(),
    z
      .object({
        kind: z.literal('api-key'),
        keys: z
          .array(
            z
              .object({
                name: z.string().min(1),
                sha256: z.string().regex(SHA256_HEX, 'expected 64 lowercase hex digits (berth hash-key KEY)'),
              })
              .strict(),
          )
          .describe('Accepted API keys, stored as SHA-256 digests; the name is the principal.')
          .default([]),
        keysEnv: z
          .string()
          .min(1)
          .optional()
          .describe(
            "Environment variable holding more API keys in plain text, comma-separated (each key's principal is key- and the first 12 hex digits of its SHA-256, so reordering the list re-binds nothing).",
          ),
      })
      .strict(),
    z
      .object({
        kind: z.literal('jwt'),
        jwksUrl: z.url().describe("The issuer's JWKS URL (fetched, cached, refetched when a token names an unknown kid)."),
        issuer: z
          .string()
          .min(1)
          .describe('Required iss claim; also listed as the authorization server in the protected-resource metadata.'),
        audience: z
          .union([z.string(), z.array(z.string()).min(1)])
          .optional()
          .describe("Accepted aud values (default: this runtime's resource URL, as the MCP authorization spec asks)."),
        scopes: z.array(z.string()).describe('Scopes every token must carry (scope or scp claim).').default([]),
        clockSkew: duration('Tolerance for exp and nbf.').prefault('30s'),
        jwksCooldown: duration('Least time between JWKS refetches caused by unknown kids.').prefault('30s'),
      })
      .strict(),
  ])
  .describe(
    'Who may call this runtime: none (loopback only unless dangerouslyAllowUnauthenticated), api-key, or jwt (OAuth 2.1 bearer tokens).',
  );

/** "*" or an origin exactly as a browser sends it in its Origin header. */
const isOrigin = (s: string) => {
  if (s === '*') return true;
  try {
    return new URL(s).origin === s;
  } catch {
    return false;
  }
};

export const CorsSchema = z
  .object({
    allowedOrigins: z
      .array(
        z
          .string()
          .refine(
            isOrigin,
            'cors origins are "*" or scheme://host[:port] as a browser sends them: lower case, no path, no trailing slash, no default port',
          ),
      )
      .describe(
        'Web origins (https://app.example.com, exactly as a browser sends Origin) whose pages may call this runtime from a browser (CORS): their preflights (OPTIONS) are answered 204 when they ask only for headers berth reads (else 403), and every response to them, refusals included, carries Access-Control-Allow-Origin and exposes Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Berth-Runtime-Session and Retry-After; "*": any origin. A listed origin also passes the server.allowedOrigins check (DNS-rebinding protection) for this runtime. Empty: no CORS headers, and OPTIONS is refused (405) as any method berth does not serve.',
      )
      .default([]),
    maxAge: duration('How long a browser may reuse a preflight answer (Access-Control-Max-Age; Chromium caps it at 2h).').prefault('10m'),
  })
  .strict();

/**
 * A runtime's start slots: `limits.maxConcurrentStarts` for the sandbox driver its isolation resolved to (`auto`
 * isolation may pick a microVM). auto: half the CPU cores, at least 1. A start is CPU (sandbox set-up, then the
 * server's own start-up), so on 2 cores a second one at once took the calls of live sessions from 53-87 to
 * 105-122 ms p99 in a storm of new sessions. A microVM's or gVisor's start lasts seconds, mostly waiting on its
 * boot: with one slot, clients arriving together would wait out each other's boots past startQueueTimeout, so
 * they keep at least 2. (A client never waits behind pool refills alone: StartGate.)
 */
export function startSlots(setting: number | 'auto', driver: string): number {
  if (setting !== 'auto') return setting;
  const floor = driver === 'microvm' || driver === 'gvisor' ? 2 : 1;
  return Math.max(floor, Math.floor(availableParallelism() / 2));
}

/** What `warmPool: auto` means. */
export const WARM_POOL_AUTO = { min: 2, max: 16, window: 30_000, shrinkAfter: 120_000, burstGap: 100 } as const;

/** A warm pool's bounds as the pool reads them: a fixed size N is min = max = N. */
export interface WarmPoolSize {
  min: number;
  max: number;
  /** ms: new sessions are counted over this sliding window to size the pool. */
  window: number;
  /** ms without a new session after which the pool stops its servers above min. */
  shrinkAfter: number;
  /**
   * ms: new sessions that arrive less than this apart are one burst; while a burst is served from warm servers,
   * refills wait for it to end (or for the pool to run out). 0: refills start at once.
   */
  burstGap: number;
}

const poolCount = z.number().int().nonnegative();
const WarmPoolSchema = z
  .union(
    [
      poolCount,
      z.literal('auto'),
      z
        .object({
          min: poolCount.describe('Servers kept warm even when no session starts.'),
          max: z.number().int().positive().max(1000).describe('Most warm servers the pool grows to under a burst of new sessions.'),
          window: duration('New sessions are counted over this sliding window to size the pool.').prefault('30s'),
          shrinkAfter: duration('After this long without a new session, the warm servers above min are stopped.').prefault('2m'),
          burstGap: duration(
            'New sessions arriving less than this apart are one burst: while warm servers are left, refills wait until it ends, so the burst does not share the CPU with servers starting. 0 refills at once.',
          ).prefault('100ms'),
        })
        .strict()
        .refine((o) => o.min <= o.max, { message: 'warmPool.min must not exceed warmPool.max', path: ['min'] })
        .refine((o) => o.window > 0, { message: 'warmPool.window must be more than 0', path: ['window'] }),
    ],
    {
      error:
        'expected a number of servers, auto, or {min, max, window, shrinkAfter, burstGap} (min and max numbers of servers, the others durations)',
    },
  )
  .transform((v): WarmPoolSize =>
    v === 'auto'
      ? { ...WARM_POOL_AUTO }
      : typeof v === 'number'
        ? { min: v, max: v, window: WARM_POOL_AUTO.window, shrinkAfter: 0, burstGap: 0 }
        : v,
  )
  .describe(
    "Servers started ahead of demand so a new session (or a stateless request) finds one ready. A number: that many, always. {min, max, window, shrinkAfter, burstGap} or auto: the pool of a stateful runtime (and of its 2026 runtime sessions) follows demand (a stateless pool keeps min): it aims at min plus the larger of twice the new sessions expected while one server starts (their rate over window, taken over at least one start time, times the measured start time) and the most sessions that started within one window since the pool last shrank (a burst that came once is expected again), at most max and, above min, half the available host memory divided by limits.memory (unset: 256MiB a server); refills take the start slots of limits.maxConcurrentStarts after clients' own starts, and wait while new sessions keep arriving less than burstGap apart and warm servers are left; after shrinkAfter without a new session the servers above min are stopped. auto is {min: 2, max: 16, window: 30s, shrinkAfter: 2m, burstGap: 100ms}.",
  )
  .prefault('auto');

export const RuntimeSchema = z
  .object({
    command: z
      .union([z.string().min(1), z.array(z.string()).min(1)])
      .optional()
      .describe(
        "The MCP server to host: an argv array, or one string split on spaces. With image: replaces the image's entrypoint and cmd, run inside the image.",
      ),
    image: z
      .string()
      .min(1)
      .optional()
      .describe(
        "An OCI container image to run each session's server from, instead of a command on the host: docker://NAME[:TAG|@DIGEST] (a registry; a bare NAME:TAG means the same), oci:DIR[:TAG] (an OCI layout), oci-archive:FILE or docker-archive:FILE. Pulled and unpacked once per manifest digest (imageCache); each session gets the image's root read-only plus a writable layer of its own. The image's config gives the server's entrypoint, cmd, env, working directory and user. The default upstream for an image is http: its server listens on imagePort and serves Streamable HTTP at /mcp (AgentCore's contract).",
      ),
    imagePort: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe(
        "For an image served over HTTP: the port its server listens on inside its own network (default: the one TCP port the image exposes, else 8000, AgentCore's contract).",
      ),
    imageCache: ImageCacheSchema.default(ImageCacheSchema.parse({})),
    mode: z
      .enum(['stateful', 'stateless'])
      .describe('stateful: one server per session; stateless: a shared warm pool, no session id.')
      .default('stateful'),
    upstream: z
      .enum(['stdio', 'http'])
      .optional()
      .describe(
        'stdio: the server speaks MCP on stdin/stdout; http: it serves Streamable HTTP on $PORT at /mcp. Default: stdio for a command, http for an image.',
      ),
    isolation: z
      .enum(ISOLATION_KINDS)
      .describe('Sandbox driver for each session server; auto picks the strongest one this host supports.')
      .default('auto'),
    network: z
      .enum(['none', 'egress', 'host'])
      .describe(
        "none: the session's server has only its own loopback; egress: plus outbound connections through a user-mode network stack, never to the host's loopback, private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) or link-local (169.254/16, fe80::/10) ranges or berth's own addresses unless listed in allowNet; host: the host's network (explicit opt-in, warned at start). none and egress need berth to run as root, except none under the namespace driver.",
      )
      .default('egress'),
    allowNet: z
      .array(
        z
          .string()
          .regex(
            /^(\[?[0-9A-Za-z:._-]+\]?:\d{1,5}|[0-9a-fA-F:.]+(\/\d{1,3})?)$/,
            'allowNet entries are CIDRs (10.1.0.0/16), addresses, or HOST:PORT (db.internal:5432)',
          ),
      )
      .describe(
        "What egress may reach although blocked by default: a CIDR or address, or HOST:PORT for one TCP port. 127.0.0.1:PORT is the host's loopback, reached from the sandbox at 10.0.2.2:PORT.",
      )
      .default([]),
    mounts: z
      .array(z.string().startsWith('/', 'mount paths must be absolute'))
      .describe('More host paths the sandbox sees, read-only, at the same path.')
      .default([]),
    idleTimeout: duration('A session with no request in flight and no client traffic for this long ends.').prefault('15m'),
    maxLifetime: duration('A session ends this long after creation, even while busy.').prefault('8h'),
    warmPool: WarmPoolSchema,
    readyProbe: z
      .enum(['ping', 'none'])
      .describe('How a warm stdio server is known to be ready: a JSON-RPC ping before initialize, or not at all.')
      .default('ping'),
    serverEra: z
      .enum(['auto', '2025', '2026'])
      .describe(
        'Which MCP era the hosted server speaks: 2025 (initialize handshake), 2026 (2026-07-28, per-request _meta; its pool for 2026 clients is kept warm from the start), or auto: asked with server/discover at the first 2026-07-28 request.',
      )
      .default('auto'),
    env: z.record(z.string(), z.string()).describe('Extra environment variables for the server.').default({}),
    inheritEnv: z.array(z.string()).describe("Names of berth's own environment variables to pass through to the server.").default([]),
    cwd: z
      .string()
      .optional()
      .describe(
        "Working directory the command is resolved from; relative paths are relative to the config file's directory (default: where berth started).",
      ),
    auth: AuthSchema.default({ kind: 'none' }),
    forwardHeaders: z
      .array(
        z
          .string()
          .regex(/^[A-Za-z0-9-]+$/)
          .transform((h) => h.toLowerCase()),
      )
      .describe(
        "Client request headers passed on to an http upstream (e.g. authorization). By default the caller's credentials never reach the server.",
      )
      .default([]),
    cors: CorsSchema.default(CorsSchema.parse({})),
    limits: LimitsSchema.default(LimitsSchema.parse({})),
    streams: StreamsSchema.default(StreamsSchema.parse({})),
    packageCache: PackageCacheSchema.default(PackageCacheSchema.parse({})),
  })
  .strict()
  .refine((r) => r.command !== undefined || r.image !== undefined, {
    message: 'a runtime needs a command (the server to run) or an image (a container image holding it)',
    path: ['command'],
  })
  .refine((r) => r.imagePort === undefined || r.image !== undefined, {
    message: 'imagePort applies to image runtimes only',
    path: ['imagePort'],
  })
  .transform((r) => ({ ...r, upstream: r.upstream ?? (r.image ? ('http' as const) : ('stdio' as const)) }))
  .refine((r) => r.allowNet.length === 0 || r.network === 'egress', {
    message: 'allowNet applies to network egress only',
    path: ['allowNet'],
  })
  .refine((r) => r.forwardHeaders.length === 0 || r.upstream === 'http', {
    message: 'forwardHeaders applies to http upstreams only (a stdio server sees no headers)',
    path: ['forwardHeaders'],
  })
  .refine((r) => r.auth.kind !== 'api-key' || r.auth.keys.length > 0 || r.auth.keysEnv, {
    message: 'api-key auth needs keys or keysEnv',
    path: ['auth'],
  });

export const ServerSchema = z
  .object({
    host: z.string().describe('Address to listen on.').default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).describe('Port to listen on (0 picks a free one).').default(8787),
    allowedOrigins: z
      .array(z.string())
      .describe('Origin header values allowed to call berth; "loopback" allows localhost origins, "*" any.')
      .default(['loopback']),
    allowedHosts: z
      .array(z.string().regex(/^[^\s/]+$/, 'a host name (mcp.example.com), without scheme, path or spaces'))
      .min(1)
      .describe(
        'Host header names berth answers to, on every path (DNS-rebinding protection: a page whose name was re-pointed at 127.0.0.1 sends its own name as Host). "auto": where berth listens on a loopback address, the loopback names (localhost, *.localhost, 127.0.0.0/8, [::1]) and the hosts of publicUrl and cluster.advertiseUrl; on any other address, every name. "loopback": those loopback names; "*": every name; else exact host names (no port). The listening address and publicUrl\'s host are always allowed. Any other Host gets 403.',
      )
      .default(['auto']),
    drainTimeout: duration('On SIGTERM, how long in-flight calls may take to finish before sessions are ended.').prefault('30s'),
    retainBudget: size(
      "Bytes of SSE events every session of this berth may keep for replay together (each session is also bounded by its runtime's streams.retainBytes). Past it berth lets go of events some connection already carried first (a client resuming from before them gets 410), then of events no client has seen (lost as under streams.retainBytes: a request among them is answered for the server with an error, a notification is logged), each time from the session keeping the most. Events still to be written to an open connection are never let go; those are bounded by streams.maxBuffer per connection. Counts UTF-8 bytes. 0: no bound.",
    ).prefault('512MiB'),
    stalledWriteTimeout: duration(
      'A connection whose client has read none of the answer bytes berth queued for it this long is closed, so a client that stops reading cannot make berth hold its answers in memory. 0: never.',
    ).prefault('30s'),
    allSessions: z
      .object({
        memory: z
          .union([z.literal('auto'), z.literal(0), z.string().regex(sizeRe, SIZE_HINT)], { error: `"auto", 0 or ${SIZE_HINT}` })
          .transform((v) => (v === 'auto' ? ('auto' as const) : parseSize(v)))
          .describe(
            "Memory every session of every berth on this host may use together (each session is also bounded by its runtime's limits.memory): the limit of the cgroup all sessions' cgroups live under (berth is root and the memory controller is there). Past it the kernel's OOM killer ends a session's process; berth, the host's services and what the host keeps for itself go on. \"auto\": 80% of the host's memory. 0: none. The cgroup is shared by every berth of the host: set the same value on each.",
          )
          .default('auto'),
        pids: z
          .union([z.literal('auto'), z.number().int().min(0)])
          .describe(
            'Processes and threads every session of every berth on this host may have together (each session is also bounded by limits.pids): the pids limit of the cgroup all sessions\' cgroups live under. Without it 64 sessions at the default 512 could take every pid of a host with kernel.pid_max 32768, from berth and the host alike; past it forks fail with EAGAIN in whichever session asks. "auto": three quarters of the smaller of kernel.pid_max and kernel.threads-max. 0: none. Shared by every berth of the host, as memory.',
          )
          .default('auto'),
      })
      .prefault({}),
    sandboxUids: z
      .object({
        first: z
          .number()
          .int()
          .min(1000)
          .describe(
            "The first of the host uids (and gids of the same numbers) sandboxes run as when berth is root: one of its own to each live sandbox (namespace: the server; microVM: QEMU), so what the kernel counts per user — inotify instances and watches, user namespaces, processes, message queues — is counted per session; inside, the server is nobody (65534). Drawn at random and leased host-wide in /run/berth-uids, so no two live sandboxes of the berths of one host share one (berths in containers with their own /run do not see each other's leases); a killed berth's leases are freed by the next berth's start once no process runs as their uids. Pick a range no host user, subordinate-id range (/etc/subuid) or directory service hands out: the default lies above what Debian and systemd hand out, but inside SSSD's default id-mapping range (200000–2000200000) on hosts joined to a directory. berth warns at start about users in /etc/passwd and ranges in /etc/subuid that overlap it.",
          )
          .default(0x70000000),
        count: z
          .number()
          .int()
          .min(16)
          .describe('How many uids server.sandboxUids holds; a sandbox that finds every one taken fails to start, naming this setting.')
          .default(2 ** 20),
      })
      .refine((r) => r.first + r.count <= 2 ** 32 - 1, 'the range must end below 4294967295 (the invalid uid)')
      .refine(
        (r) => r.first > 65534 || r.first + r.count <= 65533,
        "the range must not hold 65534 (nobody) nor 65533 (the uid berth dials sandboxes' ports as)",
      )
      .prefault({}),
    idleConnectionTimeout: duration(
      "A client connection that sends no request for this long is closed: one whose first request's head has not arrived this long after it connected (a connection that never sends a byte included), and a kept-alive connection between requests (Node's keepAliveTimeout). A request under way (a long call, an SSE stream) is never cut by it. 0: never, so a silent connection holds one of berth's file descriptors for as long as its client likes.",
    ).prefault('30s'),
    maxConnections: z
      .union([z.literal('auto'), z.number().int().min(0)])
      .describe(
        "Most client connections open at once (a count). Past it a new connection is closed as soon as it is accepted, so the connections already open (a kept-alive probe of /healthz, a session's streams) go on while a flood of connections cannot take the file descriptors berth needs for its sandboxes; refusals are counted (berth_connections_refused_total) and logged at most once per 10 s. \"auto\": half of berth's open-file limit (RLIMIT_NOFILE, which Node raises to the hard limit at start; 10000 with a limit of 20000), the other half left to sessions' pipes and files; 4096 where the limit cannot be read. 0: no cap.",
      )
      .default('auto'),
    maxConnectionsPerAddress: z
      .union([z.literal('auto'), z.number().int().min(0)])
      .describe(
        'Most client connections open at once from one client address (a count; IPv6 addresses by their /64, an IPv4-mapped one as its IPv4 address). Past it a new connection from that address is closed as soon as it is accepted, so one client flooding connections leaves the others room under maxConnections (before, a flood held every slot until idleConnectionTimeout closed it). Refusals are counted (berth_connections_refused_total{cap="address"}) and logged at most once per 10 s with the address. Behind a reverse proxy every connection comes from the proxy\'s address: raise it, or set 0. "auto": half of maxConnections (when that is 0, half of what its "auto" would be). 0: no cap.',
      )
      .default('auto'),
    sessionRoot: z
      .string()
      .optional()
      .describe('Directory under which per-session working directories are made (default: the OS temp dir).'),
    stateDir: z
      .string()
      .startsWith('/', 'stateDir must be absolute')
      .optional()
      .describe(
        "Where berth records its live sandboxes, so the next berth can clean up after a crash or SIGKILL (default: $BERTH_STATE_DIR, else /run/berth as root, else $XDG_RUNTIME_DIR/berth). Must be writable by berth's user only.",
      ),
    publicUrl: z
      .url()
      .optional()
      .describe(
        "The URL clients reach berth at (scheme://host[:port]); names each runtime's resource in OAuth metadata and is the default JWT audience. Default: the address berth listens on.",
      ),
    dangerouslyAllowUnauthenticated: z
      .boolean()
      .describe(
        'Allow runtimes without auth on a non-loopback address: anyone who can reach the port can open sessions and run the server.',
      )
      .default(false),
    admin: z
      .object({
        tokenEnv: z.string().min(1).optional().describe('Environment variable holding the admin token.'),
        tokenSha256: z.string().regex(SHA256_HEX).optional().describe('SHA-256 digest of the admin token.'),
      })
      .strict()
      .refine((a) => a.tokenEnv || a.tokenSha256, 'admin needs tokenEnv or tokenSha256')
      .optional()
      .describe('The admin API at /admin/ (list, inspect and end sessions; status). Off unless set.'),
  })
  .strict();

/** Cluster mode (issue 8): many berth nodes share one session directory in Redis; any node takes any request. */
export const ClusterSchema = z
  .object({
    redis: z.string().min(1).describe('Redis URL of the session directory (redis://host:port, rediss://, or a unix socket path).'),
    redisPasswordEnv: z.string().min(1).optional().describe('Environment variable holding the Redis password.'),
    nodeId: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'nodeId is a DNS label: lowercase letters, digits and "-"')
      .optional()
      .describe("This node's name in the cluster (default: $BERTH_NODE_ID, else the hostname; in Kubernetes the pod name)."),
    advertiseUrl: z.url().optional().describe('The URL other nodes reach this node at (default: $BERTH_ADVERTISE_URL).'),
    secretEnv: z
      .string()
      .min(1)
      .default('BERTH_CLUSTER_SECRET')
      .describe(
        'Environment variable holding the cluster secret (at least 32 bytes; several, comma-separated, during rotation: the first signs).',
      ),
    prefix: z.string().min(1).default('{berth}').describe('Prefix of every Redis key (keep the {hash tag} for Redis Cluster).'),
    leaseTtl: duration(
      "How long a node's lease outlives its last renewal; a dead node's sessions answer 404 everywhere after about this long.",
    ).prefault('6s'),
    renewInterval: duration('How often a node renews its lease and publishes its load.').prefault('2s'),
    viewInterval: duration("How often a node reads the other nodes' leases and load.").prefault('1s'),
    minFreeMemory: size(
      "New sessions are not placed on a node with less free memory than this (or than the runtime's limits.memory, if larger): its cgroup's memory.max − memory.current, else MemAvailable.",
    ).prefault('256MiB'),
    placement: z
      .enum(['load', 'local'])
      .describe('load: a new session goes to the least-loaded of two sampled nodes; local: always the receiving node.')
      .default('load'),
    forward: z
      .object({
        connectTimeout: duration('Connecting to the owner node; past it the request fails with 502.').prefault('1s'),
        headersTimeout: duration("Waiting for the owner's response headers; past it the request fails with 502.").prefault('5s'),
        idleTimeout: duration(
          "A forwarded stream silent this long (keep-alives included) is ended; the client resumes. At least the runtime's streams.keepAlive + 5 s.",
        ).prefault('15s'),
      })
      .strict()
      .default({ connectTimeout: 1000, headersTimeout: 5000, idleTimeout: 15000 }),
  })
  .strict()
  .refine((c) => c.leaseTtl >= 3 * c.renewInterval, { message: 'leaseTtl must be at least 3 × renewInterval', path: ['leaseTtl'] });

export const ConfigSchema = z
  .object({
    server: ServerSchema.default(ServerSchema.parse({})),
    runtimes: z
      .record(z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9._-]*$/, 'runtime names use letters, digits, ".", "_" and "-"'), RuntimeSchema)
      .refine((r) => Object.keys(r).length > 0, 'at least one runtime is required')
      .describe('Named runtimes, each served at /runtimes/NAME/mcp.'),
    cluster: ClusterSchema.optional().describe('Cluster mode: several berth nodes on one Redis. Off unless set.'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const secrets = secretVariables(c);
    for (const [name, r] of Object.entries(c.runtimes)) {
      for (const v of r.inheritEnv) {
        const what = secrets.get(v);
        if (what)
          ctx.addIssue({
            code: 'custom',
            path: ['runtimes', name, 'inheritEnv'],
            message: `inheritEnv must not pass ${v} into the sandbox: berth reads ${what} from it`,
          });
      }
    }
  });

/** The environment variables berth reads secrets from, each with what it holds: none may reach a sandbox. */
function secretVariables(c: {
  server: ServerConfig;
  runtimes: Record<string, RuntimeConfig>;
  cluster?: ClusterConfig;
}): Map<string, string> {
  const m = new Map<string, string>();
  if (c.server.admin?.tokenEnv) m.set(c.server.admin.tokenEnv, 'the admin token (server.admin.tokenEnv)');
  for (const [name, r] of Object.entries(c.runtimes)) {
    if (r.auth.kind === 'api-key' && r.auth.keysEnv) m.set(r.auth.keysEnv, `the API keys of runtime ${name} (auth.keysEnv)`);
  }
  if (c.cluster) {
    m.set(c.cluster.secretEnv, 'the cluster secret (cluster.secretEnv)');
    if (c.cluster.redisPasswordEnv) m.set(c.cluster.redisPasswordEnv, 'the Redis password (cluster.redisPasswordEnv)');
  }
  return m;
}

export type LimitsConfig = z.output<typeof LimitsSchema>;
export type AuthConfig = z.output<typeof AuthSchema>;
export type StreamsConfig = z.output<typeof StreamsSchema>;
export type CorsConfig = z.output<typeof CorsSchema>;
export type RuntimeConfig = z.output<typeof RuntimeSchema>;
export type ServerConfig = z.output<typeof ServerSchema>;
export type ClusterConfig = z.output<typeof ClusterSchema>;
export type BerthConfig = z.output<typeof ConfigSchema>;
export type BerthConfigInput = z.input<typeof ConfigSchema>;
export type RuntimeConfigInput = z.input<typeof RuntimeSchema>;

export function commandArgv(command: string | string[]): string[] {
  return Array.isArray(command) ? command : command.trim().split(/\s+/);
}
