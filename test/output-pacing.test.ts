// A server that writes valid JSON-RPC on stdout as fast as its pipe takes it costs berth's main thread a parse and a
// relay per message; unpaced, one such session stalled every other one (a review: another session's p99 19 ms →
// 940 ms). limits.outputTime paces each session's output: past its share berth stops reading that server for a
// while, and its writes wait on the full pipe. Nothing is dropped: every message still reaches the client, byte for
// byte, and the pause is logged once and counted. Real berth, the hostile fixture (its `spew` tool), the official
// SDK client. The speed side (victims' p99 during a flood) is a bench line (bench/noisy-neighbour.ts), not a test.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, serveConfig, textOf, type BerthProcess } from './helpers/berth.ts';
import { waitFor } from './helpers/unit.ts';

let berth: BerthProcess;
before(async () => {
  const hostile = await compiledFixture('hostile-server');
  berth = await serveConfig({
    server: { port: 0 },
    runtimes: {
      default: { command: hostile, isolation: 'process', warmPool: 2, limits: { outputTime: '20ms', outputTimeBurst: '20ms' } },
    },
  });
});
after(() => berth?.stop());

const PACED = /the server's output took more of berth's time than limits\.outputTime allows/;

async function pausedSeconds(): Promise<number> {
  const body = await (await fetch(new URL('/metrics', berth.url))).text();
  const m = /^berth_server_output_paused_seconds_total\{runtime="default"\} ([\d.e+-]+)$/m.exec(body);
  return m ? Number(m[1]) : 0;
}

test('a server spewing messages is read more slowly, not cut: every message arrives whole, the pause is logged once and counted, another session is served', async () => {
  const noisy = await connect(berth.url);
  const other = await connect(berth.url);
  const sizes: number[] = [];
  noisy.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    sizes.push(String(n.params.data).length);
  });
  const count = 60;
  const lineBytes = 256 * 1024; // kept as bytes (over RAW_MIN) and passed through
  const call = noisy.client.callTool({ name: 'spew', arguments: { count, lineBytes } }, undefined, { timeout: 120_000 });
  // Paced while it spews: said once, and counted.
  await waitFor(() => PACED.test(berth.logs()), 'the pacing log line', 60_000);
  // Another session of the same runtime is answered meanwhile.
  assert.match(textOf(await other.client.callTool({ name: 'whoami', arguments: {} })), /"session"/);
  assert.equal(textOf(await call), `spewed ${count}`);
  // Nothing dropped: the messages came before the answer, each whole.
  assert.equal(sizes.length, count);
  const dataChars = sizes[0]!;
  assert.ok(dataChars > lineBytes - 200 && dataChars < lineBytes, `data of ${dataChars} characters`);
  assert.ok(sizes.every((n) => n === dataChars));
  // Once per session (under load a GC pause in another session's read can pace it too: its own line).
  const said = berth
    .logs()
    .split('\n')
    .filter((l) => PACED.test(l))
    .map((l) => (JSON.parse(l) as { session: string }).session);
  assert.ok(said.length >= 1 && new Set(said).size === said.length, `said once per session: ${said}`);
  assert.ok((await pausedSeconds()) > 0, 'berth_server_output_paused_seconds_total counts the pauses');
  await noisy.transport.terminateSession();
  await other.transport.terminateSession();
});
