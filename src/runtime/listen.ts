// A 2026 client's subscriptions/listen on a pool of shared servers. Each pooled server keeps its own state, so a
// change (a tool added, a resource updated) may happen in any of them: berth opens the listen on every member, and
// on members that join later, and merges their streams into the client's one: the first acknowledgement, then every
// member's notifications, all tagged with the client's listen id. Closing the client's stream ends every member's
// listen; when every member's listen has ended, so does the client's.
import type { ServerResponse } from 'node:http';
import { sinkId, type CallSink } from '../relay/sink.js';
import type { MessageRelay } from '../relay/message-relay.js';
import { META_SUBSCRIPTION_ID } from '../wire/era.js';
import { sendJson } from '../wire/http-error.js';
import { isNotification, type JsonRpcId, type JsonRpcMessage, type JsonRpcRequest, type JsonRpcResponse } from '../wire/jsonrpc.js';
import { KEEP_ALIVE, sseHeaders } from '../wire/sse.js';
import { statusOfServerError } from '../wire/streamable-http-2026.js';

let nextLeg = 0;

/** One member's listen, held by that member's relay; it reports to the fan-out instead of writing a response. */
class ListenLeg implements CallSink {
  ended = false;
  readonly id = `berth-l${++nextLeg}`;
  readonly streamId = sinkId('listen-leg-');

  constructor(
    private readonly fan: ListenFanout,
    readonly relay: MessageRelay,
  ) {}

  get reachable(): boolean {
    return !this.ended && this.fan.open;
  }

  get live(): boolean {
    return this.reachable;
  }

  expect(): void {}

  deliver(message: JsonRpcMessage): boolean {
    if (!this.reachable || !isNotification(message)) return false;
    this.fan.fromMember(message);
    return true;
  }

  respond(_key: string, message: JsonRpcResponse): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.fan.memberEnded(message);
    return true;
  }

  cancel(reason: string): void {
    if (this.ended) return;
    // The relay answers the cancelled listen at once, through respond(): that ends this leg quietly.
    this.relay.fromClient([{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: this.id, reason } }], this);
    this.ended = true;
  }
}

export class ListenFanout {
  private readonly legs: ListenLeg[] = [];
  private acknowledged = false;
  private closed = false;
  private pulse: NodeJS.Timeout | undefined;
  private lastError: JsonRpcResponse | undefined;
  /** Resolves when the client's stream has ended, either way. */
  readonly done: Promise<void>;

  constructor(
    private readonly res: ServerResponse,
    private readonly request: JsonRpcRequest,
    private readonly o: { keepAlive: number; headers?: Record<string, string> },
  ) {
    this.done = new Promise((resolve) => res.once('close', resolve));
    res.once('close', () => this.close('the client closed the listen stream'));
  }

  get open(): boolean {
    return !this.closed && !this.res.destroyed;
  }

  /** Opens the client's listen on one more server. */
  join(relay: MessageRelay): void {
    if (!this.open) return;
    const leg = new ListenLeg(this, relay);
    this.legs.push(leg);
    relay.fromClient([{ ...this.request, id: leg.id }], leg);
  }

  fromMember(m: JsonRpcMessage & { method: string; params?: Record<string, unknown> }): void {
    if (m.method === 'notifications/subscriptions/acknowledged') {
      if (this.acknowledged) return; // one acknowledgement per client stream
      this.acknowledged = true;
      this.startStream();
    } else if (!this.acknowledged) return;
    this.write({
      ...m,
      params: { ...m.params, _meta: { ...(m.params?._meta as Record<string, unknown>), [META_SUBSCRIPTION_ID]: this.clientId } },
    });
  }

  memberEnded(message: JsonRpcResponse): void {
    if (message.error) this.lastError = message;
    if (this.legs.some((l) => !l.ended) || !this.open) return;
    // Every member's listen is over: before an acknowledgement that is a refusal (e.g. -32601 from a server
    // without listen), after one the graceful end of the stream.
    this.closed = true;
    clearInterval(this.pulse);
    const end: JsonRpcResponse =
      !this.acknowledged && this.lastError
        ? { ...this.lastError, id: this.clientId }
        : { jsonrpc: '2.0', id: this.clientId, result: { resultType: 'complete', _meta: { [META_SUBSCRIPTION_ID]: this.clientId } } };
    if (this.res.headersSent) this.res.end(`event: message\ndata: ${JSON.stringify(end)}\n\n`);
    else sendJson(this.res, end.error ? statusOfServerError(end.error.code) : 200, end, this.o.headers);
  }

  /** Ends every member's listen (the client left, or the pool is closing). */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pulse);
    for (const leg of this.legs) leg.cancel(reason);
    if (!this.res.writableEnded) this.res.end();
  }

  private get clientId(): JsonRpcId {
    return this.request.id;
  }

  private startStream(): void {
    if (this.res.headersSent) return;
    this.res.writeHead(200, sseHeaders(this.o.headers ?? {}));
    this.res.flushHeaders();
    if (this.o.keepAlive > 0) {
      this.pulse = setInterval(() => this.res.write(KEEP_ALIVE), this.o.keepAlive);
      this.pulse.unref();
    }
  }

  private write(m: JsonRpcMessage): void {
    if (this.open) this.res.write(`event: message\ndata: ${JSON.stringify(m)}\n\n`);
  }
}
