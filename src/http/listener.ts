// The HTTP server itself, with the bounds that hold before any handler runs, and whatever Node answers on its own
// (parser errors, timeouts, Expect, CONNECT) answered as berth answers everything: a JSON-RPC error body.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import ipaddr from 'ipaddr.js';
import { clientErrorAnswer, HttpError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import { MAX_HEADERS } from './router.js';

/** Request line and headers together (Node's default, stated so a --max-http-header-size flag cannot change it). */
const MAX_HEADER_SIZE = 16 * 1024;

export interface ListenerOptions {
  /** The longest of the runtimes' limits.bodyTimeout: the head must arrive within it (at least 1 s). */
  bodyTimeout: number;
  /** How long a connection may hold queued answer bytes of which its client reads none (0: no bound). */
  stalledWriteTimeout?: number;
  /** Told of each connection cut for it, with the bytes it held. */
  onStalledCut?: (queuedBytes: number) => void;
  /** A connection with no request for this long is closed: before its first (closeSilent) and between requests (0: never). */
  idleConnectionTimeout?: number;
  /** Told of each connection closed before its first request for idleConnectionTimeout. */
  onIdleClosed?: () => void;
  /** Most open connections; past it a new one is closed as soon as it is accepted (0: no cap). */
  maxConnections?: number;
  /** Told of each connection closed over maxConnections. */
  onRefused?: () => void;
  /** Most open connections from one client address (IPv6: its /64); past it a new one is closed as soon as it is accepted (0: no cap). */
  maxConnectionsPerAddress?: number;
  /** Told of each connection closed over maxConnectionsPerAddress, with the address (IPv6: its /64). */
  onRefusedAddress?: (address: string) => void;
}

/**
 * Bounds on slow clients, before any runtime sees the request: the head must arrive within `bodyTimeout` (the
 * longest of the runtimes'), the whole request within head + body time (a body nobody reads, after a refusal,
 * included); a connection must send a request within `idleConnectionTimeout` of opening and of its last answer; at
 * most `maxConnections` are open at once.
 */
export function createListener(handler: (req: IncomingMessage, res: ServerResponse) => void, o: ListenerOptions): Server {
  const { bodyTimeout, stalledWriteTimeout = 0, idleConnectionTimeout = 0, maxConnections = 0, maxConnectionsPerAddress = 0 } = o;
  const headersTimeout = Math.max(1000, bodyTimeout);
  const server = createServer(
    {
      // Idle between requests: Node closes a kept-alive connection after this (0: never).
      keepAliveTimeout: idleConnectionTimeout,
      headersTimeout,
      // A runtime's own 408 (readBody) comes first; this only cuts off what no handler reads.
      requestTimeout: headersTimeout + bodyTimeout + 1000,
      // How often Node checks those two timeouts (its default, 30 s, would let a slow client stay 30 s longer).
      connectionsCheckingInterval: Math.min(1000, Math.floor(headersTimeout / 2)),
      maxHeaderSize: MAX_HEADER_SIZE,
      // Checked by the router, so the refusal is a JSON-RPC error like every other.
      requireHostHeader: false,
    },
    handler,
  );
  server.maxHeadersCount = MAX_HEADERS + 1;
  if (stalledWriteTimeout > 0) cutStalledReaders(server, stalledWriteTimeout, o.onStalledCut);
  // Node closes the connections past maxConnections itself, as it accepts them ('drop'), before any 'connection'.
  if (maxConnections > 0) {
    server.maxConnections = maxConnections;
    server.on('drop', () => o.onRefused?.());
  }
  // Before the idle watch's 'connection' listener: a refused connection is not watched.
  if (maxConnectionsPerAddress > 0) capPerAddress(server, maxConnectionsPerAddress, o.onRefusedAddress);
  const settled = idleConnectionTimeout > 0 ? closeSilent(server, idleConnectionTimeout, o.onIdleClosed) : () => undefined;
  // Node reports a parse error again for every later chunk of the same connection (its parser stays failed). The
  // first report is answered, and the answer lingers while the rest of the upload is read and dropped (sendRaw); a
  // repeat must not destroy the socket, or the kernel resets the connection under the answer before the client
  // reads it (seen in CI: a 1 MiB body after a bad header got no answer at all).
  const answered = new WeakSet<Duplex>();
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    settled(socket); // what follows bounds it (sendRaw's linger, or destroy)
    if (answered.has(socket)) return;
    // A response already under way cannot be replaced (the bytes would corrupt it); a reset peer hears nothing.
    const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    answered.add(socket);
    clientErrorAnswer(err, MAX_HEADER_SIZE).sendRaw(socket);
  });
  server.on('checkExpectation', (req, res) => {
    settled(req.socket);
    new HttpError(417, ErrorCode.ServerError, 'Expectation Failed: the only Expect value berth honours is 100-continue', {
      headers: { connection: 'close' },
    }).send(res);
  });
  // Without a listener Node drops a CONNECT without a word.
  server.on('connect', (req, socket: Duplex) => {
    settled(socket);
    new HttpError(405, ErrorCode.ServerError, `Method Not Allowed: ${req.method} (use POST, GET or DELETE)`, {
      headers: { allow: 'GET, POST, DELETE' },
    }).sendRaw(socket);
  });
  return server;
}

/** server.maxConnections "auto" where berth's open-file limit cannot be read (no /proc, or no limit). */
const FALLBACK_MAX_CONNECTIONS = 4096;

/**
 * server.maxConnections as a number, and what an "auto" was made of. "auto" is half of the open-file limit berth runs
 * with (Node raises its soft RLIMIT_NOFILE to the hard limit as it starts, so that is the hard limit where the kernel
 * allowed it); the other half is left to sessions' pipes, cgroup and sandbox files, and berth's own.
 */
