// A server that serves Streamable HTTP, spoken to message by message with berth as its client: what the bridges
// need (they initialize a server themselves and answer its requests). The official SDK's client transport does
// the HTTP side (session id, SSE responses, the GET stream it opens after notifications/initialized); this file
// adds only what the relay's channel contract asks for.
//
// Sends are concurrent, as a client's POSTs are, except that nothing goes out while berth's initialize is
// unanswered: every later message needs the session id that answer carries. A request the server refuses at the
// HTTP level (404 after it forgot the session, 5xx, a dropped connection) is answered here with a JSON-RPC error
// under its id, so the call that sent it ends instead of waiting.
//
// What the server sends is read within limits.maxMessageSize, as a stdio line is: a JSON body whole, an SSE stream
// event by event (what the SDK's parser holds of one event before it ends). Past it berth stops reading that response
// and answers the requests it carried that are still unanswered with an error naming the limit; the session, its
// other calls and every other session go on.
//
// Two more bounds hold what a hostile server can make berth do, as they do for a stdio server: the bytes of messages
// berth has POSTed that the server has not finished taking (limits.inputBacklog, `backlogged`), and the share of
// berth's main thread its answers and streams may take (limits.outputTime, OutputPacer).
import { EventEmitter } from 'node:events';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, fetch as undiciFetch, Response as UndiciResponse } from 'undici';
import { ErrorCode, errorResponse, isRequest, isResponse, type JsonRpcId, type JsonRpcMessage } from '../wire/jsonrpc.js';
import { META_PROTOCOL_VERSION } from '../wire/era.js';
import type { Dial } from '../sandbox/dial.js';
import type { MessageChannel } from './channel.js';
import { undiciConnect } from './dial-connect.js';
import { Pacer } from '../util/pacer.js';
import { sizeInWords } from '../util/units.js';

type Sent = { id?: unknown; method?: unknown; params?: { name?: unknown; uri?: unknown; _meta?: Record<string, unknown> } };

/** The message(s) a POST carries (the transport sends one, or a batch), or none for anything else. */
function sentIn(body: unknown): Sent[] {
  if (typeof body !== 'string') return [];
  try {
    const m = JSON.parse(body) as unknown;
    return (Array.isArray(m) ? m : [m]).filter((x): x is Sent => typeof x === 'object' && x !== null);
  } catch {
    return [];
  }
}

