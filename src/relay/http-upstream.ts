// An upstream server that serves Streamable HTTP itself (the AgentCore container contract: $PORT, path /mcp).
// berth forwards each client request and pipes the response back as it arrives: SSE streams are never buffered.
// As for a stdio server, the bodies of a session's requests still under way are bounded (limits.inputBacklog: a
// server that never reads nor answers them must not let its client grow berth), and so is the share of berth's main
// thread the server's answers take (limits.outputTime: past it berth reads them more slowly).
import { SESSION_HEADER } from '../wire/headers.js';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool } from 'undici';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode, idKey, isNotification, isRequest, type JsonRpcId, type JsonRpcMessage, type JsonRpcResponse } from '../wire/jsonrpc.js';
import { sseHeaders } from '../wire/sse.js';
import { META_PROTOCOL_VERSION } from '../wire/era.js';
import { withAllVersions } from '../wire/streamable-http-2026.js';
import { CLOSE_WITHIN, HttpChannel, InputBacklog, OutputPacer } from './http-channel.js';
import { MessageRelay, type DropReason, type RelayLog, type RelayOptions } from './message-relay.js';
import { RelayUpstream } from './relay-upstream.js';
import type { Open2025Options, Post2025Options, Request2026Options, Upstream, UpstreamEvents } from './upstream.js';
import type { Dial } from '../sandbox/dial.js';
import { undiciConnect } from './dial-connect.js';

// mcp-method, mcp-name and mcp-param-* are the 2026-07-28 headers that mirror the body; a 2026 server checks them.
const FORWARDED_REQUEST_HEADERS = ['accept', 'content-type', 'mcp-protocol-version', 'last-event-id', 'mcp-method', 'mcp-name'];
const FORWARDED_RESPONSE_HEADERS = ['content-type', 'cache-control', 'mcp-protocol-version', 'content-length', 'allow', 'www-authenticate'];

interface Answer {
  id?: unknown;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

/** The answer with this id in a response body: JSON, or SSE whose data lines carry it; undefined when absent. */
function answerTo(id: string, contentType: string | string[] | undefined, text: string): Answer | undefined {
  const candidates = String(contentType).startsWith('text/event-stream')
    ? text
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5))
    : [text];
  for (const c of candidates) {
    try {
      const msg = JSON.parse(c) as Answer;
      if (msg.id === id) return msg;
    } catch {
      // not JSON: a plain-text refusal, say
    }
  }
  return undefined;
}

/**
 * Drops a body unread. undici fails a body destroyed before its end with an AbortError 'error' event, which, with no
 * listener, would be an uncaught exception in berth: a server that keeps its stream open (an SDK server's GET) made it.
 */
function discard(body: { on(event: 'error', listener: () => void): unknown; destroy(): unknown }): void {
  body.on('error', () => undefined);
  body.destroy();
}

/**
 * A body berth reads whole (an answer it rewrites, or one to its own request), up to maxBytes: a server that sends
 * more is refused with 502, never buffered without bound (the stdio relay's maxMessageSize, kept here too). Read at
 * the pace `pacer` allows; the caller's parse of the whole, in the same turn, is counted too.
 */
async function textWithin(body: AsyncIterable<Buffer> & { destroy(): unknown }, maxBytes: number, pacer: OutputPacer): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    const spent = pacer.spend();
    bytes += chunk.length;
    if (bytes > maxBytes) {
      body.destroy();
      throw new HttpError(
        502,
        ErrorCode.InternalError,
        `Bad Gateway: the MCP server's answer is larger than maxMessageSize (${maxBytes} bytes); berth read no further`,
      );
    }
    chunks.push(chunk);
    await OutputPacer.rest(spent);
  }
  void pacer.spend();
  return Buffer.concat(chunks).toString('utf8');
}

/** The bounds of what one server (one session's, or a stateless pool's) may make berth hold or spend. */
export interface HttpUpstreamBounds {
  /** limits.inputBacklog: bytes of request bodies under way past which the client's POSTs are refused. */
  inputBacklog?: number;
  /** limits.outputTime and limits.outputTimeBurst, ms: the share of berth's main thread the server's answers may take. */
  outputTime?: number;
  outputTimeBurst?: number;
}

