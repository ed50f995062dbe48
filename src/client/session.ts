// One MCP client session with berth (or any Streamable HTTP server): the official SDK client, with the
// answers to the server's requests supplied by the caller (a person at a terminal, or a script's flags).
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

// setTimeout's longest delay: a call may wait on a person for a long time, so there is no client-side limit.
export const NO_TIMEOUT = 2 ** 31 - 1;

export class McpSession {
  readonly client: Client;
  private readonly transport: StreamableHTTPClientTransport;

  private constructor(client: Client, transport: StreamableHTTPClientTransport) {
    this.client = client;
    this.transport = transport;
  }

  static async open(url: string, o: SessionOptions = {}): Promise<McpSession> {
    const capabilities: ClientCapabilities = {};
    if (o.onElicit) capabilities.elicitation = { form: {} };
    if (o.onSample) capabilities.sampling = {};
    if (o.roots?.length) capabilities.roots = { listChanged: false };
    const client = new Client({ name: 'berth-client', version: '0.1.0' }, { capabilities });
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
    const transport = new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers },
      // A dropped stream is resumed with Last-Event-ID; berth keeps the events, so retry patiently.
      reconnectionOptions: { initialReconnectionDelay: 500, maxReconnectionDelay: 10_000, reconnectionDelayGrowFactor: 1.5, maxRetries: 10 },
    });
    await client.connect(transport, { timeout: 300_000 });
    return new McpSession(client, transport);
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
