// The command line: a thin layer over createRuntime().
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError, loadConfigFile, parseConfig } from '../config/load.js';
import { ConfigSchema, ImageCacheSchema, ISOLATION_KINDS, type BerthConfig } from '../config/schema.js';
import { Berth } from '../app/berth.js';
import { sha256Hex } from '../security/auth.js';
import { parseDuration, parseSize } from '../util/units.js';
import { registerClientCommands } from '../client/cli.js';
import { installAllowance } from '../sandbox/package-cache.js';
import { closeInheritedFds } from '../sandbox/inherited-fds.js';

const DEMO_SERVER = fileURLToPath(new URL('../demo/server.js', import.meta.url));
/** The installed package's version (dist/cli/main.js -> ../../package.json). */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

// Durations and sizes stay strings with their units (the config parses them, and help shows them as written);
// a bare number other than 0 is refused here, where the flag's name can go with the message.
function duration(v: string): string {
  try {
    parseDuration(v);
    return v;
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}
function size(v: string): string {
  try {
    parseSize(v);
    return v;
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}
function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got "${v}"`);
  return n;
}

/** --warm-pool: N (fixed), auto, or MIN..MAX (grows with the rate of new sessions; config files add window, shrinkAfter and burstGap). */
function warmPoolArg(v: string): number | 'auto' | { min: number; max: number } {
  if (v === 'auto') return 'auto';
  const range = /^(\d+)\.\.(\d+)$/.exec(v);
  if (range) {
    const [min, max] = [Number(range[1]), Number(range[2])];
    if (min > max || max === 0) throw new InvalidArgumentError(`expected MIN..MAX with MIN <= MAX and MAX >= 1, got "${v}"`);
    return { min, max };
  }
  return int(v);
}

/**
 * berth run: waits for each runtime's first server (those with a warm pool) before saying it listens; one that
 * cannot start ends berth with its reason and the server's last stderr lines, never a "listening" over nothing.
 */
async function firstStartsOrExit(berth: Berth): Promise<void> {
  for (const [name, rt] of berth.runtimes) {
    if (rt.config.warmPool.min === 0) continue;
    // Bounded: a runtime that starts nothing ahead of demand after all must not hold the listening line forever.
    const wait = rt.config.limits.startupTimeout + installAllowance(rt.config) + 5000;
    const first = await Promise.race([rt.startRecord.first, delay(wait, undefined, { ref: false })]);
    if (!first || first.ok) continue;
    const lines = first.stderr.length
      ? `\nits last stderr lines:\n${first.stderr.map((l) => `  ${l}`).join('\n')}`
      : '\nit wrote nothing on stderr';
    const hint = /Cannot find module|ENOENT|No such file/.test(first.stderr.join('\n'))
      ? "\nA file it needs is not visible in its sandbox: pass --mount DIR (read-only), or start berth in the server's directory."
      : '';
    process.stderr.write(`berth: runtime "${name}": its server could not start: ${first.error}${lines}${hint}\n`);
    await berth.stop();
    process.exit(1);
  }
}

async function serve(config: BerthConfig, configFile?: string, awaitFirstStart = false): Promise<void> {
  const berth = new Berth(config, { configFile });
  await berth.start();
  // One stream's unexpected error must not take every other session down with the process.
  process.on('uncaughtException', (err) => berth.log.error({ err }, 'uncaught exception (berth keeps serving)'));
  process.on('unhandledRejection', (err) => berth.log.error({ err }, 'unhandled rejection (berth keeps serving)'));
  let signals = 0;
  const shutdown = (sig: string) => {
    if (++signals > 1) process.exit(130);
    berth.log.info({ signal: sig }, 'draining: no new sessions; in-flight calls may finish');
    // The stop is bounded in every step (drainTimeout, then stopGrace per server, given twice: sessions, then pool);
    // should one step hang or fail anyway, berth still ends: what it leaves, the next berth sweeps (registry.ts).
    const stopGrace = Math.max(...Object.values(config.runtimes).map((r) => r.limits.stopGrace));
    const bound = config.server.drainTimeout + 2 * stopGrace + 10_000;
    setTimeout(() => {
      berth.log.error(
        { boundMs: bound },
        `shutdown did not finish within ${bound} ms (drainTimeout + 2 x stopGrace + 10 s); exiting anyway`,
      );
      process.exit(1);
    }, bound).unref();
    berth.stop().then(
      () => process.exit(0),
      (err: Error) => {
        berth.log.error({ err }, 'shutdown failed; exiting');
        process.exit(1);
      },
    );
  };
  // Cluster mode: another process took this node's name; it has stopped serving, and must not linger.
  berth.on('cluster:fenced', () => process.exit(1));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // A closed terminal (or a supervisor's hang-up) stops berth as SIGTERM does: Node's default would end it at once,
  // leaving its sandboxes to the next berth's sweep. berth has no configuration reload to give SIGHUP instead.
  process.on('SIGHUP', () => shutdown('SIGHUP'));
  if (awaitFirstStart) await firstStartsOrExit(berth);
  // Only now: a SIGTERM sent as soon as the URL appears must drain, not kill berth and orphan its sandboxes.
  for (const name of berth.runtimes.keys()) {
    process.stdout.write(`berth: runtime "${name}" listening on ${berth.endpoint(name)}\n`);
  }
}

function fail(e: unknown): never {
  process.stderr.write(`berth: ${e instanceof ConfigError ? e.message : (e as Error).message}\n`);
  process.exit(2);
}

const program = new Command('berth')
  .description('A stateful MCP runtime: any MCP server, one sandbox per session, behind Streamable HTTP.')
  .version(VERSION, '-V, --version', 'print the version of berth (the npm package berth-mcp)');

program
  .command('run')
  .description('Host one MCP server (the bundled demo server when no COMMAND is given) at http://HOST:PORT/mcp')
  .argument('[command...]', 'the MCP server to run, after --')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--port <port>', 'port to listen on (0 = any free port)', int, 8787)
  .option('--stateless', 'serve without sessions from a warm pool; no server-to-client requests')
  .option(
    '--image <ref>',
    "run each session's server from this OCI image (docker://NAME[:TAG], oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE); a COMMAND then replaces its entrypoint",
  )
  .addOption(
    new Option(
      '--upstream <kind>',
      'how the server speaks MCP (default: stdio; http for an --image, on the one port the image exposes, else 8000, at /mcp)',
    ).choices(['stdio', 'http']),
  )
  .option('--idle-timeout <duration>', 'end a session after this much idleness', duration, '15m')
  .option('--max-lifetime <duration>', 'end a session this long after it started', duration, '8h')
  .option('--isolation <kind>', `sandbox per session: ${ISOLATION_KINDS.join(', ')}`, 'auto')
  .addOption(
    new Option(
      '--network <mode>',
      "none: the session's own loopback only; egress: outbound to the outside world, never the host's loopback, private or link-local ranges; host: the host's network (the bundled demo, run without a command: none unless given)",
    )
      .choices(['none', 'egress', 'host'])
      .default('egress'),
  )
  .option(
    '--allow-net <cidr|host:port>',
    'let egress reach this CIDR, address or HOST:PORT although blocked by default (repeatable)',
    (v: string, acc: string[]) => [...acc, v],
    [] as string[],
  )
  .option(
    '--mount <path>',
    'expose a host path read-only in the sandbox (repeatable)',
    (v: string, acc: string[]) => [...acc, v],
    [] as string[],
  )
  .option(
    '--memory <size>',
    'memory limit per session (cgroups), e.g. 256MiB; 0 = no limit (default 2GiB where berth can set cgroup limits)',
    size,
  )
  .option(
    '--disk <size>',
    'writable space per session (working directory, /tmp, writes beside the code), e.g. 512MiB; 0 = no cap (default 1GiB)',
    size,
  )
  .option('--cpus <n>', 'CPU limit per session (cgroups), e.g. 0.5', (v: string) => {
    const n = Number(v);
    if (!(n > 0)) throw new InvalidArgumentError(`expected a positive number of CPUs, got "${v}"`);
    return n;
  })
  .option(
    '--pids <n>',
    'most processes and threads per session (cgroups); 0 = no limit (default 512 where berth can set cgroup limits)',
    int,
  )
  .option('--ptys <n>', 'most pseudo-terminals a session may hold open; 0 = none (default 16, namespace sandboxes as root)', int)
  .option(
    '--warm-pool <n|auto|min..max>',
    'servers started ahead of demand: auto (2..16, the default), a fixed number, or min..max sized by recent new sessions',
    warmPoolArg,
    'auto' as const,
  )
  .option('--max-sessions <n>', 'most live sessions', int, 1000)
  .option('--max-body <size>', 'largest request body', size, '4MiB')
  .option('--retain-events <n>', 'SSE events kept per session for resuming dropped streams (and for a GET stream not yet open)', int, 1000)
  .option('--request-timeout <duration>', 'fail a call whose server sends no answer or progress for this long (0 = never)', duration, '10m')
  .option(
    '--pending-input-timeout <duration>',
    "how long a bridged 2025 server's call waits for a 2026 client's retry with its answers",
    duration,
    '15m',
  )
  .addOption(
    new Option('--server-era <era>', 'which MCP era the server speaks (auto asks it with server/discover)')
      .choices(['auto', '2025', '2026'])
      .default('auto'),
  )
  .option(
    '--json-window <duration>',
    'a call answered within this long gets plain JSON, a longer one an SSE stream (0 = always SSE)',
    duration,
    '200ms',
  )
  .option('--keep-alive <duration>', 'comment line on a silent SSE stream this often (0 = never)', duration, '15s')
  .addOption(
    new Option('--auth <kind>', 'who may call: none (loopback only), api-key, jwt').choices(['none', 'api-key', 'jwt']).default('none'),
  )
  .option('--api-key-env <var>', 'environment variable holding the accepted API keys, comma-separated (--auth api-key)')
  .option('--jwks-url <url>', "the token issuer's JWKS URL (--auth jwt)")
  .option('--issuer <iss>', 'required token issuer (--auth jwt)')
  .option('--audience <aud>', "required token audience (--auth jwt; default: this runtime's resource URL)")
  .option(
    '--scope <scope>',
    'scope every token must carry (repeatable; --auth jwt)',
    (v: string, acc: string[]) => [...acc, v],
    [] as string[],
  )
  .option('--public-url <url>', 'the URL clients reach berth at (OAuth metadata, default JWT audience)')
  .option('--admin-token-env <var>', 'environment variable holding the admin API token (enables /admin/)')
  .option('--max-sessions-per-principal <n>', 'live sessions (and pooled servers) one principal may hold (with auth)', int, 100)
  .option(
    '--rps <n>',
    'requests per second per principal (with auth)',
    (v: string) => {
      const n = Number(v);
      if (!(n > 0)) throw new InvalidArgumentError(`expected a positive number, got "${v}"`);
      return n;
    },
    50,
  )
  .option(
    '--request-burst <n>',
    'JSON-RPC messages one principal may send at once before --rps applies (default 100; a larger batch is refused)',
    int,
  )
  .option(
    '--max-concurrent-starts <n>',
    'servers started at once; more initializes queue (default: half the CPU cores, at least 1; at least 2 under microvm and gvisor)',
    int,
  )
  .option('--lower-starts', 'start each server at CPU nice 10 until it answers, so starts yield to live sessions (root; default off)')
  .option('--start-queue-timeout <duration>', 'how long an initialize waits for a start slot before 503 (default 10s)', duration)
  .option(
    '--stderr-rate <size>',
    "bytes per second of each session server's stderr logged; the rest is dropped and counted (default 16KiB)",
    size,
  )
  .option('--stderr-burst <size>', 'bytes of server stderr a session may log at once before --stderr-rate applies (default 256KiB)', size)
  .option(
    '--stderr-drain-rate <size>',
    "bytes per second of a session's stderr read (and dropped) past its budget; a faster writer waits on its pipe (default 64MiB, 0 = no limit)",
    size,
  )
  .option(
    '--dangerously-allow-unauthenticated',
    'allow --auth none on a non-loopback --host: anyone who reaches the port can open sessions',
  )
  .option('--allowed-origin <origin...>', 'Origin values allowed (loopback, *, or exact origins)', ['loopback'])
  .option(
    '--allowed-host <name...>',
    "Host header names berth answers to (auto, loopback, *, or exact names; auto on loopback: loopback names and --public-url's host)",
    ['auto'],
  )
  .option(
    '--cors-origin <origin>',
    'an origin (https://app.example.com) whose web pages may call berth from a browser: CORS preflights answered, responses readable (repeatable)',
    (v: string, acc: string[]) => [...acc, v],
    [] as string[],
  )
  .option('--body-timeout <duration>', 'how long a client may take to send a request body (408 beyond)', duration, '30s')
  .option('--startup-timeout <duration>', 'how long a server may take to start and answer', duration, '30s')
  .option('--drain-timeout <duration>', 'on SIGTERM, time for in-flight calls to finish', duration, '30s')
  .option(
    '--idle-connection-timeout <duration>',
    'close a client connection that sends no request for this long, before its first and between requests (0 = never)',
    duration,
    '30s',
  )
  .option(
    '--max-connections <n|auto>',
    'most client connections open at once; past it new ones are closed at once (auto: half the open-file limit; 0 = no cap)',
    (v: string) => (v === 'auto' ? 'auto' : int(v)),
    'auto',
  )
  .option(
    '--max-connections-per-address <n|auto>',
    'most client connections open at once from one address (IPv6: one /64); past it its new ones are closed at once (auto: half of --max-connections; 0 = no cap)',
    (v: string) => (v === 'auto' ? 'auto' : int(v)),
    'auto',
  )
  .action(async (command: string[], o, cmd: Command) => {
    if (!(ISOLATION_KINDS as readonly string[]).includes(o.isolation))
      fail(new Error(`unknown --isolation "${o.isolation}"; expected one of: ${ISOLATION_KINDS.join(', ')}`));
    // The bundled demo needs no network and is resolved from its own (world-readable) directory, so a first
    // `berth run` works as any user and from any directory: egress needs root, and a sandboxed server (uid 65534)
    // cannot enter a directory such as /root.
    const demo = !command.length && !o.image;
    const argv = demo ? [process.execPath, DEMO_SERVER] : command.length ? command : undefined;
    const network = demo && cmd.getOptionValueSource('network') === 'default' ? 'none' : o.network;
    let config: BerthConfig;
    try {
      config = parseConfig(
        {
          server: {
            host: o.host,
            port: o.port,
            allowedOrigins: o.allowedOrigin,
            allowedHosts: o.allowedHost,
            drainTimeout: o.drainTimeout,
            idleConnectionTimeout: o.idleConnectionTimeout,
            maxConnections: o.maxConnections,
            maxConnectionsPerAddress: o.maxConnectionsPerAddress,
            publicUrl: o.publicUrl,
            dangerouslyAllowUnauthenticated: !!o.dangerouslyAllowUnauthenticated,
            admin: o.adminTokenEnv ? { tokenEnv: o.adminTokenEnv } : undefined,
          },
          runtimes: {
            default: {
              command: argv,
              image: o.image,
              mode: o.stateless ? 'stateless' : 'stateful',
              upstream: o.upstream,
              serverEra: o.serverEra,
              isolation: o.isolation,
              idleTimeout: o.idleTimeout,
              maxLifetime: o.maxLifetime,
              warmPool: o.warmPool,
              network,
              allowNet: o.allowNet,
              cwd: demo ? dirname(DEMO_SERVER) : undefined,
              mounts: o.mount,
              auth: authFlags(o),
              cors: { allowedOrigins: o.corsOrigin },
              streams: { retainEvents: o.retainEvents, keepAlive: o.keepAlive, jsonWindow: o.jsonWindow },
              limits: {
                bodyTimeout: o.bodyTimeout,
                startupTimeout: o.startupTimeout,
                maxSessions: o.maxSessions,
                maxBodySize: o.maxBody,
                requestTimeout: o.requestTimeout,
                pendingInputTimeout: o.pendingInputTimeout,
                maxSessionsPerPrincipal: o.maxSessionsPerPrincipal,
                requestsPerSecond: o.rps,
                requestBurst: o.requestBurst,
                maxConcurrentStarts: o.maxConcurrentStarts,
                lowerStarts: o.lowerStarts,
                startQueueTimeout: o.startQueueTimeout,
                stderrRate: o.stderrRate,
                stderrBurst: o.stderrBurst,
                stderrDrainRate: o.stderrDrainRate,
                memory: o.memory,
                cpus: o.cpus,
                pids: o.pids,
                ptys: o.ptys,
                disk: o.disk,
              },
            },
          },
        },
        'flags',
      );
      await serve(config, undefined, true);
    } catch (e) {
      fail(e);
    }
  });

/** The --auth flags as a runtime's auth config (validated with the rest). */
function authFlags(o: Record<string, unknown>): unknown {
  if (o.auth === 'api-key') {
    if (!o.apiKeyEnv) throw new Error('--auth api-key needs --api-key-env VAR (comma-separated keys in that variable)');
    return { kind: 'api-key', keysEnv: o.apiKeyEnv };
  }
  if (o.auth === 'jwt') {
    if (!o.jwksUrl || !o.issuer) throw new Error('--auth jwt needs --jwks-url URL and --issuer ISS');
    return { kind: 'jwt', jwksUrl: o.jwksUrl, issuer: o.issuer, audience: o.audience, scopes: o.scope };
  }
  return { kind: 'none' };
}

program
  .command('hash-key')
  .description(
    'Print the SHA-256 digest of an API key or admin token, for auth.keys[].sha256 or server.admin.tokenSha256 (reads stdin without KEY)',
  )
  .argument('[key]')
  .action(async (key?: string) => {
    let k = key;
    if (k === undefined) {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      k = Buffer.concat(chunks)
        .toString('utf8')
        .replace(/\r?\n$/, '');
    }
    process.stdout.write(`${sha256Hex(k)}\n`);
  });

program
  .command('serve')
  .description('Host the named runtimes of a config file, each at /runtimes/NAME/mcp')
  .requiredOption('-c, --config <file>', 'YAML config file (see docs/config.md)')
  .option('--port <port>', "listen on this port instead of the config's server.port (0: any free port)", int)
  .action(async (o) => {
    try {
      const config = loadConfigFile(o.config);
      if (o.port !== undefined) config.server.port = o.port;
      await serve(config, resolve(o.config));
    } catch (e) {
      fail(e);
    }
  });

program
  .command('drain')
  .description('Cluster mode: stop placing new sessions on a node (its own sessions keep working); --undo takes it back')
  .requiredOption('--url <url>', "the node's base URL, e.g. http://10.0.0.5:8787")
  .option('--deadline <duration>', "end the node's remaining sessions after this long (default: never)", duration)
  .option('--undo', 'stop draining')
  .option('--admin-token-env <var>', 'environment variable holding the admin API token', 'BERTH_ADMIN_TOKEN')
  .action(async (o) => {
    const token = process.env[o.adminTokenEnv];
    if (!token) fail(new Error(`the environment variable ${o.adminTokenEnv} (the admin token) is empty or unset`));
    const deadline = o.deadline as string | undefined; // checked by commander (duration)
    const url = `${String(o.url).replace(/\/+$/, '')}/admin/drain`;
    let r: Response;
    try {
      r = await fetch(url, {
        method: o.undo ? 'DELETE' : 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: o.undo ? undefined : JSON.stringify(deadline === undefined ? {} : { deadline }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (e) {
      fail(new Error(`${url}: ${(e as Error).message}`));
    }
    const text = await r.text();
    if (!r.ok) fail(new Error(`${url}: HTTP ${r.status} ${text}`));
    const s = JSON.parse(text) as { node: string; draining: boolean; drainDeadline: string | null };
    process.stdout.write(
      `berth: node ${s.node} ${s.draining ? `draining${s.drainDeadline ? ` (sessions end at ${s.drainDeadline})` : ''}` : 'taking new sessions'}\n`,
    );
  });

program
  .command('schema')
  .description('Print the JSON Schema of the config file')
  .action(() => {
    process.stdout.write(JSON.stringify(z.toJSONSchema(ConfigSchema, { io: 'input' }), null, 2) + '\n');
  });

program
  .command('setup')
  .description('Prepare a sandbox driver: `berth setup microvm` builds the guest kernel and initramfs from Debian packages')
  .argument('<driver>', 'microvm')
  .action(async (driver: string) => {
    if (driver !== 'microvm') fail(new Error(`nothing to set up for "${driver}" (only microvm needs setup)`));
    const { buildAssets } = await import('../sandbox/microvm-assets.js');
    try {
      const a = buildAssets((m) => process.stderr.write(`berth: ${m}\n`));
      process.stdout.write(`berth: microvm assets ready: ${a.kernel}, ${a.initrd}\n`);
    } catch (e) {
      fail(e);
    }
  });

const image = program.command('image').description('Container images for runtimes that run one (image:)');
image
  .command('prefetch')
  .description('Pull and unpack an image into the image cache ahead of the first session (berth start then unpacks nothing)')
  .argument('<ref>', 'docker://NAME[:TAG|@DIGEST], oci:DIR[:TAG], oci-archive:FILE or docker-archive:FILE')
  .option('--cache <dir>', 'the image cache (default: $BERTH_IMAGE_CACHE, else /var/cache/berth/images as root)')
  .option('--pull-timeout <duration>', 'how long pulling and unpacking may take', duration, '10m')
  .option('--max-size <size>', 'most disk the image may take, copied and unpacked (0: no cap)', size, '8GiB')
  .action(async (ref: string, o) => {
    const { resolveImage } = await import('../sandbox/image.js');
    try {
      const c = ImageCacheSchema.parse({ dir: o.cache && resolve(o.cache), pullTimeout: o.pullTimeout, maxSize: o.maxSize });
      const img = await resolveImage(ref, { ...c, baseDir: process.cwd() });
      const p = img.process;
      process.stdout.write(
        `${img.pinned}\n  ${img.unpacked ? 'pulled and unpacked into' : 'already in the cache at'} ${img.rootfs}\n` +
          `  runs: ${JSON.stringify(p.args)} as ${p.uid}:${p.gid} in ${p.cwd}${img.exposedPort ? `, exposes ${img.exposedPort}/tcp` : ''}\n`,
      );
    } catch (e) {
      fail(e);
    }
  });

program
  .command('check')
  .description('Validate a config file and exit')
  .requiredOption('-c, --config <file>', 'YAML config file')
  .action((o) => {
    try {
      const c = loadConfigFile(o.config);
      process.stdout.write(`${o.config}: ok (${Object.keys(c.runtimes).length} runtime(s): ${Object.keys(c.runtimes).join(', ')})\n`);
    } catch (e) {
      fail(e);
    }
  });

registerClientCommands(program);

/** The whole command line, defined but not run: test/readme.test.ts checks README's flag tables against it. */
export { program };

/** Runs the command line (bin/berth.js); importing this module runs nothing. */
export async function main(argv: string[] = process.argv): Promise<void> {
  // Before anything is spawned (the host shell, the startup sweep, the drivers' probes): a descriptor a supervisor
  // left open must reach no child of berth's, not only its sandboxes (which close them again, for library users).
  closeInheritedFds();
  await program.parseAsync(argv);
}
