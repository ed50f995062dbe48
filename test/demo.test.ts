// End-to-end tests for the bundled demo server (dist/demo/server.js) over stdio.
// Build first: npx tsc -p tsconfig.json && node --import tsx --test test/demo.test.ts
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  type CallToolResult,
  type CreateMessageRequest,
  type ElicitResult,
  type LoggingMessageNotification,
} from '@modelcontextprotocol/sdk/types.js';

const SERVER = fileURLToPath(new URL('../dist/demo/server.js', import.meta.url));
const ROOTS = [{ uri: 'file:///home/user/project', name: 'project' }, { uri: 'file:///tmp/scratch' }];

interface Harness {
  client: Client;
  root: string; // private temp dir; the server's cwd is root/ws, so root/ is "outside"
  dir: string;
  sessionId: string;
  nextElicit: ElicitResult;
  elicitCount: number;
  sampling: CreateMessageRequest['params'][];
  logs: LoggingMessageNotification['params'][];
}

async function start(sessionId: string, capable: boolean): Promise<Harness> {
  const root = await mkdtemp(join(tmpdir(), `berth-demo-${sessionId}-`));
  const dir = join(root, 'ws');
  await mkdir(dir);
  const client = new Client(
    { name: 'demo-test', version: '0.0.0' },
    { capabilities: capable ? { elicitation: { form: {} }, sampling: {}, roots: { listChanged: true } } : {} },
  );
  const h: Harness = {
    client,
    root,
    dir,
    sessionId,
    nextElicit: { action: 'cancel' },
    elicitCount: 0,
    sampling: [],
    logs: [],
  };
  if (capable) {
    client.setRequestHandler(ElicitRequestSchema, async () => {
      h.elicitCount++;
      return h.nextElicit;
    });
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      h.sampling.push(req.params);
      return { role: 'assistant', model: 'test-model', content: { type: 'text', text: 'SUMMARY: groceries and chores.' } };
    });
    client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: ROOTS }));
  }
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    h.logs.push(n.params);
  });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [SERVER],
    cwd: dir,
    env: { ...getDefaultEnvironment(), BERTH_SESSION_ID: sessionId },
    stderr: 'inherit',
  });
  await client.connect(transport);
  await client.listTools(); // caches output schemas so the client validates structuredContent
  return h;
}

async function call(h: Harness, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  return (await h.client.callTool({ name, arguments: args })) as CallToolResult;
}

function text(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
}

function sc<T = Record<string, any>>(r: CallToolResult): T {
  assert.ok(!r.isError, `unexpected tool error: ${text(r)}`);
  assert.ok(r.structuredContent, 'missing structuredContent');
  return r.structuredContent as T;
}

function waitExit(child: ReturnType<typeof spawn>, ms = 5000): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server did not exit')), ms);
    child.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve(signal ? -1 : code);
    });
  });
}