/** The 2026-07-28 headers that mirror a request's body, which a server of that era checks (the SDK v1 transport sends none). */
function headers2026(sent: Sent[], headers: Headers): void {
  const m = sent.length === 1 ? sent[0]! : undefined;
  if (!m) return;
  const version = m.params?._meta?.[META_PROTOCOL_VERSION];
  if (typeof version !== 'string' || typeof m.method !== 'string') return;
  headers.set('mcp-protocol-version', version);
  headers.set('mcp-method', m.method);
  const name = m.params?.name ?? m.params?.uri;
  if (typeof name === 'string') headers.set('mcp-name', name);
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * `body` read through a bound of `maxBytes`: an SSE stream per event (the bytes since the last blank line, whichever
 * of CRLF, LF or CR ends its lines), any other body whole. Past it the stream fails and the server's body is
 * cancelled (berth reads no further), after `over` is told why. Read only as its reader asks (nothing ahead), each
 * chunk paced by `pacer`; `ended` is told once when berth reads no more of it (its end, a failure, a cancel).
 */
function bounded(
  body: ReadableStream<Uint8Array>,
  sse: boolean,
  maxBytes: number,
  over: (why: string) => void,
  ended: () => void,
  pacer: OutputPacer | undefined,
): ReadableStream<Uint8Array> {
  const source = body.getReader();
  let held = 0; // bytes of the current event (SSE) or of the body so far
  let lineEmpty = true; // nothing yet on the current line: a line break here ends the event
  let afterCR = false; // the last byte was CR: an LF now is the same line break
  const why = sse
    ? `the MCP server sent an SSE event larger than maxMessageSize (${maxBytes} bytes); berth read no further`
    : `the MCP server's answer is larger than maxMessageSize (${maxBytes} bytes); berth read no further`;
  const count = (chunk: Uint8Array): void => {
    if (!sse) held += chunk.length;
    else
      for (let i = 0, nextLF = -2, nextCR = -2; i < chunk.length && held <= maxBytes;) {
        const b = chunk[i]!;
        if (b === LF || b === CR) {
          if (!(b === LF && afterCR)) {
            if (lineEmpty) held = 0; // a blank line: the event is complete
            lineEmpty = true;
          }
          afterCR = b === CR;
          i++;
          continue;
        }
        // A run of the line's bytes, up to its next line break (each break's place found once per chunk).
        if (nextLF !== -1 && nextLF < i) nextLF = chunk.indexOf(LF, i);
        if (nextCR !== -1 && nextCR < i) nextCR = chunk.indexOf(CR, i);
        const end = Math.min(nextLF < 0 ? chunk.length : nextLF, nextCR < 0 ? chunk.length : nextCR);
        held += end - i;
        lineEmpty = false;
        afterCR = false;
        i = end;
      }
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await source.read();
        } catch (e) {
          ended();
          return controller.error(e);
        }
        // From here to the end of this turn berth works on the chunk: the scan, the SDK's parse, the relay.
        const spent = pacer?.spend();
        if (next.done) {
          ended(); // a JSON answer is parsed now, within this turn: its time is counted too
          return controller.close();
        }
        count(next.value);
        if (held > maxBytes) {
          ended();
          over(why);
          controller.error(new Error(why));
          return void source.cancel(why).catch(() => undefined);
        }
        controller.enqueue(next.value);
        await OutputPacer.rest(spent);
      },
      cancel(reason) {
        ended();
        return source.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The bytes of client messages berth has POSTed to an http server whose requests have not completed
 * (limits.inputBacklog): berth holds a body until then, and a server that never reads them (nor answers) would
 * otherwise let its client grow berth without bound, one POST after another. One per session, shared by the
 * session's forwarded requests (HttpUpstream) and its messages over berth's own session (HttpChannel).
 */
export class InputBacklog {
  private bytes = 0;

  constructor(private readonly maxBytes = 4 * 1024 * 1024) {}

  /** Counts `n` bytes until the returned function is called (only its first call counts). */
  hold(n: number): () => void {
    this.bytes += n;
    let held = true;
    return () => {
      if (held) this.bytes -= n;
      held = false;
    };
  }

  /** Why the server takes no more client messages now, if it does not (past limits.inputBacklog). */
  get backlogged(): string | undefined {
    if (this.bytes <= this.maxBytes) return undefined;
    return `the server has not finished taking ${(this.bytes / 1048576).toFixed(1)} MiB of earlier messages (POSTs it has not answered in full), more than limits.inputBacklog (${sizeInWords(this.maxBytes)}); try again once it has`;
  }
}

export interface OutputPacerEvents {
  /** The server's output had its share of berth's main thread (outputTime): its streams are not read for `ms` more. */
  paced: [ms: number];
}

/**
 * The share of berth's main thread an http server's output may take (limits.outputTime), as StdioChannel paces a
 * stdio server's: one per session, over all its responses and streams. What a chunk costs is more than the code
 * that gets it: its parse (the SDK's, in promise callbacks), the relay and the write to the client follow in the same
 * turn of the event loop, so it is measured from when berth begins on the chunk to a tick scheduled then, which runs
 * once those are done. Past the share, the reader that asks next rests: nothing is read from that stream meanwhile,
 * and the server's writes wait in TCP buffers.
 */
export class OutputPacer extends EventEmitter<OutputPacerEvents> {
  private readonly pacer: Pacer;
  /** The turn being measured, resolving to how long its reader should rest (ms). */
  private turn: Promise<number> | undefined;
  /** Until when (performance.now()) some stream of this server rests: what 'paced' adds is only the new part. */
  private restingUntil = 0;
  /** Whether anything is paced (outputTime above 0). */
  readonly pacing: boolean;

  /** `outputTime`: ms of berth's main thread per second (0: no pacing); `burst`: ms it may take at once. */
  constructor(outputTime = 0, burst = 0) {
    super();
    this.pacer = new Pacer(outputTime, burst);
    this.pacing = outputTime > 0;
  }

  /**
   * berth begins on a chunk of the server's output. Resolves, once this turn's work is done, to how long (ms) the
   * reader should rest, 0 to read on; undefined when nothing is paced.
   */
  spend(): Promise<number> | undefined {
    if (!this.pacing) return undefined;
    this.turn ??= new Promise<number>((resolve) => {
      const start = performance.now();
      process.nextTick(() => {
        this.turn = undefined;
        const now = performance.now();
        const pause = this.pacer.add(now - start);
        if (pause > 0 && now + pause > this.restingUntil) {
          this.emit('paced', now + pause - Math.max(now, this.restingUntil));
          this.restingUntil = now + pause;
        }
        resolve(pause);
      });
    });
    return this.turn;
  }

  /** Waits out what `spent` says (a stream's reader, before it reads on). */
  static async rest(spent: Promise<number> | undefined): Promise<void> {
    const ms = spent ? await spent : 0;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms).unref());
  }
}

