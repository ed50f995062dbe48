/** Child processes of the conformance run: each in its own process group, all ended when the script exits. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: every child runs there. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const children = new Set<ChildProcess>();

/** Every child gets its own process group so that it and all it started can be ended together. */
export function startChild(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; log?: string } = {}): ChildProcess {
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (opts.log) {
    const log = createWriteStream(opts.log);
    log.write(`$ ${[cmd, ...args].join(' ')}\n`);
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    child.once('close', () => log.end());
  }
  return child;
}

export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    /* already gone */
  }
}

export function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SIGTERM the process itself (so berth can end its sessions), then SIGKILL whatever is left of its group. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
    if (!(await exited(child, graceMs))) signalGroup(child, 'SIGTERM');
    await exited(child, 2_000);
  }
  signalGroup(child, 'SIGKILL');
}

let cleaningUp = false;
export async function cleanup(): Promise<void> {
  if (cleaningUp) return;
  cleaningUp = true;
  await Promise.all([...children].map((c) => stopChild(c, 5_000)));
}
process.on('exit', () => {
  for (const c of children) signalGroup(c, 'SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    process.stderr.write(`\nconformance: ${sig}, stopping child processes\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

export { freePort } from '../../src/util/free-port.js';

/** Resolves with the first match of `pattern` in the child's output, or rejects if it exits or time runs out. */
export function waitForOutput(
  child: ChildProcess,
  streams: ('stdout' | 'stderr')[],
  pattern: RegExp,
  ms: number,
): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const tail = () => seen.split('\n').slice(-15).join('\n');
    const timer = setTimeout(() => finish(new Error(`no line matching ${pattern} within ${ms / 1000}s; output:\n${tail()}`)), ms);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      const m = seen.match(pattern);
      if (m) finish(undefined, m);
    };
    const onExit = (code: number | null, signal: string | null) =>
      finish(new Error(`exited (${signal ?? `code ${code}`}) before it was ready; output:\n${tail()}`));
    const finish = (err?: Error, m?: RegExpMatchArray) => {
      clearTimeout(timer);
      for (const s of streams) child[s]!.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(m!);
    };
    for (const s of streams) child[s]!.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Runs a command to completion (or the time limit) and returns its combined output. */
export function runToEnd(
  cmd: string,
  args: string[],
  timeoutMs: number,
  log?: string,
): Promise<{ code: number | null; timedOut: boolean; output: string }> {
  return new Promise((resolve) => {
    const child = startChild(cmd, args, { log });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString('utf8')));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void stopChild(child, 1_000);
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      signalGroup(child, 'SIGKILL'); // anything it left behind
      resolve({ code, timedOut, output });
    });
  });
}

/** A server (or berth) under test, and how to end it. */
export interface RunningTarget {
  url: string;
  command: string[];
  stop: () => Promise<void>;
}
