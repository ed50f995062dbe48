// Bridge A: 2026-07-28 clients served by a 2025-era server (stdio, or HTTP through a session berth holds with it:
// Upstream.relay either way). berth initializes the server itself, answers
// server/discover from its InitializeResult, strips the 2026 envelope before forwarding, and turns the server's
// requests to the client (elicitation, sampling, roots) into MRTR rounds: the client's POST is answered
// `input_required`, the server's call stays suspended in its sandbox, and the client's retry (authenticated by a
// requestState berth minted) delivers the answers and carries the call on to its next round or its result.
import { HttpError } from '../wire/http-error.js';
import type { ServerResponse } from 'node:http';
import type { MessageRelay } from '../relay/message-relay.js';
import { withinStartup, type Launched } from '../session/launch.js';
import { INVALID_STATE, principalDigest, requestDigest, RequestStateCodec, type StateClaims } from '../security/request-state.js';
import { ALL_SUPPORTED_VERSIONS } from '../wire/streamable-http-2026.js';
import { LATEST_PROTOCOL_VERSION } from '../wire/streamable-http.js';
import { META_SERVER_INFO } from '../wire/era.js';
import { sendJson } from '../wire/http-error.js';
import {
  ErrorCode,
  errorResponse,
  isRequest,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../wire/jsonrpc.js';
import { Client2026Exchange } from '../relay/client-2026-exchange.js';
import { sinkId, type CallSink } from '../relay/sink.js';

/** Only these may answer input_required (MRTR). */
const MRTR_METHODS = new Set(['tools/call', 'prompts/get', 'resources/read']);
/** Server request -> the client capability it needs. */
const ASK_CAPABILITY: Record<string, string> = {
  'elicitation/create': 'elicitation',
  'sampling/createMessage': 'sampling',
  'roots/list': 'roots',
};
/** Results the 2026 schema wants cache hints on. */
const CACHEABLE = new Set(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);
const BERTH_CLIENT = { name: 'berth', version: '0.1.0' };

export interface BridgeOptions {
  runtime: string;
  jsonWindow: number;
  keepAlive: number;
  startupTimeout: number;
  /** How long parallel asks are gathered into one round. */
  gatherWindow: number;
  /** How long a suspended call waits for the client's retry (also the requestState's lifetime). */
  pendingTimeout: number;
  /** A bridged call ended (answered, cancelled or expired): its sandbox may be free again. */
  onCallEnded?: () => void;
  /** berth has initialized this server: from now on it may announce changes (to listens). */
  onServerInitialized?: (relay: MessageRelay) => void;
  /** Cluster mode: the shared token key and this node's owner claim (nodeId.incarnation). */
  requestState?: { key: Buffer; owner: string };
}

/** Who is asking and where: what a requestState is bound to. */
export interface BridgeCaller {
  /** runtime session id, or "pool" */
  rs: string;
  principalKey: string;
  clientCapabilities: Record<string, unknown>;
  headers: Record<string, string>;
}

interface Ask {
  serverId: JsonRpcId;
  method: string;
  params: Record<string, unknown> | undefined;
}

const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/** Whether a 2026 request's `_meta` log level lets a message of this level through (none set: no logs at all). */
function wantsLog(request: JsonRpcRequest, level: unknown): boolean {
  const meta = request.params?._meta as Record<string, unknown> | undefined;
  const min = LOG_LEVELS.indexOf(String(meta?.['io.modelcontextprotocol/logLevel']));
  return min >= 0 && LOG_LEVELS.indexOf(String(level)) >= min;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Params as a 2025 server expects them: no 2026 envelope keys, no MRTR retry fields. */
export function strip2026Envelope(params: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!params) return params;
  const { inputResponses: _i, requestState: _s, _meta, ...rest } = params;
  if (!isObject(_meta)) return rest;
  const meta = Object.fromEntries(Object.entries(_meta).filter(([k]) => !k.startsWith('io.modelcontextprotocol/')));
  return Object.keys(meta).length ? { ...rest, _meta: meta } : rest;
}

/** A 2025 answer in 2026 shape: resultType, cache hints; "resource not found" became -32602. */
export function shapeResponse(method: string, m: JsonRpcResponse): JsonRpcResponse {
  if (m.error) return m.error.code === -32002 ? { ...m, error: { ...m.error, code: ErrorCode.InvalidParams } } : m;
  const result = { ...(m.result as Record<string, unknown>), resultType: 'complete' };
  if (CACHEABLE.has(method)) Object.assign(result, { ttlMs: 0, cacheScope: 'private' }, result);
  return { ...m, result };
}

/** The DiscoverResult of a 2025 server, from what it said to berth's initialize. */
export function discoverResult(init: Record<string, unknown>): Record<string, unknown> {
  const { tasks: _t, ...capabilities } = (init.capabilities ?? {}) as Record<string, unknown>;
  return {
    resultType: 'complete',
    supportedVersions: ALL_SUPPORTED_VERSIONS,
    capabilities,
    ...(typeof init.instructions === 'string' ? { instructions: init.instructions } : {}),
    ttlMs: 0,
    cacheScope: 'private',
    _meta: { [META_SERVER_INFO]: init.serverInfo },
  };
}

/**
 * berth's answer, as the server's client, to a request that belongs to no call: a 2026 client has no stream
 * outside its calls, and the client of an unrelated call must never be asked (nor learn of it).
 */
function answerUnowned(m: JsonRpcRequest): JsonRpcResponse {
  if (m.method === 'ping') return { jsonrpc: '2.0', id: m.id, result: {} };
  if (m.method === 'roots/list') return { jsonrpc: '2.0', id: m.id, result: { roots: [] } };
  return errorResponse(
    m.id,
    ErrorCode.MethodNotFound,
    `berth: "${m.method}" belongs to no client call, and 2026-07-28 clients are asked only within their own calls`,
  );
}

let nextCall = 0;

/** One bridged call, for its whole life across rounds; the relay holds it as the call's exchange. */
class BridgeCall implements CallSink {
  readonly streamId = sinkId('bridged-');
  /** The POST currently carrying the call (none while suspended). */
  private out: Client2026Exchange | undefined;
  private caps: Record<string, unknown>;
  private readonly asked: Ask[] = [];
  /** This round's keys -> the server requests they answer. */
  private waiting = new Map<string, Ask>();
  /** The round a retry may answer (0: none; each is single-use). */
  round = 0;
  private seq = 0;
  private gather: NodeJS.Timeout | undefined;
  private expiry: NodeJS.Timeout | undefined;
  private final: JsonRpcResponse | undefined;

  constructor(
    private readonly bridge: Server2025Bridge,
    readonly relay: MessageRelay,
    readonly id: string,
    readonly request: JsonRpcRequest,
    readonly caller: BridgeCaller,
  ) {
    this.caps = caller.clientCapabilities;
  }

  get reachable(): boolean {
    return this.final === undefined;
  }

  get live(): boolean {
    return this.out?.live ?? false;
  }

  expect(): void {}

  /** Attaches a POST (the first one, or a retry) whose response now carries the call. */
  attach(res: ServerResponse, clientId: JsonRpcId, caps: Record<string, unknown>): void {
    clearTimeout(this.expiry);
    this.caps = caps;
    const { jsonWindow, keepAlive } = this.bridge.o;
    const out = new Client2026Exchange(res, clientId, { jsonWindow, keepAlive, headers: this.caller.headers });
    out.onAbandon = () => this.cancel('the client closed the response stream');
    this.out = out;
    out.expect();
    if (this.final) return void this.settle(this.final);
    if (this.asked.length) this.scheduleFlush();
  }

  deliver(m: JsonRpcMessage): boolean {
    if (isRequest(m)) {
      this.ask(m);
      return true;
    }
    const method = (m as { method?: string }).method;
    // URL-mode completion has no 2026 counterpart (the retry is the completion); a suspended call has no stream.
    if (method === 'notifications/elicitation/complete') return true;
    // 2026 clients ask for log messages per request (_meta logLevel); a 2025 server logs as it was told once.
    if (method === 'notifications/message' && !wantsLog(this.request, (m as { params?: { level?: unknown } }).params?.level)) return true;
    return this.out?.deliver(m) ?? false;
  }

  respond(_key: string, m: JsonRpcResponse): boolean {
    this.final = shapeResponse(this.request.method, m);
    clearTimeout(this.gather);
    if (this.out) this.settle(this.final);
    return true;
  }

  private settle(m: JsonRpcResponse): void {
    clearTimeout(this.expiry);
    this.bridge.forget(this);
    this.out?.respond('', m);
    this.out = undefined;
  }

  private toServer(m: JsonRpcResponse): void {
    this.relay.fromClient([m], this);
  }

  private ask(m: JsonRpcRequest): void {
    if (m.method === 'ping') return this.toServer({ jsonrpc: '2.0', id: m.id, result: {} });
    const cap = ASK_CAPABILITY[m.method];
    const declared = cap ? this.caps[cap] : undefined;
    const urlMode = m.params?.mode === 'url';
    if (!MRTR_METHODS.has(this.request.method) || !isObject(declared) || (urlMode && !isObject(declared.url))) {
      // What a 2025 client without a handler answers; the server decides how to go on.
      return this.toServer(
        errorResponse(m.id, ErrorCode.MethodNotFound, `Method not found: the client did not declare the capability for ${m.method}`),
      );
    }
    const { elicitationId: _e, ...params } = m.params ?? {};
    this.asked.push({ serverId: m.id, method: m.method, params: m.params ? params : undefined });
    if (this.out) this.scheduleFlush();
  }

  private scheduleFlush(): void {
    this.gather ??= setTimeout(() => this.flush(), this.bridge.o.gatherWindow);
  }

  /** Ends this POST with input_required for everything asked so far; the call waits for the retry. */
  private flush(): void {
    this.gather = undefined;
    if (!this.out || this.asked.length === 0 || this.final) return;
    const inputRequests: Record<string, unknown> = {};
    const k: Record<string, JsonRpcId> = {};
    for (const a of this.asked.splice(0)) {
      const key = `r${++this.seq}`;
      this.waiting.set(key, a);
      k[key] = a.serverId;
      inputRequests[key] = { method: a.method, ...(a.params ? { params: a.params } : {}) };
    }
    this.round = this.seq; // seq only grows: a later round never takes an earlier one's number (resume() zeroes round)
    const requestState = this.bridge.mint(this, k);
    const out = this.out;
    this.out = undefined;
    out.respond('', { jsonrpc: '2.0', id: null, result: { resultType: 'input_required', inputRequests, requestState } });
    this.expiry = setTimeout(() => this.cancel('the client did not retry with inputResponses in time'), this.bridge.o.pendingTimeout);
    this.expiry.unref();
  }

  /** The retry of round `n`: answers go to the server, the POST carries the call on. */
  resume(res: ServerResponse, retry: JsonRpcRequest, caps: Record<string, unknown>): void {
    this.round = 0; // single use
    const responses = isObject(retry.params?.inputResponses) ? retry.params.inputResponses : {};
    const waiting = this.waiting;
    this.waiting = new Map();
    this.attach(res, retry.id, caps);
    for (const [key, a] of waiting) {
      const answer = responses[key];
      if (isObject(answer)) {
        const { resultType: _r, ...result } = answer;
        this.toServer({ jsonrpc: '2.0', id: a.serverId, result });
      } else {
        this.asked.push(a); // missing: asked again in the next round
        this.scheduleFlush();
      }
    }
  }

  /** Gives up on the call: the server's questions fail, the call is cancelled at the server. */
  cancel(reason: string): void {
    if (this.final) return this.bridge.forget(this);
    clearTimeout(this.gather);
    clearTimeout(this.expiry);
    for (const a of [...this.waiting.values(), ...this.asked])
      this.toServer(errorResponse(a.serverId, ErrorCode.RequestCancelled, `berth: ${reason}`));
    this.waiting.clear();
    this.asked.length = 0;
    this.bridge.forget(this);
    this.relay.fromClient(
      [{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: this.id, reason: `berth: ${reason}` } }],
      this,
    );
  }
}