/**
 * How long berth's goodbye to a server (the DELETE of its session) may take: a hostile server may never answer it, or
 * never end the answer's body, and a session's end (its sandbox's stop) must not wait on that.
 */
export const CLOSE_WITHIN = 1000;

/** `work` settled (its failure ignored), or `ms` passed: what a best-effort step of a teardown is given. */
export async function settledWithin(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((r) => (timer = setTimeout(r, ms)));
  await Promise.race([work.catch(() => undefined), late]);
  clearTimeout(timer);
}

/** Loaded on first use: only the bridges speak to an HTTP server message by message, and the module costs ~5 MB of RSS. */
let transportModule: Promise<typeof import('@modelcontextprotocol/sdk/client/streamableHttp.js')> | undefined;

export interface HttpChannelEvents {
  message: [JsonRpcMessage];
  /** berth stopped reading a stream no request waits on (the server's GET stream), and why: what it carried is lost. */
  dropped: [why: string];
}

export class HttpChannel extends EventEmitter<HttpChannelEvents> implements MessageChannel {
  private transport: StreamableHTTPClientTransport | undefined;
  /** Its own, even for a loopback port: close() destroys it, connections whose bodies never end included. */
  private readonly agent: Agent;
  private readonly started: Promise<void>;
  /** Pending while berth's initialize is unanswered; later messages wait for it. */
  private initializing: { id: unknown; answered: Promise<void>; done: () => void } | undefined;
  private closed = false;
  /** berth's requests the server has not answered (nor been answered for, here): each gets exactly one answer. */
  private readonly unanswered = new Set<unknown>();

  /** The bytes of berth's POSTs not yet taken (limits.inputBacklog): past it the session's client is refused. */
  private readonly backlog: InputBacklog;
  /** The share of berth's time the server's answers and streams may take (limits.outputTime). */
  private readonly pacer: OutputPacer | undefined;

