// A real redis-server for tests: in a temp dir, no persistence. Loopback mode listens on a unix socket only (no
// port race); bind mode listens on an address (a netns bridge) with a password, as peers in other namespaces need.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { freePort } from '../../src/util/free-port.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function redisAvailable(): boolean {
  return spawnSync('redis-server', ['--version']).status === 0;
}

export interface RedisServer {
  /** What cluster.redis takes. */
  url: string;
  password?: string;
  /** SIGTERM; the same address again on start(). */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it for good and removes its directory. */
  dispose(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export async function startRedis(bind?: { host: string; password: string }): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-redis-'));
  const sock = join(dir, 'redis.sock');
  const port = bind ? await freePort(bind.host) : 0;
  const args = bind
    ? ['--port', String(port), '--bind', bind.host, '--protected-mode', 'no', '--requirepass', bind.password]
    : ['--port', '0', '--unixsocket', sock, '--unixsocketperm', '700'];
  args.push('--save', '', '--appendonly', 'no', '--dir', dir);
  let proc: ChildProcess | undefined;
  const start = async () => {
    const p = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    live.add(p);
    p.once('exit', () => live.delete(p));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`redis-server did not start in 10 s:\n${out}`)), 10_000);
      p.stdout!.on('data', (d) => {
        out += d;
        if (/ready to accept connections/i.test(out)) {
          clearTimeout(t);
          resolve();
        }
      });
      p.once('exit', (c) => reject(new Error(`redis-server exited with ${c}:\n${out}`)));
    });
  };
  const stop = async () => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await gone;
  };
  await start();
  return {
    url: bind ? `redis://${bind.host}:${port}` : sock,
    password: bind?.password,
    start,
    stop,
    dispose: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
