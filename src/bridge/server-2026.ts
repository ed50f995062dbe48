// Bridge B: a 2025 client (initialize + Mcp-Session-Id) served by a 2026-07-28 server (stdio, or HTTP through a
// session berth holds with it: Upstream.relay either way). berth answers
// initialize from the server's server/discover, then forwards each request with the per-request _meta envelope.
// An `input_required` result is turned into ordinary server->client requests on the call's stream; once the client
// has answered them all, the call is retried with inputResponses and the server's requestState, up to MAX_ROUNDS.
import { randomUUID } from 'node:crypto';
import { Exchange } from '../relay/exchange.js';
import { sinkId, type CallSink } from '../relay/sink.js';
import type { MessageRelay } from '../relay/message-relay.js';
import { META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, META_SERVER_INFO, META_SUBSCRIPTION_ID, VERSIONS_2026 } from '../wire/era.js';
import {
  ErrorCode,
  errorResponse,
  idKey,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../wire/jsonrpc.js';
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '../wire/streamable-http.js';

const META_CLIENT_INFO = 'io.modelcontextprotocol/clientInfo';
const META_LOG_LEVEL = 'io.modelcontextprotocol/logLevel';
/** As the SDK client: a server that keeps asking is cut off, and a state-only result is retried after a pause. */
const MAX_ROUNDS = 10;
const STATE_ONLY_DELAY_MS = 250;

type Params = Record<string, unknown>;
const isObj = (v: unknown): v is Params => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Answers the 2025 initialize from the server's server/discover; an error response when it is not 2026-era. */
export async function bridgeInitialize(relay: MessageRelay, init: JsonRpcRequest): Promise<JsonRpcResponse> {
  const envelope = { [META_PROTOCOL_VERSION]: VERSIONS_2026[0], [META_CLIENT_CAPABILITIES]: {} };
  const r = await relay.call('server/discover', { _meta: envelope });
  const d = r.result as { supportedVersions?: unknown; capabilities?: Params; instructions?: unknown; _meta?: Params } | undefined;
  if (!d || !Array.isArray(d.supportedVersions) || !d.supportedVersions.includes(VERSIONS_2026[0])) {
    return errorResponse(
      init.id,
      ErrorCode.InternalError,
      `berth: the server did not answer server/discover as a 2026-07-28 server${r.error ? `: ${r.error.message}` : ''}`,
    );
  }
  const asked = init.params?.protocolVersion;
  const version = (SUPPORTED_PROTOCOL_VERSIONS as readonly unknown[]).includes(asked) ? (asked as string) : LATEST_PROTOCOL_VERSION;
  // berth listens for list changes on the client's behalf (Server2026Bridge.listen); resources/subscribe has no
  // 2025 counterpart here yet, so `subscribe` is not offered.
  const capabilities: Params = {};
  for (const [k, v] of Object.entries(d.capabilities ?? {})) {
    capabilities[k] = v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([f]) => f !== 'subscribe')) : v;
  }
  const serverInfo = d._meta?.[META_SERVER_INFO] ?? { name: 'berth-bridged-server', version: '0' };
  const result: Params = { protocolVersion: version, capabilities, serverInfo };
  if (typeof d.instructions === 'string') result.instructions = d.instructions;
  return { jsonrpc: '2.0', id: init.id, result };
}

/** The session's own subscriptions/listen at the server: its change notifications go to the client's GET stream. */
class ListenSink implements CallSink {
  ended = false;
  readonly streamId = sinkId('session-listen-');
  constructor(private readonly relay: MessageRelay) {}
  get reachable(): boolean {
    return !this.ended;
  }
  get live(): boolean {
    return !this.ended;
  }
  expect(): void {}
  deliver(message: JsonRpcMessage): boolean {
    if (!isNotification(message) || message.method === 'notifications/subscriptions/acknowledged') return true;
    const { [META_SUBSCRIPTION_ID]: _, ...meta } = ((message.params as Params | undefined)?._meta ?? {}) as Params;
    this.relay.announce({
      ...message,
      params: { ...message.params, ...(Object.keys(meta).length ? { _meta: meta } : { _meta: undefined }) },
    });
    return true;
  }
  respond(): boolean {
    this.ended = true;
    return true;
  }
}