  /**
   * `address`: the server's loopback port, or how to connect to it inside its own network. `maxMessageSize`: the most
   * berth reads of one JSON answer or one SSE event (limits.maxMessageSize). `backlog` and `pacer`: the session's
   * (HttpUpstream's, shared with its forwarded requests); by default a backlog of 4 MiB and no pacing.
   */
  constructor(
    address: number | Dial,
    private readonly maxMessageSize = 64 * 2 ** 20,
    o: { backlog?: InputBacklog; pacer?: OutputPacer } = {},
  ) {
    super();
    this.backlog = o.backlog ?? new InputBacklog();
    this.pacer = o.pacer?.pacing ? o.pacer : undefined;
    this.agent = new Agent(typeof address === 'number' ? {} : { connect: undiciConnect(address) });
    const url = new URL(typeof address === 'number' ? `http://127.0.0.1:${address}/mcp` : 'http://localhost/mcp');
    const agent = this.agent;
    const fetchLike = async (input: string | URL, init?: RequestInit) => {
      const headers = new Headers(init?.headers);
      const sent = sentIn(init?.body);
      headers2026(sent, headers);
      // Its body is berth's to hold until the request completes: counted in the session's backlog until then.
      const ended = this.backlog.hold(typeof init?.body === 'string' ? Buffer.byteLength(init.body) : 0);
      let r: UndiciResponse;
      try {
        r = await undiciFetch(input, { ...(init as object), headers: Object.fromEntries(headers), dispatcher: agent });
      } catch (e) {
        ended();
        throw e;
      }
      if (!r.body) {
        ended();
        return r as unknown as Response;
      }
      // The requests this response answers: what fails, should berth stop reading it (none for the GET stream).
      const ids = sent.filter((m) => typeof m.method === 'string' && m.id !== undefined && m.id !== null).map((m) => m.id);
      const sse = (r.headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream');
      // A stream no request waits on (the GET stream) has nobody to answer: it is said instead.
      const over = (why: string) => (ids.length ? this.fail(ids, why) : this.emit('dropped', why));
      const body = bounded(r.body as ReadableStream<Uint8Array>, sse, this.maxMessageSize, over, ended, this.pacer);
      return new UndiciResponse(body, { status: r.status, statusText: r.statusText, headers: r.headers }) as unknown as Response;
    };
    transportModule ??= import('@modelcontextprotocol/sdk/client/streamableHttp.js');
    this.started = transportModule.then(({ StreamableHTTPClientTransport }) => {
      // No reconnection: a server that drops its GET stream has nothing berth could resume on its behalf.
      const transport = new StreamableHTTPClientTransport(url, {
        fetch: fetchLike,
        reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1 },
      });
      transport.onmessage = (m) => this.received(m as JsonRpcMessage);
      transport.onerror = () => undefined; // a failed send is answered per message below; a dropped GET just ends
      this.transport = transport;
      return transport.start();
    });
  }

  /**
   * Why the server takes no more client messages now, if it does not: more than limits.inputBacklog of the session's
   * POSTs to it have not completed (RelayUpstream refuses the client's POSTs meanwhile, as for a stdio server).
   */
  get backlogged(): string | undefined {
    return this.backlog.backlogged;
  }

  send(message: JsonRpcMessage): boolean {
    if (this.closed) return false;
    const waitFor = this.initializing?.answered;
    if (isRequest(message) && message.method === 'initialize') {
      let done!: () => void;
      const answered = new Promise<void>((r) => (done = r));
      this.initializing = { id: message.id, answered, done };
    }
    if (isRequest(message)) this.unanswered.add(message.id);
    // A request berth gave up on (requestTimeout, the client cancelled) is the relay's to forget, and so here.
    else if ((message as { method?: unknown }).method === 'notifications/cancelled')
      this.unanswered.delete((message as { params?: { requestId?: unknown } }).params?.requestId);
    void (async () => {
      try {
        await this.started;
        if (waitFor) await waitFor;
        await this.transport!.send(message as Parameters<StreamableHTTPClientTransport['send']>[0]);
      } catch (e) {
        if (isRequest(message)) this.fail([message.id], `the MCP server did not answer: ${(e as Error).message}`);
      }
    })();
    return true;
  }

  /** Answers those of `ids` still unanswered with an error saying why (once each: a late answer is the relay's to drop). */
  private fail(ids: unknown[], why: string): void {
    for (const id of ids) {
      if (!this.unanswered.delete(id)) continue;
      if (!this.closed) this.received(errorResponse(id as JsonRpcId, ErrorCode.InternalError, why));
      else if (this.initializing?.id === id) this.initializing?.done(); // nothing waits on a closed channel's answers
    }
  }

  private received(m: JsonRpcMessage): void {
    if (isResponse(m)) this.unanswered.delete(m.id);
    const init = this.initializing;
    if (init && isResponse(m) && m.id === init.id) {
      const v = (m.result as { protocolVersion?: unknown } | undefined)?.protocolVersion;
      if (typeof v === 'string') this.transport?.setProtocolVersion(v);
      this.initializing = undefined;
      init.done();
    }
    this.emit('message', m);
  }

  /**
   * Ends berth's session with the server (DELETE, best effort, for at most CLOSE_WITHIN) and destroys its connections
   * (the transport's close aborts a DELETE still unanswered; destroying, not draining, ends bodies that never end).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.started.catch(() => undefined);
    const transport = this.transport;
    if (transport?.sessionId) await settledWithin(transport.terminateSession(), CLOSE_WITHIN);
    await transport?.close().catch(() => undefined);
    await this.agent.destroy().catch(() => undefined);
  }
}
