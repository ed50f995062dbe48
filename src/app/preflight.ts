// What berth refuses at start rather than at every session's start: an unauthenticated runtime on a public
// address, a network mode the driver cannot give, a command, image or mount that cannot be used.
import { existsSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
  if (open.length === 0 || isLoopback(host)) return;
  if (!dangerouslyAllowUnauthenticated) {
    throw new Error(
      `refusing to listen on ${host} without authentication: runtime(s) ${open.join(', ')} have auth "none", so anyone who can reach the port could open sessions and run the server. Configure auth (api-key or jwt), listen on 127.0.0.1, or pass --dangerously-allow-unauthenticated (server.dangerouslyAllowUnauthenticated).`,
    );
  }
  log.warn({ host, runtimes: open }, 'UNAUTHENTICATED runtimes on a non-loopback address (dangerouslyAllowUnauthenticated)');
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
  warnUnenforceableLimits(rc.limits, name, log);
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

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