/** Serves 2026 clients' requests from 2025-era stdio servers, one per runtime. */
export class Server2025Bridge {
  private readonly codec: RequestStateCodec;
  private readonly calls = new Map<string, BridgeCall>();
  private readonly inits = new WeakMap<MessageRelay, Promise<Record<string, unknown>>>();

  constructor(readonly o: BridgeOptions) {
    this.codec = new RequestStateCodec(o.requestState?.key);
  }

  /** Suspended or running bridged calls (they keep their sandbox busy). */
  get size(): number {
    return this.calls.size;
  }

  forget(call: BridgeCall): void {
    if (this.calls.delete(call.id)) this.o.onCallEnded?.();
  }

  /** Bridged calls running or suspended on this server. */
  callsOn(relay: MessageRelay): number {
    let n = 0;
    for (const c of this.calls.values()) if (c.relay === relay) n++;
    return n;
  }

  mint(call: BridgeCall, k: Record<string, JsonRpcId>): string {
    const claims: StateClaims = {
      rt: this.o.runtime,
      rs: call.caller.rs,
      c: call.id,
      n: call.round,
      k,
      p: principalDigest(call.caller.principalKey),
      m: call.request.method,
      d: requestDigest(call.request.params),
      exp: Date.now() + this.o.pendingTimeout,
      ...(this.o.requestState ? { o: this.o.requestState.owner } : {}),
    };
    return this.codec.mint(claims);
  }

