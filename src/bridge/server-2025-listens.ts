// subscriptions/listen for 2026-07-28 clients of 2025-era servers (bridge A). A 2025 server announces changes with
// unsolicited notifications: tools, prompts and resources list_changed, and resources/updated for what its client
// subscribed to. berth answers the listen itself: it acknowledges what the servers can deliver, then forwards every
// pooled server's matching announcements to each listen, tagged with that listen's id. Resource subscriptions are
// made at the servers by berth (resources/subscribe), counted across listens and withdrawn when none wants them.
import type { ServerResponse } from 'node:http';
import type { MessageRelay } from '../relay/message-relay.js';
import { META_SUBSCRIPTION_ID } from '../wire/era.js';
import type { JsonRpcMessage, JsonRpcRequest } from '../wire/jsonrpc.js';
import { KEEP_ALIVE, sseHeaders } from '../wire/sse.js';

type Params = Record<string, unknown>;

interface Filter {
  toolsListChanged?: true;
  promptsListChanged?: true;
  resourcesListChanged?: true;
  resourceSubscriptions?: string[];
}

interface Listen {
  res: ServerResponse;
  id: JsonRpcRequest['id'];
  filter: Filter;
}

const LIST_CHANGED: Record<string, keyof Filter> = {
  'notifications/tools/list_changed': 'toolsListChanged',
  'notifications/prompts/list_changed': 'promptsListChanged',
  'notifications/resources/list_changed': 'resourcesListChanged',
};

const isObject = (v: unknown): v is Params => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What a listen asked for, cut to what a server with these (2025 initialize) capabilities can announce. */
export function honoured(asked: unknown, capabilities: Params): Filter {
  const a = isObject(asked) ? asked : {};
  const cap = (name: string, flag: string) => isObject(capabilities[name]) && (capabilities[name] as Params)[flag] === true;
  const f: Filter = {};
  if (a.toolsListChanged === true && cap('tools', 'listChanged')) f.toolsListChanged = true;
  if (a.promptsListChanged === true && cap('prompts', 'listChanged')) f.promptsListChanged = true;
  if (a.resourcesListChanged === true && cap('resources', 'listChanged')) f.resourcesListChanged = true;
  if (Array.isArray(a.resourceSubscriptions) && cap('resources', 'subscribe')) {
    f.resourceSubscriptions = [...new Set(a.resourceSubscriptions.filter((u): u is string => typeof u === 'string'))];
  }
  return f;
}

export class Server2025Listens {
  private readonly listens = new Set<Listen>();
  private readonly relays = new Set<MessageRelay>();
  /** Watched resource URI -> how many listens want it. */
  private readonly watched = new Map<string, number>();

  constructor(private readonly o: { keepAlive: number }) {}

  get size(): number {
    return this.listens.size;
  }

  /** A pooled server berth has initialized: its announcements reach the listens, and it watches what they watch. */
  add(relay: MessageRelay): void {
    if (this.relays.has(relay)) return;
    this.relays.add(relay);
    relay.onUnrouted = (m) => this.announce(m);
    for (const uri of this.watched.keys()) void relay.call('resources/subscribe', { uri });
  }

  remove(relay: MessageRelay): void {
    this.relays.delete(relay);
  }

  /** Serves one listen until the client closes it. */
  open(res: ServerResponse, request: JsonRpcRequest, capabilities: Params, headers: Record<string, string> = {}): Promise<void> {
    const filter = honoured((request.params as Params | undefined)?.notifications, capabilities);
    const listen: Listen = { res, id: request.id, filter };
    res.writeHead(200, sseHeaders(headers));
    this.write(listen, { jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications: filter } });
    this.listens.add(listen);
    for (const uri of filter.resourceSubscriptions ?? []) this.watch(uri, +1);
    const pulse = this.o.keepAlive > 0 ? setInterval(() => res.write(KEEP_ALIVE), this.o.keepAlive) : undefined;
    pulse?.unref();
    return new Promise((resolve) =>
      res.once('close', () => {
        clearInterval(pulse);
        this.listens.delete(listen);
        for (const uri of filter.resourceSubscriptions ?? []) this.watch(uri, -1);
        resolve();
      }),
    );
  }

  /** Ends every listen (shutdown): the client may listen again elsewhere. */
  close(): void {
    for (const l of this.listens) l.res.end();
  }

  /** A server's notification that belongs to no call. Consumed either way: nobody reads a pooled server's GET stream. */
  private announce(m: JsonRpcMessage & { method: string; params?: Params }): boolean {
    const kind = LIST_CHANGED[m.method];
    const uri = m.method === 'notifications/resources/updated' ? m.params?.uri : undefined;
    for (const l of this.listens) {
      if ((kind && l.filter[kind]) || (typeof uri === 'string' && l.filter.resourceSubscriptions?.includes(uri))) this.write(l, m);
    }
    return true;
  }

  private write(l: Listen, m: JsonRpcMessage & { params?: Params }): void {
    const _meta = { ...(isObject(m.params?._meta) ? m.params._meta : {}), [META_SUBSCRIPTION_ID]: l.id };
    l.res.write(`event: message\ndata: ${JSON.stringify({ ...m, params: { ...m.params, _meta } })}\n\n`);
  }

  private watch(uri: string, delta: number): void {
    const n = (this.watched.get(uri) ?? 0) + delta;
    if (n > 0) this.watched.set(uri, n);
    else this.watched.delete(uri);
    const method = delta > 0 && n === 1 ? 'resources/subscribe' : delta < 0 && n === 0 ? 'resources/unsubscribe' : undefined;
    if (method) for (const relay of this.relays) void relay.call(method, { uri });
  }
}
