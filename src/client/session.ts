// One MCP client session with berth (or any Streamable HTTP server): the official SDK client, with the
// answers to the server's requests supplied by the caller (a person at a terminal, or a script's flags).
import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CallToolResultSchema,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  type CallToolResult,
  type ClientCapabilities,
  type CreateMessageRequest,
  type CreateMessageResult,
  type ElicitRequestFormParams,
  type ElicitResult,
  type LoggingMessageNotification,
  type Progress,
} from '@modelcontextprotocol/sdk/types.js';

export interface SessionOptions {
  /** Extra request headers, e.g. from `--header 'K: V'`. */
  headers?: Record<string, string>;
  /** Sent as `Authorization: Bearer TOKEN`. */
  token?: string;
  /** Directories served as the client's roots. */
  roots?: string[];
  /** Answers form elicitation; without it the client does not offer elicitation. */
  onElicit?: (params: ElicitRequestFormParams) => Promise<ElicitResult>;
  /** Answers sampling; without it the client does not offer sampling. */
  onSample?: (params: CreateMessageRequest['params']) => Promise<CreateMessageResult>;
  onLog?: (params: LoggingMessageNotification['params']) => void;
}

/** `K: V` -> [K, V]; throws on anything else. */
export function parseHeader(h: string): [string, string] {
  const i = h.indexOf(':');
  if (i <= 0) throw new Error(`--header expects "Name: value", got "${h}"`);
  return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
}

export function rootsOf(dirs: string[]): Array<{ uri: string; name: string }> {
  return dirs.map((d) => {
    const abs = resolve(d);
    return { uri: pathToFileURL(abs).href, name: basename(abs) || abs };
  });
}

/** berth's version, sent as the client's (dist/client/session.js -> ../../package.json). */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

// setTimeout's longest delay: a call may wait on a person for a long time, so there is no client-side limit.
export const NO_TIMEOUT = 2 ** 31 - 1;

/** The endpoint as a URL, or an error saying what is wrong with it (the WHATWG parser says only "Invalid URL"). */
export function endpointUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`"${url}" is not a URL; expected the MCP endpoint, e.g. http://127.0.0.1:8787/mcp`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new Error(`"${url}": expected an http:// or https:// URL, e.g. http://127.0.0.1:8787/mcp`);
  return u;
}

/**
 * An error as one line naming the URL and the underlying cause: Node's fetch says only "fetch failed", with the
 * reason (ECONNREFUSED 127.0.0.1:8787, ENOTFOUND host, a TLS failure) in its `cause`, sometimes an AggregateError
 * of one per address tried.
 */
export function describeError(e: unknown, url?: string): string {
  const causes: string[] = [];
  const seen = new Set<unknown>();
  const walk = (x: unknown): void => {
    if (!x || typeof x !== 'object' || seen.has(x)) return;
    seen.add(x);
    const err = x as {
      message?: string;
      code?: string;
      address?: string;
      port?: number;
      hostname?: string;
      errors?: unknown[];
      cause?: unknown;
    };
    if (Array.isArray(err.errors) && err.errors.length) {
      for (const inner of err.errors) walk(inner);
    } else if (err.code && /^E[A-Z_]+$|^UND_ERR|^ERR_TLS|CERT|^DEPTH/.test(err.code)) {
      const where = err.address ? ` ${err.address}${err.port !== undefined ? `:${err.port}` : ''}` : err.hostname ? ` ${err.hostname}` : '';
      causes.push(
        `${err.code}${where}${err.code.startsWith('UND_ERR') || err.code.startsWith('ERR_TLS') || /CERT/.test(err.code) ? ` (${err.message})` : ''}`,
      );
    } else if (x !== e && err.message && !err.cause) {
      causes.push(err.message); // e.g. fetch's "bad port" (a port browsers block), which has no code
    }
    walk(err.cause);
  };
  walk(e);
  const message = e instanceof Error ? e.message : String(e);
  const unique = [...new Set(causes)];
  if (/^fetch failed$/i.test(message) || (unique.length && /fetch failed/i.test(message))) {
    return `cannot reach ${url ?? 'the server'}: ${unique.join(', ') || message}`;
  }
  if (!unique.length || unique.some((c) => message.includes(c.split(' ')[0]!))) return message;
  return url && !message.includes(url) ? `${url}: ${message} (${unique.join(', ')})` : `${message} (${unique.join(', ')})`;
}

