// Connections to an http upstream's $PORT inside a session's network namespace, with no process in the middle.
// A socket belongs to the namespace it was made in, for its whole life: a helper of berth's, run by nsenter in the
// namespace (never inside the sandbox: host mount and pid namespaces), opens each TCP connection to
// 127.0.0.1:$PORT there and hands the connected socket to berth over Node's IPC channel (SCM_RIGHTS). berth then
// reads and writes the server's connection itself: no copy through a forwarder and no forwarder to wake, each way.
// Threat model: the helper takes orders from berth alone (its IPC channel) and connects only to the port berth
// names; the sandboxed server cannot see or signal it (other pid namespace, other uid). What berth gets is a socket
// in the session's namespace, which reaches only what that namespace reaches: the server's own listener.
// Defence in depth, should the helper ever be made to run code: it holds no privilege. nsenter needs root; setpriv
// then leaves the helper only CAP_SETUID and CAP_SETGID (bounding set) and no_new_privs, and the helper's first
// lines drop to its own uid (DIAL_UID: not root, not the sandbox's uid) with no groups, losing those too (with
// no_new_privs no exec can regain them). Changing
// uid in the process itself, not in setpriv before exec, leaves it non-dumpable: another process of that uid (another
// session's helper) cannot ptrace it, read its memory or take its descriptors, only signal it, and a helper that
// dies (killed, OOM) is replaced on the next dial. It gets an empty environment and no descriptor berth inherited
// (inherited-fds.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { isRoot, which } from './host.js';
import { closeInheritedFds } from './inherited-fds.js';

/** Opens one connection to the server's $PORT (berth's alone). */
export type Dial = () => Promise<Socket>;

export interface NamespaceDialer {
  dial: Dial;
  /** The current helper's pid (it is berth's, outside the sandbox). */
  readonly pid: number | undefined;
  /** Ends the helper; later dials fail. */
  close(): void;
}

/** The uid the helper runs as when berth is root: neither root nor the sandbox's uid (65534). */
export const DIAL_UID = 65533;

// The helper's whole program (node -e): small enough to read here, and no file to find beside the built code.
// As root (berth is, to enter a namespace) it first drops to DIAL_UID: groups, then gid, then uid.
const HELPER = `
if (process.getuid() === 0) (process.setgroups([]), process.setgid(${DIAL_UID}), process.setuid(${DIAL_UID}));
const { connect } = require('node:net');
process.on('disconnect', () => process.exit(0));
process.on('message', (m) => {
  const s = connect({ host: '127.0.0.1', port: m.port, timeout: m.timeoutMs });
  s.once('connect', () => (s.setTimeout(0), process.send({ id: m.id }, s)));
  s.once('error', (e) => process.send({ id: m.id, error: e.code || e.message }));
  s.once('timeout', () => (s.destroy(), process.send({ id: m.id, error: 'no answer within ' + m.timeoutMs + ' ms' })));
});
process.send({ ready: true });
`;

interface Reply {
  id?: number;
  ready?: boolean;
  error?: string;
}

/**
 * setpriv's argv for the helper as root (after nsenter, which needs root): only what the helper's own uid drop needs
 * (CAP_SETUID, CAP_SETGID), no_new_privs, and death with berth. Not root: berth's user has no privilege to drop.
 */
function helperLimits(): string[] {
  const setpriv = which('setpriv');
  if (!isRoot() || !setpriv) return [];
  return [setpriv, '--no-new-privs', '--inh-caps=-all', '--bounding-set=-all,+setuid,+setgid', '--pdeathsig', 'KILL', '--'];
}

/** One helper process: its dials, until it exits or is closed. */
interface Helper {
  readonly pid: number | undefined;
  /** Why it cannot dial any more (exited, closed); undefined while it can. */
  readonly gone: Error | undefined;
  dial(port: number): Promise<Socket>;
  close(why: Error): void;
}

