// The storm's new sessions, in a process of their own: `node --import tsx bench/storm-arrivals.ts URL N OVER_MS`.
// Why a process: 100 SDK clients connecting in 5 s are real work for a client's event loop; in the bench's own
// process they would delay the live sessions' calls that the storm line measures, and berth would be blamed for
// the bench's loop. Protocol: prints "ready", starts on a "go" line on stdin, prints one JSON line (an Arrival per
// session, times in ms since "go"), keeps the sessions open until stdin ends, then closes them and exits.
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { disconnect, type Conn } from './workloads.js';

export interface Arrival {
  connectMs?: number;
  /** When its echo was answered, or it failed: ms after "go". */
  doneAt: number;
  error?: string;
  status?: number;
  retryAfter?: string;
}

const ECHO = { name: 'echo', arguments: { text: 'hello from the bench' } };
const CALL_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 60_000;
const CLOSE_TIMEOUT_MS = 30_000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/** One new session: connect, echo once, stay open. Never rejects. */
async function arrive(url: string, t0: number, open: Conn[]): Promise<Arrival> {
  let retryAfter: string | undefined;
  // Our own fetch, to see berth's Retry-After (the SDK's error carries only the status).
  const f: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    if (res.status === 503) retryAfter ??= res.headers.get('retry-after') ?? '(none)';
    return res;
  };
  const conn: Conn = {
    url,
    client: new Client({ name: 'berth-bench-storm', version: '1.0.0' }),
    transport: new StreamableHTTPClientTransport(new URL(url), { fetch: f }),
  };
  const start = performance.now();
  let connectMs: number | undefined;
  try {
    await conn.client.connect(conn.transport, { timeout: CONNECT_TIMEOUT_MS });
    connectMs = performance.now() - start;
    open.push(conn);
    const r = await conn.client.callTool(ECHO, undefined, { timeout: CALL_TIMEOUT_MS });
    if (r.isError) throw new Error(`echo answered isError: ${JSON.stringify(r.content).slice(0, 200)}`);
    return { connectMs, doneAt: performance.now() - t0 };
  } catch (e) {
    if (connectMs === undefined) await conn.client.close().catch(() => undefined);
    const status = (e as { code?: unknown }).code;
    return {
      connectMs,
      doneAt: performance.now() - t0,
      error: (e as Error).message,
      status: typeof status === 'number' ? status : undefined,
      retryAfter,
    };
  }
}

async function main(): Promise<void> {
  const [url, n, overMs] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4])];
  const lines = createInterface({ input: process.stdin });
  const next = () =>
    new Promise<string | undefined>((r) => {
      lines.once('line', r);
      lines.once('close', () => r(undefined));
    });
  process.stdout.write('ready\n');
  if ((await next()) !== 'go') return;
  const t0 = performance.now();
  const open: Conn[] = [];
  const arrivals: Array<Promise<Arrival>> = [];
  for (let i = 0; i < n; i++) {
    await sleep(t0 + (i * overMs) / n - performance.now());
    arrivals.push(arrive(url, t0, open));
  }
  process.stdout.write(`${JSON.stringify(await Promise.all(arrivals))}\n`); // bounded: each has its own timeouts
  await next();
  await Promise.race([Promise.allSettled(open.map(disconnect)), sleep(CLOSE_TIMEOUT_MS)]);
  process.exit(0);
}

void main();