export class McpSession {
  readonly client: Client;
  readonly url: string;
  private readonly transport: StreamableHTTPClientTransport;

  private constructor(client: Client, transport: StreamableHTTPClientTransport, url: string) {
    this.client = client;
    this.transport = transport;
    this.url = url;
  }

  static async open(url: string, o: SessionOptions = {}): Promise<McpSession> {
    const endpoint = endpointUrl(url);
    const capabilities: ClientCapabilities = {};
    if (o.onElicit) capabilities.elicitation = { form: {} };
    if (o.onSample) capabilities.sampling = {};
    if (o.roots?.length) capabilities.roots = { listChanged: false };
    const client = new Client({ name: 'berth-client', version: VERSION }, { capabilities });
    if (o.onElicit) {
      const answer = o.onElicit;
      client.setRequestHandler(ElicitRequestSchema, async (req) => {
        if (req.params.mode === 'url') return { action: 'decline' }; // only forms are offered
        return answer(req.params as ElicitRequestFormParams);
      });
    }
    if (o.onSample) {
      const answer = o.onSample;
      client.setRequestHandler(CreateMessageRequestSchema, async (req) => answer(req.params));
    }
    if (o.roots?.length) {
      const roots = rootsOf(o.roots);
      client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots }));
    }
    if (o.onLog) {
      const onLog = o.onLog;
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => onLog(n.params));
    }
    const headers: Record<string, string> = { ...o.headers };
    if (o.token) headers.Authorization = `Bearer ${o.token}`;
    const transport = new StreamableHTTPClientTransport(endpoint, {
      requestInit: { headers },
      // A dropped stream is resumed with Last-Event-ID; berth keeps the events, so retry patiently.
      reconnectionOptions: {
        initialReconnectionDelay: 500,
        maxReconnectionDelay: 10_000,
        reconnectionDelayGrowFactor: 1.5,
        maxRetries: 10,
      },
    });
    try {
      await client.connect(transport, { timeout: 300_000 });
    } catch (e) {
      await client.close().catch(() => undefined);
      const d = describeError(e, url);
      throw new Error(d.includes(url) ? d : `${url}: ${d}`, { cause: e });
    }
    return new McpSession(client, transport, url);
  }

  async callTool(name: string, args: Record<string, unknown>, onProgress?: (p: Progress) => void): Promise<CallToolResult> {
    const r = await this.client.callTool({ name, arguments: args }, CallToolResultSchema, {
      timeout: NO_TIMEOUT,
      onprogress: onProgress,
    });
    return r as CallToolResult;
  }

  /** Ends the session on the server (DELETE), then closes the transport. */
  async close(): Promise<void> {
    await this.transport.terminateSession().catch(() => undefined);
    await this.client.close().catch(() => undefined);
  }
}

/** The text of a tool result: text parts as they are, other parts as a short bracketed line. */
export function resultText(r: CallToolResult): string {
  return (r.content ?? [])
    .map((c) => {
      if (c.type === 'text') return c.text;
      if (c.type === 'image' || c.type === 'audio') return `[${c.type} ${c.mimeType}, ${Math.floor((c.data.length * 3) / 4)} bytes]`;
      if (c.type === 'resource') return 'text' in c.resource ? c.resource.text : `[resource ${c.resource.uri}]`;
      if (c.type === 'resource_link') return `[resource ${c.uri}]`;
      return JSON.stringify(c);
    })
    .join('\n');
}
