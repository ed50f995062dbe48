// What berth knows of a runtime's tools, to check 2026-07-28 clients' Mcp-Param-* headers before a call reaches a
// stdio server (which sees no headers) or bridge A: each tool's x-mcp-header declarations, learned from tools/list.
// The list comes from a server of berth's own (started, asked, stopped), never from one a client holds: a client
// could change its own server's tools, and its answer must not decide what other clients' calls are checked against.
// Refreshed when a call names a tool the list lacks, at most once per MISS_REFRESH_MS. A server's
// notifications/tools/list_changed is not watched: it speaks of that one server's tools, which a fresh server,
// asked on the next miss, does not share.
import type { Logger } from 'pino';
import type { IncomingHttpHeaders } from 'node:http';
import type { Upstream } from '../relay/upstream.js';
import { META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, VERSIONS_2026 } from '../wire/era.js';
import type { JsonRpcRequest } from '../wire/jsonrpc.js';
import { checkParamHeaders, scanParamHeaders, type ParamHeader } from '../wire/param-headers.js';
import { LATEST_PROTOCOL_VERSION } from '../wire/streamable-http.js';
import { dispose, launchReady, withinStartup, type LaunchContext } from './launch.js';
import type { StartGate } from './start-gate.js';

/** A call naming a tool the list lacks asks the server again, but at most this often (ms). */
export const MISS_REFRESH_MS = 60_000;
/** tools/list pages followed at most (a server whose cursors never end is not asked forever). */
export const MAX_TOOL_PAGES = 100;

type ListTools = () => Promise<unknown[]>;

export class ToolSchemaCache {
  /** Tool name -> its declarations ([] for none, or for an invalid definition, which clients do not call). */
  private tools = new Map<string, ParamHeader[]>();
  private askedAt = -Infinity;
  private asking: Promise<void> | undefined;

  constructor(
    private readonly listTools: ListTools,
    private readonly log: Logger,
    private readonly missRefreshMs = MISS_REFRESH_MS,
  ) {}

  /** Refuses (throws the HttpError: 400, -32020) a tools/call whose Mcp-Param-* headers disagree with its arguments. */
  async check(headers: IncomingHttpHeaders, request: JsonRpcRequest): Promise<void> {
    const name = request.params?.name;
    if (typeof name !== 'string') return; // the wire rules already refused it (Mcp-Name)
    let declared = this.tools.get(name);
    if (!declared && Date.now() - this.askedAt >= this.missRefreshMs) {
      await this.refresh();
      declared = this.tools.get(name);
    }
    // A tool the server does not list: it answers the call itself (an unknown tool, or one added in a session).
    if (!declared) return;
    const refusal = checkParamHeaders(declared, headers, request.params?.arguments, request.id);
    if (refusal) throw refusal;
  }

  /** One tools/list at a time, whoever asks; a failure leaves the last list in place until the next miss. */
  private refresh(): Promise<void> {
    this.asking ??= this.listTools()
      .then((tools) => {
        const next = new Map<string, ParamHeader[]>();
        for (const t of tools) {
          const { name, inputSchema } = (t ?? {}) as { name?: unknown; inputSchema?: unknown };
          if (typeof name !== 'string') continue;
          const scan = scanParamHeaders(inputSchema);
          if (!scan.ok)
            this.log.warn({ tool: name, reason: scan.reason }, 'tool definition has an invalid x-mcp-header: its headers are not checked');
          next.set(name, scan.ok ? scan.headers : []);
        }
        this.tools = next;
      })
      .catch((e: Error) =>
        this.log.warn({ err: e.message }, 'tools/list for Mcp-Param-* checks failed: calls pass unchecked until the next try'),
      )
      .finally(() => {
        this.askedAt = Date.now();
        this.asking = undefined;
      });
    return this.asking;
  }
}

/** Every page of tools/list from a server, as a 2025-era server (after berth's initialize) or a 2026-era one answers it. */
async function listAll(server: Upstream, era: '2025' | '2026'): Promise<unknown[]> {
  // Message by message, in a session of berth's own (over HTTP too): a 2025-era server wants its initialize first.
  const upstream = server.conversation;
  if (era === '2025') {
    const init = await upstream.initialize({
      protocolVersion: LATEST_PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: 'berth-tool-schemas', version: '0.1.0' },
    });
    if (init.error) throw new Error(`initialize failed: ${init.error.message}`);
  }
  const envelope = { [META_PROTOCOL_VERSION]: VERSIONS_2026[0], [META_CLIENT_CAPABILITIES]: {} };
  const tools: unknown[] = [];
  let cursor: unknown;
  for (let page = 0; page < MAX_TOOL_PAGES; page++) {
    const params = { ...(era === '2026' ? { _meta: envelope } : {}), ...(typeof cursor === 'string' ? { cursor } : {}) };
    const r = await upstream.call('tools/list', params, era === '2026' ? VERSIONS_2026[0] : LATEST_PROTOCOL_VERSION);
    if (r.error) throw new Error(`tools/list failed: ${r.error.message}`);
    const result = (r.result ?? {}) as { tools?: unknown; nextCursor?: unknown };
    if (Array.isArray(result.tools)) tools.push(...(result.tools as unknown[]));
    cursor = result.nextCursor;
    if (typeof cursor !== 'string') break;
  }
  return tools;
}

/**
 * A lister that starts a server of the runtime (in a start slot, like any), asks it for its tools within
 * startupTimeout, and stops it. The era is often being learned at the same moment (auto: by another server's
 * server/discover), so both go on at once.
 */
export function probeToolList(ctx: LaunchContext, starts: StartGate, eraOf: () => Promise<'2025' | '2026'>): ListTools {
  return async () => {
    const [era, started] = await Promise.allSettled([eraOf(), starts.run(() => launchReady(ctx))]);
    if (started.status === 'rejected') throw started.reason;
    const server = started.value;
    try {
      if (era.status === 'rejected') throw era.reason;
      const listing = listAll(server.upstream, era.value);
      return await withinStartup(server.sandbox, ctx.config.limits.startupTimeout, listing, 'the server did not list its tools');
    } finally {
      void dispose(server, ctx.config.limits.stopGrace).catch(() => undefined);
    }
  };
}