  /** berth is the server's client: it initializes it once, declaring what 2026 clients may answer. */
  initialized(server: Launched, id: JsonRpcId | null): Promise<Record<string, unknown>> {
    const relay = server.upstream.relay;
    let p = this.inits.get(relay);
    if (!p) {
      const params = {
        protocolVersion: LATEST_PROTOCOL_VERSION,
        capabilities: { elicitation: { form: {}, url: {} }, sampling: {}, roots: {} },
        clientInfo: BERTH_CLIENT,
      };
      const handshake = async () => {
        relay.onUnownedRequest = answerUnowned;
        relay.onUnrouted ??= () => true; // announcements nobody listens to (listens replace this)
        const r = await relay.call('initialize', params);
        if (r.error) throw new Error(`initialize failed: ${r.error.message}`);
        relay.notify('notifications/initialized');
        // What the server asks in reply to the handshake (a startup roots/list) is answered by berth before the
        // first call goes out, so it can never become a round of that call.
        await relay.settled;
        return r.result as Record<string, unknown>;
      };
      p = withinStartup(
        server.sandbox,
        this.o.startupTimeout,
        handshake(),
        'the server did not finish its handshake (initialize, then ping)',
      ).then((init) => {
        this.o.onServerInitialized?.(relay);
        return init;
      });
      this.inits.set(relay, p);
    }
    return p.catch((e: Error) => {
      throw new HttpError(502, ErrorCode.InternalError, `Bad Gateway: the MCP server could not be initialized: ${e.message}`, { id: id });
    });
  }