describe('demo notes server', () => {
  let a: Harness;
  let b: Harness;

  before(async () => {
    [a, b] = await Promise.all([start('sess-a', true), start('sess-b', false)]);
  });

  after(async () => {
    await Promise.all([a?.client.close(), b?.client.close()]);
    await Promise.all([a && rm(a.root, { recursive: true, force: true }), b && rm(b.root, { recursive: true, force: true })]);
  });

  test('advertises the expected tools, resources and prompt', async () => {
    const { tools } = await a.client.listTools();
    const names = tools.map((t) => t.name).sort();
    assert.deepEqual(names, [
      'note_delete',
      'note_list',
      'note_read',
      'note_search',
      'note_summarize',
      'note_write',
      'session_info',
      'workspace_reindex',
      'workspace_roots',
    ]);
    for (const t of tools) assert.ok(t.description && t.outputSchema, `${t.name} needs description+outputSchema`);
    const caps = a.client.getServerCapabilities();
    assert.ok(caps?.logging && caps.tools && caps.resources && caps.prompts);
  });

  test('write / read / list / search', async () => {
    const w = sc(await call(a, 'note_write', { name: 'groceries', content: 'Milk\nEggs\nBread and butter\n' }));
    assert.deepEqual(w, { name: 'groceries', bytes: 27, created: true });
    assert.equal(await readFile(join(a.dir, 'groceries.md'), 'utf8'), 'Milk\nEggs\nBread and butter\n');
    assert.equal(sc(await call(a, 'note_write', { name: 'groceries', content: 'Milk\nEggs\nBread and butter\n' })).created, false);
    sc(await call(a, 'note_write', { name: 'chores.2024', content: 'Take out the trash\nbuy BREAD crumbs' }));

    const r = await call(a, 'note_read', { name: 'groceries' });
    assert.equal(text(r), 'Milk\nEggs\nBread and butter\n');
    assert.equal(sc(r).content, 'Milk\nEggs\nBread and butter\n');

    const l = sc(await call(a, 'note_list'));
    assert.equal(l.count, 2);
    assert.deepEqual(
      l.notes.map((n: any) => n.name),
      ['chores.2024', 'groceries'],
    );
    assert.equal(l.notes[1].bytes, 27);
    assert.ok(!Number.isNaN(Date.parse(l.notes[1].modified)));

    const s = sc(await call(a, 'note_search', { query: 'bread' }));
    assert.deepEqual(
      s.hits.map((h: any) => [h.name, h.line]),
      [
        ['chores.2024', 2],
        ['groceries', 3],
      ],
    );
    assert.equal(sc(await call(a, 'note_search', { query: 'nothing-like-this' })).hits.length, 0);

    assert.ok(a.logs.some((m) => (m.data as any)?.event === 'note_created' && (m.data as any).name === 'groceries'));
    assert.equal((await call(a, 'note_read', { name: 'missing' })).isError, true);
  });

  test('oversized notes are rejected', async () => {
    const r = await call(a, 'note_write', { name: 'huge', content: 'x'.repeat(256 * 1024 + 1) });
    assert.equal(r.isError, true);
    assert.match(text(r), /limit/);
  });

  test('path traversal and unsafe names are rejected with an error result', async () => {
    const outside = join(a.root, 'outside.md');
    await writeFile(outside, 'secret');
    for (const name of ['../outside', '../ws/../outside', '..', 'a/b', '/etc/passwd', '.hidden', 'x\\y', 'a..b', '']) {
      for (const tool of ['note_write', 'note_read', 'note_delete']) {
        const r = await call(a, tool, { name, content: 'pwned', force: true });
        assert.equal(r.isError, true, `${tool}(${JSON.stringify(name)}) should fail`);
      }
    }
    assert.equal(await readFile(outside, 'utf8'), 'secret');
    await assert.rejects(a.client.readResource({ uri: 'note://..%2F..%2Fetc%2Fpasswd' }));
  });

  test('notes are resources, and review_note embeds the note', async () => {
    const { resources } = await a.client.listResources();
    assert.ok(resources.some((r) => r.uri === 'note://groceries' && r.mimeType === 'text/markdown'));
    const res = await a.client.readResource({ uri: 'note://groceries' });
    assert.equal((res.contents[0] as { text: string }).text, 'Milk\nEggs\nBread and butter\n');
    const p = await a.client.getPrompt({ name: 'review_note', arguments: { name: 'groceries' } });
    assert.ok(JSON.stringify(p.messages).includes('Bread and butter'));
  });

  test('delete asks via elicitation: decline keeps, accept+confirm deletes', async () => {
    sc(await call(a, 'note_write', { name: 'doomed', content: 'bye' }));

    a.nextElicit = { action: 'decline' };
    let r = sc(await call(a, 'note_delete', { name: 'doomed' }));
    assert.deepEqual([r.deleted, r.outcome], [false, 'declined']);
    assert.ok(existsSync(join(a.dir, 'doomed.md')));

    a.nextElicit = { action: 'accept', content: { confirm: false } };
    r = sc(await call(a, 'note_delete', { name: 'doomed' }));
    assert.deepEqual([r.deleted, r.outcome], [false, 'not_confirmed']);
    assert.ok(existsSync(join(a.dir, 'doomed.md')));

    a.nextElicit = { action: 'accept', content: { confirm: true, reason: 'obsolete' } };
    r = sc(await call(a, 'note_delete', { name: 'doomed' }));
    assert.deepEqual([r.deleted, r.outcome, r.reason], [true, 'confirmed', 'obsolete']);
    assert.ok(!existsSync(join(a.dir, 'doomed.md')));
    assert.equal(a.elicitCount, 3);
    assert.ok(a.logs.some((m) => (m.data as any)?.event === 'note_deleted'));
  });

  test('summarize uses sampling and sends the note content', async () => {
    const r = await call(a, 'note_summarize', { name: 'groceries', maxWords: 20 });
    assert.equal(text(r), 'SUMMARY: groceries and chores.');
    assert.equal(sc(r).model, 'test-model');
    const req = a.sampling.at(-1);
    assert.ok(req);
    assert.ok(JSON.stringify(req.messages).includes('Bread and butter'), 'sampling request must contain the note');
    assert.ok(JSON.stringify(req.messages).includes('20 words'));
  });

  test('reindex reports progress for every step', async () => {
    const progress: { progress: number; total?: number; message?: string }[] = [];
    const r = (await a.client.callTool({ name: 'workspace_reindex', arguments: { steps: 5, delayMs: 10 } }, undefined, {
      onprogress: (p) => progress.push(p),
    })) as CallToolResult;
    const out = sc(r);
    assert.equal(out.status, 'completed');
    assert.equal(out.notes, 2);
    assert.ok(out.topTerms.some((t: any) => t.term === 'bread'));
    assert.ok(progress.length >= 5, `got ${progress.length} progress notifications`);
    assert.deepEqual(
      progress.map((p) => p.progress),
      [1, 2, 3, 4, 5],
    );
    assert.ok(progress.every((p) => p.total === 5 && typeof p.message === 'string' && p.message.length > 0));
  });

  test('reindex stops when the client cancels', async () => {
    const ac = new AbortController();
    let seen = 0;
    const pending = a.client.callTool({ name: 'workspace_reindex', arguments: { steps: 100, delayMs: 30 } }, undefined, {
      signal: ac.signal,
      onprogress: () => {
        if (++seen === 2) ac.abort();
      },
    });
    await assert.rejects(pending);
    let info: any;
    for (let i = 0; i < 50; i++) {
      info = sc(await call(a, 'session_info'));
      if (info.lastReindex?.status === 'cancelled') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(info.lastReindex?.status, 'cancelled');
    assert.ok(info.lastReindex.stepsDone < 10, `stopped after ${info.lastReindex.stepsDone} steps`);
    await new Promise((r) => setTimeout(r, 200));
    const later = sc(await call(a, 'session_info'));
    assert.equal(later.lastReindex.stepsDone, info.lastReindex.stepsDone);
  });

  test('roots come from the client', async () => {
    const r = sc(await call(a, 'workspace_roots'));
    assert.deepEqual(r.roots, ROOTS);
    assert.equal(r.count, 2);
  });

  test('two servers in two dirs keep separate notes and identities', async () => {
    sc(await call(b, 'note_write', { name: 'only-in-b', content: 'b' }));
    const la = sc(await call(a, 'note_list')).notes.map((n: any) => n.name);
    const lb = sc(await call(b, 'note_list')).notes.map((n: any) => n.name);
    assert.ok(!la.includes('only-in-b'));
    assert.deepEqual(lb, ['only-in-b']);
    const ia = sc(await call(a, 'session_info'));
    const ib = sc(await call(b, 'session_info'));
    assert.equal(ia.sessionId, 'sess-a');
    assert.equal(ib.sessionId, 'sess-b');
    assert.notEqual(ia.pid, ib.pid);
    assert.notEqual(ia.cwd, ib.cwd);
    assert.deepEqual([ia.noteCount, ib.noteCount], [2, 1]);
  });

  test('without client capabilities: delete refuses (unless forced), summarize and roots fail clearly', async () => {
    const d = await call(b, 'note_delete', { name: 'only-in-b' });
    assert.equal(d.isError, true);
    assert.match(text(d), /elicitation/);
    assert.ok(existsSync(join(b.dir, 'only-in-b.md')));

    const s = await call(b, 'note_summarize', { name: 'only-in-b' });
    assert.equal(s.isError, true);
    assert.match(text(s), /sampling/);

    const roots = await call(b, 'workspace_roots');
    assert.equal(roots.isError, true);

    const f = sc(await call(b, 'note_delete', { name: 'only-in-b', force: true }));
    assert.deepEqual([f.deleted, f.outcome], [true, 'forced']);
    assert.ok(!existsSync(join(b.dir, 'only-in-b.md')));
  });
});

describe('demo server lifecycle', () => {
  test('exits 0 when stdin closes', async () => {
    const child = spawn(process.execPath, [SERVER], { cwd: tmpdir(), stdio: ['pipe', 'ignore', 'inherit'] });
    child.stdin.end();
    assert.equal(await waitExit(child), 0);
  });

  test('exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, [SERVER], { cwd: tmpdir(), stdio: ['pipe', 'pipe', 'inherit'] });
    // Wait until it answers, so the SIGTERM handler is definitely installed.
    const answered = new Promise((resolve) => child.stdout.once('data', resolve));
    child.stdin.write(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '0' } },
      }) + '\n',
    );
    await answered;
    child.kill('SIGTERM');
    assert.equal(await waitExit(child), 0);
  });
});
