// limits.minFreeMemory: a new session is refused (503, Retry-After, a JSON-RPC error naming the setting) while berth
// has less memory free than it, and live sessions go on. Without it one client opening sessions (without auth every
// caller is one principal, so maxSessionsPerPrincipal does not apply) could start servers until the host ran out of
// memory, and the kernel's OOM killer then ended other clients' sessions. The host's real free memory is the input:
// one runtime asks for more than any machine here has (1000 GiB), the other for the default.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ACCEPT_BOTH, connect, initBody, PROBE, serveConfig, textOf, type BerthProcess } from './helpers/berth.ts';
import { freeMemory } from '../src/util/free-memory.ts';
import { LimitsSchema } from '../src/config/schema.ts';

let berth: BerthProcess;
let origin: string;
before(async () => {
  const runtime = (limits: Record<string, unknown>) => ({ command: PROBE, isolation: 'process', network: 'host', warmPool: 1, limits });
  berth = await serveConfig({
    server: { port: 0 },
    runtimes: { default: runtime({}), greedy: runtime({ minFreeMemory: '1000GiB' }) },
  });
  origin = new URL(berth.url).origin;
});
after(() => berth?.stop());

test('an initialize while less memory is free than limits.minFreeMemory gets 503, Retry-After and the reason; the other runtime and its live session go on', async () => {
  assert.ok(freeMemory()! < 1000 * 1024 ** 3, 'this machine has less than 1000 GiB free');
  const live = await connect(`${origin}/mcp`);
  const refused = await fetch(`${origin}/runtimes/greedy/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: ACCEPT_BOTH },
    body: initBody(7),
  });
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get('retry-after'), '10');
  const body = (await refused.json()) as { id: number; error: { code: number; message: string } };
  assert.equal(body.id, 7);
  assert.equal(body.error.code, -32000);
  assert.match(
    body.error.message,
    /^Service Unavailable: this host has \d+ MiB of memory free, less than limits\.minFreeMemory \(1024000 MiB\)/,
  );
  assert.equal(refused.headers.get('mcp-session-id'), null, 'no session was made');
  // The default runtime (256 MiB) still opens sessions, and its live one answers.
  assert.equal(textOf(await live.client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
  const fresh = await connect(`${origin}/mcp`);
  assert.equal(textOf(await fresh.client.callTool({ name: 'echo', arguments: { text: 'new' } })), 'new');
  // Counted, and said once in the log (not once per refusal).
  const metrics = await (await fetch(`${origin}/metrics`)).text();
  assert.match(metrics, /^berth_sessions_refused_total\{runtime="greedy",reason="memory"\} 1$/m);
  const said = () =>
    berth
      .logs()
      .split('\n')
      .filter((l) => l.includes('less memory free than limits.minFreeMemory')).length;
  for (let t = 0; said() === 0; t++) {
    assert.ok(t < 200, 'the refusal was never logged');
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(said(), 1);
  await Promise.all([live, fresh].map((c) => c.client.close()));
});

test('limits.minFreeMemory: 256MiB unset, 0 allowed, a size without its unit refused', () => {
  assert.equal(LimitsSchema.parse({}).minFreeMemory, 256 * 1024 * 1024);
  assert.equal(LimitsSchema.parse({ minFreeMemory: 0 }).minFreeMemory, 0);
  assert.equal(LimitsSchema.safeParse({ minFreeMemory: '512' }).success, false);
});
