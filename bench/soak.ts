// `npm run soak`: N concurrent sessions (official SDK clients) making mixed calls — echo, progress streams,
// elicitations — through a TCP proxy that cuts random long-lived connections, for a set duration. Reports calls
// completed, messages lost (a call whose result or progress went missing after its stream began: must be 0),
// errors by kind, and berth's RSS over time (it must level off).
//
//   node --import tsx bench/soak.ts [--sessions 200] [--duration 10m] [--drop-every 250ms] [--isolation process]
//                                   [--out bench/results/soak-DATE.json]
import { listeningUrl } from '../test/helpers/berth.js';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, createServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { parseDuration } from '../src/util/units.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const SESSIONS = Number(arg('sessions', '200'));
const DURATION = parseDuration(arg('duration', '10m'));
const DROP_EVERY = parseDuration(arg('drop-every', '250ms'));
const ISOLATION = arg('isolation', 'process');
const OUT = arg('out', join(ROOT, 'bench', 'results', `soak-${new Date().toISOString().slice(0, 10)}.json`));

async function startBerth(): Promise<{ url: string; pid: number; stop: () => void }> {
  const args = [
    'bin/berth.js',
    'run',
    '--port',
    '0',
    '--isolation',
    ISOLATION,
    '--warm-pool',
    '8',
    '--max-sessions',
    String(SESSIONS + 50),
    '--json-window',
    '0',
    '--',
    process.execPath,
    join(ROOT, 'bench', 'soak-server.mjs'),
  ];
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, BERTH_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await listeningUrl(proc);
  return { url, pid: proc.pid!, stop: () => proc.kill('SIGTERM') };
}

/**
 * A proxy that cuts response streams at random: connections whose client has been silent for a while (its request
 * sent) while the server is still sending — SSE streams in mid-flight. Idle keep-alive sockets are left alone.
 */