/** Sees one round's response (and its progress) on behalf of the client's exchange. */
class RoundExchange implements CallSink {
  readonly streamId = sinkId('round-');
  constructor(
    private readonly outer: CallSink,
    private readonly done: (m: JsonRpcResponse) => void,
  ) {}
  get reachable(): boolean {
    return this.outer.reachable;
  }
  get live(): boolean {
    return this.outer.live;
  }
  expect(): void {}
  deliver(message: JsonRpcMessage, onLost?: () => void): boolean {
    return this.outer.deliver(message, onLost);
  }
  respond(_key: string, message: JsonRpcResponse): boolean {
    this.done(message);
    return true;
  }
}

interface Call {
  roundId?: string;
  round?: RoundExchange;
  cancelled: boolean;
  asked: string[];
}

export class Server2026Bridge {
  private next = 0;
  private logLevel: string | undefined;
  private readonly calls = new Map<string, Call>();
  private readonly waiting = new Map<string, (m: JsonRpcResponse) => void>();
  private closed = false;
  private sink: ListenSink | undefined;
  private listenId = '';

  constructor(
    private readonly relay: MessageRelay,
    private readonly client: { capabilities: unknown; clientInfo: unknown },
    private readonly o: {
      answerTimeout: number;
      track: () => () => void;
      /** A stateless runtime: no answer could reach the server, so a server asking for input is refused at once. */
      noServerRequests?: boolean;
    },
  ) {}

  /** The messages of one client POST; requests are answered on `exchange`, whose response is `res`. */
  fromClient(messages: JsonRpcMessage[], exchange: Exchange): void {
    for (const m of messages) {
      if (isRequest(m)) this.request(m, exchange);
      else if (isResponse(m)) this.answer(m);
      else if (isNotification(m) && m.method === 'notifications/cancelled') this.cancel(m.params?.requestId);
      // Other client notifications (initialized, roots/list_changed) have no 2026-07-28 counterpart.
    }
  }

  /** Server requests (input_required rounds) waiting for the client's answer. */
  get pending(): number {
    return this.waiting.size;
  }

  /**
   * Listens at the server for the list changes it can announce (per its discover capabilities), on behalf of this
   * 2025 client, whose GET stream then carries them as ordinary list_changed notifications.
   */
  listen(capabilities: Params): void {
    const has = (k: string) => isObj(capabilities[k]) && (capabilities[k] as Params).listChanged === true;
    const notifications: Params = {};
    if (has('tools')) notifications.toolsListChanged = true;
    if (has('prompts')) notifications.promptsListChanged = true;
    if (has('resources')) notifications.resourcesListChanged = true;
    if (Object.keys(notifications).length === 0) return;
    const meta: Params = {
      [META_PROTOCOL_VERSION]: VERSIONS_2026[0],
      [META_CLIENT_CAPABILITIES]: this.client.capabilities ?? {},
      [META_CLIENT_INFO]: this.client.clientInfo,
    };
    this.listenId = `berth-bl:${++this.next}`;
    this.sink = new ListenSink(this.relay);
    this.relay.fromClient(
      [{ jsonrpc: '2.0', id: this.listenId, method: 'subscriptions/listen', params: { notifications, _meta: meta } }],
      this.sink,
    );
  }

