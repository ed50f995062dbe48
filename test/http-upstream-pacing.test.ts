// A server that serves HTTP itself can stream SSE events as fast as berth reads them, and each costs berth's main
// thread: passed on (HttpUpstream forwards a 2025 session's answers), or parsed and relayed (HttpChannel, berth's own
// session with a 2026-era server under bridge B). Unpaced, one such session stalls every other one, as a stdio
// server's flood did (test/output-pacing.test.ts). limits.outputTime paces an http server's answers too: past its
// share berth stops reading that server's stream for a while, and its writes wait in TCP buffers. Nothing is dropped:
// every notification still reaches the client whole, and the pause is logged once per session and counted. Real
// berth, the hostile http fixture (its `spew` tool), the official SDK client.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, serveConfig, textOf, type BerthProcess } from './helpers/berth.ts';
import { waitFor } from './helpers/unit.ts';

const PACED = /the server's output took more of berth's time than limits\.outputTime allows/;

function pacingSuite(era: '2025' | '2026', path: string, o: { outputTime: string; burst: string; count: number; bytes: number }) {
  describe(`an http server spewing notifications (${path})`, { timeout: 180_000 }, () => {
    let berth: BerthProcess;
    before(async () => {
      berth = await serveConfig({
        server: { port: 0 },
        runtimes: {
          default: {
            command: await compiledFixture('hostile-http-server'),
            upstream: 'http',
            serverEra: era,
            isolation: 'process',
            network: 'host',
            warmPool: 2,
            limits: { outputTime: o.outputTime, outputTimeBurst: o.burst },
          },
        },
      });
    });
    after(() => berth?.stop());

    async function pausedSeconds(): Promise<number> {
      const body = await (await fetch(new URL('/metrics', berth.url))).text();
      const m = /^berth_server_output_paused_seconds_total\{runtime="default"\} ([\d.e+-]+)$/m.exec(body);
      return m ? Number(m[1]) : 0;
    }

    test('is read more slowly, not cut: every notification arrives whole, the pause is logged once and counted, another session is served', async () => {
      const noisy = await connect(berth.url);
      const other = await connect(berth.url);
      try {
        const sizes: number[] = [];
        noisy.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
          sizes.push(String(n.params.data).length);
        });
        const { count, bytes } = o;
        const call = noisy.client.callTool({ name: 'spew', arguments: { count, bytes } }, undefined, { timeout: 150_000 });
        // Paced while it spews: said, and counted.
        await waitFor(() => PACED.test(berth.logs()), 'the pacing log line', 60_000);
        // Another session of the same runtime is answered meanwhile.
        assert.match(textOf(await other.client.callTool({ name: 'whoami', arguments: {} })), /^pid \d+$/);
        assert.equal(textOf(await call), `spewed ${count}`);
        // Nothing dropped: the notifications came before the answer, each whole.
        assert.equal(sizes.length, count);
        const dataChars = sizes[0]!;
        assert.ok(dataChars > bytes - 200 && dataChars < bytes, `data of ${dataChars} characters`);
        assert.ok(sizes.every((n) => n === dataChars));
        // Once per session (under load a GC pause in another session's read can pace it too: its own line).
        const said = berth
          .logs()
          .split('\n')
          .filter((l) => PACED.test(l))
          .map((l) => (JSON.parse(l) as { session: string }).session);
        assert.ok(said.length >= 1 && new Set(said).size === said.length, `said once per session: ${said}`);
        assert.ok((await pausedSeconds()) > 0, 'berth_server_output_paused_seconds_total counts the pauses');
      } finally {
        await Promise.all([noisy.transport.terminateSession(), other.transport.terminateSession()]).catch(() => undefined);
        await Promise.all([noisy.client.close(), other.client.close()]);
      }
    });
  });
}

// A small burst, so that the flood is paced on any machine, and a larger share, so that its pauses are short.
// Passed on, 64 KiB costs ~0.05-0.2 ms of berth's time (no parse): 6 MiB of it.
pacingSuite('2025', 'forwarded, HttpUpstream', { outputTime: '10ms', burst: '1ms', count: 24, bytes: 256 * 1024 });
// Parsed (the SDK's SSE parser and zod) and relayed, a MiB costs ~25-90 ms: 3 MiB.
pacingSuite('2026', 'bridge B, HttpChannel', { outputTime: '50ms', burst: '10ms', count: 12, bytes: 256 * 1024 });