export function connectionCap(setting: number | 'auto'): { max: number; openFiles?: number } {
  if (setting !== 'auto') return { max: setting };
  let openFiles: number | undefined;
  try {
    const line = /^Max open files\s+(\d+|unlimited)\s/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (line && line[1] !== 'unlimited') openFiles = Number(line[1]);
  } catch {
    // not Linux: the fallback
  }
  return openFiles ? { max: Math.max(1, Math.floor(openFiles / 2)), openFiles } : { max: FALLBACK_MAX_CONNECTIONS };
}

/** server.maxConnectionsPerAddress as a number: "auto" is half of the total cap (of what "auto" makes it, when that is 0). */
export function addressCap(setting: number | 'auto', total: number): number {
  if (setting !== 'auto') return setting;
  return Math.max(1, Math.floor((total || connectionCap('auto').max) / 2));
}

/**
 * Where a client's connections are counted: its address, an IPv4-mapped IPv6 address as the IPv4 one, any other IPv6
 * address by its /64 (one host is commonly given a whole /64, so counting each address would cap nothing).
 */
export function addressKey(remote: string | undefined): string {
  if (!remote || !ipaddr.isValid(remote)) return remote ?? 'unknown';
  const a = ipaddr.process(remote); // unwraps ::ffff:a.b.c.d
  if (a.kind() === 'ipv4') return a.toString();
  const parts = (a as ipaddr.IPv6).parts.slice(0, 4).concat([0, 0, 0, 0]);
  return `${new ipaddr.IPv6(parts).toString()}/64`;
}

/**
 * server.maxConnections keeps a flood from taking berth's descriptors, but the flood then holds every slot until
 * idleConnectionTimeout clears it, and no one else connects. Per client address (IPv6: per /64) at most `max` are
 * open at once; past it a new connection is closed as soon as it is accepted, so one client's flood leaves the
 * others room. Behind a proxy every connection comes from the proxy's address, which the default (half of
 * maxConnections) leaves room for.
 */
function capPerAddress(server: Server, max: number, onRefused?: (address: string) => void): void {
  const open = new Map<string, number>();
  server.on('connection', (s: Socket) => {
    const key = addressKey(s.remoteAddress);
    const n = open.get(key) ?? 0;
    if (n >= max) {
      s.destroy();
      onRefused?.(key);
      return;
    }
    open.set(key, n + 1);
    s.once('close', () => {
      const left = open.get(key)! - 1;
      if (left > 0) open.set(key, left);
      else open.delete(key);
    });
  });
}

/**
 * Node's own timeouts start with a request's first byte, and keepAliveTimeout with the end of an answer: a connection
 * that never sends a byte was held for good (~20,000 of them took every file descriptor berth had; /healthz and new
 * sessions failed). Each connection is closed unless its first request's head arrives within `timeout`; a request
 * (or a refusal Node answers itself) settles it. Returns that settling, for the requests Node hands to other events.
 */
function closeSilent(server: Server, timeout: number, onClose?: () => void): (socket: Duplex) => void {
  const waiting = new Map<Duplex, NodeJS.Timeout>();
  const settle = (socket: Duplex) => {
    clearTimeout(waiting.get(socket));
    waiting.delete(socket);
  };
  server.on('connection', (s: Socket) => {
    const t = setTimeout(() => {
      waiting.delete(s);
      s.destroy();
      onClose?.();
    }, timeout);
    t.unref();
    waiting.set(s, t);
    s.once('close', () => settle(s));
  });
  server.on('request', (req: IncomingMessage) => settle(req.socket));
  return settle;
}

/**
 * A client that stops reading makes Node keep what berth answered it (a finished JSON answer of up to maxMessageSize,
 * an SSE stream's events) in memory until the connection closes; calls keep coming while their answers stay queued.
 * Every connection holding queued bytes that its client has not taken any of for `timeout` is closed. A slow
 * reader that makes progress is left alone; an SSE stream whose client stalls is also cut by its own buffer bound.
 * The check runs every timeout / 4 (at least 250 ms), on connections that hold queued bytes only.
 */
function cutStalledReaders(server: Server, timeout: number, onCut?: (queuedBytes: number) => void): void {
  type Seen = { flushed: number; inKernelQueue: number; since: number };
  const sockets = new Map<Socket, Seen>();
  server.on('connection', (s: Socket) => {
    sockets.set(s, { flushed: 0, inKernelQueue: 0, since: Date.now() });
    s.once('close', () => sockets.delete(s));
  });
  const every = Math.max(250, Math.floor(timeout / 4));
  const timer = setInterval(() => {
    const now = Date.now();
    for (const [s, seen] of sockets) {
      // What the client took: every write that has completed (bytesWritten counts writes once queued,
      // writableLength until they complete), and, within one large write, how much of it the kernel has taken
      // (libuv's write queue shrinks as it does). A stream the client reads keeps completing writes, however fast
      // berth queues more.
      const queued = s.writableLength;
      const flushed = s.bytesWritten - queued;
      const inKernelQueue = (s as Socket & { _handle?: { writeQueueSize?: number } })._handle?.writeQueueSize ?? 0;
      if (queued === 0 || flushed > seen.flushed || inKernelQueue < seen.inKernelQueue) seen.since = now;
      seen.flushed = flushed;
      seen.inKernelQueue = inKernelQueue;
      if (queued > 0 && now - seen.since >= timeout) {
        sockets.delete(s);
        s.destroy();
        onCut?.(queued);
      }
    }
  }, every);
  timer.unref();
  server.once('close', () => clearInterval(timer));
}
