// Starts real berth processes (the built CLI) and connects the official SDK client to them.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Absolute paths: the server runs in its private session directory, not in the repo. */
export const PROBE = [
  process.execPath,
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL('../fixtures/probe-server.ts', import.meta.url)),
];

export interface BerthProcess {
  url: string;
  proc: ChildProcess;
  /** Everything berth wrote to stderr (JSON log lines). */
  logs: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/**
 * `berth <args...>`; resolves once it prints its endpoint URL. `launcher` is a command berth is started through
 * (it ends by exec'ing its arguments), e.g. a shell that leaves a descriptor open, as a supervisor might.
 */
export async function startBerth(args: string[], env: Record<string, string> = {}, launcher: string[] = []): Promise<BerthProcess> {
  const [file, ...rest] = [...launcher, process.execPath, 'bin/berth.js', ...args] as [string, ...string[]];
  const proc = spawn(file, rest, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  // berth run says it listens once its first server is up: a microVM under emulation boots for a while.
  const url = await listeningUrl(proc, { timeoutMs: args.includes('microvm') ? 300_000 : 60_000, context: () => err });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return {
    url,
    proc,
    logs: () => err,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && !proc.killed) proc.kill(signal);
      return exited;
    },
  };
}

/**
 * The URL a berth process prints once it listens. Rejects when it exits first, or (timeoutMs > 0) stays silent that
 * long; the message carries its stdout and `context()` (e.g. its stderr).
 */
export function listeningUrl(proc: ChildProcess, o: { timeoutMs?: number; what?: string; context?: () => string } = {}): Promise<string> {
  const what = o.what ?? 'berth';
  return new Promise<string>((resolve, reject) => {
    let out = '';
    const t = o.timeoutMs
      ? setTimeout(
          () => reject(new Error(`${what} did not print its URL in ${o.timeoutMs! / 1000} s\n${out}\n${o.context?.() ?? ''}`)),
          o.timeoutMs,
        )
      : undefined;
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${what} exited with ${code}\n${out}\n${o.context?.() ?? ''}`));
    });
  });
}

/**
 * `berth serve` of one runtime (`runtime` is its config; JSON is YAML) on a free port. Unlike `berth run`, serve says
 * it listens before its first server is up: for tests of servers that never start, or start slowly on purpose.
 */
export function serveBerth(runtime: Record<string, unknown>, env: Record<string, string> = {}): Promise<BerthProcess> {
  return serveConfig({ server: { port: 0 }, runtimes: { default: runtime } }, env);
}

/** `berth serve` with this whole configuration (written to a temporary file, removed when berth exits). */
export async function serveConfig(config: Record<string, unknown>, env: Record<string, string> = {}): Promise<BerthProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-serve-'));
  const file = join(dir, 'berth.json.yaml');
  writeFileSync(file, JSON.stringify(config));
  const b = await startBerth(['serve', '--config', file], env);
  b.proc.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return b;
}

/** `berth run --port 0 [flags] -- COMMAND...` */
export function runBerth(flags: string[], command: string[] = PROBE, env: Record<string, string> = {}): Promise<BerthProcess> {
  return startBerth(['run', '--port', '0', ...flags, '--', ...command], env);
}

export async function connect(
  url: string,
  capabilities: ClientCapabilities = {},
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'berth-test', version: '1.0.0' }, { capabilities });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  // Generous: a session on a slow driver (a microVM under emulation) may wait for a server to boot.
  await client.connect(transport, { timeout: 300_000 });
  return { client, transport };
}

export function textOf(result: unknown): string {
  const c = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  return c.map((x) => x.text ?? '').join('');
}

/** Runs `cmd` with /bin/sh in the session's server through the hostile fixture's `sh` tool (up to 60 s). */
export async function shIn(c: Awaited<ReturnType<typeof connect>>, cmd: string) {
  const r = await c.client.callTool({ name: 'sh', arguments: { cmd, timeoutMs: 60_000 } }, undefined, { timeout: 120_000 });
  return JSON.parse(textOf(r)) as { status: number; stdout: string; stderr: string };
}

/** Raw HTTP helpers for what the SDK hides. */
export const ACCEPT_BOTH = 'application/json, text/event-stream';
export function initBody(id: number | string = 1, protocolVersion = '2025-11-25') {
  return JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: { protocolVersion, capabilities: { elicitation: {} }, clientInfo: { name: 'raw', version: '1' } },
  });
}
export async function rawInit(url: string): Promise<string> {
  const r = await fetch(url, { method: 'POST', headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json' }, body: initBody() });
  if (r.status !== 200) throw new Error(`initialize: HTTP ${r.status} ${await r.text()}`);
  await r.text();
  const sid = r.headers.get('mcp-session-id')!;
  await fetch(url, {
    method: 'POST',
    headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  }).then((x) => x.text());
  return sid;
}

/** Parses an SSE body into its JSON-RPC messages (the empty-data priming event carries none). */
export function sseMessages(body: string): unknown[] {
  return body
    .split('\n')
    .filter((l) => l.startsWith('data:') && l.slice(5).trim() !== '')
    .map((l) => JSON.parse(l.slice(5)));
}

export interface SseEvent {
  id?: string;
  retry?: number;
  data: string;
}

/** Parses an SSE body into events (complete ones only: a trailing partial event is left out). */
export function sseEvents(body: string): SseEvent[] {
  const blocks = body.split('\n\n');
  blocks.pop(); // incomplete, or the empty string after the last blank line
  return blocks
    .map((block) => {
      const e: SseEvent = { data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'id') e.id = value;
        else if (field === 'retry') e.retry = Number(value);
        else if (field === 'data') e.data += value;
      }
      return e;
    })
    .filter((e) => e.id !== undefined || e.retry !== undefined || e.data !== '');
}

/** Reads an SSE response until `enough` says so (or it ends); returns the text read. */
export async function readUntil(r: Response, enough: (events: SseEvent[]) => boolean): Promise<string> {
  const reader = r.body!.getReader();
  const dec = new TextDecoder();
  let text = '';
  while (!enough(sseEvents(text))) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  reader.releaseLock();
  return text;
}
