// A stdio server that stops reading its stdin (hostile, or stuck in a long synchronous tool) must not let its client
// grow berth's memory: the pipe holds 64 KiB, and everything past it waited in berth, 202 after 202 (a review saw
// berth go from 100 MB to 700 MB with 120 notifications of 4 MiB). limits.inputBacklog bounds it: past it the
// session's POSTs get 503 + Retry-After + a JSON-RPC error naming the setting, until the server reads again; other
// sessions go on. Real berth, the hostile fixture server (its `deaf` tool pauses its stdin), the official SDK client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, serveConfig, textOf, type BerthProcess } from './helpers/berth.ts';

let berth: BerthProcess;
before(async () => {
  const hostile = await compiledFixture('hostile-server');
  berth = await serveConfig({
    server: { port: 0 },
    runtimes: { default: { command: hostile, isolation: 'process', warmPool: 1, limits: { inputBacklog: '2MiB' } } },
  });
});
after(() => berth?.stop());

/** A notification of about `mib` MiB to the session, as raw HTTP (the SDK hides the status of a notification's POST). */
function notify(sessionId: string, mib: number) {
  const body = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { pad: 'x'.repeat(mib * 1048576 - 100) } });
  return fetch(berth.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': '2025-11-25',
    },
    body,
  });
}

test('a server that stops reading: past limits.inputBacklog its client gets 503 naming the setting; another session is served; reading again lifts it', async () => {
  const deaf = await connect(berth.url);
  const other = await connect(berth.url);
  const sid = deaf.transport.sessionId!;
  // Deaf until the test says (a file appears), and at most 120 s: the loop ends by itself.
  const hear = join(mkdtempSync(join(tmpdir(), 'berth-backlog-')), 'hear');
  await deaf.client.callTool({ name: 'deaf', arguments: { ms: 120_000, until: hear } });

  const statuses: number[] = [];
  let refusal: { status: number; retryAfter: string | null; body: { error?: { code: number; message: string } } } | undefined;
  for (let i = 0; i < 12 && !refusal; i++) {
    const r = await notify(sid, 1);
    statuses.push(r.status);
    if (r.status !== 202) refusal = { status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.json() };
  }
  assert.ok(refusal, `every one of ${statuses.length} notifications of 1 MiB was taken: ${statuses}`);
  // 2 MiB may wait, plus what the pipe and the server's paused stream hold, plus the message that crossed the line.
  assert.ok(statuses.length <= 6, `refused only after ${statuses.length} MiB: ${statuses}`);
  assert.equal(refusal.status, 503);
  assert.equal(refusal.retryAfter, '1');
  assert.equal(refusal.body.error?.code, -32000);
  assert.match(
    refusal.body.error!.message,
    /has not read [\d.]+ MiB of earlier messages from its stdin, more than limits\.inputBacklog \(2 MiB\)/,
  );
  // Still refused: nothing was read meanwhile.
  assert.equal((await notify(sid, 1)).status, 503);

  // Another session of the same runtime is untouched.
  const r = await other.client.callTool({ name: 'whoami', arguments: {} });
  assert.match(textOf(r), /"session"/);

  // The server reads again: what waited is taken, and so are the client's messages.
  writeFileSync(hear, '');
  let status = 503;
  for (let i = 0; i < 300 && status === 503; i++) {
    status = (await notify(sid, 1)).status;
    if (status === 503) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, 202, 'taken again once the server read what waited');
  // That last notification may have filled the backlog again for a moment: a call goes through once it is read.
  let answer = '';
  for (let i = 0; i < 300 && !answer; i++) {
    answer = await deaf.client.callTool({ name: 'whoami', arguments: {} }).then(textOf, (e: Error) => {
      assert.match(e.message, /limits\.inputBacklog/);
      return new Promise<string>((r) => setTimeout(() => r(''), 100));
    });
  }
  assert.match(answer, /"session"/);
  await deaf.transport.terminateSession();
  await other.transport.terminateSession();
  await Promise.all([deaf.client.close(), other.client.close()]);
});