async function startHelper(argv: string[], timeoutMs: number): Promise<Helper> {
  closeInheritedFds();
  // An empty environment: nothing of berth's reaches a process inside the session's network (NODE_OPTIONS with
  // --inspect would open a debugger there, on the server's own loopback).
  const helper: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: {} });
  let stderr = '';
  helper.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
  // Idle, neither the helper nor its pipes keep berth running (the IPC channel is let go below).
  helper.unref();
  (helper.stderr as unknown as { unref?: () => void }).unref?.();
  const waiting = new Map<number, { resolve: (s: Socket) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; port: number }>();
  let ids = 0;
  let gone: Error | undefined;
  const fail = (e: Error) => {
    gone ??= e;
    for (const w of waiting.values()) {
      clearTimeout(w.timer);
      w.reject(gone);
    }
    waiting.clear();
  };
  const ready = new Promise<void>((resolve, reject) => {
    helper.on('message', (m: Reply, handle?: Socket) => {
      if (m.ready) return resolve();
      const w = m.id === undefined ? undefined : waiting.get(m.id);
      if (!w) return void handle?.destroy(); // timed out meanwhile: nobody wants it
      waiting.delete(m.id!);
      clearTimeout(w.timer);
      if (handle) w.resolve(handle);
      else w.reject(new Error(`connect to $PORT ${w.port} in the session's network: ${m.error ?? 'no socket'}`));
    });
    helper.once('exit', (code, signal) => {
      const e = new Error(`the connection helper for $PORT exited (${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`);
      reject(e);
      fail(e);
    });
    helper.once('error', (e) => (reject(e), fail(e)));
  });
  const timer = setTimeout(() => helper.kill('SIGKILL'), timeoutMs);
  try {
    await ready;
  } finally {
    clearTimeout(timer);
  }
  // Idle, the channel must not keep berth running; a dial in flight holds it.
  const hold = () => helper.channel?.ref();
  const release = () => waiting.size === 0 && helper.channel?.unref();
  release();
  return {
    pid: helper.pid,
    get gone() {
      return gone;
    },
    dial(port) {
      if (gone) return Promise.reject(gone);
      const id = ++ids;
      return new Promise<Socket>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          release();
          reject(new Error(`connect to $PORT ${port} in the session's network: no answer from the helper within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, { resolve: (s) => (release(), resolve(s)), reject: (e) => (release(), reject(e)), timer, port });
        hold();
        helper.send({ id, port, timeoutMs }, (e) => {
          if (!e || !waiting.has(id)) return;
          waiting.get(id)!.reject(e); // the channel closed under it; the exit reports the rest
          clearTimeout(timer);
          waiting.delete(id);
        });
      });
    },
    close(why) {
      fail(why);
      if (helper.exitCode === null && helper.signalCode === null) helper.kill('SIGKILL');
    },
  };
}

/**
 * A dialer into the namespace `enter` runs a command in (nsenter --net=…), reaching 127.0.0.1:port there. `wrap`
 * prefixes the helper's argv (setpriv --pdeathsig: it dies with berth). Resolves once the helper is ready.
 */
export async function namespaceDialer(enter: string[], port: number, wrap: string[] = [], timeoutMs = 10_000): Promise<NamespaceDialer> {
  // A small heap and no V8 worker threads: it holds nothing; ~9 MB PSS, ~6 MB of it its own, against socat's ~1 MB.
  const argv = [
    ...wrap,
    ...enter,
    ...helperLimits(),
    process.execPath,
    '--max-old-space-size=16',
    '--max-semi-space-size=1',
    '--v8-pool-size=0',
    '-e',
    HELPER,
  ];
  let current = await startHelper(argv, timeoutMs);
  let replacing: Promise<Helper> | undefined;
  let closed: Error | undefined;
  return {
    get pid() {
      return current.pid;
    },
    async dial() {
      if (closed) throw closed;
      if (current.gone) {
        // Dials in flight when it died failed with its exit; this one gets a new helper (one start for all waiting).
        replacing ??= startHelper(argv, timeoutMs).finally(() => (replacing = undefined));
        const next = await replacing;
        if (closed) {
          next.close(closed);
          throw closed;
        }
        current = next;
      }
      return current.dial(port);
    },
    close() {
      closed ??= new Error('the session network is closed');
      current.close(closed);
    },
  };
}
