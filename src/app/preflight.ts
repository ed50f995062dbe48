// What berth refuses at start rather than at every session's start: an unauthenticated runtime on a public
// address, a network mode the driver cannot give, a command, image or mount that cannot be used.
import { existsSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { BerthConfig, RuntimeConfig } from '../config/schema.js';
import { networkProblem, warnUnenforceableLimits, type SandboxDriver } from '../sandbox/index.js';
import { stateRoot } from '../sandbox/registry.js';
import type { ServerSource } from '../session/source.js';

/** Refuses an unauthenticated runtime on a non-loopback address unless the operator said so, loudly. */
export function checkExposure(config: BerthConfig, log: Logger): void {
  const { host, dangerouslyAllowUnauthenticated } = config.server;
  const open = Object.entries(config.runtimes)
    .filter(([, r]) => r.auth.kind === 'none')
    .map(([n]) => n);
  // A JWT's default audience is the runtime's resource URL, from publicUrl or else the listening address: on every
  // address (0.0.0.0) no token could name it, and every call would get 401 for a reason the operator cannot see.
  const wildcard = host === '0.0.0.0' || host === '::' || host === '[::]';
  const guessing = Object.entries(config.runtimes).filter(([, r]) => r.auth.kind === 'jwt' && r.auth.audience === undefined);
  if (wildcard && !config.server.publicUrl && guessing.length)
    throw new Error(
      `runtime(s) ${guessing.map(([n]) => n).join(', ')} accept JWTs for their resource URL, which berth takes from server.publicUrl or else the address it listens on, and ${host} names no address a token could: set server.publicUrl (--public-url) to the URL clients reach berth at, or the runtime's auth.audience (--audience)`,
    );
  if (open.length === 0 || isLoopback(host)) return;
  if (!dangerouslyAllowUnauthenticated) {
    throw new Error(
      `refusing to listen on ${host} without authentication: runtime(s) ${open.join(', ')} have auth "none", so anyone who can reach the port could open sessions and run the server. Configure auth (api-key or jwt), listen on 127.0.0.1, or pass --dangerously-allow-unauthenticated (server.dangerouslyAllowUnauthenticated).`,
    );
  }
  log.warn({ host, runtimes: open }, 'UNAUTHENTICATED runtimes on a non-loopback address (dangerouslyAllowUnauthenticated)');
}

const DEMO_SERVER = fileURLToPath(new URL('../demo/server.js', import.meta.url));

/**
 * The bundled demo's network. It makes no network calls, and `berth run` gives it "none" so that a first run works
 * as any user; where "none" cannot be had (not root, and no sandbox with a network of its own, e.g. bubblewrap
 * blocked), the demo gets the host's network rather than a refusal. Any other server's network is as configured.
 */
export function demoNetwork(name: string, rc: RuntimeConfig, driver: SandboxDriver, log: Logger): RuntimeConfig {
  if (rc.network !== 'none' || rc.command?.[1] !== DEMO_SERVER || !networkProblem(driver, 'none', rc.upstream === 'http')) return rc;
  log.warn(
    { runtime: name, isolation: driver.name },
    'the bundled demo server runs on the host network: network "none" needs root or a sandbox with a network of its own',
  );
  return { ...rc, network: 'host' };
}

/** One runtime's checks once its driver is known; throws naming the runtime. */
export function checkRuntime(
  name: string,
  rc: RuntimeConfig,
  driver: SandboxDriver,
  source: ServerSource,
  sessionRoot: string | undefined,
  log: Logger,
): void {
  const netProblem = networkProblem(driver, rc.network, rc.upstream === 'http');
  if (netProblem) throw new Error(`runtime "${name}": ${netProblem}`);
  try {
    for (const m of rc.mounts) if (!existsSync(m)) throw new Error(`the mount ${m} does not exist on this host`);
    source.check(driver, sessionRoot ?? tmpdir());
  } catch (e) {
    throw new Error(`runtime "${name}": ${(e as Error).message}`, { cause: e });
  }
  if (rc.network === 'host')
    log.warn(
      { runtime: name },
      "network host: this runtime's servers share the host's network (its loopback, berth's port, private and link-local addresses)",
    );
  warnUnenforceableLimits(rc.limits, name, log, driver);
}

/**
 * What no sandbox may see: berth's config file and its state directory (the records of every live sandbox), by
 * their real paths — a mask on a symlink's path would leave the file it names visible where the sandbox sees it.
 * berth reads no other secret from disk (API keys and tokens come from the environment, JWKS are kept in memory).
 */
export function secretPaths(configFile: string | undefined): string[] {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p; // not there (yet): masked only if it exists when a sandbox starts
    }
  };
  return [...new Set([...(configFile ? [real(configFile)] : []), real(stateRoot())])];
}

/** An address that is loopback whatever DNS says (a name such as foo.localhost is resolved by DNS, so it is not). */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