  /** The session ended: calls waiting on the client fail. */
  close(): void {
    this.closed = true;
    if (this.sink && !this.sink.ended) {
      this.relay.fromClient(
        [{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: this.listenId, reason: 'the session ended' } }],
        this.sink,
      );
    }
    for (const resolve of [...this.waiting.values()]) resolve(errorResponse(null, ErrorCode.SessionEnded, 'Session ended'));
  }

  private request(m: JsonRpcRequest, exchange: Exchange): void {
    const key = `c:${idKey(m.id)}`;
    exchange.expect(key);
    if (m.method === 'ping') return void exchange.respond(key, { jsonrpc: '2.0', id: m.id, result: {} });
    if (m.method === 'logging/setLevel') {
      const level = m.params?.level;
      if (typeof level !== 'string')
        return void exchange.respond(key, errorResponse(m.id, ErrorCode.InvalidParams, 'Invalid params: level must be a string'));
      this.logLevel = level;
      return void exchange.respond(key, { jsonrpc: '2.0', id: m.id, result: {} });
    }
    if (this.calls.has(idKey(m.id))) {
      return void exchange.respond(
        key,
        errorResponse(
          m.id,
          ErrorCode.InvalidRequest,
          `Invalid Request: a request with id ${JSON.stringify(m.id)} is already in flight in this session`,
        ),
      );
    }
    const call: Call = { cancelled: false, asked: [] };
    this.calls.set(idKey(m.id), call);
    const done = this.o.track();
    void this.run(m, call, exchange)
      .catch((e: Error) => errorResponse(m.id, ErrorCode.InternalError, `berth: ${e.message}`))
      .then((r) => {
        this.calls.delete(idKey(m.id));
        done();
        // A cancelled call gets no response (2025-11-25 cancellation: "Not send a response for the cancelled request").
        if (call.cancelled) exchange.cancelled(key);
        else exchange.respond(key, { ...r, id: m.id });
      });
  }

  private async run(m: JsonRpcRequest, call: Call, exchange: Exchange): Promise<JsonRpcResponse> {
    let extra: Params = {};
    for (let round = 1; ; round++) {
      const r = await this.forward(m, extra, call, exchange);
      const result = r.result as
        { resultType?: unknown; inputRequests?: Record<string, { method: string; params?: Params }>; requestState?: unknown } | undefined;
      if (!result || result.resultType !== 'input_required') return r.result ? { ...r, result: strip(r.result as Params) } : r;
      if (round >= MAX_ROUNDS)
        return errorResponse(m.id, ErrorCode.InternalError, `berth: the server still asked for input after ${MAX_ROUNDS} rounds`);
      const requests = result.inputRequests ?? {};
      let inputResponses: Params | undefined;
      if (Object.keys(requests).length === 0) await new Promise((r) => setTimeout(r, STATE_ONLY_DELAY_MS));
      else {
        const answers = await this.ask(requests, call, exchange);
        if (answers.failed) return answers.failed;
        inputResponses = answers.ok;
      }
      if (call.cancelled) return errorResponse(m.id, ErrorCode.RequestCancelled, 'Request cancelled by the client');
      extra = {
        ...(inputResponses ? { inputResponses } : {}),
        ...(result.requestState !== undefined ? { requestState: result.requestState } : {}),
      };
    }
  }

  /** One round at the server: a fresh id, the client's params plus this round's extras and the envelope. */
  private forward(m: JsonRpcRequest, extra: Params, call: Call, exchange: Exchange): Promise<JsonRpcResponse> {
    if (call.cancelled) return Promise.resolve(errorResponse(m.id, ErrorCode.RequestCancelled, 'Request cancelled by the client'));
    const meta: Params = {
      ...(m.params?._meta as Params | undefined),
      [META_PROTOCOL_VERSION]: VERSIONS_2026[0],
      [META_CLIENT_CAPABILITIES]: this.client.capabilities ?? {},
      [META_CLIENT_INFO]: this.client.clientInfo,
      ...(this.logLevel ? { [META_LOG_LEVEL]: this.logLevel } : {}),
    };
    const id = `berth-b:${++this.next}`;
    return new Promise((resolve) => {
      const round = new RoundExchange(exchange, resolve);
      call.roundId = id;
      call.round = round;
      this.relay.fromClient([{ jsonrpc: '2.0', id, method: m.method, params: { ...m.params, ...extra, _meta: meta } }], round);
    }).finally(() => {
      call.roundId = undefined;
      call.round = undefined;
    }) as Promise<JsonRpcResponse>;
  }

  /** Sends one round's input requests to the client and gathers its answers, keyed as the server keyed them. */
  private async ask(
    requests: Record<string, { method: string; params?: Params }>,
    call: Call,
    exchange: Exchange,
  ): Promise<{ ok?: Params; failed?: JsonRpcResponse }> {
    if (this.o.noServerRequests) {
      const methods = [...new Set(Object.values(requests).map((r) => r.method))].join(', ');
      return {
        failed: errorResponse(
          null,
          ErrorCode.InvalidRequest,
          `berth: the server asked the client for input (${methods}), which a stateless runtime cannot carry: use a stateful runtime`,
        ),
      };
    }
    const entries = Object.entries(requests).map(([key, req]) => {
      const id = `berth-in:${++this.next}`;
      let params = req.params;
      // 2025-11-25 requires an elicitationId in URL mode; 2026-07-28 dropped it.
      if (req.method === 'elicitation/create' && params?.mode === 'url' && params.elicitationId === undefined)
        params = { ...params, elicitationId: randomUUID() };
      const answer = new Promise<JsonRpcResponse>((resolve) => {
        let timer: NodeJS.Timeout | undefined;
        const settle = (r: JsonRpcResponse) => {
          clearTimeout(timer);
          this.waiting.delete(idKey(id));
          resolve(r);
        };
        if (this.closed) return settle(errorResponse(id, ErrorCode.SessionEnded, 'Session ended'));
        this.waiting.set(idKey(id), settle);
        if (this.o.answerTimeout > 0) {
          timer = setTimeout(
            () => settle(errorResponse(id, -32001, `berth: the client did not answer "${req.method}" in time (serverRequestTimeout)`)),
            this.o.answerTimeout,
          );
          timer.unref();
        }
        const message = { jsonrpc: '2.0' as const, id, method: req.method, ...(params ? { params } : {}) };
        if (
          !exchange.deliver(message, () =>
            settle(errorResponse(id, ErrorCode.ServerError, 'berth: the client stream was lost before it carried the request')),
          )
        ) {
          settle(errorResponse(id, ErrorCode.ServerError, `berth: no client stream could carry "${req.method}"`));
        }
      });
      call.asked.push(id);
      return [key, answer] as const;
    });
    const out: Params = {};
    for (const [key, answer] of entries) {
      const r = await answer;
      // A client error ends the call with that error, as the SDK's own MRTR driver does.
      if (r.error) {
        for (const id of call.asked) this.waiting.get(idKey(id))?.(errorResponse(id, ErrorCode.RequestCancelled, 'abandoned'));
        return { failed: r };
      }
      out[key] = r.result;
    }
    call.asked = [];
    return { ok: out };
  }

  private answer(m: JsonRpcResponse): void {
    const resolve = m.id === null ? undefined : this.waiting.get(idKey(m.id as JsonRpcId));
    resolve?.(m);
  }

  /** The client cancelled a call: the round at the server is cancelled, or the wait for answers ends. */
  private cancel(requestId: unknown): void {
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
    const call = this.calls.get(idKey(requestId));
    if (!call) return;
    call.cancelled = true;
    if (call.roundId && call.round) {
      this.relay.fromClient(
        [{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: call.roundId, reason: 'cancelled by the client' } }],
        call.round,
      );
    }
    for (const id of call.asked)
      this.waiting.get(idKey(id))?.(errorResponse(requestId, ErrorCode.RequestCancelled, 'Request cancelled by the client'));
  }
}

/** 2025 clients do not know resultType (nor the cache hints a 2026 result may carry). */
function strip(result: Params): Params {
  const { resultType: _, ...rest } = result;
  return rest;
}