async function startDropper(target: string): Promise<{ url: string; drops: () => number; close: () => void }> {
  const t = new URL(target);
  const live = new Map<Socket, { peer: Socket; clientAt: number; serverAt: number; chunks: number }>();
  let drops = 0;
  const server = createServer((client) => {
    const up = tcpConnect(Number(t.port), t.hostname);
    const info = { peer: up, clientAt: Date.now(), serverAt: 0, chunks: 0 };
    live.set(client, info);
    for (const s of [client, up]) s.on('error', () => undefined);
    client.on('data', () => {
      info.clientAt = Date.now();
      info.chunks = 0;
    });
    up.on('data', (d: Buffer) => {
      info.serverAt = Date.now();
      info.chunks++;
      // The end of a chunked response: the socket is idle again (keep-alive), not a stream to cut.
      if (d.length >= 5 && d.subarray(-5).toString() === '0\r\n\r\n') info.chunks = 0;
    });
    client.pipe(up).pipe(client);
    client.on('close', () => (up.destroy(), live.delete(client)));
    up.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const timer = setInterval(() => {
    const now = Date.now();
    // A stream in mid-flight: several writes since the request, the last one recent. (A socket idle after a plain
    // response is left alone: cutting it as the client reuses it only fails that client's next POST.)
    const streaming = [...live].filter(([, v]) => now - v.clientAt > 300 && now - v.serverAt < 1000 && v.chunks >= 3);
    const pick = streaming[Math.floor(Math.random() * streaming.length)];
    if (!pick) return;
    drops++;
    pick[0].resetAndDestroy();
    pick[1].peer.resetAndDestroy();
  }, DROP_EVERY);
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}${t.pathname}`,
    drops: () => drops,
    close: () => (clearInterval(timer), server.close()),
  };
}

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const NETWORK = /fetch failed|terminated|ECONNRESET|socket|other side closed|network/i;

interface Tally {
  completed: number;
  lost: number;
  beforeStream: number;
  /** The client's own answer (to an elicitation) never reached berth: its POST failed and the SDK does not retry it. */
  answerUnsent: number;
  errors: Record<string, number>;
}

/** Calls in flight, for the report of what hung when the time was up. */
const inflight = new Map<string, { kind: string; since: number; session?: string }>();

async function session(url: string, until: number, tally: Tally): Promise<void> {
  const client = new Client({ name: 'soak', version: '1' }, { capabilities: { elicitation: {} } });
  let unsent = 0;
  client.onerror = (e) => {
    if (e.message.startsWith('Failed to send response')) unsent++;
    const kind = `client onerror: ${e.message.replace(/[0-9a-f-]{8,}/gi, '…').slice(0, 70)}`;
    tally.errors[kind] = (tally.errors[kind] ?? 0) + 1;
  };
  client.setRequestHandler(ElicitRequestSchema, async (r) => ({ action: 'accept', content: { answer: `re:${r.params.message}` } }));
  const reconnectionOptions = {
    initialReconnectionDelay: 200,
    maxReconnectionDelay: 2000,
    reconnectionDelayGrowFactor: 1.5,
    maxRetries: 10,
  };
  let transport = new StreamableHTTPClientTransport(new URL(url), { reconnectionOptions });
  for (let attempt = 1; ; attempt++) {
    try {
      await client.connect(transport, { timeout: 120_000 });
      break;
    } catch (e) {
      if (attempt >= 5) throw e; // a real client retries a failed initialize too
      await client.close().catch(() => undefined);
      transport = new StreamableHTTPClientTransport(new URL(url), { reconnectionOptions });
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
  let n = 0;
  while (Date.now() < until) {
    const r = Math.random();
    const tag = `${process.pid}-${n++}-${Math.random().toString(36).slice(2, 8)}`;
    // Whether the client ever held a position in this call's stream (an event id): without one, no client can resume.
    let resumable = false;
    const opts = { timeout: 30_000, onresumptiontoken: () => (resumable = true) };
    const unsentBefore = unsent;
    inflight.set(tag, {
      kind: r < 0.5 ? 'echo' : r < 0.8 ? 'progress' : 'ask',
      since: Date.now(),
      session: transport.sessionId?.slice(0, 8),
    });
    try {
      if (r < 0.5) {
        const res = (await client.callTool({ name: 'echo', arguments: { text: tag } }, undefined, opts)) as {
          content: Array<{ text: string }>;
        };
        if (res.content[0]!.text !== tag) throw new Error('lost: wrong echo');
      } else if (r < 0.8) {
        const steps = 5 + Math.floor(Math.random() * 20);
        const seen: number[] = [];
        const res = (await client.callTool({ name: 'progress', arguments: { steps, delayMs: 40 } }, undefined, {
          ...opts,
          onprogress: (p) => seen.push(p.progress),
        })) as { content: Array<{ text: string }> };
        if (res.content[0]!.text !== `done ${steps}`) throw new Error('lost: wrong result');
        if (seen.length !== steps || seen.some((p, i) => p !== i + 1)) throw new Error(`lost: progress ${seen.length}/${steps}`);
      } else {
        const res = (await client.callTool({ name: 'ask', arguments: { question: tag } }, undefined, opts)) as {
          content: Array<{ text: string }>;
        };
        if (!res.content[0]!.text.includes(`re:${tag}`)) throw new Error('lost: wrong answer');
      }
      tally.completed++;
      inflight.delete(tag);
    } catch (e) {
      inflight.delete(tag);
      const msg = (e as Error).message;
      const kind = msg.startsWith('lost:') ? msg : msg.replace(/[0-9a-f-]{8,}/gi, '…').slice(0, 80);
      tally.errors[kind] = (tally.errors[kind] ?? 0) + 1;
      // A connection cut before the client read any event id of its stream cannot be resumed by any client.
      if (NETWORK.test(msg) || !resumable) tally.beforeStream++;
      else if (unsent > unsentBefore) tally.answerUnsent++;
      else tally.lost++;
    }
  }
  await transport.terminateSession().catch(() => undefined);
  await client.close();
}

const berth = await startBerth();
const proxy = await startDropper(berth.url);
const started = Date.now();
const until = started + DURATION;
const tally: Tally = { completed: 0, lost: 0, beforeStream: 0, answerUnsent: 0, errors: {} };
const rss: Array<{ t: number; mib: number; heapMiB: number; completed: number }> = [];
const metricsUrl = new URL('/metrics', berth.url);
const sampler = setInterval(async () => {
  const text = await fetch(metricsUrl)
    .then((r) => r.text())
    .catch(() => '');
  const heap = Number(/^berth_nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1] ?? NaN) / 1048576;
  rss.push({
    t: Math.round((Date.now() - started) / 1000),
    mib: Math.round(rssMiB(berth.pid)),
    heapMiB: Math.round(heap),
    completed: tally.completed,
  });
  const last = rss.at(-1)!;
  if (Date.now() > until + 5000)
    process.stderr.write(
      `still in flight: ${JSON.stringify([...inflight.values()].map((v) => ({ ...v, since: Math.round((Date.now() - v.since) / 1000) })))}\n`,
    );
  process.stderr.write(
    `t=${last.t}s rss=${last.mib}MiB heap=${last.heapMiB}MiB completed=${tally.completed} lost=${tally.lost} cut-before-stream=${tally.beforeStream} answer-unsent=${tally.answerUnsent} drops=${proxy.drops()}\n`,
  );
}, 10_000);
// Sessions start staggered, so the warm pool (8) and the host keep up.
await Promise.all(
  Array.from({ length: SESSIONS }, async (_, i) => {
    await new Promise((r) => setTimeout(r, i * 50));
    await session(proxy.url, until, tally).catch((e: Error) => {
      tally.errors[`session: ${e.message.slice(0, 60)}`] = (tally.errors[`session: ${e.message.slice(0, 60)}`] ?? 0) + 1;
    });
  }),
);
clearInterval(sampler);
proxy.close();
berth.stop();

// RSS must level off: compare the mean of the last fifth with that of the second fifth (after warm-up).
const fifth = Math.max(1, Math.floor(rss.length / 5));
const mean = (xs: typeof rss, k: 'mib' | 'heapMiB' = 'mib') => xs.reduce((a, b) => a + b[k], 0) / Math.max(1, xs.length);
const warm = mean(rss.slice(fifth, 2 * fifth));
const end = mean(rss.slice(-fifth));
const heapWarm = mean(rss.slice(fifth, 2 * fifth), 'heapMiB');
const heapEnd = mean(rss.slice(-fifth), 'heapMiB');
const report = {
  date: new Date().toISOString(),
  sessions: SESSIONS,
  durationSeconds: DURATION / 1000,
  isolation: ISOLATION,
  dropEveryMs: DROP_EVERY,
  connectionsCut: proxy.drops(),
  callsCompleted: tally.completed,
  messagesLost: tally.lost,
  cutBeforeStreamBegan: tally.beforeStream,
  clientAnswerNeverSent: tally.answerUnsent,
  errors: tally.errors,
  rssMiB: { afterWarmUp: Math.round(warm), atEnd: Math.round(end), growthPercent: Math.round(((end - warm) / warm) * 1000) / 10 },
  heapMiB: {
    afterWarmUp: Math.round(heapWarm),
    atEnd: Math.round(heapEnd),
    growthPercent: Math.round(((heapEnd - heapWarm) / heapWarm) * 1000) / 10,
  },
  series: rss,
};
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, JSON.stringify(report, null, 2) + '\n');
console.log(
  '| sessions | duration | calls completed | messages lost | cut before stream | client answer unsent | connections cut | RSS after warm-up | RSS at end | growth |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
console.log(
  `| ${SESSIONS} | ${DURATION / 1000}s | ${tally.completed} | ${tally.lost} | ${tally.beforeStream} | ${tally.answerUnsent} | ${proxy.drops()} | ${report.rssMiB.afterWarmUp} MiB | ${report.rssMiB.atEnd} MiB | ${report.rssMiB.growthPercent}% |`,
);
console.log(
  `berth heap (V8, used): ${report.heapMiB.afterWarmUp} MiB after warm-up, ${report.heapMiB.atEnd} MiB at end (${report.heapMiB.growthPercent}%)`,
);
console.log(`errors by kind: ${JSON.stringify(tally.errors)}`);
console.log(`written to ${OUT}`);
process.exit(tally.lost === 0 ? 0 : 1);