  /** One 2026 client's POST. `server` gives the sandbox for a new call; a retry goes to its suspended call's. Resolves when the response has closed. */
  async serve(res: ServerResponse, request: JsonRpcRequest, caller: BridgeCaller, server: () => Promise<Launched>): Promise<void> {
    // Only a requestState names a suspended call. inputResponses without one answer nothing berth asked in this
    // call: they are dropped (strip2026Envelope) and the call starts afresh, so the server asks again and the client
    // gets a new input_required rather than an error (2026-07-28 MRTR, Error Handling).
    const params = request.params ?? {};
    if ('requestState' in params) return this.retry(res, request, caller);
    const s = await server();
    const init = await this.initialized(s, request.id);
    if (request.method === 'server/discover')
      return sendJson(res, 200, { jsonrpc: '2.0', id: request.id, result: discoverResult(init) }, caller.headers);
    const call = new BridgeCall(this, s.upstream.relay, `berth-b${++nextCall}`, request, caller);
    this.calls.set(call.id, call);
    return new Promise((resolve) => {
      if (res.destroyed || res.closed) {
        this.forget(call);
        return resolve();
      }
      res.once('close', resolve);
      call.attach(res, request.id, caller.clientCapabilities);
      s.upstream.relay.fromClient([{ ...request, id: call.id, params: strip2026Envelope(request.params) }], call);
    });
  }

  private retry(res: ServerResponse, request: JsonRpcRequest, caller: BridgeCaller): Promise<void> {
    const claims = this.codec.verify(request.params?.requestState, {
      rt: this.o.runtime,
      rs: caller.rs,
      p: principalDigest(caller.principalKey),
      m: request.method,
      d: requestDigest(request.params),
    });
    const call = claims ? this.calls.get(claims.c) : undefined;
    if (!claims || !call || call.round === 0 || call.round !== claims.n) {
      // In-band, as the SDK answers it; nothing reaches the server.
      sendJson(res, 200, errorResponse(request.id, ErrorCode.InvalidParams, INVALID_STATE), caller.headers);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      res.once('close', resolve);
      call.resume(res, request, caller.clientCapabilities);
    });
  }
}
