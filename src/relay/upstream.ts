// One MCP server as berth reaches it, whatever it speaks over: stdio (RelayUpstream, through the relay) or
// Streamable HTTP (HttpUpstream, forwarding). Pools, sessions and runtimes hold this and never ask which one it is.
import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JsonRpcMessage, JsonRpcRequest, JsonRpcResponse } from '../wire/jsonrpc.js';
import type { Exchange } from './exchange.js';
import type { MessageRelay } from './message-relay.js';

export interface UpstreamEvents {
  /** Client calls in flight went from none to some (true) or back to none (false). */
  busy: [boolean];
  /** Any message either way (the dashboard's idle figure). */
  traffic: [];
}

/** A 2025 client's POST as an upstream takes it. */
export interface Post2025Options {
  messages: JsonRpcMessage[];
  batch: boolean;
  /** The body as it came (forwarded as is to an http upstream). */
  body: Buffer;
  /** berth's session id, answered as Mcp-Session-Id (never the upstream's own); undefined when stateless. */
  sessionId?: string;
  /** Send the 2025-11-25 priming event when the response becomes a stream. */
  priming: boolean;
  jsonWindow: number;
  /** Sees the upstream's HTTP status as soon as it answers (http upstreams only: a stdio server has none). */
  onStatus?: (status: number) => void;
  /** Takes the messages in the relay's place (bridge B, a 2026-era server behind a 2025 session; stdio only). */
  via?: { fromClient(messages: JsonRpcMessage[], exchange: Exchange): void };
  /** Holds the response until it ends (a shared server counts the call as its load meanwhile). */
  untilClosed?: boolean;
}

/** A 2025 client's initialize as an upstream takes it (it creates the client's session with the server). */
export interface Open2025Options {
  init: JsonRpcRequest;
  body: Buffer;
  /** berth's session id, answered as Mcp-Session-Id. */
  sessionId: string;
  /** Told how the server answered: the version it chose, or why it refused (the session then ends). */
  answered(a: { protocolVersion?: unknown; error?: string }): void;
  /** May answer in place of the server's error answer (bridge B under serverEra auto; relayed servers only). */
  onError?: (m: JsonRpcResponse) => Promise<JsonRpcResponse>;
}

/** A 2026 client's request as an upstream takes it. */
export interface Request2026Options {
  request: JsonRpcRequest;
  body: Buffer;
  jsonWindow: number;
  keepAlive: number;
  /** Headers the answer carries (Berth-Runtime-Session). */
  headers?: Record<string, string>;
}

export interface Upstream extends EventEmitter<UpstreamEvents> {
  /** berth's own request to the server (server/discover, a readiness ping), at `protocolVersion`: the answer. */
  call(method: string, params: Record<string, unknown> | undefined, protocolVersion?: string): Promise<JsonRpcResponse>;
  /**
   * berth's 2025 handshake as the server's client (stateless pools): the InitializeResult, or the server's error
   * answer (over stdio, where its code tells a 2026-only server); an http upstream throws on any refusal.
   */
  initialize(params: Record<string, unknown>): Promise<{ result?: Record<string, unknown>; error?: { code: number; message: string } }>;
  /** A 2025 client's initialize; resolves once it is answered or forwarded. */
  open2025(req: IncomingMessage, res: ServerResponse, o: Open2025Options): Promise<void>;
  /** A 2025 client's POST; resolves when its response has ended. */
  post2025(req: IncomingMessage, res: ServerResponse, o: Post2025Options): Promise<void>;
  /** A 2025 client's GET stream (opened, or resumed from Last-Event-ID); resolves when it ends. */
  get2025(req: IncomingMessage, res: ServerResponse, o: { sessionId: string; priming: boolean }): Promise<void>;
  /** A 2026 client's request; resolves when its response has ended (closing it cancels the request). */
  request2026(req: IncomingMessage, res: ServerResponse, o: Request2026Options): Promise<void>;
  /** Client calls in flight (a listen is not one). */
  readonly inFlight: number;
  /** Server requests waiting on the client; null where berth does not see them (http). */
  readonly pendingServerRequests: number | null;
  /** SSE events kept for resumption; null where the upstream keeps its own (http). */
  readonly retainedEvents: number | null;
  /** Why the server's output ended it (a message over maxMessageSize), if it did. */
  readonly overflowed: string | undefined;
  /**
   * The server spoken to message by message, for the bridges (they initialize it and answer its requests
   * themselves): the stdio relay itself, or one over an HTTP session berth holds as the server's client.
   */
  readonly relay: MessageRelay;
  /** This server as an Upstream over `relay` (itself, for a stdio server): what bridge B serves a 2025 session with. */
  readonly conversation: Upstream;
  /** Fails everything in flight with this error (the session ended, the server exited). */
  fail(code: number, message: string): void;
  /** Releases what berth holds for the server (an http upstream's session and connections); the sandbox stops apart. */
  close(): Promise<void>;
}
