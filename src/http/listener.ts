// The HTTP server itself, with the bounds that hold before any handler runs, and whatever Node answers on its own
// (parser errors, timeouts, Expect, CONNECT) answered as berth answers everything: a JSON-RPC error body.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { clientErrorAnswer, HttpError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import { MAX_HEADERS } from './router.js';

/** Request line and headers together (Node's default, stated so a --max-http-header-size flag cannot change it). */
const MAX_HEADER_SIZE = 16 * 1024;

/**
 * Bounds on slow clients, before any runtime sees the request: the head must arrive within `bodyTimeout` (the
 * longest of the runtimes'), the whole request within head + body time (a body nobody reads, after a refusal,
 * included).
 */
export function createListener(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  bodyTimeout: number,
  /** How long a connection may hold queued answer bytes of which its client reads none (0: no bound). */
  stalledWriteTimeout = 0,
  /** Told of each connection cut for it, with the bytes it held. */
  onStalledCut?: (queuedBytes: number) => void,
): Server {
  const headersTimeout = Math.max(1000, bodyTimeout);
  const server = createServer(
    {
      keepAliveTimeout: 30_000,
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
  if (stalledWriteTimeout > 0) cutStalledReaders(server, stalledWriteTimeout, onStalledCut);
  // Node reports a parse error again for every later chunk of the same connection (its parser stays failed). The
  // first report is answered, and the answer lingers while the rest of the upload is read and dropped (sendRaw); a
  // repeat must not destroy the socket, or the kernel resets the connection under the answer before the client
  // reads it (seen in CI: a 1 MiB body after a bad header got no answer at all).
  const answered = new WeakSet<Duplex>();
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
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
  server.on('checkExpectation', (_req, res) => {
    new HttpError(417, ErrorCode.ServerError, 'Expectation Failed: the only Expect value berth honours is 100-continue', {
      headers: { connection: 'close' },
    }).send(res);
  });
  // Without a listener Node drops a CONNECT without a word.
  server.on('connect', (req, socket: Duplex) => {
    new HttpError(405, ErrorCode.ServerError, `Method Not Allowed: ${req.method} (use POST, GET or DELETE)`, {
      headers: { allow: 'GET, POST, DELETE' },
    }).sendRaw(socket);
  });
  return server;
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
