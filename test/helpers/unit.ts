// What the module-level tests share: a real stdio MCP server as a child process (with a tap on what berth writes
// to it), a loopback HTTP server whose responses the module under test writes, an incremental SSE reader, a
// deadline-bounded poll, and a launch context for the process sandbox driver.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { RuntimeSchema, type RuntimeConfigInput } from '../../src/config/schema.ts';
import { StdioChannel } from '../../src/relay/stdio-channel.ts';
import { MessageRelay, type RelayOptions } from '../../src/relay/message-relay.ts';
import { StreamsSchema } from '../../src/config/schema.ts';
import { processDriver } from '../../src/sandbox/process.ts';
import { httpConnector } from '../../src/session/connect-http.ts';
import { stdioConnector } from '../../src/session/connect-stdio.ts';
import { commandSource } from '../../src/session/source-command.ts';
import type { LaunchContext } from '../../src/session/launch.ts';
import type { JsonRpcMessage } from '../../src/wire/jsonrpc.ts';
import { PROBE, ROOT, sseEvents } from './berth.ts';

export { PROBE, ROOT };

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
/** The 2026-07-28 conformance server (SDK v2) on stdio. */
export const SERVER_2026 = [process.execPath, '--import', import.meta.resolve('tsx'), fixture('conformance-server-2026.ts')];

export const silentLog = pino({ level: 'silent' });

/** Polls `cond` every 10 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(cond: () => T | undefined | false, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A pid that is no longer a live process. */
export function gone(pid: number | undefined): boolean {
  if (pid === undefined) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

export interface StdioServer {
  child: ChildProcess;
  channel: StdioChannel;
  /** Every message berth wrote to the server, in order. */
  sent: JsonRpcMessage[];
  exited: Promise<void>;
  stop(): Promise<void>;
}

/** A stdio MCP server as a child process, its stdin tapped so a test sees the ids berth really forwards. */
export function stdioServer(argv: string[], env: Record<string, string> = {}): StdioServer {
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stderr!.resume();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const tap = new PassThrough();
  const sent: JsonRpcMessage[] = [];
  let buffered = '';
  tap.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      sent.push(JSON.parse(buffered.slice(0, nl)) as JsonRpcMessage);
      buffered = buffered.slice(nl + 1);
    }
  });
  tap.pipe(child.stdin!);
  child.stdin!.on('error', () => tap.destroy());
  const channel = new StdioChannel(tap, child.stdout!);
  return {
    child,
    channel,
    sent,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A relay over `server` with the default stream settings; no timeouts unless given. */
export function relayOver(server: StdioServer, o: Partial<RelayOptions> = {}): MessageRelay {
  return new MessageRelay(server.channel, {
    stateless: false,
    streams: StreamsSchema.parse({}),
    requestTimeout: 0,
    serverRequestTimeout: 0,
    ...o,
  });
}

/** berth's 2025 handshake with a server over `relay`, declaring the client capabilities a test needs. */
export async function handshake2025(relay: MessageRelay, capabilities: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const r = await relay.call('initialize', {
    protocolVersion: '2025-11-25',
    capabilities,
    clientInfo: { name: 'unit-test', version: '1' },
  });
  if (r.error) throw new Error(`initialize failed: ${r.error.message}`);
  relay.notify('notifications/initialized');
  await relay.settled;
  return r.result as Record<string, unknown>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void | Promise<void>;

export interface Loopback {
  url: string;
  /** What the next requests are handed to; replace it per test. */
  handle: Handler;
  /** Every response the server handed out, to check what the module wrote to it. */
  server: Server;
  close(): Promise<void>;
}

/** A node:http server on 127.0.0.1 whose responses a module under test writes (the body is read first). */
export async function loopback(): Promise<Loopback> {
  const lb: Loopback = {
    url: '',
    handle: (_req, res) => void res.writeHead(500).end('no handler'),
    server: undefined as unknown as Server,
    close: async () => {
      lb.server.closeAllConnections();
      await new Promise((r) => lb.server.close(r));
    },
  };
  lb.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      Promise.resolve(lb.handle(req, res, Buffer.concat(chunks))).catch((e: Error) => {
        if (!res.headersSent) res.writeHead(500).end(e.message);
        else res.destroy();
      });
    });
  });
  await new Promise<void>((r) => lb.server.listen(0, '127.0.0.1', r));
  lb.url = `http://127.0.0.1:${(lb.server.address() as { port: number }).port}/mcp`;
  return lb;
}

/** POSTs a JSON-RPC message (or batch) to `url`. */
export function postJson(url: string, body: unknown, signal?: AbortSignal, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
    signal,
  });
}

/** Reads an SSE response as it arrives: `next` waits for a JSON-RPC message that `match` accepts. */
export class SseReader {
  private text = '';
  private seen = 0;
  private done = false;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly dec = new TextDecoder();
  /** Every JSON-RPC message read so far, in order. */
  readonly messages: Array<Record<string, unknown>> = [];
  /** Every event id read so far. */
  readonly ids: string[] = [];

  constructor(r: Response) {
    this.reader = r.body!.getReader();
  }

  private take(): void {
    const events = sseEvents(this.text);
    for (const e of events.slice(this.seen)) {
      if (e.id) this.ids.push(e.id);
      if (e.data.trim()) this.messages.push(JSON.parse(e.data) as Record<string, unknown>);
    }
    this.seen = events.length;
  }

  /** The first message from the start of the stream that `match` accepts (waits for it; the stream ending fails). */
  async next(match: (m: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
    for (;;) {
      const found = this.messages.find(match);
      if (found) return found;
      if (this.done) throw new Error(`the stream ended without ${what}; it carried ${JSON.stringify(this.messages)}`);
      const { value, done } = await this.reader.read();
      if (done) this.done = true;
      else this.text += this.dec.decode(value, { stream: true });
      this.take();
    }
  }

  /** Reads to the end of the stream. */
  async rest(): Promise<Array<Record<string, unknown>>> {
    while (!this.done) {
      const { value, done } = await this.reader.read();
      if (done) this.done = true;
      else this.text += this.dec.decode(value, { stream: true });
      this.take();
    }
    return this.messages;
  }
}

/** A port nothing listens on right now (for an http upstream's $PORT). */
export { freePort } from '../../src/util/free-port.ts';

/** A launch context for the process driver (host network: no namespace per server, nothing to clean up). */
export function launchContext(runtime: Partial<RuntimeConfigInput> & { command: string[] }): LaunchContext {
  // disk 0: no tmpfs per server (the process driver mounts one as root); these tests are not about the disk cap.
  const config = RuntimeSchema.parse({ isolation: 'process', network: 'host', ...runtime, limits: { disk: 0, ...runtime.limits } });
  const connector = config.upstream === 'http' ? httpConnector : stdioConnector;
  const source = commandSource(config, ROOT);
  return { runtimeName: 'unit', config, driver: processDriver, connector, source, sessionRoot: undefined, baseDir: ROOT, log: silentLog };
}
