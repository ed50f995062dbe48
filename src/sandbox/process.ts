// The development driver: the server is a plain child process in its own process group, in its private
// working directory with a scrubbed environment. No isolation beyond that (cgroup limits when asked, and, as
// root, a network namespace of its own): it runs as berth's user and sees the whole host filesystem.
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { startChild } from './child.js';
import type { SandboxDriver } from './driver.js';
import { mountCapped } from './disk.js';
import { openNetwork } from './network.js';

/**
 * The server runs in its private working directory, so relative paths in the command (the program, and
 * arguments that name existing files such as `server.js`) are made absolute against the runtime's directory.
 */
export function resolveArgv(argv: string[], baseDir: string): string[] {
  return argv.map((a, i) => {
    if (a.startsWith('-') || isAbsolute(a)) return a;
    if (i === 0 && !a.includes('/')) return a; // a program found on PATH
    const full = resolve(baseDir, a);
    return existsSync(full) ? full : a;
  });
}

export const processDriver: SandboxDriver = {
  name: 'process',
  async probe() {
    return { ok: true };
  },
  async start(spec) {
    const [file, ...args] = resolveArgv(spec.argv, spec.cwd);
    const capped = spec.limits.disk
      ? await mountCapped(spec.workDir, spec.limits.disk, process.getuid?.() ?? 0, 0o700, spec.notice)
      : undefined;
    const net = await openNetwork({ mode: spec.network, allow: spec.allowNet ?? [], sessionId: spec.sessionId });
    return startChild({
      driver: 'process',
      file: file!,
      args,
      cwd: spec.workDir,
      env: spec.env,
      spec,
      net,
      scratchMounts: capped ? [capped.dir] : [],
      cleanup: async () => await capped?.release(),
    });
  },
};