export interface ForwardResult {
  status: number;
  /** The upstream's own session id, when the response carried one. */
  upstreamSessionId?: string;
}

export class HttpUpstream extends EventEmitter<UpstreamEvents> implements Upstream {
  private readonly pool: Pool;
  upstreamSessionId: string | undefined;
  bytesOut = 0;
  private calls = 0;
  /** A 2025 session's requests being answered, by session and id: what a client's cancellation ends. */
  private readonly answering = new Map<string, () => void>();
  /** berth sees no server requests or stream events of an http upstream: it keeps its own. */
  readonly pendingServerRequests = null;
  readonly retainedEvents = null;
  readonly overflowed = undefined;
  /** berth's own session with the server (opened by `conversation`): its channel, and the relay over it. */
  private own: { channel: HttpChannel; upstream: RelayUpstream } | undefined;
  /** The request bodies under way, forwarded or berth's own session's (limits.inputBacklog). */
  private readonly backlog: InputBacklog;
  /** The share of berth's main thread the server's answers take (limits.outputTime); 'paced' says when it rests. */
  readonly outputPacer: OutputPacer;

  constructor(
    /** The server's port on the host's loopback (network host), or how to connect to it in its own network. */
    readonly address: number | Dial,
    /** How the message-by-message relay (`relay`, used by the bridges only) routes and times out. */
    private readonly relayOptions: RelayOptions,
    /** Client headers a runtime opted in to passing on (forwardHeaders); credentials stay with berth otherwise. */
    private readonly forwardHeaders: readonly string[] = [],
    /** The most berth reads of one answer it keeps whole (limits.maxMessageSize); answers passed on stream through. */
    private readonly maxMessageSize = 64 * 2 ** 20,
    /** Where berth's own session with the server (`conversation`) says what it dropped or could not pass on. */
    private readonly log?: RelayLog,
    /** Told of each server message that relay drops (berth_stream_dropped_total). */
    private readonly onDropped?: (reason: DropReason) => void,
    bounds: HttpUpstreamBounds = {},
  ) {
    super();
    this.backlog = new InputBacklog(bounds.inputBacklog);
    this.outputPacer = new OutputPacer(bounds.outputTime, bounds.outputTimeBurst);
    const options = { connections: 64, pipelining: 1, bodyTimeout: 0, headersTimeout: 0 };
    this.pool =
      typeof address === 'number'
        ? new Pool(`http://127.0.0.1:${address}`, options)
        : new Pool('http://localhost', { ...options, connect: undiciConnect(address) });
  }

  /**
   * The server spoken to message by message, over an HTTP session of berth's own (opened on first use: only the
   * bridges need it; forwarded clients have sessions of their own with the server).
   */
  get relay(): MessageRelay {
    return this.conversation.relay;
  }

  /** This server over berth's own session with it, message by message (bridge B serves a 2025 session so). */
  get conversation(): RelayUpstream {
    if (!this.own) {
      const channel = new HttpChannel(this.address, this.maxMessageSize, { backlog: this.backlog, pacer: this.outputPacer });
      const relay = new MessageRelay(channel, this.relayOptions);
      const log = this.log;
      if (log) {
        relay.on('log', log);
        channel.on('dropped', (why) => log('warn', `the server's GET stream was cut: ${why}`));
      }
      const onDropped = this.onDropped;
      if (onDropped) relay.on('dropped', onDropped);
      const upstream = new RelayUpstream(relay, channel);
      upstream.on('busy', (busy) => this.emit('busy', busy));
      upstream.on('traffic', () => this.emit('traffic'));
      this.own = { channel, upstream };
    }
    return this.own.upstream;
  }

