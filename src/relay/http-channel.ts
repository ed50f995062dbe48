// A server that serves Streamable HTTP, spoken to message by message with berth as its client: what the bridges
// need (they initialize a server themselves and answer its requests). The official SDK's client transport does
// the HTTP side (session id, SSE responses, the GET stream it opens after notifications/initialized); this file
// adds only what the relay's channel contract asks for.
//
// Sends are concurrent, as a client's POSTs are, except that nothing goes out while berth's initialize is
// unanswered: every later message needs the session id that answer carries. A request the server refuses at the
// HTTP level (404 after it forgot the session, 5xx, a dropped connection) is answered here with a JSON-RPC error
// under its id, so the call that sent it ends instead of waiting.
import { EventEmitter } from 'node:events';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, fetch as undiciFetch } from 'undici';
import { ErrorCode, errorResponse, isRequest, isResponse, type JsonRpcMessage } from '../wire/jsonrpc.js';
import { META_PROTOCOL_VERSION } from '../wire/era.js';
import type { Dial } from '../sandbox/dial.js';
import type { MessageChannel } from './channel.js';
import { undiciConnect } from './dial-connect.js';

/** The 2026-07-28 headers that mirror a request's body, which a server of that era checks (the SDK v1 transport sends none). */
function headers2026(body: unknown, headers: Headers): void {
  if (typeof body !== 'string') return;
  let m: { method?: unknown; params?: { name?: unknown; uri?: unknown; _meta?: Record<string, unknown> } };
  try {
    m = JSON.parse(body) as typeof m;
  } catch {
    return;
  }
  const version = m.params?._meta?.[META_PROTOCOL_VERSION];
  if (typeof version !== 'string' || typeof m.method !== 'string') return;
  headers.set('mcp-protocol-version', version);
  headers.set('mcp-method', m.method);
  const name = m.params?.name ?? m.params?.uri;
  if (typeof name === 'string') headers.set('mcp-name', name);
}

/** Loaded on first use: only the bridges speak to an HTTP server message by message, and the module costs ~5 MB of RSS. */
let transportModule: Promise<typeof import('@modelcontextprotocol/sdk/client/streamableHttp.js')> | undefined;

export class HttpChannel extends EventEmitter<{ message: [JsonRpcMessage] }> implements MessageChannel {
  private transport: StreamableHTTPClientTransport | undefined;
  private readonly agent: Agent | undefined;
  private readonly started: Promise<void>;
  /** Pending while berth's initialize is unanswered; later messages wait for it. */
  private initializing: { id: unknown; answered: Promise<void>; done: () => void } | undefined;
  private closed = false;

  /** `address`: the server's loopback port, or how to connect to it inside its own network. */
  constructor(address: number | Dial) {
    super();
    this.agent = typeof address === 'number' ? undefined : new Agent({ connect: undiciConnect(address) });
    const url = new URL(typeof address === 'number' ? `http://127.0.0.1:${address}/mcp` : 'http://localhost/mcp');
    const agent = this.agent;
    const fetchLike = (input: string | URL, init?: RequestInit) => {
      const headers = new Headers(init?.headers);
      headers2026(init?.body, headers);
      return undiciFetch(input, {
        ...(init as object),
        headers: Object.fromEntries(headers),
        ...(agent ? { dispatcher: agent } : {}),
      }) as unknown as Promise<Response>;
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

  send(message: JsonRpcMessage): boolean {
    if (this.closed) return false;
    const waitFor = this.initializing?.answered;
    if (isRequest(message) && message.method === 'initialize') {
      let done!: () => void;
      const answered = new Promise<void>((r) => (done = r));
      this.initializing = { id: message.id, answered, done };
    }
    void (async () => {
      try {
        await this.started;
        if (waitFor) await waitFor;
        await this.transport!.send(message as Parameters<StreamableHTTPClientTransport['send']>[0]);
      } catch (e) {
        if (this.initializing?.id === (message as { id?: unknown }).id) this.initializing?.done();
        if (isRequest(message) && !this.closed)
          this.emit(
            'message',
            errorResponse(message.id, ErrorCode.InternalError, `the MCP server did not answer: ${(e as Error).message}`),
          );
      }
    })();
    return true;
  }

  private received(m: JsonRpcMessage): void {
    const init = this.initializing;
    if (init && isResponse(m) && m.id === init.id) {
      const v = (m.result as { protocolVersion?: unknown } | undefined)?.protocolVersion;
      if (typeof v === 'string') this.transport?.setProtocolVersion(v);
      this.initializing = undefined;
      init.done();
    }
    this.emit('message', m);
  }

  /** Ends berth's session with the server (DELETE, best effort) and drops its connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.started.catch(() => undefined);
    const transport = this.transport;
    if (transport?.sessionId) await transport.terminateSession().catch(() => undefined);
    await transport?.close().catch(() => undefined);
    await this.agent?.close().catch(() => undefined);
  }
}
