// The development driver: the server is a plain child process in its own process group.
// No isolation beyond a private working directory and a scrubbed environment.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { ExitInfo, Sandbox, SandboxDriver, SandboxSpec } from './driver.js';

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
  async start(spec: SandboxSpec): Promise<Sandbox> {
    const [cmd, ...args] = resolveArgv(spec.argv, spec.cwd);
    const child = spawn(cmd!, args, {
      cwd: spec.workDir,
      env: spec.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      // Own process group, so stop() reaches the server's own children too.
      detached: true,
    });
    const exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => resolve({ code: null, signal: null, reason: `failed to start: ${err.message}` }));
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new Error(`cannot start ${JSON.stringify(cmd)}: ${err.message}`)));
    });
    let done = false;
    void exited.then(() => (done = true));
    const signalGroup = (sig: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, sig);
      } catch {
        try {
          child.kill(sig);
        } catch {
          // already gone
        }
      }
    };
    return {
      driver: 'process',
      pid: child.pid,
      stdin: child.stdin!,
      stdout: child.stdout!,
      stderr: child.stderr!,
      exited,
      async stop(graceMs: number) {
        if (!done) {
          signalGroup('SIGTERM');
          const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
          timer.unref();
          const info = await exited;
          clearTimeout(timer);
          // Reap stragglers the server left in its group.
          signalGroup('SIGKILL');
          return info;
        }
        return exited;
      },
    };
  },
};