  /** Polls until the server answers any HTTP request on /mcp (any status counts: it is listening). */
  async waitReady(timeoutMs: number, exited: Promise<unknown>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let gone = false;
    void exited.then(() => (gone = true));
    // A short, flat poll: a server ready at 200 ms is seen at ~215 ms, not at the next backoff step.
    for (const delay = 15; ;) {
      if (gone) throw new Error('the server exited before it answered on $PORT');
      try {
        const r = await this.pool.request({ path: '/mcp', method: 'GET', headers: { accept: 'text/event-stream' }, headersTimeout: 1000 });
        // Its headers say it listens; the body is not read (an SSE stream may never end, and the pool has no body timeout).
        discard(r.body);
        return;
      } catch {
        if (Date.now() > deadline)
          throw new Error(
            `the server did not answer on ${typeof this.address === 'number' ? `port ${this.address}` : '$PORT (in its own network)'} within ${timeoutMs} ms`,
          );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /**
   * Forwards one client request; `sessionHeader` is what the client sees as Mcp-Session-Id
   * (berth's id, never the upstream's).
   */
  async forward(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer | undefined,
    sessionHeader: string | undefined,
    /** Sees the status and the upstream's session id as soon as headers arrive (an SSE body may last long). */
    onResponse?: (r: ForwardResult) => void,
    /** Rewrites a JSON answer's result (berth's server/discover names the versions berth itself serves). */
    transformResult?: (result: Record<string, unknown>) => Record<string, unknown>,
    /** Aborted when the client cancelled the request: the forward ends and the client gets no response. */
    cancelled?: AbortSignal,
    /**
     * How long the response's headers may wait for its first body bytes, ms (0: sent at once). Headers sent alone
     * cost the client a read and a wake-up of their own; a POST's answer waits as a stdio call's does (jsonWindow).
     */
    holdHeaders = 0,
  ): Promise<ForwardResult> {
    const headers: Record<string, string> = {};
    for (const h of [...FORWARDED_REQUEST_HEADERS, ...this.forwardHeaders]) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    for (const [h, v] of Object.entries(req.headers)) if (h.startsWith('mcp-param-') && typeof v === 'string') headers[h] = v;
    if (this.upstreamSessionId) headers[SESSION_HEADER] = this.upstreamSessionId;
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) controller.abort();
    };
    res.on('close', onClose);
    // The cancelled request's response ends without an answer (2025-11-25 cancellation: "Not send a response for the
    // cancelled request"). Not yet begun: an empty SSE stream, as the stdio relay gives (exchange.ts says why). A
    // stream ends where it is; a JSON answer already under way is the server's answer and is let through.
    let stopStream: (() => void) | undefined;
    const onCancel = () => {
      if (res.writableEnded || res.destroyed) return;
      if (res.headersSent && !stopStream) return; // a JSON answer being written
      stopStream?.();
      if (!res.headersSent) res.writeHead(200, sseHeaders(sessionHeader ? { [SESSION_HEADER]: sessionHeader } : {}));
      res.end();
      controller.abort();
    };
    cancelled?.addEventListener('abort', onCancel, { once: true });
    let r;
    try {
      r = await this.pool.request({
        path: '/mcp',
        method: req.method as 'GET' | 'POST' | 'DELETE',
        headers,
        body,
        signal: controller.signal,
      });
    } catch (e) {
      res.off('close', onClose);
      if (cancelled?.aborted) return { status: 200 };
      throw new HttpError(502, ErrorCode.InternalError, `Bad Gateway: the MCP server did not answer: ${(e as Error).message}`);
    }
    if (cancelled?.aborted) {
      // Cancelled while the server's answer was on its way: the client's response has already ended.
      discard(r.body);
      return { status: r.statusCode };
    }
    const upstreamSessionId = typeof r.headers[SESSION_HEADER] === 'string' ? (r.headers[SESSION_HEADER] as string) : undefined;
    onResponse?.({ status: r.statusCode, upstreamSessionId });
    const out: Record<string, string> = {};
    for (const h of FORWARDED_RESPONSE_HEADERS) {
      const v = r.headers[h];
      if (typeof v === 'string') out[h] = v;
    }
    if (sessionHeader) out[SESSION_HEADER] = sessionHeader;
    const streamed = String(out['content-type'] ?? '').startsWith('text/event-stream');
    if (streamed) out['x-accel-buffering'] = 'no';
    else if (transformResult && String(out['content-type'] ?? '').startsWith('application/json')) {
      let text = await textWithin(r.body, this.maxMessageSize, this.outputPacer);
      try {
        const msg = JSON.parse(text) as { result?: Record<string, unknown> };
        if (msg.result) text = JSON.stringify({ ...msg, result: transformResult(msg.result) });
      } catch {
        // not JSON after all: passed on as it came
      }
      this.bytesOut += Buffer.byteLength(text);
      res.off('close', onClose);
      res.writeHead(r.statusCode, { ...out, 'content-length': String(Buffer.byteLength(text)) }).end(text);
      return { status: r.statusCode, upstreamSessionId };
    }
    res.writeHead(r.statusCode, out);
    // The headers go out with the first body bytes, or alone once holdHeaders has passed without any.
    let headersTimer: NodeJS.Timeout | undefined;
    if (holdHeaders > 0) headersTimer = setTimeout(() => res.flushHeaders(), holdHeaders);
    else res.flushHeaders();
    // What the upstream sent in one read goes out in one write: the response is corked on its first chunk and
    // uncorked after the chunks (and the end) that came with it, so an SSE answer is one write, not event + end.
    let corked = false;
    const uncork = () => {
      corked = false;
      res.uncork();
    };
    // Written on by hand, not piped: the server's answer stops being read while the client is slow (backpressure:
    // a slow client slows the upstream read instead of growing a buffer) and while the server rests, past its share
    // of berth's time (outputTime). pipe() would resume its source on the client's next drain, rest or not.
    const answer = r.body;
    let resting = false;
    let stopped = false; // a cancelled call's stream ends where it is
    const readOn = () => {
      if (!resting && !stopped && !res.writableNeedDrain) answer.resume();
    };
    const rest = (ms: number) => {
      if (ms <= 0 || resting || answer.readableEnded || answer.destroyed) return;
      resting = true;
      answer.pause();
      setTimeout(() => {
        resting = false;
        readOn();
      }, ms).unref();
    };
    if (streamed)
      stopStream = () => {
        stopped = true;
        answer.pause();
      };
    res.on('drain', readOn);
    await new Promise<void>((resolve) => {
      answer.on('data', (chunk: Buffer) => {
        // This chunk's write to the client follows in this turn: counted with it.
        void this.outputPacer.spend()?.then(rest);
        this.bytesOut += chunk.length;
        this.emit('traffic');
        clearTimeout(headersTimer);
        if (stopped || res.writableEnded || res.destroyed) return;
        if (!corked) {
          corked = true;
          res.cork();
          setImmediate(uncork);
        }
        if (!res.write(chunk)) answer.pause();
      });
      answer.once('end', () => {
        if (!stopped && !res.writableEnded && !res.destroyed) res.end();
        resolve();
      });
      answer.once('error', () => {
        if (!res.writableEnded) res.destroy(); // not a cancelled call's stream, ended on purpose
        resolve();
      });
      res.once('close', resolve);
    });
    res.off('drain', readOn);
    clearTimeout(headersTimer);
    res.off('close', onClose);
    return { status: r.statusCode, upstreamSessionId };
  }

  get inFlight(): number {
    return this.calls + (this.own?.upstream.inFlight ?? 0);
  }

  /** Counts a client call for its whole response (an answer streamed for minutes is a call in flight). */
  private async counted<T>(work: () => Promise<T>): Promise<T> {
    if (this.calls++ === 0) this.emit('busy', true);
    try {
      return await work();
    } finally {
      if (--this.calls === 0) this.emit('busy', false);
    }
  }

  /** Forwarded: the server's status says whether the session exists (an error answer passes through as it came). */
  async open2025(req: IncomingMessage, res: ServerResponse, o: Open2025Options): Promise<void> {
    await this.counted(() =>
      this.forward(req, res, o.body, o.sessionId, (r) => {
        // The upstream's own session: kept by berth, sent on every later request, never shown to the client.
        this.upstreamSessionId = r.upstreamSessionId;
        o.answered(r.status >= 400 ? { error: `the server answered initialize with HTTP ${r.status}` } : {});
      }),
    );
  }

  async post2025(req: IncomingMessage, res: ServerResponse, o: Post2025Options): Promise<void> {
    const ended = this.admit(o.messages.length === 1 && isRequest(o.messages[0]!) ? o.messages[0].id : null, o.body);
    const initialize = o.messages.some((m) => isRequest(m) && m.method === 'initialize');
    // The server hears a cancellation as the client sent it (ids pass through unchanged), and does as it will; berth
    // ends the cancelled call's forward itself, so a server that keeps the stream open (the SDK's does) neither holds
    // the client's connection nor keeps the session busy. Keyed by berth's session: a shared server's clients
    // (stateless, no session) cannot reach each other's calls.
    // (A batch's one response cannot lose a part of it: only a POST of one request is cancellable here.)
    const requests = o.messages.filter(isRequest);
    const key = o.sessionId !== undefined && requests.length === 1 ? `${o.sessionId}|${idKey(requests[0]!.id)}` : undefined;
    const cancel = new AbortController();
    if (key) this.answering.set(key, () => cancel.abort());
    const forward = () =>
      this.forward(
        req,
        res,
        o.body,
        o.sessionId,
        (r) => {
          // The upstream's own session: kept by berth, sent on every later request, never shown to the client.
          if (initialize) this.upstreamSessionId = r.upstreamSessionId;
          o.onStatus?.(r.status);
        },
        undefined,
        key ? cancel.signal : undefined,
        o.jsonWindow,
      );
    try {
      await (requests.length > 0 ? this.counted(forward) : forward());
    } finally {
      ended();
      if (key) this.answering.delete(key);
    }
    // After the server has the cancellation, the call it names ends here.
    if (o.sessionId !== undefined) for (const m of o.messages) this.cancelledBy(o.sessionId, m);
  }

  /**
   * Refuses a client's POST while more than limits.inputBacklog of the server's requests' bodies are under way (as
   * RelayUpstream does for a stdio server); else counts its body until the returned function is called, once its
   * forward has ended.
   */
  private admit(id: JsonRpcId | null, body: Buffer | undefined): () => void {
    const why = this.backlog.backlogged;
    if (why) throw new HttpError(503, ErrorCode.ServerError, `Service Unavailable: ${why}`, { id, headers: { 'retry-after': '1' } });
    return this.backlog.hold(body?.length ?? 0);
  }

  private cancelledBy(sessionId: string, m: JsonRpcMessage): void {
    if (!isNotification(m) || m.method !== 'notifications/cancelled') return;
    const id = m.params?.requestId;
    if (typeof id === 'string' || typeof id === 'number') this.answering.get(`${sessionId}|${idKey(id)}`)?.();
  }

  async get2025(req: IncomingMessage, res: ServerResponse, o: { sessionId: string }): Promise<void> {
    await this.forward(req, res, undefined, o.sessionId);
  }

  /** Forwarded as it came (its status, headers and stream pass through; closing the response aborts it). */
  async request2026(req: IncomingMessage, res: ServerResponse, o: Request2026Options): Promise<void> {
    const ended = this.admit(o.request.id, o.body);
    for (const [k, v] of Object.entries(o.headers ?? {})) res.setHeader(k, v);
    // berth's server/discover names every version berth itself serves.
    const transform = o.request.method === 'server/discover' ? withAllVersions : undefined;
    try {
      await this.counted(() => this.forward(req, res, o.body, undefined, undefined, transform, undefined, o.jsonWindow));
    } finally {
      ended();
    }
  }

  async call(method: string, params: Record<string, unknown> | undefined, protocolVersion?: string): Promise<JsonRpcResponse> {
    const version = protocolVersion ?? String((params?._meta as Record<string, unknown> | undefined)?.[META_PROTOCOL_VERSION] ?? '');
    const r = await this.call2026(method, params ?? {}, version);
    return { jsonrpc: '2.0', id: `berth:${method}`, ...(r.error ? { error: r.error } : { result: r.result }) };
  }

  async initialize(
    params: Record<string, unknown>,
  ): Promise<{ result?: Record<string, unknown>; error?: { code: number; message: string } }> {
    return { result: await this.initializeAsClient(params) };
  }

  /** Forwarded requests end with their own connections; berth's own conversation (the bridges') fails here. */
  fail(code: number, message: string): void {
    this.own?.upstream.fail(code, message);
  }

  /**
   * berth's own requests (the era probe, a stateless pool's handshake) end with the runtime's requestTimeout, as a
   * client's call does (0: never); the pool's own timeouts are off for the SSE streams it passes on.
   */
  private get ownTimeouts() {
    return { headersTimeout: this.relayOptions.requestTimeout, bodyTimeout: this.relayOptions.requestTimeout };
  }

  /** berth's own 2026-07-28 request to the upstream (server/discover, to learn its era): the JSON-RPC answer. */
  async call2026(
    method: string,
    params: Record<string, unknown>,
    protocolVersion: string,
  ): Promise<{ result?: Record<string, unknown>; error?: { code: number; message: string } }> {
    const id = `berth:${method}`;
    const r = await this.pool.request({
      path: '/mcp',
      method: 'POST',
      headers: {
        accept: 'application/json, text/event-stream',
        'content-type': 'application/json',
        'mcp-protocol-version': protocolVersion,
        'mcp-method': method,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id, method, params }),
      ...this.ownTimeouts,
    });
    const text = await textWithin(r.body, this.maxMessageSize, this.outputPacer);
    return (
      answerTo(id, r.headers['content-type'], text) ?? {
        error: { code: r.statusCode, message: `HTTP ${r.statusCode}: ${text.slice(0, 200)}` },
      }
    );
  }

