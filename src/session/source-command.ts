// A command on the host: resolved from the runtime's directory, shown to the sandbox with the files it needs
// (command-files.ts); an `npx -y PACKAGE` command is installed once into the package cache and run from there.
import { commandArgv, type RuntimeConfig } from '../config/schema.js';
import { commandFiles, commandRoots } from '../sandbox/command-files.js';
import { packageArgv, parsePackageCommand } from '../sandbox/package-cache.js';
import { sandboxCannotRead } from '../sandbox/readable.js';
import type { SandboxDriver } from '../sandbox/index.js';
import type { Preparing, Prepared, ServerSource } from './source.js';

/** Environment the sandbox starts with: a small allow-list, never berth's own secrets. */
export const BASE_ENV = ['PATH', 'LANG', 'LC_ALL', 'TZ', 'TERM', 'NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE'];

/** The directories a command needs shown (command-files.ts), found once per command, not per session. */
const rootsCache = new Map<string, string[]>();
export function neededRoots(argv: readonly string[], baseDir: string, mounts: readonly string[], sessionRoot: string): string[] {
  const key = JSON.stringify([argv, baseDir, mounts, sessionRoot]);
  let roots = rootsCache.get(key);
  // An npx command is checked here (refused forms throw); its files are found once it is installed (launch).
  if (!roots) rootsCache.set(key, (roots = parsePackageCommand(argv) ? [] : commandRoots(argv, baseDir, mounts, sessionRoot)));
  return roots;
}

/** The variables of berth's own environment a server may see (BASE_ENV and inheritEnv), then the runtime's env. */
export function passedEnv(config: RuntimeConfig, names: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of [...names, ...config.inheritEnv]) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return Object.assign(env, config.env);
}

export function commandSource(config: RuntimeConfig, baseDir: string): ServerSource {
  const argv = commandArgv(config.command ?? []);
  return {
    shown: { command: argv },
    check(driver: SandboxDriver, sessionRoot: string) {
      // The command's own files (program, scripts, their package roots) are shown to every sandbox; one that
      // cannot be found, or whose files would expose the host, is refused now rather than at every session's start.
      const roots = neededRoots(argv, baseDir, config.mounts, sessionRoot);
      // What the sandbox uid must read; else the server (or QEMU) fails at every start, saying little.
      const cannotRead = sandboxCannotRead(driver, {
        dirs: [baseDir, ...config.mounts, ...roots],
        pass: [sessionRoot],
        ...commandFiles(argv, baseDir),
      });
      if (cannotRead) throw new Error(cannotRead);
    },
    async prepare(p: Preparing): Promise<Prepared> {
      const env: Record<string, string> = { ...passedEnv(config, BASE_ENV), HOME: p.workDir, TMPDIR: p.workDir };
      let run = argv;
      // npx -y PACKAGE: run from the runtime's package directory, installed once (sandbox/package-cache.ts).
      const pkg = await packageArgv(p.runtimeName, argv, config.packageCache, p.log, p.closed);
      if (pkg) [run, env.PATH] = [pkg.argv, [pkg.binDir, env.PATH].filter(Boolean).join(':')];
      const mounts = [...config.mounts, ...neededRoots(run, baseDir, config.mounts, p.sessionRoot)];
      return { argv: run, env, mounts };
    },
  };
}
