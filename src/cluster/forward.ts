// Piping one request to its owner node and the answer back, with undici: backpressure both ways, SSE never
// buffered, and every phase bounded so a lost node or a partition ends in a JSON-RPC error, never a hang.
import {
  FORWARDED_HEADER,
  LAST_EVENT_ID_HEADER,
  METHOD_HEADER,
  NAME_HEADER,
  RUNTIME_SESSION_HEADER,
  SESSION_HEADER,
  VERSION_HEADER,
} from '../wire/headers.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Agent } from 'undici';
import type { Logger } from 'pino';
import { errorResponse, type JsonRpcId } from '../wire/jsonrpc.js';
import { ErrorCode } from '../wire/jsonrpc.js';

/** Request headers passed to the owner; credentials (already checked by the edge) and hop-by-hop ones are not. */
const PASS = [
  'content-type',
  'accept',
  VERSION_HEADER,
  SESSION_HEADER,
  METHOD_HEADER,
  NAME_HEADER,
  LAST_EVENT_ID_HEADER,
  'traceparent',
  'tracestate',
  'baggage',
  'user-agent',
];
/** Response headers passed back to the client. */
const BACK = [
  'content-type',
  'cache-control',
  SESSION_HEADER,
  VERSION_HEADER,
  RUNTIME_SESSION_HEADER,
  'retry-after',
  'allow',
  'content-length',
  'www-authenticate',
];

export interface ForwardTarget {
  id: string;
  url: string;
}

export interface ForwardOptions {
  header: string;
  body?: Buffer;
  /** Waiting for the owner's response headers. */
  headersTimeout: number;
  /** A response body silent this long is cut (the client resumes). */
  idleTimeout: number;
  requestId: JsonRpcId | null;
  /** Runtime-specific headers to pass too (a runtime's forwardHeaders). */
  extraHeaders?: readonly string[];
  /** The runtime session the request names (by URL, its header or AgentCore's), passed as Berth-Runtime-Session. */
  runtimeSession?: string;
  /**
   * A new session, which another node could take instead: an unreachable owner or its 503 (full, shutting down) is
   * returned as `retry` without answering the client.
   */
  retryable?: boolean;
}

export interface ForwardOutcome {
  /** The owner could not be reached (connect refused or timed out): worth a lease re-check. */
  unreachable: boolean;
  /** retryable only: nothing was answered; try another node. */
  retry?: boolean;
}

function cause(e: unknown): string {
  const err = e as { code?: string; cause?: { code?: string }; name?: string };
  // An aborted signal's DOMException carries the legacy numeric code 20 (ABORT_ERR): its name says what it is.
  const code = typeof err.code === 'string' ? err.code : (err.cause?.code ?? err.name ?? 'error');
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect-timeout';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'headers-timeout';
    case 'ECONNREFUSED':
      return 'connection-refused';
    case 'AbortError':
    case 'UND_ERR_ABORTED':
      return 'node-left';
    default:
      return code;
  }
}

export class Forwarder {
  private readonly agent: Agent;
  /** In-flight forwards per node, aborted when the node leaves the view. */
  private readonly inFlight = new Map<string, Set<AbortController>>();
  forwarded = 0;

  constructor(
    connectTimeout: number,
    private readonly selfId: string,
    private readonly log: Logger,
  ) {
    // No cap on connections per owner: long forwarded streams (GET streams, slow calls) each hold one, and a request
    // queued behind a full pool would wait with no timer running (undici times headers from dispatch on a socket).
    this.agent = new Agent({ connections: null, pipelining: 1, keepAliveTimeout: 4000, connect: { timeout: connectTimeout } });
  }

  /** Aborts every forward in flight to a node that left (its lease lapsed). */
  abortNode(nodeId: string): void {
    for (const c of this.inFlight.get(nodeId) ?? []) c.abort();
  }

  async forward(req: IncomingMessage, res: ServerResponse, target: ForwardTarget, o: ForwardOptions): Promise<ForwardOutcome> {
    this.forwarded++;
    const headers: Record<string, string> = {};
    for (const h of [...PASS, ...(o.extraHeaders ?? []).map((x) => x.toLowerCase())]) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    if (o.runtimeSession !== undefined) headers[RUNTIME_SESSION_HEADER] = o.runtimeSession;
    headers[FORWARDED_HEADER] = o.header;
    const ff = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = [typeof ff === 'string' ? ff : undefined, req.socket.remoteAddress].filter(Boolean).join(', ');
    const ctl = new AbortController();
    const set = this.inFlight.get(target.id) ?? new Set();
    set.add(ctl);
    this.inFlight.set(target.id, set);
    // The client leaving aborts the hop: the owner sees a disconnection (its stream log keeps the events).
    const onClose = () => ctl.abort();
    res.once('close', onClose);
    if (res.destroyed) ctl.abort(); // it left before the hop began (during the body read or a Redis lookup)
    const started = Date.now();
    // Our own deadline for the owner's headers, whatever undici's queueing does: a forward never hangs.
    let late = false;
    const deadline = setTimeout(() => {
      late = true;
      ctl.abort();
    }, o.headersTimeout + 1000);
    try {
      const u = new URL(req.url ?? '/', target.url);
      const r = await this.agent.request({
        origin: u.origin,
        path: u.pathname + u.search,
        method: (req.method ?? 'GET') as 'GET',
        headers,
        body: o.body,
        signal: ctl.signal,
        headersTimeout: o.headersTimeout,
        bodyTimeout: o.idleTimeout,
      });
      clearTimeout(deadline);
      if (o.retryable && r.statusCode === 503) {
        await r.body.dump();
        return { unreachable: false, retry: true };
      }
      const back: Record<string, string | string[]> = {};
      for (const h of BACK) {
        const v = r.headers[h];
        if (v !== undefined) back[h] = v;
      }
      res.writeHead(r.statusCode, back);
      // A stream's headers go out at once (the client learns it is SSE); a JSON answer goes out with its body.
      if (String(r.headers['content-type'] ?? '').includes('text/event-stream')) res.flushHeaders();
      try {
        await pipeline(r.body, res);
      } catch (e) {
        // After headers nothing but ending the stream is possible; the client resumes with Last-Event-ID.
        if (!res.destroyed) this.log.info({ node: target.id, cause: cause(e) }, 'cluster: forwarded stream ended early');
        res.destroy();
      }
      return { unreachable: false };
    } catch (e) {
      clearTimeout(deadline);
      const why = late ? 'headers-timeout' : cause(e);
      const unreachable = why === 'connection-refused' || why === 'connect-timeout';
      // Nothing reached the node: another one can take the new session.
      if (o.retryable && unreachable && !res.destroyed) {
        this.log.warn({ node: target.id, cause: why }, 'cluster: node unreachable for a new session; trying another');
        return { unreachable, retry: true };
      }
      if (!res.headersSent && !res.destroyed) {
        const ms = Date.now() - started;
        const msg = `Bad Gateway: session owner ${target.id} did not answer (${why} after ${ms} ms; node lost or network partition); retry, or initialize a new session if this persists`;
        const body = JSON.stringify(
          errorResponse(o.requestId, ErrorCode.ServerError, msg, { node: target.id, cause: why, from: this.selfId }),
        );
        res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'retry-after': '1' });
        res.end(body);
      } else res.destroy();
      this.log.warn({ node: target.id, cause: why }, 'cluster: forward failed');
      return { unreachable };
    } finally {
      res.off('close', onClose);
      set.delete(ctl);
      if (set.size === 0) this.inFlight.delete(target.id);
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}