  /** berth's own handshake with the upstream (stateless pools): returns the initialize result. */
  async initializeAsClient(params: Record<string, unknown>): Promise<Record<string, unknown>> {
    const headers = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
    const r = await this.pool.request({
      path: '/mcp',
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: 'berth:init', method: 'initialize', params }),
      ...this.ownTimeouts,
    });
    const text = await textWithin(r.body, this.maxMessageSize, this.outputPacer);
    if (r.statusCode >= 400) throw new Error(`initialize answered HTTP ${r.statusCode}: ${text.slice(0, 200)}`);
    const sid = r.headers[SESSION_HEADER];
    if (typeof sid === 'string') this.upstreamSessionId = sid;
    const msg = answerTo('berth:init', r.headers['content-type'], text);
    if (!msg) throw new Error('initialize got no answer from the server');
    if (msg.error) throw new Error(`initialize failed: ${msg.error.message}`);
    const note = await this.pool.request({
      path: '/mcp',
      method: 'POST',
      headers: {
        ...headers,
        ...(this.upstreamSessionId ? { [SESSION_HEADER]: this.upstreamSessionId } : {}),
        'mcp-protocol-version': String(msg.result?.protocolVersion ?? ''),
      },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    await note.body.dump();
    return msg.result ?? {};
  }

  /**
   * Asks the upstream to end its session (best effort, within CLOSE_WITHIN) and destroys the connection pool. A
   * hostile server may answer DELETE and never end its body: the body is not read, the request is aborted at the
   * bound, and the pool destroyed rather than drained, so a session's end never waits on the server.
   */
  async close(): Promise<void> {
    const deleting = this.upstreamSessionId
      ? this.pool
          .request({
            path: '/mcp',
            method: 'DELETE',
            headers: { [SESSION_HEADER]: this.upstreamSessionId },
            signal: AbortSignal.timeout(CLOSE_WITHIN),
          })
          .then((r) => discard(r.body))
          .catch(() => undefined)
      : undefined;
    await Promise.all([this.own?.channel.close(), deleting]);
    await this.pool.destroy().catch(() => undefined);
  }
}
